//! Which files build.rs asks Cargo to watch so that `--version` names the commit being built.
//!
//! HEAD alone is not enough: a commit on the checked-out branch changes the ref HEAD points
//! to (`refs/heads/X`, or `packed-refs` once git has packed it), not HEAD. In a linked
//! worktree `.git` is a file (`gitdir: …`), HEAD lives in that worktree's own git directory
//! and the branch refs in the common one (named by its `commondir` file).
//!
//! Only paths that exist are returned: Cargo treats a watched path that does not exist as
//! always changed, and would rebuild the binary on every build. Anything unexpected (no
//! repository, an unreadable `.git` file) yields what could be found, never an error: the
//! commit is informational, and container builds have no `.git` at all.

use std::path::{Component, Path, PathBuf};

/// The files (and directories) whose change can mean HEAD now names another commit, for the
/// repository containing `start` (searched upwards, as git does).
pub fn watched_paths(start: &Path) -> Vec<PathBuf> {
    let Some(dot_git) = start
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|p| p.exists())
    else {
        return Vec::new();
    };
    let Some(git_dir) = git_dir(&dot_git) else {
        return Vec::new();
    };
    let head = git_dir.join("HEAD");
    let Ok(head_text) = std::fs::read_to_string(&head) else {
        return Vec::new();
    };
    let mut paths = vec![head];
    // A linked worktree shares the refs of the main repository (`commondir`, usually `../..`).
    let common_dir = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    if let Some(ref_name) = head_text.strip_prefix("ref:").map(str::trim) {
        // Only a plain relative name under refs/: HEAD's content must not send Cargo to
        // watch files outside the repository.
        let plain = Path::new(ref_name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if plain && ref_name.starts_with("refs/") {
            let loose = common_dir.join(ref_name);
            if loose.exists() {
                paths.push(loose);
            } else if let Some(dir) = loose
                .ancestors()
                .skip(1)
                .take_while(|d| d.starts_with(&common_dir) && *d != common_dir)
                .find(|d| d.is_dir())
            {
                // The branch is only in packed-refs (or has no commit yet): the next commit
                // creates the loose ref, which shows as a change of its directory.
                paths.push(dir.to_owned());
            }
        }
    }
    // Detached HEAD: the commit is in HEAD itself, already watched.
    for shared in ["packed-refs", "reftable"] {
        // reftable: git's newer ref storage, where HEAD is a stub and every ref is in there.
        let path = common_dir.join(shared);
        if path.exists() {
            paths.push(path);
        }
    }
    paths
}

/// `.git` itself when it is a directory; the directory a `gitdir: PATH` file names otherwise
/// (a linked worktree or a submodule), relative paths taken from the file's directory.
fn git_dir(dot_git: &Path) -> Option<PathBuf> {
    if dot_git.is_dir() {
        return Some(dot_git.to_owned());
    }
    let text = std::fs::read_to_string(dot_git).ok()?;
    let target = text.strip_prefix("gitdir:")?.trim();
    let dir = dot_git.parent()?.join(target);
    dir.is_dir().then_some(dir)
}
