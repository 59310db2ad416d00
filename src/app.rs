//! The running service: the server, and in a cluster the controller, the leader election,
//! registration and certificate management around it. `serve` and `run` start one and stop
//! it on a signal; tests start one in process and stop it through [`App::stop`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::registration::{self, Registrar};
use crate::self_managed::{self, Issuing};
use crate::server::{ServeConfig, ServeError, Server};
use crate::{controller, leader};

/// What `run` needs to start the controller once the server (its metrics and policy) is up.
pub struct ControllerStart {
    pub instance: Option<String>,
    pub config: controller::Config,
}

/// How `run` keeps certificates and webhook configurations.
pub enum CertsStart {
    /// Mounted files; with `register`, the leader registers the webhooks with `--ca-bundle`.
    Files {
        register: Option<(registration::Target, PathBuf)>,
    },
    /// The leader keeps the Secret and the registration; every replica watches the Secret.
    SelfManaged {
        secret: String,
        issuing: Issuing,
        target: registration::Target,
    },
}

/// The in-cluster tasks of `run`.
pub struct ClusterStart {
    pub client: kube::Client,
    /// `None`: this replica always leads (`--leader-election=false`).
    pub election: Option<leader::Config>,
    pub controller: Option<ControllerStart>,
    pub certs: CertsStart,
    pub resync: Duration,
}

/// A started service.
pub struct App {
    server: Server,
    elector: Option<leader::Elector>,
    /// Tasks that write to the cluster only while leading; they return once leadership ends.
    leading: Vec<JoinHandle<()>>,
    /// Tasks every replica runs until shutdown (the Secret watch).
    background: Vec<JoinHandle<()>>,
}

impl App {
    /// Starts the server and, with `cluster`, the tasks around it.
    pub async fn start(
        config: ServeConfig,
        cluster: Option<ClusterStart>,
    ) -> Result<Self, ServeError> {
        let retry = config.reload_interval;
        let index = config.index.clone();
        let server = Server::start(config).await?;
        let mut app = App {
            server,
            elector: None,
            leading: Vec::new(),
            background: Vec::new(),
        };
        if let Some(cluster) = cluster {
            app.start_cluster_tasks(cluster, index, retry);
        }
        Ok(app)
    }

    /// Every replica serves the webhooks; only the leader writes to the cluster. Tasks that
    /// write only while leader take the elector's signal (they return once it closes); tasks
    /// every replica runs (the Secret watch) go until shutdown.
    fn start_cluster_tasks(
        &mut self,
        cluster: ClusterStart,
        index: Arc<crate::cluster::ClusterIndex>,
        retry: Duration,
    ) {
        let server = &self.server;
        let client = cluster.client;
        let election = match cluster.election {
            Some(config) => leader::Elector::spawn(client.clone(), config, server.metrics.clone()),
            None => leader::Elector::always(&server.metrics),
        };
        let is_leader = election.subscribe();
        self.elector = Some(election);
        if let Some(start) = cluster.controller {
            let ctx = controller::Context::new(
                client.clone(),
                start.instance,
                server.metrics.clone(),
                server.current_policy.clone(),
                index,
                start.config,
            );
            self.leading.push(tokio::spawn(controller::run(
                Arc::new(ctx),
                is_leader.clone(),
            )));
        }
        let registrar = |target| Registrar {
            client: client.clone(),
            target,
            metrics: server.metrics.clone(),
        };
        match cluster.certs {
            CertsStart::Files { register: None } => {}
            CertsStart::Files {
                register: Some((target, bundle_file)),
            } => self.leading.push(tokio::spawn(registration::run_from_file(
                Arc::new(registrar(target)),
                bundle_file,
                retry,
                cluster.resync,
                is_leader.clone(),
            ))),
            CertsStart::SelfManaged {
                secret,
                issuing,
                target,
            } => {
                let changed = Arc::new(tokio::sync::Notify::new());
                self.background
                    .push(tokio::spawn(self_managed::watch_secret(
                        client.clone(),
                        target.namespace.clone(),
                        secret.clone(),
                        server.cert.clone(),
                        server.metrics.clone(),
                        changed.clone(),
                    )));
                let leader_task = Arc::new(self_managed::CertRotator {
                    client: client.clone(),
                    namespace: target.namespace.clone(),
                    secret,
                    issuing,
                    registrar: registrar(target),
                    metrics: server.metrics.clone(),
                    clock: Arc::new(time::OffsetDateTime::now_utc),
                    resync: cluster.resync,
                    retry,
                });
                self.leading
                    .push(tokio::spawn(leader_task.run(is_leader.clone(), changed)));
            }
        }
    }

    /// Where the webhooks listen (the port is known once started, also for port 0).
    pub fn https_addr(&self) -> SocketAddr {
        self.server.https_addr
    }

    /// Where /livez, /readyz and /metrics listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr
    }

    /// Stops everything, in order. The leader's tasks stop first (no new patches, events or
    /// Secret writes from a terminating pod), then the Lease is released so another replica
    /// leads at once; the webhooks keep serving meanwhile, then drain. Returns whether every
    /// connection drained within the grace period (the log says so either way).
    pub async fn stop(self) -> bool {
        let App {
            server,
            elector,
            leading,
            background,
        } = self;
        if let Some(elector) = elector {
            let stopped = async move {
                for task in leading {
                    let _ = task.await;
                }
            };
            elector.shutdown(stopped, &server.metrics).await;
        }
        for task in background {
            task.abort();
        }
        server.shutdown();
        server.wait().await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::policy::Policy;
    use crate::server::serve::ConnLimits;
    use crate::server::{Limits, TlsSource};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn a_serve_style_app_starts_on_ephemeral_ports_is_ready_and_stops_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::dev::write(dir.path()).unwrap();
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            tls: TlsSource::Files {
                cert: files.cert,
                key: files.key,
            },
            index: Arc::new(crate::dev::demo_cluster().unwrap()),
            policy: Policy::builtin(),
            policy_file: None,
            reload_interval: Duration::from_secs(5),
            conn_limits: ConnLimits::default(),
            limits: Limits::default(),
            fetcher: None,
        };
        let app = App::start(config, None).await.unwrap();
        assert_ne!(app.https_addr().port(), 0);
        let admin = app.admin_addr();
        let ready = get(admin, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

        assert!(
            app.stop().await,
            "nothing was in flight, so everything drained"
        );
        // Stopped: the admin listener is closed.
        assert!(tokio::net::TcpStream::connect(admin).await.is_err());
    }
}
