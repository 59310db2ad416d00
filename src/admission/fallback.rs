//! The restore fallback at the edge: before a restoring PVC is decided, a VolumeSnapshot it
//! names that the synced cache lacks (it may have been created a moment ago) is looked up once
//! ([`crate::cluster::fetch`]); the rule then decides over the cache plus that one answer
//! ([`Overlay`]). The rule itself stays pure and unaware of it.
//!
//! - found: decided with it, as if the cache had it;
//! - 404: genuinely missing: decided on the cache, which denies as before;
//! - timeout, error, busy: the lookup is unavailable, and the rule's `whenStateUnavailable`
//!   decides, as for any state that is not loaded.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::engine::{self, decide};
use super::{AdmissionRequest, ReviewError, Reviewed, Webhook, review};
use crate::cluster::fetch::{FetchFailure, Fetched, SnapshotFetcher};
use crate::cluster::{ClusterView, Lookup, ResourceKind, Unavailable};
use crate::model::{
    Node, NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim, StorageClass,
    TopologyRequirement, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent,
};
use crate::policy::Policy;
use crate::rules::{Operation, Phase, RuleId, restore_readiness};

/// The VolumeSnapshot (namespace, name) to look up before deciding this review: only for a
/// validating PVC CREATE that the restore-readiness rule will judge, whose source is a
/// VolumeSnapshot that the cache — synced — does not hold. A cache that is not synced (or has
/// no snapshot CRDs) is not second-guessed: the rule reports it unavailable as before.
pub fn needed(
    phase: Phase,
    req: &AdmissionRequest,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Option<(String, String)> {
    if phase != Phase::Validating
        || req.operation != Operation::Create
        || req.sub_resource.is_some()
        || engine::handled_kind(req) != Some(ResourceKind::PersistentVolumeClaim)
        || !engine::rule_applies(RuleId::RestoreReadiness, req, policy)
    {
        return None;
    }
    // An object the rule cannot read is refused by the engine; nothing to look up for it.
    let pvc: PersistentVolumeClaim = serde_json::from_str(req.object.as_deref()?.get()).ok()?;
    let namespace = pvc
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(req.namespace.as_deref())
        .filter(|n| !n.is_empty())?;
    let (ns, name) = restore_readiness::snapshot_to_look_up(&pvc, namespace)?;
    match view.snapshot(ns, name) {
        Ok(None) => Some((ns.to_owned(), name.to_owned())),
        Ok(Some(_)) | Err(_) => None,
    }
}

/// The cache, with one VolumeSnapshot answered by a lookup instead.
pub struct Overlay<'a> {
    base: &'a dyn ClusterView,
    namespace: &'a str,
    name: &'a str,
    answer: Lookup<Option<Arc<VolumeSnapshot>>>,
}

impl<'a> Overlay<'a> {
    pub fn new(
        base: &'a dyn ClusterView,
        namespace: &'a str,
        name: &'a str,
        fetched: &Fetched,
    ) -> Self {
        let unavailable = |what: String| {
            Err(Unavailable {
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
            namespace,
            name,
            answer,
        }
    }
}

impl ClusterView for Overlay<'_> {
    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<VolumeSnapshot>>> {
        if namespace == self.namespace && name == self.name {
            self.answer.clone()
        } else {
            self.base.snapshot(namespace, name)
        }
    }
    fn snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        self.base.snapshot_class(name)
    }
    fn snapshot_classes_for_driver(&self, driver: &str) -> Lookup<Vec<Arc<VolumeSnapshotClass>>> {
        self.base.snapshot_classes_for_driver(driver)
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
    fn node_label_values(&self, key: &str) -> Lookup<BTreeMap<String, usize>> {
        self.base.node_label_values(key)
    }
    fn count_nodes_matching_topology(&self, term: &[TopologyRequirement]) -> Lookup<usize> {
        self.base.count_nodes_matching_topology(term)
    }
    fn any_node_matches_selector(&self, term: &NodeSelectorTerm) -> Lookup<bool> {
        self.base.any_node_matches_selector(term)
    }
}

/// [`super::handle`] with the fallback: decode, look the snapshot up if [`needed`], decide,
/// encode. Without a fetcher it is exactly `handle`. Returns the lookup's answer too, for
/// the edge's metrics and logs.
pub async fn handle(
    webhook: Webhook,
    body: &[u8],
    view: &dyn ClusterView,
    policy: &Policy,
    fetcher: Option<&dyn SnapshotFetcher>,
) -> Result<(Reviewed, Option<Fetched>), ReviewError> {
    let (api_version, request) = review::decode(body)?;
    let phase = webhook.phase();
    let lookup = match fetcher {
        Some(fetcher) => match needed(phase, &request, view, policy) {
            Some((ns, name)) => {
                let fetched = fetcher.snapshot(&ns, &name).await;
                Some((ns, name, fetched))
            }
            None => None,
        },
        None => None,
    };
    let verdict = match &lookup {
        Some((ns, name, fetched)) => decide(
            phase,
            &request,
            &Overlay::new(view, ns, name, fetched),
            policy,
        ),
        None => decide(phase, &request, view, policy),
    };
    let body = review::encode(&api_version, &request.uid, &verdict)?;
    Ok((
        Reviewed {
            request,
            verdict,
            body,
        },
        lookup.map(|(_, _, fetched)| fetched),
    ))
}

#[cfg(test)]
mod tests;
