//! `groupsnapshot.storage.k8s.io` objects, as the external-snapshotter CRDs define them.
//!
//! The `spec` fields the rules read are the same in every served version (`v1beta1`,
//! `v1beta2`, `v1`); only the content's `status` lists differ, and no rule reads them. One
//! model therefore reads an object of any version, and a patch written against it (e.g.
//! `/spec/volumeGroupSnapshotClassName`) is right in whichever version the object arrived.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::meta::{ObjectMeta, null_as_default};
use super::snapshot::{SnapshotError, VolumeSnapshotRef};
use super::{annotation_is_true, keys};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotClass {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub driver: String,
    #[serde(default)]
    pub deletion_policy: Option<String>,
}

impl VolumeGroupSnapshotClass {
    /// Whether the class carries `groupsnapshot.storage.kubernetes.io/is-default-class: "true"`.
    pub fn is_default(&self) -> bool {
        annotation_is_true(self.metadata.annotation(keys::DEFAULT_GROUP_SNAPSHOT_CLASS))
    }

    /// A default that counts: marked default and not being deleted (the snapshot controller
    /// does not pick a class on its way out).
    pub fn is_live_default(&self) -> bool {
        self.is_default() && !self.metadata.is_being_deleted()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshot {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: VolumeGroupSnapshotSpec,
    #[serde(default)]
    pub status: Option<VolumeGroupSnapshotStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: VolumeGroupSnapshotSource,
    /// `Some("")` is kept apart from `None`: the CRD forbids the empty string.
    #[serde(default)]
    pub volume_group_snapshot_class_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotSource {
    /// The claims to snapshot, in the group snapshot's namespace.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// A pre-provisioned group snapshot.
    #[serde(default)]
    pub volume_group_snapshot_content_name: Option<String>,
}

/// A `metav1.LabelSelector`: `matchLabels` and `matchExpressions`, ANDed. An empty selector
/// matches everything (as upstream's `LabelSelectorAsSelector` makes it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    #[serde(default, deserialize_with = "null_as_default")]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub operator: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

impl LabelSelectorRequirement {
    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key));
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.contains(v)),
            "NotIn" => value.is_none_or(|v| !self.values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // The API server rejects other operators; a selector with one selects nothing.
            _ => false,
        }
    }
}

impl LabelSelector {
    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// `group=db, tier in (a,b), !legacy`, as `kubectl get -l` takes it.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            let values = r.values.join(",");
            parts.push(match r.operator.as_str() {
                "In" => format!("{} in ({values})", r.key),
                "NotIn" => format!("{} notin ({values})", r.key),
                "Exists" => r.key.clone(),
                "DoesNotExist" => format!("!{}", r.key),
                other => format!("{} {other} ({values})", r.key),
            });
        }
        parts.join(",")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotStatus {
    #[serde(default)]
    pub bound_volume_group_snapshot_content_name: Option<String>,
    #[serde(default)]
    pub ready_to_use: Option<bool>,
    #[serde(default)]
    pub error: Option<SnapshotError>,
}

impl VolumeGroupSnapshot {
    pub fn ready_to_use(&self) -> bool {
        self.status.as_ref().and_then(|s| s.ready_to_use) == Some(true)
    }

    /// `status.error.message`, when the group reports one.
    pub fn error_message(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.error.as_ref())
            .and_then(|e| e.message.as_deref())
            .filter(|m| !m.is_empty())
    }

    pub fn bound_content_name(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.bound_volume_group_snapshot_content_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContent {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: VolumeGroupSnapshotContentSpec,
    /// Only the fields every version has (`explain` quotes the error).
    #[serde(default)]
    pub status: Option<VolumeGroupSnapshotStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContentSpec {
    #[serde(default)]
    pub deletion_policy: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: VolumeGroupSnapshotContentSource,
    #[serde(default)]
    pub volume_group_snapshot_class_name: Option<String>,
    /// The same shape as a VolumeSnapshotContent's `volumeSnapshotRef`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_group_snapshot_ref: VolumeSnapshotRef,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContentSource {
    /// Volumes the driver snapshots together (dynamic provisioning by the controller).
    #[serde(default)]
    pub volume_handles: Option<Vec<String>>,
    /// An existing group snapshot in the storage system (pre-provisioned).
    #[serde(default)]
    pub group_snapshot_handles: Option<GroupSnapshotHandles>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshotHandles {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_group_snapshot_handle: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_snapshot_handles: Vec<String>,
}

crate::model::map_only!(
    VolumeGroupSnapshotClass,
    VolumeGroupSnapshot,
    VolumeGroupSnapshotSpec,
    VolumeGroupSnapshotSource,
    LabelSelector,
    LabelSelectorRequirement,
    VolumeGroupSnapshotStatus,
    VolumeGroupSnapshotContent,
    VolumeGroupSnapshotContentSpec,
    VolumeGroupSnapshotContentSource,
    GroupSnapshotHandles
);

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_each_version_alike_and_matches_selectors() {
        for version in ["v1beta1", "v1beta2", "v1"] {
            let g: VolumeGroupSnapshot = serde_json::from_str(&format!(
                r#"{{"apiVersion":"groupsnapshot.storage.k8s.io/{version}","kind":"VolumeGroupSnapshot",
                    "metadata":{{"name":"g","namespace":"default"}},
                    "spec":{{"source":{{"selector":{{"matchLabels":{{"group":"db"}},
                      "matchExpressions":[{{"key":"tier","operator":"NotIn","values":["cache"]}}]}}}}}},
                    "status":{{"readyToUse":false,"error":{{"message":"boom"}}}}}}"#
            ))
            .unwrap();
            let sel = g.spec.source.selector.as_ref().unwrap();
            assert!(sel.matches(Some(&labels(&[("group", "db")]))));
            assert!(!sel.matches(Some(&labels(&[("group", "db"), ("tier", "cache")]))));
            assert!(!sel.matches(None));
            assert_eq!(sel.describe(), "group=db,tier notin (cache)");
            assert_eq!(g.error_message(), Some("boom"));
        }
        assert!(LabelSelector::default().matches(None), "empty selects all");
        let content: VolumeGroupSnapshotContent = serde_json::from_str(
            r#"{"spec":{"driver":"d","source":{"groupSnapshotHandles":{"volumeGroupSnapshotHandle":"h","volumeSnapshotHandles":["a"]}},
                "volumeGroupSnapshotRef":{"name":"g","namespace":"default"}}}"#,
        )
        .unwrap();
        assert_eq!(
            content
                .spec
                .source
                .group_snapshot_handles
                .unwrap()
                .volume_snapshot_handles,
            ["a"]
        );
    }

    #[test]
    fn operators() {
        let req = |op: &str, values: &[&str]| LabelSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let with = labels(&[("k", "a")]);
        assert!(req("In", &["a", "b"]).matches(Some(&with)));
        assert!(!req("In", &["b"]).matches(Some(&with)));
        assert!(req("Exists", &[]).matches(Some(&with)));
        assert!(!req("DoesNotExist", &[]).matches(Some(&with)));
        assert!(req("DoesNotExist", &[]).matches(None));
        assert!(req("NotIn", &["b"]).matches(None));
        assert!(!req("Bogus", &[]).matches(Some(&with)));
    }
}
