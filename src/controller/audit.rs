//! Audit: existing objects that violate a rule, reported as Kubernetes Events on the object and
//! as a per-rule gauge.
//!
//! The webhook only sees objects as they are created; what was created before it existed, or
//! while it was down, or became wrong later (a snapshot that failed after its restore PVC was
//! created, a second default class) is found here, by calling the same rule functions on the
//! cached objects as the webhook would on a CREATE (an UPDATE for snapshot classes, whose rule
//! has a message written for an already existing duplicate). The messages are the webhook's.
//!
//! | rule | objects audited |
//! |---|---|
//! | restore-readiness | PVCs with a data source that are not bound yet |
//! | allowed-topologies | StorageClasses (allowedTopologies that match no node) |
//! | binding-mode | StorageClasses (topology-restricted, binding Immediate, not opted out) |
//! | snapshot-class-defaults | VolumeSnapshotClasses (several defaults for one driver) |
//! | default-snapshot-class | VolumeSnapshots with no class that are not bound yet |
//! | stuck-persistent-volume-claim, stuck-volume-snapshot, stuck-pod, stuck-volume-group-snapshot | claims not bound, snapshots and group snapshots not ready, pods Pending, for longer than `--stuck-after` ([`super::stuck`], `explain`'s diagnoses) |
//!
//! Bound PVCs and snapshots are skipped: they got their volume or content, so their source or
//! class no longer matters (a restored PVC whose snapshot was deleted since is fine).
//!
//! Events are deduplicated by [`Dedup`]: one (object, rule, message) is reported once per
//! window; a finding that disappears (the problem was fixed, the object deleted) is forgotten,
//! so it is reported again if it comes back.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType};
use tokio::time::Instant;

pub use super::finding::{Finding, ObjectRef};
use super::{Context, Error, Scope};
use crate::cluster::{Cached, ClusterIndex, ClusterView, Store};
use crate::metrics::{AuditEventLabels, AuditLabels, StuckLabels};
use crate::policy::{Mode, Policy, UserInfo};
use crate::rules::kinds::StoreVisitor;
use crate::rules::{Check, For, RULES, Rule, RuleId, gate};

/// The rules the audit evaluates: those with an audited check in the table, in table order.
pub fn audited_rules() -> impl Iterator<Item = &'static Rule> {
    RULES
        .iter()
        .copied()
        .filter(|rule| rule.checks.iter().any(Check::is_audited))
}

/// events.k8s.io/v1 limits `note` to 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// What one pass over the cache found.
#[derive(Debug, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// (object key, rule) pairs the rule could not decide (a cache it reads is not synced):
    /// neither reported nor forgotten.
    pub undecided: HashSet<(String, RuleId)>,
    /// Rules whose objects could not even be listed (their own cache is not synced).
    pub undecided_rules: BTreeSet<RuleId>,
}

impl Audit {
    /// Whether every object of every audited rule was decided.
    pub fn is_complete(&self) -> bool {
        self.undecided.is_empty() && self.undecided_rules.is_empty()
    }

    pub fn count(&self, rule: RuleId) -> usize {
        self.findings.iter().filter(|f| f.rule == rule).count()
    }
}

/// Runs one rule's audited check over the store of its kind.
struct Judge<'a> {
    audit: &'a mut Audit,
    rule: &'static Rule,
    view: &'a dyn ClusterView,
    policy: &'a Policy,
    scope: &'a Scope,
}

