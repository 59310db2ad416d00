//! Decides a review: which rules run for this kind and phase, with which policy settings, and
//! how their outcomes combine. Modes, exemptions and "cannot decide" are applied here, once,
//! so every rule behaves the same way under `warn`, `off` and `whenStateUnavailable`.

use json_patch::PatchOperation;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::review::AdmissionRequest;
use crate::cluster::{ClusterView, ResourceKind, Unavailable};
use crate::model::{
    Node, ObjectMeta, PersistentVolume, PersistentVolumeClaim, StorageClass, VolumeSnapshot,
    VolumeSnapshotClass, VolumeSnapshotContent,
};
use crate::policy::{Mode, Policy, Unavailable as WhenUnavailable};
use crate::rules::{self, Input, Operation, Outcome, Phase, RuleId, RuleResult, patch};

/// A refusal, as it goes into `response.status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

/// How one rule ended, for logs and metrics (bounded values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleStatus {
    Allowed,
    Warned,
    Patched,
    Denied,
    /// The rule could not decide (cluster state unavailable).
    Unavailable,
    /// The object could not be decoded for the rule.
    Invalid,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Warned => "warned",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleReport {
    pub rule: RuleId,
    pub status: RuleStatus,
}

/// The decision on one review.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    pub denial: Option<Denial>,
    pub patch: Vec<PatchOperation>,
    pub warnings: Vec<String>,
    pub rules: Vec<RuleReport>,
}

impl Verdict {
    pub fn allow() -> Self {
        Self {
            allowed: true,
            denial: None,
            patch: Vec::new(),
            warnings: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// The bounded decision label: `allowed`, `patched`, `warned` or `denied`.
    pub fn decision(&self) -> &'static str {
        if !self.allowed {
            "denied"
        } else if !self.patch.is_empty() {
            "patched"
        } else if !self.warnings.is_empty() {
            "warned"
        } else {
            "allowed"
        }
    }
}

/// Objects the engine can hand to rules.
trait Object: DeserializeOwned {
    const KIND: ResourceKind;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! object {
    ($($ty:ty => $kind:ident),* $(,)?) => {$(
        impl Object for $ty {
            const KIND: ResourceKind = ResourceKind::$kind;
            fn meta_mut(&mut self) -> &mut ObjectMeta { &mut self.metadata }
        }
    )*};
}

object! {
    VolumeSnapshotClass => VolumeSnapshotClass,
    VolumeSnapshot => VolumeSnapshot,
    VolumeSnapshotContent => VolumeSnapshotContent,
    StorageClass => StorageClass,
    PersistentVolumeClaim => PersistentVolumeClaim,
    PersistentVolume => PersistentVolume,
    Node => Node,
}

type RuleFn<T> = fn(&Input<'_, T>, &dyn ClusterView, &Policy) -> RuleResult;

/// The kind a request is about, when it is one this service handles (group must match too:
/// a CRD of another group named `VolumeSnapshot` is not ours).
pub(super) fn handled_kind(req: &AdmissionRequest) -> Option<ResourceKind> {
    let kind = ResourceKind::from_kind(&req.kind.kind)?;
    if kind.as_str() != req.kind.kind {
        return None; // `...List` is not an admission kind
    }
    let group = match kind {
        ResourceKind::VolumeSnapshotClass
        | ResourceKind::VolumeSnapshot
        | ResourceKind::VolumeSnapshotContent => "snapshot.storage.k8s.io",
        ResourceKind::StorageClass => "storage.k8s.io",
        ResourceKind::PersistentVolumeClaim
        | ResourceKind::PersistentVolume
        | ResourceKind::Node => "",
    };
    (req.kind.group == group).then_some(kind)
}

/// Decides one review.
pub fn decide(
    phase: Phase,
    req: &AdmissionRequest,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Verdict {
    // Rules judge objects being created or changed; deletes, connects and subresources
    // (status updates by the snapshot controller) are not theirs to judge.
    if matches!(req.operation, Operation::Delete | Operation::Connect) || req.sub_resource.is_some()
    {
        return Verdict::allow();
    }
    let Some(kind) = handled_kind(req) else {
        return Verdict::allow();
    };
    use ResourceKind as K;
    match (phase, kind) {
        (Phase::Mutating, K::VolumeSnapshot) => evaluate::<VolumeSnapshot>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::DefaultSnapshotClass, |i, v, p| {
                rules::default_snapshot_class::check(i, v, &p.rules.default_snapshot_class)
            })],
        ),
        (Phase::Mutating, K::StorageClass) => evaluate::<StorageClass>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::BindingMode, |i, v, p| {
                rules::binding_mode::check(i, v, &p.rules.binding_mode)
            })],
        ),
        (Phase::Mutating, K::Node) => evaluate::<Node>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::NodeTopology, |i, v, p| {
                rules::node_topology::check(i, v, &p.rules.node_topology)
            })],
        ),
        (Phase::Validating, K::VolumeSnapshotClass) => evaluate::<VolumeSnapshotClass>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::SnapshotClassDefaults, |i, v, p| {
                rules::snapshot_class_defaults::check(i, v, &p.rules.snapshot_class_defaults)
            })],
        ),
        (Phase::Validating, K::VolumeSnapshot) => evaluate::<VolumeSnapshot>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::SnapshotValidation, |i, v, p| {
                rules::snapshot_validation::check_snapshot(i, v, &p.rules.snapshot_validation)
            })],
        ),
        (Phase::Validating, K::VolumeSnapshotContent) => evaluate::<VolumeSnapshotContent>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::SnapshotValidation, |i, v, p| {
                rules::snapshot_validation::check_content(i, v, &p.rules.snapshot_validation)
            })],
        ),
        (Phase::Validating, K::PersistentVolumeClaim) => evaluate::<PersistentVolumeClaim>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::RestoreReadiness, |i, v, p| {
                rules::restore_readiness::check(i, v, &p.rules.restore_readiness)
            })],
        ),
        (Phase::Validating, K::StorageClass) => evaluate::<StorageClass>(
            phase,
            req,
            view,
            policy,
            &[
                (RuleId::BindingMode, |i, v, p| {
                    rules::binding_mode::check(i, v, &p.rules.binding_mode)
                }),
                (RuleId::AllowedTopologies, |i, v, p| {
                    rules::allowed_topologies::check(i, v, &p.rules.allowed_topologies)
                }),
            ],
        ),
        (Phase::Validating, K::PersistentVolume) => evaluate::<PersistentVolume>(
            phase,
            req,
            view,
            policy,
            &[(RuleId::LocalVolumes, |i, v, p| {
                rules::local_volumes::check(i, v, &p.rules.local_volumes)
            })],
        ),
        _ => Verdict::allow(),
    }
}

