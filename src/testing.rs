//! What the tests against a mocked API server (`tower_test::mock::pair`, as kube-rs's own
//! controller tests do) share: the client, reading a request's JSON body, and answers.

use axum::http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

/// The test's side of the mocked API server: each request the code under test sends, to
/// assert and answer.
pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose every request goes to the returned handle.
pub fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

pub async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A JSON answer with `status`.
pub fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// A `metav1.Status` failure body, as the API server sends with a 4xx/5xx.
pub fn status_body(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason,
           "code": code, "message": reason})
}

/// A failure answer: `code` with its `metav1.Status` body.
pub fn status(code: u16, reason: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap(),
        &status_body(code, reason),
    )
}

// ---------------------------------------------------------------------------------------------
// Test objects, as builders with chained modifiers (after kube-rs's controller-rs
// `fixtures.rs`): `pvc("default", "data").class("csi-disk").bound_to("pv-1")`. Each builds the
// slim model type exactly as parsing the equivalent JSON would (`in_object` set, absent fields
// `None`), so a rule sees the same object either way.

use crate::cluster::{ClusterIndex, SyncState};
use crate::model::{
    AllowedTopologyTerm, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectMeta,
    OwnerReference, PersistentVolume, PersistentVolumeClaim, Quantity, SnapshotError, StorageClass,
    TopologyRequirement, TypedLocalObjectReference, TypedObjectReference, VolumeBindingMode,
    VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent, keys,
};
use crate::model::{ClaimSource, EphemeralSource, Pod, PodVolume};
use crate::model::{VolumeGroupSnapshot, VolumeGroupSnapshotClass, VolumeGroupSnapshotContent};
use crate::rules::{Input, Operation, Phase};

/// The Alibaba Cloud disk CSI driver, the demo cluster's driver.
pub const DRIVER: &str = "diskplugin.csi.alibabacloud.com";
/// The `deletionTimestamp` the builders' `.deleting()` sets.
pub const DELETED_AT: &str = "2026-01-01T00:00:00Z";

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.map(Into::into),
        in_object: true,
        ..Default::default()
    }
}

fn quantity(q: &str) -> Quantity {
    Quantity::parse(q).unwrap()
}

/// Modifiers every object has (all through its `metadata`).
pub trait Meta: Sized {
    fn meta_mut(&mut self) -> &mut ObjectMeta;

