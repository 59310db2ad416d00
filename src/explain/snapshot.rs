//! Why a VolumeSnapshot is not ready to use.
//!
//! Followed as the snapshot controller meets them: a spec the snapshot-validation rule refuses
//! (the CRDs' CEL checks, as for a CREATE), and nothing further; the content it is bound to (an error it
//! reports, or a content that is gone or bound to another snapshot); else its source claim
//! (missing, not bound) and its class (missing, of another driver than the claim's, or no
//! usable default: the default-snapshot-class rule, on the existing snapshot).

use super::{Diagnosis, ExplainError, ObjectRef, Target, Waiting, run_rule, said};
use crate::cluster::{ClusterIndex, ClusterView, ResourceKind, StateUnavailable};
use crate::model::{VolumeSnapshot, VolumeSnapshotContent, keys};
use crate::policy::Policy;
use crate::rules::default_snapshot_class::{self, ClaimDriver, claim_driver};
use crate::rules::snapshot_validation;

pub const NOT_FOUND: &str = "snapshot.not-found";
pub const INVALID: &str = "snapshot.invalid";
pub const SOURCE_MISSING: &str = "snapshot.source-missing";
pub const SOURCE_UNBOUND: &str = "snapshot.source-unbound";
pub const CLASS_MISSING: &str = "snapshot.class-missing";
pub const NO_DEFAULT_CLASS: &str = "snapshot.no-default-class";
pub const SEVERAL_DEFAULT_CLASSES: &str = "snapshot.several-default-classes";
pub const CLASS_DRIVER_MISMATCH: &str = "snapshot.class-driver-mismatch";
pub const CONTENT_ERROR: &str = "snapshot.content-error";
pub const CONTENT_MISSING: &str = "snapshot.content-missing";
pub const CONTENT_BOUND_ELSEWHERE: &str = "snapshot.content-bound-elsewhere";

/// Every id above, in the order `docs/explain.md` lists them.
pub const FINDING_IDS: &[&str] = &[
    NOT_FOUND,
    INVALID,
    SOURCE_MISSING,
    SOURCE_UNBOUND,
    CLASS_MISSING,
    NO_DEFAULT_CLASS,
    SEVERAL_DEFAULT_CLASSES,
    CLASS_DRIVER_MISMATCH,
    CONTENT_ERROR,
    CONTENT_MISSING,
    CONTENT_BOUND_ELSEWHERE,
];

