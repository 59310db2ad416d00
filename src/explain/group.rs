//! Why a VolumeGroupSnapshot is not ready to use.
//!
//! First the group-snapshot-validation rule on the existing group (the CRDs' CEL checks, as
//! for a CREATE): a group that fails them is reported as such and nothing further, since the
//! snapshot controller stops there too. A group bound to its content: the error the content
//! (or the group) reports, quoted, or a content that is gone, then its member snapshots not
//! ready. A dynamic group not bound yet: with a class named, the class (missing, or of another
//! driver than the selected claims') and the claims its selector selects (none, or some not
//! bound yet); with none, the default-group-snapshot-class rule on the existing group (nothing
//! selected, claims not bound, claims of several drivers, no default class or several),
//! exactly as the audit asks it; each of its messages becomes a finding.

use std::collections::BTreeMap;

use super::{Diagnosis, ExplainError, ObjectRef, Target, Waiting, run_rule};
use crate::cluster::{ClusterIndex, ClusterView, ResourceKind, StateUnavailable};
use crate::model::{LabelSelector, VolumeGroupSnapshot};
use crate::policy::Policy;
use crate::rules::default_snapshot_class::claim_driver;
use crate::rules::{default_group_snapshot_class, group_snapshot_validation};

pub const NOT_FOUND: &str = "group.not-found";
pub const INVALID: &str = "group.invalid";
pub const NOTHING_SELECTED: &str = "group.nothing-selected";
pub const CLAIMS_UNBOUND: &str = "group.claims-unbound";
pub const SEVERAL_DRIVERS: &str = "group.several-drivers";
pub const DRIVER_UNKNOWN: &str = "group.driver-unknown";
pub const CLASS_MISSING: &str = "group.class-missing";
pub const NO_DEFAULT_CLASS: &str = "group.no-default-class";
pub const SEVERAL_DEFAULT_CLASSES: &str = "group.several-default-classes";
pub const CLASS_DRIVER_MISMATCH: &str = "group.class-driver-mismatch";
pub const CONTENT_ERROR: &str = "group.content-error";
pub const CONTENT_MISSING: &str = "group.content-missing";
pub const MEMBERS_NOT_READY: &str = "group.members-not-ready";

/// Every id above, in the order `docs/explain.md` lists them.
pub const FINDING_IDS: &[&str] = &[
    NOT_FOUND,
    INVALID,
    NOTHING_SELECTED,
    CLAIMS_UNBOUND,
    SEVERAL_DRIVERS,
    DRIVER_UNKNOWN,
    CLASS_MISSING,
    NO_DEFAULT_CLASS,
    SEVERAL_DEFAULT_CLASSES,
    CLASS_DRIVER_MISMATCH,
    CONTENT_ERROR,
    CONTENT_MISSING,
    MEMBERS_NOT_READY,
];

