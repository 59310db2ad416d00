//! The election against a mocked API server (`tower_test::mock::pair`), in paused time: every
//! Lease call is asserted (method, path, body essentials), and the controller shares the mock,
//! so its calls show when it runs and when it has stopped.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::cluster::state_file;
use crate::controller;
use crate::policy::Policy;
use crate::testing::policy::CLOUD_POLICY;
use crate::testing::{ApiHandle, body_json, mock_client, respond, status};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/storage-admission/leases";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/storage-admission/leases/storage-admission-leader";
const ME: &str = "storage-admission-7d9f-a";
const OTHER: &str = "storage-admission-7d9f-b";

/// One node missing its zone label: the controller's first act as leader is to patch it.
const NODES: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: cn-hangzhou-b-node2
    resourceVersion: '42'
    labels: {topology.kubernetes.io/region: cn-hangzhou}
";

struct Setup {
    elector: Elector,
    controller: JoinHandle<()>,
    metrics: Arc<Metrics>,
    handle: ApiHandle,
}

fn config() -> Config {
    Config::new(
        "storage-admission".into(),
        DEFAULT_LEASE_NAME.into(),
        ME.into(),
        Duration::from_secs(15),
        Duration::from_secs(5),
    )
    .unwrap()
}

/// An elector and a controller on one mocked client, as `main` wires them.
fn setup() -> Setup {
    let (client, handle) = mock_client();
    let metrics = Arc::new(Metrics::new());
    let index = state_file::parse(NODES, Path::new("leader-test.yaml"))
        .unwrap()
        .index;
    let policy = Arc::new(ArcSwap::from_pointee(Policy::parse(CLOUD_POLICY).unwrap()));
    let ctx = controller::Context::new(
        client.clone(),
        Some(ME.into()),
        metrics.clone(),
        policy,
        Arc::new(index),
        controller::Config::default(),
    );
    let elector = Elector::spawn(client, config(), metrics.clone());
    let controller = tokio::spawn(controller::run(Arc::new(ctx), elector.subscribe()));
    Setup {
        elector,
        controller,
        metrics,
        handle,
    }
}

fn lease(rv: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "storage-admission-leader", "namespace": "storage-admission", "resourceVersion": rv},
        "spec": spec,
    })
}

/// The API server's answer to a write: what was sent, at a new resourceVersion.
fn stored(mut sent: Value, rv: &str) -> Response<Body> {
    sent["metadata"]["resourceVersion"] = json!(rv);
    respond(StatusCode::OK, &sent)
}

async fn next(handle: &mut ApiHandle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
    handle
        .next_request()
        .await
        .expect("expected another API call")
}

/// Asserts a GET of the Lease.
async fn expect_get(handle: &mut ApiHandle) -> mock::SendResponse<Response<Body>> {
    let (request, send) = next(handle).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::GET, LEASE)
    );
    send
}

/// Asserts a conditioned PUT of the Lease naming us as holder; returns the body.
async fn expect_put(
    handle: &mut ApiHandle,
    rv: &str,
) -> (Value, mock::SendResponse<Response<Body>>) {
    let (request, send) = next(handle).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::PUT, LEASE)
    );
    let body = body_json(request).await;
    assert_eq!(
        body["metadata"]["resourceVersion"], rv,
        "every write is conditioned on what was read"
    );
    (body, send)
}

/// Asserts the controller's first act as leader: the node's label patch.
async fn expect_node_patch(handle: &mut ApiHandle) {
    let (request, send) = next(handle).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::PATCH, "/api/v1/nodes/cn-hangzhou-b-node2")
    );
    let ops = body_json(request).await;
    assert_eq!(
        ops[1]["path"],
        "/metadata/labels/topology.kubernetes.io~1zone"
    );
    send.send_response(respond(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cn-hangzhou-b-node2", "resourceVersion": "43"}}),
    ));
}

fn leader_gauge(metrics: &Metrics) -> i64 {
    metrics.leader.get()
}

