//! The controller against a mocked API server (`tower_test::mock::pair`): every expected call
//! is asserted (method, path, body) and answered with JSON the kube client accepts; once the
//! controller is dropped, the verifier asserts that no other call was made.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{Method, StatusCode};
use kube::api::DynamicObject;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::*;
use crate::cluster::state_file;
use crate::testing::policy::CLOUD_POLICY;
use crate::testing::{ApiHandle, body_json, mock_client, respond};

/// A node that has every derived label, and one missing its zone.
const NODES: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: cn-hangzhou-b-node1
    resourceVersion: '7'
    labels: {topology.kubernetes.io/region: cn-hangzhou, topology.kubernetes.io/zone: cn-hangzhou-b}
- apiVersion: v1
  kind: Node
  metadata:
    name: cn-hangzhou-b-node2
    resourceVersion: '42'
    labels: {topology.kubernetes.io/region: cn-hangzhou}
";

/// A PVC restoring from a snapshot that does not exist.
const BROKEN_RESTORE: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: restore, namespace: app, uid: 6f1c-restore}
  spec:
    storageClassName: ''
    dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: gone}
";

fn context(state: &str, policy: &str, config: Config) -> (Arc<Context>, ApiHandle) {
    let (client, handle) = mock_client();
    let index = state_file::parse(state, Path::new("controller-test.yaml"))
        .unwrap()
        .index;
    let policy = Arc::new(ArcSwap::from_pointee(Policy::parse(policy).unwrap()));
    let ctx = Context::new(
        client,
        Some("storage-admission-0".into()),
        Arc::new(Metrics::new()),
        policy,
        Arc::new(index),
        config,
    );
    (Arc::new(ctx), handle)
}

/// Asserts the next call is the label patch of `node` with `ops`, and answers with the node.
async fn expect_node_patch(handle: &mut ApiHandle, node: &str, ops: Value) {
    let (request, send) = handle
        .next_request()
        .await
        .expect("expected a node patch, but the controller is done");
    assert_eq!(request.method(), Method::PATCH);
    assert_eq!(request.uri().path(), format!("/api/v1/nodes/{node}"));
    assert!(
        request
            .uri()
            .query()
            .unwrap_or_default()
            .contains("fieldManager=storage-admission"),
        "{}",
        request.uri()
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/json-patch+json"
    );
    assert_eq!(body_json(request).await, ops);
    send.send_response(respond(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "resourceVersion": "43"}}),
    ));
}

/// Asserts that no further call arrives before every client is dropped.
fn expect_no_more_calls(mut handle: ApiHandle) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Some((request, _)) = handle.next_request().await {
            panic!("unexpected call: {} {}", request.method(), request.uri());
        }
    })
}

fn zone_patch() -> Value {
    json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}
    ])
}

