//! Leader election over a `coordination.k8s.io/v1` Lease: only one replica writes.
//!
//! Every replica serves the webhooks; only the leader runs what writes to the cluster (the
//! controller's backfill and audit, the self-managed certificate loop
//! ([`crate::self_managed`]) and the webhook registration loop ([`crate::registration`])).
//! This module owns the `watch::Sender<bool>` those loops follow: each of them takes a clone
//! of [`Elector::subscribe`] and works while it reads `true`.
//!
//! It lives beside `controller` rather than in it because it gates more than the controller,
//! and `main` wires it: the certificate and registration loops should not depend on the
//! controller module to learn whether they may write.
//!
//! # Why not a crate
//! `kube-lease-manager` 0.13 was evaluated first. On a failed renewal (the API server
//! unreachable) its `watch()` loop logs and backs off without ever publishing `false`, so a
//! partitioned leader keeps leading past the Lease's expiry while another replica takes it;
//! and its renewals are blind strategic-merge patches, not conditioned on what it last read.
//! That is exactly the split brain leader election exists to prevent.
//!
//! # The protocol (client-go's, on the Lease's `resourceVersion`)
//! - Every write is a `PUT` carrying the `resourceVersion` last read (or a `POST` when no Lease
//!   exists): of two replicas racing for the same Lease, the API server accepts one and answers
//!   the other `409 Conflict`. That is the fence; no write is ever unconditional.
//! - A candidate takes the Lease when it has no holder (released), when it already names this
//!   identity (a restarted container of the same pod), or when the candidate has seen the same
//!   `resourceVersion` for a whole `leaseDurationSeconds` of its *own* monotonic clock. Holders'
//!   `renewTime` timestamps are written for people and tools but never compared across
//!   machines, so clock offsets between nodes do not matter.
//! - The leader renews every `retry` and steps down (signal `false`) the moment
//!   `duration - grace` has passed since the start of its last successful renewal, or at once
//!   when a renewal is refused with a conflict and the Lease names another holder.
//!
//! # Timing: why the loops stop before anyone else can lead
//! Let `T` be the instant the leader *sent* its last successful renewal. Another replica can
//! only observe that write after `T`, and takes over only after watching it unchanged for
//! `duration`: not before `T + duration`. The leader's signal turns `false` at
//! `T + duration - grace` at the latest, by a timer that does not wait for a hung request.
//! The `grace` between the two (5 s by default) covers the loops noticing the signal (they are
//! dropped at their next await point), a request of theirs already on the wire, and the rate
//! difference of two monotonic clocks, which is tiny.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// The Lease's name unless `--lease-name` says otherwise (the Role grants it by this name).
pub const DEFAULT_LEASE_NAME: &str = "storage-admission-leader";

/// How long a release on shutdown may take: SIGTERM's grace period is shared with draining
/// the webhooks, and a release that does not happen only delays the next leader by `duration`.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--lease-renew-grace ({grace:?}) must be shorter than --lease-duration ({duration:?}) and not zero"
    )]
    Grace { duration: Duration, grace: Duration },
    #[error("--lease-duration must be whole seconds between 2s and 1h, got {0:?}")]
    Duration(Duration),
}

/// What the elector needs to know; [`Config::new`] checks the timings.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease's `holderIdentity`.
    pub identity: String,
    /// `leaseDurationSeconds`: how long others wait on an unrenewed Lease before taking it.
    pub duration: Duration,
    /// The leader steps down this long before others may take over (see the module docs).
    pub grace: Duration,
}

impl Config {
    pub fn new(
        namespace: String,
        lease_name: String,
        identity: String,
        duration: Duration,
        grace: Duration,
    ) -> Result<Self, ConfigError> {
        if duration.subsec_nanos() != 0
            || duration < Duration::from_secs(2)
            || duration.as_secs() > 3600
        {
            return Err(ConfigError::Duration(duration));
        }
        if grace.is_zero() || grace >= duration {
            return Err(ConfigError::Grace { duration, grace });
        }
        Ok(Self {
            namespace,
            lease_name,
            identity,
            duration,
            grace,
        })
    }

    /// The leader steps down when its last successful renewal is older than this.
    fn renew_deadline(&self) -> Duration {
        self.duration - self.grace
    }

    /// How often the leader renews and a candidate looks at the Lease: half the grace, so a
    /// leader gets several tries (four with 15 s / 5 s) before its deadline, and a released
    /// Lease is picked up within a couple of seconds.
    fn retry(&self) -> Duration {
        self.grace / 2
    }
}

