//! default-group-snapshot-class: a VolumeGroupSnapshot created with `spec.source.selector` and
//! no `spec.volumeGroupSnapshotClassName` gets the default VolumeGroupSnapshotClass of the CSI
//! driver of the claims it selects.
//!
//! The snapshot controller picks that class later from the driver of the *first* PV it finds,
//! and every way that goes wrong — several default classes, claims of two drivers, no claim
//! selected, claims not bound yet — shows up as an Event minutes later. Here the choice is a
//! patch said in a warning, and the ambiguous cases are refused while the user is looking.
//!
//! The claims are those of the group snapshot's namespace its selector selects, found through
//! the claims' label index ([`ClusterView::pvcs_matching`]). Each claim's driver is resolved
//! exactly as the snapshot rule resolves it ([`claim_driver`]). Pre-provisioned group
//! snapshots (`source.volumeGroupSnapshotContentName`) are left alone. The patch,
//! `/spec/volumeGroupSnapshotClassName`, is the same in `v1beta1`, `v1beta2` and `v1`.

use std::collections::BTreeMap;

use jsonptr::Pointer;

use crate::cluster::ClusterView;
use crate::model::{VolumeGroupSnapshot, keys};
use crate::policy::{DefaultGroupSnapshotClassConfig, WarnOrDeny};
use crate::rules::default_snapshot_class::{ClaimDriver, claim_driver};
use crate::rules::patch::Json;
use crate::rules::{Audited, Check, For, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, Phase, RuleResult, patch};