/// Whether a rule runs for this request at all: not `off`, and neither the policy-wide nor the
/// rule's own exemptions match.
pub(super) fn rule_applies(id: RuleId, req: &AdmissionRequest, policy: &Policy) -> bool {
    let namespace = req.namespace.as_deref().filter(|n| !n.is_empty());
    let settings = id.settings(policy);
    settings.mode != Mode::Off
        && !policy.exemptions.matches(&req.user_info, namespace)
        && !settings.exemptions.matches(&req.user_info, namespace)
}

fn evaluate<T: Object>(
    phase: Phase,
    req: &AdmissionRequest,
    view: &dyn ClusterView,
    policy: &Policy,
    rules: &[(RuleId, RuleFn<T>)],
) -> Verdict {
    let mut verdict = Verdict::allow();
    let active: Vec<_> = rules
        .iter()
        .filter(|(id, _)| rule_applies(*id, req, policy))
        .collect();
    if active.is_empty() {
        return verdict;
    }
    let never_denies = active.iter().all(|(id, _)| id.never_denies());

    let object = match decode_object::<T>(req.object.as_deref(), "object", req) {
        Ok(Some(o)) => o,
        Ok(None) => {
            return invalid(
                verdict,
                &active,
                never_denies,
                format!(
                    "the {} {} admission request has no object",
                    req.operation.as_str(),
                    T::KIND
                ),
            );
        }
        Err(message) => return invalid(verdict, &active, never_denies, message),
    };
    let old_object = if req.operation == Operation::Update {
        match decode_object::<T>(req.old_object.as_deref(), "oldObject", req) {
            Ok(old) => old,
            Err(message) => return invalid(verdict, &active, never_denies, message),
        }
    } else {
        None // an oldObject on CREATE is meaningless; ignore it rather than trust it
    };

    let mut denials = Vec::new();
    for (id, check) in active {
        let settings = id.settings(policy);
        let input = Input {
            operation: req.operation,
            phase,
            object: &object,
            old_object: old_object.as_ref(),
        };
        let status = match check(&input, view, policy) {
            Ok(outcome) => apply(&mut verdict, &mut denials, *id, settings.mode, outcome),
            Err(unavailable) => {
                unavailable_state(
                    &mut verdict,
                    &mut denials,
                    *id,
                    settings.when_unavailable,
                    &unavailable,
                );
                RuleStatus::Unavailable
            }
        };
        verdict.rules.push(RuleReport { rule: *id, status });
    }
    if !denials.is_empty() {
        verdict.allowed = false;
        verdict.patch.clear(); // a denied object is not stored, so it needs no patch
        verdict.denial = Some(Denial {
            code: 403,
            reason: "Forbidden",
            message: denials.join("\n"),
        });
    }
    verdict
}

