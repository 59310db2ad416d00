//! Node backfill: nodes that registered before the webhook existed, or while it was down
//! (its failurePolicy for nodes is `Ignore`), get the topology labels the policy derives.
//!
//! The decision is [`crate::rules::node_topology::check`], the function the mutating webhook calls,
//! asked about the cached node as an UPDATE whose old object is the node itself: the patch
//! it returns is exactly what the webhook would add on the node's next update. A node the
//! rule has nothing to add to is left alone (no API call). Only `mode: enforce` patches, as in
//! the webhook, where `warn` only says what it would have done.
//!
//! Each patch starts with a JSON-patch `test` of the cached `resourceVersion`: the cache may
//! be a little behind, and an `add /metadata/labels {}` computed from a stale, label-less node
//! would otherwise wipe labels set since. A node that changed meanwhile fails the test (422),
//! is counted as a conflict and is planned again from fresh cache on the next pass.

use std::sync::Arc;
use std::time::Duration;

use json_patch::{PatchOperation, TestOperation};
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::{Context, Error, Scope};
use crate::cluster::ClusterView;
use crate::identity::FIELD_MANAGER;
use crate::metrics::ResultLabels;
use crate::model::Node;
use crate::policy::{Policy, UserInfo};
use crate::rules::kinds::Judged as _;
use crate::rules::{For, Operation, Phase, RULES, Rule, gate, patch};

/// The labels one node is missing, as the JSON patch that adds them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePatch {
    pub node: String,
    pub ops: Vec<PatchOperation>,
    /// What the patch sets, for the log (`key=value`, from the rule's note).
    pub note: String,
}

/// Which nodes need which patch: pure, no API. Sorted by node name, so passes are repeatable.
/// Every rule of the table marked `backfill` is asked about each node, as an UPDATE whose
/// old object is the node itself; [`gate`] keeps its patch only in `mode: enforce`.
pub fn plan(
    nodes: &[Arc<Node>],
    view: &dyn ClusterView,
    policy: &Policy,
    scope: &Scope,
) -> Vec<NodePatch> {
    let nobody = UserInfo::default();
    let rules: Vec<(&Rule, &For<Node>)> = RULES
        .iter()
        .filter(|rule| rule.backfill && gate::applies(rule, policy, &nobody, None))
        .filter_map(|rule| Some((*rule, rule.checks.iter().find_map(Node::check)?)))
        .collect();
    if rules.is_empty() {
        return Vec::new();
    }
    let mut patches: Vec<NodePatch> = nodes
        .iter()
        .filter(|node| !scope.skips(&node.metadata))
        .filter_map(|node| {
            let input = For::existing(node.as_ref(), Phase::Mutating, Operation::Update);
            let mut ops: Vec<PatchOperation> = Vec::new();
            let mut notes = Vec::new();
            for (rule, check) in &rules {
                let gated = gate::gate(rule, policy, (check.check)(&input, view, policy));
                // A rule that cannot decide leaves the node alone this pass.
                if gated.undecided || gated.patch.is_empty() {
                    continue;
                }
                // Valid JSON by construction (patch::Json); should that ever break, the node
                // is left alone and the log says why, rather than half a patch sent.
                let patch = match patch::to_json_patch(&gated.patch) {
                    Ok(patch) => patch,
                    Err(error) => {
                        tracing::error!(node = %node.metadata.name, rule = %rule.id, %error, "a rule's patch is not valid JSON; not applied");
                        return None;
                    }
                };
                notes.extend_from_slice(gated.notes());
                ops.extend(patch);
            }
            if ops.is_empty() {
                return None;
            }
            if let Some(rv) = node.metadata.resource_version.as_deref() {
                ops.insert(
                    0,
                    PatchOperation::Test(TestOperation {
                        path: patch::pointer(["metadata", "resourceVersion"]).into_owned(),
                        value: Value::String(rv.to_owned()),
                    }),
                );
            }
            Some(NodePatch {
                node: node.metadata.name.clone(),
                ops,
                note: notes.join(" "),
            })
        })
        .collect();
    patches.sort_by(|a, b| a.node.cmp(&b.node));
    patches
}

/// At most `per_second` patches a second, evenly spaced: a fleet of unlabelled nodes must not
/// turn into a burst of writes to the API server (every node patch is also a watch event for
/// every node watcher in the cluster). Uses tokio's clock, so tests can pause it.
pub struct RateLimiter {
    ticker: tokio::time::Interval,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let period = Duration::from_secs(1) / per_second.max(1);
        let mut ticker = tokio::time::interval(period);
        // After an idle spell, do not make up for lost ticks with a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { ticker }
    }

    /// Waits for the next permit.
    pub async fn acquire(&mut self) {
        self.ticker.tick().await;
    }
}

/// How one patch ended (a bounded metric label).
fn result_label(result: &Result<(), Error>) -> &'static str {
    match result {
        Ok(()) => "applied",
        Err(Error::PatchNode { source, .. }) => match source {
            kube::Error::Api(status) if status.is_invalid() || status.is_conflict() => "conflict",
            kube::Error::Api(status) if status.is_not_found() => "not_found",
            _ => "error",
        },
        Err(_) => "error",
    }
}

/// Sends one node's patch.
pub async fn apply(api: &Api<KubeNode>, patch: &NodePatch) -> Result<(), Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(
        &patch.node,
        &params,
        &Patch::<()>::Json(json_patch::Patch(patch.ops.clone())),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::PatchNode {
        node: patch.node.clone(),
        source,
    })
}