#[tokio::test(start_paused = true)]
async fn no_lease_it_is_created_with_our_identity_and_the_controller_starts() {
    let Setup {
        elector,
        controller,
        metrics,
        mut handle,
    } = setup();
    let mut signal = elector.subscribe();
    assert!(!*signal.borrow(), "not leader before the Lease says so");

    expect_get(&mut handle)
        .await
        .send_response(status(404, "NotFound"));
    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::POST, LEASES)
    );
    let created = body_json(request).await;
    assert_eq!(created["metadata"]["name"], "storage-admission-leader");
    assert_eq!(created["spec"]["holderIdentity"], ME);
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    assert!(created["spec"]["renewTime"].is_string());
    let acquired_at = created["spec"]["acquireTime"].clone();
    assert!(acquired_at.is_string());
    send.send_response(stored(created, "1"));

    signal.wait_for(|leader| *leader).await.unwrap();
    assert_eq!(leader_gauge(&metrics), 1);
    expect_node_patch(&mut handle).await;

    // The next call is the renewal, conditioned on the created Lease's version.
    let (renewal, send) = expect_put(&mut handle, "1").await;
    assert_eq!(renewal["spec"]["holderIdentity"], ME);
    assert_eq!(
        renewal["spec"]["leaseTransitions"], 0,
        "a renewal is no transition"
    );
    assert_eq!(
        renewal["spec"]["acquireTime"], acquired_at,
        "the term's start is kept"
    );
    send.send_response(stored(renewal, "2"));

    // Shutdown: the controller stops first, then the Lease is released at the version the
    // renewal produced, so another replica can take it at once.
    // Shut down while the next renewal is on the wire (held unanswered): the release is
    // conditioned on the last version this replica saw written.
    let (next_renewal, in_flight) = expect_put(&mut handle, "2").await;
    assert_eq!(next_renewal["spec"]["holderIdentity"], ME);
    let controller_done = Arc::new(AtomicBool::new(false));
    let done = controller_done.clone();
    let verifier = tokio::spawn(async move {
        let (released, send) = expect_put(&mut handle, "2").await;
        assert!(
            done.load(Ordering::SeqCst),
            "the controller stopped before the release"
        );
        assert!(
            released["spec"].get("holderIdentity").is_none(),
            "{released}"
        );
        assert_eq!(released["spec"]["leaseTransitions"], 0);
        send.send_response(stored(released, "3"));
        handle
    });
    let controller = async move {
        controller.await.unwrap();
        controller_done.store(true, Ordering::SeqCst);
    };
    elector.shutdown(controller, &metrics).await;
    assert!(!*signal.borrow());
    assert!(signal.has_changed().is_err(), "the signal is closed");
    assert_eq!(leader_gauge(&metrics), 0);
    let handle = verifier.await.unwrap();
    drop(in_flight);
    // Nothing after the release.
    let mut handle = handle;
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_renewal_refused_for_another_holder_stops_the_controller() {
    let Setup {
        elector,
        controller,
        metrics,
        mut handle,
    } = setup();
    let mut signal = elector.subscribe();
    // A Lease another replica released: taken at once, as a new transition.
    expect_get(&mut handle).await.send_response(respond(
        StatusCode::OK,
        &lease("5", json!({"leaseTransitions": 3})),
    ));
    let (acquired, send) = expect_put(&mut handle, "5").await;
    assert_eq!(acquired["spec"]["holderIdentity"], ME);
    assert_eq!(acquired["spec"]["leaseTransitions"], 4);
    send.send_response(stored(acquired, "6"));
    signal.wait_for(|leader| *leader).await.unwrap();
    expect_node_patch(&mut handle).await;

    // Meanwhile another replica took the Lease: our renewal conflicts, and a look shows why.
    let (_, send) = expect_put(&mut handle, "6").await;
    send.send_response(status(409, "Conflict"));
    let other = lease(
        "9",
        json!({"holderIdentity": OTHER, "leaseDurationSeconds": 15, "leaseTransitions": 5}),
    );
    expect_get(&mut handle)
        .await
        .send_response(respond(StatusCode::OK, &other));
    signal.wait_for(|leader| !*leader).await.unwrap();
    assert_eq!(leader_gauge(&metrics), 0);

    // Four minutes follow (the controller would patch the node again at its 60s resync if it
    // still ran): only the candidate's Lease reads arrive, and the other replica keeps renewing.
    for rv in 10..100 {
        expect_get(&mut handle).await.send_response(respond(
            StatusCode::OK,
            &lease(
                &rv.to_string(),
                json!({"holderIdentity": OTHER, "leaseDurationSeconds": 15, "leaseTransitions": 5}),
            ),
        ));
    }
    assert!(!*signal.borrow());
    assert!(
        !controller.is_finished(),
        "the controller waits to lead again"
    );

    // A follower has nothing to release: shutting down makes no call.
    let no_more = tokio::spawn(async move {
        if let Some((request, _)) = handle.next_request().await {
            panic!("unexpected call: {} {}", request.method(), request.uri());
        }
    });
    elector
        .shutdown(async move { controller.await.unwrap() }, &metrics)
        .await;
    no_more.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_hang_steps_down_at_its_deadline() {
    let Setup {
        elector,
        controller,
        metrics,
        mut handle,
    } = setup();
    let mut signal = elector.subscribe();
    expect_get(&mut handle)
        .await
        .send_response(status(404, "NotFound"));
    let (request, send) = next(&mut handle).await;
    assert_eq!(request.method(), Method::POST);
    let created = body_json(request).await;
    send.send_response(stored(created, "1"));
    signal.wait_for(|leader| *leader).await.unwrap();
    let became = Instant::now();
    expect_node_patch(&mut handle).await;

    // The renewal is never answered (a partition): the deadline alone ends the term, before
    // the 15s after which another replica could take the Lease.
    let (_, _unanswered) = expect_put(&mut handle, "1").await;
    signal.wait_for(|leader| !*leader).await.unwrap();
    assert!(Instant::now() - became < Duration::from_secs(15));
    assert_eq!(leader_gauge(&metrics), 0);
    drop(_unanswered);

    let no_more_patches = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            assert_ne!(request.method(), Method::PATCH, "the controller stopped");
            assert_eq!(request.uri().path(), LEASE);
            // Still partitioned: every Lease call fails.
            send.send_response(status(503, "ServiceUnavailable"));
        }
    });
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(!*signal.borrow());
    elector
        .shutdown(async move { controller.await.unwrap() }, &metrics)
        .await;
    no_more_patches.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_release_that_conflicts_is_retried_only_while_the_lease_still_names_us() {
    let Setup {
        elector,
        controller,
        metrics,
        mut handle,
    } = setup();
    let mut signal = elector.subscribe();
    expect_get(&mut handle)
        .await
        .send_response(respond(StatusCode::OK, &lease("5", json!({}))));
    let (acquired, send) = expect_put(&mut handle, "5").await;
    send.send_response(stored(acquired, "6"));
    signal.wait_for(|leader| *leader).await.unwrap();
    expect_node_patch(&mut handle).await;

    let verifier = tokio::spawn(async move {
        // Someone touched the Lease (an annotation, say) since our last write.
        let (_, send) = expect_put(&mut handle, "6").await;
        send.send_response(status(409, "Conflict"));
        let ours = lease(
            "7",
            json!({"holderIdentity": ME, "leaseDurationSeconds": 15, "leaseTransitions": 1}),
        );
        expect_get(&mut handle)
            .await
            .send_response(respond(StatusCode::OK, &ours));
        let (released, send) = expect_put(&mut handle, "7").await;
        assert!(
            released["spec"].get("holderIdentity").is_none(),
            "{released}"
        );
        assert_eq!(released["spec"]["leaseTransitions"], 1);
        send.send_response(stored(released, "8"));
        assert!(
            handle.next_request().await.is_none(),
            "nothing after the release"
        );
    });
    elector
        .shutdown(async move { controller.await.unwrap() }, &metrics)
        .await;
    verifier.await.unwrap();
}

