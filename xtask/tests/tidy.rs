//! Tidy checks: module docs, the `expect` rule, the core's dependency boundary, and that
//! ARCHITECTURE.md and the README stay true to the tree.

#![allow(clippy::unwrap_used)] // a tidy test: a failed unwrap is a failed check

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut files = Vec::new();
    for dir in crate_dirs() {
        rust_sources(&dir.join("src"), &mut files);
        if dir.join("tests").exists() {
            rust_sources(&dir.join("tests"), &mut files);
        }
    }
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc: {missing:?}"
    );
}

#[test]
fn every_non_test_expect_names_its_invariant() {
    let mut files = Vec::new();
    for dir in crate_dirs() {
        // The conformance crate is test support: its expects are assertions.
        if dir.ends_with("baton-conformance") {
            continue;
        }
        rust_sources(&dir.join("src"), &mut files);
    }
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let non_test = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in non_test.lines().enumerate() {
            if let Some(pos) = line.find(".expect(")
                && !line[pos..].starts_with(".expect(\"invariant:")
            {
                bad.push(format!("{}:{}", f.display(), i + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "`.expect(` outside tests must start its message with `invariant:`: {bad:?}"
    );
}

#[test]
fn the_core_has_no_io_dependencies() {
    let manifest = std::fs::read_to_string(root().join("crates/baton-core/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap_or("")
        .split("\n[")
        .next()
        .unwrap_or("");
    for banned in [
        "tokio",
        "rusqlite",
        "postgres",
        "sqlx",
        "async-nats",
        "reqwest",
        "axum",
        "hyper",
        "uuid",
        "rand",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "baton-core must stay pure: it depends on `{banned}`"
        );
    }
}

#[test]
fn architecture_md_names_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for dir in crate_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            arch.contains(&format!("`{name}`")),
            "ARCHITECTURE.md does not describe `{name}`"
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        readme.contains("./test.sh"),
        "the README names the test command"
    );
    assert!(
        ci.contains("./test.sh"),
        ".ci/run calls the README's test command"
    );
}

#[test]
fn markdown_links_resolve() {
    let mut broken = Vec::new();
    let mut docs = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    if let Ok(entries) = std::fs::read_dir(root().join("docs")) {
        docs.extend(
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
    }
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = rest.split(')').next().unwrap_or("");
            if target.starts_with("http") || target.starts_with('#') || target.is_empty() {
                continue;
            }
            let path = doc
                .parent()
                .unwrap()
                .join(target.split('#').next().unwrap());
            if !path.exists() {
                broken.push(format!("{} -> {target}", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
}