/// Merges one rule's outcome into the verdict according to its mode.
fn apply(
    verdict: &mut Verdict,
    denials: &mut Vec<String>,
    id: RuleId,
    mode: Mode,
    outcome: Outcome,
) -> RuleStatus {
    let Outcome {
        denials: rule_denials,
        mutations,
        warnings,
    } = outcome;
    let had_warnings = !warnings.is_empty();
    verdict.warnings.extend(warnings);
    let enforce = mode == Mode::Enforce && !id.never_denies();
    let mut status = if had_warnings {
        RuleStatus::Warned
    } else {
        RuleStatus::Allowed
    };

    for mutation in mutations {
        if mode == Mode::Enforce {
            verdict.patch.extend(mutation.ops);
            if let Some(note) = mutation.note {
                verdict.warnings.push(note);
            }
            status = RuleStatus::Patched;
        } else {
            let what = mutation
                .note
                .unwrap_or_else(|| patch::describe(&mutation.ops));
            verdict.warnings.push(format!(
                "not applied (policy rules.{}.mode is warn): {what}",
                id.policy_key()
            ));
            status = RuleStatus::Warned;
        }
    }
    if !rule_denials.is_empty() {
        if enforce {
            denials.extend(rule_denials);
            status = RuleStatus::Denied;
        } else {
            let why = if id.never_denies() {
                "this rule never denies"
            } else {
                "policy mode is warn"
            };
            verdict.warnings.extend(
                rule_denials
                    .into_iter()
                    .map(|d| format!("would be denied ({why}, rules.{}): {d}", id.policy_key())),
            );
            status = RuleStatus::Warned;
        }
    }
    status
}

fn unavailable_state(
    verdict: &mut Verdict,
    denials: &mut Vec<String>,
    id: RuleId,
    when: WhenUnavailable,
    unavailable: &Unavailable,
) {
    if when == WhenUnavailable::Deny && !id.never_denies() {
        denials.push(format!(
            "storage-admission cannot run its {id} check right now: {unavailable}. Retry in a moment; \
             if this persists, check the storage-admission pods (policy rules.{}.whenStateUnavailable is deny).",
            id.policy_key()
        ));
    } else {
        verdict.warnings.push(format!(
            "storage-admission skipped its {id} check: {unavailable} (policy rules.{}.whenStateUnavailable is allow)",
            id.policy_key()
        ));
    }
}

/// An object the rules cannot read: a 400 denial, except for rules that never deny.
fn invalid(
    mut verdict: Verdict,
    active: &[&(RuleId, impl Sized)],
    never_denies: bool,
    message: String,
) -> Verdict {
    for (id, _) in active {
        verdict.rules.push(RuleReport {
            rule: *id,
            status: RuleStatus::Invalid,
        });
    }
    if never_denies {
        verdict.warnings.push(format!(
            "storage-admission could not check this object: {message}"
        ));
    } else {
        verdict.allowed = false;
        verdict.denial = Some(Denial {
            code: 400,
            reason: "BadRequest",
            message: format!("storage-admission could not check this object: {message}"),
        });
    }
    verdict
}

fn decode_object<T: Object>(
    raw: Option<&RawValue>,
    field: &str,
    req: &AdmissionRequest,
) -> Result<Option<T>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let mut object: T = super::review::parse_at(raw.get(), format_args!("request.{field}"))?;
    // The API server fills these in, but a review built by hand may not: take them from the
    // request so every message can name the object.
    let meta = object.meta_mut();
    if meta.namespace.as_deref().unwrap_or_default().is_empty()
        && let Some(ns) = req.namespace.as_deref().filter(|n| !n.is_empty())
    {
        meta.namespace = Some(ns.to_owned());
    }
    if meta.name.is_empty()
        && let Some(name) = req.name.as_deref().filter(|n| !n.is_empty())
    {
        meta.name = name.to_owned();
    }
    Ok(Some(object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::review;
    use crate::cluster::ClusterIndex;

    #[test]
    fn a_label_patch_on_a_node_without_metadata_creates_it_and_applies() {
        // Found by the `patch` fuzz target: `add /metadata/labels` on an object with no metadata.
        let policy = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  nodeTopology:\n    labelRules:\n    - name: zone\n      from: nodeName\n      pattern: '^(?P<zone>[a-z]+)-'\n      set:\n        topology.kubernetes.io/zone: '${zone}'\n",
        )
        .unwrap();
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Node"},
                "resource": {"group": "", "version": "v1", "resource": "nodes"},
                "name": "east-node1", "operation": "CREATE", "object": {"kind": "Node"}}});
        let (_, req) = review::decode(body.to_string().as_bytes()).unwrap();
        let verdict = decide(
            Phase::Mutating,
            &req,
            &ClusterIndex::unavailable("t"),
            &policy,
        );
        assert!(!verdict.patch.is_empty(), "{verdict:?}");
        let mut object = serde_json::json!({"kind": "Node"});
        json_patch::patch(&mut object, &verdict.patch).unwrap();
        assert_eq!(
            object["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "east"
        );
    }
}
