//! local-volumes: a new local PersistentVolume must be usable.
//!
//! A local volume (`spec.local`, or any PV of a `kubernetes.io/no-provisioner` class) lives on
//! the nodes its `nodeAffinity` names. When no current node satisfies that affinity (a typo in
//! the hostname, a node already removed), a claim bound to the volume leaves its pod Pending
//! forever. When the volume's class binds `Immediate`, a claim is bound to some local volume
//! before its pod is scheduled, which then pins the pod to that volume's node whatever else
//! the pod needs. Both are reported as warnings at creation, naming the values and the class.
//!
//! A local PV without `nodeAffinity` is rejected by the API server itself, so it is not
//! reported again. A class annotated `storage-admission.io/allow-immediate-binding: "true"`
//! binds Immediate deliberately and is not reported. CREATE only.

use crate::cluster::ClusterView;
use crate::model::{
    NodeConstraint, NodeSelectorTerm, PersistentVolume, VolumeBindingMode, annotation_is_true, keys,
};
use crate::policy::LocalVolumesConfig;
use crate::rules::allowed_topologies::push_list;
use crate::rules::{Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult};

pub fn check(
    input: &Input<'_, PersistentVolume>,
    view: &dyn ClusterView,
    _cfg: &LocalVolumesConfig,
) -> RuleResult {
    if input.operation != Operation::Create {
        return Ok(Outcome::allow());
    }
    let pv = input.object;
    let class = match pv.spec.storage_class_name.as_deref() {
        Some(name) if !name.is_empty() => view.storage_class(name)?,
        _ => None,
    };
    let local = pv.spec.local.is_some()
        || class
            .as_ref()
            .is_some_and(|c| c.provisioner == keys::NO_PROVISIONER);
    if !local {
        return Ok(Outcome::allow());
    }
    let name = pv.metadata.display_name();
    let mut outcome = Outcome::allow();

    let terms = pv.node_selector_terms();
    if !terms.is_empty() {
        let mut reachable = false;
        for term in terms {
            if view.any_node_satisfies(&NodeConstraint::term(term))? {
                reachable = true;
                break;
            }
        }
        if !reachable {
            let wanted = terms
                .iter()
                .map(describe_term)
                .collect::<Vec<_>>()
                .join(" or ");
            // The empty topology term is satisfied by every node: this counts the nodes.
            let message = if view.count_nodes_matching_topology(&[])? == 0 {
                format!(
                    "PersistentVolume {name}: the cluster has no nodes yet, so its nodeAffinity ({wanted}) could not be checked; pods using it stay Pending until that node joins."
                )
            } else {
                format!(
                    "PersistentVolume {name} is local to {wanted}, which no current node matches: a pod using it will stay Pending. Check the node name and labels in its nodeAffinity."
                )
            };
            outcome = outcome.with_warning(message);
        }
    }

    if let Some(class) = &class
        && class.binding_mode() == VolumeBindingMode::Immediate
        && !annotation_is_true(class.metadata.annotation(keys::ALLOW_IMMEDIATE_BINDING))
    {
        let class_name = class.metadata.display_name();
        outcome = outcome.with_warning(format!(
            "PersistentVolume {name} is local, but its StorageClass {class_name} binds Immediate: a claim can get it before its pod is scheduled, pinning the pod to this node. Recreate {class_name} with volumeBindingMode: WaitForFirstConsumer."
        ));
    }
    Ok(outcome)
}

