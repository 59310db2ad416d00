//! `run`: the webhooks with a live, watch-fed view of the cluster, and the controller,
//! leader election, registration and certificates around them.

use std::sync::Arc;
use std::time::Duration;

use super::{Error, Outcome, runtime, server_config, signal};
use crate::app::{App, CertsStart, ClusterStart, ControllerStart};
use crate::cli::{CertsMode, RunArgs};
use crate::cluster::ClusterIndex;
use crate::cluster::fetch::{self, KubeSnapshotFetcher, SnapshotFetcher};
use crate::self_managed::Issuing;
use crate::{certs, controller, leader, registration};

/// The namespace the shipped manifests install into.
pub const DEFAULT_NAMESPACE: &str = "storage-admission";

pub fn run(args: RunArgs) -> Result<Outcome, Error> {
    // The same check `dispatch` (and `--check-args`) made; it also says where the certificate
    // comes from.
    let tls = crate::cli::validate_run(&args)?;
    runtime()?.block_on(async move {
        let client = kube::Client::try_default().await.map_err(Error::Cluster)?;
        let namespace = own_namespace(args.namespace.as_deref(), client.default_namespace());
        let election = if args.leader_election {
            let config = leader::Config::new(
                namespace.clone(),
                args.lease_name.clone(),
                leader::identity(args.pod_name.as_deref()),
                args.lease_duration,
                args.lease_renew_grace,
            )
            .map_err(|e| Error::usage(e.to_string()))?;
            Some(config)
        } else {
            None
        };
        tracing::info!(%namespace, "watching the cluster");
        let index = Arc::new(ClusterIndex::unavailable(
            "waiting for the first list from the API server",
        ));
        let watches =
            crate::cluster::watch::spawn_all(client.clone(), index.clone(), args.controller);
        let fetcher: Arc<dyn SnapshotFetcher> = Arc::new(KubeSnapshotFetcher::new(
            client.clone(),
            args.fallback_timeout,
            fetch::DEFAULT_FALLBACK_CONCURRENCY,
        ));
        let cluster = ClusterStart {
            client,
            election,
            controller: args.controller.then(|| ControllerStart {
                instance: args.pod_name.clone(),
                config: controller::Config {
                    resync: args.resync,
                    poll: args.common.reload_interval,
                    backfill_rate: args.backfill_rate,
                    dedup_window: args.event_dedup_window,
                    stuck_after: args.stuck_after,
                    scope: controller::Scope::for_namespace(&namespace),
                },
            }),
            certs: certs_start(&args, &namespace),
            resync: args.resync,
        };
        let config = server_config(&args.common, tls, index, Some(fetcher))?;
        let started = App::start(config, Some(cluster)).await;
        let result = match started {
            Ok(app) => {
                signal().await;
                app.stop().await;
                Ok(Outcome::Success)
            }
            Err(e) => Err(e.into()),
        };
        for watch in watches {
            watch.abort();
        }
        result
    })
}

fn certs_start(args: &RunArgs, namespace: &str) -> CertsStart {
    let target = registration::Target {
        namespace: namespace.to_owned(),
        service: args.service_name.clone(),
    };
    match args.certs {
        CertsMode::Files => CertsStart::Files {
            register: args
                .register
                .then(|| target.clone())
                .zip(args.ca_bundle.clone()),
        },
        CertsMode::SelfManaged => CertsStart::SelfManaged {
            secret: args.tls_secret.clone(),
            issuing: Issuing {
                names: certs::service_names(&args.service_name, namespace),
                common_name: args.service_name.clone(),
                validity: time_duration(args.cert_validity),
            },
            target,
        },
    }
}

fn time_duration(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The service's own namespace: the controller's audit skips it (as the webhook
/// configurations do), and the Lease, the self-managed Secret and registration's Service live
/// there. Without --namespace (or POD_NAMESPACE) it is the client's default: the pod's in the
/// cluster, but out of the cluster the kubeconfig context's, usually `default` — and taking
/// that as "our own" would silently stop auditing the user's objects there. So that guess
/// becomes [`DEFAULT_NAMESPACE`], where the shipped manifests put the service; `default`
/// given explicitly is someone's decision, and only warned about.
pub fn own_namespace(given: Option<&str>, client_default: &str) -> String {
    match given {
        Some("default") => {
            tracing::warn!(
                "--namespace default: the controller skips objects in its own namespace, so nothing in `default` is audited; the shipped webhook configurations exclude `storage-admission` instead"
            );
            "default".to_owned()
        }
        Some(ns) => ns.to_owned(),
        None if client_default == "default" => {
            tracing::info!(
                namespace = DEFAULT_NAMESPACE,
                "no --namespace (or POD_NAMESPACE) given and the client's namespace is `default` (out of the cluster: the kubeconfig context's): using `storage-admission`, the namespace of the shipped manifests, so the controller still audits `default`; give --namespace to choose another"
            );
            DEFAULT_NAMESPACE.to_owned()
        }
        None => client_default.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_namespace_is_the_given_one_else_the_clients_unless_that_is_default() {
        assert_eq!(own_namespace(Some("ops"), "default"), "ops");
        assert_eq!(own_namespace(Some("default"), "ops"), "default");
        assert_eq!(own_namespace(None, "ops"), "ops");
        assert_eq!(own_namespace(None, "default"), DEFAULT_NAMESPACE);
    }
}
