//! The HTTPS accept loop: TLS handshake and header timeouts, a connection limit, HTTP/1.1
//! keep-alive and HTTP/2 on one port, a lingering close (`linger`), and a bounded graceful
//! drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::batched::BatchedWrites;
use super::linger::LingeringClose;
use crate::metrics::Metrics;

/// Connection-level limits. The defaults keep slow or idle clients from holding the server:
/// the API server opens a handful of keep-alive connections, so 1024 is far above real use.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// How long a client has to send a complete request head: the first one counted from the
    /// end of the TLS handshake (HTTP/1.1 and HTTP/2), later HTTP/1.1 ones from the end of the
    /// previous response, so it also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting and
/// waits (at most `shutdown_grace`) for open connections to finish their requests.
/// Returns whether the drain completed in time.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(256);
    tokio::pin!(shutdown);

    loop {
        // Wait for a free slot before accepting, so excess clients queue in the kernel's
        // backlog instead of costing a task and a TLS handshake each.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // EMFILE and friends: log and keep serving the connections we have.
                    tracing::warn!(%error, "accept failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            metrics.open_connections.inc();
            // Under TLS, so its lingering close drains raw bytes (see `linger`).
            let tcp = LingeringClose::new(tcp);
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let first_request = Arc::new(Notify::new());
                    let service = TowerToHyperService::new(app.map_request({
                        let first_request = first_request.clone();
                        move |request| {
                            // Stores a permit: later requests find it already set.
                            first_request.notify_one();
                            request
                        }
                    }));
                    // Responses written between two flushes leave in one TLS record.
                    let stream = BatchedWrites::new(stream);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    // hyper's header-read timeout starts only once the auto builder has seen
                    // enough bytes to tell HTTP/1.1 from the HTTP/2 preface, and HTTP/2 has none
                    // at all: a client that completes TLS and then sends one byte (or nothing)
                    // would hold its slot forever. So the first request head must arrive within
                    // the header-read timeout whatever the protocol; hyper's own timeout then
                    // covers later HTTP/1.1 requests on the kept-alive connection.
                    let first_request_deadline = async {
                        let first = first_request.notified();
                        if tokio::time::timeout(limits.header_read_timeout, first)
                            .await
                            .is_ok()
                        {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        result = watcher.watch(conn.into_owned()) => {
                            if let Err(error) = result {
                                tracing::debug!(%peer, %error, "connection ended with an error");
                            }
                        }
                        () = first_request_deadline => {
                            tracing::debug!(%peer, "no request head within the header-read timeout; closing");
                        }
                    }
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            metrics.open_connections.dec();
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; draining in-flight requests");
    match tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => {
            tracing::info!("all connections drained");
            true
        }
        Err(_) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the shutdown grace period");
            false
        }
    }
}
