//! The layering rule of `docs/architecture.md`, checked on the source: each top-level
//! module of `src/` belongs to a layer, and imports only from layers below its own — a
//! concern (`auth`, `policy`, …) from none of the other concerns either. So there is no
//! cycle among top-level modules, and a newcomer can read the crate bottom-up.
//!
//! Modules of one layer may import each other, but never in a cycle: that is checked too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module's layer, lowest first (see `docs/architecture.md`).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf",
        &[
            "cluster", "glob", "hex", "inforce", "request", "tls", "upstream",
        ],
    ),
    ("protocol", &["mcp", "error", "body"]),
    ("config", &["config"]),
    (
        "concerns",
        &[
            "auth",
            "policy",
            "ratelimit",
            "guard",
            "audit",
            "proxy",
            "relay",
            "aggregate",
            "search",
            "edge",
            "telemetry",
        ],
    ),
    ("gateway", &["gateway", "incident"]),
    ("request path", &["stack", "health"]),
    ("reload", &["reload"]),
    ("server", &["server"]),
    ("admin", &["admin"]),
    ("cli", &["cli"]),
];

/// The layer of a top-level module.
fn layer(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The top-level module each `.rs` file under `src/` belongs to (`None` for the crate
/// root files `lib.rs` and `main.rs`, and for `test_support`, which only unit tests use).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "test_support")).then(|| name.to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file refers to: `crate::x`, `crate::{x, y}`, and `super::x` in
/// a file directly under `src/`. Comments are left out (intra-doc links are no import).
fn references(text: &str, top_level_file: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for line in text.lines() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                found.insert(ident(after));
            }
            rest = after;
        }
        if top_level_file {
            let mut rest = code;
            while let Some(at) = rest.find("super::") {
                let after = &rest[at + "super::".len()..];
                found.insert(ident(after));
                rest = after;
            }
        }
    }
    found.retain(|name| layer(name).is_some());
    found
}

#[test]
fn no_module_imports_from_a_layer_above_it_or_another_concern_or_in_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    // (from, to) → the first file where it happens.
    let mut broken: BTreeMap<(String, String), String> = BTreeMap::new();
    // Every module → the modules it imports.
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let Some(from_layer) = layer(&from) else {
            unplaced.insert(from);
            continue;
        };
        let top_level_file = file.parent() == Some(src.as_path());
        let text = std::fs::read_to_string(file).unwrap();
        for to in references(&text, top_level_file) {
            if to == from {
                continue;
            }
            imports.entry(from.clone()).or_default().insert(to.clone());
            let to_layer = layer(&to).unwrap_or(0);
            let upward = to_layer > from_layer;
            // Concerns stand side by side: each on its own, on the layers below.
            let sideways = to_layer == from_layer && LAYERS[from_layer].0 == "concerns";
            if upward || sideways {
                let shown = file.strip_prefix(&src).unwrap().display().to_string();
                broken.entry((from.clone(), to)).or_insert(shown);
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "top-level modules in no layer (add them to LAYERS and docs/architecture.md): {unplaced:?}"
    );

    let broken: Vec<String> = broken
        .iter()
        .map(|((from, to), file)| format!("{from} -> {to} (src/{file})"))
        .collect();
    assert!(
        broken.is_empty(),
        "imports from a layer above, or from another concern (see docs/architecture.md):\n  {}",
        broken.join("\n  ")
    );
    let cycle = first_cycle(&imports);
    assert!(
        cycle.is_none(),
        "top-level modules that import each other in a cycle: {}",
        cycle.unwrap_or_default().join(" -> ")
    );
}

/// A cycle in `imports` (module → the modules it imports), as the modules along it, the
/// first again at the end.
fn first_cycle(imports: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        imports: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in imports.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, imports, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    imports
        .keys()
        .find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
}

#[test]
fn a_cycle_is_found() {
    let graph = |edges: &[(&str, &str)]| {
        let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            imports
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
        }
        imports
    };
    assert_eq!(
        first_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        first_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "b")])),
        Some(vec!["b".to_owned(), "c".to_owned(), "b".to_owned()])
    );
}

#[test]
fn the_reader_finds_imports_and_skips_comments() {
    let text = "use crate::{mcp::jsonrpc, policy};\n\
                // crate::gateway is only mentioned\n\
                let x = crate::audit::event::Kind::Request; // crate::cli\n\
                use super::ratelimit::Rate;\n";
    let found = references(text, true);
    let expected: BTreeSet<String> = ["mcp", "policy", "audit", "ratelimit"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(found, expected);
    assert!(!references(text, false).contains("ratelimit"));
}
