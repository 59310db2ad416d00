//! The I/O around [`plan`](super::plan) and [`render`](super::render): the leader's pass over
//! the Secret and the webhook configurations, and every replica's watch of the Secret.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use super::{CA_CRT, Issuing, Plan, SecretData, TLS_CRT, TLS_KEY, plan, render};
use crate::certs::CertError;
use crate::identity::FIELD_MANAGER;
use crate::leader::while_leader;
use crate::metrics::Metrics;
use crate::metrics::{ResultLabels, SecretWriteLabels};
use crate::registration::{Registrar, RegistrationError};
use crate::server::tls::{Reload, ReloadingCert};

/// The wall clock (a function, so tests can fix it).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read Secret {secret}: {source}")]
    Read {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {action} Secret {secret}: {source}")]
    Write {
        action: &'static str,
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {secret} changed while it was being written (another writer); re-reading")]
    Conflict { secret: String },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Registration(#[from] RegistrationError),
}

/// Issues, stages and promotes the serving certificate in the Secret and keeps the webhook
/// configurations' CA bundle current: the self-managed certificate loop, run by the leader
/// ([`CertRotator::run`] follows the leader signal).
pub struct CertRotator {
    pub client: Client,
    pub namespace: String,
    /// The Secret's name (`--tls-secret`).
    pub secret: String,
    pub issuing: Issuing,
    pub registrar: Registrar,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// A full pass this often, and at once whenever the watched Secret changes.
    pub resync: Duration,
    /// After a failed pass, the next one this soon.
    pub retry: Duration,
}

fn decode(secret: &Secret) -> SecretData {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

impl CertRotator {
    fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }

    /// One pass, restarted from a fresh read (at most three times) when another writer got
    /// there first: an AlreadyExists on create or a Conflict on a resourceVersion-guarded
    /// update means our read is stale, never that we should overwrite.
    pub async fn pass(&self) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            match self.try_pass().await {
                Err(Error::Conflict { .. }) if attempt < 2 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Secret first (create, stage, prune), then registration with the Secret's CA bundle,
    /// then promotion of a staged pair, which needs that registration to have succeeded.
    async fn try_pass(&self) -> Result<(), Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let now = (self.clock)();
        let names = &self.issuing.names;
        let mut secret = api
            .get_opt(&self.secret)
            .await
            .map_err(|source| Error::Read {
                secret: self.display_name(),
                source,
            })?;
        let current = secret.as_ref().map(decode);
        let first = plan(now, names, current.as_ref(), None);
        if let Some(data) = render(first, now, &self.issuing, current.as_ref())? {
            secret = Some(self.write(&api, first, secret, data).await?);
        }
        let Some(secret) = secret else {
            return Ok(()); // unreachable: a missing Secret plans Create
        };
        let data = decode(&secret);
        let bundle = data.get(CA_CRT).cloned().unwrap_or_default();
        self.registrar.register(&bundle).await?;
        let second = plan(now, names, Some(&data), Some(&bundle));
        if second == Plan::Promote
            && let Some(promoted) = render(second, now, &self.issuing, Some(&data))?
        {
            self.write(&api, second, Some(secret), promoted).await?;
        }
        Ok(())
    }

    async fn write(
        &self,
        api: &Api<Secret>,
        plan: Plan,
        current: Option<Secret>,
        data: SecretData,
    ) -> Result<Secret, Error> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let data = Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
        let (verb, result) = match current {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.secret.clone()),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_owned(),
                                FIELD_MANAGER.to_owned(),
                            )]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data,
                    ..Secret::default()
                };
                ("create", api.create(&params, &secret).await)
            }
            // The read object keeps its resourceVersion: if anyone wrote in between, the API
            // server refuses with a Conflict instead of letting two writers both win.
            Some(mut secret) => {
                secret.data = data;
                secret.string_data = None;
                let name = secret.name_any();
                ("update", api.replace(&name, &params, &secret).await)
            }
        };
        let label = |result| SecretWriteLabels {
            action: plan.action(),
            result,
        };
        match result {
            Ok(written) => {
                self.metrics
                    .tls_secret_writes
                    .get_or_create(&label("success"))
                    .inc();
                let why = match plan {
                    Plan::Stage(why) => why.as_str(),
                    _ => "",
                };
                tracing::info!(secret = %self.display_name(), action = plan.action(), why, "TLS Secret written");
                Ok(written)
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() || status.is_conflict() => {
                self.metrics
                    .tls_secret_writes
                    .get_or_create(&label("conflict"))
                    .inc();
                Err(Error::Conflict {
                    secret: self.display_name(),
                })
            }
            Err(source) => {
                self.metrics
                    .tls_secret_writes
                    .get_or_create(&label("error"))
                    .inc();
                Err(Error::Write {
                    action: verb,
                    secret: self.display_name(),
                    source,
                })
            }
        }
    }

    /// Passes while this replica leads: on gaining the lead, every `resync`, whenever
    /// `changed` is notified (the watched Secret changed), and `retry` after a failure.
    /// Returns when the leader signal's sender is dropped.
    pub async fn run(self: Arc<Self>, leader: watch::Receiver<bool>, changed: Arc<Notify>) {
        while_leader(leader, || {
            let me = self.clone();
            let changed = changed.clone();
            async move {
                tracing::info!(secret = %me.display_name(), "managing the TLS Secret and the webhook configurations");
                loop {
                    let wait = match me.pass().await {
                        Ok(()) => me.resync,
                        Err(error) => {
                            tracing::error!(%error, "self-managed certificate pass failed; retrying");
                            me.retry
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = changed.notified() => {}
                    }
                }
            }
        })
        .await;
    }
}

