//! Stuck objects: claims not bound, snapshots and group snapshots not ready, pods Pending, for
//! longer than `--stuck-after`, explained with `explain`'s own diagnoses and reported by the
//! audit as Warning Events (reason `Stuck<Kind>`, the verdict and each fix as the note),
//! deduplicated with the audit's other findings.
//!
//! An object only counts once it is older than `stuck_after`: a claim waiting a minute for its
//! provisioner is normal, one waiting an hour is not. Objects without a `creationTimestamp`
//! (hand-made state files) are never old enough.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::Scope;
use super::finding::{Finding, ObjectRef};
use crate::cluster::ClusterIndex;
use crate::explain::{self, KINDS, Verdict};
use crate::policy::Policy;
use crate::rules::RuleId;

/// What one pass found.
#[derive(Debug, Default)]
pub struct Stuck {
    pub findings: Vec<Finding>,
    /// (kind, finding id) → objects stuck for that reason; only for kinds whose cache answered.
    pub counts: BTreeMap<(&'static str, &'static str), usize>,
    /// Kinds whose cache (or a cache their diagnosis reads) is not loaded yet.
    pub undecided: Vec<RuleId>,
}

/// Pure: the stuck objects in `index` as of `now`.
pub fn findings(
    index: &ClusterIndex,
    policy: &Policy,
    scope: &Scope,
    stuck_after: Duration,
    now: SystemTime,
) -> Stuck {
    let mut stuck = Stuck::default();
    for kind in KINDS {
        let rule = RuleId::new(kind.stuck_rule);
        let Ok(mut waiting) = (kind.waiting)(index) else {
            stuck.undecided.push(rule);
            continue;
        };
        // Stores are hash maps: report in a stable order.
        waiting.sort_by(|a, b| {
            (&a.target.namespace, &a.target.name).cmp(&(&b.target.namespace, &b.target.name))
        });
        let mut counts: BTreeMap<&'static str, usize> =
            kind.finding_ids.iter().map(|id| (*id, 0)).collect();
        let mut decided = true;
        for w in waiting {
            let old_enough = w
                .metadata
                .created_at()
                .and_then(|created| now.duration_since(created).ok())
                .is_some_and(|age| age >= stuck_after);
            if !old_enough || scope.skips(&w.metadata) || w.metadata.is_being_deleted() {
                continue;
            }
            let explanation = match explain::explain(&w.target, index, policy, now) {
                Ok(e) => e,
                Err(_) => {
                    decided = false;
                    continue;
                }
            };
            if explanation.verdict != Verdict::Blocked {
                continue;
            }
            for f in &explanation.findings {
                *counts.entry(f.id).or_default() += 1;
            }
            // No age in the note: the same verdict must read the same on every pass, or the
            // deduplication would report it again each time.
            let mut message = explanation.summary.clone();
            for f in &explanation.findings {
                message.push_str(&format!("\n[{}] {} Fix: {}", f.id, f.message, f.fix));
            }
            stuck.findings.push(Finding {
                rule,
                object: ObjectRef::new(kind.kind, &w.metadata),
                message,
            });
        }
        if decided {
            for (id, n) in counts {
                stuck.counts.insert((kind.kind.as_str(), id), n);
            }
        } else {
            stuck.undecided.push(rule);
        }
    }
    stuck
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cluster::state_file;
    use crate::controller::audit;
    use crate::testing::policy;

    const STATE: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: n1}}
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: wffc}
  provisioner: disk.csi.example.com
  volumeBindingMode: WaitForFirstConsumer
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: old, namespace: app, uid: u-old, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {storageClassName: wffc}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: new, namespace: app, uid: u-new, creationTimestamp: "2026-01-01T00:55:00Z"}
  spec: {storageClassName: wffc}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: system, namespace: kube-system, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {storageClassName: wffc}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: undated, namespace: app}
  spec: {storageClassName: wffc}
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshot
  metadata: {name: nightly, namespace: app, uid: u-snap, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {source: {persistentVolumeClaimName: gone}, volumeSnapshotClassName: c}
"#;

    /// One hour after the old objects were created.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3600)
    }

    fn run(stuck_after: Duration) -> Stuck {
        let index = state_file::parse(STATE, Path::new("s")).unwrap().index;
        findings(
            &index,
            &policy::default(),
            &Scope::default(),
            stuck_after,
            now(),
        )
    }

    #[test]
    fn only_objects_stuck_longer_than_stuck_after_and_in_scope_are_reported() {
        let stuck = run(Duration::from_secs(600));
        let reported: Vec<(String, &str)> = stuck
            .findings
            .iter()
            .map(|f| (f.object.to_string(), f.rule.as_str()))
            .collect();
        assert_eq!(
            reported,
            [
                (
                    "PersistentVolumeClaim app/old".to_owned(),
                    "stuck-persistent-volume-claim"
                ),
                (
                    "VolumeSnapshot app/nightly".to_owned(),
                    "stuck-volume-snapshot"
                ),
            ]
        );
        assert_eq!(
            audit::reason(stuck.findings[0].rule),
            "StuckPersistentVolumeClaim"
        );
        let note = &stuck.findings[0].message;
        assert!(
            note.starts_with("PersistentVolumeClaim app/old is blocked by 1 problem."),
            "{note}"
        );
        assert!(
            note.contains("[pvc.wffc-no-consumer]") && note.contains("Fix: Start a pod"),
            "{note}"
        );
        assert_eq!(
            stuck.counts[&("PersistentVolumeClaim", "pvc.wffc-no-consumer")],
            1
        );
        assert_eq!(
            stuck.counts[&("VolumeSnapshot", "snapshot.source-missing")],
            1
        );
        // Every id of every kind has a series, zero included.
        assert_eq!(
            stuck.counts[&("PersistentVolumeClaim", "pvc.selected-node-gone")],
            0
        );
        assert!(stuck.undecided.is_empty());
        // With a longer threshold, the claim created 5 minutes ago is still not reported and
        // nothing else is either.
        assert!(run(Duration::from_secs(2 * 3600)).findings.is_empty());
        // With a shorter one, the new claim is reported too.
        assert_eq!(run(Duration::from_secs(60)).findings.len(), 3);
    }

    #[test]
    fn the_note_is_the_same_on_every_pass_so_it_is_reported_once() {
        let first = run(Duration::from_secs(600));
        let later = {
            let index = state_file::parse(STATE, Path::new("s")).unwrap().index;
            findings(
                &index,
                &policy::default(),
                &Scope::default(),
                Duration::from_secs(600),
                now() + Duration::from_secs(3600),
            )
        };
        // An hour later the newer claim is stuck too; the old one reads the same.
        assert_eq!(later.findings.len(), 3);
        let old = |s: &Stuck| s.findings.iter().find(|f| f.object.name == "old").cloned();
        assert_eq!(old(&first), old(&later));
        let mut dedup = audit::Dedup::new(Duration::from_secs(3600));
        let at = tokio::time::Instant::now();
        dedup.record(&old(&first).unwrap(), at);
        assert!(!dedup.is_due(&old(&later).unwrap(), at));
    }

    #[test]
    fn a_claim_whose_provisioner_no_csi_driver_serves_is_counted_under_its_id() {
        // STATE's classes are of disk.csi.example.com; the cluster has another driver only.
        let other = "- {apiVersion: storage.k8s.io/v1, kind: CSIDriver, metadata: {name: nfs.csi.k8s.io}}\n";
        let index = state_file::parse(&format!("{STATE}{other}"), Path::new("s"))
            .unwrap()
            .index;
        let at = |index: &ClusterIndex| {
            findings(
                index,
                &policy::default(),
                &Scope::default(),
                Duration::from_secs(600),
                now(),
            )
        };
        let stuck = at(&index);
        assert_eq!(
            stuck.counts[&("PersistentVolumeClaim", "pvc.provisioner-unserved")],
            1
        );
        assert_eq!(
            stuck.counts[&("PersistentVolumeClaim", "pvc.wffc-no-consumer")],
            0
        );
        assert!(
            stuck.findings[0].message.contains(
                "[pvc.provisioner-unserved] PersistentVolumeClaim app/old uses StorageClass wffc"
            ),
            "{}",
            stuck.findings[0].message
        );
        // CSIDrivers the service may not list: the claim is still decided, as before.
        index
            .csi_drivers
            .set_state(crate::cluster::SyncState::Pending(
                "listing CSIDrivers failed: forbidden".into(),
            ));
        let stuck = at(&index);
        assert!(stuck.undecided.is_empty());
        assert_eq!(
            stuck.counts[&("PersistentVolumeClaim", "pvc.provisioner-unserved")],
            0
        );
        assert_eq!(
            stuck.counts[&("PersistentVolumeClaim", "pvc.wffc-no-consumer")],
            1
        );
    }

    #[test]
    fn unsynced_caches_leave_kinds_undecided() {
        let index = ClusterIndex::unavailable("not yet");
        let stuck = findings(
            &index,
            &policy::default(),
            &Scope::default(),
            Duration::ZERO,
            now(),
        );
        assert!(stuck.findings.is_empty() && stuck.counts.is_empty());
        assert_eq!(stuck.undecided.len(), KINDS.len());
    }

    #[test]
    fn pending_pods_with_a_finding_and_unready_group_snapshots_are_stuck_too() {
        let state = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: n1}}
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: wffc}
  provisioner: disk.csi.example.com
  volumeBindingMode: WaitForFirstConsumer
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data, namespace: app, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {storageClassName: wffc}
- apiVersion: v1
  kind: Pod
  metadata: {name: pinned, namespace: app, uid: u-pod, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {nodeName: n1, volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}
  status: {phase: Pending}
- apiVersion: v1
  kind: Pod
  metadata: {name: fine, namespace: app, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}
  status: {phase: Pending}
- apiVersion: groupsnapshot.storage.k8s.io/v1beta2
  kind: VolumeGroupSnapshot
  metadata: {name: g, namespace: app, uid: u-g, creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {source: {selector: {matchLabels: {app: none}}}}
"#;
        let index = state_file::parse(state, Path::new("s")).unwrap().index;
        let stuck = findings(
            &index,
            &policy::default(),
            &Scope::default(),
            Duration::from_secs(600),
            now(),
        );
        let reported: Vec<(String, String)> = stuck
            .findings
            .iter()
            .map(|f| (f.object.to_string(), audit::reason(f.rule)))
            .collect();
        // The claim waits for its pods; the unpinned pod has no finding of its own.
        assert_eq!(
            reported,
            [
                (
                    "PersistentVolumeClaim app/data".to_owned(),
                    "StuckPersistentVolumeClaim".to_owned()
                ),
                ("Pod app/pinned".to_owned(), "StuckPod".to_owned()),
                (
                    "VolumeGroupSnapshot app/g".to_owned(),
                    "StuckVolumeGroupSnapshot".to_owned()
                ),
            ]
        );
        assert!(stuck.findings[1].message.contains("[pod.pinned-wffc]"));
        assert_eq!(stuck.counts[&("Pod", "pod.pinned-wffc")], 1);
        assert_eq!(
            stuck.counts[&("VolumeGroupSnapshot", "group.nothing-selected")],
            1
        );
        assert!(stuck.undecided.is_empty());
    }
}
