//! What the tests against a mocked API server (`tower_test::mock::pair`, as kube-rs's own
//! controller tests do) share: the client, reading a request's JSON body, and answers.

use axum::http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

/// The test's side of the mocked API server: each request the code under test sends, to
/// assert and answer.
pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose every request goes to the returned handle.
pub fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

pub async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A JSON answer with `status`.
pub fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// A `metav1.Status` failure body, as the API server sends with a 4xx/5xx.
pub fn status_body(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason,
           "code": code, "message": reason})
}

/// A failure answer: `code` with its `metav1.Status` body.
pub fn status(code: u16, reason: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap(),
        &status_body(code, reason),
    )
}
