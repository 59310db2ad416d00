//! allowed-topologies: warn when a new StorageClass's `allowedTopologies` selects no node the
//! cluster has now.
//!
//! The scheduler only places a pod whose claim uses the class on nodes that satisfy one of the
//! class's topology terms. A class that allows only `cn-hangzhou-d` in a cluster whose nodes
//! are all in `cn-hangzhou-b` is accepted by the API server, and every pod using it stays
//! Pending. The rule names the key, the allowed values and the values the nodes actually have,
//! so a typo or a wrong zone is fixed at `kubectl apply`.
//!
//! It only ever warns: a node group that scales from zero can make "no node now" legitimate.
//! A cluster with no nodes at all (being built) gets a softer note instead of a mismatch.
//! CREATE only: `allowedTopologies` is immutable.

use crate::cluster::ClusterView;
use crate::model::{StorageClass, TopologyRequirement};
use crate::policy::AllowedTopologiesConfig;
use crate::rules::{Audited, Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult};

/// At most this many values are listed in a message; warnings must stay short.
const MAX_VALUES: usize = 5;

pub fn check(
    input: &Input<'_, StorageClass>,
    view: &dyn ClusterView,
    _cfg: &AllowedTopologiesConfig,
) -> RuleResult {
    if input.operation != Operation::Create {
        return Ok(Outcome::allow());
    }
    let sc = input.object;
    // A term without expressions is rejected by API validation; it selects nothing to judge.
    let terms: Vec<&[TopologyRequirement]> = sc
        .allowed_topologies
        .iter()
        .map(|t| t.match_label_expressions.as_slice())
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return Ok(Outcome::allow());
    }
    for term in &terms {
        if view.count_nodes_matching_topology(term)? > 0 {
            return Ok(Outcome::allow());
        }
    }
    let name = sc.metadata.display_name();
    // The message is written into one String, piece by piece: it is made for every such
    // class created, and a format! or join per piece was half the rule's cost.
    let mut wanted = String::with_capacity(64);
    for (i, t) in terms.iter().enumerate() {
        if i > 0 {
            wanted.push_str(" or ");
        }
        // Parenthesised so "a or (b and c)" cannot be misread.
        let paren = terms.len() > 1 && t.len() > 1;
        if paren {
            wanted.push('(');
        }
        push_term(&mut wanted, t);
        if paren {
            wanted.push(')');
        }
    }
    // The empty term is satisfied by every node: this counts the cluster's nodes.
    if view.count_nodes_matching_topology(&[])? == 0 {
        return Ok(Outcome::warn(format!(
            "StorageClass {name}: the cluster has no nodes yet, so allowedTopologies ({wanted}) could not be checked; pods using it stay Pending until such nodes join."
        )));
    }
    let mut keys: Vec<&str> = terms
        .iter()
        .flat_map(|t| t.iter())
        .map(|r| r.key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut message = String::with_capacity(256);
    message.push_str("StorageClass ");
    message.push_str(&name);
    message.push_str(" matches no current node, so pods using it will stay Pending: it allows ");
    message.push_str(&wanted);
    message.push_str("; ");
    let mut absent = Vec::new();
    let mut present = 0;
    for key in &keys {
        let values = view.node_label_values(key)?;
        if values.is_empty() {
            absent.push(*key);
            continue;
        }
        message.push_str(if present == 0 { "nodes have " } else { " and " });
        present += 1;
        if keys.len() > 1 {
            message.push_str(key);
            message.push(' ');
        }
        push_list(&mut message, values.iter().map(|(value, _)| value));
    }
    if !absent.is_empty() {
        if present > 0 {
            message.push_str(", ");
        }
        message.push_str("no node has ");
        message.push_str(&absent.join(" or "));
    }
    message.push_str(". Fix allowedTopologies or add such nodes.");
    Ok(Outcome::warn(message))
}