#[tokio::test]
async fn backfill_patches_the_node_missing_labels_and_not_the_complete_one() {
    let (ctx, mut handle) = context(NODES, CLOUD_POLICY, Config::default());
    let verifier = tokio::spawn(async move {
        expect_node_patch(&mut handle, "cn-hangzhou-b-node2", zone_patch()).await;
        handle
    });
    let policy = ctx.policy.load_full();
    let mut limiter = backfill::RateLimiter::new(5);
    assert!(backfill::run_pass(&ctx, &policy, &mut limiter).await);
    let handle = verifier.await.unwrap();
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("storage_admission_backfill_patches_total{result=\"applied\"} 1"),
        "{metrics}"
    );
    drop(ctx);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn backfill_counts_a_node_that_changed_meanwhile_as_a_conflict() {
    let (ctx, mut handle) = context(NODES, CLOUD_POLICY, Config::default());
    let verifier = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(body_json(request).await, zone_patch());
        // What the API server answers when a JSON-patch `test` fails.
        send.send_response(respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
                    "message": "the server rejected our request due to an error in our request"}),
        ));
        handle
    });
    let policy = ctx.policy.load_full();
    let mut limiter = backfill::RateLimiter::new(5);
    assert!(backfill::run_pass(&ctx, &policy, &mut limiter).await);
    let handle = verifier.await.unwrap();
    assert!(
        ctx.metrics
            .encode()
            .contains("storage_admission_backfill_patches_total{result=\"conflict\"} 1")
    );
    drop(ctx);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn backfill_is_rate_limited() {
    let state = "
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: cn-hangzhou-b-a}}
- {apiVersion: v1, kind: Node, metadata: {name: cn-hangzhou-b-b}}
- {apiVersion: v1, kind: Node, metadata: {name: cn-hangzhou-b-c}}
";
    let (ctx, mut handle) = context(state, CLOUD_POLICY, Config::default());
    let verifier = tokio::spawn(async move {
        let mut at = Vec::new();
        for node in ["cn-hangzhou-b-a", "cn-hangzhou-b-b", "cn-hangzhou-b-c"] {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), format!("/api/v1/nodes/{node}"));
            at.push(Instant::now());
            send.send_response(respond(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
            ));
        }
        (handle, at)
    });
    let policy = ctx.policy.load_full();
    let mut limiter = backfill::RateLimiter::new(2);
    assert!(backfill::run_pass(&ctx, &policy, &mut limiter).await);
    let (handle, at) = verifier.await.unwrap();
    // 2 per second: the first at once, then one every 500ms (virtual time).
    assert_eq!(at[1] - at[0], Duration::from_millis(500));
    assert_eq!(at[2] - at[1], Duration::from_millis(500));
    drop(ctx);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn audit_reports_a_finding_as_one_event_and_not_again_on_the_next_pass() {
    let builtin = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n";
    let (ctx, mut handle) = context(BROKEN_RESTORE, builtin, Config::default());
    let verifier = tokio::spawn(async move {
        let (request, send) = handle
            .next_request()
            .await
            .expect("expected an event for the broken restore");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/app/events"
        );
        let event = body_json(request).await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "RestoreReadiness");
        assert_eq!(event["action"], "Audit");
        assert_eq!(event["reportingController"], "storage-admission");
        assert_eq!(event["reportingInstance"], "storage-admission-0");
        assert_eq!(
            event["regarding"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "restore", "namespace": "app", "uid": "6f1c-restore"})
        );
        let note = event["note"].as_str().unwrap();
        assert!(
            note.starts_with("PersistentVolumeClaim app/restore cannot be restored from VolumeSnapshot app/gone: it does not exist."),
            "{note}"
        );
        // The API server returns the created Event.
        send.send_response(respond(StatusCode::CREATED, &event));
        handle
    });
    let policy = ctx.policy.load_full();
    let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
    assert!(audit::run_pass(&ctx, &policy, &mut dedup).await);
    let handle = verifier.await.unwrap();
    let no_more = expect_no_more_calls(handle);
    // Same finding, same message, inside the window: no second event.
    assert!(audit::run_pass(&ctx, &policy, &mut dedup).await);
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "storage_admission_audit_events_total{rule=\"restore-readiness\",result=\"published\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("storage_admission_audit_findings{rule=\"restore-readiness\"} 1"),
        "{metrics}"
    );
    drop(ctx);
    no_more.await.unwrap();
}

/// A claim created long ago that names a StorageClass that does not exist.
const STUCK_CLAIM: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data, namespace: app, uid: 7a2d-data, creationTimestamp: '2020-01-01T00:00:00Z'}
  spec: {storageClassName: fast}
";

#[tokio::test]
async fn audit_reports_a_stuck_claim_with_the_verdict_and_fix_once() {
    let builtin = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n";
    let (ctx, mut handle) = context(STUCK_CLAIM, builtin, Config::default());
    let verifier = tokio::spawn(async move {
        let (request, send) = handle
            .next_request()
            .await
            .expect("expected an event for the stuck claim");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/app/events"
        );
        let event = body_json(request).await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "StuckPersistentVolumeClaim");
        assert_eq!(event["regarding"]["uid"], "7a2d-data");
        let note = event["note"].as_str().unwrap();
        assert!(
            note.starts_with(
                "PersistentVolumeClaim app/data is blocked by 1 problem.\n[pvc.no-storage-class] "
            ),
            "{note}"
        );
        assert!(note.contains("Fix: Create StorageClass fast"), "{note}");
        send.send_response(respond(StatusCode::CREATED, &event));
        handle
    });
    let policy = ctx.policy.load_full();
    let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
    assert!(audit::run_pass(&ctx, &policy, &mut dedup).await);
    let handle = verifier.await.unwrap();
    let no_more = expect_no_more_calls(handle);
    assert!(audit::run_pass(&ctx, &policy, &mut dedup).await);
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "storage_admission_stuck_objects{kind=\"PersistentVolumeClaim\",reason=\"pvc.no-storage-class\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "storage_admission_stuck_objects{kind=\"VolumeSnapshot\",reason=\"snapshot.content-error\"} 0"
        ),
        "{metrics}"
    );
    drop(ctx);
    no_more.await.unwrap();
}

