//! The admin endpoints, on their own plain-HTTP port and outside the webhook's trace layer:
//! `/livez` (the process answers), `/readyz` (it should receive reviews), `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::tls::ReloadingCert;
use crate::cluster::ClusterIndex;
use crate::metrics::Metrics;

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
        // A missing CRD is a fact about the cluster, not a reason to take the webhook out of
        // service: the snapshot rules say so in their answers instead. An optional kind
        // (CSIDrivers) that cannot be listed only leaves `explain` with less to say.
        for (kind, reason) in self.index.awaited() {
            reasons.push(format!("{kind} cache not synced: {reason}"));
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
    // Read from the stores at each scrape, like the counts: the state lives in the store, so
    // the gauge cannot disagree with what `/readyz` and the rules see.
    for (kind, state) in health.index.states() {
        health.metrics.set_cache_status(kind, &state);
    }
    for (kind, count) in health.index.counts() {
        health
            .metrics
            .cached_objects
            .get_or_create(&crate::metrics::KindLabels {
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::cluster::{ResourceKind, SyncState};
    use crate::server::tls;

    /// A health whose certificate is loaded, so only the caches decide readiness.
    fn health(index: Arc<ClusterIndex>) -> Arc<Health> {
        let cert = Arc::new(tls::ReloadingCert::empty(tls::provider()));
        let pair = crate::certs::generate(&["localhost".into()], "admin-test", 1).unwrap();
        cert.set_pem(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes(), "test")
            .unwrap();
        Arc::new(Health::new(index, Arc::new(Metrics::new()), cert))
    }

    async fn get(health: &Arc<Health>, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router(health.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Every cache synced, then `adjust`ed.
    fn synced_except(adjust: impl Fn(&ClusterIndex)) -> Arc<ClusterIndex> {
        let index = ClusterIndex::new(SyncState::Synced);
        adjust(&index);
        Arc::new(index)
    }

    #[tokio::test]
    async fn readyz_is_503_naming_the_kind_while_a_cache_waits_for_its_first_list() {
        let index = synced_except(|index| {
            index
                .pvcs
                .set_state(SyncState::Pending("waiting for the first list".into()));
        });
        let health = health(index.clone());
        let (status, body) = get(&health, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "PersistentVolumeClaim cache not synced: waiting for the first list\n"
        );
        // The list arrives.
        index.pvcs.replace([]);
        assert_eq!(
            get(&health, "/readyz").await,
            (StatusCode::OK, "ok\n".into())
        );
    }

    #[tokio::test]
    async fn missing_snapshot_crds_do_not_make_the_webhook_unready_but_show_in_metrics() {
        let index = synced_except(|index| {
            let missing =
                SyncState::Missing("the external-snapshotter CRDs are not installed".into());
            index.snapshot_classes.set_state(missing.clone());
            index.snapshots.set_state(missing.clone());
            index.snapshot_contents.set_state(missing);
        });
        let health = health(index);
        assert_eq!(
            get(&health, "/readyz").await,
            (StatusCode::OK, "ok\n".into())
        );
        let (status, metrics) = get(&health, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "storage_admission_cache_status{kind=\"VolumeSnapshot\",status=\"missing\"} 1",
            "storage_admission_cache_status{kind=\"VolumeSnapshot\",status=\"synced\"} 0",
            "storage_admission_cache_status{kind=\"VolumeSnapshotClass\",status=\"missing\"} 1",
            "storage_admission_cache_status{kind=\"Node\",status=\"synced\"} 1",
            "storage_admission_cache_status{kind=\"Node\",status=\"missing\"} 0",
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "no {line} in\n{metrics}"
            );
        }
    }

    #[tokio::test]
    async fn csi_drivers_that_cannot_be_listed_do_not_make_the_webhook_unready() {
        // A ClusterRole without csidrivers: their list is refused and never arrives.
        let index = synced_except(|index| {
            index.csi_drivers.set_state(SyncState::Pending(
                "listing CSIDrivers failed: csidrivers.storage.k8s.io is forbidden".into(),
            ));
        });
        let health = health(index.clone());
        assert_eq!(
            get(&health, "/readyz").await,
            (StatusCode::OK, "ok\n".into())
        );
        let (_, metrics) = get(&health, "/metrics").await;
        let line = "storage_admission_cache_status{kind=\"CSIDriver\",status=\"pending\"} 1";
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
        // A required cache waiting is still a reason, and the only one given.
        index
            .nodes
            .set_state(SyncState::Pending("waiting for the first list".into()));
        assert_eq!(
            get(&health, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Node cache not synced: waiting for the first list\n".into()
            )
        );
    }

    #[tokio::test]
    async fn readyz_lists_every_reason() {
        let index = Arc::new(ClusterIndex::unavailable("starting"));
        let health = Arc::new(Health::new(
            index,
            Arc::new(Metrics::new()),
            Arc::new(tls::ReloadingCert::empty(tls::provider())),
        ));
        health.begin_shutdown();
        let (status, body) = get(&health, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let reasons: Vec<&str> = body.lines().collect();
        assert_eq!(
            reasons[..2],
            ["shutting down", "no serving certificate yet"]
        );
        // Every kind but the optional ones (CSIDrivers), which nothing waits for.
        let required = ResourceKind::ALL
            .iter()
            .filter(|k| !k.is_optional())
            .count();
        assert_eq!(required, ResourceKind::ALL.len() - 1);
        assert_eq!(reasons.len(), 2 + required, "{body}");
        assert!(!body.contains("CSIDriver"), "{body}");
    }
}
