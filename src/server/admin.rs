//! The admin endpoints, on their own plain-HTTP port and outside the webhook's trace layer:
//! `/livez` (the process answers), `/readyz` (it should receive reviews), `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::metrics::Metrics;
use super::tls::ReloadingCert;
use crate::cluster::{ClusterIndex, SyncState};

/// What readiness depends on.
pub struct Health {
    shutting_down: AtomicBool,
    index: Arc<ClusterIndex>,
    metrics: Arc<Metrics>,
    cert: Arc<ReloadingCert>,
}

impl Health {
    pub fn new(index: Arc<ClusterIndex>, metrics: Arc<Metrics>, cert: Arc<ReloadingCert>) -> Self {
        Self {
            shutting_down: AtomicBool::new(false),
            index,
            metrics,
            cert,
        }
    }

    /// Readiness goes false first thing on SIGTERM, so endpoints stop sending new reviews.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready; otherwise every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if self.shutting_down.load(Ordering::SeqCst) {
            reasons.push("shutting down".to_owned());
        }
        if self.cert.current().is_none() {
            // Self-managed mode before the TLS Secret was first read: every handshake fails.
            reasons.push("no serving certificate yet".to_owned());
        }
        for (kind, state) in self.index.states() {
            // A missing CRD is a fact about the cluster, not a reason to take the webhook out
            // of service: the snapshot rules say so in their answers instead.
            if let SyncState::Pending(reason) = state {
                reasons.push(format!("{kind} cache not synced: {reason}"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reasons) => {
            (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n").into_response()
        }
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    for (kind, count) in health.index.counts() {
        health
            .metrics
            .cached_objects
            .get_or_create(&super::metrics::KindLabels {
                kind: kind.as_str(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
        .into_response()
}