/// A group snapshot created long ago that names a group snapshot class that does not exist.
const STUCK_GROUP: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: groupsnapshot.storage.k8s.io/v1beta2
  kind: VolumeGroupSnapshot
  metadata: {name: g, namespace: app, uid: 9c1e-g, creationTimestamp: '2020-01-01T00:00:00Z'}
  spec:
    source: {selector: {matchLabels: {app: db}}}
    volumeGroupSnapshotClassName: gone
";

#[tokio::test]
async fn events_name_a_group_snapshot_at_the_version_the_cluster_serves() {
    for version in ["v1beta2", "v1"] {
        let (ctx, mut handle) = context(STUCK_GROUP, BUILTIN, Config::default());
        // What the group snapshot watches' discovery records.
        ctx.index
            .set_served_version(crate::cluster::ResourceKind::VolumeGroupSnapshot, version);
        let verifier = tokio::spawn(async move {
            let (request, send) = handle
                .next_request()
                .await
                .expect("expected an event for the stuck group snapshot");
            assert_eq!(
                request.uri().path(),
                "/apis/events.k8s.io/v1/namespaces/app/events"
            );
            let event = body_json(request).await;
            assert_eq!(event["reason"], "StuckVolumeGroupSnapshot");
            send.send_response(respond(StatusCode::CREATED, &event));
            (handle, event["regarding"].clone())
        });
        let policy = ctx.policy.load_full();
        let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
        assert!(audit::run_pass(&ctx, &policy, &mut dedup).await);
        let (handle, regarding) = verifier.await.unwrap();
        assert_eq!(
            regarding,
            json!({"apiVersion": format!("groupsnapshot.storage.k8s.io/{version}"),
                   "kind": "VolumeGroupSnapshot", "name": "g", "namespace": "app", "uid": "9c1e-g"}),
            "served at {version}"
        );
        drop(ctx);
        expect_no_more_calls(handle).await.unwrap();
    }
}

