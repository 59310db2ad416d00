//! The webhook routes: `POST /mutate` and `POST /validate`. Handlers only read the body, call
//! [`admission::handle`] and record the outcome; the decision itself is synchronous
//! and pure (the one await before it is the restore fallback's bounded lookup).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::admission::{self, ReviewError, Webhook};
use crate::cluster::ClusterView;
use crate::cluster::fetch::SnapshotFetcher;
use crate::metrics::Metrics;
use crate::policy::Policy;

/// The API server sends objects of up to ~3 MiB, and both the object and the old object on
/// UPDATE: 8 MiB leaves room for the envelope and is still a firm bound on memory per request.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The API server's own webhook timeout is at most 30s; a body still arriving after 10s is a
/// stalled or hostile client.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// What the handlers share: the cluster view, the current policy (swapped on reload), metrics.
#[derive(Clone)]
pub struct AppState {
    pub view: Arc<dyn ClusterView>,
    pub policy: Arc<ArcSwap<Policy>>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// The restore fallback's lookup (`run` only; `serve --state/--dev` has none).
    pub fetcher: Option<Arc<dyn SnapshotFetcher>>,
}

impl AppState {
    pub fn new(view: Arc<dyn ClusterView>, policy: Policy) -> Self {
        Self {
            view,
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            metrics: Arc::new(Metrics::new()),
            limits: Limits::default(),
            fetcher: None,
        }
    }
}

/// The webhook router, public so tests drive it in-process with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .with_state(state)
}