/// One backfill pass over the node cache. Returns `false` when the node cache could not be
/// read (not synced yet), so the caller retries soon instead of waiting a full resync.
pub async fn run_pass(ctx: &Context, policy: &Policy, limiter: &mut RateLimiter) -> bool {
    let nodes = match ctx.index.nodes.scan(|it| it.cloned().collect::<Vec<_>>()) {
        Ok(nodes) => nodes,
        Err(unavailable) => {
            tracing::debug!(%unavailable, "backfill waits for the node cache");
            return false;
        }
    };
    let patches = plan(&nodes, ctx.index.as_ref(), policy, &ctx.config.scope);
    ctx.metrics
        .backfill_pending_nodes
        .set(i64::try_from(patches.len()).unwrap_or(i64::MAX));
    if patches.is_empty() {
        return true;
    }
    tracing::info!(nodes = patches.len(), "backfilling node topology labels");
    let api: Api<KubeNode> = Api::all(ctx.client.clone());
    for patch in &patches {
        limiter.acquire().await;
        let result = apply(&api, patch).await;
        let label = result_label(&result);
        match &result {
            Ok(()) => {
                tracing::info!(node = %patch.node, labels = %patch.note, "node labels backfilled")
            }
            Err(error) if label == "error" => {
                tracing::warn!(node = %patch.node, %error, "node label backfill failed; retrying next pass")
            }
            Err(error) => {
                tracing::debug!(node = %patch.node, %error, "node changed or went away; planned again next pass")
            }
        }
        ctx.metrics
            .backfill_patches
            .get_or_create(&ResultLabels { result: label })
            .inc();
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::ClusterIndex;

    use crate::testing::policy::CLOUD_POLICY;
    use crate::testing::{Meta as _, labelled_node};

    fn node(name: &str, rv: Option<&str>, labels: &[(&str, &str)]) -> Arc<Node> {
        let node = labelled_node(name, labels);
        Arc::new(match rv {
            Some(rv) => node.resource_version(rv),
            None => node,
        })
    }

    fn plan_for(nodes: &[Arc<Node>], policy: &str) -> Vec<NodePatch> {
        let view = ClusterIndex::unavailable("the node rule must not read the cluster");
        plan(
            nodes,
            &view,
            &Policy::parse(policy).unwrap(),
            &Scope::default(),
        )
    }

    #[test]
    fn only_missing_labels_are_patched_and_complete_nodes_are_skipped() {
        let nodes = [
            node(
                "cn-hangzhou-b-node2",
                Some("42"),
                &[("topology.kubernetes.io/region", "cn-hangzhou")],
            ),
            node(
                "cn-hangzhou-b-node1",
                Some("7"),
                &[
                    ("topology.kubernetes.io/region", "cn-hangzhou"),
                    ("topology.kubernetes.io/zone", "cn-hangzhou-b"),
                ],
            ),
            node("unrelated-name", None, &[]),
        ];
        let patches = plan_for(&nodes, CLOUD_POLICY);
        assert_eq!(patches.len(), 1, "{patches:?}");
        assert_eq!(patches[0].node, "cn-hangzhou-b-node2");
        assert_eq!(
            serde_json::to_value(&patches[0].ops).unwrap(),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}
            ])
        );
        assert!(
            patches[0]
                .note
                .contains("topology.kubernetes.io/zone=cn-hangzhou-b")
        );
    }

    #[test]
    fn the_same_function_as_the_webhook_keeps_beta_labels_in_step() {
        // The built-in policy has no label rules but derives GA labels from beta ones.
        let nodes = [node(
            "n1",
            None,
            &[("failure-domain.beta.kubernetes.io/zone", "z1")],
        )];
        let patches = plan_for(
            &nodes,
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n",
        );
        assert_eq!(
            serde_json::to_value(&patches[0].ops).unwrap(),
            json!([{"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "z1"}])
        );
    }

    #[test]
    fn warn_and_off_modes_and_ignored_nodes_get_no_patch() {
        let nodes = [node("cn-hangzhou-b-node2", None, &[])];
        for mode in ["warn", "off"] {
            let policy = CLOUD_POLICY.replace(
                "  nodeTopology:\n",
                &format!("  nodeTopology:\n    mode: {mode}\n"),
            );
            assert!(plan_for(&nodes, &policy).is_empty(), "mode {mode}");
        }
        let ignored = [node(
            "cn-hangzhou-b-node2",
            None,
            &[("storage-admission.io/ignore", "true")],
        )];
        assert!(plan_for(&ignored, CLOUD_POLICY).is_empty());
    }

    #[test]
    fn a_patch_applies_cleanly_to_the_node_it_was_planned_from() {
        let raw = json!({"metadata": {"name": "cn-hangzhou-c-x", "resourceVersion": "5", "labels": {"a": "b"}}});
        let nodes = [Arc::new(
            serde_json::from_value::<Node>(raw.clone()).unwrap(),
        )];
        let patches = plan_for(&nodes, CLOUD_POLICY);
        let mut doc = raw.clone();
        json_patch::patch(&mut doc, &patches[0].ops).unwrap();
        assert_eq!(
            doc["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "cn-hangzhou-c"
        );
        assert_eq!(doc["metadata"]["labels"]["a"], "b");
        // The node changed since it was cached: the test op fails instead of clobbering.
        let mut newer = raw;
        newer["metadata"]["resourceVersion"] = json!("6");
        assert!(json_patch::patch(&mut newer, &patches[0].ops).is_err());
    }
}