    fn label(mut self, key: &str, value: &str) -> Self {
        self.meta_mut()
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// A `labels` map that is there but empty (a patch then need not create it).
    fn empty_labels(mut self) -> Self {
        self.meta_mut().labels.get_or_insert_with(Default::default);
        self
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.meta_mut().annotations.insert(key.into(), value.into());
        self
    }

    fn resource_version(mut self, version: &str) -> Self {
        self.meta_mut().resource_version = Some(version.into());
        self
    }

    /// Being deleted: `deletionTimestamp` set.
    fn deleting(mut self) -> Self {
        self.meta_mut().deletion_timestamp = Some(DELETED_AT.into());
        self
    }
}

macro_rules! impl_meta {
    ($($ty:ty),+) => {$(
        impl Meta for $ty {
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    )+};
}
impl_meta!(
    StorageClass,
    PersistentVolumeClaim,
    PersistentVolume,
    Node,
    VolumeSnapshot,
    VolumeSnapshotClass,
    VolumeSnapshotContent,
    Pod,
    VolumeGroupSnapshotClass,
    VolumeGroupSnapshot,
    VolumeGroupSnapshotContent
);

/// A StorageClass with no provisioner, binding mode or topologies yet.
pub fn storage_class(name: &str) -> StorageClass {
    StorageClass {
        metadata: meta(None, name),
        ..Default::default()
    }
}

pub trait StorageClassExt: Sized {
    fn provisioner(self, provisioner: &str) -> Self;
    fn binding_mode(self, mode: VolumeBindingMode) -> Self;
    fn wait_for_first_consumer(self) -> Self;
    fn immediate(self) -> Self;
    /// One `allowedTopologies` term: `(key, values)` requirements that must all hold.
    fn allowed_topology(self, term: &[(&str, &[&str])]) -> Self;
    /// The cluster's default class (GA annotation).
    fn default_class(self) -> Self;
}

impl StorageClassExt for StorageClass {
    fn provisioner(mut self, provisioner: &str) -> Self {
        self.provisioner = provisioner.into();
        self
    }
    fn binding_mode(mut self, mode: VolumeBindingMode) -> Self {
        self.volume_binding_mode = Some(mode);
        self
    }
    fn wait_for_first_consumer(self) -> Self {
        self.binding_mode(VolumeBindingMode::WaitForFirstConsumer)
    }
    fn immediate(self) -> Self {
        self.binding_mode(VolumeBindingMode::Immediate)
    }
    fn allowed_topology(mut self, term: &[(&str, &[&str])]) -> Self {
        self.allowed_topologies.push(AllowedTopologyTerm {
            match_label_expressions: term
                .iter()
                .map(|(key, values)| TopologyRequirement {
                    key: (*key).into(),
                    values: values.iter().map(|v| (*v).into()).collect(),
                })
                .collect(),
        });
        self
    }
    fn default_class(self) -> Self {
        self.annotate(keys::DEFAULT_STORAGE_CLASS, "true")
    }
}

/// A claim with an empty spec (no class named, no request).
pub fn pvc(namespace: &str, name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(Some(namespace), name),
        ..Default::default()
    }
}

pub trait PvcExt: Sized {
    /// `storageClassName`; `""` asks for no class.
    fn class(self, class: &str) -> Self;
    fn bound_to(self, volume: &str) -> Self;
    fn request(self, storage: &str) -> Self;
    fn volume_mode(self, mode: &str) -> Self;
    /// `status.phase: Bound` with `status.capacity.storage`.
    fn bound_with_capacity(self, storage: &str) -> Self;
    /// `spec.dataSource`.
    fn data_source(self, api_group: Option<&str>, kind: &str, name: &str) -> Self;
    /// `spec.dataSourceRef`.
    fn data_source_ref(
        self,
        api_group: Option<&str>,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Self;
}

impl PvcExt for PersistentVolumeClaim {
    fn class(mut self, class: &str) -> Self {
        self.spec.storage_class_name = Some(class.into());
        self
    }
    fn bound_to(mut self, volume: &str) -> Self {
        self.spec.volume_name = Some(volume.into());
        self
    }
    fn request(mut self, storage: &str) -> Self {
        self.spec.resources.requests.storage = Some(quantity(storage));
        self
    }
    fn volume_mode(mut self, mode: &str) -> Self {
        self.spec.volume_mode = Some(mode.into());
        self
    }
    fn bound_with_capacity(mut self, storage: &str) -> Self {
        let status = self.status.get_or_insert_with(Default::default);
        status.phase = Some("Bound".into());
        status.capacity.storage = Some(quantity(storage));
        self
    }
    fn data_source(mut self, api_group: Option<&str>, kind: &str, name: &str) -> Self {
        self.spec.data_source = Some(TypedLocalObjectReference {
            api_group: api_group.map(Into::into),
            kind: kind.into(),
            name: name.into(),
        });
        self
    }
    fn data_source_ref(
        mut self,
        api_group: Option<&str>,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Self {
        self.spec.data_source_ref = Some(TypedObjectReference {
            api_group: api_group.map(Into::into),
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(Into::into),
        });
        self
    }
}

/// A volume with an empty spec: not CSI, not local (as a `hostPath` volume reads).
pub fn pv(name: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: meta(None, name),
        ..Default::default()
    }
}

pub trait PvExt: Sized {
    fn class(self, class: &str) -> Self;
    fn csi(self, driver: &str, volume_handle: &str) -> Self;
    fn local(self, path: &str) -> Self;
    /// One `nodeAffinity.required` term with `matchExpressions` `(key, operator, values)`.
    fn node_affinity_term(self, expressions: &[(&str, &str, &[&str])]) -> Self;
    /// One term with `matchFields` `(key, operator, values)`.
    fn node_affinity_fields(self, fields: &[(&str, &str, &[&str])]) -> Self;
    /// Local to the node with this `kubernetes.io/hostname`.
    fn on_host(self, host: &str) -> Self;
}

fn requirements(list: &[(&str, &str, &[&str])]) -> Vec<NodeSelectorRequirement> {
    list.iter()
        .map(|(key, operator, values)| NodeSelectorRequirement {
            key: (*key).into(),
            operator: (*operator).into(),
            values: values.iter().map(|v| (*v).into()).collect(),
        })
        .collect()
}

fn push_term(pv: &mut PersistentVolume, term: NodeSelectorTerm) {
    pv.spec
        .node_affinity
        .get_or_insert_with(Default::default)
        .required
        .get_or_insert_with(Default::default)
        .node_selector_terms
        .push(term);
}

impl PvExt for PersistentVolume {
    fn class(mut self, class: &str) -> Self {
        self.spec.storage_class_name = Some(class.into());
        self
    }
    fn csi(mut self, driver: &str, volume_handle: &str) -> Self {
        let csi = self.spec.csi.get_or_insert_with(Default::default);
        csi.driver = driver.into();
        csi.volume_handle = Some(volume_handle.into());
        self
    }
    fn local(mut self, path: &str) -> Self {
        self.spec.local.get_or_insert_with(Default::default).path = path.into();
        self
    }
    fn node_affinity_term(mut self, expressions: &[(&str, &str, &[&str])]) -> Self {
        push_term(
            &mut self,
            NodeSelectorTerm {
                match_expressions: requirements(expressions),
                ..Default::default()
            },
        );
        self
    }
    fn node_affinity_fields(mut self, fields: &[(&str, &str, &[&str])]) -> Self {
        push_term(
            &mut self,
            NodeSelectorTerm {
                match_fields: requirements(fields),
                ..Default::default()
            },
        );
        self
    }
    fn on_host(self, host: &str) -> Self {
        self.node_affinity_term(&[(keys::HOSTNAME, "In", &[host])])
    }
}

/// A node without a `labels` map (add labels with `.label()`, `.zone()`).
pub fn node(name: &str) -> Node {
    Node {
        metadata: meta(None, name),
    }
}

/// A node whose `labels` map holds exactly `labels` (present even when empty).
pub fn labelled_node(name: &str, labels: &[(&str, &str)]) -> Node {
    labels
        .iter()
        .fold(node(name).empty_labels(), |n, (k, v)| n.label(k, v))
}

pub trait NodeExt: Sized {
    /// `topology.kubernetes.io/zone`.
    fn zone(self, zone: &str) -> Self;
    /// `kubernetes.io/hostname` set to the node's name, as the kubelet does.
    fn hostname_label(self) -> Self;
}

impl NodeExt for Node {
    fn zone(self, zone: &str) -> Self {
        self.label(keys::ZONE, zone)
    }
    fn hostname_label(self) -> Self {
        let name = self.metadata.name.clone();
        self.label(keys::HOSTNAME, &name)
    }
}

/// A VolumeSnapshotClass for `driver`, `deletionPolicy: Delete` (the CRD requires one).
pub fn snapshot_class(name: &str) -> VolumeSnapshotClass {
    VolumeSnapshotClass {
        metadata: meta(None, name),
        driver: String::new(),
        deletion_policy: Some("Delete".into()),
    }
}

pub trait SnapshotClassExt: Sized {
    fn driver(self, driver: &str) -> Self;
    /// The default class of its driver.
    fn default_class(self) -> Self;
}

impl SnapshotClassExt for VolumeSnapshotClass {
    fn driver(mut self, driver: &str) -> Self {
        self.driver = driver.into();
        self
    }
    fn default_class(self) -> Self {
        self.annotate(keys::DEFAULT_SNAPSHOT_CLASS, "true")
    }
}

/// A VolumeSnapshot with an empty `spec.source` and no status.
pub fn snapshot(namespace: &str, name: &str) -> VolumeSnapshot {
    VolumeSnapshot {
        metadata: meta(Some(namespace), name),
        ..Default::default()
    }
}

pub trait SnapshotExt: Sized {
    fn source_pvc(self, claim: &str) -> Self;
    fn source_content(self, content: &str) -> Self;
    fn class(self, class: &str) -> Self;
    /// Owned by a VolumeGroupSnapshot.
    fn group_member(self, group: &str) -> Self;
    /// `status.volumeGroupSnapshotName` (a member whose status says its group).
    fn group_status(self, group: &str) -> Self;
    /// The snapshot controller's in-group-protection finalizer.
    fn group_finalizer(self) -> Self;
    /// `status.boundVolumeSnapshotContentName`.
    fn bound_content(self, content: &str) -> Self;
    /// `status.readyToUse`.
    fn ready_to_use(self, ready: bool) -> Self;
    /// `status.restoreSize`.
    fn restore_size(self, size: &str) -> Self;
    /// Bound to `content`, ready, with a restoreSize of `size`.
    fn ready(self, content: &str, size: &str) -> Self;
    /// `status.readyToUse: false` with `status.error.message`.
    fn failed(self, message: &str) -> Self;
}

fn status_mut(s: &mut VolumeSnapshot) -> &mut crate::model::VolumeSnapshotStatus {
    s.status.get_or_insert_with(Default::default)
}

impl SnapshotExt for VolumeSnapshot {
    fn source_pvc(mut self, claim: &str) -> Self {
        self.spec.source.persistent_volume_claim_name = Some(claim.into());
        self
    }
    fn source_content(mut self, content: &str) -> Self {
        self.spec.source.volume_snapshot_content_name = Some(content.into());
        self
    }
    fn class(mut self, class: &str) -> Self {
        self.spec.volume_snapshot_class_name = Some(class.into());
        self
    }
    fn group_member(mut self, group: &str) -> Self {
        self.metadata.owner_references.push(OwnerReference {
            api_version: "groupsnapshot.storage.k8s.io/v1beta1".into(),
            kind: "VolumeGroupSnapshot".into(),
            name: group.into(),
        });
        self
    }
    fn group_status(mut self, group: &str) -> Self {
        status_mut(&mut self).volume_group_snapshot_name = Some(group.into());
        self
    }
    fn group_finalizer(mut self) -> Self {
        self.metadata
            .finalizers
            .push(keys::IN_GROUP_PROTECTION.into());
        self
    }
    fn bound_content(mut self, content: &str) -> Self {
        status_mut(&mut self).bound_volume_snapshot_content_name = Some(content.into());
        self
    }
    fn ready_to_use(mut self, ready: bool) -> Self {
        status_mut(&mut self).ready_to_use = Some(ready);
        self
    }
    fn restore_size(mut self, size: &str) -> Self {
        status_mut(&mut self).restore_size = Some(quantity(size));
        self
    }
    fn ready(self, content: &str, size: &str) -> Self {
        self.bound_content(content)
            .ready_to_use(true)
            .restore_size(size)
    }
    fn failed(mut self, message: &str) -> Self {
        let status = status_mut(&mut self);
        status.ready_to_use = Some(false);
        status.error = Some(SnapshotError {
            message: Some(message.into()),
            time: Some(DELETED_AT.into()),
        });
        self
    }
}

/// A VolumeSnapshotContent with an empty spec and no status.
pub fn snapshot_content(name: &str) -> VolumeSnapshotContent {
    VolumeSnapshotContent {
        metadata: meta(None, name),
        ..Default::default()
    }
}

pub trait SnapshotContentExt: Sized {
    fn driver(self, driver: &str) -> Self;
    fn deletion_policy(self, policy: &str) -> Self;
    fn volume_handle(self, handle: &str) -> Self;
    fn snapshot_handle(self, handle: &str) -> Self;
    fn source_volume_mode(self, mode: &str) -> Self;
    /// `spec.volumeSnapshotRef` with the given parts (`None` leaves one out).
    fn snapshot_ref(self, namespace: Option<&str>, name: Option<&str>) -> Self;
    /// `status.readyToUse: true` and `status.restoreSize` (bytes, as the CRD has it).
    fn ready(self, restore_size: &str) -> Self;
}

impl SnapshotContentExt for VolumeSnapshotContent {
    fn driver(mut self, driver: &str) -> Self {
        self.spec.driver = driver.into();
        self
    }
    fn deletion_policy(mut self, policy: &str) -> Self {
        self.spec.deletion_policy = Some(policy.into());
        self
    }
    fn volume_handle(mut self, handle: &str) -> Self {
        self.spec.source.volume_handle = Some(handle.into());
        self
    }
    fn snapshot_handle(mut self, handle: &str) -> Self {
        self.spec.source.snapshot_handle = Some(handle.into());
        self
    }
    fn source_volume_mode(mut self, mode: &str) -> Self {
        self.spec.source_volume_mode = Some(mode.into());
        self
    }
    fn snapshot_ref(mut self, namespace: Option<&str>, name: Option<&str>) -> Self {
        self.spec.volume_snapshot_ref.namespace = namespace.map(Into::into);
        self.spec.volume_snapshot_ref.name = name.map(Into::into);
        self
    }
    fn ready(mut self, restore_size: &str) -> Self {
        let status = self.status.get_or_insert_with(Default::default);
        status.ready_to_use = Some(true);
        status.restore_size = Some(quantity(restore_size));
        self
    }
}

/// A VolumeGroupSnapshotClass, `deletionPolicy: Delete`; `.driver(..)`, `.default_class()`.
pub fn group_snapshot_class(name: &str) -> VolumeGroupSnapshotClass {
    VolumeGroupSnapshotClass {
        metadata: meta(None, name),
        driver: String::new(),
        deletion_policy: Some("Delete".into()),
    }
}

impl SnapshotClassExt for VolumeGroupSnapshotClass {
    fn driver(mut self, driver: &str) -> Self {
        self.driver = driver.into();
        self
    }
    fn default_class(self) -> Self {
        self.annotate(keys::DEFAULT_GROUP_SNAPSHOT_CLASS, "true")
    }
}

/// A VolumeGroupSnapshot with an empty `spec.source` and no status.
pub fn group_snapshot(namespace: &str, name: &str) -> VolumeGroupSnapshot {
    VolumeGroupSnapshot {
        metadata: meta(Some(namespace), name),
        ..Default::default()
    }
}

pub trait GroupSnapshotExt: Sized {
    /// `spec.source.selector.matchLabels`.
    fn selecting(self, labels: &[(&str, &str)]) -> Self;
    /// `spec.source.selector.matchExpressions` gets `key operator values`.
    fn selecting_expr(self, key: &str, operator: &str, values: &[&str]) -> Self;
    fn source_content(self, content: &str) -> Self;
    fn class(self, class: &str) -> Self;
    /// `status.readyToUse: false` with `status.error.message`.
    fn failed(self, message: &str) -> Self;
}

impl GroupSnapshotExt for VolumeGroupSnapshot {
    fn selecting(mut self, labels: &[(&str, &str)]) -> Self {
        let selector = self
            .spec
            .source
            .selector
            .get_or_insert_with(Default::default);
        for (k, v) in labels {
            selector.match_labels.insert((*k).into(), (*v).into());
        }
        self
    }
    fn selecting_expr(mut self, key: &str, operator: &str, values: &[&str]) -> Self {
        let selector = self
            .spec
            .source
            .selector
            .get_or_insert_with(Default::default);
        selector
            .match_expressions
            .push(crate::model::LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: values.iter().map(|v| (*v).into()).collect(),
            });
        self
    }
    fn source_content(mut self, content: &str) -> Self {
        self.spec.source.volume_group_snapshot_content_name = Some(content.into());
        self
    }
    fn class(mut self, class: &str) -> Self {
        self.spec.volume_group_snapshot_class_name = Some(class.into());
        self
    }
    fn failed(mut self, message: &str) -> Self {
        let status = self.status.get_or_insert_with(Default::default);
        status.ready_to_use = Some(false);
        status.error = Some(SnapshotError {
            message: Some(message.into()),
            time: Some(DELETED_AT.into()),
        });
        self
    }
}

/// A VolumeGroupSnapshotContent with an empty spec.
pub fn group_snapshot_content(name: &str) -> VolumeGroupSnapshotContent {
    VolumeGroupSnapshotContent {
        metadata: meta(None, name),
        ..Default::default()
    }
}

pub trait GroupSnapshotContentExt: Sized {
    fn driver(self, driver: &str) -> Self;
    fn volume_handles(self, handles: &[&str]) -> Self;
    /// `spec.source.groupSnapshotHandles` with a group handle and member handles.
    fn group_handles(self, group: &str, members: &[&str]) -> Self;
    /// `spec.volumeGroupSnapshotRef` with the given parts (`None` leaves one out).
    fn group_ref(self, namespace: Option<&str>, name: Option<&str>) -> Self;
}

impl GroupSnapshotContentExt for VolumeGroupSnapshotContent {
    fn driver(mut self, driver: &str) -> Self {
        self.spec.driver = driver.into();
        self
    }
    fn volume_handles(mut self, handles: &[&str]) -> Self {
        self.spec.source.volume_handles = Some(handles.iter().map(|h| (*h).into()).collect());
        self
    }
    fn group_handles(mut self, group: &str, members: &[&str]) -> Self {
        self.spec.source.group_snapshot_handles = Some(crate::model::GroupSnapshotHandles {
            volume_group_snapshot_handle: group.into(),
            volume_snapshot_handles: members.iter().map(|h| (*h).into()).collect(),
        });
        self
    }
    fn group_ref(mut self, namespace: Option<&str>, name: Option<&str>) -> Self {
        self.spec.volume_group_snapshot_ref.namespace = namespace.map(Into::into);
        self.spec.volume_group_snapshot_ref.name = name.map(Into::into);
        self
    }
}

/// The demo cluster's default StorageClass: csi-disk, provisioned by [`DRIVER`].
pub fn csi_disk() -> StorageClass {
    storage_class("csi-disk")
        .provisioner(DRIVER)
        .default_class()
}

/// The demo cluster's NFS StorageClass (not default; its driver has no snapshot class).
pub fn nfs_class() -> StorageClass {
    storage_class("nfs").provisioner("nfs.csi.k8s.io")
}

/// The demo cluster's default VolumeSnapshotClass of [`DRIVER`]: default-snapclass.
pub fn default_snapclass() -> VolumeSnapshotClass {
    snapshot_class("default-snapclass")
        .driver(DRIVER)
        .default_class()
}

/// A pod with no volumes, node or constraints; `status.phase` unset (as on CREATE).
pub fn pod(namespace: &str, name: &str) -> Pod {
    Pod {
        metadata: meta(Some(namespace), name),
        ..Default::default()
    }
}

pub trait PodExt: Sized {
    /// `spec.nodeName`.
    fn on_node(self, node: &str) -> Self;
    /// A `persistentVolumeClaim` volume `volume` using `claim`.
    fn claim(self, volume: &str, claim: &str) -> Self;
    /// A generic ephemeral volume whose template names `class` (`None`: no class named).
    fn ephemeral(self, volume: &str, class: Option<&str>) -> Self;
    /// A `spec.nodeSelector` entry.
    fn node_selector(self, key: &str, value: &str) -> Self;
    /// One required node-affinity term with `matchExpressions` `(key, operator, values)`.
    fn required_term(self, expressions: &[(&str, &str, &[&str])]) -> Self;
    /// `status.phase: Pending`.
    fn pending(self) -> Self;
}

impl PodExt for Pod {
    fn on_node(mut self, node: &str) -> Self {
        self.spec.node_name = Some(node.into());
        self
    }
    fn claim(mut self, volume: &str, claim: &str) -> Self {
        self.spec.volumes.push(PodVolume {
            name: volume.into(),
            persistent_volume_claim: Some(ClaimSource {
                claim_name: claim.into(),
            }),
            ephemeral: None,
        });
        self
    }
    fn ephemeral(mut self, volume: &str, class: Option<&str>) -> Self {
        let mut source = EphemeralSource::default();
        source.volume_claim_template.spec.storage_class_name = class.map(Into::into);
        self.spec.volumes.push(PodVolume {
            name: volume.into(),
            persistent_volume_claim: None,
            ephemeral: Some(source),
        });
        self
    }
    fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec.node_selector.insert(key.into(), value.into());
        self
    }
    fn required_term(mut self, expressions: &[(&str, &str, &[&str])]) -> Self {
        self.spec
            .affinity
            .get_or_insert_with(Default::default)
            .node_affinity
            .get_or_insert_with(Default::default)
            .required
            .get_or_insert_with(Default::default)
            .node_selector_terms
            .push(NodeSelectorTerm {
                match_expressions: requirements(expressions),
                ..Default::default()
            });
        self
    }
    fn pending(mut self) -> Self {
        self.status.phase = Some("Pending".into());
        self
    }
}

