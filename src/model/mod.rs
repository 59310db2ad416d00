//! Slim, typed views of the Kubernetes objects the rules read.
//!
//! Each type deserialises straight from the API server's JSON and keeps only the fields a rule
//! reads: `managedFields`, `last-applied-configuration` and every other annotation the rules do
//! not look at are dropped while parsing, so the same types serve the request path (one parse,
//! no `serde_json::Value` tree) and the caches (small objects). Field names follow the
//! Kubernetes API and the external-snapshotter CRDs (`snapshot.storage.k8s.io/v1`).

/// A map-only `Deserialize` for model structs.
///
/// serde's derived structs also accept a JSON array, taking fields by position, so
/// `spec.source: ["disk-pvc"]` would read as `persistentVolumeClaimName: "disk-pvc"`. The API
/// server never sends that, but a hand-made review could, and a rule would then decide on a
/// misread object. Each model struct derives with `#[serde(remote = "Self")]` (the derived code
/// becomes an inherent `deserialize`) and this macro adds the trait impl, which asks for a map
/// and hands it to the derived code: anything else is "invalid type: sequence, expected a
/// VolumeSnapshotSource object".
macro_rules! map_only {
    ($($ty:ident),+ $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct MapOnly;
                impl<'de> serde::de::Visitor<'de> for MapOnly {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($ty), " object"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$ty, A::Error> {
                        $ty::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(MapOnly)
            }
        }
    )+};
}
pub(crate) use map_only;

mod csi_driver;
mod group_snapshot;
pub mod labels;
mod meta;
mod node;
mod pod;
mod quantity;
mod snapshot;
mod storage;

pub use csi_driver::{CsiDriver, is_csi_driver_name, migration_driver};
pub use group_snapshot::{
    GroupSnapshotHandles, LabelSelector, LabelSelectorRequirement, VolumeGroupSnapshot,
    VolumeGroupSnapshotClass, VolumeGroupSnapshotContent, VolumeGroupSnapshotContentSource,
    VolumeGroupSnapshotContentSpec, VolumeGroupSnapshotSource, VolumeGroupSnapshotSpec,
    VolumeGroupSnapshotStatus,
};
pub use meta::{ObjectMeta, OwnerReference, null_as_default};
pub use node::Node;
pub use pod::{
    Affinity, ClaimSource, ClaimTemplate, ClaimTemplateSpec, EphemeralSource, NodeAffinity, Pod,
    PodSpec, PodStatus, PodVolume, VolumeClaim,
};
pub use quantity::{Quantity, QuantityError};
pub use snapshot::{
    SnapshotError, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent,
    VolumeSnapshotContentSource, VolumeSnapshotContentSpec, VolumeSnapshotContentStatus,
    VolumeSnapshotRef, VolumeSnapshotSource, VolumeSnapshotSpec, VolumeSnapshotStatus,
};
pub use storage::{
    AllowedTopologyTerm, NodeConstraint, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec,
    StorageClass, TopologyRequirement, TypedLocalObjectReference, TypedObjectReference,
    VolumeBindingMode,
};

/// Well-known annotation and label keys the rules read or write.
pub mod keys {
    /// Marks the default VolumeSnapshotClass of a CSI driver.
    pub const DEFAULT_SNAPSHOT_CLASS: &str = "snapshot.storage.kubernetes.io/is-default-class";
    /// Marks the cluster's default StorageClass (GA key).
    pub const DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
    /// Marks the cluster's default StorageClass (beta key, still honoured by the API server).
    pub const DEFAULT_STORAGE_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
    /// Legacy way of naming a PVC's class, still honoured by the PV controller.
    pub const PVC_STORAGE_CLASS_BETA: &str = "volume.beta.kubernetes.io/storage-class";
    /// Lets a restore change the volume mode of a snapshot (set on the VolumeSnapshotContent).
    pub const ALLOW_VOLUME_MODE_CHANGE: &str =
        "snapshot.storage.kubernetes.io/allow-volume-mode-change";
    /// Opts a topology-restricted StorageClass out of the binding-mode rule (deliberate Immediate).
    pub const ALLOW_IMMEDIATE_BINDING: &str = "storage-admission.io/allow-immediate-binding";
    /// The node the scheduler chose for a WaitForFirstConsumer claim (set on the PVC).
    pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
    /// The provisioner of statically provisioned local volumes.
    pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
    /// Marks the default VolumeGroupSnapshotClass of a CSI driver.
    pub const DEFAULT_GROUP_SNAPSHOT_CLASS: &str =
        "groupsnapshot.storage.kubernetes.io/is-default-class";
    /// The finalizer the snapshot controller puts on the member snapshots of a group.
    pub const IN_GROUP_PROTECTION: &str =
        "snapshot.storage.kubernetes.io/volumesnapshot-in-group-protection";

    pub const ZONE: &str = "topology.kubernetes.io/zone";
    pub const REGION: &str = "topology.kubernetes.io/region";
    pub const ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
    pub const REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
    pub const HOSTNAME: &str = "kubernetes.io/hostname";

    /// Annotations the model keeps; every other annotation is dropped while parsing.
    pub const KEPT_ANNOTATIONS: &[&str] = &[
        DEFAULT_SNAPSHOT_CLASS,
        DEFAULT_STORAGE_CLASS,
        DEFAULT_STORAGE_CLASS_BETA,
        PVC_STORAGE_CLASS_BETA,
        ALLOW_VOLUME_MODE_CHANGE,
        ALLOW_IMMEDIATE_BINDING,
        DEFAULT_GROUP_SNAPSHOT_CLASS,
        SELECTED_NODE,
    ];
}

/// `"true"` as Kubernetes annotations spell it (the API server compares the string exactly).
pub(crate) fn annotation_is_true(value: Option<&String>) -> bool {
    value.is_some_and(|v| v == "true")
}

/// Parses `text` (the JSON at `at`, e.g. `request.object`) into `T`; an error names the
/// field's path, e.g. `request.object.spec.source: invalid type: ...`.
///
/// Tracking the path costs about as much as the parse itself, so it is only paid on failure:
/// the fast parse runs first and, when it fails, the same input is parsed again with
/// `serde_path_to_error` to say where (parsing is deterministic, so it fails the same way).
pub fn parse_at<T: serde::de::DeserializeOwned>(
    text: &str,
    at: std::fmt::Arguments<'_>,
) -> Result<T, String> {
    serde_json::from_str(text).map_err(|_| {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(e) => format!("{at}.{}: {}", e.path(), without_position(e.inner())),
            // Unreachable unless the two parsers disagree; say so rather than guess a path.
            Ok(_) => format!("{at}: could not be parsed"),
        }
    })
}

/// A serde error without its " at line L column C" suffix: once the field path is named, a
/// position inside an embedded object only confuses.
pub fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(pos) if err.line() > 0 => text[..pos].to_owned(),
        _ => text,
    }
}
