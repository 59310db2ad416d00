//! snapshot-class-defaults: at most one default VolumeSnapshotClass per CSI driver.
//!
//! With two classes of one driver annotated `snapshot.storage.kubernetes.io/is-default-class:
//! "true"`, every VolumeSnapshot that names no class fails ("too many default classes").
//! external-snapshotter v8.2 removed the webhook that refused the second default, so today
//! nothing stops it; this rule restores that check.
//!
//! A class never conflicts with itself (same name), and classes being deleted do not count.
//! On UPDATE, a class that already was the default of the same driver stays allowed even when
//! another default exists: that duplicate predates this change, and refusing would make every
//! unrelated update (a label, a finalizer) fail. It gets a warning naming both instead.
//! An annotation value other than exactly `"true"` (`True`, `yes`) is ignored by the snapshot
//! controller, so a class written that way is not a default: said in a warning.

use std::sync::Arc;

use crate::cluster::{ClusterView, Lookup};
use crate::model::{ObjectMeta, VolumeGroupSnapshotClass, VolumeSnapshotClass, keys};
use crate::policy::SnapshotClassDefaultsConfig;
use crate::rules::{Audited, Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult};

/// A class kind with one default per CSI driver: VolumeSnapshotClass and
/// VolumeGroupSnapshotClass follow the same rule, with their own words.
pub(crate) trait DefaultPerDriver: Sized {
    /// `VolumeSnapshotClass`.
    const KIND: &'static str;
    /// `VolumeSnapshotClasses`.
    const KINDS: &'static str;
    /// What fails without a class: `VolumeSnapshot`.
    const OBJECT: &'static str;
    /// The same, in a sentence: `snapshots`.
    const OBJECTS: &'static str;
    /// The annotation that marks the default.
    const DEFAULT_KEY: &'static str;
    fn meta(&self) -> &ObjectMeta;
    fn driver(&self) -> &str;
    fn is_default(&self) -> bool;
    /// Marked default and not being deleted: a default that counts.
    fn is_live_default(&self) -> bool;
    fn of_driver(view: &dyn ClusterView, driver: &str) -> Lookup<Vec<Arc<Self>>>;
}

impl DefaultPerDriver for VolumeSnapshotClass {
    const KIND: &'static str = "VolumeSnapshotClass";
    const KINDS: &'static str = "VolumeSnapshotClasses";
    const OBJECT: &'static str = "VolumeSnapshot";
    const OBJECTS: &'static str = "snapshots";
    const DEFAULT_KEY: &'static str = keys::DEFAULT_SNAPSHOT_CLASS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn driver(&self) -> &str {
        &self.driver
    }
    fn is_default(&self) -> bool {
        VolumeSnapshotClass::is_default(self)
    }
    fn is_live_default(&self) -> bool {
        VolumeSnapshotClass::is_live_default(self)
    }
    fn of_driver(view: &dyn ClusterView, driver: &str) -> Lookup<Vec<Arc<Self>>> {
        view.snapshot_classes_for_driver(driver)
    }
}

impl DefaultPerDriver for VolumeGroupSnapshotClass {
    const KIND: &'static str = "VolumeGroupSnapshotClass";
    const KINDS: &'static str = "VolumeGroupSnapshotClasses";
    const OBJECT: &'static str = "VolumeGroupSnapshot";
    const OBJECTS: &'static str = "group snapshots";
    const DEFAULT_KEY: &'static str = keys::DEFAULT_GROUP_SNAPSHOT_CLASS;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn driver(&self) -> &str {
        &self.driver
    }
    fn is_default(&self) -> bool {
        VolumeGroupSnapshotClass::is_default(self)
    }
    fn is_live_default(&self) -> bool {
        VolumeGroupSnapshotClass::is_live_default(self)
    }
    fn of_driver(view: &dyn ClusterView, driver: &str) -> Lookup<Vec<Arc<Self>>> {
        view.group_snapshot_classes_for_driver(driver)
    }
}

