//! Why a PersistentVolumeClaim is Pending, or bound to a volume no node can mount.
//!
//! Followed in the order the PV controller and the scheduler meet them: the claim's class (named
//! or default), its data source (the restore-readiness rule, on the existing claim), whether a
//! CSI driver of the class's provisioner is installed (its CSIDriver, when those can be read),
//! the class's topologies (the allowed-topologies rule, on the existing class), then the binding: a claim
//! waiting for its first consumer, or for a selected node that is gone. A bound claim is
//! followed to its volume, whose node affinity must match a node.

use super::{Diagnosis, ExplainError, ObjectRef, Target, Waiting, run_rule, said};
use crate::cluster::{ClusterIndex, ClusterView, ResourceKind, StateUnavailable};
use crate::model::{
    NodeConstraint, PersistentVolumeClaim, StorageClass, VolumeBindingMode, is_csi_driver_name,
    keys, migration_driver,
};
use crate::policy::Policy;
use crate::rules::default_snapshot_class::{ClaimClass, claim_class};
use crate::rules::{allowed_topologies, local_volumes, restore_readiness};

pub const NOT_FOUND: &str = "pvc.not-found";
pub const NO_STORAGE_CLASS: &str = "pvc.no-storage-class";
pub const NO_DEFAULT_CLASS: &str = "pvc.no-default-class";
pub const SEVERAL_DEFAULT_CLASSES: &str = "pvc.several-default-classes";
pub const STATIC_BINDING: &str = "pvc.static-binding";
pub const RESTORE_SOURCE: &str = "pvc.restore-source";
pub const CLONE_SOURCE_GONE: &str = "pvc.clone-source-gone";
pub const CLONE_SOURCE: &str = "pvc.clone-source";
pub const PROVISIONER_UNSERVED: &str = "pvc.provisioner-unserved";
pub const ALLOWED_TOPOLOGIES_NO_NODE: &str = "pvc.allowed-topologies-no-node";
pub const WFFC_NO_CONSUMER: &str = "pvc.wffc-no-consumer";
pub const SELECTED_NODE_GONE: &str = "pvc.selected-node-gone";
pub const VOLUME_MISSING: &str = "pvc.volume-missing";
pub const VOLUME_AFFINITY_NO_NODE: &str = "pvc.volume-affinity-no-node";

/// Every id above, in the order `docs/explain.md` lists them.
pub const FINDING_IDS: &[&str] = &[
    NOT_FOUND,
    NO_STORAGE_CLASS,
    NO_DEFAULT_CLASS,
    SEVERAL_DEFAULT_CLASSES,
    STATIC_BINDING,
    RESTORE_SOURCE,
    CLONE_SOURCE_GONE,
    CLONE_SOURCE,
    PROVISIONER_UNSERVED,
    ALLOWED_TOPOLOGIES_NO_NODE,
    WFFC_NO_CONSUMER,
    SELECTED_NODE_GONE,
    VOLUME_MISSING,
    VOLUME_AFFINITY_NO_NODE,
];

fn is_bound(pvc: &PersistentVolumeClaim) -> bool {
    pvc.bound_volume().is_some()
}

pub(super) fn waiting(index: &ClusterIndex) -> Result<Vec<Waiting>, StateUnavailable> {
    index.pvcs.scan(|it| {
        it.filter(|p| !is_bound(p))
            .map(|p| Waiting {
                target: Target {
                    kind: ResourceKind::PersistentVolumeClaim,
                    namespace: p.metadata.namespace.clone().unwrap_or_default(),
                    name: p.metadata.name.clone(),
                },
                metadata: p.metadata.clone(),
            })
            .collect()
    })
}

