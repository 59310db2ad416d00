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

use super::metrics::{Metrics, ResultLabels};
use super::tls::{Reload, ReloadingCert};
use crate::policy::Policy;

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
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("policy file {} is not UTF-8", self.path.display()))?;
        let policy = Policy::parse(text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.current.store(Arc::new(policy));
        *loaded = bytes;
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