/// `POD_NAME` when given (unique and readable in the Lease), else the host name with a
/// random suffix, so two processes on one machine never share an identity.
pub fn identity(pod_name: Option<&str>) -> String {
    if let Some(pod) = pod_name.filter(|p| !p.is_empty()) {
        return pod.to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "storage-admission".to_owned());
    // RandomState is seeded randomly per process: enough for a suffix, no extra crate.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{host}-{:08x}", hasher.finish() as u32)
}

/// Why a term ended (for the log line).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lost {
    /// No successful renewal within `duration - grace`.
    Deadline,
    /// A renewal was refused and the Lease names someone else.
    OtherHolder(String),
    /// A renewal was refused and the Lease is gone.
    Deleted,
}

/// What a candidate does with the Lease it read (pure; see [`decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Write ourselves in as holder (with this `leaseTransitions`).
    Acquire { transitions: i32 },
    /// Someone else holds it and has renewed recently enough.
    Wait { holder: String },
}

/// The candidate's rule: take a Lease that has no holder, names us, or has not changed for a
/// whole lease duration of our own clock (`unchanged_for`).
fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration, ours: Duration) -> Decision {
    let transitions = spec.and_then(|s| s.lease_transitions).unwrap_or(0);
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    let Some(holder) = holder else {
        return Decision::Acquire {
            transitions: transitions.saturating_add(1),
        };
    };
    if holder == me {
        return Decision::Acquire { transitions };
    }
    // Their duration, not ours: during a rolling change of the flag, honour what they promised.
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(ours, Duration::from_secs);
    if unchanged_for >= duration {
        Decision::Acquire {
            transitions: transitions.saturating_add(1),
        }
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
        }
    }
}

/// The Lease as we write it when taking or renewing it.
fn held_spec(cfg: &Config, previous: Option<&LeaseSpec>, transitions: i32) -> LeaseSpec {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(&cfg.identity));
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX)),
        // Kept across renewals: it says when this term began.
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// The running election. Hand [`subscribe`](Self::subscribe) clones to whatever only the
/// leader may run; call [`shutdown`](Self::shutdown) on SIGTERM.
pub struct Elector {
    signal: watch::Receiver<bool>,
    inner: Inner,
}

enum Inner {
    /// `--leader-election=false`: this replica always leads.
    Always(watch::Sender<bool>),
    Lease {
        stop: oneshot::Sender<()>,
        task: JoinHandle<Option<Held>>,
    },
}

/// A Lease we held when we stopped, to be released once our writers have stopped.
struct Held {
    api: Api<Lease>,
    lease: Lease,
    identity: String,
}

impl Elector {
    /// This replica leads until shutdown (single replica, or out of cluster).
    pub fn always(metrics: &Metrics) -> Self {
        tracing::info!("leader election disabled: this replica leads");
        metrics.leader.set(1);
        let (sender, signal) = watch::channel(true);
        Self {
            signal,
            inner: Inner::Always(sender),
        }
    }

    /// Starts campaigning for the Lease in the background.
    pub fn spawn(client: Client, config: Config, metrics: Arc<Metrics>) -> Self {
        let (sender, signal) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let api = Api::namespaced(client, &config.namespace);
        tracing::info!(lease = %config.lease_name, namespace = %config.namespace, identity = %config.identity, "campaigning for leadership");
        let task = tokio::spawn(elect(api, config, metrics, sender, stopped));
        Self {
            signal,
            inner: Inner::Lease { stop, task },
        }
    }

    /// `true` while this replica leads. Loops gated on it must stop when it turns `false`,
    /// and return when it closes (at shutdown).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.signal.clone()
    }

    /// Steps down for good: the signal turns `false` and closes, then, once `writers_stopped`
    /// completes (the tasks that followed the signal have returned), the Lease is released
    /// so another replica takes over at once instead of after `duration`.
    pub async fn shutdown(self, writers_stopped: impl Future<Output = ()>, metrics: &Metrics) {
        let held = match self.inner {
            Inner::Always(sender) => {
                sender.send_replace(false);
                None
            }
            Inner::Lease { stop, task } => {
                let _ = stop.send(());
                task.await.ok().flatten()
            }
        };
        metrics.leader.set(0);
        writers_stopped.await;
        if let Some(held) = held {
            let identity = held.identity.clone();
            release(held, &identity).await;
        }
    }
}

