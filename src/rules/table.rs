//! The rule table: every rule, once. The webhook's dispatch, the audit, the backfill, the
//! metrics and `policy check` read it; a new rule is a new module with a `pub const RULE` and
//! one line here. The order is the order rules run in for the same object, and the order
//! reports list them in.

use std::sync::LazyLock;

use super::pinned_pods;
use super::{
    Check, Phase, Rule, allowed_topologies, binding_mode, default_snapshot_class, local_volumes,
    node_topology, restore_readiness, snapshot_class_defaults, snapshot_validation,
};
use super::{
    default_group_snapshot_class, group_snapshot_class_defaults, group_snapshot_validation,
};
use crate::cluster::ResourceKind;

pub static RULES: &[&Rule] = &[
    &default_snapshot_class::RULE,
    &snapshot_class_defaults::RULE,
    &snapshot_validation::RULE,
    &restore_readiness::RULE,
    &binding_mode::RULE,
    &allowed_topologies::RULE,
    &node_topology::RULE,
    &local_volumes::RULE,
    &pinned_pods::RULE,
    &default_group_snapshot_class::RULE,
    &group_snapshot_class_defaults::RULE,
    &group_snapshot_validation::RULE,
];

/// The rules that answer in `phase` and judge `kind`, each with its check of that kind, in
/// table order. Built once: the webhook asks for every review, and searching the table each
/// time (a dozen rules, their phases and their kinds) cost more instructions than the rule
/// that then ran.
pub fn judging(phase: Phase, kind: ResourceKind) -> &'static [(&'static Rule, &'static Check)] {
    const KINDS: usize = ResourceKind::ALL.len();
    type Dispatch = [Vec<(&'static Rule, &'static Check)>; PHASES.len() * KINDS];
    static DISPATCH: LazyLock<Dispatch> = LazyLock::new(|| {
        std::array::from_fn(|slot| {
            let (phase, kind) = (PHASES[slot / KINDS], ResourceKind::ALL[slot % KINDS]);
            RULES
                .iter()
                .filter(|rule| rule.phases.contains(&phase))
                .filter_map(|rule| Some((*rule, rule.check_for(kind)?)))
                .collect()
        })
    });
    // `PHASES` and `ALL` list phases and kinds in declaration order (a test checks), so each
    // is its own index.
    &DISPATCH[phase as usize * KINDS + kind as usize]
}

/// Every phase, in declaration order.
const PHASES: [Phase; 2] = [Phase::Mutating, Phase::Validating];

/// A phase added to the enum stops this match compiling: add it here and to `PHASES`.
const _: fn(Phase) = |phase| match phase {
    Phase::Mutating | Phase::Validating => {}
};

/// The rule named `name` (`restore-readiness`).
pub fn find(name: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id.as_str() == name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::policy::Policy;

    #[test]
    fn names_and_policy_keys_are_unique_and_every_rule_judges_something() {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for rule in RULES {
            assert!(names.insert(rule.id.as_str()), "{} twice", rule.id);
            assert!(keys.insert(rule.policy_key), "{} twice", rule.policy_key);
            assert!(
                !rule.checks.is_empty() && !rule.phases.is_empty() && !rule.operations.is_empty(),
                "{}",
                rule.id
            );
            let kinds: HashSet<_> = rule.checks.iter().map(|c| c.kind()).collect();
            assert_eq!(
                kinds.len(),
                rule.checks.len(),
                "{}: one check per kind",
                rule.id
            );
        }
    }

    #[test]
    fn the_dispatch_holds_the_rules_of_each_phase_and_kind_in_table_order() {
        for (i, kind) in ResourceKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
        for (i, phase) in PHASES.into_iter().enumerate() {
            assert_eq!(phase as usize, i, "{phase:?}");
        }
        let mut judged = 0;
        for phase in PHASES {
            for kind in ResourceKind::ALL {
                let expected: Vec<_> = RULES
                    .iter()
                    .filter(|rule| rule.phases.contains(&phase))
                    .filter_map(|rule| Some((rule.id, rule.check_for(kind)?.kind())))
                    .collect();
                let got: Vec<_> = judging(phase, kind)
                    .iter()
                    .map(|(rule, check)| (rule.id, check.kind()))
                    .collect();
                assert_eq!(got, expected, "{phase:?} {kind:?}");
                judged += got.len();
            }
        }
        let checks: usize = RULES.iter().map(|r| r.checks.len() * r.phases.len()).sum();
        assert_eq!(
            judged, checks,
            "every check of every rule, in each of its phases"
        );
    }

    #[test]
    fn every_rule_has_its_policy_key_in_the_built_in_policy() {
        // The key a warning names (`rules.<key>.mode`) must be a key a person can set.
        let text = crate::policy::DEFAULT_POLICY_YAML;
        let policy = Policy::builtin();
        for rule in RULES {
            assert!(
                text.contains(&format!("  {}:", rule.policy_key)),
                "{}",
                rule.policy_key
            );
            let _ = (rule.settings)(&policy);
        }
    }

    #[test]
    fn the_benches_no_logic_baseline_turns_every_rule_off() {
        // benches/load.sh and profile.sh compare against it: a rule left on would make the
        // baseline do work and the ratios flatter.
        let policy = crate::testing::policy::example("benches/baseline-policy.yaml");
        for rule in RULES {
            assert_eq!(
                (rule.settings)(&policy).mode,
                crate::policy::Mode::Off,
                "{}",
                rule.id
            );
        }
    }

    #[test]
    fn rules_sort_in_table_order() {
        let mut ids: Vec<_> = RULES.iter().rev().map(|r| r.id).collect();
        ids.sort();
        let expected: Vec<_> = RULES.iter().map(|r| r.id).collect();
        assert_eq!(ids, expected);
    }
}