#[test]
fn a_candidate_takes_a_free_own_or_stale_lease_and_waits_on_a_live_one() {
    let fifteen = Duration::from_secs(15);
    let spec = |holder: Option<&str>, transitions: i32| LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        lease_duration_seconds: Some(15),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    assert_eq!(
        decide(None, ME, Duration::ZERO, fifteen),
        Decision::Acquire { transitions: 1 }
    );
    assert_eq!(
        decide(Some(&spec(Some(""), 2)), ME, Duration::ZERO, fifteen),
        Decision::Acquire { transitions: 3 }
    );
    assert_eq!(
        decide(Some(&spec(Some(ME), 2)), ME, Duration::ZERO, fifteen),
        Decision::Acquire { transitions: 2 }
    );
    assert_eq!(
        decide(
            Some(&spec(Some(OTHER), 2)),
            ME,
            Duration::from_secs(14),
            fifteen
        ),
        Decision::Wait {
            holder: OTHER.into()
        }
    );
    assert_eq!(
        decide(Some(&spec(Some(OTHER), 2)), ME, fifteen, fifteen),
        Decision::Acquire { transitions: 3 }
    );
    // The holder's promised duration counts, not ours.
    let mut long = spec(Some(OTHER), 2);
    long.lease_duration_seconds = Some(60);
    assert!(matches!(
        decide(Some(&long), ME, Duration::from_secs(30), fifteen),
        Decision::Wait { .. }
    ));
}