/// Clears the holder, conditioned on the Lease being the one we last wrote. A conflict means
/// someone wrote since (or a renewal's answer was cut off by the shutdown): one fresh read
/// says whether it still names us, and only then is the release retried on that version.
async fn release(held: Held, identity: &str) {
    let Held { api, lease, .. } = held;
    let name = lease.metadata.name.clone().unwrap_or_default();
    let attempt = async {
        let mut lease = lease;
        for _ in 0..2 {
            let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions);
            lease.spec = Some(LeaseSpec {
                lease_transitions: transitions,
                ..LeaseSpec::default()
            });
            match api.replace(&name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.is_conflict() => match api.get_opt(&name).await? {
                    Some(current)
                        if current
                            .spec
                            .as_ref()
                            .and_then(|s| s.holder_identity.as_deref())
                            == Some(identity) =>
                    {
                        lease = current;
                    }
                    _ => return Ok(false),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    };
    match tokio::time::timeout(RELEASE_TIMEOUT, attempt).await {
        Ok(Ok(true)) => tracing::info!(lease = %name, "released the leader lease"),
        Ok(Ok(false)) => {
            tracing::info!(lease = %name, "the leader lease was no longer ours to release")
        }
        Ok(Err(error)) => {
            tracing::warn!(lease = %name, %error, "could not release the leader lease; another replica takes over when it expires")
        }
        Err(_) => {
            tracing::warn!(lease = %name, timeout = ?RELEASE_TIMEOUT, "releasing the leader lease timed out; another replica takes over when it expires")
        }
    }
}

/// The election task: campaign, lead until the term ends, repeat, until told to stop.
/// Returns the Lease when it stopped as leader, for [`release`].
async fn elect(
    api: Api<Lease>,
    cfg: Config,
    metrics: Arc<Metrics>,
    signal: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) -> Option<Held> {
    let mut observed: Option<(String, Instant)> = None;
    loop {
        let lease = tokio::select! {
            _ = &mut stop => return None,
            lease = campaign(&api, &cfg, &mut observed) => lease,
        };
        tracing::info!(identity = %cfg.identity, lease = %cfg.lease_name, "became leader");
        metrics.leader.set(1);
        signal.send_replace(true);
        let mut term = Term {
            lease,
            deadline: Instant::now() + cfg.renew_deadline(),
        };
        let lost = tokio::select! {
            _ = &mut stop => None,
            lost = lead(&api, &cfg, &mut term) => Some(lost),
        };
        // Before anything else: the loops must stop first (see the module docs).
        signal.send_replace(false);
        metrics.leader.set(0);
        match lost {
            None => {
                tracing::info!(identity = %cfg.identity, "stepped down for shutdown");
                return Some(Held {
                    api,
                    lease: term.lease,
                    identity: cfg.identity.clone(),
                });
            }
            Some(Lost::Deadline) => tracing::warn!(
                identity = %cfg.identity,
                deadline = ?cfg.renew_deadline(),
                "lost leadership: the lease was not renewed in time"
            ),
            Some(Lost::Deleted) => {
                tracing::warn!(identity = %cfg.identity, "lost leadership: the lease was deleted")
            }
            Some(Lost::OtherHolder(holder)) => {
                tracing::warn!(identity = %cfg.identity, %holder, "lost leadership: another replica holds the lease")
            }
        }
        // Observations from before the term say nothing now. (If the Lease still names us when
        // we next read it, nobody took it meanwhile, and retaking it at once is safe: the PUT
        // is conditioned on that read.)
        observed = None;
    }
}

/// Polls the Lease every `retry` until this replica holds it; returns the Lease as written.
async fn campaign(
    api: &Api<Lease>,
    cfg: &Config,
    observed: &mut Option<(String, Instant)>,
) -> Lease {
    let mut ticker = tokio::time::interval(cfg.retry());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting_on: Option<String> = None;
    loop {
        ticker.tick().await;
        match tokio::time::timeout(cfg.retry(), try_acquire(api, cfg, observed)).await {
            Ok(Ok(Some(lease))) => return lease,
            Ok(Ok(None)) => {}
            Ok(Err(Attempt::Held(holder))) => {
                if waiting_on.as_deref() != Some(&holder) {
                    tracing::info!(%holder, "another replica leads; following");
                    waiting_on = Some(holder);
                }
            }
            Ok(Err(Attempt::Api(error))) => {
                tracing::warn!(%error, lease = %cfg.lease_name, "cannot read or write the leader lease")
            }
            Err(_) => tracing::warn!(lease = %cfg.lease_name, "leader lease request timed out"),
        }
    }
}

enum Attempt {
    Held(String),
    Api(kube::Error),
}

/// One look at the Lease: `Some` when we now hold it, `None` when we lost a race for it.
async fn try_acquire(
    api: &Api<Lease>,
    cfg: &Config,
    observed: &mut Option<(String, Instant)>,
) -> Result<Option<Lease>, Attempt> {
    let current = match api.get_opt(&cfg.lease_name).await.map_err(Attempt::Api)? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.lease_name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_spec(cfg, None, 0)),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(Some(created)),
                // Another replica created it first: look again next time.
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(None),
                Err(e) => Err(Attempt::Api(e)),
            };
        }
    };
    let now = Instant::now();
    let rv = current
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let since = match observed {
        Some((seen, at)) if *seen == rv => *at,
        _ => {
            *observed = Some((rv, now));
            now
        }
    };
    match decide(
        current.spec.as_ref(),
        &cfg.identity,
        now - since,
        cfg.duration,
    ) {
        Decision::Wait { holder } => Err(Attempt::Held(holder)),
        Decision::Acquire { transitions } => {
            let mut lease = current;
            lease.spec = Some(held_spec(cfg, lease.spec.as_ref(), transitions));
            write(api, cfg, &lease).await.map_err(Attempt::Api)
        }
    }
}