impl StoreVisitor for Judge<'_> {
    fn visit<T: Cached>(&mut self, store: &Store<T>, check: &For<T>) {
        let Some(audited) = &check.audit else { return };
        // Collected first, so rules reading other stores run without this store's lock held.
        let objects = match store.scan(|it| it.cloned().collect::<Vec<Arc<T>>>()) {
            Ok(objects) => objects,
            Err(_) => {
                self.audit.undecided_rules.insert(self.rule.id);
                return;
            }
        };
        // Who created an object is not known after the fact: no user, so only the namespace
        // part of the exemptions can apply.
        let nobody = UserInfo::default();
        for object in objects {
            let m = object.meta();
            if self.scope.skips(m)
                || !gate::applies(self.rule, self.policy, &nobody, m.namespace.as_deref())
                || m.is_being_deleted()
                || !(audited.select)(&object)
            {
                continue;
            }
            let reference = ObjectRef::new(T::KIND, m);
            let input = For::existing(object.as_ref(), audited.phase, audited.operation);
            let gated = gate::gate(
                self.rule,
                self.policy,
                (check.check)(&input, self.view, self.policy),
            );
            if gated.undecided {
                self.audit.undecided.insert((reference.key(), self.rule.id));
            } else {
                let said = gated.said();
                if !said.is_empty() {
                    self.audit.findings.push(Finding {
                        rule: self.rule.id,
                        object: reference,
                        message: said.join("\n"),
                    });
                }
            }
        }
    }
}

/// Which findings exist in this cache: pure, no API. Sorted by object, then rule.
pub fn findings(index: &ClusterIndex, policy: &Policy, scope: &Scope) -> Audit {
    let mut audit = Audit::default();
    for rule in audited_rules() {
        if (rule.settings)(policy).mode == Mode::Off {
            continue;
        }
        for check in rule.checks {
            check.visit_store(
                index,
                &mut Judge {
                    audit: &mut audit,
                    rule,
                    view: index,
                    policy,
                    scope,
                },
            );
        }
    }
    audit
        .findings
        .sort_by(|a, b| (&a.object, a.rule).cmp(&(&b.object, b.rule)));
    audit
}

/// Remembers what was reported, so the same finding is not an event on every resync.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    /// (object key, rule) → the message reported and when.
    reported: HashMap<(String, RuleId), (String, Instant)>,
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            reported: HashMap::new(),
        }
    }

    /// Whether `finding` is due: never reported, reported with another message, or reported
    /// longer than the window ago.
    pub fn is_due(&self, finding: &Finding, now: Instant) -> bool {
        match self.reported.get(&(finding.object.key(), finding.rule)) {
            Some((message, at)) => {
                *message != finding.message || now.saturating_duration_since(*at) >= self.window
            }
            None => true,
        }
    }

    /// Records a finding as reported (only once its event was accepted, so a failed publish
    /// is retried on the next pass).
    pub fn record(&mut self, finding: &Finding, now: Instant) {
        self.reported.insert(
            (finding.object.key(), finding.rule),
            (finding.message.clone(), now),
        );
    }

    /// Forgets findings that are gone, except those the audit could not decide this time.
    pub fn forget_resolved(&mut self, audit: &Audit) {
        let current: HashSet<(String, RuleId)> = audit
            .findings
            .iter()
            .map(|f| (f.object.key(), f.rule))
            .collect();
        self.reported.retain(|key, _| {
            current.contains(key)
                || audit.undecided.contains(key)
                || audit.undecided_rules.contains(&key.1)
        });
    }

    pub fn len(&self) -> usize {
        self.reported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reported.is_empty()
    }
}

/// The event's `reason`: the rule's name in PascalCase (`restore-readiness` → `RestoreReadiness`).
pub fn reason(rule: RuleId) -> String {
    rule.as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Cuts a note to the API's limit at a character boundary.
fn fit_note(message: &str) -> String {
    if message.len() <= MAX_NOTE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The Event for a finding.
pub fn event(finding: &Finding) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason(finding.rule),
        note: Some(fit_note(&finding.message)),
        action: "Audit".to_owned(),
        secondary: None,
    }
}

