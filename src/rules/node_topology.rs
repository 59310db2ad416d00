//! node-topology: topology labels on Nodes, derived by policy, and the deprecated zone/region
//! labels kept in step.
//!
//! Zonal and local volumes are placed by node labels (`topology.kubernetes.io/zone`, a rack
//! label, ...). Where the cloud provider or installer does not set them, the policy's
//! `labelRules` derive them from the node's name or from a label it already has: a regular
//! expression with named captures, and label values written as templates (`${region}-${zone}`,
//! `regex::Captures::expand` semantics). Rules apply in order; a key set by an earlier rule in
//! the same review is not touched by a later one. A rule may read a label an earlier rule set.
//!
//! Then `failure-domain.beta.kubernetes.io/zone|region` and `topology.kubernetes.io/zone|region`
//! are kept in step: the GA label from the beta one (default), and optionally the reverse, for
//! old PVs whose node affinity still names the beta keys. Two that disagree are reported, never
//! changed.
//!
//! A node must always be able to register, so this rule never denies: a different existing
//! value is kept (unless the rule says `overwrite: true`) and reported; a derived value that is
//! not a valid label value is reported and not patched. Patches only add or replace labels.
//! On UPDATE a finding is reported only when the stored node did not already have it, so
//! routine node updates do not repeat the same warning.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::ClusterView;
use crate::model::labels::check_label_value;
use crate::model::{Node, keys};
use crate::policy::{LabelSource, NodeTopologyConfig};
use crate::rules::patch::Json;
use crate::rules::{Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult, patch};

/// Keep notes short enough that the API server passes them on whole.
const MAX_NOTE: usize = 240;

/// Something a person should know about a node's labels. Compared between the new and the
/// stored node, so it holds no node name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finding {
    /// The node has `key` with another value than the rule derives; the existing one is kept.
    Conflict {
        rule: String,
        key: String,
        existing: String,
        derived: String,
    },
    /// The rule's template expanded to something that is not a label value.
    Invalid {
        rule: String,
        key: String,
        why: String,
    },
    /// The GA and beta label of a pair disagree.
    Disagree {
        ga: &'static str,
        beta: &'static str,
        ga_value: String,
        beta_value: String,
    },
}

impl Finding {
    fn message(&self, node: &str) -> String {
        match self {
            Self::Conflict {
                rule,
                key,
                existing,
                derived,
            } => format!(
                "Node {node}: label {key} is {existing:?} but policy rule {rule} derives {derived:?}; kept {existing:?}. Fix the label, or set overwrite: true on the rule to replace it."
            ),
            Self::Invalid { rule, key, why } => format!(
                "Node {node}: policy rule {rule} derives an invalid value for label {key}: {why}; the label was not set. Fix the rule's pattern or template."
            ),
            Self::Disagree {
                ga,
                beta,
                ga_value,
                beta_value,
            } => format!(
                "Node {node}: labels {ga}={ga_value} and {beta}={beta_value} disagree; neither was changed. Make them equal: volumes and pods select nodes by either key."
            ),
        }
    }
}

/// The labels to write to one node, and what to report.
#[derive(Debug, Default)]
struct Plan {
    /// Keys the node does not have.
    add: BTreeMap<String, String>,
    /// Keys the node has with another value, replaced because the rule says `overwrite`.
    replace: BTreeMap<String, String>,
    findings: Vec<Finding>,
}

impl Plan {
    fn set(&mut self, labels: &mut BTreeMap<String, String>, key: &str, value: String) {
        if labels.contains_key(key) {
            self.replace.insert(key.to_owned(), value.clone());
        } else {
            self.add.insert(key.to_owned(), value.clone());
        }
        labels.insert(key.to_owned(), value);
    }
}