/// A `PUT` conditioned on the `resourceVersion` in `lease`; `None` on a conflict.
async fn write(
    api: &Api<Lease>,
    cfg: &Config,
    lease: &Lease,
) -> Result<Option<Lease>, kube::Error> {
    match api
        .replace(&cfg.lease_name, &PostParams::default(), lease)
        .await
    {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(s)) if s.is_conflict() => Ok(None),
        Err(e) => Err(e),
    }
}

struct Term {
    /// The Lease as last written (its `resourceVersion` conditions the next renewal).
    lease: Lease,
    /// Leadership ends here unless a renewal succeeds first.
    deadline: Instant,
}

/// Renews every `retry` until a renewal is refused in favour of someone else or the deadline
/// passes. The deadline is a timer of its own: a hung request cannot hold it back.
async fn lead(api: &Api<Lease>, cfg: &Config, term: &mut Term) -> Lost {
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(term.deadline) => return Lost::Deadline,
            () = tokio::time::sleep(cfg.retry()) => {}
        }
        let sent = Instant::now();
        let mut next = term.lease.clone();
        let transitions = next
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        next.spec = Some(held_spec(cfg, next.spec.as_ref(), transitions));
        let renewed = tokio::select! {
            () = tokio::time::sleep_until(term.deadline) => return Lost::Deadline,
            renewed = write(api, cfg, &next) => renewed,
        };
        match renewed {
            Ok(Some(written)) => {
                term.lease = written;
                term.deadline = sent + cfg.renew_deadline();
            }
            Ok(None) => {
                // Someone wrote the Lease since we did: if it still names us (an edit that
                // did not touch the holder), renew on the new version; otherwise we lost.
                let current = tokio::select! {
                    () = tokio::time::sleep_until(term.deadline) => return Lost::Deadline,
                    current = api.get_opt(&cfg.lease_name) => current,
                };
                match current {
                    Ok(Some(lease)) => {
                        let holder = lease
                            .spec
                            .as_ref()
                            .and_then(|s| s.holder_identity.clone())
                            .unwrap_or_default();
                        if holder != cfg.identity {
                            return Lost::OtherHolder(holder);
                        }
                        term.lease = lease;
                    }
                    Ok(None) => return Lost::Deleted,
                    Err(error) => tracing::warn!(%error, "cannot read the leader lease"),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot renew the leader lease; retrying"),
        }
    }
}

/// Runs `work` while `leader` is `true`; returns when the sender is dropped. Losing the lead
/// drops `work` at its next await point; regaining it calls `work` afresh, so every term starts
/// from a fresh read (the loops this gates keep no state across terms). A `work` that returns
/// on its own is started again while the signal is still `true`.
///
/// Every loop that writes to the cluster runs under this one function, so they all follow the
/// signal the same way.
pub async fn while_leader<F, Fut>(mut leader: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        if leader.wait_for(|is_leader| *is_leader).await.is_err() {
            return;
        }
        let stopped = tokio::select! {
            changed = leader.wait_for(|is_leader| !*is_leader) => changed.is_err(),
            () = work() => false,
        };
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
