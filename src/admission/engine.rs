//! Decides a review: which rules of the table ([`crate::rules::RULES`]) run for this kind,
//! phase and operation, and how their outcomes combine into one [`Verdict`]. Policy — modes,
//! exemptions, "cannot decide" — is applied by [`crate::rules::gate`], the same function the
//! audit and the backfill use.

use super::review::{AdmissionRequest, Body};
use super::verdict::{Denial, RuleReport, RuleStatus, Verdict};
use crate::cluster::{ClusterView, ResourceKind};
use crate::policy::Policy;
use crate::rules::gate::append;
use crate::rules::{Check, Object, Operation, Phase, Rule, gate, table};

/// Decides one review.
pub fn decide(
    phase: Phase,
    req: &AdmissionRequest,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Verdict {
    let mut verdict = Verdict::allow();
    // Rules judge objects being created or changed; deletes, connects and subresources
    // (status updates by the snapshot controller) are not theirs to judge.
    if matches!(req.operation, Operation::Delete | Operation::Connect) || req.sub_resource.is_some()
    {
        return verdict;
    }
    let Some(kind) = req.kind.judged_kind() else {
        return verdict;
    };
    let namespace = req.namespace.as_deref();
    // Rules of this phase and kind, whatever the operation: the object is read (and refused
    // when unreadable) for any of them, and then judged by those that judge the operation.
    let active = Active::of(table::judging(phase, kind), |rule| {
        gate::applies(rule, policy, &req.user_info, namespace)
    });
    if active.is_empty() {
        return verdict;
    }
    let never_denies = active.iter().all(|(rule, _)| rule.never_denies);

    let (mut read, mut old_read) = (None, None);
    let object = match body(kind, req.object.as_ref(), &mut read, "object", req) {
        Ok(Some(o)) => o,
        Ok(None) => {
            return invalid(
                verdict,
                active,
                never_denies,
                format!(
                    "the {} {} admission request has no object",
                    req.operation.as_str(),
                    kind
                ),
            );
        }
        Err(message) => return invalid(verdict, active, never_denies, message),
    };
    let old_object = if req.operation == Operation::Update {
        match body(
            kind,
            req.old_object.as_ref(),
            &mut old_read,
            "oldObject",
            req,
        ) {
            Ok(old) => old,
            Err(message) => return invalid(verdict, active, never_denies, message),
        }
    } else {
        None // an oldObject on CREATE is meaningless; ignore it rather than trust it
    };

    let mut denials = Vec::new();
    for (rule, check) in active.iter() {
        if !rule.answers(phase, req.operation) {
            continue;
        }
        let Some(result) = check.run(req.operation, phase, object, old_object, view, policy) else {
            continue; // unreachable: `object` was decoded as the check's kind
        };
        let gated = gate::gate(rule, policy, result);
        append(&mut denials, gated.denials);
        append(&mut verdict.patch, gated.patch);
        append(&mut verdict.warnings, gated.warnings);
        verdict.rules.push(RuleReport {
            rule: rule.id,
            status: gated.status,
        });
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

/// The entries of a dispatch slice ([`table::judging`]) that apply to a review, as a bit per
/// entry: a `Vec` of them cost an allocation and its free on every review. A slice holds at
/// most one entry per rule, and the table has far fewer than 64 (a test checks).
#[derive(Clone, Copy)]
struct Active {
    entries: &'static [(&'static Rule, &'static Check)],
    bits: u64,
}

impl Active {
    fn of(
        entries: &'static [(&'static Rule, &'static Check)],
        mut applies: impl FnMut(&Rule) -> bool,
    ) -> Self {
        let bits = entries
            .iter()
            .enumerate()
            .filter(|(_, (rule, _))| applies(rule))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        Self { entries, bits }
    }

    fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// The applying entries, in table order.
    fn iter(self) -> impl Iterator<Item = (&'static Rule, &'static Check)> {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.bits & 1 << i != 0)
            .map(|(_, entry)| *entry)
    }
}

/// An object the rules cannot read: a 400 denial, except for rules that never deny.
fn invalid(mut verdict: Verdict, active: Active, never_denies: bool, message: String) -> Verdict {
    for (rule, _) in active.iter() {
        verdict.rules.push(RuleReport {
            rule: rule.id,
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

/// The object a body holds: read in the review's one pass, or read now (into `slot`).
fn body<'a>(
    kind: ResourceKind,
    body: Option<&'a Body>,
    slot: &'a mut Option<Object>,
    field: &str,
    req: &AdmissionRequest,
) -> Result<Option<&'a Object>, String> {
    match body {
        None => Ok(None),
        Some(Body::Read(object)) => Ok(Some(object)),
        Some(Body::Raw(raw)) => {
            let mut object = Object::decode(kind, raw.get(), format_args!("request.{field}"))?;
            req.name_object(&mut object);
            Ok(Some(slot.insert(object)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::review;
    use crate::admission::verdict::Reports;
    use crate::cluster::ClusterIndex;

    #[test]
    fn every_dispatch_slice_fits_the_active_bits() {
        for phase in [Phase::Mutating, Phase::Validating] {
            for kind in ResourceKind::ALL {
                assert!(table::judging(phase, kind).len() <= u64::BITS as usize);
            }
        }
    }

    #[test]
    fn every_dispatch_slice_fits_the_inline_reports() {
        let inline = Reports::new().inline_size();
        for phase in [Phase::Mutating, Phase::Validating] {
            for kind in ResourceKind::ALL {
                let rules = table::judging(phase, kind).len();
                assert!(rules <= inline, "{phase:?} {kind:?}: {rules} rules");
            }
        }
    }

    #[test]
    fn the_active_entries_are_those_that_apply_in_table_order() {
        let entries = table::judging(Phase::Validating, ResourceKind::Pod);
        let ids = |active: Active| active.iter().map(|(r, _)| r.id).collect::<Vec<_>>();
        assert!(Active::of(entries, |_| false).is_empty());
        let all = Active::of(entries, |_| true);
        assert_eq!(
            ids(all),
            entries.iter().map(|(r, _)| r.id).collect::<Vec<_>>()
        );
        // Every other entry: the bits follow the slice, not the rule.
        let mut n = 0;
        let alternate = Active::of(entries, |_| {
            n += 1;
            n % 2 == 1
        });
        let expected: Vec<_> = entries.iter().step_by(2).map(|(r, _)| r.id).collect();
        assert!(!expected.is_empty());
        assert_eq!(ids(alternate), expected);
    }

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
        json_patch::patch(
            &mut object,
            &crate::rules::patch::to_json_patch(&verdict.patch).unwrap(),
        )
        .unwrap();
        assert_eq!(
            object["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "east"
        );
    }
}