pub(super) fn waiting(index: &ClusterIndex) -> Result<Vec<Waiting>, StateUnavailable> {
    index.snapshots.scan(|it| {
        it.filter(|s| !s.ready_to_use())
            .map(|s| Waiting {
                target: Target {
                    kind: ResourceKind::VolumeSnapshot,
                    namespace: s.metadata.namespace.clone().unwrap_or_default(),
                    name: s.metadata.name.clone(),
                },
                metadata: s.metadata.clone(),
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
    let me = ObjectRef::new(ResourceKind::VolumeSnapshot, Some(ns), name);
    let Some(snap) = view.snapshot(ns, name)? else {
        d.step(me, "does not exist");
        d.find(
            NOT_FOUND,
            format!("VolumeSnapshot {ns}/{name} does not exist."),
            format!("Check the name and namespace: kubectl get volumesnapshot -n {ns}"),
        );
        return Ok(d);
    };
    d.created = snap.metadata.created_at();
    let class = snap
        .spec
        .volume_snapshot_class_name
        .as_deref()
        .filter(|c| !c.is_empty());
    let state = if snap.ready_to_use() {
        "ready to use"
    } else {
        "not ready to use"
    };
    let source = &snap.spec.source;
    let from = match (
        source.persistent_volume_claim_name.as_deref(),
        source.volume_snapshot_content_name.as_deref(),
    ) {
        (Some(pvc), _) => format!("of PersistentVolumeClaim {pvc}"),
        (None, Some(content)) => format!("pre-provisioned from VolumeSnapshotContent {content}"),
        (None, None) => "with no source".to_owned(),
    };
    let class_text = class.map_or_else(
        || "no VolumeSnapshotClass named".to_owned(),
        |c| format!("class {c}"),
    );
    d.step(me, format!("{state}; {from}, {class_text}"));
    if !snap.ready_to_use() && invalid(&mut d, &snap, policy)? {
        return Ok(d);
    }

    // The content, once one is bound (or named, pre-provisioned): it has the last word.
    let content_name = snap
        .bound_content_name()
        .or(source.volume_snapshot_content_name.as_deref())
        .filter(|c| !c.is_empty());
    if let Some(content_name) = content_name {
        let content = view.snapshot_content(content_name)?;
        content_findings(&mut d, &snap, content_name, content.as_deref());
        if snap.ready_to_use() && d.findings.is_empty() {
            d.settled = Some(format!(
                "ready to use, bound to VolumeSnapshotContent {content_name}"
            ));
        }
        // Bound (or pre-provisioned): the source and class no longer matter.
        return Ok(d);
    }
    if let Some(error) = snap.error() {
        quote_error(&mut d, &snap, None, error.message.as_deref());
    }

    let Some(pvc_name) = source
        .persistent_volume_claim_name
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return Ok(d);
    };
    let snap_name = snap.metadata.qualified_name();
    let Some(pvc) = view.pvc(ns, pvc_name)? else {
        d.step(
            ObjectRef::new(ResourceKind::PersistentVolumeClaim, Some(ns), pvc_name),
            "does not exist",
        );
        d.find(
            SOURCE_MISSING,
            format!("VolumeSnapshot {snap_name} snapshots PersistentVolumeClaim {ns}/{pvc_name}, which does not exist."),
            format!(
                "The source cannot be changed: create the claim, or delete the snapshot (kubectl delete volumesnapshot -n {ns} {name}) and snapshot an existing claim (kubectl get pvc -n {ns})."
            ),
        );
        return Ok(d);
    };
    let driver = claim_driver(&pvc, view)?;
    let pvc_ref = ObjectRef::new(ResourceKind::PersistentVolumeClaim, Some(ns), pvc_name);
    let Some(volume) = pvc.bound_volume() else {
        d.step(pvc_ref, "not bound to a volume yet");
        d.find(
            SOURCE_UNBOUND,
            format!(
                "VolumeSnapshot {snap_name} waits for its source PersistentVolumeClaim {ns}/{pvc_name}, which is not bound to a volume yet: there is nothing to snapshot."
            ),
            format!("See why the claim is not bound: storage-admission explain pvc -n {ns} {pvc_name}"),
        );
        return Ok(d);
    };
    let driver_text = match (driver.driver(), &driver) {
        (Some(name), _) => format!("CSI driver {name}"),
        (None, ClaimDriver::Unknown(why)) => format!("CSI driver unknown: {why}"),
        (None, _) => "CSI driver unknown".to_owned(),
    };
    d.step(
        pvc_ref,
        format!("bound to PersistentVolume {volume}; {driver_text}"),
    );

    match class {
        Some(class_name) => named_class(&mut d, &snap, class_name, &driver, view)?,
        None if snap.bound_content_name().is_none() => {
            default_class(&mut d, &snap, &driver, view, policy)?
        }
        None => {}
    }
    Ok(d)
}

/// The snapshot-validation rule on the existing snapshot, as a CREATE: whether it found the
/// spec invalid (each problem a finding). The snapshot controller checks the source first and
/// goes no further with a snapshot that fails; neither do the findings. The rule reads an empty
/// view: its checks of the spec need none, and its one warning (no snapshot class for the
/// source's provisioner) is the class findings' question, which would otherwise read the
/// claim's class and its driver's classes even for a snapshot bound long ago.
fn invalid(
    d: &mut Diagnosis,
    snap: &VolumeSnapshot,
    policy: &Policy,
) -> Result<bool, ExplainError> {
    let spec_only = ClusterIndex::unavailable("explain checks the snapshot's spec only");
    let outcome = run_rule(&snapshot_validation::RULE, snap, &spec_only, policy)
        .transpose()?
        .unwrap_or_default();
    if outcome.denials.is_empty() {
        return Ok(false);
    }
    let ns = snap.metadata.namespace.as_deref().unwrap_or_default();
    let fix = format!(
        "A snapshot's source cannot be changed: delete it (kubectl delete volumesnapshot -n {ns} {}) and create it again with the spec corrected as the message says.",
        snap.metadata.name
    );
    for message in outcome.denials {
        d.find(INVALID, message, fix.clone());
    }
    Ok(true)
}

fn content_findings(
    d: &mut Diagnosis,
    snap: &VolumeSnapshot,
    content_name: &str,
    content: Option<&VolumeSnapshotContent>,
) {
    let snap_name = snap.metadata.qualified_name();
    let ns = snap.metadata.namespace.as_deref().unwrap_or_default();
    let content_ref = ObjectRef::new(ResourceKind::VolumeSnapshotContent, None, content_name);
    let Some(content) = content else {
        d.step(content_ref, "does not exist");
        d.find(
            CONTENT_MISSING,
            format!("VolumeSnapshot {snap_name} is bound to VolumeSnapshotContent {content_name}, which does not exist: the snapshot cannot become ready."),
            format!(
                "Delete the snapshot and take a new one (kubectl delete volumesnapshot -n {ns} {}); for a pre-provisioned snapshot, create the content first.",
                snap.metadata.name
            ),
        );
        return;
    };
    let r = &content.spec.volume_snapshot_ref;
    let elsewhere = r.name.as_deref().is_some_and(|n| n != snap.metadata.name)
        || r.namespace.as_deref().is_some_and(|n| n != ns)
        || matches!((&r.uid, &snap.metadata.uid), (Some(a), Some(b)) if a != b);
    let ready = content.status.as_ref().and_then(|s| s.ready_to_use) == Some(true);
    let fact = format!(
        "driver {}, {}, for VolumeSnapshot {}/{}",
        content.spec.driver,
        if ready { "ready" } else { "not ready" },
        r.namespace.as_deref().unwrap_or("?"),
        r.name.as_deref().unwrap_or("?"),
    );
    d.step(content_ref, fact);
    if elsewhere {
        // The reference reads as this very snapshot only when its name and namespace match it
        // (the uid differs: a snapshot deleted and recreated); then say so.
        let same_name = r.name.as_deref() == Some(snap.metadata.name.as_str())
            && r.namespace.as_deref().is_none_or(|n| n == ns);
        d.find(
            CONTENT_BOUND_ELSEWHERE,
            format!(
                "VolumeSnapshot {snap_name} points at VolumeSnapshotContent {content_name}, but the content is bound to VolumeSnapshot {}/{}{}: a content binds one snapshot only.",
                r.namespace.as_deref().unwrap_or("?"),
                r.name.as_deref().unwrap_or("?"),
                if same_name { " (another object of the same name)" } else { "" }
            ),
            "Delete this snapshot and create it again with its own content (for a pre-provisioned snapshot, a new VolumeSnapshotContent whose volumeSnapshotRef names it).",
        );
    }
    let error = content
        .status
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .and_then(|e| e.message.as_deref())
        .or_else(|| snap.error().and_then(|e| e.message.as_deref()));
    if content
        .status
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .is_some()
        || snap.error().is_some()
    {
        quote_error(d, snap, Some(content_name), error);
    }
}

fn quote_error(
    d: &mut Diagnosis,
    snap: &VolumeSnapshot,
    content: Option<&str>,
    message: Option<&str>,
) {
    let snap_name = snap.metadata.qualified_name();
    let ns = snap.metadata.namespace.as_deref().unwrap_or_default();
    let message = message.filter(|m| !m.is_empty()).unwrap_or("no message");
    let by = content.map_or_else(String::new, |c| format!(" (VolumeSnapshotContent {c})"));
    d.find(
        CONTENT_ERROR,
        format!("VolumeSnapshot {snap_name} failed{by}: \"{message}\""),
        format!(
            "Fix what the CSI driver reports, then delete the snapshot and take a new one: kubectl describe volumesnapshot -n {ns} {}",
            snap.metadata.name
        ),
    );
}

fn named_class(
    d: &mut Diagnosis,
    snap: &VolumeSnapshot,
    class_name: &str,
    driver: &ClaimDriver,
    view: &dyn ClusterView,
) -> Result<(), ExplainError> {
    let snap_name = snap.metadata.qualified_name();
    let class_ref = ObjectRef::new(ResourceKind::VolumeSnapshotClass, None, class_name);
    let Some(class) = view.snapshot_class(class_name)? else {
        d.step(class_ref, "does not exist");
        d.find(
            CLASS_MISSING,
            format!("VolumeSnapshot {snap_name} names VolumeSnapshotClass {class_name}, which does not exist."),
            "Create the class, or delete the snapshot and take it again with an existing class: kubectl get volumesnapshotclass",
        );
        return Ok(());
    };
    d.step(class_ref, format!("driver {}", class.driver));
    if let Some(driver) = driver.driver()
        && !class.driver.is_empty()
        && class.driver != *driver
    {
        d.find(
            CLASS_DRIVER_MISMATCH,
            format!(
                "VolumeSnapshot {snap_name} uses VolumeSnapshotClass {class_name} of CSI driver {}, but its source volume is of {driver}: that driver's snapshotter never takes it.",
                class.driver
            ),
            format!(
                "Delete the snapshot and take it again with a class of {driver}: kubectl get volumesnapshotclass (DRIVER column)."
            ),
        );
    }
    Ok(())
}

/// No class named: the default-snapshot-class rule, asked as the audit asks it.
fn default_class(
    d: &mut Diagnosis,
    snap: &VolumeSnapshot,
    driver: &ClaimDriver,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<(), ExplainError> {
    let outcome = run_rule(&default_snapshot_class::RULE, snap, view, policy)
        .transpose()?
        .unwrap_or_default();
    let Some(driver) = driver.driver() else {
        return Ok(());
    };
    let classes = view.snapshot_classes_for_driver(driver)?;
    let defaults: Vec<&str> = classes
        .iter()
        .filter(|c| c.is_live_default())
        .map(|c| c.metadata.name.as_str())
        .collect();
    d.step(
        ObjectRef::new(ResourceKind::VolumeSnapshotClass, None, "(default)"),
        format!(
            "{driver} has {} class(es), default: {}",
            classes.len(),
            if defaults.is_empty() {
                "none".to_owned()
            } else {
                defaults.join(", ")
            }
        ),
    );
    let id = match defaults.len() {
        0 => NO_DEFAULT_CLASS,
        1 => return Ok(()),
        _ => SEVERAL_DEFAULT_CLASSES,
    };
    let fix = if id == NO_DEFAULT_CLASS {
        format!(
            "Mark a class of {driver} default (kubectl annotate volumesnapshotclass CLASS {}=true; create one if there is none): the snapshot controller then picks it up. Or take the snapshot again with spec.volumeSnapshotClassName.",
            keys::DEFAULT_SNAPSHOT_CLASS
        )
    } else {
        format!(
            "Remove the {} annotation from all but one class of {driver}: the snapshot controller then picks it up.",
            keys::DEFAULT_SNAPSHOT_CLASS
        )
    };
    for message in said(outcome) {
        d.find(id, message, fix.clone());
    }
    Ok(())
}
