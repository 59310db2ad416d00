//! default-snapshot-class: a VolumeSnapshot created without `spec.volumeSnapshotClassName`
//! gets the default VolumeSnapshotClass of its source volume's CSI driver.
//!
//! The snapshot controller does the same lookup later, but fails silently from the user's
//! point of view: the snapshot just stays unbound when the driver has no default class, and
//! fails with an event when it has two. Doing it at admission makes the choice visible (a
//! patch, said in a warning) and refuses the ambiguous case while the user is still looking.
//!
//! The driver is the CSI driver of the PV bound to the source PVC; a PVC that is not bound
//! yet (`WaitForFirstConsumer`) takes the provisioner of its StorageClass, or of the cluster's
//! default StorageClass when it names none. Pre-provisioned snapshots
//! (`source.volumeSnapshotContentName`) and members of a VolumeGroupSnapshot are left alone:
//! their class comes from the content or the group.
//!
//! The helpers that resolve a claim's StorageClass and driver are shared with the other
//! snapshot rules, so all of them agree on what "the driver of this PVC" is.

use std::sync::Arc;

use jsonptr::Pointer;

use crate::cluster::{ClusterView, Lookup};
use crate::model::{
    PersistentVolume, PersistentVolumeClaim, StorageClass, VolumeSnapshot, VolumeSnapshotClass,
    keys,
};
use crate::policy::{DefaultSnapshotClassConfig, WarnOrDeny};
use crate::rules::patch::Json;
use crate::rules::{Audited, Check, For, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, Phase, RuleResult, patch};

/// The StorageClass a claim provisions (or provisioned) with, as far as the cluster view tells.
#[derive(Debug, Clone)]
pub(crate) enum ClaimClass {
    /// The claim names this class.
    Named(Arc<StorageClass>),
    /// The claim names no class and this is the cluster's one default class.
    Default(Arc<StorageClass>),
    /// The claim names a class that does not exist.
    Missing(String),
    /// `storageClassName: ""`: static binding only, no provisioner.
    NoClass,
    /// The claim names no class and the cluster has no default class.
    NoDefault,
    /// The claim names no class and several classes are marked default.
    SeveralDefaults(Vec<String>),
}

impl ClaimClass {
    /// The class, when there is exactly one.
    pub(crate) fn class(&self) -> Option<&StorageClass> {
        match self {
            Self::Named(sc) | Self::Default(sc) => Some(sc),
            _ => None,
        }
    }

    /// Its provisioner, when there is exactly one class and it names one.
    pub(crate) fn provisioner(&self) -> Option<&str> {
        self.class()
            .map(|sc| sc.provisioner.as_str())
            .filter(|p| !p.is_empty())
    }

    /// `StorageClass csi-disk` or `the default StorageClass csi-disk`, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Named(sc) => format!("StorageClass {}", sc.metadata.name),
            Self::Default(sc) => format!("the default StorageClass {}", sc.metadata.name),
            Self::Missing(name) => format!("StorageClass {name}, which does not exist"),
            Self::NoClass => "no StorageClass (storageClassName: \"\")".to_owned(),
            Self::NoDefault => "no StorageClass, and the cluster has no default one".to_owned(),
            Self::SeveralDefaults(names) => {
                format!(
                    "no StorageClass, and several are default ({})",
                    names.join(", ")
                )
            }
        }
    }
}

/// Resolves the StorageClass of a claim the way the API server's DefaultStorageClass plugin
/// would: the named class, else the single default class.
pub(crate) fn claim_class(
    pvc: &PersistentVolumeClaim,
    view: &dyn ClusterView,
) -> Lookup<ClaimClass> {
    Ok(match pvc.requested_class() {
        Some("") => ClaimClass::NoClass,
        Some(name) => match view.storage_class(name)? {
            Some(sc) => ClaimClass::Named(sc),
            None => ClaimClass::Missing(name.to_owned()),
        },
        None => {
            let mut defaults = view.default_storage_classes()?;
            match defaults.len() {
                0 => ClaimClass::NoDefault,
                1 => ClaimClass::Default(defaults.remove(0)),
                // Newer API servers pick the newest default; we cannot see creation times,
                // so we do not guess.
                _ => ClaimClass::SeveralDefaults(
                    defaults.iter().map(|c| c.metadata.name.clone()).collect(),
                ),
            }
        }
    })
}

