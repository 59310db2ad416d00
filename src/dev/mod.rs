//! `serve --dev`: the demo cluster, a sample review and throw-away certificates, all inside
//! the binary, so the command it prints works on any machine and from any directory.
//!
//! The files beside this module are the canonical copies: the golden tests read the same
//! ones (`src/dev/state.yaml` is their fallback cluster, `src/dev/review.json` the review of
//! the captured case [`SAMPLE_REVIEW_CASE`]).

use std::path::{Path, PathBuf};

use crate::certs::{self, CertError};
use crate::cluster::ClusterIndex;
use crate::cluster::state_file::{self, StateError};

/// The demo cluster: two nodes in `cn-hangzhou-b`, a default CSI disk class, its default
/// snapshot class, a PVC and a ready snapshot of it.
pub const DEMO_STATE: &str = include_str!("state.yaml");

/// A real AdmissionReview captured from kube-apiserver: a VolumeSnapshot without a class,
/// which the mutating webhook gives the driver's default class.
pub const SAMPLE_REVIEW: &str = include_str!("review.json");

/// The golden case (under `tests/golden/captured/`) whose review is [`SAMPLE_REVIEW`].
pub const SAMPLE_REVIEW_CASE: &str = "mutate-create-volumesnapshot-disk-snapshot";

/// The name [`write`] gives the sample review in the dev directory.
pub const SAMPLE_REVIEW_FILE: &str = "review.json";

/// The demo cluster as an index.
pub fn demo_cluster() -> Result<ClusterIndex, StateError> {
    state_file::parse(DEMO_STATE, Path::new("src/dev/state.yaml")).map(|loaded| loaded.index)
}

/// The directory `--dev` writes into when no `--dev-dir` is given.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("storage-admission-dev")
}

/// What [`write`] wrote, with absolute paths.
#[derive(Debug, Clone)]
pub struct DevFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub review: PathBuf,
}

impl DevFiles {
    /// The command that posts the sample review, for a server on `port` (0: not known yet).
    pub fn curl(&self, port: u16) -> String {
        let port = if port == 0 {
            "PORT".to_owned()
        } else {
            port.to_string()
        };
        format!(
            "curl --cacert {} -H 'Content-Type: application/json' --data @{} https://localhost:{port}/mutate",
            self.ca_cert.display(),
            self.review.display()
        )
    }
}

/// Writes throw-away certificates for localhost (valid 7 days) and the sample review into
/// `dir`, replacing what an earlier start left there.
pub fn write(dir: &Path) -> Result<DevFiles, CertError> {
    // Absolute, so the printed command works from any directory.
    let dir = std::path::absolute(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    // Throw-away files, regenerated on every start: replacing them is the point.
    let written = certs::write(
        &dir,
        &certs::generate(&names, "storage-admission dev", 7)?,
        certs::Existing::Replace,
    )?;
    let review = dir.join(SAMPLE_REVIEW_FILE);
    std::fs::write(&review, SAMPLE_REVIEW).map_err(|source| CertError::Write {
        path: review.clone(),
        source,
    })?;
    Ok(DevFiles {
        ca_cert: written.ca_cert,
        cert: written.cert,
        key: written.key,
        review,
    })
}

/// Prints where the files are and how to try the server.
pub fn print_instructions(files: &DevFiles, port: u16) {
    let dir = files.ca_cert.parent().unwrap_or(Path::new("."));
    println!(
        "development certificates (valid 7 days) and a sample review written to {}:",
        dir.display()
    );
    println!("  CA:          {}", files.ca_cert.display());
    println!("  certificate: {}", files.cert.display());
    println!("  key:         {}", files.key.display());
    println!("  review:      {}", files.review.display());
    println!("try it (from any directory):");
    println!("  {}", files.curl(port));
    // With --listen on port 0 the port is picked when binding, after this: the `serving` log
    // line that follows names it.
    if port == 0 {
        println!("  (PORT: the port of https_addr in the `serving` log line)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_cluster_and_the_sample_review_parse() {
        demo_cluster().unwrap();
        let review: serde_json::Value = serde_json::from_str(SAMPLE_REVIEW).unwrap();
        assert_eq!(review["request"]["kind"]["kind"], "VolumeSnapshot");
    }

    #[test]
    fn write_puts_the_sample_review_next_to_the_certificates_with_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path()).unwrap();
        assert!(files.review.is_absolute() && files.ca_cert.is_absolute());
        assert_eq!(files.review.parent(), files.ca_cert.parent());
        assert_eq!(
            std::fs::read_to_string(&files.review).unwrap(),
            SAMPLE_REVIEW
        );
        let curl = files.curl(8443);
        assert!(
            curl.contains(&format!("--data @{}", files.review.display())),
            "{curl}"
        );
        assert!(curl.ends_with("https://localhost:8443/mutate"), "{curl}");
    }
}