/// `kubernetes.io/hostname In [node-9] and rack In [rack1]`.
pub(crate) fn describe_term(term: &NodeSelectorTerm) -> String {
    // Written into one String (a warning on the request path builds it): a format! per
    // requirement and a join cost several allocations each.
    let mut out = String::new();
    let requirements = (term.match_expressions.iter().map(|r| (r, false)))
        .chain(term.match_fields.iter().map(|r| (r, true)));
    for (i, (r, field)) in requirements.enumerate() {
        if i > 0 {
            out.push_str(" and ");
        }
        if field {
            out.push_str("node ");
        }
        out.push_str(&r.key);
        out.push(' ');
        out.push_str(&r.operator);
        if !r.values.is_empty() {
            out.push(' ');
            push_list(&mut out, r.values.iter());
        }
    }
    out
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("local-volumes"),
    policy_key: "localVolumes",
    phases: &[Phase::Validating],
    operations: &[Operation::Create],
    checks: &[Check::PersistentVolume(For::webhook(
        |input, view, policy| check(input, view, &policy.rules.local_volumes),
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.local_volumes),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterIndex, ResourceKind};
    use crate::model::{StorageClass, VolumeBindingMode};
    use crate::testing::*;

    /// `classes` and a node per name in `hosts`, labelled with its hostname and a zone.
    fn demo(classes: Vec<StorageClass>, hosts: &[&str]) -> ClusterIndex {
        let nodes = hosts
            .iter()
            .map(|n| node(n).hostname_label().zone("cn-hangzhou-b"));
        cluster(
            classes
                .into_iter()
                .map(Into::into)
                .chain(nodes.map(Into::into)),
        )
    }

    fn local_class(mode: VolumeBindingMode) -> StorageClass {
        storage_class("local-storage")
            .provisioner(keys::NO_PROVISIONER)
            .binding_mode(mode)
    }

    use VolumeBindingMode::{Immediate, WaitForFirstConsumer};

    fn local_pv() -> PersistentVolume {
        pv("local-pv-1").local("/d")
    }

    fn run(pv: &PersistentVolume, view: &ClusterIndex, op: Operation) -> RuleResult {
        let old = (op == Operation::Update).then_some(pv);
        let input = input(op, crate::rules::Phase::Validating, pv, old);
        check(&input, view, &LocalVolumesConfig::default())
    }

    #[test]
    fn a_local_volume_on_an_existing_node_is_fine() {
        let view = demo(vec![local_class(WaitForFirstConsumer)], &["node1"]);
        let v = pv("local-pv-1")
            .local("/mnt/disks/ssd1")
            .class("local-storage")
            .on_host("node1");
        assert!(run(&v, &view, Operation::Create).unwrap().is_empty());
    }

    #[test]
    fn a_local_volume_on_an_unknown_node_is_reported_with_its_values() {
        let view = demo(vec![], &["node1"]);
        let v = pv("local-pv-1").local("/mnt/disks/ssd1").on_host("node9");
        let out = run(&v, &view, Operation::Create).unwrap();
        assert!(out.denials.is_empty());
        assert_eq!(
            out.warnings,
            [
                "PersistentVolume local-pv-1 is local to kubernetes.io/hostname In [node9], which no current node matches: a pod using it will stay Pending. Check the node name and labels in its nodeAffinity."
            ]
        );
    }

    #[test]
    fn any_term_reaching_a_node_is_enough() {
        let view = demo(vec![], &["node1"]);
        let v = local_pv().on_host("node9").node_affinity_fields(&[(
            "metadata.name",
            "In",
            &["node1"],
        )]);
        assert!(run(&v, &view, Operation::Create).unwrap().is_empty());
        let v = local_pv()
            .node_affinity_term(&[
                (keys::ZONE, "In", &["cn-hangzhou-b"]),
                ("rack", "Exists", &[]),
            ])
            .node_affinity_fields(&[("metadata.name", "In", &["node2"])]);
        let out = run(&v, &view, Operation::Create).unwrap();
        assert!(
            out.warnings[0].contains(
                "topology.kubernetes.io/zone In [cn-hangzhou-b] and rack Exists or node metadata.name In [node2]"
            ),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn no_provisioner_class_makes_a_volume_local_and_immediate_is_reported() {
        let view = demo(vec![local_class(Immediate)], &["node1"]);
        // A hostPath volume: local only because of its class.
        let v = pv("local-pv-1").class("local-storage").on_host("node1");
        let out = run(&v, &view, Operation::Create).unwrap();
        assert_eq!(
            out.warnings,
            [
                "PersistentVolume local-pv-1 is local, but its StorageClass local-storage binds Immediate: a claim can get it before its pod is scheduled, pinning the pod to this node. Recreate local-storage with volumeBindingMode: WaitForFirstConsumer."
            ]
        );
        assert!(out.warnings[0].len() < 250);
    }

    #[test]
    fn both_problems_are_reported_together() {
        let view = demo(vec![local_class(Immediate)], &["node1"]);
        let v = local_pv().class("local-storage").on_host("node9");
        assert_eq!(run(&v, &view, Operation::Create).unwrap().warnings.len(), 2);
    }

    #[test]
    fn a_class_that_opted_out_of_the_binding_rule_is_not_reported() {
        let class = local_class(Immediate).annotate(keys::ALLOW_IMMEDIATE_BINDING, "true");
        let view = demo(vec![class], &["node1"]);
        let v = local_pv().class("local-storage").on_host("node1");
        assert!(run(&v, &view, Operation::Create).unwrap().is_empty());
    }

    #[test]
    fn non_local_volumes_updates_and_missing_affinity_are_not_judged() {
        let view = demo(
            vec![storage_class("csi-disk").provisioner(DRIVER).immediate()],
            &["node1"],
        );
        let csi = pv("local-pv-1")
            .csi(DRIVER, "d-1")
            .class("csi-disk")
            .on_host("node9");
        assert!(run(&csi, &view, Operation::Create).unwrap().is_empty());
        let local = local_pv().on_host("node9");
        assert!(run(&local, &view, Operation::Update).unwrap().is_empty());
        let bare = local_pv();
        assert!(run(&bare, &view, Operation::Create).unwrap().is_empty());
        let unknown_class = local_pv().class("gone").on_host("node1");
        assert!(
            run(&unknown_class, &view, Operation::Create)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_new_cluster_without_nodes_is_said_differently() {
        let view = demo(vec![], &[]);
        let v = local_pv().on_host("node1");
        let out = run(&v, &view, Operation::Create).unwrap();
        assert!(
            out.warnings[0].contains("no nodes yet"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn unloaded_state_cannot_decide() {
        let view = ClusterIndex::unavailable("starting");
        let v = local_pv().class("local-storage").on_host("node1");
        assert_eq!(
            run(&v, &view, Operation::Create).unwrap_err().kind,
            ResourceKind::StorageClass
        );
        let v = local_pv().on_host("node1");
        assert_eq!(
            run(&v, &view, Operation::Create).unwrap_err().kind,
            ResourceKind::Node
        );
    }
}
