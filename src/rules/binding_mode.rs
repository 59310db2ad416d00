//! binding-mode: a topology-restricted StorageClass must bind `WaitForFirstConsumer`.
//!
//! With `Immediate`, a claim gets its volume (provisioned, or a static local PV picked) before
//! any pod uses it, so before the scheduler has chosen a node. When the volume is reachable
//! from only part of the cluster (a zonal disk, a node-local or LVM volume), the pod is then
//! tied to wherever the volume happened to land, and stays Pending with "volume node affinity
//! conflict" when it cannot run there. `WaitForFirstConsumer` lets the scheduler pick the node
//! first and the volume follow it.
//!
//! A class is topology-restricted when it has `allowedTopologies`, uses the
//! `kubernetes.io/no-provisioner` provisioner, or uses a provisioner the policy lists as zonal
//! or node-local. The API server defaults an absent `volumeBindingMode` to `Immediate` before
//! admission, so "written as Immediate" and "not written at all" look the same here; the
//! policy decides what happens (`rules.bindingMode.mode`):
//!
//! - `mutate`: the mutating phase sets `WaitForFirstConsumer` and says so; the validating phase
//!   warns if the class still binds `Immediate` (the mutating webhook did not run).
//! - `enforce`: the validating phase denies; `warn`: the same text, as a warning (the engine
//!   turns denials into warnings in warn mode).
//!
//! A class annotated `storage-admission.io/allow-immediate-binding: "true"` is left alone.
//! Only CREATE is judged: `volumeBindingMode` is immutable, so an UPDATE cannot change it.

use jsonptr::Pointer;

use crate::cluster::ClusterView;
use crate::model::{StorageClass, VolumeBindingMode, annotation_is_true, keys};
use crate::policy::{BindingModeAction, BindingModeConfig};
use crate::rules::{Audited, Check, For, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, Phase, RuleResult, patch};

/// Why a class's volumes are reachable from only some nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Restriction {
    AllowedTopologies,
    NoProvisioner,
    /// Listed in the policy's `topologyRestrictedProvisioners`.
    Listed(String),
}

impl Restriction {
    /// Completes "... binds Immediate, but {reason}".
    fn reason(&self) -> String {
        match self {
            Self::AllowedTopologies => {
                "its allowedTopologies limit volumes to some nodes".to_owned()
            }
            Self::NoProvisioner => {
                format!("{} volumes are node-local", keys::NO_PROVISIONER)
            }
            Self::Listed(p) => format!("{p} volumes are zonal or node-local"),
        }
    }
}

/// Whether the class's volumes are reachable from only part of the cluster, and why. The
/// user-written `allowedTopologies` is named first: it is the reason a person can see.
pub(crate) fn restriction(sc: &StorageClass, cfg: &BindingModeConfig) -> Option<Restriction> {
    if !sc.allowed_topologies.is_empty() {
        Some(Restriction::AllowedTopologies)
    } else if sc.provisioner == keys::NO_PROVISIONER {
        Some(Restriction::NoProvisioner)
    } else if cfg
        .topology_restricted_provisioners
        .contains(&sc.provisioner)
    {
        Some(Restriction::Listed(sc.provisioner.clone()))
    } else {
        None
    }
}