/// One audit pass: find, update the gauges, forget what resolved, publish what is due.
/// Returns `false` while a cache is still waiting for its first list, so the caller retries
/// soon. A kind the cluster does not serve (no snapshot CRDs) leaves its rules undecided but
/// does not count: retrying every poll would not change that, the next resync will. Nor does
/// an optional kind not listed yet (CSIDrivers): it only narrows what a stuck claim reports.
pub async fn run_pass(ctx: &Context, policy: &Policy, dedup: &mut Dedup) -> bool {
    let mut audit = findings(&ctx.index, policy, &ctx.config.scope);
    // Stuck claims and snapshots are reported, and deduplicated, as findings of their own.
    let stuck = super::stuck::findings(
        &ctx.index,
        policy,
        &ctx.config.scope,
        ctx.config.stuck_after,
        std::time::SystemTime::now(),
    );
    for ((kind, reason), n) in &stuck.counts {
        ctx.metrics
            .stuck_objects
            .get_or_create(&StuckLabels { kind, reason })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    audit.undecided_rules.extend(stuck.undecided);
    audit.findings.extend(stuck.findings);
    for rule in audited_rules().map(|r| r.id) {
        if !audit.undecided_rules.contains(&rule) {
            ctx.metrics
                .audit_findings
                .get_or_create(&AuditLabels {
                    rule: rule.as_str(),
                })
                .set(i64::try_from(audit.count(rule)).unwrap_or(i64::MAX));
        }
    }
    dedup.forget_resolved(&audit);
    for finding in &audit.findings {
        let now = Instant::now();
        if !dedup.is_due(finding, now) {
            continue;
        }
        let result = ctx
            .recorder
            .publish(&event(finding), &finding.object.reference(&ctx.index))
            .await
            .map_err(|source| Error::PublishEvent {
                rule: finding.rule,
                object: finding.object.to_string(),
                source,
            });
        let label = match &result {
            Ok(()) => {
                tracing::info!(rule = %finding.rule, object = %finding.object, "audit finding reported");
                dedup.record(finding, now);
                "published"
            }
            Err(error) => {
                tracing::warn!(%error, "audit event not accepted; retrying next pass");
                "error"
            }
        };
        ctx.metrics
            .audit_events
            .get_or_create(&AuditEventLabels {
                rule: finding.rule.as_str(),
                result: label,
            })
            .inc();
    }
    ctx.index.awaited().is_empty()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cluster::ResourceKind;
    use crate::cluster::state_file;

    /// Nodes in zone b; a PVC restoring from a missing snapshot, a bound one doing the same, and
    /// one in kube-system; a class allowing only zone d and binding Immediate, one opted out;
    /// two default snapshot classes of one driver; a snapshot without a class of a driver with
    /// no default, and a bound one.
    const STATE: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: n1, labels: {topology.kubernetes.io/zone: b}}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: restore, namespace: app, uid: uid-restore}
  spec:
    storageClassName: ""
    dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: gone}
    resources: {requests: {storage: 1Gi}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: restored-long-ago, namespace: app, uid: uid-bound}
  spec:
    volumeName: pv-1
    dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: gone}
  status: {phase: Bound}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: restore, namespace: kube-system, uid: uid-system}
  spec:
    dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: gone}
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: zone-d, uid: uid-zone-d}
  provisioner: disk.csi.example.com
  volumeBindingMode: Immediate
  allowedTopologies:
  - matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [d]}]
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata:
    name: zone-b-immediate-on-purpose
    uid: uid-zone-b
    annotations: {storage-admission.io/allow-immediate-binding: "true"}
  provisioner: disk.csi.example.com
  volumeBindingMode: Immediate
  allowedTopologies:
  - matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [b]}]
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata: {name: snap-a, uid: uid-snap-a, annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}}
  driver: disk.csi.example.com
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata: {name: snap-b, uid: uid-snap-b, annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}}
  driver: disk.csi.example.com
- apiVersion: v1
  kind: PersistentVolume
  metadata: {name: pv-nfs}
  spec: {csi: {driver: nfs.csi.example.com, volumeHandle: h}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data, namespace: app, uid: uid-data}
  spec: {volumeName: pv-nfs}
  status: {phase: Bound}
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshot
  metadata: {name: nightly, namespace: app, uid: uid-nightly}
  spec: {source: {persistentVolumeClaimName: data}}
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshot
  metadata: {name: taken, namespace: app, uid: uid-taken}
  spec: {source: {persistentVolumeClaimName: data}}
  status: {boundVolumeSnapshotContentName: content-1, readyToUse: true}
