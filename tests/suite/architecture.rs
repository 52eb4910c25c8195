//! The layers of docs/architecture.md hold: a module imports only from its own layer and the
//! layers below it, a flow never imports another flow, and a step never imports a flow. Read
//! from the sources, so a new `use` that breaks a rule fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers, lowest first, and the top-level modules of `shared/src` in each.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "allowlist",
            "api_token",
            "audit",
            "aws",
            "breached",
            "clock",
            "config",
            "crypto",
            "domain",
            "jwt",
            "keys",
            "mail",
            "password",
            "policy",
            "runtime",
            "telemetry",
            "text",
            "totp",
        ],
    ),
    ("store", &["store"]),
    ("state", &["state"]),
    ("flows", &["access", "error", "flows"]),
    (
        "edge",
        &[
            "problem",
            "http",
            "api",
            "authorizer",
            "offboarding",
            "key_rotation",
            "local",
            "admin",
            "console",
            "lib",
            "bin",
        ],
    ),
];

/// The flows (`shared/src/flows/*.rs`), which must not import one another.
const FLOWS: &[&str] = &[
    "allowlist",
    "audit",
    "email",
    "invitations",
    "keys",
    "login",
    "mfa",
    "offboarding",
    "operator",
    "org",
    "password",
    "refresh",
    "sessions",
    "signup",
    "tokens",
    "users",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src")
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

/// The top-level module a file belongs to (`flows` for `flows/steps/lockout.rs`).
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, mods)| mods.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of LAYERS"))
}

/// The top-level modules a source names through `crate::`.
fn crate_refs(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    rust_files(&src(), &mut out);
    out.sort();
    out
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let mut broken = BTreeMap::new();
    for file in files() {
        let module = top_module(&file);
        let own = layer_of(&module);
        let source = std::fs::read_to_string(&file).unwrap();
        for used in crate_refs(&source) {
            if layer_of(&used) > own {
                broken
                    .entry(file.display().to_string())
                    .or_insert_with(Vec::new)
                    .push(used);
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports from a higher layer: {broken:#?}"
    );
}

#[test]
fn no_flow_imports_another_and_no_step_imports_a_flow() {
    let flows_dir = src().join("flows");
    for file in files() {
        let Ok(rel) = file.strip_prefix(&flows_dir) else {
            continue;
        };
        let name = rel.to_string_lossy().to_string();
        if name == "mod.rs" {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        let own = name.trim_end_matches(".rs");
        for flow in FLOWS {
            if *flow == own {
                continue;
            }
            for pattern in [
                format!("super::{flow}"),
                format!("flows::{flow}"),
                format!("super::super::{flow}"),
            ] {
                assert!(
                    !source.contains(&pattern),
                    "flows/{name} names the flow {flow} ({pattern}): shared steps go in flows::steps"
                );
            }
        }
    }
}

#[test]
fn every_flow_module_is_listed() {
    let mut found: Vec<String> = std::fs::read_dir(src().join("flows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .filter(|n| n != "mod")
        .collect();
    found.sort();
    assert_eq!(found, FLOWS, "FLOWS lists the flows");
}

#[test]
fn the_layer_check_sees_a_violation() {
    // A store module naming a flow would be refused.
    assert!(layer_of("flows") > layer_of("store"));
    assert_eq!(
        crate_refs("use crate::flows::Error; crate::store::x"),
        ["flows", "store"]
    );
}

/// The docs point at code by path (`shared/src/flows/login.rs`, or `flows/login.rs` from
/// `shared/src`): every such path names a file that exists, so a move cannot leave a doc
/// pointing at nothing.
#[test]
fn every_source_path_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bases = [
        root.clone(),
        root.join("shared/src"),
        root.join("shared/src/store"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.push(root.join("README.md"));
    let mut missing = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for quoted in text.split('`').skip(1).step_by(2) {
            let is_path = quoted.contains('/')
                && quoted.ends_with(".rs")
                && quoted
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
            if is_path && !bases.iter().any(|b| b.join(quoted).is_file()) {
                missing.push(format!("{}: {quoted}", doc.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs name files that do not exist: {missing:#?}"
    );
}