pub(super) fn diagnose(
    target: &Target,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<Diagnosis, ExplainError> {
    let mut d = Diagnosis::default();
    let (ns, name) = (target.namespace.as_str(), target.name.as_str());
    let me = ObjectRef::new(ResourceKind::PersistentVolumeClaim, Some(ns), name);
    let Some(pvc) = view.pvc(ns, name)? else {
        d.step(me, "does not exist");
        d.find(
            NOT_FOUND,
            format!("PersistentVolumeClaim {ns}/{name} does not exist."),
            format!("Check the name and namespace: kubectl get pvc -n {ns}"),
        );
        return Ok(d);
    };
    d.created = pvc.metadata.created_at();
    let class = claim_class(&pvc, view)?;

    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    if let Some(volume) = pvc.bound_volume() {
        // The PV controller marks a claim whose volume was deleted Lost; saying "Bound" there
        // would contradict `kubectl get pvc`.
        let fact = match phase {
            None | Some("Bound") => format!("Bound to PersistentVolume {volume}"),
            Some("Lost") => format!("Lost; was bound to PersistentVolume {volume}"),
            Some(phase) => format!("{phase}; spec.volumeName names PersistentVolume {volume}"),
        };
        d.step(me, fact);
        bound(&mut d, &pvc, volume, &class, view, policy)?;
        return Ok(d);
    }

    let phase = phase.unwrap_or("Pending");
    let size = pvc
        .requested_storage()
        .map(|q| format!(", requests {q}"))
        .unwrap_or_default();
    d.step(me, format!("{phase}; asks for {}{size}", class.describe()));

    claim_class_findings(&mut d, &pvc, &class);
    data_source(&mut d, &pvc, view, policy)?;
    if let Some(sc) = class.class() {
        class_step(&mut d, sc);
        if phase == "Pending" {
            provisioner(&mut d, &pvc, sc, view);
        }
        topologies(&mut d, sc, view, policy)?;
        if sc.binding_mode() == VolumeBindingMode::WaitForFirstConsumer && d.findings.is_empty() {
            consumer(&mut d, &pvc, sc, view)?;
        }
    }
    Ok(d)
}

fn claim_class_findings(d: &mut Diagnosis, pvc: &PersistentVolumeClaim, class: &ClaimClass) {
    let claim = format!("PersistentVolumeClaim {}", pvc.metadata.qualified_name());
    let (ns, name) = (
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        &pvc.metadata.name,
    );
    match class {
        ClaimClass::Missing(class) => d.find(
            NO_STORAGE_CLASS,
            format!("{claim} asks for StorageClass {class}, which does not exist: nothing provisions it."),
            format!(
                "Create StorageClass {class}, or recreate the claim with an existing class (storageClassName cannot be changed): kubectl get storageclass"
            ),
        ),
        ClaimClass::NoDefault => d.find(
            NO_DEFAULT_CLASS,
            format!("{claim} names no StorageClass and the cluster has no default one: nothing provisions it."),
            format!(
                "Mark a class default (kubectl annotate storageclass CLASS {}=true; the claim then gets it), or recreate the claim with storageClassName set.",
                keys::DEFAULT_STORAGE_CLASS
            ),
        ),
        ClaimClass::SeveralDefaults(names) => d.find(
            SEVERAL_DEFAULT_CLASSES,
            format!(
                "{claim} names no StorageClass and several classes are marked default ({}).",
                names.join(", ")
            ),
            format!(
                "Remove the {} annotation from all but one class, or recreate the claim with storageClassName set.",
                keys::DEFAULT_STORAGE_CLASS
            ),
        ),
        ClaimClass::NoClass => d.find(
            STATIC_BINDING,
            format!(
                "{claim} asks for no StorageClass (storageClassName: \"\"): it binds only to an existing PersistentVolume without a class that fits it, and none has bound it."
            ),
            format!(
                "Create a PersistentVolume with claimRef {ns}/{name} (or one that fits), or recreate the claim with a StorageClass."
            ),
        ),
        ClaimClass::Named(_) | ClaimClass::Default(_) => {}
    }
}

/// The restore-readiness rule on the existing claim: its denials are why the provisioner
/// cannot create the volume.
fn data_source(
    d: &mut Diagnosis,
    pvc: &PersistentVolumeClaim,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<(), ExplainError> {
    let Some(source) = pvc
        .spec
        .data_source_ref
        .as_ref()
        .map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()))
        .or_else(|| {
            pvc.spec
                .data_source
                .as_ref()
                .map(|s| (s.kind.as_str(), s.name.as_str(), None))
        })
    else {
        return Ok(());
    };
    let ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
    let (kind, name, source_ns) = source;
    let source_ns = source_ns.filter(|n| !n.is_empty()).unwrap_or(ns);
    let outcome = run_rule(&restore_readiness::RULE, pvc, view, policy)
        .transpose()?
        .unwrap_or_default();
    let claim = pvc.metadata.qualified_name();
    match kind {
        "VolumeSnapshot" => {
            let snap = view.snapshot(source_ns, name)?;
            let fact = match &snap {
                None => "does not exist".to_owned(),
                Some(s) if s.ready_to_use() => "ready to use".to_owned(),
                Some(s) if s.error().is_some() => "failed".to_owned(),
                Some(_) => "not ready to use".to_owned(),
            };
            d.step(
                ObjectRef::new(ResourceKind::VolumeSnapshot, Some(source_ns), name),
                format!("restore source: {fact}"),
            );
            for message in outcome.denials {
                d.find(
                    RESTORE_SOURCE,
                    message,
                    format!(
                        "A claim's data source cannot be changed: once the snapshot is usable the provisioner retries by itself; otherwise delete the claim (kubectl delete pvc -n {ns} {}) and create it again from a usable snapshot.",
                        pvc.metadata.name
                    ),
                );
            }
        }
        "PersistentVolumeClaim" => {
            let src = view.pvc(source_ns, name)?;
            // Another namespace is refused before the source is looked at, whether it exists
            // or not. Otherwise the rule says a missing source alone, and a source being
            // deleted first, before its size.
            let gone =
                source_ns == ns && src.as_ref().is_none_or(|s| s.metadata.is_being_deleted());
            d.step(
                ObjectRef::new(ResourceKind::PersistentVolumeClaim, Some(source_ns), name),
                format!(
                    "clone source: {}",
                    match &src {
                        None => "does not exist",
                        Some(s) if s.metadata.is_being_deleted() => "being deleted",
                        Some(_) => "exists",
                    }
                ),
            );
            for (i, message) in outcome.denials.into_iter().enumerate() {
                let id = if gone && i == 0 {
                    CLONE_SOURCE_GONE
                } else {
                    CLONE_SOURCE
                };
                d.find(
                    id,
                    message,
                    format!(
                        "A claim's data source cannot be changed: delete PersistentVolumeClaim {claim} and create it again from a source that exists, in its namespace and no larger than the clone."
                    ),
                );
            }
        }
        _ => {}
    }
    Ok(())
}

