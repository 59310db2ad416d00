//! Shared helpers for the integration tests: the golden reviews, the router driven in-process
//! (`tower::ServiceExt::oneshot`), bounded waits for a state, a server on loopback with
//! throw-away certificates, and a real TLS client (tokio-rustls + hyper's client connections).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use storage_admission::certs;
use storage_admission::cluster::ClusterIndex;
use storage_admission::policy::Policy;
use storage_admission::server::serve::ConnLimits;
use storage_admission::server::{AppState, Limits, ServeConfig, Server, TlsSource, router};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The review bytes of a golden case, `folder` under `tests/golden/` (e.g. `captured/<name>`).
/// The sample `serve --dev` embeds is the review of its captured case: that case has no
/// `review.json` of its own, so this is the one place that knows where it lives.
pub fn golden_bytes(folder: &str) -> Vec<u8> {
    if folder == format!("captured/{}", storage_admission::dev::SAMPLE_REVIEW_CASE) {
        return storage_admission::dev::SAMPLE_REVIEW.as_bytes().to_vec();
    }
    let path = Path::new(ROOT)
        .join("tests/golden")
        .join(folder)
        .join("review.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The review of a captured golden case.
pub fn golden_review(name: &str) -> Vec<u8> {
    golden_bytes(&format!("captured/{name}"))
}

/// The review of a golden case, parsed.
pub fn golden_json(folder: &str) -> serde_json::Value {
    serde_json::from_slice(&golden_bytes(folder)).unwrap_or_else(|e| panic!("{folder}: {e}"))
}

/// `review` with its own uid, so a response can be matched to its request.
pub fn with_uid(review: &serde_json::Value, uid: &str) -> serde_json::Value {
    let mut review = review.clone();
    review["request"]["uid"] = uid.into();
    review
}

/// The demo cluster every golden review was captured against, as `serve --dev` embeds it
/// (`src/dev/state.yaml`).
pub fn demo_state() -> ClusterIndex {
    storage_admission::dev::demo_cluster().expect("demo state loads")
}

/// The router as shipped, on the demo cluster with the built-in policy and `limits`.
pub fn demo_app(limits: Limits) -> axum::Router {
    app_on(demo_state(), limits)
}

/// The router with no cluster state loaded, for requests refused before any rule runs.
pub fn stateless_app(limits: Limits) -> axum::Router {
    app_on(ClusterIndex::unavailable("test"), limits)
}

fn app_on(index: ClusterIndex, limits: Limits) -> axum::Router {
    let mut state = AppState::new(Arc::new(index), Policy::builtin());
    state.limits = limits;
    router(state)
}

/// POSTs `body` to `path` through `app` (in-process, `oneshot`): the status and the JSON
/// body. Every answer of this service is JSON, so a body that is not fails the test.
pub async fn send(
    app: &axum::Router,
    path: &str,
    content_type: Option<&str>,
    body: axum::body::Body,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt as _;
    let mut request = axum::http::Request::post(path);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: response is not JSON ({e}): {bytes:?}"));
    (status, json)
}

/// A bound on waits for an event, so a bug fails the test instead of hanging it. Only ever a
/// bound: no test asserts how long anything took.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Awaits `fut`, failing the test naming `what` if the hang guard runs out first.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("hang guard: gave up waiting for {what}"))
}

/// Waits for a state the server reaches on its own, polling `cond` (which reads a real signal:
/// a metric, a listener, a flag) and yielding in between, never sleeping; bounded by the hang
/// guard.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

pub struct CertFiles {
    pub dir: PathBuf,
    pub ca: Vec<u8>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes a fresh CA + localhost certificate into `dir`.
pub fn write_certs(dir: &Path) -> CertFiles {
    let generated = certs::generate(&["localhost".into(), "127.0.0.1".into()], "test", 1).unwrap();
    // Replace: reload tests write a second pair over the first.
    let written = certs::write(dir, &generated, certs::Existing::Replace).unwrap();
    CertFiles {
        dir: dir.to_owned(),
        ca: generated.ca_cert_pem.into_bytes(),
        cert: written.cert,
        key: written.key,
    }
}

pub struct TestServer {
    pub server: Server,
    pub certs: CertFiles,
    pub _tmp: tempfile::TempDir,
}

pub async fn start(conn_limits: ConnLimits) -> TestServer {
    start_with_policy(conn_limits, None).await
}

/// Starts a server whose policy comes from `policy_file` (path, text), reloadable.
pub async fn start_with_policy(
    conn_limits: ConnLimits,
    policy_file: Option<(PathBuf, String)>,
) -> TestServer {
    start_with(conn_limits, Limits::default(), policy_file).await
}

/// Starts a server with the given connection and request limits.
pub async fn start_with(
    conn_limits: ConnLimits,
    limits: Limits,
    policy_file: Option<(PathBuf, String)>,
) -> TestServer {
    start_server(Tls::Files, conn_limits, limits, policy_file).await
}

/// Starts a server whose certificate is set in memory later (`--certs self-managed`); the
/// returned certificate files are for the test to set, not loaded.
pub async fn start_without_certificate() -> TestServer {
    start_server(
        Tls::InMemory,
        ConnLimits::default(),
        Limits::default(),
        None,
    )
    .await
}

/// Where the test server's certificate comes from.
enum Tls {
    /// The freshly written files.
    Files,
    /// Set in memory by the test.
    InMemory,
}

/// A server on loopback over the demo cluster, with fresh certificates written to a temporary
/// directory.
async fn start_server(
    tls: Tls,
    conn_limits: ConnLimits,
    limits: Limits,
    policy_file: Option<(PathBuf, String)>,
) -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let certs = write_certs(tmp.path());
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: match tls {
            Tls::Files => TlsSource::Files {
                cert: certs.cert.clone(),
                key: certs.key.clone(),
            },
            Tls::InMemory => TlsSource::InMemory,
        },
        index: Arc::new(demo_state()),
        policy: policy_file
            .as_ref()
            .map_or_else(Policy::builtin, |(_, text)| Policy::parse(text).unwrap()),
        policy_file: policy_file.map(|(path, text)| (path, text.into_bytes())),
        // The reload loop is exercised by calling reload directly; keep the timer out of the way.
        reload_interval: Duration::from_secs(3600),
        conn_limits,
        limits,
        fetcher: None,
    })
    .await
    .unwrap();
    TestServer {
        server,
        certs,
        _tmp: tmp,
    }
}

pub fn connector(ca_pem: &[u8], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

pub async fn tls_connect(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector(ca_pem, alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub type H1 = http1::SendRequest<Full<Bytes>>;
pub type H2 = http2::SendRequest<Full<Bytes>>;

pub async fn h1(addr: std::net::SocketAddr, ca_pem: &[u8]) -> H1 {
    let stream = tls_connect(addr, ca_pem, &[b"http/1.1"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send
}

pub async fn h2(addr: std::net::SocketAddr, ca_pem: &[u8]) -> H2 {
    let stream = tls_connect(addr, ca_pem, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

pub fn review_request(path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Status and JSON body of a response.
pub async fn read(response: hyper::Response<hyper::body::Incoming>) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}