pub fn check(
    input: &Input<'_, VolumeGroupSnapshot>,
    view: &dyn ClusterView,
    cfg: &DefaultGroupSnapshotClassConfig,
) -> RuleResult {
    if input.operation != Operation::Create || input.phase != Phase::Mutating {
        return Ok(Outcome::allow());
    }
    let group = input.object;
    let source = &group.spec.source;
    if group.spec.volume_group_snapshot_class_name.is_some()
        || source.volume_group_snapshot_content_name.is_some()
    {
        return Ok(Outcome::allow());
    }
    // No selector either: the validating rule denies that; nothing to choose from here.
    let Some(selector) = &source.selector else {
        return Ok(Outcome::allow());
    };
    let namespace = group.metadata.namespace.as_deref().unwrap_or_default();
    let name = group.metadata.qualified_name();
    let shown = selector.describe();
    let shown = if shown.is_empty() {
        "{} (every claim)".to_owned()
    } else {
        shown
    };

    let claims = view.pvcs_matching(namespace, selector)?;
    if claims.is_empty() {
        return Ok(match cfg.when_nothing_selected {
            WarnOrDeny::Warn => Outcome::warn(format!(
                "VolumeGroupSnapshot {name}: its selector {shown} selects no PersistentVolumeClaim in namespace {namespace}, so no default VolumeGroupSnapshotClass was set and the group snapshot will fail. Check: kubectl get pvc -n {namespace} -l '{shown}'"
            )),
            WarnOrDeny::Deny => Outcome::deny(format!(
                "VolumeGroupSnapshot {name} cannot be created: its selector {shown} selects no PersistentVolumeClaim in namespace {namespace} (policy rules.defaultGroupSnapshotClass.whenNothingSelected is deny). \
                 Check the labels with `kubectl get pvc -n {namespace} --show-labels`, label the claims to snapshot, or fix spec.source.selector."
            )),
        });
    }

    let mut by_driver: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut unbound = Vec::new();
    for pvc in &claims {
        let claim = pvc.metadata.name.as_str();
        if pvc.bound_volume().is_none() {
            unbound.push(claim);
        }
        let driver = claim_driver(pvc, view)?;
        match (driver.driver(), &driver) {
            (Some(name), _) => by_driver.entry(name.to_owned()).or_default().push(claim),
            (None, ClaimDriver::Unknown(reason)) => unknown.push(format!("{claim} ({reason})")),
            (None, _) => unknown.push(claim.to_owned()),
        }
    }

    let mut outcome = Outcome::allow();
    if !unbound.is_empty() {
        let (claims, are) = if unbound.len() == 1 {
            ("PersistentVolumeClaim", "is")
        } else {
            ("PersistentVolumeClaims", "are")
        };
        outcome = outcome.with_warning(format!(
            "VolumeGroupSnapshot {name}: {claims} {} in {namespace} {are} not bound yet; the snapshot controller takes no group snapshot until every selected claim is bound.",
            unbound.join(", ")
        ));
    }
    if by_driver.len() > 1 {
        let drivers: Vec<String> = by_driver
            .iter()
            .map(|(driver, claims)| format!("{driver}: {}", claims.join(", ")))
            .collect();
        return Ok(outcome.with_denial(format!(
            "VolumeGroupSnapshot {name} selects PersistentVolumeClaims of {} CSI drivers ({}); a group snapshot is taken by one driver, which cannot snapshot volumes it does not own. \
             Narrow spec.source.selector {shown} to the claims of one driver, or create one group snapshot per driver.",
            by_driver.len(),
            drivers.join("; ")
        )));
    }
    if !unknown.is_empty() {
        return Ok(outcome.with_warning(format!(
            "VolumeGroupSnapshot {name}: cannot tell the CSI driver of {}, so no default VolumeGroupSnapshotClass was set. Set spec.volumeGroupSnapshotClassName.",
            unknown.join(", ")
        )));
    }
    let Some((driver, selected)) = by_driver.into_iter().next() else {
        return Ok(outcome);
    };

    let classes = view.group_snapshot_classes_for_driver(&driver)?;
    let live: Vec<_> = classes
        .iter()
        .filter(|c| !c.metadata.is_being_deleted())
        .collect();
    let defaults: Vec<&str> = live
        .iter()
        .filter(|c| c.is_default())
        .map(|c| c.metadata.name.as_str())
        .collect();

    Ok(match defaults.as_slice() {
        [chosen] => outcome.with_mutation(
            vec![patch::add(
                patch::fixed(const { Pointer::from_static("/spec/volumeGroupSnapshotClassName") }),
                Json::string(chosen),
            )],
            Some(format!(
                "VolumeGroupSnapshot {name}: volumeGroupSnapshotClassName set to {chosen}, the default VolumeGroupSnapshotClass of {driver} (claims {}).",
                selected.join(", ")
            )),
        ),
        [] => {
            let others = if live.is_empty() {
                "it has no VolumeGroupSnapshotClass at all".to_owned()
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
                WarnOrDeny::Warn => outcome.with_warning(format!(
                    "VolumeGroupSnapshot {name} will stay unbound: CSI driver {driver} has no default VolumeGroupSnapshotClass ({others}). Set spec.volumeGroupSnapshotClassName or mark a class default."
                )),
                WarnOrDeny::Deny => outcome.with_denial(format!(
                    "VolumeGroupSnapshot {name} names no VolumeGroupSnapshotClass and CSI driver {driver} of its claims {} has no default one ({others}). \
                     The group snapshot would stay unbound (policy rules.defaultGroupSnapshotClass.whenNoDefault is deny). \
                     Set spec.volumeGroupSnapshotClassName, or mark a class of {driver} as default: \
                     kubectl annotate volumegroupsnapshotclass CLASS {}=true",
                    selected.join(", "),
                    keys::DEFAULT_GROUP_SNAPSHOT_CLASS
                )),
            }
        }
        several => outcome.with_denial(format!(
            "VolumeGroupSnapshot {name} names no VolumeGroupSnapshotClass and CSI driver {driver} has {} default VolumeGroupSnapshotClasses ({}); the snapshot controller refuses to pick one and the group snapshot would never be taken. \
             Set spec.volumeGroupSnapshotClassName to one of them, or remove the {} annotation from all but one (kubectl get volumegroupsnapshotclass).",
            several.len(),
            several.join(", "),
            keys::DEFAULT_GROUP_SNAPSHOT_CLASS
        )),
    })
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("default-group-snapshot-class"),
    policy_key: "defaultGroupSnapshotClass",
    phases: &[Phase::Mutating],
    operations: &[Operation::Create],
    checks: &[Check::VolumeGroupSnapshot(For::audited(
        |input, view, policy| check(input, view, &policy.rules.default_group_snapshot_class),
        // Dynamic group snapshots with no class that are not bound yet. Asked as the mutating
        // call: a patch means a usable default exists; the findings are the denials (several
        // defaults, claims of several drivers) and warnings (no default, nothing selected).
        Audited {
            select: |g| {
                g.spec.volume_group_snapshot_class_name.is_none()
                    && g.spec.source.volume_group_snapshot_content_name.is_none()
                    && g.bound_content_name().is_none()
            },
            phase: Phase::Mutating,
            operation: Operation::Create,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.default_group_snapshot_class),
};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::testing::*;

    const NAS: &str = "nasplugin.csi.alibabacloud.com";

    /// The captured scenario: gs-disk (DRIVER, WaitForFirstConsumer) and gs-nas (NAS); claims
    /// mysql-data and mysql-log (`group: db`, gs-disk) and shared-files (`group: mixed`,
    /// gs-nas), none bound; disk-group-default (default for DRIVER) and nas-group.
    fn scenario() -> ClusterIndex {
        cluster([
            storage_class("gs-disk").provisioner(DRIVER).into(),
            storage_class("gs-nas").provisioner(NAS).into(),
            pvc("default", "mysql-data")
                .class("gs-disk")
                .label("app", "mysql")
                .label("group", "db")
                .into(),
            pvc("default", "mysql-log")
                .class("gs-disk")
                .label("app", "mysql")
                .label("group", "db")
                .into(),
            pvc("default", "shared-files")
                .class("gs-nas")
                .label("app", "mysql")
                .label("group", "mixed")
                .into(),
            group_snapshot_class("disk-group-default")
                .driver(DRIVER)
                .default_class()
                .into(),
            group_snapshot_class("nas-group").driver(NAS).into(),
        ])
    }

    fn run(
        view: &dyn ClusterView,
        g: &VolumeGroupSnapshot,
        cfg: &DefaultGroupSnapshotClassConfig,
    ) -> Outcome {
        check(
            &input(Operation::Create, Phase::Mutating, g, None),
            view,
            cfg,
        )
        .unwrap()
    }

    fn db() -> VolumeGroupSnapshot {
        group_snapshot("default", "db-group").selecting(&[("group", "db")])
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
        Some(doc["spec"]["volumeGroupSnapshotClassName"].clone())
    }

    #[test]
    fn one_driver_gets_its_default_class_and_unbound_claims_are_named() {
        let out = run(&scenario(), &db(), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("disk-group-default")));
        assert!(out.denials.is_empty());
        let note = out.mutations[0].note.as_deref().unwrap();
        assert!(note.contains("claims mysql-data, mysql-log"), "{note}");
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            w.contains("mysql-data, mysql-log in default are not bound yet"),
            "{w}"
        );
        // Bound claims: no warning; the bound PV's driver counts.
        let view = scenario();
        view.pvcs.apply(
            pvc("default", "mysql-data")
                .class("gs-disk")
                .label("group", "db")
                .bound_to("pv-1"),
        );
        view.pvcs.apply(
            pvc("default", "mysql-log")
                .class("gs-disk")
                .label("group", "db")
                .bound_to("pv-2"),
        );
        view.pvs
            .replace([pv("pv-1").csi(DRIVER, "h1"), pv("pv-2").csi(DRIVER, "h2")]);
        let out = run(&view, &db(), &Default::default());
        assert_eq!(patched_class(&out), Some(json!("disk-group-default")));
        assert!(out.warnings.is_empty(), "{out:?}");
    }

    #[test]
    fn one_unbound_claim_is_named_in_the_singular() {
        let g = group_snapshot("default", "files").selecting(&[("group", "mixed")]);
        let out = run(&scenario(), &g, &Default::default());
        let [w, ..] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            w.contains("PersistentVolumeClaim shared-files in default is not bound yet"),
            "{w}"
        );
    }

    #[test]
    fn claims_of_two_drivers_are_denied_naming_each() {
        let g = group_snapshot("default", "all").selecting(&[("app", "mysql")]);
        let out = run(&scenario(), &g, &Default::default());
        assert!(out.mutations.is_empty());
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            d.contains(&format!(
                "2 CSI drivers ({DRIVER}: mysql-data, mysql-log; {NAS}: shared-files)"
            )),
            "{d}"
        );
    }

    #[test]
    fn explicit_class_preprovisioned_and_other_calls_are_left_alone() {
        let view = scenario();
        let cfg = Default::default();
        for g in [
            db().class("x"),
            group_snapshot("default", "s").source_content("c"),
            group_snapshot("default", "nothing"),
        ] {
            assert!(run(&view, &g, &cfg).is_empty(), "{g:?}");
        }
        let g = db();
        for (operation, phase) in [
            (Operation::Update, Phase::Mutating),
            (Operation::Create, Phase::Validating),
        ] {
            let input = input(operation, phase, &g, Some(&g));
            assert!(check(&input, &view, &cfg).unwrap().is_empty());
        }
    }

    #[test]
    fn nothing_selected_warns_or_denies_naming_the_selector() {
        let g = group_snapshot("default", "g")
            .selecting(&[("group", "db")])
            .selecting_expr("tier", "In", &["gold"]);
        let out = run(&scenario(), &g, &Default::default());
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            w.contains("selector group=db,tier in (gold) selects no PersistentVolumeClaim"),
            "{w}"
        );
        let cfg = DefaultGroupSnapshotClassConfig {
            when_nothing_selected: WarnOrDeny::Deny,
            ..Default::default()
        };
        let out = run(&scenario(), &g, &cfg);
        assert!(
            out.denials[0].contains("whenNothingSelected is deny"),
            "{out:?}"
        );
    }

    #[test]
    fn an_empty_selector_selects_every_claim_of_the_namespace() {
        let g = group_snapshot("default", "g").selecting(&[]);
        let out = run(&scenario(), &g, &Default::default());
        assert!(out.denials[0].contains("2 CSI drivers"), "{out:?}");
    }

    #[test]
    fn no_default_warns_or_denies_and_several_defaults_deny() {
        let view = scenario();
        view.group_snapshot_classes
            .replace([group_snapshot_class("plain").driver(DRIVER)]);
        let out = run(&view, &db(), &Default::default());
        assert!(out.mutations.is_empty() && out.denials.is_empty());
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("stay unbound") && w.contains("(its classes: plain)")),
            "{out:?}"
        );
        let cfg = DefaultGroupSnapshotClassConfig {
            when_no_default: WarnOrDeny::Deny,
            ..Default::default()
        };
        view.group_snapshot_classes.replace([]);
        let out = run(&view, &db(), &cfg);
        assert!(
            out.denials[0].contains("no VolumeGroupSnapshotClass at all")
                && out.denials[0].contains("kubectl annotate volumegroupsnapshotclass"),
            "{out:?}"
        );

        view.group_snapshot_classes.replace([
            group_snapshot_class("a").driver(DRIVER).default_class(),
            group_snapshot_class("b").driver(DRIVER).default_class(),
            group_snapshot_class("dying")
                .driver(DRIVER)
                .default_class()
                .deleting(),
        ]);
        let out = run(&view, &db(), &Default::default());
        assert!(
            out.denials[0].contains("2 default VolumeGroupSnapshotClasses (a, b)"),
            "{out:?}"
        );
    }

    #[test]
    fn unknown_driver_warns_without_patching() {
        let view = scenario();
        view.pvcs
            .apply(pvc("default", "static").class("").label("group", "db"));
        let out = run(&view, &db(), &Default::default());
        assert!(out.mutations.is_empty() && out.denials.is_empty());
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("cannot tell the CSI driver of static")),
            "{out:?}"
        );
    }

    #[test]
    fn unloaded_state_is_unavailable() {
        let view = ClusterIndex::unavailable("starting");
        let g = db();
        let input = input(Operation::Create, Phase::Mutating, &g, None);
        assert!(check(&input, &view, &Default::default()).is_err());
    }
}
