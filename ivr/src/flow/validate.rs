//! Turns TOML text into a [`Flow`], refusing anything the engine could not run safely.

use super::error::{FlowError, NodeProblem};
use super::schema::{FlowFile, NodeKind, RESERVED_DIGITS};
use super::PromptIds;
use super::{Flow, Node, NodeIx};
use crate::domain::{is_iso639, Language};
use crate::hours::Schedule;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn node_err(file: &str, node: &str, problem: NodeProblem) -> FlowError {
    FlowError::Node { file: file.to_owned(), node: node.to_owned(), problem }
}

fn flow_err(file: &str, reason: impl Into<String>) -> FlowError {
    FlowError::Flow { file: file.to_owned(), reason: reason.into() }
}

/// 1-based line and column of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

pub(super) fn build(source: &str, file: &str, known_ids: &impl PromptIds) -> Result<Flow, FlowError> {
    let parsed: FlowFile = toml::from_str(source).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(source, s.start)).unwrap_or((0, 0));
        FlowError::Toml { file: file.to_owned(), line, column, message: e.message().trim().to_owned() }
    })?;

    let schedule = Schedule::from_config(&parsed.hours).map_err(|e| flow_err(file, format!("[hours]: {e}")))?;
    if parsed.timeouts.max_tries == 0 {
        return Err(flow_err(file, "[timeouts]: max_tries must be at least 1"));
    }
    // Languages: well-formed, each once; the guesses name only these.
    if parsed.languages.is_empty() {
        return Err(flow_err(file, "[[languages]]: at least one language is needed"));
    }
    let mut tags: Vec<&str> = Vec::new();
    for spec in &parsed.languages {
        if !is_iso639(&spec.tag) {
            return Err(flow_err(
                file,
                format!("[[languages]]: tag {:?} is not a BCP-47 primary language subtag (2 or 3 lower-case letters, ISO 639)", spec.tag),
            ));
        }
        if tags.contains(&spec.tag.as_str()) {
            return Err(flow_err(file, format!("[[languages]]: {:?} is listed twice", spec.tag)));
        }
        for (field, value) in [("voice", &spec.voice), ("name", &spec.name)] {
            if value.trim().is_empty() {
                return Err(flow_err(file, format!("[[languages]] {:?}: `{field}` is empty", spec.tag)));
            }
        }
        if spec.say.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(flow_err(file, format!("[[languages]] {:?}: `say` is empty (leave it out instead)", spec.tag)));
        }
        tags.push(spec.tag.as_str());
    }
    let mut language_guess: Vec<(String, Vec<&str>)> = Vec::new();
    for (prefix, langs) in &parsed.language_guess {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(flow_err(
                file,
                format!("[language_guess]: {prefix:?} is not a country calling code (digits only, no +)"),
            ));
        }
        let langs = langs.tags();
        if langs.is_empty() || langs.len() > 2 {
            return Err(flow_err(file, format!("[language_guess] {prefix:?}: name one or two languages")));
        }
        for tag in &langs {
            if !tags.contains(tag) {
                return Err(flow_err(
                    file,
                    format!(
                        "[language_guess] {prefix:?}: {tag:?} is not one of the [[languages]] ({})",
                        tags.join(", ")
                    ),
                ));
            }
        }
        language_guess.push((prefix.clone(), langs));
    }
    language_guess.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    // Ids unknown in every language are typos in the flow (a node error below); ids some
    // languages lack are missing translations (refused per language, once all are known).
    let known = known_ids.any_language();
    // No texts at all (a prompts folder that is not there): reported per language below, naming it.
    let no_texts = known.is_empty();

    // Names → indexes, in file order of the BTreeMap (sorted by name: stable).
    let index: HashMap<String, NodeIx> = parsed.nodes.keys().enumerate().map(|(i, n)| (n.clone(), i)).collect();
    let resolve_root = |what: &str, name: &str| {
        index.get(name).copied().ok_or_else(|| flow_err(file, format!("`{what}` names `{name}`, which is not a node")))
    };
    let start = resolve_root("start", &parsed.start)?;
    let operator = resolve_root("operator", &parsed.operator)?;

    // Prompt ids.
    let mut prompt_ids = BTreeSet::new();
    for (field, id) in [("prompts.invalid", &parsed.prompts.invalid), ("prompts.goodbye", &parsed.prompts.goodbye)] {
        if !no_texts && !known.contains(id) {
            return Err(flow_err(
                file,
                format!("`{field}` names unknown prompt id `{id}` (not defined in every language's .ftl files)"),
            ));
        }
        prompt_ids.insert(id.clone());
    }
    for (name, kind) in &parsed.nodes {
        for (field, id) in kind.prompts() {
            if !no_texts && !known.contains(id) {
                return Err(node_err(file, name, NodeProblem::UnknownPrompt { field, prompt: id.to_string() }));
            }
            prompt_ids.insert(id.clone());
        }
    }

    // Digits.
    for (name, kind) in &parsed.nodes {
        check_digits(file, name, kind)?;
    }

    // Targets.
    let mut nodes = Vec::with_capacity(parsed.nodes.len());
    for (name, kind) in parsed.nodes {
        let resolved = kind.try_map(|field, target: String| {
            index
                .get(&target)
                .copied()
                .ok_or_else(|| node_err(file, &name, NodeProblem::UnknownTarget { field, target: target.clone() }))
        })?;
        nodes.push(Node { name, kind: resolved });
    }

    match &nodes[operator].kind {
        NodeKind::Queue { .. } => {}
        other => {
            return Err(flow_err(
                file,
                format!(
                    "`operator` names `{}`, a {} node; it must be a queue node",
                    nodes[operator].name,
                    other.kind_name()
                ),
            ))
        }
    }
    for node in &nodes {
        if let NodeKind::SelfService { page_size, sms, .. } = &node.kind {
            if !(1..=9).contains(page_size) {
                return Err(node_err(
                    file,
                    &node.name,
                    NodeProblem::Invalid(format!("page_size {page_size} must be 1 to 9")),
                ));
            }
            if let Some(sms) = sms {
                if !matches!(sms.key.as_str(), "3" | "4" | "5" | "6" | "7" | "8") {
                    return Err(node_err(
                        file,
                        &node.name,
                        NodeProblem::Invalid(format!(
                            "sms.key `{}` must be one digit 3 to 8 (1, 2 and 9 are the readback's own)",
                            sms.key
                        )),
                    ));
                }
            }
        }
        if let NodeKind::Queue { announce_interval_secs, .. } = node.kind {
            if announce_interval_secs == 0 {
                return Err(node_err(
                    file,
                    &node.name,
                    NodeProblem::Invalid("announce_interval_secs must be at least 1".into()),
                ));
            }
        }
    }

    for node in &nodes {
        if let NodeKind::RecordingNotice { refuse_key, next, .. } = &node.kind {
            check_refuse_key(file, &node.name, refuse_key, *next, &nodes)?;
        }
    }

    check_reachable(file, &nodes, start, operator)?;
    check_ways_out(file, &nodes)?;
    check_pass_through_loops(file, &nodes)?;

    // Every language has every prompt the flow names: a missing one would be silence.
    for tag in &tags {
        let (source, ids) = known_ids.language(tag).unwrap_or_else(|| (format!("prompts/{tag}/"), BTreeSet::new()));
        let missing: Vec<String> = prompt_ids.iter().filter(|id| !ids.contains(*id)).map(|id| id.to_string()).collect();
        if !missing.is_empty() {
            return Err(FlowError::MissingPrompts {
                file: file.to_owned(),
                language: (*tag).to_owned(),
                texts: source,
                missing,
            });
        }
    }
    // A menu of the languages not guessed: at most nine keys, or pages with `more_prompt`.
    for node in &nodes {
        if let NodeKind::LanguageMenu { more_prompt: None, .. } = node.kind {
            if tags.len() > 10 {
                return Err(node_err(
                    file,
                    &node.name,
                    NodeProblem::Invalid(format!(
                        "{} languages do not fit on keys 1-9: give a `more_prompt` (9 for the next page)",
                        tags.len()
                    )),
                ));
            }
        }
    }

    let languages = Language::register(&parsed.languages).map_err(|e| flow_err(file, format!("[[languages]]: {e}")))?;
    let find = |t: &str| languages.iter().copied().find(|l| l.as_str() == t);
    let language_guess = language_guess
        .into_iter()
        .map(|(prefix, langs)| (prefix, langs.into_iter().filter_map(find).collect()))
        .collect();

    Ok(Flow {
        file: file.to_owned(),
        index,
        nodes,
        start,
        operator,
        prompts: parsed.prompts,
        timeouts: parsed.timeouts,
        languages,
        language_guess,
        schedule,
        prompt_ids,
    })
}

