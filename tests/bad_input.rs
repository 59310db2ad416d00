//! Bad input at the HTTP edge: every case gets a clear 4xx with a Status body naming the
//! problem, never a panic, a hang or a silent allow.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use storage_admission::cluster::ClusterIndex;
use storage_admission::policy::Policy;
use storage_admission::server::{AppState, Limits, router};

fn app(limits: Limits) -> axum::Router {
    let mut state = AppState::new(
        Arc::new(ClusterIndex::unavailable("test")),
        Policy::builtin(),
    );
    state.limits = limits;
    router(state)
}

async fn post(
    app: axum::Router,
    content_type: Option<&str>,
    body: Body,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::post("/validate");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let response = app.oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}")),
    )
}

fn review(request: serde_json::Value) -> Body {
    Body::from(serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).to_string())
}

#[tokio::test]
async fn malformed_and_incomplete_reviews_are_400_with_a_reason() {
    let cases: Vec<(Body, &str, &str)> = vec![
        (Body::from("{\"apiVersion\": "), "json", "not valid JSON"),
        (Body::from(""), "json", "empty"),
        (Body::from("[1,2]"), "shape", "JSON object"),
        (
            Body::from(
                r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
            ),
            "api_version",
            "v1beta1",
        ),
        (
            Body::from(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            "no_request",
            "no request",
        ),
        (
            review(
                serde_json::json!({"kind": {"group": "", "version": "v1", "kind": "Node"}, "resource": {"group": "", "version": "v1", "resource": "nodes"}, "operation": "CREATE"}),
            ),
            "no_uid",
            "no uid",
        ),
        (
            review(
                serde_json::json!({"uid": "u", "kind": "Node", "resource": {}, "operation": "CREATE"}),
            ),
            "shape",
            "request.kind",
        ),
    ];
    for (body, reason, needle) in cases {
        let (status, json) = post(app(Limits::default()), Some("application/json"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["kind"], "Status");
        assert_eq!(json["reason"], reason, "{json}");
        assert_eq!(json["code"], 400);
        assert!(json["message"].as_str().unwrap().contains(needle), "{json}");
    }
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    for ct in [None, Some("text/plain"), Some("application/yaml")] {
        let (status, json) = post(app(Limits::default()), ct, Body::from("{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    let (status, _) = post(
        app(Limits::default()),
        Some("application/json; charset=utf-8"),
        Body::from("{"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a charset parameter is fine"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let (status, json) = post(
        app(limits),
        Some("application/json"),
        Body::from(vec![b' '; 4096]),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("1024-byte limit")
    );
}

#[tokio::test]
async fn a_body_that_never_finishes_is_408() {
    let limits = Limits {
        body_timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    // A body stream that sends one chunk and then stalls forever.
    let stalled = futures::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"apiVersion\""))
    })
    .chain(futures::stream::pending());
    let (status, json) = post(
        app(limits),
        Some("application/json"),
        Body::from_stream(stalled),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(json["reason"], "body_timeout");
}

#[tokio::test]
async fn deep_nesting_is_refused_not_a_stack_overflow() {
    // In the envelope: refused as invalid JSON (recursion limit) or as the wrong shape.
    let mut body = String::from(
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":"#,
    );
    body.push_str(&"[".repeat(100_000));
    body.push_str(&"]".repeat(100_000));
    body.push_str("}}");
    let (status, json) = post(
        app(Limits::default()),
        Some("application/json"),
        Body::from(body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["reason"] == "json" || json["reason"] == "shape",
        "{json}"
    );

    // In the object a rule reads: the review is answered, refusing the object.
    let mut body = String::from(
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"PersistentVolumeClaim"},"resource":{"group":"","version":"v1","resource":"persistentvolumeclaims"},"namespace":"default","operation":"CREATE","object":{"metadata":{"name":"p"},"spec":"#,
    );
    body.push_str(&"[".repeat(100_000));
    body.push_str(&"]".repeat(100_000));
    body.push_str("}}}");
    let (status, json) = post(
        app(Limits::default()),
        Some("application/json"),
        Body::from(body),
    )
    .await;
    match status {
        StatusCode::BAD_REQUEST => assert!(
            json["message"]
                .as_str()
                .unwrap()
                .contains("recursion limit"),
            "{json}"
        ),
        StatusCode::OK => {
            assert_eq!(json["response"]["allowed"], false, "{json}");
            assert_eq!(json["response"]["status"]["code"], 400, "{json}");
        }
        other => panic!("unexpected {other}: {json}"),
    }
}

use futures::StreamExt as _;