/// Any object a [`ClusterIndex`] holds, for [`cluster`].
pub enum Object {
    StorageClass(StorageClass),
    Pvc(PersistentVolumeClaim),
    Pv(PersistentVolume),
    Node(Node),
    Snapshot(VolumeSnapshot),
    SnapshotClass(VolumeSnapshotClass),
    SnapshotContent(VolumeSnapshotContent),
    Pod(Pod),
    GroupSnapshotClass(VolumeGroupSnapshotClass),
    GroupSnapshot(VolumeGroupSnapshot),
    GroupSnapshotContent(VolumeGroupSnapshotContent),
}

macro_rules! into_object {
    ($($ty:ty => $variant:ident),+) => {$(
        impl From<$ty> for Object {
            fn from(o: $ty) -> Self {
                Object::$variant(o)
            }
        }
    )+};
}
into_object!(
    StorageClass => StorageClass,
    PersistentVolumeClaim => Pvc,
    PersistentVolume => Pv,
    Node => Node,
    VolumeSnapshot => Snapshot,
    VolumeSnapshotClass => SnapshotClass,
    VolumeSnapshotContent => SnapshotContent,
    Pod => Pod,
    VolumeGroupSnapshotClass => GroupSnapshotClass,
    VolumeGroupSnapshot => GroupSnapshot,
    VolumeGroupSnapshotContent => GroupSnapshotContent
);

