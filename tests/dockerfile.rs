//! The Dockerfile, checked without a Docker engine (none runs on the build machines).
//!
//! - The dependency layer is replayed: the files its `COPY`s bring are copied into an empty
//!   directory, its `RUN` is run up to `cargo build`, and cargo must then load the manifest.
//!   (It once could not: explicit `[[bench]]` targets need their files even for `cargo build`.)
//! - Nothing the crate embeds with `include_str!`/`include_bytes!` is excluded from the build
//!   context by `.dockerignore`, or `cargo build` in the image fails where it works here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Dockerfile instructions (keyword, arguments): continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The builder stage: from `FROM ... AS builder` to the next `FROM`.
fn builder_stage(all: &[(String, String)]) -> Vec<(String, String)> {
    let start = all
        .iter()
        .position(|(k, a)| k == "FROM" && a.to_ascii_lowercase().ends_with(" as builder"))
        .expect("the Dockerfile has a `FROM ... AS builder` stage");
    all[start + 1..]
        .iter()
        .take_while(|(k, _)| k != "FROM")
        .cloned()
        .collect()
}

fn copy_into(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            copy_into(&entry.path(), &dst.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::copy(src, dst).unwrap_or_else(|e| panic!("COPY {}: {e}", src.display()));
    }
}

#[test]
fn dependency_layer_loads_the_manifest_with_only_what_it_copies() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stage = builder_stage(&instructions(&text));
    let layer_end = stage
        .iter()
        .position(|(k, a)| k == "RUN" && a.contains("cargo build"))
        .expect("the builder stage builds the dependencies in a RUN");
    let dir = tempfile::tempdir().unwrap();
    for (keyword, args) in &stage[..layer_end] {
        if keyword != "COPY" {
            continue;
        }
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (dest, sources) = words.split_last().expect("COPY has a destination");
        assert_ne!(
            *sources,
            ["."],
            "the dependency layer must not copy the whole context"
        );
        for source in sources {
            assert!(
                !ignored(&dockerignore(), source),
                "the Dockerfile copies {source}, which .dockerignore keeps out of the context"
            );
            let dst = if dest.ends_with('/') || sources.len() > 1 {
                dir.path()
                    .join(dest)
                    .join(Path::new(source).file_name().unwrap())
            } else {
                dir.path().join(dest)
            };
            copy_into(&repo().join(source), &dst);
        }
    }
    // The RUN's commands before `cargo build` make the stub sources.
    let run = &stage[layer_end].1;
    let mut built = false;
    for command in run.split("&&").map(str::trim) {
        if command.starts_with("cargo build") {
            assert_eq!(command, "cargo build --release --locked");
            built = true;
            break;
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "`{command}` failed in the replayed layer");
    }
    assert!(built);
    // `cargo fetch` loads the whole manifest (every target's file must exist), then checks the
    // lock file; offline and for the host only, it needs nothing this test run did not fetch.
    let output = Command::new(env!("CARGO"))
        .args(["fetch", "--locked", "--offline", "--target"])
        .arg(host_triple())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the Dockerfile's dependency layer cannot load the manifest:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn host_triple() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV prints the host")
}

/// `.dockerignore` patterns as Docker reads them: relative to the context root, one glob
/// (`*`, `?`) per path component, a pattern matching a directory excluding all below it.
fn ignored(patterns: &[String], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    patterns.iter().any(|pattern| {
        let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
        pattern.len() <= parts.len() && pattern.iter().zip(&parts).all(|(p, s)| glob(p, s))
    })
}

fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

#[test]
fn dockerignore_pattern_matching() {
    let patterns = vec![
        "/target".to_owned(),
        "*.pem".to_owned(),
        "/certs".to_owned(),
    ];
    assert!(ignored(&patterns, "target/debug/x"));
    assert!(ignored(&patterns, "ca.pem"));
    assert!(ignored(&patterns, "certs/README.md"));
    assert!(!ignored(&patterns, "src/target.rs"));
    assert!(!ignored(&patterns, "tests/golden/ca.pem.txt"));
}

fn dockerignore() -> Vec<String> {
    std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dockerignore_keeps_every_embedded_file() {
    let patterns = dockerignore();
    assert!(
        patterns.iter().all(|p| !p.starts_with('!')),
        "exceptions (!) are not modelled here"
    );
    let mut embedded = Vec::new();
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = &text[at + macro_name.len()..];
                    let file = &rest[..rest.find('"').unwrap()];
                    let resolved = path.parent().unwrap().join(file);
                    let resolved = resolved
                        .canonicalize()
                        .unwrap_or_else(|e| panic!("{} embeds {file}: {e}", path.display()));
                    embedded.push(resolved);
                }
            }
        }
    }
    assert!(
        !embedded.is_empty(),
        "the crate embeds its default policy at least"
    );
    let root = repo().canonicalize().unwrap();
    for file in embedded {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            !ignored(&patterns, &relative),
            "{relative} is embedded by the crate but excluded by .dockerignore"
        );
    }
}