async fn mutate(
    State(state): State<AppState>,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Response {
    review(state, Webhook::Mutate, version, headers, body).await
}

async fn validate(
    State(state): State<AppState>,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Response {
    review(state, Webhook::Validate, version, headers, body).await
}

async fn review(
    state: AppState,
    webhook: Webhook,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A guard, so a review abandoned by its client (future dropped) is still counted out.
    struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state.metrics.in_flight);
    review_inner(&state, webhook, version, headers, body).await
}

async fn review_inner(
    state: &AppState,
    webhook: Webhook,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reject = |status: StatusCode, reason: &'static str, message: String| {
        state.metrics.reject(webhook, reason);
        // The text as `error`: a `message` field would repeat the line's message key.
        tracing::warn!(webhook = webhook.as_str(), reason, error = %message, "rejected request");
        status_response(status, reason, &message)
    };

    if !is_json(&headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("Content-Type must be application/json, got {got}"),
        );
    }
    // Answered before a byte of the body is read, so a client still sending (or waiting for
    // `100 Continue`) reads the 413 instead of a reset connection. hyper sets the size hint
    // from `Content-Length` on both protocols; a chunked body has none and is cut off below.
    let limit = state.limits.max_body_bytes;
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return unread_body(
            version,
            reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body of {announced} bytes is larger than the {limit}-byte limit (--max-body-bytes)"
                ),
            ),
        );
    }
    let collected = tokio::time::timeout(
        state.limits.body_timeout,
        Limited::new(body, limit).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return unread_body(
                version,
                reject(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "request body not received within {:?}",
                        state.limits.body_timeout
                    ),
                ),
            );
        }
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return unread_body(
                version,
                reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "request body is larger than the {limit}-byte limit (--max-body-bytes)"
                    ),
                ),
            );
        }
        Ok(Err(err)) => {
            return unread_body(
                version,
                reject(
                    StatusCode::BAD_REQUEST,
                    "body_read",
                    format!("cannot read request body: {err}"),
                ),
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };

    let started = Instant::now();
    // An owned Arc, not a guard: the restore fallback may await a lookup before deciding.
    let policy = state.policy.load_full();
    let handled = admission::handle(
        webhook,
        &bytes,
        &*state.view,
        &policy,
        state.fetcher.as_deref(),
    )
    .await;
    match handled {
        Ok(reviewed) => {
            let lookup = &reviewed.lookup;
            if let Some(fetched) = lookup {
                state
                    .metrics
                    .snapshot_fallbacks
                    .get_or_create(&crate::metrics::ResultLabels {
                        result: fetched.result_label(),
                    })
                    .inc();
            }
            let req = &reviewed.request;
            let verdict = &reviewed.verdict;
            let decision = verdict.decision();
            state.metrics.observe_review(
                webhook,
                &req.kind.kind,
                req.operation.as_str(),
                decision,
                &verdict.rules,
                started.elapsed().as_secs_f64(),
            );
            // One line per logged review, its fields on the event itself. A span would cost
            // more than the line: the JSON formatter renders a span's fields when it is created
            // (for every review, logged or not) and parses them back for every event in it —
            // together a third of a patched review's instructions (benches/profile.sh).
            let (namespace, name) = (
                req.namespace.as_deref().unwrap_or(""),
                req.name.as_deref().unwrap_or(""),
            );
            // The message is a `&str` field, first as a format string's would be: a format
            // string is rendered through `Debug` on every line, a `&str` copied as it is.
            macro_rules! review_event {
                ($level:expr, $message:expr $(, $($fields:tt)*)?) => {
                    tracing::event!(
                        $level,
                        message = $message,
                        uid = req.uid.as_str(),
                        webhook = webhook.as_str(),
                        kind = req.kind.kind.as_str(),
                        namespace,
                        name,
                        operation = req.operation.as_str(),
                        decision,
                        $($($fields)*)?
                    )
                };
            }
            if let Some(fetched) = lookup {
                review_event!(
                    tracing::Level::DEBUG,
                    "looked up a restore's VolumeSnapshot missing from the cache",
                    result = fetched.result_label()
                );
            }
            match &verdict.denial {
                // The denial's text in a field of its own: as `message` it would be a second
                // `message` key, which strict JSON readers (Elasticsearch's) refuse.
                Some(denial) => review_event!(
                    tracing::Level::INFO,
                    "denied",
                    denial = denial.message.as_str()
                ),
                None if !verdict.warnings.is_empty() || !verdict.patch.is_empty() => {
                    review_event!(
                        tracing::Level::INFO,
                        "admitted",
                        warnings = &*crate::telemetry::warnings_field(&verdict.warnings),
                        patch_ops = verdict.patch.len()
                    )
                }
                None => review_event!(tracing::Level::DEBUG, "admitted"),
            }
            review_event!(
                tracing::Level::TRACE,
                "review payload",
                request = %String::from_utf8_lossy(&bytes)
            );
            json_response(StatusCode::OK, reviewed.body)
        }
        Err(err) => {
            let (status, reason) = match &err {
                ReviewError::Json(_) => (StatusCode::BAD_REQUEST, "json"),
                ReviewError::Shape(_) => (StatusCode::BAD_REQUEST, "shape"),
                ReviewError::ApiVersion(_) | ReviewError::MissingApiVersion => {
                    (StatusCode::BAD_REQUEST, "api_version")
                }
                ReviewError::Kind(_) => (StatusCode::BAD_REQUEST, "kind"),
                ReviewError::MissingRequest => (StatusCode::BAD_REQUEST, "no_request"),
                ReviewError::MissingUid => (StatusCode::BAD_REQUEST, "no_uid"),
                ReviewError::Encode(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encode"),
                ReviewError::Incomplete => (StatusCode::INTERNAL_SERVER_ERROR, "incomplete"),
            };
            reject(status, reason, err.to_string())
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A response sent with (some of) the request body still unread. On HTTP/1.1 the rest of that
/// body sits where the next request would start, so the connection cannot be reused: say so,
/// and hyper closes it after the response. HTTP/2 has no such header (it is illegal there);
/// hyper resets the stream's unread half instead, and the connection carries on.
fn unread_body(version: Version, mut response: Response) -> Response {
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A `metav1.Status`-shaped error body: what kube tooling expects to read on a failure.
fn status_response(status: StatusCode, reason: &'static str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status.as_u16(),
    });
    json_response(status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http_body_util::BodyExt as _;
    use serde_json::Value;
    use tower::ServiceExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::cluster::state_file;
    use crate::telemetry::{Captured, JsonLines};

    /// What the service answers to a request with `content_type` and `body`, in the pods'
    /// cluster, and the lines it logs at `info`, through the JSON formatter as deployed.
    async fn logged_request(
        hook: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value, Vec<Value>) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let index = state_file::load(&root.join("tests/golden/pods/state.yaml"))
            .unwrap()
            .index;
        let log = Captured::default();
        let _default = tracing::subscriber::set_default(
            tracing_subscriber::registry()
                .with(tracing_subscriber::filter::LevelFilter::INFO)
                .with(JsonLines::new(log.clone())),
        );
        let app = router(AppState::new(Arc::new(index), Policy::builtin()));
        let request = axum::http::Request::post(hook)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap(), log.lines())
    }

    /// `logged_request` of a review of tests/golden/pods, answered 200.
    async fn logged(review: &str, hook: &str) -> (Value, Vec<Value>) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let review = std::fs::read(root.join("tests/golden/pods").join(review)).unwrap();
        let (status, body, lines) = logged_request(hook, "application/json", review).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body, lines)
    }

    /// The one `info` line a patched review writes: what it names, and the response's warning
    /// as one plain string, as the client saw it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_patched_review_logs_one_line_with_the_warning_as_written() {
        let (body, lines) = logged(
            "captured/mutate-create-pod-mysql-pinned/review.json",
            "/mutate",
        )
        .await;
        let warnings = body["response"]["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{body}");

        let [line] = <[Value; 1]>::try_from(lines).expect("one line");
        for (field, value) in [
            ("level", "INFO"),
            ("message", "admitted"),
            ("uid", "f8bcc418-4bde-41ab-8a38-f55bb90b0c6d"),
            ("webhook", "mutate"),
            ("kind", "Pod"),
            ("namespace", "default"),
            ("name", "mysql-pinned"),
            ("operation", "CREATE"),
            ("decision", "patched"),
        ] {
            assert_eq!(line[field], value, "{field}: {line}");
        }
        assert_eq!(line["warnings"], warnings[0], "{line}");
        assert_eq!(line["patch_ops"], 2, "{line}");
    }

    /// A denial's line: `message` says "denied" once, and the denial's text, as the client
    /// read it, is a field of its own.
    #[tokio::test(flavor = "current_thread")]
    async fn a_denied_review_logs_the_denial_in_its_own_field() {
        let (body, lines) = logged("bound-pv-other-zone/review.json", "/validate").await;
        assert_eq!(body["response"]["allowed"], false, "{body}");
        let [line] = <[Value; 1]>::try_from(lines).expect("one line");
        assert_eq!(line["message"], "denied", "{line}");
        assert_eq!(line["decision"], "denied", "{line}");
        assert_eq!(
            line["denial"], body["response"]["status"]["message"],
            "{line}"
        );
        assert!(
            line["denial"]
                .as_str()
                .unwrap()
                .contains("is pinned to node gs-node-b1"),
            "{line}"
        );
    }

    /// A request refused before review: a `warn` line naming the reason, with the text the
    /// client read as `error`.
    #[tokio::test(flavor = "current_thread")]
    async fn a_rejected_request_logs_its_reason_and_text() {
        let (status, body, lines) = logged_request("/validate", "text/plain", b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let [line] = <[Value; 1]>::try_from(lines).expect("one line");
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["message"], "rejected request", "{line}");
        assert_eq!(line["reason"], "content_type", "{line}");
        assert_eq!(line["webhook"], "validate", "{line}");
        assert_eq!(line["error"], body["message"], "{line}");
    }
}
