//! The layering rule of ARCHITECTURE.md, checked on the source tree: each folder of `src/`
//! imports only its own modules and those of the layers below it, `source/` and `target/`
//! never each other, and nothing imports `cli/`.

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, lowest first; folders on one line share a layer and may not import each
/// other. `error` and `quote` are the base every layer uses.
const LAYERS: &[&[&str]] = &[
    &["error", "quote"],
    &["pg"],
    &["plan"],
    &["copy"],
    &["objects"],
    &["source", "target"],
    &["observe"],
    &["dump"],
    &["run"],
    &["cli"],
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// The top-level modules a file names through `crate::`, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
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

#[test]
fn every_folder_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = layer(&top)
            .unwrap_or_else(|| panic!("{} is in no layer of ARCHITECTURE.md", rel.display()));
        checked += 1;
        for used in imports(&std::fs::read_to_string(file).unwrap()) {
            if used == top {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own || (l == 0 && own == 0) => {}
                Some(_) => broken.push(format!("{} imports crate::{used}", rel.display())),
                None => broken.push(format!(
                    "{} imports crate::{used}, which is in no layer",
                    rel.display()
                )),
            }
        }
    }
    assert!(checked > 20, "only {checked} files were checked");
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_not_comments() {
    let found = imports(
        "use crate::pg::Source;\n// crate::cli is not imported\nlet x = crate::plan::human_bytes(1); // crate::run\n",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["pg".to_string(), "plan".to_string()]
    );
    assert_eq!(layer("source"), layer("target"));
    assert!(layer("copy") < layer("observe") && layer("copy") < layer("dump"));
}

/// The crates `[dependencies]` (or `[dev-dependencies]`) of Cargo.toml declares.
fn declared(manifest: &str, section: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == section;
        } else if inside && let Some((name, _)) = line.split_once('=') {
            out.push(name.trim().replace('-', "_"));
        }
    }
    out
}

fn names_crate(files: &[std::path::PathBuf], name: &str) -> bool {
    files.iter().any(|f| {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        text.contains(&format!("{name}::")) || text.contains(&format!("use {name}"))
    })
}

#[test]
fn every_declared_crate_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut code = Vec::new();
    rust_files(&root.join("src"), &mut code);
    code.push(root.join("build.rs"));
    let mut tests = Vec::new();
    rust_files(&root.join("tests"), &mut tests);
    rust_files(&root.join("benches"), &mut tests);
    let deps = declared(&manifest, "[dependencies]");
    let dev = declared(&manifest, "[dev-dependencies]");
    assert!(deps.len() > 10 && !dev.is_empty(), "{deps:?} {dev:?}");
    let unused: Vec<&String> = deps
        .iter()
        .filter(|d| !names_crate(&code, d))
        .chain(dev.iter().filter(|d| !names_crate(&tests, d)))
        .collect();
    assert!(unused.is_empty(), "declared but never used: {unused:?}");
}
