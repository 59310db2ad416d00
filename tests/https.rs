//! The webhook over real TLS, as the API server talks to it: HTTP/1.1 with keep-alive and
//! HTTP/2, certificate reload while requests flow, and graceful shutdown with a review in flight.

mod common;

use std::time::Duration;

use common::*;
use storage_admission::server::serve::ConnLimits;
use storage_admission::server::tls::Reload;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SNAPSHOT: &str = "mutate-create-volumesnapshot-disk-snapshot";
const RESTORE: &str = "validate-create-persistentvolumeclaim-restore-pvc";

/// Waits for a condition the server reaches on its own (bounded, so a bug fails the test
/// instead of hanging it). Yields instead of sleeping: this is waiting for a state, not a time.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_serves_many_reviews_on_one_connection() {
    let t = start(ConnLimits::default()).await;
    let mut conn = h1(t.server.https_addr, &t.certs.ca).await;
    for (path, case) in [
        ("/mutate", SNAPSHOT),
        ("/validate", RESTORE),
        ("/mutate", SNAPSHOT),
    ] {
        conn.ready().await.unwrap();
        let review = golden_review(case);
        let uid =
            serde_json::from_slice::<serde_json::Value>(&review).unwrap()["request"]["uid"].clone();
        let (status, body) = read(
            conn.send_request(review_request(path, review))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["uid"], uid);
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    }
    assert_eq!(
        t.server.metrics.open_connections.get(),
        1,
        "all three reviews used one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_multiplexes_concurrent_reviews() {
    let t = start(ConnLimits::default()).await;
    let conn = h2(t.server.https_addr, &t.certs.ca).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut conn = conn.clone();
        let (path, case) = if i % 2 == 0 {
            ("/mutate", SNAPSHOT)
        } else {
            ("/validate", RESTORE)
        };
        tasks.push(tokio::spawn(async move {
            conn.ready().await.unwrap();
            read(
                conn.send_request(review_request(path, golden_review(case)))
                    .await
                    .unwrap(),
            )
            .await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200);
        assert!(body["response"]["allowed"].is_boolean());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_serving_and_rejects_a_broken_pair() {
    let t = start(ConnLimits::default()).await;
    let addr = t.server.https_addr;
    let old_ca = t.certs.ca.clone();

    // A client sends reviews continuously on one keep-alive connection while the pair rotates.
    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel();
    let (rotated_tx, rotated_rx) = tokio::sync::oneshot::channel::<()>();
    let traffic = tokio::spawn({
        let ca = old_ca.clone();
        async move {
            let mut conn = h1(addr, &ca).await;
            let mut ok = 0;
            let mut halfway = Some(halfway_tx);
            let mut rotated = Some(rotated_rx);
            for i in 0..100 {
                if i == 50 {
                    let _ = halfway.take().unwrap().send(());
                    rotated.take().unwrap().await.unwrap();
                }
                conn.ready().await.unwrap();
                let (status, _) = read(
                    conn.send_request(review_request("/mutate", golden_review(SNAPSHOT)))
                        .await
                        .unwrap(),
                )
                .await;
                if status == 200 {
                    ok += 1;
                }
            }
            ok
        }
    });

    halfway_rx.await.unwrap();
    let new_dir = t.certs.dir.join("new");
    let new = write_certs(&new_dir);
    std::fs::copy(&new.cert, &t.certs.cert).unwrap();
    std::fs::copy(&new.key, &t.certs.key).unwrap();
    assert_eq!(t.server.cert.reload().unwrap(), Reload::Reloaded);
    assert_eq!(
        t.server.cert.reload().unwrap(),
        Reload::Unchanged,
        "unchanged files are not reloaded again"
    );
    rotated_tx.send(()).unwrap();
    assert_eq!(
        traffic.await.unwrap(),
        100,
        "every review on the open connection succeeded"
    );

    // New connections get the new certificate: trusted by the new CA only.
    assert!(tls_connect(addr, &new.ca, &[b"http/1.1"]).await.is_ok());
    assert!(tls_connect(addr, &old_ca, &[b"http/1.1"]).await.is_err());

    // A broken pair (key of another certificate) is rejected; the current one keeps serving.
    let other = write_certs(&t.certs.dir.join("other"));
    std::fs::copy(&other.key, &t.certs.key).unwrap();
    let err = t.server.cert.reload().unwrap_err().to_string();
    assert!(err.contains("does not belong to the certificate"), "{err}");
    std::fs::write(&t.certs.cert, b"not a certificate").unwrap();
    assert!(t.server.cert.reload().is_err());
    let mut conn = h1(addr, &new.ca).await;
    let (status, _) = read(
        conn.send_request(review_request("/validate", golden_review(RESTORE)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_review_in_flight() {
    let t = start(ConnLimits::default()).await;
    let addr = t.server.https_addr;
    let review = golden_review(RESTORE);
    let (head, tail) = review.split_at(review.len() / 2);

    // Start a review by hand: headers and half the body, so it is in flight at shutdown.
    let mut stream = tls_connect(addr, &t.certs.ca, &[b"http/1.1"])
        .await
        .unwrap();
    let request_head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        review.len()
    );
    stream.write_all(request_head.as_bytes()).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.flush().await.unwrap();
    let metrics = t.server.metrics.clone();
    until("the review to be in flight", || {
        metrics.in_flight.get() == 1
    })
    .await;

    t.server.shutdown();
    assert!(
        t.server.health.readiness().is_err(),
        "readiness goes false at once"
    );
    let admin = t.server.admin_addr;

    // The listener is closed: a new connection cannot complete.
    until("the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;

    // The review in flight still gets its answer.
    stream.write_all(tail).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("acb0c50a-27c9-4d95-ab79-bb93c71d2dd1"),
        "the response echoes the uid"
    );
    assert!(
        t.server.wait().await,
        "everything drained within the grace period"
    );
    assert!(
        std::net::TcpStream::connect(admin).is_err(),
        "the admin port is closed too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tls_handshakes_are_dropped() {
    let t = start(ConnLimits {
        handshake_timeout: Duration::from_millis(200),
        ..ConnLimits::default()
    })
    .await;
    // A client that connects and never speaks (slowloris at the TLS layer).
    let mut tcp = tokio::net::TcpStream::connect(t.server.https_addr)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("the server must close a connection that never completes its handshake")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    // And the server still serves everyone else.
    let mut conn = h1(t.server.https_addr, &t.certs.ca).await;
    let (status, _) = read(
        conn.send_request(review_request("/mutate", golden_review(SNAPSHOT)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_12_and_13_are_offered_and_admin_is_plain_http() {
    let t = start(ConnLimits::default()).await;
    let stream = tls_connect(t.server.https_addr, &t.certs.ca, &[b"http/1.1"])
        .await
        .unwrap();
    let version = stream.get_ref().1.protocol_version().unwrap();
    assert!(matches!(
        version,
        rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
    ));

    let mut admin = tokio::net::TcpStream::connect(t.server.admin_addr)
        .await
        .unwrap();
    admin
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    admin.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_replaced_under_load_takes_effect_and_an_invalid_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let off = "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  defaultSnapshotClass: {mode: off}\n";
    std::fs::write(&path, off).unwrap();
    let t = start_with_policy(ConnLimits::default(), Some((path.clone(), off.to_owned()))).await;
    let source = t
        .server
        .policy
        .clone()
        .expect("a policy file is being watched");
    let addr = t.server.https_addr;

    // Traffic on one keep-alive connection, reporting after each review whether it was patched.
    let (patched_tx, mut patched_rx) = tokio::sync::mpsc::channel::<bool>(1);
    let (go_tx, go_rx) = tokio::sync::watch::channel(true);
    let traffic = tokio::spawn({
        let ca = t.certs.ca.clone();
        async move {
            let mut conn = h1(addr, &ca).await;
            let mut failures = 0;
            while *go_rx.borrow() {
                conn.ready().await.unwrap();
                let (status, body) = read(
                    conn.send_request(review_request("/mutate", golden_review(SNAPSHOT)))
                        .await
                        .unwrap(),
                )
                .await;
                if status != 200 {
                    failures += 1;
                }
                if patched_tx
                    .send(body["response"]["patch"].is_string())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            failures
        }
    });
    assert!(
        !patched_rx.recv().await.unwrap(),
        "the rule is off: no patch"
    );

    // A valid new policy takes effect for the next reviews on the same connection.
    std::fs::write(
        &path,
        "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n",
    )
    .unwrap();
    assert_eq!(source.reload().unwrap(), Reload::Reloaded);
    // Up to two answers predate the swap: one in the channel, one waiting to be sent.
    patched_rx.recv().await.unwrap();
    patched_rx.recv().await.unwrap();
    assert!(
        patched_rx.recv().await.unwrap(),
        "the built-in mode (enforce) patches"
    );

    // An invalid one is refused and the current policy keeps serving.
    std::fs::write(&path, "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules: {defaultSnapshotClass: {mode: sometimes}}\n").unwrap();
    assert!(source.reload().is_err());
    for _ in 0..20 {
        assert!(
            patched_rx.recv().await.unwrap(),
            "still enforcing the last valid policy"
        );
    }
    go_tx.send(false).unwrap();
    drop(patched_rx);
    assert_eq!(
        traffic.await.unwrap(),
        0,
        "no review failed while the policy changed"
    );
}

/// `GET /readyz` on the admin port: (status line, body).
async fn readyz(addr: std::net::SocketAddr) -> String {
    let mut admin = tokio::net::TcpStream::connect(addr).await.unwrap();
    admin
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    admin.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_managed_replica_refuses_handshakes_until_the_secret_gives_it_a_certificate() {
    use k8s_openapi::api::core::v1::Secret;
    use storage_admission::self_managed::run::serve_from;

    let t = start_without_certificate().await;
    let addr = t.server.https_addr;
    assert!(
        tls_connect(addr, &t.certs.ca, &[b"http/1.1"])
            .await
            .is_err()
    );
    let out = readyz(t.server.admin_addr).await;
    assert!(
        out.starts_with("HTTP/1.1 503") && out.contains("no serving certificate yet"),
        "{out}"
    );

    // The pair arrives in the watched Secret (what the watch hands to serve_from).
    let b64 = |path: &std::path::Path| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
    };
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "storage-admission-tls", "namespace": "storage-admission"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(&t.certs.cert), "tls.key": b64(&t.certs.key)},
    }))
    .unwrap();
    assert_eq!(
        serve_from(&t.server.cert, &secret, &t.server.metrics),
        Some(Reload::Reloaded)
    );
    let mut conn = h1(addr, &t.certs.ca).await;
    let (status, _) = read(
        conn.send_request(review_request("/validate", golden_review(RESTORE)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status, 200,
        "a real TLS client verifies the served certificate"
    );
    assert!(
        readyz(t.server.admin_addr)
            .await
            .starts_with("HTTP/1.1 200")
    );
}

/// A request body that hands over `chunks` and then stalls for good: the client has sent its
/// head and part of the body, and is still "sending" when the answer arrives. `announced` is
/// its `Content-Length`; without one, HTTP/1.1 sends it chunked. `Stalling::complete` ends
/// instead of stalling: an ordinary request on the same kind of connection.
struct Stalling {
    chunks: std::collections::VecDeque<bytes::Bytes>,
    announced: Option<u64>,
    ends: bool,
}

impl Stalling {
    fn new(chunks: usize, chunk_len: usize, announced: Option<u64>) -> Self {
        Self {
            chunks: (0..chunks)
                .map(|_| bytes::Bytes::from(vec![b' '; chunk_len]))
                .collect(),
            announced,
            ends: false,
        }
    }

    fn complete(body: Vec<u8>) -> Self {
        Self {
            announced: Some(body.len() as u64),
            chunks: [bytes::Bytes::from(body)].into(),
            ends: true,
        }
    }
}

impl hyper::body::Body for Stalling {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.chunks.pop_front() {
            Some(chunk) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
            None if self.ends => std::task::Poll::Ready(None),
            None => std::task::Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ends && self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.announced.map_or_else(
            hyper::body::SizeHint::default,
            hyper::body::SizeHint::with_exact,
        )
    }
}

fn stalling_request(body: Stalling) -> hyper::Request<Stalling> {
    hyper::Request::post("/validate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// A server that accepts bodies of up to 1 KiB.
async fn start_small_bodies() -> TestServer {
    let limits = storage_admission::server::Limits {
        max_body_bytes: 1024,
        ..Default::default()
    };
    start_with(ConnLimits::default(), limits, None).await
}

async fn h1_stalling(t: &TestServer) -> hyper::client::conn::http1::SendRequest<Stalling> {
    let stream = tls_connect(t.server.https_addr, &t.certs.ca, &[b"http/1.1"])
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Status, `Connection` header and body text of a response.
async fn read_text(
    response: hyper::Response<hyper::body::Incoming>,
) -> (u16, Option<String>, String) {
    use http_body_util::BodyExt;
    let status = response.status().as_u16();
    let connection = response
        .headers()
        .get("connection")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        connection,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_content_length_over_the_limit_is_413_before_the_body_is_read() {
    let t = start_small_bodies().await;
    let mut conn = h1_stalling(&t).await;
    // 16 MiB announced, one 512-byte chunk sent: the answer cannot wait for the rest.
    let response = conn
        .send_request(stalling_request(Stalling::new(1, 512, Some(16 << 20))))
        .await
        .unwrap();
    let (status, connection, body) = read_text(response).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("16777216 bytes") && body.contains("1024-byte limit"),
        "{body}"
    );
    assert!(body.contains("--max-body-bytes"), "names the flag: {body}");
    assert_eq!(
        connection.as_deref(),
        Some("close"),
        "the unread body must not be parsed as the next request"
    );
    assert!(
        conn.ready().await.is_err(),
        "the server closed the connection after the 413"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_chunked_body_growing_past_the_limit_is_413() {
    let t = start_small_bodies().await;
    let mut conn = h1_stalling(&t).await;
    // No Content-Length: chunked, 1.5 KiB sent, then nothing more (and no end).
    let response = conn
        .send_request(stalling_request(Stalling::new(3, 512, None)))
        .await
        .unwrap();
    let (status, connection, body) = read_text(response).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("larger than the 1024-byte limit (--max-body-bytes)"),
        "{body}"
    );
    assert_eq!(connection.as_deref(), Some("close"));
    assert!(conn.ready().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_content_length_over_the_limit_is_413_and_the_connection_carries_on() {
    let t = start_small_bodies().await;
    let stream = tls_connect(t.server.https_addr, &t.certs.ca, &[b"h2"])
        .await
        .unwrap();
    let (mut conn, driver) = hyper::client::conn::http2::handshake::<_, _, Stalling>(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(driver);
    let response = conn
        .send_request(stalling_request(Stalling::new(1, 512, Some(16 << 20))))
        .await
        .unwrap();
    let (status, connection, body) = read_text(response).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("16777216 bytes") && body.contains("--max-body-bytes"),
        "{body}"
    );
    assert_eq!(connection, None, "no Connection header in HTTP/2");

    // Only the stream was given up: the same connection answers the next request (a small
    // body, under the 1 KiB limit, that is not JSON).
    conn.ready().await.unwrap();
    let response = conn
        .send_request(stalling_request(Stalling::complete(b"{".to_vec())))
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "json", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_sending_a_whole_oversized_body_at_once_still_reads_the_413() {
    // No `Expect: 100-continue`: the client writes all 4 MiB without waiting, while the
    // server has answered from the head alone. The server drains what keeps arriving before
    // it closes (a close with unread data would reset the connection and fail the client's
    // next write before it read the answer).
    let t = start_small_bodies().await;
    let mut conn = h1(t.server.https_addr, &t.certs.ca).await;
    let response = conn
        .send_request(review_request("/validate", vec![b' '; 4 << 20]))
        .await
        .expect("the client finished its upload and read the answer");
    let (status, body) = read(response).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["reason"], "too_large", "{body}");
}
