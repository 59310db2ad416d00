//! build.rs's choice of files to watch (build/git.rs), so that `--version` names the commit
//! being built: on git's real layouts (a repository and a linked worktree, made with the git
//! command) and on the layouts git only produces over time (packed refs, detached HEAD).

#[path = "../build/git.rs"]
mod git;

use std::path::{Path, PathBuf};
use std::process::Command;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// What a watched path looks like to Cargo (content for a file, names for a directory).
fn snapshot(paths: &[PathBuf]) -> Vec<(PathBuf, Vec<String>)> {
    paths
        .iter()
        .map(|p| {
            let seen = if p.is_dir() {
                let mut names: Vec<String> = std::fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            } else {
                vec![std::fs::read_to_string(p).unwrap_or_default()]
            };
            (p.clone(), seen)
        })
        .collect()
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git is installed where the tests run");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_commit_in_a_repository_or_a_linked_worktree_changes_a_watched_file() {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("main");
    std::fs::create_dir(&main).unwrap();
    git(&main, &["init", "-q", "-b", "trunk"]);
    git(&main, &["commit", "-q", "--allow-empty", "-m", "one"]);
    git(&main, &["worktree", "add", "-q", "-b", "dev", "../wt"]);
    let wt = tmp.path().join("wt");
    assert!(
        wt.join(".git").is_file(),
        "a linked worktree has a .git file"
    );

    for (dir, name) in [(&main, "main repository"), (&wt, "worktree")] {
        let watched = git::watched_paths(dir);
        assert!(
            watched.iter().all(|p| p.exists()),
            "{name}: only existing paths ({watched:?})"
        );
        let before = snapshot(&watched);
        git(dir, &["commit", "-q", "--allow-empty", "-m", "two"]);
        assert_ne!(
            snapshot(&watched),
            before,
            "{name}: a commit on the checked-out branch changes nothing watched ({watched:?})"
        );
    }

    // Another worktree's commit leaves this one's watched files alone, so its binary is not
    // rebuilt for nothing.
    let watched = git::watched_paths(&wt);
    let before = snapshot(&watched);
    git(&main, &["commit", "-q", "--allow-empty", "-m", "three"]);
    assert_eq!(snapshot(&watched), before, "{watched:?}");

    // Switching branches changes HEAD.
    let watched = git::watched_paths(&main);
    let before = snapshot(&watched);
    git(&main, &["switch", "-q", "-c", "other"]);
    assert_ne!(snapshot(&watched), before);
}

#[test]
fn packed_branches_nested_names_and_detached_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let dot_git = repo.join(".git");
    // A branch git has packed: no loose ref yet, so its directory is watched (the next commit
    // creates the loose ref there) together with packed-refs.
    write(&dot_git.join("HEAD"), "ref: refs/heads/feature/x\n");
    write(&dot_git.join("packed-refs"), "0123 refs/heads/feature/x\n");
    std::fs::create_dir_all(dot_git.join("refs/heads")).unwrap();
    let crate_dir = repo.join("sub/crate");
    std::fs::create_dir_all(&crate_dir).unwrap();
    assert_eq!(
        git::watched_paths(&crate_dir),
        [
            dot_git.join("HEAD"),
            dot_git.join("refs/heads"),
            dot_git.join("packed-refs")
        ],
        "found from a subdirectory, as git finds it"
    );
    write(&dot_git.join("refs/heads/feature/x"), "0123\n");
    assert_eq!(
        git::watched_paths(repo),
        [
            dot_git.join("HEAD"),
            dot_git.join("refs/heads/feature/x"),
            dot_git.join("packed-refs")
        ]
    );

    // Detached: the commit is in HEAD itself.
    write(
        &dot_git.join("HEAD"),
        "0123456789abcdef0123456789abcdef01234567\n",
    );
    assert_eq!(
        git::watched_paths(repo),
        [dot_git.join("HEAD"), dot_git.join("packed-refs")]
    );

    // A ref that would lead outside the repository is not followed.
    write(&dot_git.join("HEAD"), "ref: refs/../../../etc/passwd\n");
    assert_eq!(
        git::watched_paths(repo),
        [dot_git.join("HEAD"), dot_git.join("packed-refs")]
    );
}

#[test]
fn no_repository_or_a_broken_git_file_watches_nothing_and_does_not_fail() {
    let tmp = tempfile::tempdir().unwrap();
    // (The temporary directory is not inside a repository on the machines the tests run on;
    // if it were, the search upwards would rightly find that one.)
    if tmp.path().ancestors().all(|d| !d.join(".git").exists()) {
        assert!(git::watched_paths(tmp.path()).is_empty());
    }
    write(&tmp.path().join(".git"), "not a gitdir line\n");
    assert!(git::watched_paths(tmp.path()).is_empty());
    write(&tmp.path().join(".git"), "gitdir: does/not/exist\n");
    assert!(git::watched_paths(tmp.path()).is_empty());
}