"#;

    fn index() -> ClusterIndex {
        state_file::parse(STATE, Path::new("audit-test.yaml"))
            .unwrap()
            .index
    }

    fn summary(audit: &Audit) -> Vec<(String, &'static str)> {
        audit
            .findings
            .iter()
            .map(|f| (f.object.to_string(), f.rule.as_str()))
            .collect()
    }

    #[test]
    fn finds_group_snapshot_problems() {
        // The group scenario plus a second default group class of the disk driver and two
        // unbound group snapshots without a class: one selecting claims of both drivers, one
        // selecting nothing. db-group names its class and is left alone.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/group/state.yaml");
        let extra = r#"
apiVersion: v1
kind: List
items:
- apiVersion: groupsnapshot.storage.k8s.io/v1
  kind: VolumeGroupSnapshotClass
  metadata:
    name: disk-group-second
    annotations: {groupsnapshot.storage.kubernetes.io/is-default-class: "true"}
  driver: diskplugin.csi.alibabacloud.com
  deletionPolicy: Delete
- apiVersion: groupsnapshot.storage.k8s.io/v1
  kind: VolumeGroupSnapshot
  metadata: {name: everything, namespace: default}
  spec: {source: {selector: {matchLabels: {app: mysql}}}}
- apiVersion: groupsnapshot.storage.k8s.io/v1
  kind: VolumeGroupSnapshot
  metadata: {name: nothing, namespace: default}
  spec: {source: {selector: {matchLabels: {group: web}}}}
"#;
        let text = std::fs::read_to_string(path).unwrap() + "---\n" + extra;
        let index = state_file::parse(&text, Path::new("group.yaml"))
            .unwrap()
            .index;
        let audit = findings(&index, &Policy::builtin(), &Scope::default());
        assert!(audit.is_complete());
        assert_eq!(
            summary(&audit),
            [
                (
                    "VolumeGroupSnapshotClass disk-group-default".to_owned(),
                    "group-snapshot-class-defaults"
                ),
                (
                    "VolumeGroupSnapshotClass disk-group-second".to_owned(),
                    "group-snapshot-class-defaults"
                ),
                (
                    "VolumeGroupSnapshot default/everything".to_owned(),
                    "default-group-snapshot-class"
                ),
                (
                    "VolumeGroupSnapshot default/nothing".to_owned(),
                    "default-group-snapshot-class"
                ),
            ]
        );
        let everything = &audit.findings[2].message;
        assert!(everything.contains("of 2 CSI drivers"), "{everything}");
    }

    #[test]
    fn finds_each_kind_of_violation_once_and_skips_what_the_webhook_would_not_see() {
        let audit = findings(&index(), &Policy::builtin(), &Scope::default());
        assert!(audit.is_complete());
        assert_eq!(
            summary(&audit),
            [
                (
                    "VolumeSnapshotClass snap-a".to_owned(),
                    "snapshot-class-defaults"
                ),
                (
                    "VolumeSnapshotClass snap-b".to_owned(),
                    "snapshot-class-defaults"
                ),
                (
                    "VolumeSnapshot app/nightly".to_owned(),
                    "default-snapshot-class"
                ),
                ("StorageClass zone-d".to_owned(), "binding-mode"),
                ("StorageClass zone-d".to_owned(), "allowed-topologies"),
                (
                    "PersistentVolumeClaim app/restore".to_owned(),
                    "restore-readiness"
                ),
            ]
        );
        let message = |rule: RuleId| {
            audit
                .findings
                .iter()
                .find(|f| f.rule == rule)
                .map(|f| f.message.clone())
                .unwrap()
        };
        // The webhook's own words.
        assert!(
            message(crate::rules::restore_readiness::RULE.id).starts_with(
                "PersistentVolumeClaim app/restore cannot be restored from VolumeSnapshot app/gone: it does not exist."
            ),
            "{}",
            message(crate::rules::restore_readiness::RULE.id)
        );
        assert!(
            message(crate::rules::snapshot_class_defaults::RULE.id)
                .contains("are all default for disk.csi.example.com")
        );
        assert!(
            message(crate::rules::default_snapshot_class::RULE.id)
                .contains("nfs.csi.example.com has no default VolumeSnapshotClass")
        );
        assert!(
            message(crate::rules::allowed_topologies::RULE.id)
                .contains("topology.kubernetes.io/zone")
        );
    }

    #[test]
    fn off_mode_and_namespace_exemptions_silence_a_rule() {
        let policy = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1
kind: AdmissionPolicy
rules:
  restoreReadiness:
    exemptions: {namespaces: [app]}
  allowedTopologies:
    mode: off
",
        )
        .unwrap();
        let audit = findings(&index(), &policy, &Scope::default());
        let rules: Vec<_> = audit.findings.iter().map(|f| f.rule).collect();
        assert!(!rules.contains(&crate::rules::restore_readiness::RULE.id));
        assert!(!rules.contains(&crate::rules::allowed_topologies::RULE.id));
        assert!(rules.contains(&crate::rules::binding_mode::RULE.id));
    }

    #[test]
    fn unsynced_caches_leave_rules_undecided_not_clean() {
        let index = ClusterIndex::unavailable("starting");
        let audit = findings(&index, &Policy::builtin(), &Scope::default());
        assert!(audit.findings.is_empty());
        assert!(!audit.is_complete());
        assert_eq!(audit.undecided_rules.len(), audited_rules().count());
    }

    fn finding(uid: &str, message: &str) -> Finding {
        Finding {
            rule: crate::rules::restore_readiness::RULE.id,
            object: ObjectRef {
                kind: ResourceKind::PersistentVolumeClaim,
                namespace: Some("app".into()),
                name: "restore".into(),
                uid: Some(uid.into()),
            },
            message: message.into(),
        }
    }

    #[test]
    fn dedup_reports_once_per_window_and_again_when_the_message_changes() {
        let start = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(3600));
        let f = finding("u1", "missing");
        assert!(dedup.is_due(&f, start));
        dedup.record(&f, start);
        assert!(!dedup.is_due(&f, start + Duration::from_secs(60)));
        assert!(dedup.is_due(&f, start + Duration::from_secs(3600)));
        assert!(dedup.is_due(&finding("u1", "failed"), start + Duration::from_secs(60)));
        assert!(
            dedup.is_due(&finding("u2", "missing"), start),
            "a recreated object is a new object"
        );
    }

    #[test]
    fn dedup_forgets_resolved_findings_but_not_undecided_ones() {
        let now = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(3600));
        let (a, b) = (finding("a", "m"), finding("b", "m"));
        dedup.record(&a, now);
        dedup.record(&b, now);
        let mut audit = Audit {
            findings: vec![a.clone()],
            ..Audit::default()
        };
        audit
            .undecided
            .insert(("b".into(), crate::rules::restore_readiness::RULE.id));
        dedup.forget_resolved(&audit);
        assert_eq!(dedup.len(), 2, "undecided: kept");
        audit.undecided.clear();
        dedup.forget_resolved(&audit);
        assert_eq!(dedup.len(), 1);
        assert!(
            dedup.is_due(&b, now),
            "resolved, so a recurrence is reported again"
        );
        assert!(!dedup.is_due(&a, now));
    }

    #[test]
    fn events_carry_a_pascal_case_reason_and_a_bounded_note() {
        assert_eq!(
            reason(crate::rules::restore_readiness::RULE.id),
            "RestoreReadiness"
        );
        assert_eq!(
            reason(crate::rules::snapshot_class_defaults::RULE.id),
            "SnapshotClassDefaults"
        );
        let long = finding("u", &"é".repeat(700));
        let note = event(&long).note.unwrap();
        assert!(note.len() <= MAX_NOTE_BYTES && note.ends_with('…'));
        let index = ClusterIndex::new(crate::cluster::SyncState::Synced);
        let reference = long.object.reference(&index);
        assert_eq!(reference.api_version.as_deref(), Some("v1"));
        assert_eq!(reference.uid.as_deref(), Some("u"));
    }
}
