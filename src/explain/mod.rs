//! Why is it stuck? The chain of objects behind a Pending claim or pod, or an unready snapshot
//! or group snapshot, the fact that matters at each, and what blocks it, with the fix.
//!
//! Pure, like the rules: a function of (target, cluster view, policy, now). Where a rule judges
//! the question (a restore's snapshot, a class's topologies, a snapshot's default class), the
//! rule's own check runs on the existing object, as the audit runs it (`For::existing`, with
//! the phase and operation of the rule's `Audited` entry), and what it says becomes a finding:
//! one code path, one message. What no rule judges (a selected node that is gone, a claim
//! waiting for a consumer, a content's `status.error`) is diagnosed here, from the view only.
//!
//! Each kind is one module with a `diagnose` function and one line in [`KINDS`]: `explain`
//! (`src/commands/explain.rs`) and the controller's stuck Events read that table.

mod group;
mod pod;
mod pvc;
mod snapshot;

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cluster::{ClusterIndex, ClusterView, ResourceKind, StateUnavailable};
use crate::model::ObjectMeta;
use crate::policy::Policy;
use crate::rules::kinds::Judged;
use crate::rules::{Operation, Outcome, Phase, Rule};

/// A kind `explain` knows, and how it is diagnosed.
pub struct Kind {
    pub kind: ResourceKind,
    /// What `explain KIND` accepts, as kubectl spells it (singular, plural, short names).
    pub names: &'static [&'static str],
    pub diagnose: fn(&Target, &dyn ClusterView, &Policy) -> Result<Diagnosis, ExplainError>,
    /// The cached objects in the state `explain` is about (claims not bound yet, snapshots not
    /// ready): the controller reports those stuck longer than `--stuck-after`.
    pub waiting: fn(&ClusterIndex) -> Result<Vec<Waiting>, StateUnavailable>,
    /// The ids of its findings (stable: JSON output, metrics, docs).
    pub finding_ids: &'static [&'static str],
    /// The `rule` of the controller's Events about it stuck: `stuck-persistent-volume-claim`
    /// becomes the reason `StuckPersistentVolumeClaim`.
    pub stuck_rule: &'static str,
}

/// A cached object waiting (see [`Kind::waiting`]).
#[derive(Debug, Clone)]
pub struct Waiting {
    pub target: Target,
    pub metadata: ObjectMeta,
}

/// The kinds `explain` diagnoses. A new kind: a module with `diagnose` and one line here.
pub const KINDS: &[Kind] = &[
    Kind {
        kind: ResourceKind::PersistentVolumeClaim,
        names: &[
            "pvc",
            "pvcs",
            "persistentvolumeclaim",
            "persistentvolumeclaims",
        ],
        diagnose: pvc::diagnose,
        waiting: pvc::waiting,
        finding_ids: pvc::FINDING_IDS,
        stuck_rule: "stuck-persistent-volume-claim",
    },
    Kind {
        kind: ResourceKind::VolumeSnapshot,
        names: &[
            "vs",
            "volumesnapshot",
            "volumesnapshots",
            "volumesnapshot.snapshot.storage.k8s.io",
        ],
        diagnose: snapshot::diagnose,
        waiting: snapshot::waiting,
        finding_ids: snapshot::FINDING_IDS,
        stuck_rule: "stuck-volume-snapshot",
    },
    Kind {
        kind: ResourceKind::Pod,
        names: &["po", "pod", "pods"],
        diagnose: pod::diagnose,
        waiting: pod::waiting,
        finding_ids: pod::FINDING_IDS,
        stuck_rule: "stuck-pod",
    },
    Kind {
        kind: ResourceKind::VolumeGroupSnapshot,
        names: &[
            "vgs",
            "volumegroupsnapshot",
            "volumegroupsnapshots",
            "volumegroupsnapshot.groupsnapshot.storage.k8s.io",
        ],
        diagnose: group::diagnose,
        waiting: group::waiting,
        finding_ids: group::FINDING_IDS,
        stuck_rule: "stuck-volume-group-snapshot",
    },
];

/// Every finding id of every kind: the fixed set of the `storage_admission_stuck_objects`
/// reason label and of `docs/explain.md`.
pub fn finding_ids() -> impl Iterator<Item = &'static str> {
    KINDS.iter().flat_map(|k| k.finding_ids.iter().copied())
}

