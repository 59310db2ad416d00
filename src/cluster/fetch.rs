//! The one API call on the request path: a single, bounded GET of a VolumeSnapshot that a
//! restoring PVC names and the (synced) cache does not hold yet.
//!
//! A backup tool or a script often creates a VolumeSnapshot and, a moment later, the PVC that
//! restores from it; the watch may not have delivered the snapshot yet. Denying "it does not
//! exist" then would be wrong, so the admission edge asks the API server once, with a short
//! timeout, before the rule decides. Everything else the rules read stays in the cache.
//!
//! [`SnapshotFetcher`] is the seam: `serve --state/--dev` has none (the state file is the whole
//! truth), tests fake it, and [`KubeSnapshotFetcher`] is the real one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::model::VolumeSnapshot;
use crate::model::labels::is_dns_subdomain;

/// The restore webhook's timeoutSeconds is 5: one second leaves the decision and the network
/// ample room, and an API server that cannot answer a GET in a second is in trouble anyway.
pub const DEFAULT_FALLBACK_TIMEOUT: Duration = Duration::from_secs(1);

/// GETs in flight at once per replica. Restores from snapshots the cache lacks are rare (the
/// watch lags by milliseconds); a burst beyond this waits for a slot within the same timeout
/// rather than adding load to an API server that may be why the watch lags.
pub const DEFAULT_FALLBACK_CONCURRENCY: usize = 8;

/// Why a lookup gave no answer. Each maps to a bounded metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// The GET did not complete within the timeout.
    Timeout(Duration),
    /// Every slot was taken for the whole timeout.
    Busy,
    /// The API server answered with an error (other than 404 NotFound), or the body was not
    /// a VolumeSnapshot.
    Error(String),
}

/// The answer of one lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Found(Arc<VolumeSnapshot>),
    /// The API server says it does not exist (404 NotFound): genuinely missing.
    NotFound,
    Failed(FetchFailure),
}

impl Fetched {
    /// The `result` label of `storage_admission_snapshot_fallback_lookups_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            Self::Found(_) => "found",
            Self::NotFound => "not_found",
            Self::Failed(FetchFailure::Timeout(_)) => "timeout",
            Self::Failed(FetchFailure::Busy) => "busy",
            Self::Failed(FetchFailure::Error(_)) => "error",
        }
    }
}

pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Fetched> + Send + 'a>>;

/// Looks up one VolumeSnapshot outside the cache. Implementations bound their own time.
pub trait SnapshotFetcher: Send + Sync {
    fn snapshot<'a>(&'a self, namespace: &'a str, name: &'a str) -> FetchFuture<'a>;
}

/// GET `/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots/{name}`, decoded
/// straight into the slim model, within `timeout` (waiting for a slot included).
pub struct KubeSnapshotFetcher {
    client: Client,
    timeout: Duration,
    slots: Semaphore,
}

impl KubeSnapshotFetcher {
    pub fn new(client: Client, timeout: Duration, concurrency: usize) -> Self {
        Self {
            client,
            timeout,
            slots: Semaphore::new(concurrency.max(1)),
        }
    }

    async fn get(&self, namespace: &str, name: &str) -> Fetched {
        // The names come from the PVC under review: a name that is not a valid object name
        // cannot exist, and must never be spliced into a path.
        if !is_dns_label(namespace) || !is_dns_subdomain(name) {
            return Fetched::NotFound;
        }
        let deadline = Instant::now() + self.timeout;
        let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline, self.slots.acquire()).await else {
            return Fetched::Failed(FetchFailure::Busy);
        };
        let path = format!(
            "/apis/snapshot.storage.k8s.io/v1/namespaces/{namespace}/volumesnapshots/{name}"
        );
        let request = match axum::http::Request::get(path).body(Vec::new()) {
            Ok(r) => r,
            Err(e) => return Fetched::Failed(FetchFailure::Error(e.to_string())),
        };
        match tokio::time::timeout_at(deadline, self.client.request::<VolumeSnapshot>(request))
            .await
        {
            Err(_) => Fetched::Failed(FetchFailure::Timeout(self.timeout)),
            Ok(Ok(snapshot)) => Fetched::Found(Arc::new(snapshot)),
            Ok(Err(kube::Error::Api(status)))
                if status.code == 404 && status.reason == "NotFound" =>
            {
                Fetched::NotFound
            }
            Ok(Err(error)) => Fetched::Failed(FetchFailure::Error(error.to_string())),
        }
    }
}

