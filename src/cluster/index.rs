use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use super::store::{Cached, Changes, Store, SyncState};
use super::{ClusterView, Lookup, ResourceKind};
use crate::model::{
    CsiDriver, LabelSelector, VolumeGroupSnapshot, VolumeGroupSnapshotClass,
    VolumeGroupSnapshotContent,
};
use crate::model::{
    Node, NodeConstraint, ObjectMeta, PersistentVolume, PersistentVolumeClaim, Pod, StorageClass,
    TopologyRequirement, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent,
};

const DEFAULT: &str = "default";
const LABEL: &str = "label:";
/// A claim's label in its namespace: `label:ns/key=value`.
const NS_LABEL: &str = "nslabel:";
/// A claim's label key in its namespace (for `Exists`): `labelkey:ns/key`.
const NS_LABEL_KEY: &str = "labelkey:";
/// A claim a pod uses: `claim=ns/name`.
const CLAIM: &str = "claim=";
/// The group snapshot a member snapshot belongs to: `group=ns/name`.
const GROUP: &str = "group=";

/// Every kind keeps its metadata in `metadata`.
macro_rules! meta_access {
    () => {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
        fn meta_mut(&mut self) -> &mut ObjectMeta {
            &mut self.metadata
        }
    };
}

impl Cached for VolumeSnapshotClass {
    const KIND: ResourceKind = ResourceKind::VolumeSnapshotClass;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
    /// The driver's name as it is: the class stores have no other index, and a lookup, one
    /// for every snapshot created without a class, then needs no key built for it.
    fn index_values(&self) -> Vec<String> {
        vec![self.driver.clone()]
    }
}

impl Cached for VolumeSnapshot {
    const KIND: ResourceKind = ResourceKind::VolumeSnapshot;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            &self.metadata.name,
        )
    }
    fn index_values(&self) -> Vec<String> {
        let ns = self.metadata.namespace.as_deref().unwrap_or_default();
        self.group_name()
            .map(|group| format!("{GROUP}{ns}/{group}"))
            .into_iter()
            .collect()
    }
}

impl Cached for VolumeSnapshotContent {
    const KIND: ResourceKind = ResourceKind::VolumeSnapshotContent;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
}

impl Cached for StorageClass {
    const KIND: ResourceKind = ResourceKind::StorageClass;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
    fn index_values(&self) -> Vec<String> {
        if self.is_default() {
            vec![DEFAULT.to_owned()]
        } else {
            Vec::new()
        }
    }
}

impl Cached for PersistentVolumeClaim {
    const KIND: ResourceKind = ResourceKind::PersistentVolumeClaim;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            &self.metadata.name,
        )
    }
    /// Labels per namespace, so a group snapshot's selector finds its claims without a scan.
    fn index_values(&self) -> Vec<String> {
        let ns = self.metadata.namespace.as_deref().unwrap_or_default();
        self.metadata
            .labels
            .iter()
            .flatten()
            .flat_map(|(k, v)| {
                [
                    format!("{NS_LABEL}{ns}/{k}={v}"),
                    format!("{NS_LABEL_KEY}{ns}/{k}"),
                ]
            })
            .collect()
    }
}

impl Cached for PersistentVolume {
    const KIND: ResourceKind = ResourceKind::PersistentVolume;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
}

impl Cached for Node {
    const KIND: ResourceKind = ResourceKind::Node;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
    fn index_values(&self) -> Vec<String> {
        self.labels()
            .iter()
            .map(|(k, v)| format!("{LABEL}{k}={v}"))
            .collect()
    }
}

impl Cached for Pod {
    const KIND: ResourceKind = ResourceKind::Pod;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            &self.metadata.name,
        )
    }
    /// The claims it uses, so a claim finds its pods without a scan.
    fn index_values(&self) -> Vec<String> {
        let ns = self.metadata.namespace.as_deref().unwrap_or_default();
        self.claims()
            .map(|(claim, _)| format!("{CLAIM}{ns}/{claim}"))
            .collect()
    }
}

impl Cached for VolumeGroupSnapshotClass {
    const KIND: ResourceKind = ResourceKind::VolumeGroupSnapshotClass;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
    /// The driver's name as it is, as for VolumeSnapshotClass.
    fn index_values(&self) -> Vec<String> {
        vec![self.driver.clone()]
    }
}

