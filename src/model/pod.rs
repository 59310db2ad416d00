//! core/v1 Pod, as slim as the pinned-pods rule allows.
//!
//! Pods are the most numerous and the largest objects a cluster writes (containers, env,
//! probes, `managedFields`), and every Pod CREATE with a claim passes through the webhook. The
//! model reads only `spec.nodeName`, the volumes' claims, `spec.nodeSelector`, the required
//! node affinity and `status.phase`; everything else is skipped by serde while parsing
//! (`IgnoredAny`: nothing is allocated for it), so a 50 KB pod costs little more than a 3 KB one.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::meta::{ObjectMeta, null_as_default};
use super::storage::NodeSelector;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct Pod {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<PodVolume>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub node_selector: BTreeMap<String, String>,
    /// `None` when the pod has no `affinity` (a patch must then create it).
    #[serde(default)]
    pub affinity: Option<Affinity>,
}

/// One volume; only the two kinds that name a claim are read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PodVolume {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub persistent_volume_claim: Option<ClaimSource>,
    #[serde(default)]
    pub ephemeral: Option<EphemeralSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct ClaimSource {
    #[serde(default, deserialize_with = "null_as_default")]
    pub claim_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct EphemeralSource {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_claim_template: ClaimTemplate,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct ClaimTemplate {
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: ClaimTemplateSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct ClaimTemplateSpec {
    /// `None`: the cluster's default class; `Some("")`: no class.
    #[serde(default)]
    pub storage_class_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    /// `None` when absent; pod (anti-)affinity is not read.
    #[serde(default)]
    pub node_affinity: Option<NodeAffinity>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct NodeAffinity {
    /// `None` when absent; preferred terms are not read.
    #[serde(default, rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    pub required: Option<NodeSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
}

/// Where a volume's claim comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeClaim<'a> {
    /// `persistentVolumeClaim.claimName`.
    Named(&'a str),
    /// A generic ephemeral volume: the claim `<pod>-<volume>`, created from the template
    /// (whose class is `class`) once the pod exists.
    Ephemeral { class: Option<&'a str> },
}

impl Pod {
    /// `spec.nodeName`, when set.
    pub fn node_name(&self) -> Option<&str> {
        self.spec.node_name.as_deref().filter(|n| !n.is_empty())
    }

    pub fn is_pending(&self) -> bool {
        self.status.phase.as_deref() == Some("Pending")
    }

    /// The required node-affinity terms (ORed), empty when there are none.
    pub fn required_terms(&self) -> &[super::NodeSelectorTerm] {
        self.spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required.as_ref())
            .map(|r| r.node_selector_terms.as_slice())
            .unwrap_or_default()
    }

    /// Every volume that uses a claim, with the claim's name (`<pod>-<volume>` for an
    /// ephemeral volume) and where it comes from.
    pub fn claims(&self) -> impl Iterator<Item = (String, VolumeClaim<'_>)> {
        self.spec.volumes.iter().filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some((c.claim_name.clone(), VolumeClaim::Named(&c.claim_name)))
            } else {
                v.ephemeral.as_ref().map(|e| {
                    (
                        format!("{}-{}", self.metadata.name, v.name),
                        VolumeClaim::Ephemeral {
                            class: e.volume_claim_template.spec.storage_class_name.as_deref(),
                        },
                    )
                })
            }
        })
    }
}

crate::model::map_only!(
    Pod,
    PodSpec,
    PodVolume,
    ClaimSource,
    EphemeralSource,
    ClaimTemplate,
    ClaimTemplateSpec,
    Affinity,
    NodeAffinity,
    PodStatus
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claims_node_and_affinity_and_skips_the_rest() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"web","namespace":"default","managedFields":[{"manager":"x"}]},
                "spec":{"nodeName":"n1","containers":[{"name":"c","env":[{"name":"A","value":"1"}]}],
                        "volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"pvc-a"}},
                                   {"name":"scratch","ephemeral":{"volumeClaimTemplate":{"spec":{"storageClassName":"fast"}}}},
                                   {"name":"tmp","emptyDir":{}}],
                        "nodeSelector":{"disk":"ssd"},
                        "affinity":{"podAntiAffinity":{},"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[],
                          "requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["b"]}]}]}}}},
                "status":{"phase":"Pending","conditions":[]}}"#,
        )
        .unwrap();
        assert_eq!(pod.node_name(), Some("n1"));
        assert!(pod.is_pending());
        assert_eq!(pod.spec.node_selector["disk"], "ssd");
        assert_eq!(pod.required_terms()[0].match_expressions[0].key, "zone");
        let claims: Vec<_> = pod.claims().collect();
        assert_eq!(
            claims,
            [
                ("pvc-a".to_owned(), VolumeClaim::Named("pvc-a")),
                (
                    "web-scratch".to_owned(),
                    VolumeClaim::Ephemeral {
                        class: Some("fast")
                    }
                ),
            ]
        );
    }

    #[test]
    fn nulls_and_absent_fields_read_as_empty() {
        let pod: Pod = serde_json::from_str(
            r#"{"spec":{"nodeName":"","volumes":null,"affinity":null},"status":null}"#,
        )
        .unwrap();
        assert_eq!(pod.node_name(), None);
        assert!(pod.required_terms().is_empty() && pod.claims().next().is_none());
        assert!(serde_json::from_str::<Pod>(r#"{"spec":{"volumes":[["x"]]}}"#).is_err());
    }
}