impl SnapshotFetcher for KubeSnapshotFetcher {
    fn snapshot<'a>(&'a self, namespace: &'a str, name: &'a str) -> FetchFuture<'a> {
        Box::pin(self.get(namespace, name))
    }
}

/// RFC 1123 label: what a namespace name is.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::testing::{ApiHandle, mock_client, respond};

    const PATH: &str = "/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/fresh";

    fn fetcher(concurrency: usize) -> (KubeSnapshotFetcher, ApiHandle) {
        let (client, handle) = mock_client();
        (
            KubeSnapshotFetcher::new(client, Duration::from_secs(1), concurrency),
            handle,
        )
    }

    #[tokio::test]
    async fn found_is_decoded_into_the_slim_model() {
        let (fetcher, mut handle) = fetcher(8);
        let api = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::GET);
            assert_eq!(request.uri().path(), PATH);
            send.send_response(respond(
                StatusCode::OK,
                &json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                        "metadata": {"name": "fresh", "namespace": "app", "managedFields": [{"manager": "kubectl"}]},
                        "spec": {"source": {"persistentVolumeClaimName": "data"}},
                        "status": {"readyToUse": true, "restoreSize": "10Gi", "boundVolumeSnapshotContentName": "snapcontent-1"}}),
            ));
        });
        let Fetched::Found(snapshot) = fetcher.snapshot("app", "fresh").await else {
            panic!("expected the snapshot")
        };
        assert!(snapshot.ready_to_use());
        assert_eq!(snapshot.bound_content_name(), Some("snapcontent-1"));
        assert_eq!(snapshot.metadata.qualified_name(), "app/fresh");
        api.await.unwrap();
    }

    #[tokio::test]
    async fn not_found_is_genuinely_missing_and_other_errors_are_errors() {
        let (fetcher, mut handle) = fetcher(8);
        let api = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), PATH);
            send.send_response(respond(
                StatusCode::NOT_FOUND,
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": "volumesnapshots.snapshot.storage.k8s.io \"fresh\" not found"}),
            ));
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(respond(
                StatusCode::FORBIDDEN,
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                        "message": "volumesnapshots.snapshot.storage.k8s.io \"fresh\" is forbidden"}),
            ));
        });
        assert_eq!(fetcher.snapshot("app", "fresh").await, Fetched::NotFound);
        let failed = fetcher.snapshot("app", "fresh").await;
        assert_eq!(failed.result_label(), "error");
        api.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_get_times_out() {
        let (fetcher, mut handle) = fetcher(8);
        let api = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), PATH);
            // Never answered while the fetcher waits; paused time runs to its deadline.
            (handle, send)
        });
        assert_eq!(
            fetcher.snapshot("app", "fresh").await,
            Fetched::Failed(FetchFailure::Timeout(Duration::from_secs(1)))
        );
        drop(api.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_beyond_the_slots_is_busy_without_a_call() {
        let (fetcher, mut handle) = fetcher(1);
        let fetcher = Arc::new(fetcher);
        let first = tokio::spawn({
            let fetcher = fetcher.clone();
            async move { fetcher.snapshot("app", "fresh").await }
        });
        // The one slot is taken by a GET that hangs.
        let (_, _hung) = handle.next_request().await.unwrap();
        let no_second_call = tokio::spawn(async move {
            // Only the first GET ever reaches the API server.
            assert!(handle.next_request().await.is_none());
        });
        assert_eq!(
            fetcher.snapshot("app", "other").await,
            Fetched::Failed(FetchFailure::Busy)
        );
        assert_eq!(first.await.unwrap().result_label(), "timeout");
        drop(fetcher);
        no_second_call.await.unwrap();
    }

    #[tokio::test]
    async fn a_name_that_cannot_exist_is_not_found_without_a_call() {
        let (fetcher, handle) = fetcher(8);
        drop(handle);
        assert_eq!(
            fetcher.snapshot("app", "../../../api/v1/secrets").await,
            Fetched::NotFound
        );
        assert_eq!(fetcher.snapshot("App", "fresh").await, Fetched::NotFound);
        assert!(is_dns_subdomain("snap-2024.01.02"));
    }
}