impl Cached for VolumeGroupSnapshot {
    const KIND: ResourceKind = ResourceKind::VolumeGroupSnapshot;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            &self.metadata.name,
        )
    }
}

impl Cached for VolumeGroupSnapshotContent {
    const KIND: ResourceKind = ResourceKind::VolumeGroupSnapshotContent;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
}

impl Cached for CsiDriver {
    const KIND: ResourceKind = ResourceKind::CsiDriver;
    meta_access!();
    fn key(&self) -> (&str, &str) {
        ("", &self.metadata.name)
    }
}

/// The in-memory cluster view: one indexed store per kind.
pub struct ClusterIndex {
    pub snapshot_classes: Store<VolumeSnapshotClass>,
    pub snapshots: Store<VolumeSnapshot>,
    pub snapshot_contents: Store<VolumeSnapshotContent>,
    pub storage_classes: Store<StorageClass>,
    pub pvcs: Store<PersistentVolumeClaim>,
    pub pvs: Store<PersistentVolume>,
    pub nodes: Store<Node>,
    /// Pending pods, for the audit only (no rule looks a pod up): watched only when the
    /// controller runs (see [`super::watch::spawn_all`]).
    pub pods: Store<Pod>,
    pub group_snapshot_classes: Store<VolumeGroupSnapshotClass>,
    pub group_snapshots: Store<VolumeGroupSnapshot>,
    pub group_snapshot_contents: Store<VolumeGroupSnapshotContent>,
    /// The installed CSI drivers, for `explain`'s diagnoses only (optional: see
    /// [`ResourceKind::is_optional`]); watched only when the controller runs.
    pub csi_drivers: Store<CsiDriver>,
    /// Bumped by every store on every change (see [`ClusterIndex::subscribe`]).
    changes: Changes,
    /// The version each discovered API group is served at (the group snapshot API's, which
    /// depends on the external-snapshotter release; every other group is watched as `v1`):
    /// what an Event names its object with.
    served_versions: RwLock<BTreeMap<&'static str, String>>,
}

impl ClusterIndex {
    /// Every store starts in `state`: `Pending` until watches list, or `Synced` for a file.
    pub fn new(state: SyncState) -> Self {
        let changes: Changes = Arc::new(watch::channel(0).0);
        Self {
            snapshot_classes: Store::new(state.clone(), changes.clone()),
            snapshots: Store::new(state.clone(), changes.clone()),
            snapshot_contents: Store::new(state.clone(), changes.clone()),
            storage_classes: Store::new(state.clone(), changes.clone()),
            pvcs: Store::new(state.clone(), changes.clone()),
            pvs: Store::new(state.clone(), changes.clone()),
            nodes: Store::new(state.clone(), changes.clone()),
            pods: Store::new(state.clone(), changes.clone()),
            group_snapshot_classes: Store::new(state.clone(), changes.clone()),
            group_snapshots: Store::new(state.clone(), changes.clone()),
            group_snapshot_contents: Store::new(state.clone(), changes.clone()),
            csi_drivers: Store::new(state, changes.clone()),
            changes,
            served_versions: RwLock::default(),
        }
    }