fn class_step(d: &mut Diagnosis, sc: &StorageClass) {
    let mode = match sc.binding_mode() {
        VolumeBindingMode::Immediate => "Immediate",
        VolumeBindingMode::WaitForFirstConsumer => "WaitForFirstConsumer",
    };
    let mut fact = format!("provisioner {}, binds {mode}", sc.provisioner);
    let terms: Vec<String> = sc
        .allowed_topologies
        .iter()
        .filter(|t| !t.match_label_expressions.is_empty())
        .map(|t| allowed_topologies::describe_term(&t.match_label_expressions))
        .collect();
    if !terms.is_empty() {
        fact.push_str(&format!(", allows {}", terms.join(" or ")));
    }
    d.step(
        ObjectRef::new(ResourceKind::StorageClass, None, &sc.metadata.name),
        fact,
    );
}

/// Whether a CSI driver serves the class's provisioner: a CSI driver registers a CSIDriver
/// named after itself, so none of the provisioner's name means nothing provisions the claim.
/// An in-tree provisioner is served by its CSI migration driver, so that one is looked up; an
/// in-tree provisioner without one (`kubernetes.io/no-provisioner`: static binding), or an
/// external one whose name no CSIDriver can have (`rancher.io/local-path`), has none to look
/// for. CSIDrivers that cannot be read are not a finding: nothing can be told.
fn provisioner(
    d: &mut Diagnosis,
    pvc: &PersistentVolumeClaim,
    sc: &StorageClass,
    view: &dyn ClusterView,
) {
    let provisioner = sc.provisioner.as_str();
    let migrated = migration_driver(provisioner);
    let driver = match migrated {
        Some(driver) => driver,
        // Other in-tree provisioners, and external ones named as no CSI driver can be.
        None if provisioner.starts_with("kubernetes.io/") || !is_csi_driver_name(provisioner) => {
            return;
        }
        None => provisioner,
    };
    let Ok(found) = view.csi_driver(driver) else {
        return;
    };
    let me = ObjectRef::new(ResourceKind::CsiDriver, None, driver);
    let (installed, missing) = match migrated {
        Some(_) => (
            format!("installed; serves {provisioner} by CSI migration"),
            format!("does not exist (it would serve {provisioner} by CSI migration)"),
        ),
        None => ("installed".to_owned(), "does not exist".to_owned()),
    };
    if found.is_some() {
        d.step(me, installed);
        return;
    }
    d.step(me, missing);
    let claim = format!("PersistentVolumeClaim {}", pvc.metadata.qualified_name());
    let class = &sc.metadata.name;
    let (message, fix) = match migrated {
        Some(_) => (
            format!(
                "{claim} uses StorageClass {class}, whose in-tree provisioner {provisioner} is served by CSI driver {driver} (CSI migration), and no CSIDriver named {driver} exists: that driver is not installed (or did not create its CSIDriver object), so nothing provisions the claim."
            ),
            format!(
                "Install the CSI driver {driver} (kubectl get csidriver lists the installed ones), or recreate the claim with a StorageClass whose provisioner is installed (kubectl get storageclass; storageClassName cannot be changed)."
            ),
        ),
        None => (
            format!(
                "{claim} uses StorageClass {class}, whose provisioner is {provisioner}, and no CSIDriver named {provisioner} exists: the CSI driver is not installed (or did not create its CSIDriver object), so nothing provisions the claim. If {provisioner} is an external provisioner that is not a CSI driver, it has no CSIDriver: check that it is running."
            ),
            format!(
                "Install the CSI driver {provisioner} (kubectl get csidriver lists the installed ones; for a provisioner that is not a CSI driver, check that its pods are running), or recreate the claim with a StorageClass whose provisioner is installed (kubectl get storageclass; storageClassName cannot be changed)."
            ),
        ),
    };
    d.find(PROVISIONER_UNSERVED, message, fix);
}