pub fn check(
    input: &Input<'_, StorageClass>,
    _view: &dyn ClusterView,
    cfg: &BindingModeConfig,
) -> RuleResult {
    if input.operation != Operation::Create || cfg.mode == BindingModeAction::Off {
        return Ok(Outcome::allow());
    }
    let sc = input.object;
    if sc.binding_mode() == VolumeBindingMode::WaitForFirstConsumer {
        return Ok(Outcome::allow());
    }
    let Some(restriction) = restriction(sc, cfg) else {
        return Ok(Outcome::allow());
    };
    let name = sc.metadata.display_name();
    let opt_out = sc.metadata.annotation(keys::ALLOW_IMMEDIATE_BINDING);

    if annotation_is_true(opt_out) {
        // Said once, by the webhook that always sees the final object.
        return Ok(if input.phase == Phase::Validating {
            Outcome::warn(format!(
                "StorageClass {name} binds Immediate although {}; kept because it is annotated {}: \"true\".",
                restriction.reason(),
                keys::ALLOW_IMMEDIATE_BINDING
            ))
        } else {
            Outcome::allow()
        });
    }

    let mut outcome = match (cfg.mode, input.phase) {
        (BindingModeAction::Mutate, Phase::Mutating) => {
            let path = patch::fixed(const { Pointer::from_static("/volumeBindingMode") });
            let value = patch::Json::string("WaitForFirstConsumer");
            let op = if sc.volume_binding_mode.is_some() {
                patch::replace(path, value)
            } else {
                patch::add(path, value)
            };
            Outcome::allow().with_mutation(
                vec![op],
                Some(format!(
                    "StorageClass {name}: volumeBindingMode set to WaitForFirstConsumer (was Immediate, the default) as {}. To keep Immediate, annotate {}=true.",
                    restriction.reason(),
                    keys::ALLOW_IMMEDIATE_BINDING
                )),
            )
        }
        (BindingModeAction::Mutate, Phase::Validating) => Outcome::warn(format!(
            "StorageClass {name} still binds Immediate (the storage-admission mutating webhook did not change it), but {}: pods can stay Pending. Recreate it with volumeBindingMode: WaitForFirstConsumer.",
            restriction.reason()
        )),
        (BindingModeAction::Enforce | BindingModeAction::Warn, Phase::Validating) => {
            // Two sentences, two entries: each stays short enough to survive as a warning in
            // warn mode, and in enforce mode they read as one message, line by line.
            Outcome::deny(format!(
                "StorageClass {name} binds Immediate, but {}: volumes are placed before pods are scheduled, so a pod can stay Pending out of reach.",
                restriction.reason()
            ))
            .with_denial(format!(
                "Set volumeBindingMode: WaitForFirstConsumer on StorageClass {name} (or, if Immediate is deliberate, annotate it {}: \"true\").",
                keys::ALLOW_IMMEDIATE_BINDING
            ))
        }
        (BindingModeAction::Enforce | BindingModeAction::Warn, Phase::Mutating)
        | (BindingModeAction::Off, _) => Outcome::allow(),
    };
    if input.phase == Phase::Validating
        && let Some(value) = opt_out
    {
        outcome = outcome.with_warning(format!(
            "StorageClass {name}: annotation {} is {value:?}, not \"true\", so it is ignored.",
            keys::ALLOW_IMMEDIATE_BINDING
        ));
    }
    Ok(outcome)
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("binding-mode"),
    policy_key: "bindingMode",
    phases: &[Phase::Mutating, Phase::Validating],
    operations: &[Operation::Create],
    checks: &[Check::StorageClass(For::audited(
        |input, view, policy| check(input, view, &policy.rules.binding_mode),
        // An opted-out class only gets an informational note from the webhook: not a finding.
        Audited {
            select: |c| !annotation_is_true(c.metadata.annotation(keys::ALLOW_IMMEDIATE_BINDING)),
            phase: Phase::Validating,
            operation: Operation::Create,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.binding_mode),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::testing::{self, *};

    fn cfg(mode: BindingModeAction) -> BindingModeConfig {
        testing::policy::binding_mode(mode)
    }

    fn run(sc: &StorageClass, op: Operation, phase: Phase, mode: BindingModeAction) -> Outcome {
        let view = ClusterIndex::unavailable("the rule must not read the cluster");
        let input = input(op, phase, sc, (op == Operation::Update).then_some(sc));
        check(&input, &view, &cfg(mode)).unwrap()
    }

    fn local_storage() -> StorageClass {
        storage_class("local-storage")
            .provisioner(keys::NO_PROVISIONER)
            .immediate()
    }

    fn patch_json(outcome: &Outcome) -> serde_json::Value {
        serde_json::to_value(&outcome.mutations[0].ops).unwrap()
    }

    #[test]
    fn mutate_replaces_immediate_and_says_why() {
        let out = run(
            &local_storage(),
            Operation::Create,
            Phase::Mutating,
            BindingModeAction::Mutate,
        );
        assert_eq!(
            patch_json(&out),
            json!([{"op": "replace", "path": "/volumeBindingMode", "value": "WaitForFirstConsumer"}])
        );
        let note = out.mutations[0].note.as_deref().unwrap();
        assert!(note.contains("StorageClass local-storage"), "{note}");
        assert!(note.contains("kubernetes.io/no-provisioner volumes are node-local"));
        assert!(note.contains(keys::ALLOW_IMMEDIATE_BINDING));
        assert!(note.len() < 250, "{} chars: {note}", note.len());
        assert!(out.denials.is_empty() && out.warnings.is_empty());
    }

    #[test]
    fn mutate_adds_the_field_when_absent() {
        let sc = storage_class("ebs").provisioner("ebs.csi.aws.com");
        let out = run(
            &sc,
            Operation::Create,
            Phase::Mutating,
            BindingModeAction::Mutate,
        );
        assert_eq!(
            patch_json(&out),
            json!([{"op": "add", "path": "/volumeBindingMode", "value": "WaitForFirstConsumer"}])
        );
        assert!(
            out.mutations[0]
                .note
                .as_deref()
                .unwrap()
                .contains("ebs.csi.aws.com volumes are zonal or node-local")
        );
    }

    #[test]
    fn allowed_topologies_make_any_provisioner_restricted() {
        let sc = storage_class("nfs-zonal")
            .provisioner("example.com/nfs")
            .immediate()
            .allowed_topology(&[(keys::ZONE, &["b"])]);
        let out = run(
            &sc,
            Operation::Create,
            Phase::Mutating,
            BindingModeAction::Mutate,
        );
        assert_eq!(out.mutations.len(), 1);
        assert!(
            out.mutations[0]
                .note
                .as_deref()
                .unwrap()
                .contains("allowedTopologies")
        );
    }

    #[test]
    fn unrestricted_and_already_waiting_classes_are_left_alone() {
        let nfs = storage_class("nfs")
            .provisioner("example.com/nfs")
            .immediate();
        let wffc = storage_class("l")
            .provisioner(keys::NO_PROVISIONER)
            .wait_for_first_consumer();
        for sc in [&nfs, &wffc] {
            for phase in [Phase::Mutating, Phase::Validating] {
                for mode in [
                    BindingModeAction::Mutate,
                    BindingModeAction::Enforce,
                    BindingModeAction::Warn,
                ] {
                    assert!(run(sc, Operation::Create, phase, mode).is_empty());
                }
            }
        }
    }

    #[test]
    fn validating_phase_in_mutate_mode_warns_when_still_immediate() {
        let out = run(
            &local_storage(),
            Operation::Create,
            Phase::Validating,
            BindingModeAction::Mutate,
        );
        assert!(out.mutations.is_empty() && out.denials.is_empty());
        assert_eq!(out.warnings.len(), 1);
        let w = &out.warnings[0];
        assert!(
            w.contains("still binds Immediate") && w.contains("Recreate"),
            "{w}"
        );
        assert!(w.len() < 250, "{} chars: {w}", w.len());
    }

    #[test]
    fn enforce_and_warn_deny_in_the_validating_phase_only() {
        for mode in [BindingModeAction::Enforce, BindingModeAction::Warn] {
            let sc = local_storage();
            assert!(run(&sc, Operation::Create, Phase::Mutating, mode).is_empty());
            let out = run(&sc, Operation::Create, Phase::Validating, mode);
            assert!(out.mutations.is_empty() && out.warnings.is_empty());
            assert_eq!(out.denials.len(), 2);
            assert!(out.denials[0].contains("placed before pods are scheduled"));
            assert!(out.denials[1].contains("WaitForFirstConsumer"));
            // In warn mode the engine prefixes each with "would be denied (policy mode is
            // warn, rules.bindingMode): ", 58 characters.
            for d in &out.denials {
                assert!(d.len() + 58 < 250, "{} chars: {d}", d.len());
            }
        }
    }

    #[test]
    fn opt_out_annotation_keeps_immediate_with_one_note() {
        let sc = local_storage().annotate(keys::ALLOW_IMMEDIATE_BINDING, "true");
        for mode in [
            BindingModeAction::Mutate,
            BindingModeAction::Enforce,
            BindingModeAction::Warn,
        ] {
            assert!(run(&sc, Operation::Create, Phase::Mutating, mode).is_empty());
            let out = run(&sc, Operation::Create, Phase::Validating, mode);
            assert!(out.denials.is_empty() && out.mutations.is_empty());
            assert_eq!(out.warnings.len(), 1);
            assert!(out.warnings[0].contains("kept because"));
        }
    }

    #[test]
    fn opt_out_annotation_other_than_true_is_ignored_and_said() {
        let sc = local_storage().annotate(keys::ALLOW_IMMEDIATE_BINDING, "yes");
        let out = run(
            &sc,
            Operation::Create,
            Phase::Mutating,
            BindingModeAction::Mutate,
        );
        assert_eq!(out.mutations.len(), 1);
        let out = run(
            &sc,
            Operation::Create,
            Phase::Validating,
            BindingModeAction::Enforce,
        );
        assert_eq!(out.denials.len(), 2);
        assert!(
            out.warnings[0].contains("\"yes\", not \"true\""),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn updates_and_off_are_not_judged() {
        let sc = local_storage();
        for phase in [Phase::Mutating, Phase::Validating] {
            assert!(run(&sc, Operation::Update, phase, BindingModeAction::Enforce).is_empty());
            assert!(run(&sc, Operation::Create, phase, BindingModeAction::Off).is_empty());
        }
    }

    #[test]
    fn restriction_order_and_listed_provisioners() {
        let cfg = cfg(BindingModeAction::Mutate);
        let sc = storage_class("sc").provisioner("topolvm.io");
        assert_eq!(
            restriction(&sc, &cfg),
            Some(Restriction::Listed("topolvm.io".into()))
        );
        let sc = storage_class("sc")
            .provisioner(keys::NO_PROVISIONER)
            .allowed_topology(&[("k", &["v"])]);
        assert_eq!(restriction(&sc, &cfg), Some(Restriction::AllowedTopologies));
        assert_eq!(
            restriction(&storage_class("sc").provisioner("example.com/nfs"), &cfg),
            None
        );
    }
}