fn plan(node: &Node, cfg: &NodeTopologyConfig) -> Plan {
    let mut plan = Plan::default();
    // The node's labels as they will be after this review, so later rules and the deprecated
    // pairs see what earlier rules set.
    let mut labels = node.labels().clone();
    let mut claimed: BTreeSet<String> = BTreeSet::new();

    for rule in &cfg.label_rules {
        let Some(regex) = rule.regex() else { continue };
        let source = match &rule.from {
            LabelSource::NodeName => Some(node.name().to_owned()),
            LabelSource::Label(key) => labels.get(key).cloned(),
        };
        let Some(caps) = source.as_deref().and_then(|s| regex.captures(s)) else {
            continue; // a node the rule does not describe is left alone
        };
        for (key, template) in &rule.set {
            if claimed.contains(key) {
                continue;
            }
            let mut value = String::new();
            caps.expand(template, &mut value);
            let invalid = if value.is_empty() {
                Some(format!(
                    "{template:?} expands to an empty value for this node"
                ))
            } else {
                check_label_value(&value).err()
            };
            if let Some(why) = invalid {
                plan.findings.push(Finding::Invalid {
                    rule: rule.name.clone(),
                    key: key.clone(),
                    why,
                });
                continue;
            }
            claimed.insert(key.clone());
            match labels.get(key) {
                Some(existing) if *existing == value => {}
                Some(existing) if !rule.overwrite => plan.findings.push(Finding::Conflict {
                    rule: rule.name.clone(),
                    key: key.clone(),
                    existing: existing.clone(),
                    derived: value,
                }),
                _ => plan.set(&mut labels, key, value),
            }
        }
    }

    let deprecated = &cfg.deprecated_labels;
    for (ga, beta) in [
        (keys::ZONE, keys::ZONE_BETA),
        (keys::REGION, keys::REGION_BETA),
    ] {
        match (labels.get(ga).cloned(), labels.get(beta).cloned()) {
            (Some(ga_value), Some(beta_value)) if ga_value != beta_value => {
                plan.findings.push(Finding::Disagree {
                    ga,
                    beta,
                    ga_value,
                    beta_value,
                })
            }
            (None, Some(beta_value)) if deprecated.ga_from_beta => {
                plan.set(&mut labels, ga, beta_value)
            }
            (Some(ga_value), None) if deprecated.beta_from_ga => {
                plan.set(&mut labels, beta, ga_value)
            }
            _ => {}
        }
    }
    plan
}

