//! Prometheus metrics. Every label value comes from a fixed set (webhook, kind, operation,
//! decision, rule, status, reason): never an object name or an error string.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::{RuleReport, RuleStatus, Webhook};
use crate::cluster::{ResourceKind, SyncState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub webhook: &'static str,
    pub resource: &'static str,
    pub operation: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub webhook: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditEventLabels {
    pub rule: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StuckLabels {
    pub kind: &'static str,
    /// A finding id of `explain` (a fixed set: [`crate::explain::finding_ids`]).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheStatusLabels {
    pub kind: &'static str,
    /// One of [`CACHE_STATUSES`].
    pub status: &'static str,
}

/// The values of `cache_status`'s `status` label, one per [`SyncState`] variant.
pub const CACHE_STATUSES: [&str; 3] = ["pending", "synced", "missing"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    /// `mutating` or `validating`.
    pub configuration: &'static str,
    /// `updated`, `unchanged`, `missing` (the configuration does not exist; it is never
    /// created, see `registration`) or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretWriteLabels {
    /// `create`, `stage`, `promote` or `prune` (see `self_managed::Plan`).
    pub action: &'static str,
    /// `success`, `conflict` (another writer won; re-read next pass) or `error`.
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Webhook configuration registrations (`--register`), by configuration and result.
    pub registrations: Family<RegistrationLabels, Counter>,
    /// Writes of the self-managed TLS Secret, by action and result.
    pub tls_secret_writes: Family<SecretWriteLabels, Counter>,
    /// notAfter (Unix seconds) of the certificate this replica serves; 0 before it has one.
    pub serving_cert_expiry: Gauge,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_duration: Family<WebhookLabels, Histogram>,
    pub rules: Family<RuleLabels, Counter>,
    /// The `rules` series of each rule (by its place in the table) and status, once used:
    /// a review counts its rules without hashing their labels and locking the family (a
    /// third of a patched review's metrics cost). A series appears in the exposition when
    /// first counted, as it does through the family.
    rule_series: Box<[[OnceLock<Counter>; RuleStatus::ALL.len()]]>,
    pub rejected: Family<RejectLabels, Counter>,
    pub tls_reloads: Family<ResultLabels, Counter>,
    pub policy_reloads: Family<ResultLabels, Counter>,
    pub cached_objects: Family<KindLabels, Gauge>,
    /// Per kind, 1 for the cache's current status and 0 for the others (see
    /// [`Metrics::set_cache_status`]).
    pub cache_status: Family<CacheStatusLabels, Gauge>,
    pub open_connections: Gauge,
    pub in_flight: Gauge,
    /// Existing objects that violate a rule, as of the controller's last audit pass.
    pub audit_findings: Family<AuditLabels, Gauge>,
    /// Audit events sent (`published`) or refused by the API server (`error`).
    pub audit_events: Family<AuditEventLabels, Counter>,
    /// Claims and snapshots stuck longer than `--stuck-after`, by kind and finding id.
    pub stuck_objects: Family<StuckLabels, Gauge>,
    /// Audit passes started (by the leader): shows the debouncing of object changes at work.
    pub audit_passes: Counter,
    /// Node label patches sent by the backfill: `applied`, `conflict` (the node changed since
    /// it was cached; retried next pass), `error`.
    pub backfill_patches: Family<ResultLabels, Counter>,
    /// Nodes missing policy-derived labels, as of the last backfill pass.
    pub backfill_pending_nodes: Gauge,
    /// 1 while this replica holds the leader Lease (runs the controller), else 0.
    pub leader: Gauge,
    /// The restore-readiness fallback GETs of a snapshot the cache lacks: `found`,
    /// `not_found`, `error`, `timeout`, `busy` (the concurrency bound was reached).
    pub snapshot_fallbacks: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("storage_admission");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "Admission reviews answered, by webhook, resource, operation and decision",
            reviews.clone(),
        );
        // 50µs .. ~1.6s: the interesting part is well under a millisecond.
        let review_duration = Family::<WebhookLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        registry.register(
            "review_duration_seconds",
            "Time from the request body being read to the response being encoded",
            review_duration.clone(),
        );
        let rules = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_evaluations",
            "Rule evaluations, by rule and outcome",
            rules.clone(),
        );
        // Every rule of the table has a series from the start, so a dashboard shows a rule that
        // has not run yet as 0 rather than as missing.
        for rule in crate::rules::RULES {
            let _series = rules.get_or_create(&RuleLabels {
                rule: rule.id.as_str(),
                status: crate::rules::RuleStatus::Allowed.as_str(),
            });
        }
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "rejected_requests",
            "Requests answered with a 4xx before any rule ran, by reason",
            rejected.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Serving certificate reloads, by result",
            tls_reloads.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy file reloads, by result",
            policy_reloads.clone(),
        );
        registry.register_collector(Box::new(DroppedLogLines));
        let cached_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "cached_objects",
            "Objects in the cluster view, by kind",
            cached_objects.clone(),
        );
        let cache_status = Family::<CacheStatusLabels, Gauge>::default();
        registry.register(
            "cache_status",
            "1 for each cache's current status (pending: no first list yet; synced; missing: the cluster does not serve the kind), 0 for the others",
            cache_status.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Open webhook connections",
            open_connections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_reviews",
            "Reviews being received or decided right now",
            in_flight.clone(),
        );
        let audit_findings = Family::<AuditLabels, Gauge>::default();
        registry.register(
            "audit_findings",
            "Existing objects that violate a rule, by rule, as of the last audit pass",
            audit_findings.clone(),
        );
        let stuck_objects = Family::<StuckLabels, Gauge>::default();
        registry.register(
            "stuck_objects",
            "Claims and snapshots stuck longer than --stuck-after, by kind and reason (explain's finding id), as of the last audit pass",
            stuck_objects.clone(),
        );
        let audit_events = Family::<AuditEventLabels, Counter>::default();
        registry.register(
            "audit_events",
            "Audit events sent to the API server, by rule and result",
            audit_events.clone(),
        );
        let audit_passes = Counter::default();
        registry.register(
            "audit_passes",
            "Audit passes started: at start, every resync, on a policy reload and after object changes (debounced)",
            audit_passes.clone(),
        );
        let backfill_patches = Family::<ResultLabels, Counter>::default();
        registry.register(
            "backfill_patches",
            "Node label patches sent by the backfill, by result",
            backfill_patches.clone(),
        );
        let backfill_pending_nodes = Gauge::default();
        registry.register(
            "backfill_pending_nodes",
            "Nodes missing policy-derived topology labels, as of the last backfill pass",
            backfill_pending_nodes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and runs the controller, else 0",
            leader.clone(),
        );
        let snapshot_fallbacks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "snapshot_fallback_lookups",
            "Single GETs of a restore's VolumeSnapshot missing from the cache, by result",
            snapshot_fallbacks.clone(),
        );
        let registrations = Family::<RegistrationLabels, Counter>::default();
        registry.register(
            "webhook_registrations",
            "Checks of the webhook configurations by --register, by configuration and result",
            registrations.clone(),
        );
        let tls_secret_writes = Family::<SecretWriteLabels, Counter>::default();
        registry.register(
            "tls_secret_writes",
            "Writes of the self-managed TLS Secret by the leader, by action and result",
            tls_secret_writes.clone(),
        );
        let serving_cert_expiry = Gauge::default();
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "notAfter of the self-managed serving certificate this replica serves (0: none yet)",
            serving_cert_expiry.clone(),
        );
        Self {
            leader,
            snapshot_fallbacks,
            registrations,
            tls_secret_writes,
            serving_cert_expiry,
            in_flight,
            registry,
            audit_findings,
            stuck_objects,
            audit_events,
            audit_passes,
            backfill_patches,
            backfill_pending_nodes,
            reviews,
            review_duration,
            rules,
            rule_series: crate::rules::RULES
                .iter()
                .map(|_| Default::default())
                .collect(),
            rejected,
            tls_reloads,
            policy_reloads,
            cached_objects,
            cache_status,
            open_connections,
        }
    }

    pub fn observe_review(
        &self,
        webhook: Webhook,
        kind: &str,
        operation: &'static str,
        decision: &'static str,
        rules: &[RuleReport],
        seconds: f64,
    ) {
        self.reviews
            .get_or_create(&ReviewLabels {
                webhook: webhook.as_str(),
                resource: resource_label(kind),
                operation,
                decision,
            })
            .inc();
        self.review_duration
            .get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            })
            .observe(seconds);
        for report in rules {
            let series = || {
                self.rules
                    .get_or_create(&RuleLabels {
                        rule: report.rule.as_str(),
                        status: report.status.as_str(),
                    })
                    .clone()
            };
            let slot = report
                .rule
                .index()
                .and_then(|rule| self.rule_series.get(rule))
                .and_then(|statuses| statuses.get(report.status.index()));
            match slot {
                Some(slot) => slot.get_or_init(series).inc(),
                None => series().inc(),
            };
        }
    }

    pub fn reject(&self, webhook: Webhook, reason: &'static str) {
        self.rejected
            .get_or_create(&RejectLabels {
                webhook: webhook.as_str(),
                reason,
            })
            .inc();
    }

    /// Sets `kind`'s `cache_status` one-hot: every status is written, so a series never keeps
    /// a stale 1 after the cache moved on (a missing CRD installed later, say).
    pub fn set_cache_status(&self, kind: ResourceKind, state: &SyncState) {
        let current = match state {
            SyncState::Pending(_) => "pending",
            SyncState::Synced => "synced",
            SyncState::Missing(_) => "missing",
        };
        for status in CACHE_STATUSES {
            self.cache_status
                .get_or_create(&CacheStatusLabels {
                    kind: kind.as_str(),
                    status,
                })
                .set(i64::from(status == current));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `log_lines_dropped_total`, read from the log writer at each scrape (see `telemetry`).
#[derive(Debug)]
struct DroppedLogLines;

impl prometheus_client::collector::Collector for DroppedLogLines {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        let counter = prometheus_client::metrics::counter::ConstCounter::new(
            crate::telemetry::dropped_lines(),
        );
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because stderr did not keep up (the log is incomplete when > 0)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// A bounded `resource` label: the kinds this service handles, or `other`.
pub fn resource_label(kind: &str) -> &'static str {
    ResourceKind::from_kind(kind)
        .filter(|k| k.as_str() == kind)
        .map_or("other", ResourceKind::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_is_one_hot_and_follows_the_state() {
        let metrics = Metrics::new();
        let kind = ResourceKind::VolumeSnapshot;
        let series = |metrics: &Metrics, status: &str| {
            let prefix = format!(
                "storage_admission_cache_status{{kind=\"VolumeSnapshot\",status=\"{status}\"}} "
            );
            let text = metrics.encode();
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        };
        metrics.set_cache_status(kind, &SyncState::Pending("starting".into()));
        assert_eq!(CACHE_STATUSES.map(|s| series(&metrics, s)), ["1", "0", "0"]);
        metrics.set_cache_status(kind, &SyncState::Missing("no CRDs".into()));
        assert_eq!(CACHE_STATUSES.map(|s| series(&metrics, s)), ["0", "0", "1"]);
        metrics.set_cache_status(kind, &SyncState::Synced);
        assert_eq!(
            CACHE_STATUSES.map(|s| series(&metrics, s)),
            ["0", "1", "0"],
            "the CRDs were installed"
        );
    }

    #[test]
    fn the_log_drop_count_is_exposed_with_its_type() {
        let text = Metrics::new().encode();
        assert!(
            text.contains("# TYPE storage_admission_log_lines_dropped counter\n"),
            "{text}"
        );
        // No writer is installed in unit tests: nothing was dropped.
        assert!(
            text.contains("\nstorage_admission_log_lines_dropped_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn every_rule_of_the_table_has_an_evaluation_series_from_the_start() {
        let text = Metrics::new().encode();
        for rule in crate::rules::RULES {
            let series = format!(
                "storage_admission_rule_evaluations_total{{rule=\"{}\",status=\"allowed\"}} 0\n",
                rule.id
            );
            assert!(text.contains(&series), "{series} in {text}");
        }
    }

    #[test]
    fn rule_evaluations_are_counted_in_the_family_by_rule_and_status() {
        use crate::rules::{RULES, RuleId};
        let metrics = Metrics::new();
        let (first, last) = (RULES[0].id, RULES[RULES.len() - 1].id);
        let report = |rule, status| RuleReport { rule, status };
        for _ in 0..3 {
            metrics.observe_review(
                Webhook::Mutate,
                "VolumeSnapshot",
                "CREATE",
                "patched",
                &[
                    report(first, RuleStatus::Patched),
                    report(last, RuleStatus::Invalid),
                    // Not in the table: counted all the same, through the family.
                    report(RuleId::new("retired-rule"), RuleStatus::Denied),
                ],
                0.001,
            );
        }
        metrics.observe_review(
            Webhook::Mutate,
            "VolumeSnapshot",
            "CREATE",
            "allowed",
            &[report(first, RuleStatus::Allowed)],
            0.001,
        );
        let text = metrics.encode();
        for (rule, status, count) in [
            (first.as_str(), "patched", 3),
            (last.as_str(), "invalid", 3),
            ("retired-rule", "denied", 3),
            (first.as_str(), "allowed", 1),
        ] {
            let series = format!(
                "storage_admission_rule_evaluations_total{{rule=\"{rule}\",status=\"{status}\"}} {count}\n"
            );
            assert!(text.contains(&series), "{series} in {text}");
        }
        assert!(!text.contains("status=\"warned\""), "{text}");
        for (i, status) in RuleStatus::ALL.iter().enumerate() {
            assert_eq!(status.index(), i);
        }
    }

    #[test]
    fn the_resource_label_is_a_cached_kind_or_other_and_the_docs_name_each() {
        let docs = include_str!("../docs/metrics.md");
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `storage_admission_reviews_total` |"))
            .expect("docs/metrics.md has a row for reviews_total");
        for kind in ResourceKind::ALL {
            assert_eq!(resource_label(kind.as_str()), kind.as_str());
            assert!(row.contains(kind.as_str()), "docs/metrics.md lacks {kind}");
        }
        assert_eq!(resource_label("PersistentVolumeClaimList"), "other");
        assert_eq!(resource_label("Secret"), "other");
        assert!(row.contains("`other`"));
    }
}
