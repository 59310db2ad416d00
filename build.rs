//! Records the git commit for `storage-admission --version`: the
//! STORAGE_ADMISSION_GIT_COMMIT environment variable (container builds have no .git), else
//! `git rev-parse`, else "unknown".
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STORAGE_ADMISSION_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
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
