//! The dependency direction of `console/src`, as ARCHITECTURE.md states it: `cli` → `startup` →
//! the features → the infrastructure. A module that imports against it fails here, naming the
//! file and the line.
//!
//! "Imports" means any path `crate::<module>` in code (comments and doc comments aside), since a
//! path in an expression ties two modules as surely as a `use`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that know no feature: they may import only one another.
const INFRASTRUCTURE: &[&str] =
    &["carrier", "clock", "config", "db", "error", "extract", "listener", "metrics", "tasks", "telemetry"];
/// The assembly: nothing imports these but the assembly itself (`cli` starts `startup`).
const ASSEMBLY: &[&str] = &["cli", "startup"];

/// One `crate::<to>` reference: in `file` at `line`, from top-level module `from`.
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::x` in code, per top-level module.
fn edges(src: &Path) -> Vec<Edge> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let from = top_module(src, &file);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                let preceded_by_ident = rest[..i].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
                let after = &rest[i + "crate::".len()..];
                let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !preceded_by_ident && !name.is_empty() && name != from {
                    out.push(Edge { from: from.clone(), to: name, file: file.clone(), line: n + 1 });
                }
                rest = after;
            }
        }
    }
    out
}

/// A cycle in the module graph, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = edges(&src());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &edges {
        graph.entry(e.from.clone()).or_default().insert(e.to.clone());
    }
    if let Some(cycle) = find_cycle(&graph) {
        let mut why = Vec::new();
        for pair in cycle.windows(2) {
            let e = edges.iter().find(|e| e.from == pair[0] && e.to == pair[1]).unwrap();
            why.push(format!("  {} → {} ({}:{})", e.from, e.to, e.file.display(), e.line));
        }
        panic!("the modules of console/src import each other in a circle:\n{}", why.join("\n"));
    }
}

#[test]
fn dependencies_point_from_the_assembly_to_the_features_to_the_infrastructure() {
    let bad: Vec<String> = edges(&src())
        .into_iter()
        .filter(|e| {
            let infra_imports_feature =
                INFRASTRUCTURE.contains(&e.from.as_str()) && !INFRASTRUCTURE.contains(&e.to.as_str());
            let imports_assembly = ASSEMBLY.contains(&e.to.as_str()) && !ASSEMBLY.contains(&e.from.as_str());
            infra_imports_feature || imports_assembly
        })
        .map(|e| format!("  {} → {} ({}:{})", e.from, e.to, e.file.display(), e.line))
        .collect();
    assert!(bad.is_empty(), "imports against the dependency direction:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_a_cycle_and_a_wrong_way_import() {
    // The checks above pass on the tree; this one shows they can fail.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("db.rs", "use crate::operators::Console; // infrastructure importing a feature\n");
    write("operators.rs", "pub fn f() { crate::db::g(); }\n/// [`crate::clock`] in a doc comment is no import\n");
    let edges = edges(dir.path());
    let pairs: BTreeSet<(String, String)> = edges.iter().map(|e| (e.from.clone(), e.to.clone())).collect();
    assert_eq!(
        pairs,
        BTreeSet::from([("db".into(), "operators".into()), ("operators".into(), "db".into())]),
        "comments are not imports"
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in pairs {
        graph.entry(from).or_default().insert(to);
    }
    assert!(find_cycle(&graph).is_some());
}