#[test]
fn timings_are_checked() {
    let new = |d: u64, g: u64| {
        Config::new(
            "ns".into(),
            "l".into(),
            "me".into(),
            Duration::from_secs(d),
            Duration::from_secs(g),
        )
    };
    assert!(new(15, 5).is_ok());
    assert!(matches!(new(15, 15), Err(ConfigError::Grace { .. })));
    assert!(matches!(new(15, 0), Err(ConfigError::Grace { .. })));
    assert!(matches!(new(1, 0), Err(ConfigError::Duration(_))));
    assert!(
        Config::new(
            "ns".into(),
            "l".into(),
            "me".into(),
            Duration::from_millis(15_500),
            Duration::from_secs(5)
        )
        .is_err()
    );
    let cfg = new(15, 5).unwrap();
    assert_eq!(cfg.renew_deadline(), Duration::from_secs(10));
    assert_eq!(cfg.retry(), Duration::from_millis(2500));
}

#[test]
fn identity_is_the_pod_name_or_a_unique_host_name() {
    assert_eq!(identity(Some("storage-admission-0")), "storage-admission-0");
    let a = identity(None);
    let b = identity(Some(""));
    assert_ne!(a, b, "random suffix");
}

/// `while_leader` on its own: what each term of `work` did, in order.
#[tokio::test(start_paused = true)]
async fn while_leader_runs_work_for_each_term_and_returns_when_the_signal_is_dropped() {
    #[derive(Debug, PartialEq)]
    enum Event {
        Started(u32),
        Dropped(u32),
    }
    struct Guard(u32, tokio::sync::mpsc::UnboundedSender<Event>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.1.send(Event::Dropped(self.0));
        }
    }
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (leader, is_leader) = watch::channel(false);
    let mut term = 0;
    let task = tokio::spawn(while_leader(is_leader, move || {
        term += 1;
        let (term, events_tx) = (term, events_tx.clone());
        async move {
            let _guard = Guard(term, events_tx.clone());
            events_tx.send(Event::Started(term)).unwrap();
            std::future::pending::<()>().await;
        }
    }));
    // Not leading: nothing starts (paused time: the clock jumps to the timeout once every
    // task is idle).
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), events.recv())
            .await
            .is_err(),
        "work started before leading"
    );
    leader.send_replace(true);
    assert_eq!(events.recv().await, Some(Event::Started(1)));
    leader.send_replace(false);
    assert_eq!(
        events.recv().await,
        Some(Event::Dropped(1)),
        "losing the lead drops the work"
    );
    assert!(!task.is_finished(), "waiting to lead again");
    leader.send_replace(true);
    assert_eq!(
        events.recv().await,
        Some(Event::Started(2)),
        "a new term starts afresh"
    );
    drop(leader);
    task.await.unwrap();
    assert_eq!(
        events.recv().await,
        Some(Event::Dropped(2)),
        "a dropped signal ends the term"
    );
}