pub fn check(
    input: &Input<'_, VolumeSnapshotClass>,
    view: &dyn ClusterView,
    _cfg: &SnapshotClassDefaultsConfig,
) -> RuleResult {
    one_default_per_driver(input, view)
}

/// The rule for any class kind with one default per driver.
pub(crate) fn one_default_per_driver<C: DefaultPerDriver>(
    input: &Input<'_, C>,
    view: &dyn ClusterView,
) -> RuleResult {
    if !matches!(input.operation, Operation::Create | Operation::Update) {
        return Ok(Outcome::allow());
    }
    let class = input.object;
    let kind = C::KIND;
    let name = class.meta().display_name();
    if class.meta().is_being_deleted() {
        return Ok(Outcome::allow());
    }
    if !class.is_default() {
        return Ok(match class.meta().annotation(C::DEFAULT_KEY) {
            Some(value) if value.eq_ignore_ascii_case("true") => Outcome::warn(format!(
                "{kind} {name} is NOT a default class: {} is {value:?}, and only the exact string \"true\" counts.",
                C::DEFAULT_KEY
            )),
            _ => Outcome::allow(),
        });
    }

    let driver = class.driver();
    let others: Vec<String> = C::of_driver(view, driver)?
        .iter()
        .filter(|c| c.meta().name != class.meta().name && c.is_live_default())
        .map(|c| c.meta().name.clone())
        .collect();
    if others.is_empty() {
        return Ok(Outcome::allow());
    }
    let others_text = others.join(", ");

    let was_default_of_same_driver = input.operation == Operation::Update
        && input
            .old_object
            .is_some_and(|old| old.is_default() && old.driver() == class.driver());
    if was_default_of_same_driver {
        return Ok(Outcome::warn(format!(
            "{kind} {name} and {others_text} are all default for {driver}; {} without a class fail until only one is. Remove {} from all but one.",
            C::OBJECTS,
            C::DEFAULT_KEY
        )));
    }

    let (existing, is) = if others.len() == 1 {
        (format!("{kind} {others_text}"), "is")
    } else {
        (format!("{} {others_text}", C::KINDS), "are")
    };
    Ok(Outcome::deny(format!(
        "{kind} {name} cannot be a default class for CSI driver {driver}: {existing} {is} already its default. \
         With two defaults, every {object} that names no class fails. \
         Either drop the annotation {key} from {name}, or first remove it from the current default: \
         kubectl annotate {resource} {first} {key}-",
        object = C::OBJECT,
        key = C::DEFAULT_KEY,
        resource = kind.to_lowercase(),
        first = others[0],
    )))
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("snapshot-class-defaults"),
    policy_key: "snapshotClassDefaults",
    phases: &[Phase::Validating],
    operations: &[Operation::Create, Operation::Update],
    checks: &[Check::VolumeSnapshotClass(For::audited(
        |input, view, policy| check(input, view, &policy.rules.snapshot_class_defaults),
        // Every class, as an UPDATE of itself: the rule then speaks of an existing duplicate
        // ("X and Y are all default for D") instead of refusing a new one.
        Audited {
            select: |_| true,
            phase: Phase::Validating,
            operation: Operation::Update,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.snapshot_class_defaults),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::rules::Phase;
    use crate::testing::*;

    /// A class of `driver`, the default one when `default`.
    fn vsc(name: &str, driver: &str, default: bool) -> VolumeSnapshotClass {
        let class = snapshot_class(name).driver(driver);
        if default {
            class.default_class()
        } else {
            class
        }
    }

    fn classes(classes: Vec<VolumeSnapshotClass>) -> ClusterIndex {
        cluster(classes.into_iter().map(Into::into))
    }

    fn run(
        view: &ClusterIndex,
        op: Operation,
        new: &VolumeSnapshotClass,
        old: Option<&VolumeSnapshotClass>,
    ) -> Outcome {
        let input = input(op, Phase::Validating, new, old);
        check(&input, view, &Default::default()).unwrap()
    }

    #[test]
    fn first_default_and_non_defaults_are_allowed() {
        let view = classes(vec![vsc("existing", DRIVER, true)]);
        assert!(run(&view, Operation::Create, &vsc("plain", DRIVER, false), None).is_empty());
        assert!(
            run(
                &view,
                Operation::Create,
                &vsc("other", "other.csi", true),
                None
            )
            .is_empty()
        );
        // Re-applying the existing default is not a conflict with itself.
        assert!(
            run(
                &view,
                Operation::Create,
                &vsc("existing", DRIVER, true),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn second_default_for_a_driver_is_denied_naming_the_existing_one() {
        let view = classes(vec![
            vsc("existing", DRIVER, true),
            vsc("plain", DRIVER, false),
        ]);
        let out = run(&view, Operation::Create, &vsc("second", DRIVER, true), None);
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(d.contains("VolumeSnapshotClass second cannot be a default class for CSI driver diskplugin.csi.alibabacloud.com"), "{d}");
        assert!(
            d.contains("VolumeSnapshotClass existing is already its default"),
            "{d}"
        );
        assert!(d.contains("kubectl annotate volumesnapshotclass existing snapshot.storage.kubernetes.io/is-default-class-"), "{d}");

        // Turning an existing class into a second default by UPDATE is the same mistake.
        let out = run(
            &view,
            Operation::Update,
            &vsc("plain", DRIVER, true),
            Some(&vsc("plain", DRIVER, false)),
        );
        assert_eq!(out.denials.len(), 1, "{out:?}");
        // So is moving a default class to a driver that already has one.
        let out = run(
            &view,
            Operation::Update,
            &vsc("moved", DRIVER, true),
            Some(&vsc("moved", "x.csi", true)),
        );
        assert_eq!(out.denials.len(), 1, "{out:?}");
    }

    #[test]
    fn several_existing_defaults_are_all_named() {
        let view = classes(vec![vsc("a", DRIVER, true), vsc("b", DRIVER, true)]);
        let out = run(&view, Operation::Create, &vsc("c", DRIVER, true), None);
        assert!(
            out.denials[0].contains("VolumeSnapshotClasses a, b are already its default"),
            "{out:?}"
        );
    }

    #[test]
    fn classes_being_deleted_do_not_count_and_a_deleting_class_is_not_judged() {
        let dying = vsc("dying", DRIVER, true).deleting();
        let view = classes(vec![dying.clone()]);
        assert!(run(&view, Operation::Create, &vsc("new", DRIVER, true), None).is_empty());

        let view = classes(vec![vsc("a", DRIVER, true), dying.clone()]);
        assert!(run(&view, Operation::Update, &dying, Some(&dying)).is_empty());
    }

    #[test]
    fn unrelated_update_of_a_pre_existing_duplicate_only_warns() {
        let view = classes(vec![vsc("a", DRIVER, true), vsc("b", DRIVER, true)]);
        let labelled = vsc("b", DRIVER, true).label("team", "x");
        let out = run(
            &view,
            Operation::Update,
            &labelled,
            Some(&vsc("b", DRIVER, true)),
        );
        assert!(out.denials.is_empty(), "{out:?}");
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(w.contains("b and a are all default"), "{w}");
        assert!(w.len() < 250, "{w}");
    }

    #[test]
    fn a_default_annotation_that_is_not_exactly_true_is_pointed_out() {
        let view = classes(vec![vsc("a", DRIVER, true)]);
        let class = snapshot_class("c")
            .driver(DRIVER)
            .annotate(keys::DEFAULT_SNAPSHOT_CLASS, "True");
        let out = run(&view, Operation::Create, &class, None);
        assert!(out.denials.is_empty());
        assert!(out.warnings[0].contains("NOT a default class"), "{out:?}");
    }

    #[test]
    fn unloaded_state_is_unavailable() {
        let view = ClusterIndex::unavailable("starting");
        let class = vsc("c", DRIVER, true);
        let input = input(Operation::Create, Phase::Validating, &class, None);
        assert!(check(&input, &view, &Default::default()).is_err());
    }
}