/// The CSI driver behind a claim, and where it was read from.
#[derive(Debug, Clone)]
pub(crate) enum ClaimDriver {
    /// Bound to this PV, a CSI volume: its driver is `spec.csi.driver`. (The PV itself, not
    /// copies of its names: this is asked for every snapshot created without a class.)
    BoundVolume(Arc<PersistentVolume>),
    /// Not bound yet: the provisioner of its StorageClass (`describe` says which).
    Provisioner { driver: String, class: String },
    /// Cannot tell; the text completes "cannot tell the CSI driver of PVC x: ...".
    Unknown(String),
}

impl ClaimDriver {
    /// The driver, when it can be told.
    pub(crate) fn driver(&self) -> Option<&str> {
        match self {
            Self::BoundVolume(pv) => pv.csi_driver(),
            Self::Provisioner { driver, .. } => Some(driver),
            Self::Unknown(_) => None,
        }
    }
}

pub(crate) fn claim_driver(
    pvc: &PersistentVolumeClaim,
    view: &dyn ClusterView,
) -> Lookup<ClaimDriver> {
    if let Some(pv_name) = pvc.bound_volume()
        && let Some(pv) = view.pv(pv_name)?
    {
        return Ok(match pv.csi_driver() {
            Some(_) => ClaimDriver::BoundVolume(pv),
            None => ClaimDriver::Unknown(format!(
                "its PersistentVolume {pv_name} is not a CSI volume, and only CSI volumes can be snapshotted"
            )),
        });
    }
    // Not bound, or its PV is not in the view yet: the class says which driver provisions it.
    let class = claim_class(pvc, view)?;
    Ok(match class.provisioner() {
        Some(p) => ClaimDriver::Provisioner {
            driver: p.to_owned(),
            class: class.describe(),
        },
        None => ClaimDriver::Unknown(format!("it is not bound and has {}", class.describe())),
    })
}

pub fn check(
    input: &Input<'_, VolumeSnapshot>,
    view: &dyn ClusterView,
    cfg: &DefaultSnapshotClassConfig,
) -> RuleResult {
    if input.operation != Operation::Create || input.phase != Phase::Mutating {
        return Ok(Outcome::allow());
    }
    let snap = input.object;
    let source = &snap.spec.source;
    if snap.spec.volume_snapshot_class_name.is_some()
        || source.volume_snapshot_content_name.is_some()
        || snap.is_group_member()
    {
        return Ok(Outcome::allow());
    }
    // An empty or missing PVC name is the validating rule's to deny, not ours to guess about.
    let Some(pvc_name) = source
        .persistent_volume_claim_name
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return Ok(Outcome::allow());
    };
    let namespace = snap.metadata.namespace.as_deref().unwrap_or_default();
    // Displayed in a message only when one is made; the note below concatenates its parts.
    let snap_name = snap.metadata.qualified();

    let Some(pvc) = view.pvc(namespace, pvc_name)? else {
        return Ok(match cfg.when_source_missing {
            WarnOrDeny::Warn => Outcome::warn(format!(
                "VolumeSnapshot {snap_name}: source PVC {namespace}/{pvc_name} does not exist yet, so no default VolumeSnapshotClass was set; the snapshot controller retries. Check: kubectl get pvc -n {namespace} {pvc_name}"
            )),
            WarnOrDeny::Deny => Outcome::deny(format!(
                "VolumeSnapshot {snap_name} cannot be created: its source PersistentVolumeClaim {namespace}/{pvc_name} does not exist (policy rules.defaultSnapshotClass.whenSourceMissing is deny). \
                 Check the name with `kubectl get pvc -n {namespace}`, create the PVC first, or set spec.volumeSnapshotClassName explicitly."
            )),
        });
    };

    let driver = claim_driver(&pvc, view)?;
    // Why this driver, as the parts of a sentence: joined into the one message that is made.
    let (driver, why) = match &driver {
        ClaimDriver::BoundVolume(pv) => (
            pv.csi_driver().unwrap_or_default(),
            [
                "PVC ",
                namespace,
                "/",
                pvc_name,
                " is bound to ",
                &pv.metadata.name,
            ],
        ),
        ClaimDriver::Provisioner { driver, class } => (
            driver.as_str(),
            [
                "PVC ",
                namespace,
                "/",
                pvc_name,
                " is not bound yet and uses ",
                class,
            ],
        ),
        ClaimDriver::Unknown(reason) => {
            return Ok(Outcome::warn(format!(
                "VolumeSnapshot {snap_name}: cannot tell the CSI driver of PVC {namespace}/{pvc_name} ({reason}), so no default VolumeSnapshotClass was set. Set spec.volumeSnapshotClassName."
            )));
        }
    };

    // The common case, one default, is settled without a list of the driver's classes.
    if let Some(chosen) = view.sole_default_snapshot_class(driver)? {
        return Ok(set_class(snap, &chosen.metadata.name, driver, why));
    }
    let classes = view.snapshot_classes_for_driver(driver)?;
    Ok(from_class_list(snap, &classes, driver, why, cfg))
}

