//! The read-only cluster view the rules consult.
//!
//! Rules never call the API server: they read [`ClusterView`], whose one implementation,
//! [`ClusterIndex`], is an in-memory set of indexed stores. The one exception on the request
//! path is [`fetch`]: the admission edge's single bounded GET of a restore's VolumeSnapshot
//! that the cache does not hold yet, made before the rule runs, never by it. `--state FILE` fills it once from a
//! file ([`state_file`]); in a cluster, watches keep it current. Every lookup is a hash or
//! B-tree lookup (by namespace/name, by driver, by label), never a scan of all objects.

pub mod fetch;
mod index;
pub mod state_file;
mod store;
pub mod watch;

use std::fmt;
use std::sync::Arc;

pub use index::ClusterIndex;
pub use store::{Cached, Store, SyncState};

use crate::model::{
    CsiDriver, LabelSelector, VolumeGroupSnapshot, VolumeGroupSnapshotClass,
    VolumeGroupSnapshotContent,
};
use crate::model::{
    Node, NodeConstraint, PersistentVolume, PersistentVolumeClaim, Pod, StorageClass,
    TopologyRequirement, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent,
};

/// The kinds of objects the cluster view holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    VolumeSnapshotClass,
    VolumeSnapshot,
    VolumeSnapshotContent,
    StorageClass,
    PersistentVolumeClaim,
    PersistentVolume,
    Node,
    Pod,
    VolumeGroupSnapshotClass,
    VolumeGroupSnapshot,
    VolumeGroupSnapshotContent,
    CsiDriver,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 12] = [
        Self::VolumeSnapshotClass,
        Self::VolumeSnapshot,
        Self::VolumeSnapshotContent,
        Self::StorageClass,
        Self::PersistentVolumeClaim,
        Self::PersistentVolume,
        Self::Node,
        Self::Pod,
        Self::VolumeGroupSnapshotClass,
        Self::VolumeGroupSnapshot,
        Self::VolumeGroupSnapshotContent,
        Self::CsiDriver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VolumeSnapshotClass => "VolumeSnapshotClass",
            Self::VolumeSnapshot => "VolumeSnapshot",
            Self::VolumeSnapshotContent => "VolumeSnapshotContent",
            Self::StorageClass => "StorageClass",
            Self::PersistentVolumeClaim => "PersistentVolumeClaim",
            Self::PersistentVolume => "PersistentVolume",
            Self::Node => "Node",
            Self::Pod => "Pod",
            Self::VolumeGroupSnapshotClass => "VolumeGroupSnapshotClass",
            Self::VolumeGroupSnapshot => "VolumeGroupSnapshot",
            Self::VolumeGroupSnapshotContent => "VolumeGroupSnapshotContent",
            Self::CsiDriver => "CSIDriver",
        }
    }

    /// The kind for an object's `kind` field (also accepts the `...List` kinds).
    pub fn from_kind(kind: &str) -> Option<Self> {
        let kind = kind.strip_suffix("List").unwrap_or(kind);
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Self::VolumeSnapshotClass | Self::VolumeSnapshot | Self::VolumeSnapshotContent => {
                "snapshot.storage.k8s.io"
            }
            Self::StorageClass | Self::CsiDriver => "storage.k8s.io",
            Self::PersistentVolumeClaim | Self::PersistentVolume | Self::Node => "",
            Self::Pod => "",
            Self::VolumeGroupSnapshotClass
            | Self::VolumeGroupSnapshot
            | Self::VolumeGroupSnapshotContent => "groupsnapshot.storage.k8s.io",
        }
    }

    /// The resource name in API paths.
    pub fn plural(self) -> &'static str {
        match self {
            Self::VolumeSnapshotClass => "volumesnapshotclasses",
            Self::VolumeSnapshot => "volumesnapshots",
            Self::VolumeSnapshotContent => "volumesnapshotcontents",
            Self::StorageClass => "storageclasses",
            Self::PersistentVolumeClaim => "persistentvolumeclaims",
            Self::PersistentVolume => "persistentvolumes",
            Self::Node => "nodes",
            Self::Pod => "pods",
            Self::VolumeGroupSnapshotClass => "volumegroupsnapshotclasses",
            Self::VolumeGroupSnapshot => "volumegroupsnapshots",
            Self::VolumeGroupSnapshotContent => "volumegroupsnapshotcontents",
            Self::CsiDriver => "csidrivers",
        }
    }

    /// Whether the kind is knowledge that sharpens a diagnosis but that nothing requires
    /// (which CSI drivers are installed): its store may stay unavailable (RBAC that does not
    /// grant it, a list that fails) without making the webhook unready, holding the audit
    /// back or failing `explain`; what reads it says nothing rather than guess.
    pub fn is_optional(self) -> bool {
        matches!(self, Self::CsiDriver)
    }

    /// Whether the kind comes from the external-snapshotter CRDs (which a cluster may lack).
    pub fn is_snapshot_crd(self) -> bool {
        matches!(
            self,
            Self::VolumeSnapshotClass | Self::VolumeSnapshot | Self::VolumeSnapshotContent
        )
    }

    /// Whether the kind comes from the group snapshot CRDs (newer still: often absent, and
    /// served as `v1beta1`, `v1beta2` or `v1` depending on the external-snapshotter release).
    pub fn is_group_snapshot_crd(self) -> bool {
        matches!(
            self,
            Self::VolumeGroupSnapshotClass
                | Self::VolumeGroupSnapshot
                | Self::VolumeGroupSnapshotContent
        )
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lookup could not be answered: the rule cannot decide, and the policy says what then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} objects are not available: {reason}")]
pub struct StateUnavailable {
    pub kind: ResourceKind,
    pub reason: String,
}

