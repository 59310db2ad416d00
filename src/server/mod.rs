//! Serving: the webhook router, HTTPS with reloadable certificates, the admin endpoints
//! (`/livez`, `/readyz`, `/metrics`), policy and certificate reload, and graceful shutdown.

pub mod admin;
mod batched;
mod linger;
pub mod reload;
pub mod router;
pub mod serve;
pub mod tls;

pub use router::{AppState, Limits, router};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::{ClusterIndex, ClusterView};
use crate::metrics::Metrics;
use crate::policy::Policy;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, re-read every `reload_interval` (`--certs files`).
    Files { cert: PathBuf, key: PathBuf },
    /// Set in memory through [`Server::cert`] (`--certs self-managed`: the watched Secret).
    /// Until then handshakes fail and `/readyz` says why.
    InMemory,
}

/// Everything `serve` needs, already loaded and validated.
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsSource,
    pub index: Arc<ClusterIndex>,
    pub policy: Policy,
    /// The policy file to watch for changes (`None`: the built-in policy, nothing to reload).
    pub policy_file: Option<(PathBuf, Vec<u8>)>,
    pub reload_interval: Duration,
    pub conn_limits: serve::ConnLimits,
    pub limits: Limits,
    /// The restore fallback's lookup (`run`); `None` with a state file.
    pub fetcher: Option<Arc<dyn crate::cluster::fetch::SnapshotFetcher>>,
}

/// A running server: its bound addresses and the handles tests and `main` need.
pub struct Server {
    pub https_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub health: Arc<admin::Health>,
    pub cert: Arc<tls::ReloadingCert>,
    pub policy: Option<Arc<reload::PolicySource>>,
    /// The policy being served (swapped on reload); the controller reads the same one.
    pub current_policy: Arc<arc_swap::ArcSwap<Policy>>,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    https: JoinHandle<bool>,
    admin: JoinHandle<()>,
    reloader: JoinHandle<()>,
}

impl Server {
    /// Binds both listeners, loads the certificate and starts serving.
    pub async fn start(config: ServeConfig) -> Result<Self, ServeError> {
        let provider = tls::provider();
        let cert = Arc::new(match &config.tls {
            TlsSource::Files { cert, key } => {
                tls::ReloadingCert::load(cert, key, provider.clone())?
            }
            TlsSource::InMemory => tls::ReloadingCert::empty(provider.clone()),
        });
        let tls_config = Arc::new(tls::server_config(cert.clone(), provider)?);

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let https_listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin_listen).await?;
        let https_addr = https_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                addr: config.admin_listen,
                source,
            })?;

        let view: Arc<dyn ClusterView> = config.index.clone();
        let mut state = AppState::new(view, config.policy);
        state.limits = config.limits;
        state.fetcher = config.fetcher;
        let metrics = state.metrics.clone();
        let current_policy = state.policy.clone();
        let policy = config.policy_file.map(|(path, text)| {
            Arc::new(reload::PolicySource::new(path, text, state.policy.clone()))
        });
        let health = Arc::new(admin::Health::new(
            config.index,
            metrics.clone(),
            cert.clone(),
        ));

        let (stop, stopped) = watch::channel(false);
        let wait_stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let https = tokio::spawn(serve::serve_https(
            https_listener,
            tls_config,
            router(state),
            config.conn_limits,
            metrics.clone(),
            wait_stop(stopped.clone()),
        ));
        let admin_app = admin::router(health.clone());
        let admin_stop = wait_stop(stopped);
        let admin = tokio::spawn(async move {
            if let Err(error) = axum::serve(admin_listener, admin_app)
                .with_graceful_shutdown(admin_stop)
                .await
            {
                tracing::error!(%error, "admin server failed");
            }
        });
        let reloader = tokio::spawn(reload::reload_loop(
            Some(cert.clone()),
            policy.clone(),
            metrics.clone(),
            config.reload_interval,
        ));
        tracing::info!(%https_addr, %admin_addr, "serving");
        Ok(Self {
            https_addr,
            admin_addr,
            health,
            cert,
            policy,
            current_policy,
            metrics,
            stop,
            https,
            admin,
            reloader,
        })
    }

    /// Starts a graceful shutdown: readiness goes false, the listener closes, and in-flight
    /// reviews get the configured grace period to finish.
    pub fn shutdown(&self) {
        self.health.begin_shutdown();
        let _ = self.stop.send(true);
    }

    /// Waits for the shutdown to complete; `true` when every connection drained in time.
    pub async fn wait(self) -> bool {
        let drained = self.https.await.unwrap_or(false);
        let _ = self.admin.await;
        self.reloader.abort();
        drained
    }
}