#[tokio::test]
async fn audit_retries_an_event_the_api_server_refused() {
    let builtin = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n";
    let (ctx, mut handle) = context(BROKEN_RESTORE, builtin, Config::default());
    let verifier = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::POST);
        send.send_response(respond(
            StatusCode::FORBIDDEN,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                    "message": "events.events.k8s.io is forbidden"}),
        ));
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::POST, "retried as a new event");
        let event = body_json(request).await;
        send.send_response(respond(StatusCode::CREATED, &event));
        handle
    });
    let policy = ctx.policy.load_full();
    let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
    audit::run_pass(&ctx, &policy, &mut dedup).await;
    assert!(dedup.is_empty(), "a refused event is not remembered");
    audit::run_pass(&ctx, &policy, &mut dedup).await;
    assert_eq!(dedup.len(), 1);
    let handle = verifier.await.unwrap();
    drop(ctx);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn audit_without_snapshot_crds_is_complete_and_calls_nothing() {
    let builtin = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n";
    let (ctx, handle) = context(BROKEN_RESTORE, builtin, Config::default());
    let missing = crate::cluster::SyncState::Missing("no snapshot CRDs".into());
    ctx.index.snapshot_classes.set_state(missing.clone());
    ctx.index.snapshots.set_state(missing.clone());
    ctx.index.snapshot_contents.set_state(missing);
    let no_more = expect_no_more_calls(handle);
    let policy = ctx.policy.load_full();
    let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
    // The restore cannot be judged without snapshots: no event, but no retry every poll either.
    assert!(audit::run_pass(&ctx, &policy, &mut dedup).await);
    drop(ctx);
    no_more.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn run_works_only_while_leader_and_returns_when_the_signal_is_dropped() {
    let (ctx, mut handle) = context(NODES, CLOUD_POLICY, Config::default());
    // Long enough for a resync pass, which would patch node2 again: the mock's answer does
    // not reach the cache, so the cache still says its zone is missing.
    let resync_and_more = ctx.config.resync * 2;
    let (leader, is_leader) = watch::channel(false);
    let controller = tokio::spawn(run(ctx.clone(), is_leader));
    // Not leader: nothing runs (paused time: the clock jumps to the timeout once every task
    // is waiting, so this waits out two resyncs at no cost).
    assert!(
        tokio::time::timeout(resync_and_more, handle.next_request())
            .await
            .is_err(),
        "a pass ran before leading"
    );
    // Becoming leader starts the first pass at once.
    leader.send_replace(true);
    expect_node_patch(&mut handle, "cn-hangzhou-b-node2", zone_patch()).await;
    // Losing it stops the loops, though the signal is still there to lead again.
    leader.send_replace(false);
    assert!(
        tokio::time::timeout(resync_and_more, handle.next_request())
            .await
            .is_err(),
        "a pass ran after leadership was lost"
    );
    assert!(!controller.is_finished(), "waiting to lead again");
    drop(leader);
    controller.await.unwrap();
    drop(ctx);
    expect_no_more_calls(handle).await.unwrap();
}

const BUILTIN: &str = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n";

/// A PVC in namespace `app` as the watch delivers it: restoring from a snapshot that does not
/// exist when `broken`, otherwise a plain claim; `revision` is a label, so each revision is a
/// change the audit must look at.
fn pvc(name: &str, broken: bool, revision: u32, resource_version: u32) -> DynamicObject {
    let mut spec = json!({"storageClassName": ""});
    if broken {
        spec["dataSource"] = json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "gone"});
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "app", "uid": format!("uid-{name}"),
                     "resourceVersion": resource_version.to_string(),
                     "labels": {"revision": revision.to_string()}},
        "spec": spec,
    }))
    .unwrap()
}

/// Feeds one object change into the cache through the watch's own path.
fn watch_applies(ctx: &Context, object: DynamicObject) {
    let mut buffer = None;
    let skipped = crate::cluster::watch::apply_event(
        &ctx.index.pvcs,
        &mut buffer,
        kube::runtime::watcher::Event::Apply(object),
    );
    assert_eq!(skipped, 0);
}

/// Asserts the next call is the audit Event about PVC app/`name`, and accepts it.
async fn expect_event_about(handle: &mut ApiHandle, name: &str) {
    let (request, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("expected an event about {name}"));
    assert_eq!(
        request.uri().path(),
        "/apis/events.k8s.io/v1/namespaces/app/events"
    );
    let event = body_json(request).await;
    assert_eq!(event["regarding"]["name"], name);
    assert_eq!(event["reason"], "RestoreReadiness");
    send.send_response(respond(StatusCode::CREATED, &event));
}

fn passes(ctx: &Context) -> u64 {
    ctx.metrics.audit_passes.get()
}