/// What the driver's classes decide when the index's one-default question found none: the
/// classes may have changed since it was asked, so one default now is still set; otherwise
/// the message names the defaults there are, or the classes.
fn from_class_list(
    snap: &VolumeSnapshot,
    classes: &[Arc<VolumeSnapshotClass>],
    driver: &str,
    why: [&str; 6],
    cfg: &DefaultSnapshotClassConfig,
) -> Outcome {
    if let Some(chosen) = VolumeSnapshotClass::sole_live_default(classes) {
        return set_class(snap, &chosen.metadata.name, driver, why);
    }
    let snap_name = snap.metadata.qualified();
    let why = why.concat();
    let live: Vec<_> = classes
        .iter()
        .filter(|c| !c.metadata.is_being_deleted())
        .collect();
    let defaults: Vec<&str> = live
        .iter()
        .filter(|c| c.is_default())
        .map(|c| c.metadata.name.as_str())
        .collect();

    match defaults.as_slice() {
        [] => {
            let others = if live.is_empty() {
                "it has no VolumeSnapshotClass at all".to_owned()
            } else {
                format!(
                    "its classes: {}",
                    live.iter()
                        .map(|c| c.metadata.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            match cfg.when_no_default {
                WarnOrDeny::Warn => Outcome::warn(format!(
                    "VolumeSnapshot {snap_name} will stay unbound: CSI driver {driver} has no default VolumeSnapshotClass ({others}). Set spec.volumeSnapshotClassName or mark a class default."
                )),
                WarnOrDeny::Deny => Outcome::deny(format!(
                    "VolumeSnapshot {snap_name} names no VolumeSnapshotClass and CSI driver {driver} has no default one ({others}; {why}). \
                     The snapshot would stay unbound (policy rules.defaultSnapshotClass.whenNoDefault is deny). \
                     Set spec.volumeSnapshotClassName, or mark a class of {driver} as default: \
                     kubectl annotate volumesnapshotclass CLASS {}=true",
                    keys::DEFAULT_SNAPSHOT_CLASS
                )),
            }
        }
        several => Outcome::deny(format!(
            "VolumeSnapshot {snap_name} names no VolumeSnapshotClass and CSI driver {driver} has {} default VolumeSnapshotClasses ({}); the snapshot controller refuses to pick one and the snapshot would never be taken. \
             Set spec.volumeSnapshotClassName to one of them, or remove the {} annotation from all but one (kubectl get volumesnapshotclass).",
            several.len(),
            several.join(", "),
            keys::DEFAULT_SNAPSHOT_CLASS
        )),
    }
}

/// The patch that sets `chosen`, the driver's default class, and its note. Concatenated
/// rather than format!ted: a third of the rule's instructions, on a path that runs for every
/// snapshot created without a class.
fn set_class(snap: &VolumeSnapshot, chosen: &str, driver: &str, why: [&str; 6]) -> Outcome {
    let [w1, w2, w3, w4, w5, w6] = why;
    let whole;
    let [s1, s2, s3] = match snap.metadata.qualified_parts() {
        Some(parts) => parts,
        None => {
            whole = snap.metadata.qualified_name();
            [whole.as_str(), "", ""]
        }
    };
    let note = [
        "VolumeSnapshot ",
        s1,
        s2,
        s3,
        ": volumeSnapshotClassName set to ",
        chosen,
        ", the default VolumeSnapshotClass of ",
        driver,
        " (",
        w1,
        w2,
        w3,
        w4,
        w5,
        w6,
        ").",
    ]
    .concat();
    Outcome::allow().with_mutation(
        vec![patch::add(
            patch::fixed(const { Pointer::from_static("/spec/volumeSnapshotClassName") }),
            Json::string(chosen),
        )],
        Some(note),
    )
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("default-snapshot-class"),
    policy_key: "defaultSnapshotClass",
    phases: &[Phase::Mutating],
    operations: &[Operation::Create],
    checks: &[Check::VolumeSnapshot(For::audited(
        |input, view, policy| check(input, view, &policy.rules.default_snapshot_class),
        // Snapshots with no class that are not bound yet. Asked as the mutating call: a patch
        // means a default exists (the snapshot controller will find it too), so only the
        // rule's denials and warnings are findings.
        Audited {
            select: |s| {
                s.spec.volume_snapshot_class_name.is_none() && s.bound_content_name().is_none()
            },
            phase: Phase::Mutating,
            operation: Operation::Create,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.default_snapshot_class),
};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::testing::*;

    /// The demo cluster: csi-disk (default) → DRIVER, default-snapclass, disk-pvc bound.
    fn demo() -> ClusterIndex {
        cluster([
            csi_disk().into(),
            default_snapclass().into(),
            pvc("default", "disk-pvc")
                .class("csi-disk")
                .bound_to("pv-1")
                .into(),
            pvc("default", "wffc-pvc").class("csi-disk").into(),
            pvc("default", "no-class-pvc").into(),
            pvc("default", "static-pvc").class("").into(),
            pvc("default", "hostpath-pvc")
                .class("csi-disk")
                .bound_to("pv-host")
                .into(),
            pv("pv-1").csi(DRIVER, "pv-1").into(),
            pv("pv-host").into(),
        ])
    }

    fn run(
        view: &dyn ClusterView,
        snap: &VolumeSnapshot,
        cfg: &DefaultSnapshotClassConfig,
    ) -> Outcome {
        let input = input(Operation::Create, Phase::Mutating, snap, None);
        check(&input, view, cfg).unwrap()
    }

    fn from_pvc(name: &str) -> VolumeSnapshot {
        snapshot("default", "snap").source_pvc(name)
    }

    fn patched_class(outcome: &Outcome) -> Option<Value> {
        let [m] = outcome.mutations.as_slice() else {
            return None;
        };
        let mut doc = json!({"spec": {"source": {}}});
        json_patch::patch(
            &mut doc,
            &crate::rules::patch::to_json_patch(&m.ops).unwrap(),
        )
        .unwrap();
        Some(doc["spec"]["volumeSnapshotClassName"].clone())
    }

    #[test]
    fn bound_pvc_gets_the_default_class_of_its_pv_driver() {
        let out = run(&demo(), &from_pvc("disk-pvc"), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("default-snapclass")));
        assert!(out.denials.is_empty() && out.warnings.is_empty());
        let note = out.mutations[0].note.as_deref().unwrap();
        assert!(
            note.contains("default/snap") && note.contains("bound to pv-1"),
            "{note}"
        );
        assert!(note.len() < 250, "{note}");
    }

    #[test]
    fn a_default_the_class_list_shows_is_still_set() {
        // The index's one-default question can be answered before a class is marked default
        // and the list read after it: one default is one default, whichever read saw it.
        // (Taken as "1 default VolumeSnapshotClasses" by the message path, it would be denied.)
        let index = demo();
        let classes = index.snapshot_classes_for_driver(DRIVER).unwrap();
        let snap = from_pvc("disk-pvc");
        let why = ["PVC ", "default", "/", "disk-pvc", " is bound to ", "pv-1"];
        let out = from_class_list(&snap, &classes, DRIVER, why, &Default::default());
        assert_eq!(patched_class(&out), Some(json!("default-snapclass")));
        assert!(out.denials.is_empty() && out.warnings.is_empty());
        assert_eq!(out, run(&index, &snap, &Default::default()));
    }

    #[test]
    fn pv_driver_wins_over_the_class_provisioner() {
        let index = demo();
        // The class now says another driver; the bound PV is the truth.
        index.storage_classes.replace([storage_class("csi-disk")
            .provisioner("other.csi")
            .default_class()]);
        let out = run(&index, &from_pvc("disk-pvc"), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("default-snapclass")));
    }

    #[test]
    fn unbound_pvc_uses_its_class_provisioner_and_the_default_class() {
        let out = run(&demo(), &from_pvc("wffc-pvc"), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("default-snapclass")));
        assert!(
            out.mutations[0]
                .note
                .as_deref()
                .unwrap()
                .contains("not bound yet and uses StorageClass csi-disk")
        );
        let out = run(&demo(), &from_pvc("no-class-pvc"), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("default-snapclass")));
        assert!(
            out.mutations[0]
                .note
                .as_deref()
                .unwrap()
                .contains("the default StorageClass csi-disk")
        );
    }

    #[test]
    fn explicit_class_preprovisioned_and_group_members_are_left_alone() {
        let view = demo();
        let cfg = Default::default();
        for snap in [
            from_pvc("disk-pvc").class("x"),
            snapshot("default", "snap").source_content("c"),
            snapshot("default", "snap"),
            from_pvc(""),
            snapshot("default", "m")
                .source_pvc("disk-pvc")
                .group_member("g"),
            // Each marker of a group member is enough on its own.
            snapshot("default", "m")
                .source_pvc("disk-pvc")
                .group_status("g"),
            snapshot("default", "m")
                .source_pvc("disk-pvc")
                .group_finalizer(),
        ] {
            assert!(run(&view, &snap, &cfg).is_empty(), "{snap:?}");
        }
        // Only CREATE, only the mutating phase.
        let snap = from_pvc("disk-pvc");
        for (operation, phase) in [
            (Operation::Update, Phase::Mutating),
            (Operation::Create, Phase::Validating),
        ] {
            let input = input(operation, phase, &snap, Some(&snap));
            assert!(check(&input, &view, &cfg).unwrap().is_empty());
        }
    }

    #[test]
    fn no_default_class_warns_or_denies() {
        let index = demo();
        index
            .snapshot_classes
            .replace([snapshot_class("plain").driver(DRIVER)]);
        let out = run(&index, &from_pvc("disk-pvc"), &Default::default());
        assert!(out.mutations.is_empty() && out.denials.is_empty());
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            w.contains("stay unbound") && w.contains("(its classes: plain)"),
            "{w}"
        );
        assert!(w.len() < 250, "{}: {w}", w.len());

        index.snapshot_classes.replace([]);
        let cfg = DefaultSnapshotClassConfig {
            when_no_default: WarnOrDeny::Deny,
            ..Default::default()
        };
        let out = run(&index, &from_pvc("disk-pvc"), &cfg);
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            d.contains("no VolumeSnapshotClass at all")
                && d.contains("kubectl annotate volumesnapshotclass"),
            "{d}"
        );
    }

    #[test]
    fn classes_being_deleted_do_not_count() {
        let index = demo();
        let dying = snapshot_class("dying")
            .driver(DRIVER)
            .default_class()
            .deleting();
        index.snapshot_classes.replace([dying, default_snapclass()]);
        let out = run(&index, &from_pvc("disk-pvc"), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("default-snapclass")));
    }

    #[test]
    fn several_defaults_are_denied_naming_them() {
        let index = demo();
        index.snapshot_classes.replace([
            snapshot_class("a").driver(DRIVER).default_class(),
            snapshot_class("b").driver(DRIVER).default_class(),
            snapshot_class("other-driver")
                .driver("x.csi")
                .default_class(),
        ]);
        let out = run(&index, &from_pvc("disk-pvc"), &Default::default());
        assert!(out.mutations.is_empty());
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(d.contains("2 default VolumeSnapshotClasses (a, b)"), "{d}");
        assert!(!d.contains("other-driver"), "{d}");
    }

    #[test]
    fn missing_source_warns_or_denies() {
        let out = run(&demo(), &from_pvc("nope"), &Default::default());
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            w.contains("default/nope does not exist")
                && w.contains("kubectl get pvc -n default nope"),
            "{w}"
        );
        assert!(w.len() < 250);
        let cfg = DefaultSnapshotClassConfig {
            when_source_missing: WarnOrDeny::Deny,
            ..Default::default()
        };
        let out = run(&demo(), &from_pvc("nope"), &cfg);
        assert_eq!(out.denials.len(), 1, "{out:?}");
        assert!(out.denials[0].contains("whenSourceMissing is deny"));
    }

    #[test]
    fn unknown_driver_warns_without_patching() {
        for (name, reason) in [
            ("static-pvc", "storageClassName: \"\""),
            ("hostpath-pvc", "not a CSI volume"),
        ] {
            let out = run(&demo(), &from_pvc(name), &Default::default());
            assert!(out.mutations.is_empty() && out.denials.is_empty());
            let [w] = out.warnings.as_slice() else {
                panic!("{out:?}")
            };
            assert!(w.contains(reason), "{w}");
        }
        let index = demo();
        index.storage_classes.replace([
            storage_class("a").provisioner(DRIVER).default_class(),
            storage_class("b").provisioner(DRIVER).default_class(),
        ]);
        let out = run(&index, &from_pvc("no-class-pvc"), &Default::default());
        assert!(
            out.warnings[0].contains("several are default (a, b)"),
            "{out:?}"
        );
        index.storage_classes.replace([]);
        let out = run(&index, &from_pvc("wffc-pvc"), &Default::default());
        assert!(
            out.warnings[0].contains("StorageClass csi-disk, which does not exist"),
            "{out:?}"
        );
    }

    #[test]
    fn unloaded_state_is_unavailable() {
        let view = ClusterIndex::unavailable("starting");
        let snap = from_pvc("disk-pvc");
        let input = input(Operation::Create, Phase::Mutating, &snap, None);
        assert!(check(&input, &view, &Default::default()).is_err());
    }
}
