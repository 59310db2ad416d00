//! Shared helpers for the integration tests: a server on loopback with throw-away
//! certificates, and a real TLS client (tokio-rustls + hyper's client connections).
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
use storage_admission::cluster::state_file;
use storage_admission::policy::Policy;
use storage_admission::server::serve::ConnLimits;
use storage_admission::server::{Limits, ServeConfig, Server, TlsSource};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The review of a captured golden case (the sample `serve --dev` embeds for its case).
pub fn golden_review(name: &str) -> Vec<u8> {
    if name == storage_admission::dev::SAMPLE_REVIEW_CASE {
        return storage_admission::dev::SAMPLE_REVIEW.as_bytes().to_vec();
    }
    std::fs::read(
        Path::new(ROOT)
            .join("tests/golden/captured")
            .join(name)
            .join("review.json"),
    )
    .unwrap()
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
    let tmp = tempfile::tempdir().unwrap();
    let certs = write_certs(tmp.path());
    let state = state_file::load(&Path::new(ROOT).join("src/dev/state.yaml"))
        .unwrap()
        .index;
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsSource::Files {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        },
        index: Arc::new(state),
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

/// Starts a server whose certificate is set in memory later (`--certs self-managed`); the
/// returned certificate files are for the test to set, not loaded.
pub async fn start_without_certificate() -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let certs = write_certs(tmp.path());
    let state = state_file::load(&Path::new(ROOT).join("src/dev/state.yaml"))
        .unwrap()
        .index;
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsSource::InMemory,
        index: Arc::new(state),
        policy: Policy::builtin(),
        policy_file: None,
        reload_interval: Duration::from_secs(3600),
        conn_limits: ConnLimits::default(),
        limits: Limits::default(),
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
