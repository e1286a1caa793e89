//! Flow validation: each way a flow can be wrong gives a clear error naming the file and node.

use ivr::domain::{CallId, DtmfDigits, ServiceArea};
use ivr::engine::{step, Action, CallState, Channel, Event};
use ivr::flow::{embedded_prompt_ids, Flow, FlowError, NodeProblem, DEFAULT_FLOW_TOML};

fn load(toml: &str) -> Result<Flow, FlowError> {
    Flow::from_toml(toml, "config/test.toml", &embedded_prompt_ids())
}

/// The default flow with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> String {
    assert!(DEFAULT_FLOW_TOML.contains(from), "the default flow has no {from:?}");
    DEFAULT_FLOW_TOML.replacen(from, to, 1)
}

fn node_error(toml: &str) -> (String, NodeProblem, String) {
    match load(toml) {
        Err(e @ FlowError::Node { .. }) => {
            let message = e.to_string();
            let FlowError::Node { node, problem, file } = e else { unreachable!() };
            assert_eq!(file, "config/test.toml");
            (node, problem, message)
        }
        other => panic!("expected a node error, got {other:?}"),
    }
}

#[test]
fn the_default_flow_loads_and_lists_its_prompts() {
    let flow = load(DEFAULT_FLOW_TOML).unwrap();
    let ids: Vec<&str> = flow.prompt_ids().iter().map(|p| p.as_str()).collect();
    for id in [
        "welcome",
        "language-guess",
        "language-option",
        "area-menu",
        "cap-landline",
        "services-item",
        "queue-position",
        "hours-next-opening",
        "callback-confirmed",
        "goodbye",
        "invalid-choice",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
}

#[test]
fn unknown_prompt_id() {
    let (node, problem, message) = node_error(&edited(r#"prompt = "portal-info""#, r#"prompt = "portal-infos""#));
    assert_eq!(node, "portal-info");
    assert_eq!(problem, NodeProblem::UnknownPrompt { field: "prompt", prompt: "portal-infos".into() });
    assert!(message.contains("config/test.toml: node `portal-info`") && message.contains("portal-infos"), "{message}");
    // A prompt defined in some languages only is unknown too.
    let mut known = embedded_prompt_ids();
    known.retain(|p| p.as_str() != "welcome");
    let err = Flow::from_toml(DEFAULT_FLOW_TOML, "config/ivr.toml", &known).unwrap_err();
    assert!(err.to_string().contains("node `welcome`"), "{err}");
    // Common prompts are checked as well.
    let err = load(&edited(r#"invalid = "invalid-choice""#, r#"invalid = "nope""#)).unwrap_err();
    assert!(err.to_string().contains("prompts.invalid") && err.to_string().contains("nope"), "{err}");
}

#[test]
fn unreachable_node() {
    let toml =
        format!("{DEFAULT_FLOW_TOML}\n[nodes.orphan]\nkind = \"message\"\nprompt = \"goodbye\"\nnext = \"queue\"\n");
    let (node, problem, message) = node_error(&toml);
    assert_eq!(node, "orphan");
    assert_eq!(problem, NodeProblem::Unreachable { start: "language-guess".into() });
    assert!(message.contains("unreachable"), "{message}");
}

#[test]
fn node_with_no_way_out() {
    // Two menus that only lead to each other.
    let toml = edited(
        r#"options = [{ digit = "7", goto = "portal-info" }]"#,
        r#"options = [{ digit = "7", goto = "portal-info" }, { digit = "8", goto = "loop-a" }]"#,
    ) + "\n[nodes.loop-a]\nkind = \"menu\"\nprompt = \"area-menu\"\noptions = [{ digit = \"1\", goto = \"loop-b\" }]\n\
         [nodes.loop-b]\nkind = \"menu\"\nprompt = \"area-menu\"\noptions = [{ digit = \"1\", goto = \"loop-a\" }]\n";
    let (node, problem, message) = node_error(&toml);
    assert_eq!(node, "loop-a");
    assert!(matches!(problem, NodeProblem::NoWayOut(_)));
    assert!(message.contains("no way out") && message.contains("loop-b"), "{message}");

    // A menu with no options and no back.
    let toml = edited(
        r#"options = [{ digit = "7", goto = "portal-info" }]"#,
        r#"options = [{ digit = "7", goto = "portal-info" }, { digit = "8", goto = "dead-end" }]"#,
    ) + "\n[nodes.dead-end]\nkind = \"menu\"\nprompt = \"area-menu\"\noptions = []\n";
    let (node, problem, _) = node_error(&toml);
    assert_eq!(node, "dead-end");
    assert!(matches!(problem, NodeProblem::NoWayOut(_)));

    // Messages that chain into each other and nowhere else.
    let toml = edited(
        "[nodes.portal-info]\nkind = \"message\"\nprompt = \"portal-info\"\nnext = \"area-menu\"",
        "[nodes.portal-info]\nkind = \"message\"\nprompt = \"portal-info\"\nnext = \"portal-more\"\n\
         [nodes.portal-more]\nkind = \"message\"\nprompt = \"portal-info\"\nnext = \"portal-info\"",
    );
    let err = load(&toml).unwrap_err().to_string();
    assert!(err.contains("no way out") && err.contains("portal-more"), "{err}");

    // A loop of nodes that never wait, even with an exit on the way, would spin while open.
    let toml = edited(
        "[nodes.portal-info]\nkind = \"message\"\nprompt = \"portal-info\"\nnext = \"area-menu\"",
        "[nodes.portal-info]\nkind = \"message\"\nprompt = \"portal-info\"\nnext = \"portal-check\"\n\
         [nodes.portal-check]\nkind = \"hours_check\"\nopen = \"portal-info\"\nclosed = \"out-of-hours\"",
    );
    let err = load(&toml).unwrap_err().to_string();
    assert!(
        err.contains("loops without ever waiting") && err.contains("portal-check → portal-info → portal-check"),
        "{err}"
    );
}

#[test]
fn digit_mapped_twice() {
    let toml = edited(
        r#"{ digit = "2", goto = "queue" },"#,
        r#"{ digit = "2", goto = "queue" }, { digit = "1", goto = "queue" },"#,
    );
    let (node, problem, message) = node_error(&toml);
    assert_eq!(node, "service-choice");
    assert_eq!(
        problem,
        NodeProblem::DigitMappedTwice {
            digit: "1".into(),
            first: "goto self-service".into(),
            second: "goto queue".into()
        }
    );
    assert!(message.contains("digit 1 is mapped twice"), "{message}");
    // An extra area-menu option on an area's digit.
    let (node, problem, _) =
        node_error(&edited(r#"{ digit = "7", goto = "portal-info" }"#, r#"{ digit = "3", goto = "portal-info" }"#));
    assert_eq!(node, "area-menu");
    assert!(matches!(problem, NodeProblem::DigitMappedTwice { ref first, .. } if first == "area casa"), "{problem:?}");
    // Reserved and malformed keys.
    for (digit, why) in [("0", "operator"), ("*", "back"), ("#", "repeat"), ("12", "one key")] {
        let toml = edited(
            r#"{ digit = "7", goto = "portal-info" }"#,
            &format!(r#"{{ digit = "{digit}", goto = "portal-info" }}"#),
        );
        let (node, problem, message) = node_error(&toml);
        assert_eq!(node, "area-menu");
        assert!(matches!(problem, NodeProblem::BadDigit { .. }));
        assert!(message.contains(why), "{message}");
    }
}

#[test]
fn unknown_target() {
    let (node, problem, message) = node_error(&edited(r#"skip = "queue""#, r#"skip = "queu""#));
    assert_eq!(node, "cap-entry");
    assert_eq!(problem, NodeProblem::UnknownTarget { field: "skip", target: "queu".into() });
    assert!(message.contains("`skip` points to `queu`"), "{message}");
    let err = load(&edited(r#"start = "language-guess""#, r#"start = "hello""#)).unwrap_err();
    assert!(err.to_string().contains("`start` names `hello`"), "{err}");
    let err = load(&edited(r#"operator = "queue""#, r#"operator = "area-menu""#)).unwrap_err();
    assert!(err.to_string().contains("must be a queue node"), "{err}");
}

#[test]
fn bad_toml_reports_the_line() {
    let toml = edited("[nodes.portal-info]\n", "[nodes.portal-info]\nthis is not toml\n");
    let line = toml.lines().position(|l| l == "this is not toml").unwrap() + 1;
    match load(&toml) {
        Err(FlowError::Toml { file, line: l, message, .. }) => {
            assert_eq!(file, "config/test.toml");
            assert_eq!(l, line, "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Schema errors (an unknown field, a bad kind) are reported with their line too.
    let toml = edited("next = \"area-menu\"\n", "next = \"area-menu\"\nnxet = \"typo\"\n");
    let err = load(&toml).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("config/test.toml:") && text.contains("nxet"), "{text}");
    let toml = edited(r#"kind = "menu""#, r#"kind = "menuu""#);
    let text = load(&toml).unwrap_err().to_string();
    assert!(text.contains("menuu"), "{text}");
    let FlowError::Toml { line, .. } = load(&toml).unwrap_err() else { panic!() };
    assert!(line > 0, "{text}");
    // Values of domain types are validated at load.
    let text = load(&edited(r#""33" = "fr""#, r#""33" = "de""#)).unwrap_err().to_string();
    assert!(text.contains(r#""de" is not one of the [[languages]]"#), "{text}");
    let text = load(&edited(r#"prompt = "welcome""#, r#"prompt = "Welcome!""#)).unwrap_err().to_string();
    assert!(text.contains("invalid prompt id"), "{text}");
}

#[test]
fn bad_hours_and_settings() {
    let text = load(&edited(r#"monday = ["09:00-18:00"]"#, r#"monday = ["9-18"]"#)).unwrap_err().to_string();
    assert!(text.contains("[hours]") && text.contains("monday"), "{text}");
    let text = load(&edited(r#"extra_holidays = ["2026-12-24""#, r#"extra_holidays = ["24/12/2026""#))
        .unwrap_err()
        .to_string();
    assert!(text.contains("24/12/2026"), "{text}");
    let text = load(&edited("max_tries = 3", "max_tries = 0")).unwrap_err().to_string();
    assert!(text.contains("max_tries"), "{text}");
    let text = load(&edited("page_size = 3", "page_size = 0")).unwrap_err().to_string();
    assert!(text.contains("node `self-service`") && text.contains("page_size"), "{text}");
    let text = load(&edited(r#""33" = "fr""#, r#""+33" = "fr""#)).unwrap_err().to_string();
    assert!(text.contains("+33"), "{text}");
}

#[test]
fn an_admin_menu_can_be_added() {
    // A new menu between the CAP and the services: valid, and the engine follows it.
    let toml = edited(r#"next = "service-choice""#, r#"next = "extra-menu""#)
        + "\n[nodes.extra-menu]\nkind = \"menu\"\nprompt = \"service-choice\"\nback = \"cap-entry\"\n\
           options = [{ digit = \"1\", goto = \"service-choice\" }, { digit = \"5\", goto = \"queue\" }]\n";
    let flow = load(&toml).unwrap();
    assert!(flow.find("extra-menu").is_some());

    // The engine follows it: CAP placed → the extra menu → 5 → the queue.
    let now = crate::dsl::rome(crate::dsl::OPEN);
    let mut state = CallState::initial(CallId::parse("admin").unwrap());
    let mut last = Vec::new();
    for event in [
        Event::CallStarted { channel: Channel::Twiml, caller: None, called: None },
        keys("9"),
        keys("1"),
        keys("1"),
        keys("22100"),
        keys("5"),
    ] {
        let out = step(&flow, &state, &event, now);
        state = out.state;
        last = out.actions;
    }
    assert!(last.iter().any(|a| matches!(a, Action::Enqueue { area: Some(ServiceArea::Lingua), .. })), "{last:?}");
    assert_eq!(state.node, "queue");
}

fn keys(s: &str) -> Event {
    Event::Digits(DtmfDigits::parse(s).unwrap())
}

#[test]
fn a_language_without_all_its_prompts_is_refused_naming_the_file_and_the_ids() {
    use ivr::flow::{KnownPrompts, EMBEDDED_FTL};
    // Romanian loses two prompts of its queue texts.
    let mut known = KnownPrompts::default();
    for (tag, file, text) in EMBEDDED_FTL {
        let text: String = if tag == "ro" && file == "queue.ftl" {
            text.lines()
                .filter(|l| !l.starts_with("queue-enter") && !l.starts_with("callback-confirmed"))
                .map(|l| format!("{l}\n"))
                .collect()
        } else {
            text.to_owned()
        };
        known.add_text(tag, &format!("prompts/{tag}/"), &text);
    }
    let err = Flow::from_toml(DEFAULT_FLOW_TOML, "config/test.toml", &known).unwrap_err();
    assert_eq!(
        err,
        FlowError::MissingPrompts {
            file: "config/test.toml".into(),
            language: "ro".into(),
            texts: "prompts/ro/".into(),
            missing: vec!["callback-confirmed".into(), "queue-enter".into()],
        }
    );
    let text = err.to_string();
    assert!(text.contains("config/test.toml") && text.contains("prompts/ro/"), "{text}");
    assert!(text.contains("callback-confirmed, queue-enter"), "{text}");

    // A language with no texts at all lacks every prompt.
    let german = DEFAULT_FLOW_TOML.replacen(
        "[[languages]]\n",
        "[[languages]]\ntag = \"de\"\nvoice = \"de\"\nname = \"Deutsch\"\n\n[[languages]]\n",
        1,
    );
    match Flow::from_toml(&german, "config/test.toml", &KnownPrompts::embedded()) {
        Err(FlowError::MissingPrompts { language, texts, missing, .. }) => {
            assert_eq!((language.as_str(), texts.as_str()), ("de", "prompts/de/"));
            assert!(missing.contains(&"welcome".to_owned()) && missing.len() >= 20, "{missing:?}");
        }
        other => panic!("{other:?}"),
    }
    // Two languages with one tag, a malformed tag, a guess naming no configured language.
    for (from, to, says) in [
        ("tag = \"ru\"", "tag = \"uk\"", "listed twice"),
        ("tag = \"ru\"", "tag = \"Russian\"", "ISO 639"),
        ("\"40\" = \"ro\"", "\"40\" = [\"ro\", \"ru\", \"en\"]", "one or two languages"),
    ] {
        let text = load(&edited(from, to)).unwrap_err().to_string();
        assert!(text.contains(says), "{text}");
    }
}

#[test]
fn the_recording_notice_key_must_mean_nothing_where_it_leads() {
    // 3 is the area menu's housing: pressed after the notice it would be taken for a refusal.
    let (node, problem, message) = node_error(&edited(r#"refuse_key = "9""#, r#"refuse_key = "3""#));
    assert_eq!(node, "recording-notice");
    assert!(matches!(problem, NodeProblem::Invalid(_)), "{problem:?}");
    assert!(message.contains("area-menu"), "{message}");
    // 7 is the area menu's extra option (portal information).
    let (_, _, message) = node_error(&edited(r#"refuse_key = "9""#, r#"refuse_key = "7""#));
    assert!(message.contains("area-menu"), "{message}");
    // Reserved and multi-key values.
    for key in ["0", "*", "#", "99", "x"] {
        let (node, problem, _) = node_error(&edited(r#"refuse_key = "9""#, &format!("refuse_key = {key:?}")));
        assert_eq!(node, "recording-notice");
        assert!(matches!(problem, NodeProblem::BadDigit { .. }), "{key}: {problem:?}");
    }
}
