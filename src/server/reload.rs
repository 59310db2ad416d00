//! Reloading the serving certificate and the policy file while serving.
//!
//! Both are re-read from their paths on an interval and compared by content: cheap, and
//! immune to the symlink swaps kubelet uses to update Secret and ConfigMap volumes (an inotify
//! watch on the old file would go stale). A new file that does not load is logged and counted,
//! and the previous certificate or policy keeps serving; readiness is not affected.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::tls::{Reload, ReloadingCert};
use crate::metrics::{Metrics, ResultLabels};
use crate::policy::{Policy, PolicyFile};

/// The policy file being served, and the text it was parsed from.
pub struct PolicySource {
    path: PathBuf,
    loaded: std::sync::Mutex<Vec<u8>>,
    pub current: Arc<ArcSwap<Policy>>,
}

impl PolicySource {
    pub fn new(path: PathBuf, text: Vec<u8>, current: Arc<ArcSwap<Policy>>) -> Self {
        Self {
            path,
            loaded: std::sync::Mutex::new(text),
            current,
        }
    }

    /// Re-reads the file; swaps in the new policy when the text changed and is valid.
    pub fn reload(&self) -> Result<Reload, String> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read policy file {}: {e}", self.path.display()))?;
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *loaded == bytes {
            return Ok(Reload::Unchanged);
        }
        let file = PolicyFile::from_bytes(&self.path, bytes).map_err(|e| e.to_string())?;
        self.current.store(Arc::new(file.policy));
        *loaded = file.bytes;
        Ok(Reload::Reloaded)
    }
}

/// Checks the certificate and the policy once, logging and counting the results.
pub fn reload_once(cert: Option<&ReloadingCert>, policy: Option<&PolicySource>, metrics: &Metrics) {
    if let Some(cert) = cert {
        match cert.reload() {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded) => {
                tracing::info!("serving certificate reloaded");
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
            }
            Err(error) => {
                tracing::error!(%error, "new serving certificate rejected; still serving the previous one");
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
            }
        }
    }
    if let Some(policy) = policy {
        match policy.reload() {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded) => {
                tracing::info!("policy reloaded");
                metrics
                    .policy_reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
            }
            Err(error) => {
                tracing::error!(%error, "new policy rejected; still enforcing the previous one");
                metrics
                    .policy_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
            }
        }
    }
}

/// Polls for changes every `interval` until the task is dropped.
pub async fn reload_loop(
    cert: Option<Arc<ReloadingCert>>,
    policy: Option<Arc<PolicySource>>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; everything was just loaded
    loop {
        ticker.tick().await;
        let (cert, policy, metrics) = (cert.clone(), policy.clone(), metrics.clone());
        // File reads and PEM/YAML parsing are blocking work: keep them off the reactor.
        let _ = tokio::task::spawn_blocking(move || {
            reload_once(cert.as_deref(), policy.as_deref(), &metrics)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n";

    #[test]
    fn a_new_valid_policy_is_swapped_in_and_an_invalid_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, VALID).unwrap();
        let current = Arc::new(ArcSwap::from_pointee(Policy::parse(VALID).unwrap()));
        let source = PolicySource::new(path.clone(), VALID.as_bytes().to_vec(), current.clone());
        assert_eq!(source.reload().unwrap(), Reload::Unchanged);

        let warn = format!("{VALID}rules:\n  restoreReadiness:\n    mode: warn\n");
        std::fs::write(&path, &warn).unwrap();
        assert_eq!(source.reload().unwrap(), Reload::Reloaded);
        assert_eq!(
            current.load().rules.restore_readiness.mode,
            crate::policy::Mode::Warn
        );

        // A broken policy (a typo'd field) is refused; the served policy does not change.
        std::fs::write(
            &path,
            format!("{VALID}rules:\n  restoreReadiness:\n    mood: off\n"),
        )
        .unwrap();
        let err = source.reload().unwrap_err();
        assert!(err.contains("mood"), "{err}");
        assert_eq!(
            current.load().rules.restore_readiness.mode,
            crate::policy::Mode::Warn
        );
        // A missing file (ConfigMap being swapped) likewise.
        std::fs::remove_file(&path).unwrap();
        assert!(source.reload().is_err());
        assert_eq!(
            current.load().rules.restore_readiness.mode,
            crate::policy::Mode::Warn
        );

        let metrics = Metrics::new();
        reload_once(None, Some(&source), &metrics);
        assert!(
            metrics
                .encode()
                .contains("storage_admission_policy_reloads_total{result=\"error\"} 1")
        );
    }
}