/// A synced [`ClusterIndex`] holding exactly `objects`:
/// `cluster([storage_class("a").into(), node("n1").into()])`.
pub fn cluster(objects: impl IntoIterator<Item = Object>) -> ClusterIndex {
    let index = ClusterIndex::new(SyncState::Synced);
    for object in objects {
        match object {
            Object::StorageClass(o) => index.storage_classes.apply(o),
            Object::Pvc(o) => index.pvcs.apply(o),
            Object::Pv(o) => index.pvs.apply(o),
            Object::Node(o) => index.nodes.apply(o),
            Object::Snapshot(o) => index.snapshots.apply(o),
            Object::SnapshotClass(o) => index.snapshot_classes.apply(o),
            Object::SnapshotContent(o) => index.snapshot_contents.apply(o),
            Object::Pod(o) => index.pods.apply(o),
            Object::GroupSnapshotClass(o) => index.group_snapshot_classes.apply(o),
            Object::GroupSnapshot(o) => index.group_snapshots.apply(o),
            Object::GroupSnapshotContent(o) => index.group_snapshot_contents.apply(o),
        }
    }
    index
}

/// A rule's input: `operation` in `phase` on `object`, with the stored `old_object` on UPDATE.
pub fn input<'a, T>(
    operation: Operation,
    phase: Phase,
    object: &'a T,
    old_object: Option<&'a T>,
) -> Input<'a, T> {
    Input {
        operation,
        phase,
        object,
        old_object,
    }
}

