//! The restore fallback with a fake fetcher: which reviews look a snapshot up, and how each
//! answer is decided. The kube fetcher itself is tested in `cluster::fetch`.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::admission::{Reviewed, Webhook, handle};
use crate::cluster::ClusterIndex;
use crate::cluster::fetch::FetchFuture;
use crate::cluster::fetch::SnapshotFetcher;
use crate::cluster::state_file;
use crate::policy::Policy;

/// Answers every lookup with `answer` and records what was asked.
struct FakeFetcher {
    answer: Fetched,
    calls: Mutex<Vec<(String, String)>>,
}

impl FakeFetcher {
    fn new(answer: Fetched) -> Self {
        Self {
            answer,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

impl SnapshotFetcher for FakeFetcher {
    fn snapshot<'a>(&'a self, namespace: &'a str, name: &'a str) -> FetchFuture<'a> {
        self.calls
            .lock()
            .unwrap()
            .push((namespace.to_owned(), name.to_owned()));
        let answer = self.answer.clone();
        Box::pin(async move { answer })
    }
}

/// A synced cache: the class restores go to, and one ready snapshot (`cached`) in `app`.
const STATE: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: csi-disk}
  provisioner: diskplugin.csi.alibabacloud.com
  volumeBindingMode: WaitForFirstConsumer
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshot
  metadata: {name: cached, namespace: app}
  spec: {source: {persistentVolumeClaimName: data}}
  status: {readyToUse: true, restoreSize: 10Gi}
";

fn index() -> ClusterIndex {
    state_file::parse(STATE, Path::new("fallback-test.yaml"))
        .unwrap()
        .index
}

/// A PVC CREATE review restoring from `source` in namespace `app`.
fn review(source: Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "4a7e", "operation": "CREATE", "namespace": "app", "name": "restored",
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "restored", "namespace": "app"},
                "spec": {
                    "storageClassName": "csi-disk", "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "20Gi"}},
                    "dataSource": source.clone(), "dataSourceRef": source,
                },
            },
        },
    })
    .to_string()
    .into_bytes()
}

fn from_snapshot(name: &str) -> Value {
    json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name})
}

fn fresh_ready() -> Fetched {
    let snapshot: VolumeSnapshot = serde_json::from_value(json!({
        "metadata": {"name": "fresh", "namespace": "app"},
        "spec": {"source": {"persistentVolumeClaimName": "data"}},
        "status": {"readyToUse": true, "restoreSize": "10Gi"},
    }))
    .unwrap();
    Fetched::Found(Arc::new(snapshot))
}

async fn run(
    fetcher: &FakeFetcher,
    view: &dyn ClusterView,
    policy: &Policy,
    body: &[u8],
) -> (Reviewed, Option<Fetched>) {
    let reviewed = handle(Webhook::Validate, body, view, policy, Some(fetcher))
        .await
        .unwrap();
    let lookup = reviewed.lookup.clone();
    (reviewed, lookup)
}

#[tokio::test]
async fn a_snapshot_found_by_the_lookup_and_ready_is_allowed() {
    let fetcher = FakeFetcher::new(fresh_ready());
    let (reviewed, lookup) = run(
        &fetcher,
        &index(),
        &Policy::builtin(),
        &review(from_snapshot("fresh")),
    )
    .await;
    assert_eq!(fetcher.calls(), [("app".to_owned(), "fresh".to_owned())]);
    assert_eq!(lookup.map(|l| l.result_label()), Some("found"));
    assert!(reviewed.verdict.allowed, "{:?}", reviewed.verdict);
    assert!(
        reviewed.verdict.warnings.is_empty(),
        "{:?}",
        reviewed.verdict
    );
}

#[tokio::test]
async fn a_snapshot_found_but_not_ready_is_denied_as_from_the_cache() {
    let Fetched::Found(snapshot) = fresh_ready() else {
        unreachable!()
    };
    let mut pending = (*snapshot).clone();
    pending.status.as_mut().unwrap().ready_to_use = Some(false);
    let fetcher = FakeFetcher::new(Fetched::Found(Arc::new(pending)));
    let (reviewed, _) = run(
        &fetcher,
        &index(),
        &Policy::builtin(),
        &review(from_snapshot("fresh")),
    )
    .await;
    let denial = reviewed.verdict.denial.expect("denied");
    assert!(
        denial.message.contains(
            "cannot be restored from VolumeSnapshot app/fresh yet: the snapshot is not ready to use"
        ),
        "{}",
        denial.message
    );
}

#[tokio::test]
async fn a_snapshot_the_api_server_does_not_have_is_denied_with_the_usual_message() {
    let fetcher = FakeFetcher::new(Fetched::NotFound);
    let (reviewed, lookup) = run(
        &fetcher,
        &index(),
        &Policy::builtin(),
        &review(from_snapshot("gone")),
    )
    .await;
    assert_eq!(fetcher.calls().len(), 1);
    assert_eq!(lookup.map(|l| l.result_label()), Some("not_found"));
    let denial = reviewed.verdict.denial.expect("denied");
    assert_eq!(denial.code, 403);
    assert!(
        denial.message.starts_with(
            "PersistentVolumeClaim app/restored cannot be restored from VolumeSnapshot app/gone: it does not exist."
        ),
        "{}",
        denial.message
    );
}

