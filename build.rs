//! Records the git commit for `storage-admission --version`: the
//! STORAGE_ADMISSION_GIT_COMMIT environment variable (container builds have no .git), else
//! `git rev-parse`, else "unknown".
use std::path::Path;
use std::process::Command;

#[path = "build/git.rs"]
mod git;

fn main() {
    println!("cargo:rerun-if-env-changed=STORAGE_ADMISSION_GIT_COMMIT");
    // HEAD and the ref it points to (build/git.rs): a new commit on the current branch, a
    // branch switch, or a worktree's own HEAD re-runs this script.
    let watched = git::watched_paths(Path::new(env!("CARGO_MANIFEST_DIR")));
    if watched.is_empty() {
        // Printing no rerun-if-changed at all would make Cargo re-run this script whenever
        // any file of the package changes; with no repository there is nothing to watch.
        println!("cargo:rerun-if-changed=build.rs");
    }
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let commit = std::env::var("STORAGE_ADMISSION_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STORAGE_ADMISSION_GIT_COMMIT={commit}");
}
