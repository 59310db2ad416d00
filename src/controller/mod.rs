//! The controller: what the webhook cannot do at admission time, done over the watch caches.
//!
//! - [`backfill`]: nodes that registered without the webhook get the topology labels the
//!   policy derives (the webhook's own rule function; rate-limited JSON patches).
//! - [`audit`]: existing objects that violate a rule are reported as Events on the object and
//!   as a per-rule gauge (the webhook's own rule functions and messages; deduplicated).
//!
//! Both are pure decision functions over the [`ClusterIndex`] the webhook reads, plus a thin
//! loop that sends what they decided. Each loop runs a pass on start, every `resync`, at once
//! when the policy is reloaded, and soon again after a pass a not-yet-synced cache left
//! incomplete.
//!
//! Only one replica should write: [`run`] works while its `leader` signal is `true` and stops
//! (dropping any pass in flight, which is safe: every pass recomputes from the cache) when it
//! turns `false`. The signal comes from [`crate::leader`] (always `true` with
//! `--leader-election=false`).

pub mod audit;
pub mod backfill;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::ClusterIndex;
use crate::model::ObjectMeta;
use crate::policy::Policy;
use crate::rules::RuleId;
use crate::server::Metrics;

/// The field manager of node patches, and the reporting controller of events.
pub const FIELD_MANAGER: &str = "storage-admission";

/// Objects labelled this way never reach the webhooks (their `objectSelector`); the controller
/// leaves them alone too.
pub const IGNORE_LABEL: &str = "storage-admission.io/ignore";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot patch the labels of Node {node}: {source}")]
    PatchNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot publish the {rule} event on {object}: {source}")]
    PublishEvent {
        rule: RuleId,
        object: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the webhooks never see, so the controller must not act on either: the namespaces
/// their `namespaceSelector` excludes and objects with the ignore label.
#[derive(Debug, Clone)]
pub struct Scope {
    pub skip_namespaces: Vec<String>,
}

impl Default for Scope {
    /// The webhook configurations' exclusions with the default install namespace.
    fn default() -> Self {
        Self::for_namespace("storage-admission")
    }
}

impl Scope {
    /// `kube-system` and the service's own namespace, as in the shipped webhook configurations.
    pub fn for_namespace(own: &str) -> Self {
        Self {
            skip_namespaces: vec!["kube-system".to_owned(), own.to_owned()],
        }
    }

    pub fn skips(&self, meta: &ObjectMeta) -> bool {
        meta.label(IGNORE_LABEL).is_some_and(|v| v == "true")
            || meta
                .namespace
                .as_deref()
                .is_some_and(|ns| self.skip_namespaces.iter().any(|s| s == ns))
    }
}

/// The controller's knobs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Full pass over the caches this often (audit and backfill).
    pub resync: Duration,
    /// How often the loops look for a policy reload (and retry an incomplete pass).
    pub poll: Duration,
    /// Node patches per second, at most.
    pub backfill_rate: u32,
    /// The same (object, rule, message) is reported at most once in this window.
    pub dedup_window: Duration,
    pub scope: Scope,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            backfill_rate: 5,
            dedup_window: Duration::from_secs(3600),
            scope: Scope::default(),
        }
    }
}

/// What the loops share.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The policy the webhook serves; swapped on reload.
    pub policy: Arc<ArcSwap<Policy>>,
    pub index: Arc<ClusterIndex>,
    pub config: Config,
}

impl Context {
    /// `instance` names this replica in events (the pod name).
    pub fn new(
        client: Client,
        instance: Option<String>,
        metrics: Arc<Metrics>,
        policy: Arc<ArcSwap<Policy>>,
        index: Arc<ClusterIndex>,
        config: Config,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            policy,
            index,
            config,
        }
    }
}

/// When a pass is due: the first time, `resync` after the last one, when the policy object
/// changed (a reload swaps in a new `Arc`), or at the next poll after an incomplete pass.
#[derive(Debug)]
pub struct Trigger {
    resync: Duration,
    last: Option<(Instant, Arc<Policy>, bool)>,
}

impl Trigger {
    pub fn new(resync: Duration) -> Self {
        Self { resync, last: None }
    }

    pub fn is_due(&self, now: Instant, policy: &Arc<Policy>) -> bool {
        match &self.last {
            None => true,
            Some((at, seen, complete)) => {
                !complete
                    || !Arc::ptr_eq(seen, policy)
                    || now.saturating_duration_since(*at) >= self.resync
            }
        }
    }

    pub fn done(&mut self, now: Instant, policy: Arc<Policy>, complete: bool) {
        self.last = Some((now, policy, complete));
    }
}

/// Polls every `poll` until a pass is due; returns the policy to run it with.
async fn next_pass(
    ctx: &Context,
    ticker: &mut tokio::time::Interval,
    trigger: &Trigger,
) -> Arc<Policy> {
    loop {
        ticker.tick().await;
        let policy = ctx.policy.load_full();
        if trigger.is_due(Instant::now(), &policy) {
            return policy;
        }
    }
}

fn poll_ticker(ctx: &Context) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(ctx.config.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

async fn backfill_loop(ctx: &Context) {
    let mut limiter = backfill::RateLimiter::new(ctx.config.backfill_rate);
    let mut trigger = Trigger::new(ctx.config.resync);
    let mut ticker = poll_ticker(ctx);
    loop {
        let policy = next_pass(ctx, &mut ticker, &trigger).await;
        let complete = backfill::run_pass(ctx, &policy, &mut limiter).await;
        trigger.done(Instant::now(), policy, complete);
    }
}

async fn audit_loop(ctx: &Context) {
    let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
    let mut trigger = Trigger::new(ctx.config.resync);
    let mut ticker = poll_ticker(ctx);
    loop {
        let policy = next_pass(ctx, &mut ticker, &trigger).await;
        let complete = audit::run_pass(ctx, &policy, &mut dedup).await;
        trigger.done(Instant::now(), policy, complete);
    }
}

/// Both loops, until dropped. They run side by side so a long, rate-limited backfill does not
/// delay the audit.
pub async fn work(ctx: &Context) {
    tokio::join!(backfill_loop(ctx), audit_loop(ctx));
}

/// Runs the controller while `leader` is `true`; returns when the sender is dropped.
///
/// [`crate::leader`]'s task owns the `watch::Sender<bool>` and sends `true` when this replica
/// acquires the lease and `false` when it loses it. Losing it drops the
/// loops at their next await point; regaining it starts them afresh (a new leader reports
/// current findings once, since the deduplication memory is per term).
pub async fn run(ctx: Arc<Context>, mut leader: watch::Receiver<bool>) {
    loop {
        if leader.wait_for(|is_leader| *is_leader).await.is_err() {
            return;
        }
        tracing::info!("controller started (backfill, audit)");
        let stopped = tokio::select! {
            changed = leader.wait_for(|is_leader| !*is_leader) => changed.is_err(),
            () = work(&ctx) => false,
        };
        tracing::info!("controller stopped");
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