#[tokio::test]
async fn a_lookup_that_times_out_is_unavailable_state_as_the_policy_says() {
    let timeout = Fetched::Failed(FetchFailure::Timeout(Duration::from_secs(1)));
    let body = review(from_snapshot("fresh"));

    // Default whenStateUnavailable: allow, with a warning saying the check was skipped.
    let fetcher = FakeFetcher::new(timeout.clone());
    let (reviewed, lookup) = run(&fetcher, &index(), &Policy::builtin(), &body).await;
    assert_eq!(lookup.map(|l| l.result_label()), Some("timeout"));
    assert!(reviewed.verdict.allowed);
    assert_eq!(
        reviewed.verdict.rules[0].status,
        crate::admission::RuleStatus::Unavailable
    );
    let warning = &reviewed.verdict.warnings[0];
    assert!(
        warning.starts_with("storage-admission skipped its restore-readiness check")
            && warning.contains("VolumeSnapshot app/fresh is not in storage-admission's cache yet, and the API server did not answer its lookup within 1s"),
        "{warning}"
    );

    // whenStateUnavailable: deny.
    let deny = Policy::parse(
        "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  restoreReadiness:\n    whenStateUnavailable: deny\n",
    )
    .unwrap();
    let (reviewed, _) = run(&fetcher, &index(), &deny, &body).await;
    let denial = reviewed.verdict.denial.expect("denied");
    assert!(
        denial
            .message
            .starts_with("storage-admission cannot run its restore-readiness check right now"),
        "{}",
        denial.message
    );
}

#[tokio::test]
async fn no_lookup_when_the_cache_answers_or_cannot_or_the_rule_does_not_run() {
    let fetcher = FakeFetcher::new(Fetched::NotFound);
    let policy = Policy::builtin();
    // Cache hit: decided from the cache, allowed.
    let (reviewed, lookup) = run(
        &fetcher,
        &index(),
        &policy,
        &review(from_snapshot("cached")),
    )
    .await;
    assert!(reviewed.verdict.allowed && lookup.is_none());
    // A cache that has not synced is not second-guessed.
    let unsynced = ClusterIndex::unavailable("waiting for the first list");
    let (_, lookup) = run(
        &fetcher,
        &unsynced,
        &policy,
        &review(from_snapshot("fresh")),
    )
    .await;
    assert!(lookup.is_none());
    // Not a snapshot source: a clone.
    let clone = json!({"kind": "PersistentVolumeClaim", "name": "data"});
    let (_, lookup) = run(&fetcher, &index(), &policy, &review(clone)).await;
    assert!(lookup.is_none());
    // The mutating webhook never runs the rule.
    let reviewed = handle(
        Webhook::Mutate,
        &review(from_snapshot("fresh")),
        &index(),
        &policy,
        Some(&fetcher),
    )
    .await
    .unwrap();
    assert!(reviewed.lookup.is_none());
    // The rule is off.
    let off = Policy::parse(
        "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  restoreReadiness:\n    mode: 'off'\n",
    )
    .unwrap();
    let (_, lookup) = run(&fetcher, &index(), &off, &review(from_snapshot("fresh"))).await;
    assert!(lookup.is_none());
    assert!(fetcher.calls().is_empty(), "{:?}", fetcher.calls());
}

#[tokio::test]
async fn a_cross_namespace_source_is_looked_up_in_its_namespace() {
    let fetcher = FakeFetcher::new(Fetched::NotFound);
    let source = json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "nightly", "namespace": "backups"});
    let mut body: Value = serde_json::from_slice(&review(source.clone())).unwrap();
    body["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("dataSource");
    run(
        &fetcher,
        &index(),
        &Policy::builtin(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        fetcher.calls(),
        [("backups".to_owned(), "nightly".to_owned())]
    );
}

#[tokio::test]
async fn the_router_counts_lookups_by_result() {
    use crate::server::{AppState, router};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    let mut state = AppState::new(Arc::new(index()), Policy::builtin());
    let fetcher = Arc::new(FakeFetcher::new(fresh_ready()));
    state.fetcher = Some(fetcher.clone());
    let metrics = state.metrics.clone();
    let response = router(state)
        .oneshot(
            Request::post("/validate")
                .header("content-type", "application/json")
                .body(Body::from(review(from_snapshot("fresh"))))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fetcher.calls().len(), 1);
    let text = metrics.encode();
    assert!(
        text.contains("storage_admission_snapshot_fallback_lookups_total{result=\"found\"} 1"),
        "{text}"
    );
}