    /// Records that the cluster serves `kind`'s API group at `version` (discovery said so).
    pub fn set_served_version(&self, kind: ResourceKind, version: &str) {
        self.served_versions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.group(), version.to_owned());
    }

    /// The `apiVersion` of `kind`'s objects: its group at the version discovery found, or
    /// `v1` for a group not discovered (every kind but the group snapshot ones is `v1`).
    pub fn api_version(&self, kind: ResourceKind) -> String {
        let group = kind.group();
        let served = self
            .served_versions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let version = served.get(group).map_or("v1", String::as_str);
        if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        }
    }

    /// A receiver that is marked changed whenever any store changes (an object added,
    /// changed apart from its `resourceVersion`, or deleted; a relist swapped in; a sync state
    /// changed). The value is a generation count; several changes before the receiver looks
    /// are seen as one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A view with no source at all: every lookup is unavailable, with this reason.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(SyncState::Pending(reason.into()))
    }

    /// The sync state of each kind, for readiness and diagnostics.
    pub fn states(&self) -> Vec<(ResourceKind, SyncState)> {
        vec![
            (
                ResourceKind::VolumeSnapshotClass,
                self.snapshot_classes.state(),
            ),
            (ResourceKind::VolumeSnapshot, self.snapshots.state()),
            (
                ResourceKind::VolumeSnapshotContent,
                self.snapshot_contents.state(),
            ),
            (ResourceKind::StorageClass, self.storage_classes.state()),
            (ResourceKind::PersistentVolumeClaim, self.pvcs.state()),
            (ResourceKind::PersistentVolume, self.pvs.state()),
            (ResourceKind::Node, self.nodes.state()),
            (ResourceKind::Pod, self.pods.state()),
            (
                ResourceKind::VolumeGroupSnapshotClass,
                self.group_snapshot_classes.state(),
            ),
            (
                ResourceKind::VolumeGroupSnapshot,
                self.group_snapshots.state(),
            ),
            (
                ResourceKind::VolumeGroupSnapshotContent,
                self.group_snapshot_contents.state(),
            ),
            (ResourceKind::CsiDriver, self.csi_drivers.state()),
        ]
    }

    /// Sets the sync state of `kind`'s store.
    pub fn set_state(&self, kind: ResourceKind, state: SyncState) {
        use ResourceKind as K;
        match kind {
            K::VolumeSnapshotClass => self.snapshot_classes.set_state(state),
            K::VolumeSnapshot => self.snapshots.set_state(state),
            K::VolumeSnapshotContent => self.snapshot_contents.set_state(state),
            K::StorageClass => self.storage_classes.set_state(state),
            K::PersistentVolumeClaim => self.pvcs.set_state(state),
            K::PersistentVolume => self.pvs.set_state(state),
            K::Node => self.nodes.set_state(state),
            K::Pod => self.pods.set_state(state),
            K::VolumeGroupSnapshotClass => self.group_snapshot_classes.set_state(state),
            K::VolumeGroupSnapshot => self.group_snapshots.set_state(state),
            K::VolumeGroupSnapshotContent => self.group_snapshot_contents.set_state(state),
            K::CsiDriver => self.csi_drivers.set_state(state),
        }
    }

    /// The kinds still waiting for their first list that the webhooks or the audit need, with
    /// why: what readiness waits for. Optional kinds ([`ResourceKind::is_optional`]) are
    /// left out, so a cluster that does not let the service read them keeps it serving; a
    /// missing kind is a fact about the cluster, not something to wait for.
    pub fn awaited(&self) -> Vec<(ResourceKind, String)> {
        self.states()
            .into_iter()
            .filter(|(kind, _)| !kind.is_optional())
            .filter_map(|(kind, state)| match state {
                SyncState::Pending(reason) => Some((kind, reason)),
                SyncState::Synced | SyncState::Missing(_) => None,
            })
            .collect()
    }

    /// Object counts per kind.
    pub fn counts(&self) -> Vec<(ResourceKind, usize)> {
        vec![
            (
                ResourceKind::VolumeSnapshotClass,
                self.snapshot_classes.len(),
            ),
            (ResourceKind::VolumeSnapshot, self.snapshots.len()),
            (
                ResourceKind::VolumeSnapshotContent,
                self.snapshot_contents.len(),
            ),
            (ResourceKind::StorageClass, self.storage_classes.len()),
            (ResourceKind::PersistentVolumeClaim, self.pvcs.len()),
            (ResourceKind::PersistentVolume, self.pvs.len()),
            (ResourceKind::Node, self.nodes.len()),
            (ResourceKind::Pod, self.pods.len()),
            (
                ResourceKind::VolumeGroupSnapshotClass,
                self.group_snapshot_classes.len(),
            ),
            (
                ResourceKind::VolumeGroupSnapshot,
                self.group_snapshots.len(),
            ),
            (
                ResourceKind::VolumeGroupSnapshotContent,
                self.group_snapshot_contents.len(),
            ),
            (ResourceKind::CsiDriver, self.csi_drivers.len()),
        ]
    }
}