fn check_digits(file: &str, name: &str, kind: &NodeKind<String>) -> Result<(), FlowError> {
    let (options, builtin): (&[super::MenuOption<String>], Vec<(String, String)>) = match kind {
        NodeKind::Menu { options, .. } => (options, vec![]),
        NodeKind::AreaMenu { options, .. } => (
            options,
            crate::domain::ServiceArea::ALL.iter().map(|a| (a.menu_digit().to_string(), format!("area {a}"))).collect(),
        ),
        _ => return Ok(()),
    };
    let mut seen: BTreeMap<String, String> = builtin.into_iter().collect();
    for o in options {
        let d = o.digit.as_str();
        if let Some((_, why)) = RESERVED_DIGITS.iter().find(|(r, _)| *r == d) {
            return Err(node_err(file, name, NodeProblem::BadDigit { digit: d.to_owned(), why }));
        }
        let valid = d.len() == 1 && d.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'D').contains(&b));
        if !valid {
            return Err(node_err(
                file,
                name,
                NodeProblem::BadDigit { digit: d.to_owned(), why: "a menu option is one key: 1-9 or A-D" },
            ));
        }
        let this = format!("goto {}", o.goto);
        if let Some(first) = seen.insert(d.to_owned(), this.clone()) {
            return Err(node_err(
                file,
                name,
                NodeProblem::DigitMappedTwice { digit: d.to_owned(), first, second: this },
            ));
        }
    }
    if let NodeKind::Menu { options, back, .. } = kind {
        if options.is_empty() && back.is_none() {
            return Err(node_err(file, name, NodeProblem::NoWayOut("a menu with no options and no `back`".into())));
        }
    }
    Ok(())
}