/// Named test policies: the built-in one, and rule settings the rule tests share.
pub mod policy {
    use crate::policy::{BindingModeAction, BindingModeConfig, NodeTopologyConfig, Policy};
    use crate::policy::{PinnedPodsAction, PinnedPodsConfig};

    /// The label rule of `policies/examples/cloud-region-zone.yaml`, shortened: region and
    /// zone from a node name like `cn-hangzhou-b-node2`.
    pub const CLOUD_ZONE_RULE: &str = cloud_zone_rule!();

    macro_rules! cloud_zone_rule {
        () => {
            "
    - name: cloud-zone
      from: nodeName
      pattern: '^(?P<region>[a-z]+-[a-z]+)-(?P<zone>[a-z])-'
      set:
        topology.kubernetes.io/region: '${region}'
        topology.kubernetes.io/zone: '${region}-${zone}'
"
        };
    }
    use cloud_zone_rule;

    /// A whole policy with only [`CLOUD_ZONE_RULE`] as node-topology label rule (the backfill,
    /// controller and leader tests).
    pub const CLOUD_POLICY: &str = concat!(
        "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  nodeTopology:\n    labelRules:",
        cloud_zone_rule!()
    );

    /// The built-in policy (`policies/default.yaml`).
    pub fn default() -> Policy {
        Policy::builtin()
    }

    /// The built-in binding-mode settings with `mode`.
    pub fn binding_mode(mode: BindingModeAction) -> BindingModeConfig {
        let mut cfg = default().rules.binding_mode;
        cfg.mode = mode;
        cfg
    }

    /// The built-in pinned-pods settings with `mode`.
    pub fn pinned_pods(mode: PinnedPodsAction) -> PinnedPodsConfig {
        let mut cfg = default().rules.pinned_pods;
        cfg.mode = mode;
        cfg
    }

    /// Node-topology settings from YAML: `label_rules` (the list under `labelRules:`) and
    /// `extra` settings lines, both indented as in a policy file.
    pub fn node_topology(label_rules: &str, extra: &str) -> NodeTopologyConfig {
        Policy::parse(&format!(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  nodeTopology:\n{extra}    labelRules:\n{label_rules}"
        ))
        .unwrap()
        .rules
        .node_topology
    }

    /// A policy file shipped under `policies/`, e.g. `policies/examples/onprem-racks.yaml`.
    pub fn example(path: &str) -> Policy {
        let text =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        Policy::parse(&text).unwrap()
    }
}
