//! The restore fallback at the edge. A VolumeSnapshot that a rule looks up and the synced
//! cache lacks may have been created a moment ago (a backup tool creates the snapshot, then
//! the PVC restoring from it, faster than the watch delivers). So the edge decides once through
//! a [`Lookaside`] view that records such misses; when the decision read a miss and a fetcher
//! is present (`run`), the snapshot is looked up once ([`crate::cluster::fetch`]) and the
//! review decided again over the cache plus that one answer. The rules stay pure and unaware:
//! they see a cache that has the snapshot, or not, or cannot say.
//!
//! - found: decided with it, as if the cache had it;
//! - 404: genuinely missing: decided on the cache, which denies as before;
//! - timeout, error, busy: the lookup is unavailable, and the rule's `whenStateUnavailable`
//!   decides, as for any state that is not loaded.
//!
//! A cache that is not synced (or has no snapshot CRDs) answers "unavailable", not "missing",
//! so it is never second-guessed here.

use std::sync::{Arc, Mutex, PoisonError};

use crate::cluster::fetch::{FetchFailure, Fetched};
use crate::cluster::{ClusterView, Lookup, ResourceKind, StateUnavailable};
use crate::model::{
    Node, NodeConstraint, PersistentVolume, PersistentVolumeClaim, StorageClass,
    TopologyRequirement, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent,
};

/// A VolumeSnapshot (namespace, name) that a rule looked up and the cache did not hold.
pub type Miss = (String, String);

/// The cache as the rules see it during one review: it records the first VolumeSnapshot a
/// rule missed, and can answer that one snapshot from a lookup instead of the cache.
pub struct Lookaside<'a> {
    base: &'a dyn ClusterView,
    /// Only the first miss is kept: the one lookup made per review is for it.
    missed: Mutex<Option<Miss>>,
    answer: Option<(Miss, Lookup<Option<Arc<VolumeSnapshot>>>)>,
}

impl<'a> Lookaside<'a> {
    /// The cache, recording misses.
    pub fn recording(base: &'a dyn ClusterView) -> Self {
        Self {
            base,
            missed: Mutex::new(None),
            answer: None,
        }
    }

    /// The cache, with the snapshot `miss` answered by `fetched` instead.
    pub fn answered(base: &'a dyn ClusterView, miss: Miss, fetched: &Fetched) -> Self {
        let (namespace, name) = (&miss.0, &miss.1);
        let unavailable = |what: String| {
            Err(StateUnavailable {
                kind: ResourceKind::VolumeSnapshot,
                reason: format!(
                    "VolumeSnapshot {namespace}/{name} is not in storage-admission's cache yet, and {what}"
                ),
            })
        };
        let answer = match fetched {
            Fetched::Found(snapshot) => Ok(Some(snapshot.clone())),
            Fetched::NotFound => Ok(None),
            Fetched::Failed(FetchFailure::Timeout(after)) => unavailable(format!(
                "the API server did not answer its lookup within {after:?}"
            )),
            Fetched::Failed(FetchFailure::Busy) => {
                unavailable("too many such lookups are in flight".to_owned())
            }
            Fetched::Failed(FetchFailure::Error(error)) => {
                unavailable(format!("looking it up failed: {error}"))
            }
        };
        Self {
            base,
            missed: Mutex::new(None),
            answer: Some((miss, answer)),
        }
    }

    /// The first snapshot a rule missed, if any.
    pub fn missed(&self) -> Option<Miss> {
        self.missed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClusterView for Lookaside<'_> {
    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<VolumeSnapshot>>> {
        if let Some(((ns, n), answer)) = &self.answer
            && ns == namespace
            && n == name
        {
            return answer.clone();
        }
        let found = self.base.snapshot(namespace, name);
        if matches!(found, Ok(None)) {
            self.missed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| (namespace.to_owned(), name.to_owned()));
        }
        found
    }
    fn snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        self.base.snapshot_class(name)
    }
    fn snapshot_classes_for_driver(&self, driver: &str) -> Lookup<Vec<Arc<VolumeSnapshotClass>>> {
        self.base.snapshot_classes_for_driver(driver)
    }
    fn sole_default_snapshot_class(
        &self,
        driver: &str,
    ) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        self.base.sole_default_snapshot_class(driver)
    }
    fn snapshot_content(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotContent>>> {
        self.base.snapshot_content(name)
    }
    fn storage_class(&self, name: &str) -> Lookup<Option<Arc<StorageClass>>> {
        self.base.storage_class(name)
    }
    fn default_storage_classes(&self) -> Lookup<Vec<Arc<StorageClass>>> {
        self.base.default_storage_classes()
    }
    fn pvc(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<PersistentVolumeClaim>>> {
        self.base.pvc(namespace, name)
    }
    fn pv(&self, name: &str) -> Lookup<Option<Arc<PersistentVolume>>> {
        self.base.pv(name)
    }
    fn node(&self, name: &str) -> Lookup<Option<Arc<Node>>> {
        self.base.node(name)
    }
    fn node_label_values(&self, key: &str) -> Lookup<Vec<(String, usize)>> {
        self.base.node_label_values(key)
    }
    fn count_nodes_matching_topology(&self, term: &[TopologyRequirement]) -> Lookup<usize> {
        self.base.count_nodes_matching_topology(term)
    }
    fn any_node_satisfies(&self, constraint: &NodeConstraint<'_>) -> Lookup<bool> {
        self.base.any_node_satisfies(constraint)
    }
    fn pvcs_matching(
        &self,
        namespace: &str,
        selector: &crate::model::LabelSelector,
    ) -> Lookup<Vec<Arc<PersistentVolumeClaim>>> {
        self.base.pvcs_matching(namespace, selector)
    }
    fn group_snapshot_class(
        &self,
        name: &str,
    ) -> Lookup<Option<Arc<crate::model::VolumeGroupSnapshotClass>>> {
        self.base.group_snapshot_class(name)
    }
    fn group_snapshot_classes_for_driver(
        &self,
        driver: &str,
    ) -> Lookup<Vec<Arc<crate::model::VolumeGroupSnapshotClass>>> {
        self.base.group_snapshot_classes_for_driver(driver)
    }
    fn group_snapshot(
        &self,
        namespace: &str,
        name: &str,
    ) -> Lookup<Option<Arc<crate::model::VolumeGroupSnapshot>>> {
        self.base.group_snapshot(namespace, name)
    }
    fn group_snapshot_content(
        &self,
        name: &str,
    ) -> Lookup<Option<Arc<crate::model::VolumeGroupSnapshotContent>>> {
        self.base.group_snapshot_content(name)
    }
    fn pod(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<crate::model::Pod>>> {
        self.base.pod(namespace, name)
    }
    fn pods_using_claim(&self, namespace: &str, name: &str) -> Lookup<Vec<Arc<crate::model::Pod>>> {
        self.base.pods_using_claim(namespace, name)
    }
    fn group_members(&self, namespace: &str, group: &str) -> Lookup<Vec<Arc<VolumeSnapshot>>> {
        self.base.group_members(namespace, group)
    }
    fn csi_driver(&self, name: &str) -> Lookup<Option<Arc<crate::model::CsiDriver>>> {
        self.base.csi_driver(name)
    }
}

#[cfg(test)]
mod tests;