#[tokio::test(start_paused = true)]
async fn an_object_change_is_audited_within_seconds_not_at_the_next_resync() {
    let (ctx, mut handle) = context(BROKEN_RESTORE, BUILTIN, Config::default());
    let start = Instant::now();
    let (leader, is_leader) = watch::channel(true);
    let controller = tokio::spawn(run(ctx.clone(), is_leader));
    // The first pass reports what is already wrong.
    expect_event_about(&mut handle, "restore").await;
    // Another broken restore is created after that pass has read the cache.
    watch_applies(&ctx, pvc("restore-2", true, 0, 1));
    expect_event_about(&mut handle, "restore-2").await;
    assert!(
        Instant::now() < start + ctx.config.resync,
        "reported {:?} after the first pass: that is the resync, not the change",
        Instant::now() - start
    );
    assert_eq!(passes(&ctx), 2);
    drop(leader);
    controller.await.unwrap();
    drop(ctx);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_is_one_audit_pass_and_no_change_is_none() {
    // A long resync, so every pass here is one the changes caused.
    let config = Config {
        resync: Duration::from_secs(3600),
        ..Config::default()
    };
    let state = "
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: PersistentVolumeClaim, metadata: {name: data, namespace: app, uid: uid-data}, spec: {storageClassName: ''}}
";
    let (ctx, handle) = context(state, BUILTIN, config);
    // Nothing here is a finding: no call at all.
    let no_calls = expect_no_more_calls(handle);
    let (leader, is_leader) = watch::channel(false);
    let controller = tokio::spawn(run(ctx.clone(), is_leader));
    // Each `sleep` below is the scenario's virtual time passing (the runtime is paused and
    // every timer due before then fires first), not a wait for something to happen.
    let virtual_time_passes = tokio::time::sleep;

    // Not leading: a change wakes no audit.
    watch_applies(&ctx, pvc("data", false, 1, 1));
    virtual_time_passes(Duration::from_secs(60)).await;
    assert_eq!(passes(&ctx), 0);
    leader.send_replace(true);
    virtual_time_passes(Duration::from_secs(1)).await;
    assert_eq!(passes(&ctx), 1, "the first pass, on becoming leader");

    // 50 changes over 5 s, each of which would be worth a pass on its own.
    for revision in 2..52 {
        watch_applies(&ctx, pvc("data", false, revision, revision));
        virtual_time_passes(Duration::from_millis(100)).await;
    }
    virtual_time_passes(Duration::from_secs(60)).await;
    assert_eq!(passes(&ctx), 2, "one pass for the whole burst");

    // Only the resourceVersion changes (a status update of fields the cache drops): no pass.
    watch_applies(&ctx, pvc("data", false, 51, 1000));
    virtual_time_passes(Duration::from_secs(600)).await;
    assert_eq!(passes(&ctx), 2, "nothing changed, nothing to audit");

    drop(leader);
    controller.await.unwrap();
    drop(ctx);
    no_calls.await.unwrap();
}

#[test]
fn debounce_waits_for_quiet_but_not_forever_and_keeps_the_minimum_interval() {
    let start = Instant::now();
    let s = Duration::from_secs;
    let mut debounce = Debounce::new(s(2), s(10));
    assert_eq!(debounce.due_at(None), None, "no change, no pass");
    debounce.changed(start);
    assert_eq!(
        debounce.due_at(None),
        Some(start + s(2)),
        "quiet after one change"
    );
    debounce.changed(start + s(1));
    assert_eq!(
        debounce.due_at(None),
        Some(start + s(3)),
        "each change restarts the quiet"
    );
    for second in 2..30 {
        debounce.changed(start + s(second));
    }
    assert_eq!(
        debounce.due_at(None),
        Some(start + s(10)),
        "a churn that never goes quiet still gets a pass"
    );
    assert_eq!(
        debounce.due_at(Some(start + s(25))),
        Some(start + s(35)),
        "not sooner than the minimum interval after the last pass"
    );
    debounce.covered();
    assert_eq!(debounce.due_at(Some(start + s(25))), None);
}

#[test]
fn trigger_runs_first_then_on_resync_policy_change_or_after_an_incomplete_pass() {
    let start = Instant::now();
    let policy = Arc::new(Policy::builtin());
    let mut trigger = Trigger::new(Duration::from_secs(60));
    assert!(trigger.is_due(start, &policy));
    trigger.done(start, policy.clone(), true);
    assert!(!trigger.is_due(start + Duration::from_secs(5), &policy));
    assert!(trigger.is_due(start + Duration::from_secs(60), &policy));
    let reloaded = Arc::new(Policy::builtin());
    assert!(trigger.is_due(start + Duration::from_secs(5), &reloaded));
    trigger.done(start, policy.clone(), false);
    assert!(trigger.is_due(start + Duration::from_secs(5), &policy));
}

#[test]
fn scope_skips_what_the_webhooks_never_see() {
    let meta = |ns: Option<&str>, ignore: bool| -> ObjectMeta {
        let mut m = ObjectMeta {
            name: "x".into(),
            namespace: ns.map(str::to_owned),
            ..ObjectMeta::default()
        };
        if ignore {
            m.labels = Some([(IGNORE_LABEL.to_owned(), "true".to_owned())].into());
        }
        m
    };
    let scope = Scope::for_namespace("storage-system");
    assert!(scope.skips(&meta(Some("kube-system"), false)));
    assert!(scope.skips(&meta(Some("storage-system"), false)));
    assert!(scope.skips(&meta(None, true)));
    assert!(!scope.skips(&meta(Some("app"), false)));
    assert!(!scope.skips(&meta(None, false)));
}