/// `topology.kubernetes.io/zone in [cn-hangzhou-d]`, requirements joined by "and".
pub(crate) fn describe_term(term: &[TopologyRequirement]) -> String {
    let mut out = String::new();
    push_term(&mut out, term);
    out
}

/// [`describe_term`], written at the end of `out`.
fn push_term(out: &mut String, term: &[TopologyRequirement]) {
    for (i, r) in term.iter().enumerate() {
        if i > 0 {
            out.push_str(" and ");
        }
        out.push_str(&r.key);
        out.push_str(" in ");
        push_list(out, r.values.iter());
    }
}

/// `[a, b, c, d, e, +3 more]`, written at the end of `out`: messages are built in one String,
/// not from a format! per piece (each allocates, and grows from nothing).
pub(crate) fn push_list<'a>(out: &mut String, values: impl ExactSizeIterator<Item = &'a String>) {
    let total = values.len();
    out.push('[');
    for (i, value) in values.take(MAX_VALUES).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(value);
    }
    if total > MAX_VALUES {
        out.push_str(", +");
        out.push_str(&(total - MAX_VALUES).to_string());
        out.push_str(" more");
    }
    out.push(']');
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("allowed-topologies"),
    policy_key: "allowedTopologies",
    phases: &[Phase::Validating],
    operations: &[Operation::Create],
    checks: &[Check::StorageClass(For::audited(
        |input, view, policy| check(input, view, &policy.rules.allowed_topologies),
        // Every class: allowedTopologies that match no node.
        Audited {
            select: |_| true,
            phase: Phase::Validating,
            operation: Operation::Create,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.allowed_topologies),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterIndex, ResourceKind};
    use crate::model::{Node, keys};
    use crate::testing::*;

    fn nodes(nodes: Vec<Node>) -> ClusterIndex {
        cluster(nodes.into_iter().map(Into::into))
    }

    /// csi-disk-topology, WaitForFirstConsumer, with these `allowedTopologies` terms.
    fn class(terms: &[&[(&str, &[&str])]]) -> StorageClass {
        terms.iter().fold(
            storage_class("csi-disk-topology")
                .provisioner(DRIVER)
                .wait_for_first_consumer(),
            |sc, term| sc.allowed_topology(term),
        )
    }

    const ZONE: &str = keys::ZONE;

    fn run(sc: &StorageClass, view: &ClusterIndex, op: Operation) -> RuleResult {
        let old = (op == Operation::Update).then_some(sc);
        let input = input(op, crate::rules::Phase::Validating, sc, old);
        check(&input, view, &AllowedTopologiesConfig::default())
    }

    fn two_nodes_in_b() -> ClusterIndex {
        nodes(vec![
            node("n1").zone("cn-hangzhou-b").label("rack", "rack1"),
            node("n2").zone("cn-hangzhou-b").label("rack", "rack1"),
        ])
    }

    #[test]
    fn zone_no_node_has_names_key_allowed_and_actual_values() {
        let sc = class(&[&[(ZONE, &["cn-hangzhou-d"])]]);
        let out = run(&sc, &two_nodes_in_b(), Operation::Create).unwrap();
        assert!(out.denials.is_empty() && out.mutations.is_empty());
        assert_eq!(
            out.warnings,
            [
                "StorageClass csi-disk-topology matches no current node, so pods using it will stay Pending: it allows topology.kubernetes.io/zone in [cn-hangzhou-d]; nodes have [cn-hangzhou-b]. Fix allowedTopologies or add such nodes."
            ]
        );
        assert!(out.warnings[0].len() < 250);
    }

    #[test]
    fn any_matching_term_is_enough() {
        let sc = class(&[&[(ZONE, &["cn-hangzhou-d"])], &[(ZONE, &["cn-hangzhou-b"])]]);
        assert!(
            run(&sc, &two_nodes_in_b(), Operation::Create)
                .unwrap()
                .is_empty()
        );
        let sc = class(&[&[(ZONE, &["cn-hangzhou-d", "cn-hangzhou-b"])]]);
        assert!(
            run(&sc, &two_nodes_in_b(), Operation::Create)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn every_requirement_of_a_term_must_hold_on_one_node() {
        let sc = class(&[&[(ZONE, &["cn-hangzhou-b"]), ("rack", &["rack9"])]]);
        let out = run(&sc, &two_nodes_in_b(), Operation::Create).unwrap();
        let w = &out.warnings[0];
        assert!(
            w.contains("topology.kubernetes.io/zone in [cn-hangzhou-b] and rack in [rack9]"),
            "{w}"
        );
        assert!(
            w.contains(
                "; nodes have rack [rack1] and topology.kubernetes.io/zone [cn-hangzhou-b]."
            ),
            "{w}"
        );
    }

    #[test]
    fn a_key_no_node_has_is_said_so() {
        let sc = class(&[&[("topology.example.com/row", &["row3"])]]);
        let out = run(&sc, &two_nodes_in_b(), Operation::Create).unwrap();
        assert!(
            out.warnings[0].contains("; no node has topology.example.com/row."),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn several_terms_are_grouped_and_missing_keys_listed_apart() {
        let sc = class(&[
            &[(ZONE, &["cn-hangzhou-d"])],
            &[
                (ZONE, &["cn-hangzhou-b"]),
                ("topology.example.com/row", &["row3"]),
            ],
        ]);
        let out = run(&sc, &two_nodes_in_b(), Operation::Create).unwrap();
        assert_eq!(
            out.warnings,
            [
                "StorageClass csi-disk-topology matches no current node, so pods using it will stay Pending: it allows topology.kubernetes.io/zone in [cn-hangzhou-d] or (topology.kubernetes.io/zone in [cn-hangzhou-b] and topology.example.com/row in [row3]); nodes have topology.kubernetes.io/zone [cn-hangzhou-b], no node has topology.example.com/row. Fix allowedTopologies or add such nodes."
            ]
        );
    }

    #[test]
    fn a_new_cluster_without_nodes_is_not_a_mismatch() {
        let sc = class(&[&[(ZONE, &["cn-hangzhou-d"])]]);
        let out = run(&sc, &nodes(vec![]), Operation::Create).unwrap();
        assert_eq!(out.warnings.len(), 1);
        assert!(
            out.warnings[0].contains("has no nodes yet"),
            "{:?}",
            out.warnings
        );
        assert!(!out.warnings[0].contains("nodes have"));
    }

    #[test]
    fn no_topologies_updates_and_empty_terms_are_not_judged() {
        let view = two_nodes_in_b();
        assert!(
            run(&class(&[]), &view, Operation::Create)
                .unwrap()
                .is_empty()
        );
        assert!(
            run(&class(&[&[]]), &view, Operation::Create)
                .unwrap()
                .is_empty()
        );
        let sc = class(&[&[(ZONE, &["cn-hangzhou-d"])]]);
        assert!(run(&sc, &view, Operation::Update).unwrap().is_empty());
    }

    #[test]
    fn unloaded_nodes_cannot_decide() {
        let sc = class(&[&[(ZONE, &["cn-hangzhou-d"])]]);
        let err = run(
            &sc,
            &ClusterIndex::unavailable("starting"),
            Operation::Create,
        )
        .unwrap_err();
        assert_eq!(err.kind, ResourceKind::Node);
    }

    #[test]
    fn long_value_lists_are_cut() {
        let values: Vec<String> = (1..=8).map(|i| format!("z{i}")).collect();
        let list = |values: &[String]| {
            let mut out = String::new();
            push_list(&mut out, values.iter());
            out
        };
        assert_eq!(list(&values), "[z1, z2, z3, z4, z5, +3 more]");
        assert_eq!(list(&values[..2]), "[z1, z2]");
    }
}
