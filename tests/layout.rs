//! The layout reads as the architecture: data flows one way, text → model → record → train →
//! stream / ops / perspective → monitor / http_api → service → the binary ([`LAYERS`]), and no module of
//! the library imports a module that imports it back. Read from the sources: every `crate::…` path and every `super::…` path in the code
//! of each file (comments and `#[cfg(test)] mod tests` left out) is an import of the module it
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The library's top-level modules by layer, lowest first: a module may import its own layer
/// and the layers below it, never one above.
const LAYERS: &[&[&str]] = &[
    // text, and the plain pieces everything shares
    &[
        "clock",
        "error",
        "http_limits",
        "normalize",
        "lang",
        "features",
        "plot",
        "csv_file",
    ],
    &["model"],
    &["policy", "classify", "record", "eval"],
    &["train"],
    &["stream", "ops", "perspective"],
    &["monitor", "http_api"],
    // the service, wired from all of the above
    &["service"],
    // the fuzz harnesses drive every stage, the stream's included
    &["fuzz"],
];

/// Module path (`stream::consume`) → the text of its file.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            // The binary (`main.rs`, `cli/`) is the top of the stack and not part of the library.
            if parts.is_empty() || parts[0] == "main" || parts[0] == "cli" || parts[0] == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            out.insert(parts.join("::"), text);
        }
    }
    out
}

/// The code of a file without its comments and its unit-test module.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths that follow `prefix` in `code` (`crate::stream::consume::X` → `stream::consume::X`),
/// including the members of a `{…}` group right after it.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':').to_string();
        let after = &rest[path.len()..];
        let group = match path.is_empty() {
            true => after.strip_prefix('{'),
            false => after.strip_prefix("::{"),
        };
        if let Some(group) = group {
            let members = group.split('}').next().unwrap_or("");
            for m in members.split(',') {
                let m = m.split_whitespace().next().unwrap_or("");
                if !m.is_empty() && m != "self" {
                    out.push(match path.is_empty() {
                        true => m.to_string(),
                        false => format!("{path}::{m}"),
                    });
                }
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module.
fn resolve(path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|p| modules.contains_key(p))
}

/// Whether one of `a`, `b` is inside the other (a parent re-exports its children).
fn nested(a: &str, b: &str) -> bool {
    a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Every import edge between modules that are not nested, with the path that makes it.
fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (name, text) in modules {
        let code = &code_of(text);
        let parent = name.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut targets: Vec<(String, String)> = paths_after(code, "crate::")
            .into_iter()
            .map(|p| (p.clone(), format!("crate::{p}")))
            .collect();
        if let Some(parent) = &parent {
            for p in paths_after(code, "super::") {
                targets.push((format!("{parent}::{p}"), format!("super::{p}")));
            }
        }
        for (path, written) in targets {
            let Some(target) = resolve(&path, modules) else {
                continue;
            };
            if target != *name && !nested(name, &target) {
                out.entry((name.clone(), target)).or_insert(written);
            }
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let modules = modules();
    assert!(modules.len() > 40, "the sources were found: {modules:?}");
    // Each file's module, and each top-level module with everything inside it.
    let files = edges(&modules);
    let mut edges = files.clone();
    for ((a, b), written) in &files {
        if top(a) != top(b) {
            let key = (top(a).to_string(), top(b).to_string());
            edges
                .entry(key)
                .or_insert_with(|| format!("{written} in {a}"));
        }
    }
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        graph.entry(a).or_default().insert(b);
    }
    // Every module that can reach itself is on a circle: name each with the imports around it.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(m) = todo.pop() {
            for &n in graph.get(m).into_iter().flatten() {
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let mut circles = Vec::new();
    for ((a, b), written) in &edges {
        if reach(b).contains(a.as_str()) {
            circles.push(format!("{a} → {b} ({written}) and back"));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn nothing_imports_upward() {
    let modules = modules();
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&top(m)));
    for m in modules.keys() {
        assert!(
            layer(m).is_some(),
            "`{}` is in no layer of tests/layout.rs: add it where it belongs",
            top(m)
        );
    }
    let upward: Vec<String> = edges(&modules)
        .into_iter()
        .filter(|((a, b), _)| layer(a) < layer(b))
        .map(|((a, b), w)| format!("{a} imports {b} ({w})"))
        .collect();
    assert!(upward.is_empty(), "imports upward:\n{}", upward.join("\n"));
}

#[test]
fn the_checker_reads_crate_super_and_grouped_paths_and_skips_comments() {
    let mut modules = BTreeMap::new();
    modules.insert("model".to_string(), "use crate::stream::x;".to_string());
    modules.insert(
        "stream".to_string(),
        "use crate::{model::Model, lang};".to_string(),
    );
    modules.insert(
        "stream::consume".to_string(),
        "use super::pipeline::Observe;".into(),
    );
    modules.insert(
        "stream::pipeline".to_string(),
        "use super::consume::Consumer;".into(),
    );
    modules.insert("lang".to_string(), "// use crate::model::x;".into());
    let e = edges(&modules);
    let keys: Vec<(&str, &str)> = e.keys().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("model", "stream"),
            ("stream", "lang"),
            ("stream", "model"),
            ("stream::consume", "stream::pipeline"),
            ("stream::pipeline", "stream::consume"),
        ]
    );
}