pub(super) fn waiting(index: &ClusterIndex) -> Result<Vec<Waiting>, StateUnavailable> {
    index.group_snapshots.scan(|it| {
        it.filter(|g| !g.ready_to_use())
            .map(|g| Waiting {
                target: Target {
                    kind: ResourceKind::VolumeGroupSnapshot,
                    namespace: g.metadata.namespace.clone().unwrap_or_default(),
                    name: g.metadata.name.clone(),
                },
                metadata: g.metadata.clone(),
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
    let me = ObjectRef::new(ResourceKind::VolumeGroupSnapshot, Some(ns), name);
    let Some(group) = view.group_snapshot(ns, name)? else {
        d.step(me, "does not exist");
        d.find(
            NOT_FOUND,
            format!("VolumeGroupSnapshot {ns}/{name} does not exist."),
            format!("Check the name and namespace: kubectl get volumegroupsnapshot -n {ns}"),
        );
        return Ok(d);
    };
    d.created = group.metadata.created_at();
    let source = &group.spec.source;
    let from = match (&source.selector, &source.volume_group_snapshot_content_name) {
        (_, Some(content)) => format!("pre-provisioned from VolumeGroupSnapshotContent {content}"),
        (Some(selector), None) => match selector.describe() {
            s if s.is_empty() => "of every claim in the namespace".to_owned(),
            s => format!("of the claims {s}"),
        },
        (None, None) => "with no source".to_owned(),
    };
    let class = group
        .spec
        .volume_group_snapshot_class_name
        .as_deref()
        .map_or_else(
            || "no VolumeGroupSnapshotClass named".to_owned(),
            |c| format!("class {c}"),
        );
    let state = if group.ready_to_use() {
        "ready to use"
    } else {
        "not ready to use"
    };
    d.step(me, format!("{state}; {from}, {class}"));
    if !group.ready_to_use() && invalid(&mut d, &group, view, policy)? {
        return Ok(d);
    }

    let content_name = group
        .bound_content_name()
        .or(source.volume_group_snapshot_content_name.as_deref())
        .filter(|c| !c.is_empty());
    match content_name {
        Some(content_name) => bound(&mut d, &group, content_name, view)?,
        None => {
            if let Some(error) = group.error_message() {
                quote_error(&mut d, &group, None, error);
            }
            match group.spec.volume_group_snapshot_class_name.as_deref() {
                None => default_class(&mut d, &group, view, policy)?,
                Some(class) if !class.is_empty() => named_class(&mut d, &group, class, view)?,
                // An empty name is the validation rule's (above) to report.
                Some(_) => {}
            }
        }
    }
    if group.ready_to_use() && d.findings.is_empty() {
        d.settled = Some("ready to use".to_owned());
    }
    Ok(d)
}

/// The group-snapshot-validation rule on the existing group, as a CREATE: whether it found the
/// spec invalid (each problem a finding). The snapshot controller checks the source first and
/// goes no further with a group that fails; every other problem the rule finds (an empty
/// content or class name) leaves it stuck as well, and the rest of the chain would only follow
/// from the wrong spec: the findings stop here.
fn invalid(
    d: &mut Diagnosis,
    group: &VolumeGroupSnapshot,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<bool, ExplainError> {
    let outcome = run_rule(&group_snapshot_validation::RULE, group, view, policy)
        .transpose()?
        .unwrap_or_default();
    if outcome.denials.is_empty() {
        return Ok(false);
    }
    let ns = group.metadata.namespace.as_deref().unwrap_or_default();
    let fix = format!(
        "A group snapshot's source cannot be changed: delete it (kubectl delete volumegroupsnapshot -n {ns} {}) and create it again with the spec corrected as the message says.",
        group.metadata.name
    );
    for message in outcome.denials {
        d.find(INVALID, message, fix.clone());
    }
    Ok(true)
}

fn quote_error(d: &mut Diagnosis, group: &VolumeGroupSnapshot, content: Option<&str>, error: &str) {
    let ns = group.metadata.namespace.as_deref().unwrap_or_default();
    let by = content.map_or_else(String::new, |c| {
        format!(" (VolumeGroupSnapshotContent {c})")
    });
    d.find(
        CONTENT_ERROR,
        format!(
            "VolumeGroupSnapshot {} failed{by}: \"{error}\"",
            group.metadata.qualified_name()
        ),
        format!(
            "Fix what the CSI driver reports, then delete the group snapshot and take a new one: kubectl describe volumegroupsnapshot -n {ns} {}",
            group.metadata.name
        ),
    );
}

/// A group bound to (or pre-provisioned from) a content: the content's error, or its absence,
/// then the members.
fn bound(
    d: &mut Diagnosis,
    group: &VolumeGroupSnapshot,
    content_name: &str,
    view: &dyn ClusterView,
) -> Result<(), ExplainError> {
    let ns = group.metadata.namespace.as_deref().unwrap_or_default();
    let name = group.metadata.qualified_name();
    let content_ref = ObjectRef::new(ResourceKind::VolumeGroupSnapshotContent, None, content_name);
    let Some(content) = view.group_snapshot_content(content_name)? else {
        d.step(content_ref, "does not exist");
        d.find(
            CONTENT_MISSING,
            format!("VolumeGroupSnapshot {name} is bound to VolumeGroupSnapshotContent {content_name}, which does not exist: the group snapshot cannot become ready."),
            format!(
                "Delete the group snapshot and take a new one (kubectl delete volumegroupsnapshot -n {ns} {}); for a pre-provisioned one, create the content first.",
                group.metadata.name
            ),
        );
        return Ok(());
    };
    let status = content.status.as_ref();
    let ready = status.and_then(|s| s.ready_to_use) == Some(true);
    d.step(
        content_ref,
        format!(
            "driver {}, {}",
            content.spec.driver,
            if ready { "ready" } else { "not ready" }
        ),
    );
    let error = status
        .and_then(|s| s.error.as_ref())
        .and_then(|e| e.message.as_deref())
        .filter(|m| !m.is_empty())
        .or_else(|| group.error_message());
    if let Some(error) = error {
        quote_error(d, group, Some(content_name), error);
        return Ok(());
    }
    if group.ready_to_use() {
        return Ok(());
    }
    let members = view.group_members(ns, &group.metadata.name)?;
    let not_ready: Vec<&str> = members
        .iter()
        .filter(|m| !m.ready_to_use())
        .map(|m| m.metadata.name.as_str())
        .collect();
    d.step(
        ObjectRef::new(ResourceKind::VolumeSnapshot, Some(ns), "(members)"),
        format!("{} member(s), {} not ready", members.len(), not_ready.len()),
    );
    if !not_ready.is_empty() {
        d.find(
            MEMBERS_NOT_READY,
            format!(
                "VolumeGroupSnapshot {name} waits for its member VolumeSnapshot{} {}, not ready to use yet.",
                if not_ready.len() == 1 { "" } else { "s" },
                not_ready.join(", ")
            ),
            format!(
                "See why each is not ready: storage-admission explain vs -n {ns} {}",
                not_ready[0]
            ),
        );
    }
    Ok(())
}

/// A dynamic group with no class: the default-group-snapshot-class rule, asked as the audit
/// asks it. Its messages are the findings; which question each answers follows from the
/// claims the selector selects, as the rule found them.
fn default_class(
    d: &mut Diagnosis,
    group: &VolumeGroupSnapshot,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<(), ExplainError> {
    let Some(selector) = &group.spec.source.selector else {
        return Ok(());
    };
    let ns = group.metadata.namespace.as_deref().unwrap_or_default();
    let outcome = run_rule(&default_group_snapshot_class::RULE, group, view, policy)
        .transpose()?
        .unwrap_or_default();
    let Selected {
        empty,
        drivers,
        unknown,
        unbound,
    } = selected(d, ns, selector, view)?;
    let primary = if empty {
        NOTHING_SELECTED
    } else if drivers.len() > 1 {
        SEVERAL_DRIVERS
    } else if unknown {
        DRIVER_UNKNOWN
    } else if let Some(driver) = drivers.keys().next() {
        let defaults = view
            .group_snapshot_classes_for_driver(driver)?
            .iter()
            .filter(|c| c.is_live_default())
            .count();
        if defaults == 0 {
            NO_DEFAULT_CLASS
        } else {
            SEVERAL_DEFAULT_CLASSES
        }
    } else {
        NOTHING_SELECTED
    };
    let fix = match primary {
        NOTHING_SELECTED => format!(
            "Label the claims to snapshot (kubectl get pvc -n {ns} --show-labels), or delete the group snapshot and take it again with a selector that selects them."
        ),
        SEVERAL_DRIVERS => "Delete the group snapshot and take one per CSI driver, each with a selector that selects only that driver's claims.".to_owned(),
        // No class helps here: a volume that is not a CSI volume is never snapshotted, and a
        // claim not bound yet tells its driver once bound.
        DRIVER_UNKNOWN => format!(
            "Leave such claims out: delete the group snapshot (kubectl delete volumegroupsnapshot -n {ns} {}) and take it again with a selector that selects only claims of CSI volumes (kubectl get pvc -n {ns} --show-labels). A claim not bound yet: storage-admission explain pvc -n {ns} CLAIM",
            group.metadata.name
        ),
        _ => format!(
            "Mark exactly one VolumeGroupSnapshotClass of the driver default (kubectl get volumegroupsnapshotclass), or delete the group snapshot (kubectl delete volumegroupsnapshot -n {ns} {}) and take it again with spec.volumeGroupSnapshotClassName.",
            group.metadata.name
        ),
    };
    let mut warnings = outcome.warnings.into_iter();
    if !unbound.is_empty()
        && !empty
        && let Some(message) = warnings.next()
    {
        d.find(
            CLAIMS_UNBOUND,
            message,
            format!("See why each claim is not bound: storage-admission explain pvc -n {ns} CLAIM"),
        );
    }
    for message in outcome.denials.into_iter().chain(warnings) {
        d.find(primary, message, fix.clone());
    }
    Ok(())
}

/// The claims a group's selector selects, as the rules resolve their drivers.
struct Selected {
    empty: bool,
    /// The claims of each CSI driver that could be told.
    drivers: BTreeMap<String, Vec<String>>,
    /// Whether the driver of some claim cannot be told.
    unknown: bool,
    /// The claims not bound yet.
    unbound: Vec<String>,
}

/// The claims `selector` selects in `ns` and their drivers, and a step saying so.
fn selected(
    d: &mut Diagnosis,
    ns: &str,
    selector: &LabelSelector,
    view: &dyn ClusterView,
) -> Result<Selected, ExplainError> {
    let claims = view.pvcs_matching(ns, selector)?;
    let mut drivers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut unbound = Vec::new();
    for pvc in &claims {
        if pvc.bound_volume().is_none() {
            unbound.push(pvc.metadata.name.clone());
        }
        match claim_driver(pvc, view)?.driver() {
            Some(driver) => drivers
                .entry(driver.to_owned())
                .or_default()
                .push(pvc.metadata.name.clone()),
            None => unknown.push(pvc.metadata.name.as_str()),
        }
    }
    let names: Vec<&str> = claims.iter().map(|c| c.metadata.name.as_str()).collect();
    let mut shown: Vec<String> = drivers.keys().cloned().collect();
    if unknown.len() == claims.len() && !unknown.is_empty() {
        shown.push("unknown".to_owned());
    } else if !unknown.is_empty() {
        shown.push(format!("unknown for {}", unknown.join(", ")));
    }
    d.step(
        ObjectRef::new(ResourceKind::PersistentVolumeClaim, Some(ns), "(selected)"),
        if names.is_empty() {
            "none".to_owned()
        } else {
            format!("{}; CSI driver {}", names.join(", "), shown.join(", "))
        },
    );
    Ok(Selected {
        empty: claims.is_empty(),
        drivers,
        unknown: !unknown.is_empty(),
        unbound,
    })
}

/// A dynamic group naming its class: the class must exist, its selector must select claims,
/// bound ones (the snapshot controller snapshots bound volumes, so it waits for every selected
/// claim to be bound, and can take nothing of no claims), and the class must be of their driver
/// (the class's driver takes the group snapshot, and cannot snapshot volumes it does not own).
fn named_class(
    d: &mut Diagnosis,
    group: &VolumeGroupSnapshot,
    class_name: &str,
    view: &dyn ClusterView,
) -> Result<(), ExplainError> {
    let ns = group.metadata.namespace.as_deref().unwrap_or_default();
    let name = group.metadata.qualified_name();
    let class_ref = ObjectRef::new(ResourceKind::VolumeGroupSnapshotClass, None, class_name);
    let Some(class) = view.group_snapshot_class(class_name)? else {
        d.step(class_ref, "does not exist");
        d.find(
            CLASS_MISSING,
            format!("VolumeGroupSnapshot {name} names VolumeGroupSnapshotClass {class_name}, which does not exist: the group snapshot cannot be taken."),
            format!(
                "Create the class, or delete the group snapshot (kubectl delete volumegroupsnapshot -n {ns} {}) and take it again with an existing class: kubectl get volumegroupsnapshotclass",
                group.metadata.name
            ),
        );
        return Ok(());
    };
    d.step(class_ref, format!("driver {}", class.driver));
    let Some(selector) = &group.spec.source.selector else {
        return Ok(());
    };
    let Selected {
        empty,
        drivers,
        unbound,
        ..
    } = selected(d, ns, selector, view)?;
    let shown = match selector.describe() {
        s if s.is_empty() => "{} (every claim)".to_owned(),
        s => s,
    };
    if empty {
        d.find(
            NOTHING_SELECTED,
            format!("VolumeGroupSnapshot {name} uses VolumeGroupSnapshotClass {class_name}, but its selector {shown} selects no PersistentVolumeClaim in namespace {ns}: the snapshot controller has nothing to snapshot, and the group snapshot cannot be taken."),
            format!(
                "Label the claims to snapshot (kubectl get pvc -n {ns} --show-labels), or delete the group snapshot (kubectl delete volumegroupsnapshot -n {ns} {}) and take it again with a selector that selects them.",
                group.metadata.name
            ),
        );
        return Ok(());
    }
    if let Some(first) = unbound.first() {
        d.find(
            CLAIMS_UNBOUND,
            format!(
                "VolumeGroupSnapshot {name}: PersistentVolumeClaim{} {} in {ns}, selected by {shown}, {} not bound yet; the snapshot controller takes no group snapshot until every selected claim is bound.",
                if unbound.len() == 1 { "" } else { "s" },
                unbound.join(", "),
                if unbound.len() == 1 { "is" } else { "are" }
            ),
            format!("See why each claim is not bound: storage-admission explain pvc -n {ns} {first}"),
        );
    }
    if class.driver.is_empty() {
        return Ok(());
    }
    let others: Vec<(&String, &Vec<String>)> = drivers
        .iter()
        .filter(|(driver, _)| **driver != class.driver)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = others
        .iter()
        .map(|(driver, claims)| format!("{driver} ({})", claims.join(", ")))
        .collect();
    let again = match others.as_slice() {
        [(driver, _)] if drivers.len() == 1 => format!("with a class of {driver}"),
        _ => "once per CSI driver, each with a selector that selects only that driver's claims and a class of that driver".to_owned(),
    };
    d.find(
        CLASS_DRIVER_MISMATCH,
        format!(
            "VolumeGroupSnapshot {name} uses VolumeGroupSnapshotClass {class_name} of CSI driver {}, but selects PersistentVolumeClaims of {}: that driver's snapshotter cannot snapshot volumes it does not own.",
            class.driver,
            shown.join("; ")
        ),
        format!(
            "Delete the group snapshot (kubectl delete volumegroupsnapshot -n {ns} {}) and take it again {again}: kubectl get volumegroupsnapshotclass (DRIVER column).",
            group.metadata.name
        ),
    );
    Ok(())
}