/// The recording notice's refusal key is one key that none of the menus the notice leads to
/// (through the nodes that do not wait) takes: there, its first key is the caller's refusal.
fn check_refuse_key(file: &str, name: &str, key: &str, next: NodeIx, nodes: &[Node]) -> Result<(), FlowError> {
    let bad = |why: &'static str| node_err(file, name, NodeProblem::BadDigit { digit: key.to_owned(), why });
    if let Some((_, why)) = RESERVED_DIGITS.iter().find(|(r, _)| *r == key) {
        return Err(bad(why));
    }
    let valid = key.len() == 1 && key.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'D').contains(&b));
    if !valid {
        return Err(bad("the refusal key is one key: 1-9 or A-D"));
    }
    let mut todo = vec![next];
    let mut seen = vec![false; nodes.len()];
    while let Some(ix) = todo.pop() {
        if ix >= nodes.len() || std::mem::replace(&mut seen[ix], true) {
            continue;
        }
        let kind = &nodes[ix].kind;
        let taken = match kind {
            NodeKind::Menu { options, .. } => options.iter().any(|o| o.digit == key),
            NodeKind::AreaMenu { options, .. } => {
                ('1'..='6').any(|d| key.starts_with(d)) || options.iter().any(|o| o.digit == key)
            }
            NodeKind::OutOfHours { .. } => key == "1" || key == "2",
            NodeKind::SelfService { sms, .. } => {
                matches!(key, "1" | "2" | "9") || sms.as_ref().is_some_and(|s| s.key == key)
            }
            NodeKind::LanguageGuess { .. } | NodeKind::LanguageMenu { .. } | NodeKind::CapEntry { .. } => true,
            _ => false,
        };
        if taken {
            return Err(node_err(
                file,
                name,
                NodeProblem::Invalid(format!(
                    "refuse_key {key:?} is a key of `{}`, which the notice leads to: choose a key it does not take",
                    nodes[ix].name
                )),
            ));
        }
        todo.extend(kind.pass_through_edges().into_iter().copied());
    }
    Ok(())
}