/// Serves the pair of `secret` if it holds a usable one (otherwise the current pair stays).
pub fn serve_from(cert: &ReloadingCert, secret: &Secret, metrics: &Metrics) -> Option<Reload> {
    let origin = format!(
        "Secret {}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let data = decode(secret);
    let (Some(crt), Some(key)) = (data.get(TLS_CRT), data.get(TLS_KEY)) else {
        tracing::warn!(secret = %origin, "no tls.crt/tls.key in the Secret yet");
        return None;
    };
    match cert.set_pem(crt, key, &origin) {
        Ok(Reload::Unchanged) => Some(Reload::Unchanged),
        Ok(Reload::Reloaded) => {
            tracing::info!(secret = %origin, "serving certificate loaded from the Secret");
            metrics
                .tls_reloads
                .get_or_create(&ResultLabels { result: "success" })
                .inc();
            if let Some(leaf) = crate::certs::inspect(crt)
                .ok()
                .and_then(|c| c.into_iter().next())
            {
                metrics
                    .serving_cert_expiry
                    .set(leaf.not_after.unix_timestamp());
            }
            Some(Reload::Reloaded)
        }
        Err(error) => {
            tracing::error!(%error, "serving certificate in the Secret rejected; still serving the previous one");
            metrics
                .tls_reloads
                .get_or_create(&ResultLabels { result: "error" })
                .inc();
            None
        }
    }
}

/// Every replica: watches the one Secret (`fieldSelector metadata.name=…`, so RBAC can limit
/// list/watch to it by resourceNames) and serves its pair from memory. Each change also
/// notifies `changed`, which wakes the leader's pass. A deleted Secret changes nothing here:
/// the pair in memory keeps serving until the leader writes a new Secret.
pub async fn watch_secret(
    client: Client,
    namespace: String,
    name: String,
    cert: Arc<ReloadingCert>,
    metrics: Arc<Metrics>,
    changed: Arc<Notify>,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = pin!(
        watcher::watcher(api, config)
            .default_backoff()
            .applied_objects()
    );
    while let Some(item) = stream.next().await {
        match item {
            Ok(secret) => {
                serve_from(&cert, &secret, &metrics);
                changed.notify_one();
            }
            Err(error) => {
                tracing::warn!(%error, secret = %format!("{namespace}/{name}"), "watch of the TLS Secret failed; retrying with backoff");
            }
        }
    }
}