pub type Lookup<T> = Result<T, StateUnavailable>;

/// What the rules may know about the cluster. Read-only; cheap; never blocks on the network.
pub trait ClusterView: Send + Sync {
    fn snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotClass>>>;
    /// Every VolumeSnapshotClass of a CSI driver (indexed by driver).
    fn snapshot_classes_for_driver(&self, driver: &str) -> Lookup<Vec<Arc<VolumeSnapshotClass>>>;
    /// The driver's one default class not being deleted, when it has exactly one
    /// ([`VolumeSnapshotClass::sole_live_default`]): the default-class rule's question for
    /// every snapshot created without a class. The index answers it in place; copying the
    /// driver's classes into a list for it was about 500 instructions a review.
    fn sole_default_snapshot_class(
        &self,
        driver: &str,
    ) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        let classes = self.snapshot_classes_for_driver(driver)?;
        Ok(VolumeSnapshotClass::sole_live_default(&classes).cloned())
    }
    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<VolumeSnapshot>>>;
    fn snapshot_content(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotContent>>>;
    fn storage_class(&self, name: &str) -> Lookup<Option<Arc<StorageClass>>>;
    /// The StorageClasses annotated as the cluster default (normally zero or one).
    fn default_storage_classes(&self) -> Lookup<Vec<Arc<StorageClass>>>;
    fn pvc(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<PersistentVolumeClaim>>>;
    fn pv(&self, name: &str) -> Lookup<Option<Arc<PersistentVolume>>>;
    fn node(&self, name: &str) -> Lookup<Option<Arc<Node>>>;
    /// How many nodes carry each value of a label key, sorted by value:
    /// `[("cn-hangzhou-b", 3)]`.
    fn node_label_values(&self, key: &str) -> Lookup<Vec<(String, usize)>>;
    /// How many nodes satisfy every requirement (`key` in `values`) of one topology term.
    fn count_nodes_matching_topology(&self, term: &[TopologyRequirement]) -> Lookup<usize>;
    /// Whether any node satisfies a node constraint (a PV's node affinity term; a pod's own
    /// constraints, with a volume's). A yes/no, not a count, so a constraint the label index
    /// cannot narrow stops at the first matching node.
    fn any_node_satisfies(&self, constraint: &NodeConstraint<'_>) -> Lookup<bool>;
    /// The claims of `namespace` that `selector` selects, sorted by name. Served by a label
    /// index per namespace: never a scan of the cluster's claims, and a scan of the
    /// namespace's claims only when the selector has no positive requirement.
    fn pvcs_matching(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Lookup<Vec<Arc<PersistentVolumeClaim>>>;
    fn group_snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeGroupSnapshotClass>>>;
    /// Every VolumeGroupSnapshotClass of a CSI driver (indexed by driver), sorted by name.
    fn group_snapshot_classes_for_driver(
        &self,
        driver: &str,
    ) -> Lookup<Vec<Arc<VolumeGroupSnapshotClass>>>;
    fn group_snapshot(
        &self,
        namespace: &str,
        name: &str,
    ) -> Lookup<Option<Arc<VolumeGroupSnapshot>>>;
    fn group_snapshot_content(&self, name: &str)
    -> Lookup<Option<Arc<VolumeGroupSnapshotContent>>>;
    /// A pod. The controller's cache holds Pending pods only (and pods only when it runs).
    fn pod(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<Pod>>>;
    /// The pods using claim `namespace/name` (by name, or as a generic ephemeral volume's
    /// claim), sorted by name. Indexed by claim: never a scan.
    fn pods_using_claim(&self, namespace: &str, name: &str) -> Lookup<Vec<Arc<Pod>>>;
    /// The member VolumeSnapshots of group snapshot `namespace/group` (owned by it, or whose
    /// status names it), sorted by name. Indexed by group: never a scan.
    fn group_members(&self, namespace: &str, group: &str) -> Lookup<Vec<Arc<VolumeSnapshot>>>;
    /// The CSIDriver named `name` (a CSI driver registers one when it is installed). Optional
    /// knowledge ([`ResourceKind::is_optional`]): `Err` means the cluster's CSIDrivers cannot
    /// be read, which a caller takes as "cannot tell", never as a reason to fail.
    fn csi_driver(&self, name: &str) -> Lookup<Option<Arc<CsiDriver>>>;
}
