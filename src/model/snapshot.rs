//! `snapshot.storage.k8s.io/v1` objects, as the external-snapshotter CRDs define them.

use std::sync::Arc;

use serde::Deserialize;

use super::meta::{ObjectMeta, null_as_default};
use super::{Quantity, annotation_is_true, keys};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotClass {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub driver: String,
    #[serde(default)]
    pub deletion_policy: Option<String>,
}

impl VolumeSnapshotClass {
    /// Whether the class carries `snapshot.storage.kubernetes.io/is-default-class: "true"`.
    pub fn is_default(&self) -> bool {
        annotation_is_true(self.metadata.annotation(keys::DEFAULT_SNAPSHOT_CLASS))
    }

    /// A default that counts: marked default and not being deleted (the snapshot controller
    /// does not pick a class on its way out).
    pub fn is_live_default(&self) -> bool {
        self.is_default() && !self.metadata.is_being_deleted()
    }

    /// Of `classes` (a driver's), the one marked default and not being deleted, when exactly
    /// one is: the class the snapshot controller would pick, and the default-class rule sets.
    pub fn sole_live_default<'a>(
        classes: impl IntoIterator<Item = &'a Arc<Self>>,
    ) -> Option<&'a Arc<Self>> {
        let mut defaults = classes.into_iter().filter(|c| c.is_live_default());
        match (defaults.next(), defaults.next()) {
            (Some(sole), None) => Some(sole),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshot {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: VolumeSnapshotSpec,
    #[serde(default)]
    pub status: Option<VolumeSnapshotStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: VolumeSnapshotSource,
    /// `Some("")` is kept apart from `None`: the CRD forbids the empty string.
    #[serde(default)]
    pub volume_snapshot_class_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    #[serde(default)]
    pub persistent_volume_claim_name: Option<String>,
    #[serde(default)]
    pub volume_snapshot_content_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    #[serde(default)]
    pub bound_volume_snapshot_content_name: Option<String>,
    #[serde(default)]
    pub ready_to_use: Option<bool>,
    #[serde(default)]
    pub restore_size: Option<Quantity>,
    #[serde(default)]
    pub error: Option<SnapshotError>,
    #[serde(default)]
    pub volume_group_snapshot_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct SnapshotError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

impl VolumeSnapshot {
    pub fn ready_to_use(&self) -> bool {
        self.status.as_ref().and_then(|s| s.ready_to_use) == Some(true)
    }

    pub fn error(&self) -> Option<&SnapshotError> {
        self.status.as_ref().and_then(|s| s.error.as_ref())
    }

    pub fn restore_size(&self) -> Option<&Quantity> {
        self.status.as_ref().and_then(|s| s.restore_size.as_ref())
    }

    pub fn bound_content_name(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.bound_volume_snapshot_content_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// Members of a VolumeGroupSnapshot are created and managed by the snapshot controller:
    /// an ownerReference to the group, `status.volumeGroupSnapshotName`, or the
    /// in-group-protection finalizer (any one is enough; a CREATE carries no status yet).
    pub fn is_group_member(&self) -> bool {
        self.group_name().is_some()
            || self
                .metadata
                .owner_references
                .iter()
                .any(|o| o.kind == "VolumeGroupSnapshot")
            || self
                .metadata
                .finalizers
                .iter()
                .any(|f| f == keys::IN_GROUP_PROTECTION)
    }

    /// The VolumeGroupSnapshot this snapshot belongs to, when it says.
    pub fn group_name(&self) -> Option<&str> {
        self.metadata
            .owner_references
            .iter()
            .find(|o| o.kind == "VolumeGroupSnapshot")
            .map(|o| o.name.as_str())
            .filter(|n| !n.is_empty())
            .or_else(|| {
                self.status
                    .as_ref()
                    .and_then(|s| s.volume_group_snapshot_name.as_deref())
                    .filter(|n| !n.is_empty())
            })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContent {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: VolumeSnapshotContentSpec,
    #[serde(default)]
    pub status: Option<VolumeSnapshotContentStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    #[serde(default)]
    pub deletion_policy: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: VolumeSnapshotContentSource,
    #[serde(default)]
    pub source_volume_mode: Option<String>,
    #[serde(default)]
    pub volume_snapshot_class_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_snapshot_ref: VolumeSnapshotRef,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    #[serde(default)]
    pub volume_handle: Option<String>,
    #[serde(default)]
    pub snapshot_handle: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotRef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    #[serde(default)]
    pub ready_to_use: Option<bool>,
    /// Bytes, as an integer in the CRD.
    #[serde(default)]
    pub restore_size: Option<Quantity>,
    #[serde(default)]
    pub error: Option<SnapshotError>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub snapshot_handle: Option<String>,
}

impl VolumeSnapshotContent {
    /// Whether a restore may change the volume mode of this snapshot.
    pub fn allows_volume_mode_change(&self) -> bool {
        annotation_is_true(self.metadata.annotation(keys::ALLOW_VOLUME_MODE_CHANGE))
    }
}

crate::model::map_only!(
    VolumeSnapshotClass,
    VolumeSnapshot,
    VolumeSnapshotSpec,
    VolumeSnapshotSource,
    VolumeSnapshotStatus,
    SnapshotError,
    VolumeSnapshotContent,
    VolumeSnapshotContentSpec,
    VolumeSnapshotContentSource,
    VolumeSnapshotRef,
    VolumeSnapshotContentStatus
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ready_snapshot_and_its_content() {
        let snap: VolumeSnapshot = serde_json::from_str(
            r#"{"metadata":{"name":"s","namespace":"default"},
                "spec":{"source":{"persistentVolumeClaimName":"disk-pvc"},"volumeSnapshotClassName":"c"},
                "status":{"boundVolumeSnapshotContentName":"snapcontent-1","readyToUse":true,"restoreSize":"20Gi"}}"#,
        )
        .unwrap();
        assert!(snap.ready_to_use());
        assert_eq!(snap.bound_content_name(), Some("snapcontent-1"));
        assert_eq!(
            snap.restore_size().unwrap().as_integer(),
            Some(21_474_836_480)
        );

        let content: VolumeSnapshotContent = serde_json::from_str(
            r#"{"metadata":{"name":"snapcontent-1","annotations":{"snapshot.storage.kubernetes.io/allow-volume-mode-change":"true"}},
                "spec":{"deletionPolicy":"Delete","driver":"d","source":{"volumeHandle":"v"},
                        "sourceVolumeMode":"Filesystem","volumeSnapshotRef":{"name":"s","namespace":"default"}},
                "status":{"readyToUse":true,"restoreSize":21474836480}}"#,
        )
        .unwrap();
        assert!(content.allows_volume_mode_change());
        assert_eq!(
            content.status.unwrap().restore_size.unwrap().as_integer(),
            Some(21_474_836_480)
        );
    }

    #[test]
    fn group_members_are_recognised() {
        let snap: VolumeSnapshot = serde_json::from_str(
            r#"{"metadata":{"name":"m","ownerReferences":[{"apiVersion":"groupsnapshot.storage.k8s.io/v1beta1","kind":"VolumeGroupSnapshot","name":"g"}]},
                "spec":{"source":{"volumeSnapshotContentName":"c"}}}"#,
        )
        .unwrap();
        assert!(snap.is_group_member());
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_str::<VolumeSnapshot>(r#"{"spec":{"source":"pvc"}}"#).is_err());
        assert!(
            serde_json::from_str::<VolumeSnapshot>(r#"{"status":{"readyToUse":"yes"}}"#).is_err()
        );
        assert!(
            serde_json::from_str::<VolumeSnapshot>(r#"{"status":{"restoreSize":"lots"}}"#).is_err()
        );
    }

    #[test]
    fn an_array_is_never_read_as_an_object() {
        // serde's derived structs would take `["disk-pvc"]` as the first field by position.
        for json in [
            r#"{"spec":{"source":["disk-pvc"]}}"#,
            r#"{"spec":["c", {"persistentVolumeClaimName":"p"}]}"#,
            r#"{"metadata":["name"]}"#,
            r#"["m", {"source":{}}]"#,
        ] {
            let err = serde_json::from_str::<VolumeSnapshot>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("invalid type: sequence") && err.contains("object"),
                "{json}: {err}"
            );
        }
        let source: VolumeSnapshotSource =
            serde_json::from_str(r#"{"persistentVolumeClaimName":"disk-pvc"}"#).unwrap();
        assert_eq!(
            source.persistent_volume_claim_name.as_deref(),
            Some("disk-pvc")
        );
    }

    #[test]
    fn explicit_nulls_are_absent_fields() {
        // The API server may send `null` for any omitted field; found by tests/bad_input_reviews.rs.
        let snap: VolumeSnapshot =
            serde_json::from_str(r#"{"metadata":null,"spec":{"source":null}}"#).unwrap();
        assert!(snap.spec.source.persistent_volume_claim_name.is_none());
        let snap: VolumeSnapshot = serde_json::from_str(r#"{"spec":null}"#).unwrap();
        assert!(snap.spec.volume_snapshot_class_name.is_none());
        let class: VolumeSnapshotClass = serde_json::from_str(r#"{"driver":null}"#).unwrap();
        assert_eq!(class.driver, "");
        let content: VolumeSnapshotContent = serde_json::from_str(
            r#"{"spec":{"driver":null,"source":null,"volumeSnapshotRef":null}}"#,
        )
        .unwrap();
        assert!(content.spec.volume_snapshot_ref.name.is_none());
    }
}