/// The object to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: ResourceKind,
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// `KIND NAME` with kubectl's names for the kind (`pvc`, `vs`, ...), in `namespace`.
    pub fn parse(kind: &str, name: &str, namespace: &str) -> Result<Self, ExplainError> {
        let wanted = kind.to_ascii_lowercase();
        let kind = KINDS
            .iter()
            .find(|k| k.names.contains(&wanted.as_str()))
            .ok_or_else(|| ExplainError::UnknownKind(kind.to_owned()))?;
        Ok(Self {
            kind: kind.kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Its entry in [`KINDS`]; `None` for a kind `explain` does not diagnose.
    pub fn entry(&self) -> Option<&'static Kind> {
        KINDS.iter().find(|k| k.kind == self.kind)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("explain does not know the kind {0:?}; it explains: {list}", list = kind_list())]
    UnknownKind(String),
    #[error(transparent)]
    Unavailable(#[from] StateUnavailable),
}

/// `pvc (persistentvolumeclaim), vs (volumesnapshot)`: for usage errors and `--help`.
pub fn kind_list() -> String {
    KINDS
        .iter()
        .map(|k| format!("{} ({})", k.names[0], k.kind.as_str().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An object in the chain, as JSON and text name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ResourceKind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind: kind.as_str(),
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One object followed, and the fact about it that matters here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub object: ObjectRef,
    pub fact: String,
}

/// Something that keeps the object stuck: a stable id (for `-o json`, tests, the metric's
/// reason label), what is wrong, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub message: String,
    pub fix: String,
}

/// What a kind's diagnosis found, before the verdict is drawn.
#[derive(Debug, Default)]
pub struct Diagnosis {
    pub chain: Vec<Step>,
    pub findings: Vec<Finding>,
    /// Whether the object is where it should end up (bound, ready): said in the verdict.
    pub settled: Option<String>,
    /// The object's `creationTimestamp`, when it exists and has one.
    pub created: Option<SystemTime>,
}

impl Diagnosis {
    fn step(&mut self, object: ObjectRef, fact: impl Into<String>) {
        self.chain.push(Step {
            object,
            fact: fact.into(),
        });
    }

    fn find(&mut self, id: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding {
            id,
            message: message.into(),
            fix: fix.into(),
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing found blocks it.
    Clear,
    /// At least one finding blocks it.
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub object: ObjectRef,
    /// Seconds since `creationTimestamp` (absent in state files without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    pub chain: Vec<Step>,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    /// The verdict in one sentence.
    pub summary: String,
}

/// Explains `target` from `view`. `Err` only when a cache it needs is unavailable or the kind
/// is unknown; a missing target is a finding (`pvc.not-found`).
pub fn explain(
    target: &Target,
    view: &dyn ClusterView,
    policy: &Policy,
    now: SystemTime,
) -> Result<Explanation, ExplainError> {
    let entry = target
        .entry()
        .ok_or_else(|| ExplainError::UnknownKind(target.kind.as_str().to_owned()))?;
    let diagnosis = (entry.diagnose)(target, view, policy)?;
    let age_seconds = diagnosis
        .created
        .and_then(|created| now.duration_since(created).ok())
        .map(|d| d.as_secs());
    let verdict = if diagnosis.findings.is_empty() {
        Verdict::Clear
    } else {
        Verdict::Blocked
    };
    let object = ObjectRef::new(target.kind, Some(&target.namespace), &target.name);
    let summary = match (&diagnosis.findings[..], &diagnosis.settled) {
        ([], Some(settled)) => format!("{object} is {settled}: nothing blocks it."),
        ([], None) => format!(
            "Nothing found blocks {object}; if it stays this way, see `kubectl describe {} -n {} {}`.",
            entry.names[0], target.namespace, target.name
        ),
        ([_], _) => format!("{object} is blocked by 1 problem."),
        (all, _) => format!("{object} is blocked by {} problems.", all.len()),
    };
    Ok(Explanation {
        object,
        age_seconds,
        chain: diagnosis.chain,
        findings: diagnosis.findings,
        verdict,
        summary,
    })
}

/// Runs `rule`'s check of kind `T` on an existing object exactly as the audit does: with the
/// phase and operation of its `Audited` entry (a validating CREATE for a check the audit does
/// not run). `None` when the rule has no check of that kind.
pub(crate) fn run_rule<T: Judged>(
    rule: &Rule,
    object: &T,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Option<Result<Outcome, StateUnavailable>> {
    let check = T::check(rule.check_for(T::KIND)?)?;
    let (phase, operation) = check
        .audit
        .as_ref()
        .map_or((Phase::Validating, Operation::Create), |a| {
            (a.phase, a.operation)
        });
    let input = crate::rules::For::existing(object, phase, operation);
    Some((check.check)(&input, view, policy))
}

/// Runs `rule`'s check of kind `T` on an existing object as `phase` judges `operation` (a
/// question the audit does not ask, such as a validating phase's view of a new object).
pub(crate) fn run_rule_as<T: Judged>(
    rule: &Rule,
    object: &T,
    view: &dyn ClusterView,
    policy: &Policy,
    phase: Phase,
    operation: Operation,
) -> Option<Result<Outcome, StateUnavailable>> {
    let check = T::check(rule.check_for(T::KIND)?)?;
    let input = crate::rules::For::existing(object, phase, operation);
    Some((check.check)(&input, view, policy))
}

/// What the rule said (denials, then warnings), each a sentence for a person.
pub(crate) fn said(outcome: Outcome) -> Vec<String> {
    outcome
        .denials
        .into_iter()
        .chain(outcome.warnings)
        .collect()
}

/// `2h13m`, `5m`, `40s`: an age for a person.
pub fn age(seconds: u64) -> String {
    let d = Duration::from_secs(seconds).as_secs();
    match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m", d / 60),
        3600..86_400 => format!("{}h{}m", d / 3600, d % 3600 / 60),
        _ => format!("{}d{}h", d / 86_400, d % 86_400 / 3600),
    }
}

/// The text `explain` prints: the chain, one line per object, then the verdict and each
/// finding with its fix.
pub fn render_text(explanation: &Explanation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let width = explanation
        .chain
        .iter()
        .map(|s| s.object.to_string().len())
        .max()
        .unwrap_or(0);
    for step in &explanation.chain {
        let _ = writeln!(out, "{:<width$}  {}", step.object.to_string(), step.fact);
    }
    if let Some(age_seconds) = explanation.age_seconds {
        let _ = writeln!(out, "(created {} ago)", age(age_seconds));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", explanation.summary);
    for finding in &explanation.findings {
        let _ = writeln!(out, "\n[{}] {}", finding.id, finding.message);
        let _ = writeln!(out, "  fix: {}", finding.fix);
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn kinds_take_kubectl_names_and_unknown_kinds_list_the_known_ones() {
        let t = Target::parse("PVC", "data", "app").unwrap();
        assert_eq!(t.kind, ResourceKind::PersistentVolumeClaim);
        for name in ["persistentvolumeclaims", "persistentvolumeclaim", "pvc"] {
            assert_eq!(
                Target::parse(name, "d", "a").unwrap().kind,
                ResourceKind::PersistentVolumeClaim
            );
        }
        assert_eq!(
            Target::parse("vs", "s", "a").unwrap().kind,
            ResourceKind::VolumeSnapshot
        );
        for (name, kind) in [
            ("po", ResourceKind::Pod),
            ("Pods", ResourceKind::Pod),
            ("vgs", ResourceKind::VolumeGroupSnapshot),
            ("volumegroupsnapshots", ResourceKind::VolumeGroupSnapshot),
        ] {
            assert_eq!(Target::parse(name, "x", "a").unwrap().kind, kind, "{name}");
        }
        let err = Target::parse("deployment", "d", "a")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"deployment\"")
                && err.contains("pvc (persistentvolumeclaim), vs (volumesnapshot)"),
            "{err}"
        );
    }

    #[test]
    fn every_finding_id_is_unique_and_namespaced_by_kind() {
        let all: Vec<&str> = finding_ids().collect();
        let mut ids = all.clone();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        // One prefix per kind (`pvc.`, `snapshot.`), so an id says what it is about.
        let mut prefixes: Vec<&str> = KINDS
            .iter()
            .map(|kind| {
                let prefix = kind.finding_ids[0].split('.').next().unwrap();
                assert!(
                    kind.finding_ids
                        .iter()
                        .all(|id| id.split('.').next() == Some(prefix))
                );
                prefix
            })
            .collect();
        prefixes.dedup();
        assert_eq!(prefixes.len(), KINDS.len());
    }

    #[test]
    fn docs_list_every_finding_id() {
        let docs = include_str!("../../docs/explain.md");
        for id in finding_ids() {
            assert!(
                docs.contains(&format!("| `{id}` |")),
                "docs/explain.md lacks {id}"
            );
        }
    }

    #[test]
    fn ages_read_as_a_person_says_them() {
        assert_eq!(age(40), "40s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(7_980), "2h13m");
        assert_eq!(age(200_000), "2d7h");
    }
}