fn check_reachable(file: &str, nodes: &[Node], start: NodeIx, operator: NodeIx) -> Result<(), FlowError> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![start, operator];
    while let Some(ix) = stack.pop() {
        if std::mem::replace(&mut seen[ix], true) {
            continue;
        }
        stack.extend(nodes[ix].kind.edges().into_iter().map(|(_, t)| *t));
    }
    match seen.iter().position(|s| !s) {
        Some(ix) => Err(node_err(file, &nodes[ix].name, NodeProblem::Unreachable { start: nodes[start].name.clone() })),
        None => Ok(()),
    }
}

/// Exits: nodes where the call leaves the menus (queue, callback, out-of-hours handling).
fn is_exit(kind: &NodeKind<NodeIx>) -> bool {
    matches!(kind, NodeKind::Queue { .. } | NodeKind::Callback { .. } | NodeKind::OutOfHours { .. })
}

/// Every node must lead, through the edges a caller can choose, to an exit: otherwise callers go
/// round in circles until they give up (0 would still work, but nobody is told about it).
fn check_ways_out(file: &str, nodes: &[Node]) -> Result<(), FlowError> {
    let mut reaches_exit: Vec<bool> = nodes.iter().map(|n| is_exit(&n.kind)).collect();
    loop {
        let mut changed = false;
        for (ix, node) in nodes.iter().enumerate() {
            if !reaches_exit[ix] && node.kind.edges().iter().any(|(_, t)| reaches_exit[**t]) {
                reaches_exit[ix] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    match reaches_exit.iter().position(|r| !r) {
        Some(ix) => {
            let edges = nodes[ix].kind.edges();
            let why = if edges.is_empty() {
                "it leads nowhere".to_owned()
            } else {
                let targets: Vec<String> = edges.iter().map(|(f, t)| format!("{f} → {}", nodes[**t].name)).collect();
                format!("none of its ways ({}) ever reaches a queue, callback or out-of-hours node", targets.join(", "))
            };
            Err(node_err(file, &nodes[ix].name, NodeProblem::NoWayOut(why)))
        }
        None => Ok(()),
    }
}

/// A cycle of nodes that never wait for the caller (messages, checks) would spin forever.
fn check_pass_through_loops(file: &str, nodes: &[Node]) -> Result<(), FlowError> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut mark = vec![0u8; nodes.len()];
    fn visit(ix: NodeIx, nodes: &[Node], mark: &mut [u8], path: &mut Vec<NodeIx>) -> Option<Vec<NodeIx>> {
        match mark[ix] {
            1 => {
                let from = path.iter().position(|&p| p == ix).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(ix);
                return Some(cycle);
            }
            2 => return None,
            _ => {}
        }
        mark[ix] = 1;
        path.push(ix);
        for &next in nodes[ix].kind.pass_through_edges() {
            if let Some(c) = visit(next, nodes, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark[ix] = 2;
        None
    }
    for ix in 0..nodes.len() {
        if let Some(cycle) = visit(ix, nodes, &mut mark, &mut Vec::new()) {
            let names: Vec<&str> = cycle.iter().map(|&i| nodes[i].name.as_str()).collect();
            return Err(node_err(
                file,
                &nodes[cycle[0]].name,
                NodeProblem::NoWayOut(format!("it loops without ever waiting for the caller: {}", names.join(" → "))),
            ));
        }
    }
    Ok(())
}