impl ClusterView for ClusterIndex {
    fn snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        self.snapshot_classes.get("", name)
    }

    fn snapshot_classes_for_driver(&self, driver: &str) -> Lookup<Vec<Arc<VolumeSnapshotClass>>> {
        let mut classes = self.snapshot_classes.by_index(driver)?;
        classes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(classes)
    }

    fn sole_default_snapshot_class(
        &self,
        driver: &str,
    ) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        self.snapshot_classes.scan_index(driver, |classes| {
            VolumeSnapshotClass::sole_live_default(classes).cloned()
        })
    }

    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<VolumeSnapshot>>> {
        self.snapshots.get(namespace, name)
    }

    fn snapshot_content(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotContent>>> {
        self.snapshot_contents.get("", name)
    }

    fn storage_class(&self, name: &str) -> Lookup<Option<Arc<StorageClass>>> {
        self.storage_classes.get("", name)
    }

    fn default_storage_classes(&self) -> Lookup<Vec<Arc<StorageClass>>> {
        let mut classes = self.storage_classes.by_index(DEFAULT)?;
        classes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(classes)
    }

    fn pvc(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<PersistentVolumeClaim>>> {
        self.pvcs.get(namespace, name)
    }

    fn pv(&self, name: &str) -> Lookup<Option<Arc<PersistentVolume>>> {
        self.pvs.get("", name)
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<Node>>> {
        self.nodes.get("", name)
    }

    fn node_label_values(&self, key: &str) -> Lookup<Vec<(String, usize)>> {
        // The index is ordered: its counts come sorted by value. Index keys are concatenated,
        // not format!ted, here and below: format! starts a short string with no capacity and
        // grows it several times (1.5k instructions a key, on the request path).
        self.nodes.index_counts(&[LABEL, key, "="].concat())
    }

    fn count_nodes_matching_topology(&self, term: &[TopologyRequirement]) -> Lookup<usize> {
        let groups: Vec<Vec<String>> = term
            .iter()
            .map(|r| {
                r.values
                    .iter()
                    .map(|v| [LABEL, &r.key, "=", v].concat())
                    .collect()
            })
            .collect();
        self.nodes.count_matching(&groups)
    }

    fn any_node_satisfies(&self, constraint: &NodeConstraint<'_>) -> Lookup<bool> {
        // Narrow to candidates by name or through the label index when the constraint names
        // nodes or requires label values; only one made solely of other operators needs a
        // scan, and that stops at the first node that matches. Candidates are looked at where
        // the cache holds them, not copied out: this is asked per review of a pod beside a
        // bound volume.
        let matches = |node: &Node| constraint.matches(node.name(), node.labels());
        if let Some(names) = constraint.names() {
            for name in names {
                if self.nodes.get("", name)?.is_some_and(|node| matches(&node)) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        if let Some((key, values)) = constraint.label_values() {
            for value in values {
                let label = [LABEL, key, "=", value].concat();
                if self.nodes.scan_index(&label, |mut it| {
                    Iterator::any(&mut it, |node| matches(node))
                })? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        self.nodes
            .scan(|mut it| Iterator::any(&mut it, |node| matches(node)))
    }

    fn pvcs_matching(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Lookup<Vec<Arc<PersistentVolumeClaim>>> {
        // Every positive requirement names index values; the smallest narrows the candidates
        // and the whole selector then filters them. `NotIn` and `DoesNotExist` cannot narrow:
        // with nothing else, the candidates are the namespace's claims (never the cluster's).
        let label = |k: &str, v: &str| [NS_LABEL, namespace, "/", k, "=", v].concat();
        let mut groups: Vec<Vec<String>> = selector
            .match_labels
            .iter()
            .map(|(k, v)| vec![label(k, v)])
            .collect();
        for r in &selector.match_expressions {
            match r.operator.as_str() {
                "In" => groups.push(r.values.iter().map(|v| label(&r.key, v)).collect()),
                "Exists" => groups.push(vec![[NS_LABEL_KEY, namespace, "/", &r.key].concat()]),
                _ => {}
            }
        }
        self.pvcs.select_in(namespace, &groups, |pvc| {
            selector.matches(pvc.metadata.labels.as_ref())
        })
    }

    fn group_snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeGroupSnapshotClass>>> {
        self.group_snapshot_classes.get("", name)
    }

    fn group_snapshot_classes_for_driver(
        &self,
        driver: &str,
    ) -> Lookup<Vec<Arc<VolumeGroupSnapshotClass>>> {
        let mut classes = self.group_snapshot_classes.by_index(driver)?;
        classes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(classes)
    }

    fn group_snapshot(
        &self,
        namespace: &str,
        name: &str,
    ) -> Lookup<Option<Arc<VolumeGroupSnapshot>>> {
        self.group_snapshots.get(namespace, name)
    }

    fn group_snapshot_content(
        &self,
        name: &str,
    ) -> Lookup<Option<Arc<VolumeGroupSnapshotContent>>> {
        self.group_snapshot_contents.get("", name)
    }

    fn pod(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<Pod>>> {
        self.pods.get(namespace, name)
    }

    fn pods_using_claim(&self, namespace: &str, name: &str) -> Lookup<Vec<Arc<Pod>>> {
        let mut pods = self
            .pods
            .by_index(&[CLAIM, namespace, "/", name].concat())?;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(pods)
    }

    fn group_members(&self, namespace: &str, group: &str) -> Lookup<Vec<Arc<VolumeSnapshot>>> {
        let mut members = self
            .snapshots
            .by_index(&[GROUP, namespace, "/", group].concat())?;
        members.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(members)
    }

    fn csi_driver(&self, name: &str) -> Lookup<Option<Arc<CsiDriver>>> {
        self.csi_drivers.get("", name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeSelectorTerm;
    use crate::testing::{Meta, SnapshotClassExt, labelled_node as node, snapshot_class};

    fn req(key: &str, values: &[&str]) -> TopologyRequirement {
        TopologyRequirement {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn pending_stores_are_unavailable_with_their_reason() {
        let index = ClusterIndex::unavailable("no --state file");
        let err = index.snapshot("default", "s").unwrap_err();
        assert_eq!(err.kind, ResourceKind::VolumeSnapshot);
        assert_eq!(err.reason, "no --state file");
    }

    #[test]
    fn objects_are_named_at_the_version_their_group_is_served_at() {
        let index = ClusterIndex::new(SyncState::Synced);
        // Not discovered (yet): `v1`, as every kind but the group snapshot ones is watched.
        assert_eq!(
            index.api_version(ResourceKind::VolumeGroupSnapshot),
            "groupsnapshot.storage.k8s.io/v1"
        );
        index.set_served_version(ResourceKind::VolumeGroupSnapshot, "v1beta2");
        // One version for the whole group, and only for that group.
        for kind in [
            ResourceKind::VolumeGroupSnapshot,
            ResourceKind::VolumeGroupSnapshotClass,
            ResourceKind::VolumeGroupSnapshotContent,
        ] {
            assert_eq!(
                index.api_version(kind),
                "groupsnapshot.storage.k8s.io/v1beta2"
            );
        }
        assert_eq!(
            index.api_version(ResourceKind::VolumeSnapshot),
            "snapshot.storage.k8s.io/v1"
        );
        assert_eq!(index.api_version(ResourceKind::PersistentVolumeClaim), "v1");
    }

    fn term(json: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn node_selector_terms_match_through_the_index_or_a_scan() {
        let index = ClusterIndex::new(SyncState::Synced);
        index.nodes.replace([
            node("n1", &[("zone", "b")]),
            node("n2", &[("zone", "c"), ("disk", "ssd")]),
        ]);
        let any = |json| {
            let term = term(json);
            index
                .any_node_satisfies(&NodeConstraint::term(&term))
                .unwrap()
        };
        // Narrowed by the label index (`In`) or by name (`metadata.name`).
        assert!(any(
            serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]})
        ));
        assert!(!any(
            serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["d"]}]})
        ));
        assert!(any(
            serde_json::json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
        ));
        assert!(!any(
            serde_json::json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}),
        ));
        // No `In`: a scan, which must still apply every requirement.
        assert!(any(
            serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]})
        ));
        assert!(!any(
            serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b", "c"]}]})
        ));
        assert!(any(
            serde_json::json!({"matchExpressions": [{"key": "disk", "operator": "Exists"}]})
        ));
        assert!(!any(serde_json::json!({"matchExpressions": [
            {"key": "disk", "operator": "Exists"},
            {"key": "zone", "operator": "NotIn", "values": ["c"]}
        ]})));
        // Narrowed candidates must still meet the rest; each value's are looked at.
        assert!(!any(serde_json::json!({"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["c"]},
            {"key": "disk", "operator": "DoesNotExist"}
        ]})));
        assert!(any(serde_json::json!({"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["b", "c"]},
            {"key": "disk", "operator": "Exists"}
        ]})));
        // A pod's nodeSelector narrows too, and joins the terms' requirements.
        let by_zone = term(
            serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}),
        );
        let ssd: BTreeMap<String, String> = [("disk".to_string(), "ssd".to_string())].into();
        let with_selector = |terms| NodeConstraint {
            labels: &ssd,
            terms,
        };
        assert!(
            index
                .any_node_satisfies(&with_selector([None, None]))
                .unwrap()
        );
        assert!(
            !index
                .any_node_satisfies(&with_selector([Some(&by_zone), None]))
                .unwrap()
        );
        // A cache that is not loaded has no answer.
        let pending = ClusterIndex::new(SyncState::Pending("starting".into()));
        assert!(
            pending
                .any_node_satisfies(&NodeConstraint::term(&by_zone))
                .is_err()
        );
    }

    #[test]
    fn node_label_index_counts_and_intersects() {
        let index = ClusterIndex::new(SyncState::Synced);
        index.nodes.replace([
            node("n1", &[("zone", "b"), ("rack", "r1")]),
            node("n2", &[("zone", "b"), ("rack", "r2")]),
            node("n3", &[("zone", "c"), ("rack", "r1")]),
        ]);
        assert_eq!(
            index.node_label_values("zone").unwrap(),
            [("b".into(), 2), ("c".into(), 1)]
        );
        assert_eq!(
            index
                .count_nodes_matching_topology(&[req("zone", &["b"]), req("rack", &["r1"])])
                .unwrap(),
            1
        );
        assert_eq!(
            index
                .count_nodes_matching_topology(&[req("zone", &["d"])])
                .unwrap(),
            0
        );
        assert_eq!(
            index
                .count_nodes_matching_topology(&[req("zone", &["b", "c"])])
                .unwrap(),
            3
        );
    }

    #[test]
    fn claims_are_selected_by_label_within_their_namespace() {
        use crate::testing::{GroupSnapshotExt, Meta, group_snapshot, pvc};
        let index = ClusterIndex::new(SyncState::Synced);
        index.pvcs.replace([
            pvc("db", "data").label("group", "db").label("tier", "a"),
            pvc("db", "log").label("group", "db"),
            pvc("db", "web").label("group", "web"),
            pvc("db", "bare"),
            pvc("other", "data").label("group", "db"),
        ]);
        let names = |g: crate::model::VolumeGroupSnapshot| -> Vec<String> {
            let selector = g.spec.source.selector.unwrap_or_default();
            index
                .pvcs_matching("db", &selector)
                .unwrap()
                .iter()
                .map(|p| p.metadata.name.clone())
                .collect()
        };
        let g = || group_snapshot("db", "g");
        assert_eq!(names(g().selecting(&[("group", "db")])), ["data", "log"]);
        assert_eq!(
            names(g().selecting_expr("group", "In", &["db", "web"])),
            ["data", "log", "web"]
        );
        assert_eq!(names(g().selecting_expr("tier", "Exists", &[])), ["data"]);
        // Negative requirements filter the positive ones' candidates...
        assert_eq!(
            names(
                g().selecting(&[("group", "db")])
                    .selecting_expr("tier", "DoesNotExist", &[])
            ),
            ["log"]
        );
        // ...or the namespace's claims, never another namespace's.
        assert_eq!(
            names(g().selecting_expr("group", "NotIn", &["db"])),
            ["bare", "web"]
        );
        assert_eq!(names(g().selecting(&[])), ["bare", "data", "log", "web"]);
        assert!(names(g().selecting(&[("group", "none")])).is_empty());
        // The index follows label changes.
        index.pvcs.apply(pvc("db", "log").label("group", "web"));
        assert_eq!(names(g().selecting(&[("group", "db")])), ["data"]);
        assert!(
            index
                .pvcs_matching("nowhere", &Default::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn apply_and_delete_keep_indexes_in_step() {
        let index = ClusterIndex::new(SyncState::Synced);
        index.nodes.apply(node("n1", &[("zone", "b")]));
        index.nodes.apply(node("n1", &[("zone", "c")]));
        assert_eq!(index.nodes.len(), 1);
        assert_eq!(index.node_label_values("zone").unwrap(), [("c".into(), 1)]);
        index.nodes.delete("", "n1");
        assert!(index.node_label_values("zone").unwrap().is_empty());
        assert!(index.nodes.is_empty());
    }

    #[test]
    fn changes_are_signalled_once_per_write_that_changed_something() {
        let index = ClusterIndex::unavailable("starting");
        let mut changes = index.subscribe();
        let mut changed = move || {
            let seen = changes.has_changed().unwrap();
            changes.mark_unchanged();
            seen
        };
        // A list arriving: content and state change.
        index.nodes.replace([node("n1", &[("zone", "b")])]);
        assert!(changed(), "the first list");
        assert!(!changed(), "seen");
        let mut n1 = node("n1", &[("zone", "b")]);
        n1.metadata.resource_version = Some("8".into());
        index.nodes.apply(n1);
        assert!(
            !changed(),
            "only the resourceVersion differs (a status heartbeat)"
        );
        assert_eq!(
            index
                .nodes
                .get("", "n1")
                .unwrap()
                .unwrap()
                .metadata
                .resource_version,
            Some("8".into()),
            "but the new version is stored"
        );
        index.nodes.apply(node("n1", &[("zone", "c")]));
        assert!(changed(), "a label changed");
        index.nodes.apply(node("n2", &[]));
        assert!(changed(), "a new object");
        index.nodes.delete("", "gone");
        assert!(!changed(), "nothing to delete");
        index.nodes.delete("", "n2");
        assert!(changed(), "deleted");
        index.pvcs.set_state(SyncState::Pending("starting".into()));
        assert!(!changed(), "same state");
        index.pvcs.set_state(SyncState::Missing("no API".into()));
        assert!(changed(), "every store shares the signal");
    }

    #[test]
    fn snapshot_classes_are_indexed_by_driver() {
        let index = ClusterIndex::new(SyncState::Synced);
        let class = |name: &str, driver: &str| snapshot_class(name).driver(driver);
        index
            .snapshot_classes
            .replace([class("b", "d1"), class("a", "d1"), class("c", "d2")]);
        let names: Vec<_> = index
            .snapshot_classes_for_driver("d1")
            .unwrap()
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(index.snapshot_classes_for_driver("d3").unwrap().is_empty());
    }

    #[test]
    fn the_sole_default_class_is_answered_in_place_as_from_the_list() {
        let class = |name: &str, driver: &str| snapshot_class(name).driver(driver);
        // (classes, the driver asked, the sole live default expected)
        let cases = [
            (vec![], "d1", None),
            (vec![class("a", "d1")], "d1", None),
            (vec![class("a", "d1").default_class()], "d1", Some("a")),
            (vec![class("a", "d2").default_class()], "d1", None),
            (
                vec![class("a", "d1").default_class(), class("b", "d1")],
                "d1",
                Some("a"),
            ),
            (
                vec![
                    class("a", "d1").default_class(),
                    class("b", "d1").default_class(),
                ],
                "d1",
                None,
            ),
            // A default being deleted is not the snapshot controller's to pick.
            (
                vec![
                    class("a", "d1").default_class().deleting(),
                    class("b", "d1").default_class(),
                ],
                "d1",
                Some("b"),
            ),
            (
                vec![class("a", "d1").default_class().deleting()],
                "d1",
                None,
            ),
        ];
        for (classes, driver, expected) in cases {
            let index = ClusterIndex::new(SyncState::Synced);
            index.snapshot_classes.replace(classes.clone());
            let in_place = index.sole_default_snapshot_class(driver).unwrap();
            let listed = index.snapshot_classes_for_driver(driver).unwrap();
            let from_list = VolumeSnapshotClass::sole_live_default(&listed);
            let name = |c: Option<&Arc<VolumeSnapshotClass>>| c.map(|c| c.metadata.name.clone());
            assert_eq!(
                name(in_place.as_ref()),
                expected.map(String::from),
                "{classes:?}"
            );
            assert_eq!(name(from_list), expected.map(String::from), "{classes:?}");
        }
        // Not synced: no answer, as for the list.
        let index = ClusterIndex::new(SyncState::Pending("not listed yet".into()));
        assert!(index.sole_default_snapshot_class("d1").is_err());
    }

    #[test]
    fn an_index_lookup_reads_each_object_as_last_written() {
        let index = ClusterIndex::new(SyncState::Synced);
        let class = |name: &str, driver: &str| snapshot_class(name).driver(driver);
        let defaults = |driver| -> Vec<(String, bool)> {
            index
                .snapshot_classes_for_driver(driver)
                .unwrap()
                .iter()
                .map(|c| (c.metadata.name.clone(), c.is_default()))
                .collect()
        };
        index.snapshot_classes.apply(class("a", "d1"));
        index.snapshot_classes.apply(class("b", "d1"));
        // The same index value, new content: the lookup sees the new object, once.
        index
            .snapshot_classes
            .apply(class("a", "d1").default_class());
        assert_eq!(defaults("d1"), [("a".into(), true), ("b".into(), false)]);
        // Moved to another value: gone from the old one.
        index
            .snapshot_classes
            .apply(class("b", "d2").default_class());
        assert_eq!(defaults("d1"), [("a".into(), true)]);
        assert_eq!(defaults("d2"), [("b".into(), true)]);
        index.snapshot_classes.delete("", "a");
        assert!(defaults("d1").is_empty());
    }

    #[test]
    fn group_snapshot_classes_are_found_by_name_and_by_driver() {
        use crate::testing::group_snapshot_class;
        let index = ClusterIndex::new(SyncState::Synced);
        let class = |name: &str, driver: &str| group_snapshot_class(name).driver(driver);
        index.group_snapshot_classes.replace([
            class("b", "d1"),
            class("a", "d1"),
            class("c", "d2"),
        ]);
        assert_eq!(
            index.group_snapshot_class("c").unwrap().unwrap().driver,
            "d2"
        );
        assert!(index.group_snapshot_class("nope").unwrap().is_none());
        let names: Vec<_> = index
            .group_snapshot_classes_for_driver("d1")
            .unwrap()
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let pending = ClusterIndex::unavailable("not listed yet");
        assert!(pending.group_snapshot_class("c").is_err());
    }

    #[test]
    fn a_claim_finds_its_pods_and_a_group_its_members_by_index() {
        use crate::testing::{PodExt as _, SnapshotExt as _, pod, snapshot};
        let index = ClusterIndex::new(SyncState::Synced);
        index.pods.replace([
            pod("app", "web-1").claim("d", "data"),
            pod("app", "web-0")
                .claim("d", "data")
                .ephemeral("tmp", None),
            pod("other", "web-0").claim("d", "data"),
        ]);
        let names = |pods: Vec<Arc<Pod>>| -> Vec<String> {
            pods.iter().map(|p| p.metadata.name.clone()).collect()
        };
        assert_eq!(
            names(index.pods_using_claim("app", "data").unwrap()),
            ["web-0", "web-1"]
        );
        // A generic ephemeral volume's claim is `<pod>-<volume>`.
        assert_eq!(
            names(index.pods_using_claim("app", "web-0-tmp").unwrap()),
            ["web-0"]
        );
        assert!(index.pods_using_claim("app", "nope").unwrap().is_empty());
        // A pod that goes away is no longer found.
        index.pods.delete("app", "web-1");
        assert_eq!(
            names(index.pods_using_claim("app", "data").unwrap()),
            ["web-0"]
        );

        index.snapshots.replace([
            snapshot("app", "b").group_member("g"),
            snapshot("app", "a").group_status("g"),
            snapshot("app", "c"),
            snapshot("other", "d").group_member("g"),
        ]);
        let members: Vec<String> = index
            .group_members("app", "g")
            .unwrap()
            .iter()
            .map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(members, ["a", "b"]);
        assert!(
            ClusterIndex::unavailable("x")
                .pods_using_claim("app", "data")
                .is_err()
        );
    }
}
