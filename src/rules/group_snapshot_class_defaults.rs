//! group-snapshot-class-defaults: at most one default VolumeGroupSnapshotClass per CSI driver.
//!
//! The snapshot controller fails every VolumeGroupSnapshot without a class when its driver has
//! two defaults ("2 default snapshot classes were found"), and nothing has refused the second
//! default since the validation webhook was removed in external-snapshotter v8.2. The rule is
//! the VolumeSnapshotClass one ([`crate::rules::snapshot_class_defaults`]) for the group classes'
//! annotation `groupsnapshot.storage.kubernetes.io/is-default-class`, with the same
//! allowance: an unrelated update of a class that already was a duplicate only warns.

use crate::cluster::ClusterView;
use crate::model::VolumeGroupSnapshotClass;
use crate::policy::GroupSnapshotClassDefaultsConfig;
use crate::rules::snapshot_class_defaults::one_default_per_driver;
use crate::rules::{Audited, Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, RuleResult};

pub fn check(
    input: &Input<'_, VolumeGroupSnapshotClass>,
    view: &dyn ClusterView,
    _cfg: &GroupSnapshotClassDefaultsConfig,
) -> RuleResult {
    one_default_per_driver(input, view)
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("group-snapshot-class-defaults"),
    policy_key: "groupSnapshotClassDefaults",
    phases: &[Phase::Validating],
    operations: &[Operation::Create, Operation::Update],
    checks: &[Check::VolumeGroupSnapshotClass(For::audited(
        |input, view, policy| check(input, view, &policy.rules.group_snapshot_class_defaults),
        // Every class, as an UPDATE of itself: an existing duplicate is reported as such.
        Audited {
            select: |_| true,
            phase: Phase::Validating,
            operation: Operation::Update,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.group_snapshot_class_defaults),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::model::keys;
    use crate::rules::Outcome;
    use crate::testing::*;

    fn class(name: &str, driver: &str, default: bool) -> VolumeGroupSnapshotClass {
        let class = group_snapshot_class(name).driver(driver);
        if default {
            class.default_class()
        } else {
            class
        }
    }

    fn run(
        view: &ClusterIndex,
        op: Operation,
        new: &VolumeGroupSnapshotClass,
        old: Option<&VolumeGroupSnapshotClass>,
    ) -> Outcome {
        check(
            &input(op, Phase::Validating, new, old),
            view,
            &Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_second_default_is_denied_naming_the_first() {
        let view = cluster([class("disk-group-default", DRIVER, true).into()]);
        assert!(
            run(
                &view,
                Operation::Create,
                &class("plain", DRIVER, false),
                None
            )
            .is_empty()
        );
        assert!(
            run(
                &view,
                Operation::Create,
                &class("nas", "nas.csi", true),
                None
            )
            .is_empty()
        );
        assert!(
            run(
                &view,
                Operation::Create,
                &class("disk-group-default", DRIVER, true),
                None
            )
            .is_empty(),
            "not a conflict with itself"
        );
        let out = run(
            &view,
            Operation::Create,
            &class("second", DRIVER, true),
            None,
        );
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            d.contains("VolumeGroupSnapshotClass second cannot be a default class for CSI driver diskplugin.csi.alibabacloud.com: VolumeGroupSnapshotClass disk-group-default is already its default")
                && d.contains("every VolumeGroupSnapshot that names no class fails")
                && d.contains("kubectl annotate volumegroupsnapshotclass disk-group-default groupsnapshot.storage.kubernetes.io/is-default-class-"),
            "{d}"
        );
        // A snapshot class default of the same driver is another kind: no conflict.
        let view = cluster([default_snapclass().into()]);
        assert!(run(&view, Operation::Create, &class("g", DRIVER, true), None).is_empty());
    }

    #[test]
    fn an_unrelated_update_of_an_existing_duplicate_only_warns() {
        let view = cluster([
            class("a", DRIVER, true).into(),
            class("b", DRIVER, true).into(),
        ]);
        let out = run(
            &view,
            Operation::Update,
            &class("b", DRIVER, true).label("team", "x"),
            Some(&class("b", DRIVER, true)),
        );
        assert!(out.denials.is_empty(), "{out:?}");
        assert!(
            out.warnings[0].contains("b and a are all default")
                && out.warnings[0].contains("group snapshots without a class fail"),
            "{out:?}"
        );
        let out = run(
            &view,
            Operation::Update,
            &class("c", DRIVER, true),
            Some(&class("c", DRIVER, false)),
        );
        assert!(
            out.denials[0].contains("VolumeGroupSnapshotClasses a, b are already its default"),
            "{out:?}"
        );
    }

    #[test]
    fn a_default_annotation_that_is_not_exactly_true_is_pointed_out() {
        let view = cluster([]);
        let c = group_snapshot_class("c")
            .driver(DRIVER)
            .annotate(keys::DEFAULT_GROUP_SNAPSHOT_CLASS, "True");
        let out = run(&view, Operation::Create, &c, None);
        assert!(out.warnings[0].contains("VolumeGroupSnapshotClass c is NOT a default class"));
    }

    #[test]
    fn unloaded_state_is_unavailable() {
        let view = ClusterIndex::unavailable("starting");
        let c = class("c", DRIVER, true);
        let input = input(Operation::Create, Phase::Validating, &c, None);
        assert!(check(&input, &view, &Default::default()).is_err());
    }
}