/// The allowed-topologies rule on the existing class.
fn topologies(
    d: &mut Diagnosis,
    sc: &StorageClass,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<(), ExplainError> {
    let outcome = run_rule(&allowed_topologies::RULE, sc, view, policy)
        .transpose()?
        .unwrap_or_default();
    let said = said(outcome);
    if said.is_empty() {
        return Ok(());
    }
    nodes_step(
        d,
        sc.allowed_topologies
            .iter()
            .flat_map(|t| t.match_label_expressions.iter().map(|r| r.key.as_str())),
        view,
    )?;
    for message in said {
        d.find(
            ALLOWED_TOPOLOGIES_NO_NODE,
            message,
            format!(
                "allowedTopologies cannot be changed: recreate StorageClass {} with topologies your nodes have (kubectl get nodes -L {}), or add nodes there.",
                sc.metadata.name,
                keys::ZONE
            ),
        );
    }
    Ok(())
}

/// One line about all nodes: how many, and the values of the label keys that matter here.
fn nodes_step<'a>(
    d: &mut Diagnosis,
    keys: impl Iterator<Item = &'a str>,
    view: &dyn ClusterView,
) -> Result<(), ExplainError> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    let total = view.count_nodes_matching_topology(&[])?;
    let mut fact = format!("{total} node{}", if total == 1 { "" } else { "s" });
    for key in keys {
        let values = view.node_label_values(key)?;
        let values = if values.is_empty() {
            "none".to_owned()
        } else {
            values
                .iter()
                .map(|(v, n)| format!("{v} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        fact.push_str(&format!("; {key}: {values}"));
    }
    if d.chain.iter().all(|s| s.object.kind != "Node") {
        d.step(ObjectRef::new(ResourceKind::Node, None, "(all)"), fact);
    }
    Ok(())
}

/// A WaitForFirstConsumer claim: provisioned once a pod using it is scheduled, on that node.
fn consumer(
    d: &mut Diagnosis,
    pvc: &PersistentVolumeClaim,
    sc: &StorageClass,
    view: &dyn ClusterView,
) -> Result<(), ExplainError> {
    let claim = format!("PersistentVolumeClaim {}", pvc.metadata.qualified_name());
    let ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
    match pvc.metadata.annotation(keys::SELECTED_NODE) {
        Some(node) if view.node(node)?.is_none() => {
            d.step(
                ObjectRef::new(ResourceKind::Node, None, node),
                format!(
                    "selected for the claim ({}); does not exist",
                    keys::SELECTED_NODE
                ),
            );
            d.find(
                SELECTED_NODE_GONE,
                format!(
                    "{claim} was to be provisioned on Node {node}, which no longer exists; the provisioner keeps trying for that node."
                ),
                format!(
                    "Remove the annotation so the scheduler picks another node: kubectl annotate pvc -n {ns} {} {}-",
                    pvc.metadata.name,
                    keys::SELECTED_NODE
                ),
            );
        }
        Some(node) => d.step(
            ObjectRef::new(ResourceKind::Node, None, node),
            format!(
                "selected for the claim; provisioning there with {}",
                sc.provisioner
            ),
        ),
        None => {
            // Pods are cached only when the controller runs: unknown is said, not guessed.
            let pods = view.pods_using_claim(ns, &pvc.metadata.name).ok();
            let names: Vec<&str> = pods
                .iter()
                .flatten()
                .map(|p| p.metadata.name.as_str())
                .collect();
            let (users, fix) = match (&pods, names.first()) {
                (Some(_), Some(first)) => (
                    format!("Pod {} uses it and is not scheduled yet", names.join(", ")),
                    format!(
                        "See why the pod is not scheduled: storage-admission explain pod -n {ns} {first}"
                    ),
                ),
                (found, _) => (
                    if found.is_some() {
                        "no pod uses it"
                    } else {
                        "no pod has been"
                    }
                    .to_owned(),
                    format!(
                        "Start a pod that mounts it (spec.volumes[].persistentVolumeClaim.claimName: {}), or, if one exists, see why it is not scheduled: kubectl get pods -n {ns} --field-selector=status.phase=Pending",
                        pvc.metadata.name
                    ),
                ),
            };
            d.find(
                WFFC_NO_CONSUMER,
                format!(
                    "{claim} uses StorageClass {}, which binds WaitForFirstConsumer: it is provisioned only once a pod that uses it is scheduled, and {users}.",
                    sc.metadata.name
                ),
                fix,
            )
        }
    }
    Ok(())
}

/// A bound claim: its volume must exist and some node must satisfy its node affinity.
fn bound(
    d: &mut Diagnosis,
    pvc: &PersistentVolumeClaim,
    volume: &str,
    class: &ClaimClass,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<(), ExplainError> {
    let claim = format!("PersistentVolumeClaim {}", pvc.metadata.qualified_name());
    let Some(pv) = view.pv(volume)? else {
        d.step(
            ObjectRef::new(ResourceKind::PersistentVolume, None, volume),
            "does not exist",
        );
        // A claim written with spec.volumeName (static provisioning, pre-bound) waits Pending
        // for that volume to be created; only a claim that was bound loses its volume.
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending") {
            d.find(
                VOLUME_MISSING,
                format!("{claim} names PersistentVolume {volume} in spec.volumeName, which does not exist yet: the claim stays Pending until that volume is created (a claim that names its volume is never provisioned by its class)."),
                format!("Create PersistentVolume {volume} for it (kubectl get pv {volume}), or recreate the claim without spec.volumeName so that its StorageClass provisions a volume."),
            );
            return Ok(());
        }
        d.find(
            VOLUME_MISSING,
            format!("{claim} is bound to PersistentVolume {volume}, which does not exist (Lost): pods using it cannot start."),
            "Restore the volume (from a backup or snapshot) into a new claim; a claim bound to a deleted volume does not recover by itself.",
        );
        return Ok(());
    };
    let terms = pv.node_selector_terms();
    let affinity = if terms.is_empty() {
        "no node affinity (any node)".to_owned()
    } else {
        format!(
            "node affinity {}",
            terms
                .iter()
                .map(local_volumes::describe_term)
                .collect::<Vec<_>>()
                .join(" or ")
        )
    };
    let driver = pv
        .csi_driver()
        .map(|drv| format!("{drv}, "))
        .unwrap_or_default();
    d.step(
        ObjectRef::new(ResourceKind::PersistentVolume, None, volume),
        format!("{driver}{affinity}"),
    );
    if let Some(sc) = class.class() {
        class_step(d, sc);
    }
    let mut reachable = terms.is_empty();
    for term in terms {
        if view.any_node_satisfies(&NodeConstraint::term(term))? {
            reachable = true;
            break;
        }
    }
    if reachable {
        d.settled = Some(format!("bound to PersistentVolume {volume}"));
        return Ok(());
    }
    nodes_step(
        d,
        terms
            .iter()
            .flat_map(|t| t.match_expressions.iter().map(|r| r.key.as_str())),
        view,
    )?;
    d.find(
        VOLUME_AFFINITY_NO_NODE,
        format!(
            "{claim} is bound to PersistentVolume {volume}, whose {affinity} matches no current node: every pod using the claim stays Pending (\"volume node affinity conflict\")."
        ),
        "Add nodes that match the volume's node affinity (e.g. a node pool in that zone), or move the data: snapshot the volume and restore it with a class whose topology your nodes have.",
    );
    if let Some(sc) = class.class() {
        topologies(d, sc, view, policy)?;
    }
    Ok(())
}
