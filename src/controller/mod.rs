//! The controller: what the webhook cannot do at admission time, done over the watch caches.
//!
//! - [`backfill`]: nodes that registered without the webhook get the topology labels the
//!   policy derives (the webhook's own rule function; rate-limited JSON patches).
//! - [`audit`]: existing objects that violate a rule are reported as Events on the object and
//!   as a per-rule gauge (the webhook's own rule functions and messages; deduplicated); with
//!   them, claims and snapshots stuck longer than `stuck_after` ([`stuck`], `explain`'s
//!   diagnoses).
//!
//! Both are pure decision functions over the [`ClusterIndex`] the webhook reads, plus a thin
//! loop that sends what they decided. Each loop runs a pass on start, every `resync`, at once
//! when the policy is reloaded, and soon again after a pass a not-yet-synced cache left
//! incomplete. The audit also runs soon after the cache changes ([`Debounce`]), so a broken
//! restore created a second ago is reported in seconds, not at the next resync.
//!
//! Only one replica should write: [`run`] works while its `leader` signal is `true` and stops
//! (dropping any pass in flight, which is safe: every pass recomputes from the cache) when it
//! turns `false`. The signal comes from [`crate::leader`] (always `true` with
//! `--leader-election=false`).

pub mod audit;
pub mod backfill;
pub mod finding;
pub mod stuck;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::ClusterIndex;
use crate::identity::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::model::ObjectMeta;
use crate::policy::Policy;
use crate::rules::RuleId;

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
    /// A claim not bound or a snapshot not ready this long after its creation is stuck.
    pub stuck_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            backfill_rate: 5,
            dedup_window: Duration::from_secs(3600),
            scope: Scope::default(),
            stuck_after: Duration::from_secs(600),
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

    /// When the last pass ended.
    pub fn last_pass(&self) -> Option<Instant> {
        self.last.as_ref().map(|(at, _, _)| *at)
    }
}

/// The audit's wait after a cache change: a `kubectl apply` of a directory or a rollout
/// writes its objects within a second or two, so one pass sees them all, and a finding is
/// still reported seconds after the change.
pub const CHANGE_QUIET: Duration = Duration::from_secs(2);
/// The least time between the end of an audit pass and a pass for later changes. A pass
/// evaluates every audited object, so under a steady churn (a big cluster always has some)
/// this caps the audit at one pass per 10 s instead of one per change; Events are
/// deduplicated anyway, so passing more often would only burn CPU the webhooks share.
pub const CHANGE_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// When changes to the cache call for an audit pass: once they have been quiet for `quiet`,
/// or `min_interval` after the first of them if they never go quiet — but never sooner than
/// `min_interval` after the last pass. A pass of any cause covers every change before it.
#[derive(Debug)]
pub struct Debounce {
    quiet: Duration,
    min_interval: Duration,
    /// The first and the latest change no pass has seen yet.
    pending: Option<(Instant, Instant)>,
}

impl Debounce {
    pub fn new(quiet: Duration, min_interval: Duration) -> Self {
        Self {
            quiet,
            min_interval,
            pending: None,
        }
    }

    pub fn changed(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
    }

    /// A pass is starting: it reads the cache as it is now, so it covers every change so far.
    pub fn covered(&mut self) {
        self.pending = None;
    }

    /// When a pass is due for the pending changes (`None`: there are none). `last_pass` is
    /// when the last pass of any cause ended.
    pub fn due_at(&self, last_pass: Option<Instant>) -> Option<Instant> {
        let (first, latest) = self.pending?;
        let settled = (latest + self.quiet).min(first + self.min_interval);
        Some(last_pass.map_or(settled, |at| settled.max(at + self.min_interval)))
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

/// Like [`next_pass`], and also wakes for cache changes and returns once they are due (see
/// [`Debounce`]).
async fn next_audit_pass(
    ctx: &Context,
    ticker: &mut tokio::time::Interval,
    trigger: &Trigger,
    changes: &mut watch::Receiver<u64>,
    debounce: &mut Debounce,
) -> Arc<Policy> {
    // The index owns the sender and `ctx` the index, so `changed()` cannot fail while this
    // runs; should it anyway, the branch is turned off rather than spinning on the error.
    let mut watching = true;
    loop {
        let due_at = debounce.due_at(trigger.last_pass());
        let due = async {
            match due_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {}
            changed = changes.changed(), if watching => match changed {
                Ok(()) => debounce.changed(Instant::now()),
                Err(_) => watching = false,
            },
            () = due => {}
        }
        let now = Instant::now();
        let policy = ctx.policy.load_full();
        let changes_due = debounce
            .due_at(trigger.last_pass())
            .is_some_and(|at| at <= now);
        if changes_due || trigger.is_due(now, &policy) {
            return policy;
        }
    }
}

async fn audit_loop(ctx: &Context) {
    let mut dedup = audit::Dedup::new(ctx.config.dedup_window);
    let mut trigger = Trigger::new(ctx.config.resync);
    let mut debounce = Debounce::new(CHANGE_QUIET, CHANGE_MIN_INTERVAL);
    let mut changes = ctx.index.subscribe();
    let mut ticker = poll_ticker(ctx);
    loop {
        let policy = next_audit_pass(ctx, &mut ticker, &trigger, &mut changes, &mut debounce).await;
        // The pass reads the cache from here on: it covers the changes so far, and any change
        // made while it runs marks `changes` again and gets a pass of its own.
        changes.mark_unchanged();
        debounce.covered();
        ctx.metrics.audit_passes.inc();
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
pub async fn run(ctx: Arc<Context>, leader: watch::Receiver<bool>) {
    /// Logs the end of a term however it ends: the loops are dropped, never told to stop.
    struct Stopped;
    impl Drop for Stopped {
        fn drop(&mut self) {
            tracing::info!("controller stopped");
        }
    }
    let ctx = &ctx;
    crate::leader::while_leader(leader, move || async move {
        tracing::info!("controller started (backfill, audit)");
        let _stopped = Stopped;
        work(ctx).await;
    })
    .await;
}

#[cfg(test)]
mod tests;