pub fn check(
    input: &Input<'_, Node>,
    _view: &dyn ClusterView,
    cfg: &NodeTopologyConfig,
) -> RuleResult {
    if !matches!(input.operation, Operation::Create | Operation::Update) {
        return Ok(Outcome::allow());
    }
    let node = input.object;
    let name = node.metadata.display_name();
    let plan = plan(node, cfg);

    let known = match (input.operation, input.old_object) {
        (Operation::Update, Some(old)) => self::plan(old, cfg).findings,
        _ => Vec::new(),
    };
    let mut outcome = Outcome::allow();
    for finding in plan.findings.iter().filter(|f| !known.contains(f)) {
        outcome = outcome.with_warning(finding.message(&name));
    }

    let mut ops = patch::set_labels(
        &node.metadata,
        plan.add.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    ops.extend(plan.replace.iter().map(|(k, v)| {
        patch::replace(
            patch::pointer(["metadata", "labels", k.as_str()]),
            Json::string(v),
        )
    }));
    if !ops.is_empty() {
        let set: Vec<String> = plan
            .add
            .iter()
            .chain(&plan.replace)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let note = fit(
            &format!("Node {name}: topology labels set by policy: "),
            &set,
        );
        outcome = outcome.with_mutation(ops, Some(note));
    }
    Ok(outcome)
}

/// `prefix` and as many items as fit in [`MAX_NOTE`], then `+N more`.
fn fit(prefix: &str, items: &[String]) -> String {
    let mut text = prefix.to_owned();
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let rest = items.len() - i;
        if text.len() + sep.len() + item.len() + 12 > MAX_NOTE && rest > 1 {
            text.push_str(&format!("{sep}+{rest} more"));
            return text + ".";
        }
        text.push_str(sep);
        text.push_str(item);
    }
    text + "."
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("node-topology"),
    policy_key: "nodeTopology",
    phases: &[Phase::Mutating],
    operations: &[Operation::Create, Operation::Update],
    checks: &[Check::Node(For::webhook(|input, view, policy| {
        check(input, view, &policy.rules.node_topology)
    }))],
    never_denies: true,
    backfill: true,
    settings: |policy| RuleSettings::of(&policy.rules.node_topology),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::testing::policy::{CLOUD_ZONE_RULE as CLOUD, node_topology as cfg};
    use crate::testing::{self, Meta, input, labelled_node as labelled, node};

    fn run(n: &Node, old: Option<&Node>, cfg: &NodeTopologyConfig) -> Outcome {
        let view = ClusterIndex::unavailable("the rule must not read the cluster");
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        let input = input(operation, crate::rules::Phase::Mutating, n, old);
        let out = check(&input, &view, cfg).unwrap();
        assert!(out.denials.is_empty(), "the node rule never denies");
        out
    }

    fn ops(out: &Outcome) -> serde_json::Value {
        serde_json::to_value(&out.mutations[0].ops).unwrap()
    }

    /// Applies the patch like the API server would, so a broken patch fails the test.
    fn patched(n: serde_json::Value, out: &Outcome) -> serde_json::Value {
        let mut doc = n;
        for m in &out.mutations {
            json_patch::patch(
                &mut doc,
                &crate::rules::patch::to_json_patch(&m.ops).unwrap(),
            )
            .unwrap();
        }
        doc
    }

    #[test]
    fn derives_from_the_name_and_creates_the_labels_map() {
        let out = run(&node("cn-hangzhou-b-node2"), None, &cfg(CLOUD, ""));
        assert_eq!(
            ops(&out),
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {}},
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1region", "value": "cn-hangzhou"},
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}
            ])
        );
        assert_eq!(
            out.mutations[0].note.as_deref(),
            Some(
                "Node cn-hangzhou-b-node2: topology labels set by policy: topology.kubernetes.io/region=cn-hangzhou, topology.kubernetes.io/zone=cn-hangzhou-b."
            )
        );
        assert!(out.warnings.is_empty());
        let doc = patched(json!({"metadata": {"name": "cn-hangzhou-b-node2"}}), &out);
        assert_eq!(
            doc["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "cn-hangzhou-b"
        );
    }

    #[test]
    fn a_node_that_has_everything_gets_no_patch_and_no_warning() {
        let n = labelled(
            "cn-hangzhou-b-node2",
            &[
                ("topology.kubernetes.io/region", "cn-hangzhou"),
                ("topology.kubernetes.io/zone", "cn-hangzhou-b"),
            ],
        );
        assert!(run(&n, None, &cfg(CLOUD, "")).is_empty());
        assert!(run(&n, Some(&n), &cfg(CLOUD, "")).is_empty());
    }

    #[test]
    fn a_name_the_pattern_does_not_match_is_left_alone() {
        assert!(run(&node("worker-1").empty_labels(), None, &cfg(CLOUD, "")).is_empty());
    }

    #[test]
    fn an_existing_different_value_is_kept_and_reported() {
        let n = labelled(
            "cn-hangzhou-b-node2",
            &[("topology.kubernetes.io/zone", "cn-hangzhou-k")],
        );
        let out = run(&n, None, &cfg(CLOUD, ""));
        assert_eq!(
            ops(&out),
            json!([{"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1region", "value": "cn-hangzhou"}])
        );
        assert_eq!(
            out.warnings,
            [
                "Node cn-hangzhou-b-node2: label topology.kubernetes.io/zone is \"cn-hangzhou-k\" but policy rule cloud-zone derives \"cn-hangzhou-b\"; kept \"cn-hangzhou-k\". Fix the label, or set overwrite: true on the rule to replace it."
            ]
        );
        assert!(out.warnings[0].len() < 250);
    }

    #[test]
    fn overwrite_replaces_a_different_value() {
        let rules = CLOUD.replace("      set:", "      overwrite: true\n      set:");
        let n = labelled(
            "cn-hangzhou-b-node2",
            &[
                ("topology.kubernetes.io/zone", "cn-hangzhou-k"),
                ("topology.kubernetes.io/region", "cn-hangzhou"),
            ],
        );
        let out = run(&n, None, &cfg(&rules, ""));
        assert_eq!(
            ops(&out),
            json!([{"op": "replace", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}])
        );
        assert!(out.warnings.is_empty());
    }

    #[test]
    fn update_reports_only_new_conflicts() {
        let stored = labelled(
            "cn-hangzhou-b-node2",
            &[
                ("topology.kubernetes.io/zone", "cn-hangzhou-k"),
                ("topology.kubernetes.io/region", "cn-hangzhou"),
            ],
        );
        let cfg = cfg(CLOUD, "");
        assert_eq!(run(&stored, None, &cfg).warnings.len(), 1);
        assert!(
            run(&stored, Some(&stored), &cfg).is_empty(),
            "the same conflict is not repeated"
        );
        let changed = labelled(
            "cn-hangzhou-b-node2",
            &[
                ("topology.kubernetes.io/zone", "cn-hangzhou-j"),
                ("topology.kubernetes.io/region", "cn-hangzhou"),
            ],
        );
        let out = run(&changed, Some(&stored), &cfg);
        assert_eq!(out.warnings.len(), 1);
        assert!(out.warnings[0].contains("cn-hangzhou-j"));
        let fine = node("cn-hangzhou-b-node2");
        let out = run(&stored, Some(&fine), &cfg);
        assert_eq!(out.warnings.len(), 1, "a conflict the update introduces");
    }

    #[test]
    fn an_invalid_derived_value_is_reported_not_patched() {
        let rules = "
    - name: racks
      from: {label: example.com/location}
      pattern: '^(?P<row>.*)/(?P<rack>.*)$'
      set:
        rack: '${rack}'
        topology.example.com/row: '${row}'
";
        let long = "r".repeat(70);
        let n = labelled("n1", &[("example.com/location", &format!("{long}/rack12"))]);
        let out = run(&n, None, &cfg(rules, ""));
        assert_eq!(
            ops(&out),
            json!([{"op": "add", "path": "/metadata/labels/rack", "value": "rack12"}])
        );
        assert_eq!(out.warnings.len(), 1);
        let w = &out.warnings[0];
        assert!(
            w.contains("rule racks") && w.contains("topology.example.com/row") && w.contains("63"),
            "{w}"
        );
        // An empty capture is not a useful topology value either.
        let n = labelled("n1", &[("example.com/location", "/rack12")]);
        let out = run(&n, None, &cfg(rules, ""));
        assert!(out.warnings[0].contains("empty"), "{:?}", out.warnings);
        let bad = labelled("n1", &[("example.com/location", "row 3/rack12")]);
        let out = run(&bad, None, &cfg(rules, ""));
        assert!(out.warnings[0].contains("\"row 3\""), "{:?}", out.warnings);
    }

    #[test]
    fn earlier_rules_win_and_later_rules_see_their_labels() {
        let rules = "
    - name: first
      from: nodeName
      pattern: '^dc1-(?P<row>row[0-9]+)-(?P<rack>rack[0-9]+)-'
      set:
        rack: '${rack}'
        topology.example.com/row: '${row}'
    - name: second
      from: {label: rack}
      pattern: '^rack(?P<n>[0-9]+)$'
      set:
        rack: 'other'
        topology.example.com/rack-number: '${n}'
";
        let out = run(&node("dc1-row3-rack12-node4"), None, &cfg(rules, ""));
        let doc = patched(json!({"metadata": {"name": "dc1-row3-rack12-node4"}}), &out);
        assert_eq!(
            doc["metadata"]["labels"],
            json!({"rack": "rack12", "topology.example.com/row": "row3",
                "topology.example.com/rack-number": "12"})
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    #[test]
    fn ga_from_beta_by_default_and_beta_from_ga_when_asked() {
        let n = labelled(
            "old-node",
            &[
                ("failure-domain.beta.kubernetes.io/zone", "cn-hangzhou-b"),
                ("failure-domain.beta.kubernetes.io/region", "cn-hangzhou"),
            ],
        );
        let out = run(&n, None, &cfg("      []\n", ""));
        assert_eq!(
            ops(&out),
            json!([
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1region", "value": "cn-hangzhou"},
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}
            ])
        );
        let off = "    deprecatedLabels: {gaFromBeta: false}\n";
        assert!(run(&n, None, &cfg("      []\n", off)).is_empty());

        // betaFromGa applies after the label rules, so a derived zone gets its twin too.
        let both = "    deprecatedLabels: {betaFromGa: true}\n";
        let out = run(&node("cn-hangzhou-b-node2"), None, &cfg(CLOUD, both));
        let doc = patched(json!({"metadata": {"name": "cn-hangzhou-b-node2"}}), &out);
        assert_eq!(
            doc["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"],
            "cn-hangzhou-b"
        );
        assert_eq!(
            doc["metadata"]["labels"]["failure-domain.beta.kubernetes.io/region"],
            "cn-hangzhou"
        );
        let ga_only = labelled("x", &[("topology.kubernetes.io/zone", "cn-hangzhou-b")]);
        assert!(run(&ga_only, None, &cfg("      []\n", "")).is_empty());
    }

    #[test]
    fn disagreeing_pairs_are_reported_never_changed() {
        let n = labelled(
            "n1",
            &[
                ("failure-domain.beta.kubernetes.io/zone", "cn-hangzhou-a"),
                ("topology.kubernetes.io/zone", "cn-hangzhou-b"),
            ],
        );
        let both = "    deprecatedLabels: {betaFromGa: true, gaFromBeta: true}\n";
        let out = run(&n, None, &cfg("      []\n", both));
        assert!(out.mutations.is_empty());
        assert_eq!(
            out.warnings,
            [
                "Node n1: labels topology.kubernetes.io/zone=cn-hangzhou-b and failure-domain.beta.kubernetes.io/zone=cn-hangzhou-a disagree; neither was changed. Make them equal: volumes and pods select nodes by either key."
            ]
        );
        assert!(run(&n, Some(&n), &cfg("      []\n", both)).is_empty());
    }

    #[test]
    fn delete_is_not_judged() {
        let view = ClusterIndex::unavailable("x");
        let n = node("cn-hangzhou-b-node2");
        let input = input(Operation::Delete, crate::rules::Phase::Mutating, &n, None);
        assert!(check(&input, &view, &cfg(CLOUD, "")).unwrap().is_empty());
    }

    #[test]
    fn long_notes_are_cut() {
        let items: Vec<String> = (0..20)
            .map(|i| format!("example.com/key{i}=value{i}"))
            .collect();
        let note = fit("Node n: topology labels set by policy: ", &items);
        assert!(note.len() <= MAX_NOTE, "{}", note.len());
        assert!(note.ends_with("more."), "{note}");
        assert_eq!(fit("p: ", &items[..1]), "p: example.com/key0=value0.");
    }

    fn example(path: &str) -> NodeTopologyConfig {
        testing::policy::example(path).rules.node_topology
    }

    #[test]
    fn cloud_example_policy_labels_a_hangzhou_node() {
        let cfg = example("policies/examples/cloud-region-zone.yaml");
        let out = run(&node("cn-hangzhou-b-node2").empty_labels(), None, &cfg);
        let doc = patched(
            json!({"metadata": {"name": "cn-hangzhou-b-node2", "labels": {}}}),
            &out,
        );
        assert_eq!(
            doc["metadata"]["labels"]["topology.kubernetes.io/region"],
            "cn-hangzhou"
        );
        assert_eq!(
            doc["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "cn-hangzhou-b"
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    #[test]
    fn onprem_example_policy_labels_racks_and_rows() {
        let cfg = example("policies/examples/onprem-racks.yaml");
        let out = run(&node("dc1-row3-rack12-node4"), None, &cfg);
        let doc = patched(json!({"metadata": {"name": "dc1-row3-rack12-node4"}}), &out);
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["topology.kubernetes.io/region"], "dc1");
        assert_eq!(labels["topology.kubernetes.io/zone"], "dc1-row3");
        assert_eq!(labels["topology.example.com/row"], "row3");
        assert_eq!(labels["rack"], "rack12");
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }
}
