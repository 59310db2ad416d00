//! Policy applied to a rule's result, in one place for the webhook, the audit and the backfill:
//! whether the rule runs at all (mode `off`, exemptions), what its mode makes of its denials
//! and patches (`warn` turns them into warnings), and what `whenStateUnavailable` makes of a
//! rule that could not decide. Each caller takes from the [`Gated`] result what it acts on: the
//! webhook all of it, the audit what the rule said (its findings), the backfill the patch.

use json_patch::PatchOperation;

use super::{Outcome, Rule, RuleResult, patch};
use crate::cluster::StateUnavailable;
use crate::policy::{Mode, Policy, UserInfo, WhenUnavailable};

/// How one rule ended, for logs and metrics (bounded values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleStatus {
    Allowed,
    Warned,
    Patched,
    Denied,
    /// The rule could not decide (cluster state unavailable).
    Unavailable,
    /// The object could not be decoded for the rule.
    Invalid,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Warned => "warned",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
        }
    }
}

/// Whether `rule` runs for an object in `namespace` written by `user`: its mode is not `off`,
/// and neither the policy-wide nor the rule's own exemptions match. The audit and the backfill
/// do not know who wrote an existing object and pass an empty [`UserInfo`], so only the
/// namespace part of the exemptions applies there.
pub fn applies(rule: &Rule, policy: &Policy, user: &UserInfo, namespace: Option<&str>) -> bool {
    let settings = (rule.settings)(policy);
    let namespace = namespace.filter(|n| !n.is_empty());
    settings.mode != Mode::Off
        && !policy.exemptions.matches(user, namespace)
        && !settings.exemptions.matches(user, namespace)
}

/// A rule's result under the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Gated {
    pub status: RuleStatus,
    /// Denials that stand (mode enforce, a rule that may deny).
    pub denials: Vec<String>,
    /// The patch to apply (mode enforce only).
    pub patch: Vec<PatchOperation>,
    /// What the applied patch does, in the rule's words (also among the warnings).
    pub notes: Vec<String>,
    /// Warnings as the webhook returns them, including what `warn` mode did not apply or deny.
    pub warnings: Vec<String>,
    /// What the rule itself said — its denials, then its warnings — whatever the mode: an
    /// audit finding when not empty.
    pub said: Vec<String>,
    /// The rule could not decide: the audit neither reports nor forgets its findings.
    pub undecided: bool,
}

/// Applies `rule`'s mode and `whenStateUnavailable` from `policy` to what it returned.
pub fn gate(rule: &Rule, policy: &Policy, result: RuleResult) -> Gated {
    let settings = (rule.settings)(policy);
    match result {
        Ok(outcome) => settle(rule, settings.mode, outcome),
        Err(unavailable) => cannot_decide(rule, settings.when_unavailable, &unavailable),
    }
}

fn settle(rule: &Rule, mode: Mode, outcome: Outcome) -> Gated {
    let Outcome {
        denials: rule_denials,
        mutations,
        warnings,
    } = outcome;
    let said: Vec<String> = rule_denials.iter().chain(&warnings).cloned().collect();
    let mut gated = Gated {
        status: if warnings.is_empty() {
            RuleStatus::Allowed
        } else {
            RuleStatus::Warned
        },
        denials: Vec::new(),
        patch: Vec::new(),
        notes: Vec::new(),
        warnings,
        said,
        undecided: false,
    };
    let key = rule.policy_key;
    for mutation in mutations {
        if mode == Mode::Enforce {
            gated.patch.extend(mutation.ops);
            gated.notes.extend(mutation.note.clone());
            gated.warnings.extend(mutation.note);
            gated.status = RuleStatus::Patched;
        } else {
            let what = mutation
                .note
                .unwrap_or_else(|| patch::describe(&mutation.ops));
            gated.warnings.push(format!(
                "not applied (policy rules.{key}.mode is warn): {what}"
            ));
            gated.status = RuleStatus::Warned;
        }
    }
    if !rule_denials.is_empty() {
        if mode == Mode::Enforce && !rule.never_denies {
            gated.denials = rule_denials;
            gated.status = RuleStatus::Denied;
        } else {
            let why = if rule.never_denies {
                "this rule never denies"
            } else {
                "policy mode is warn"
            };
            gated.warnings.extend(
                rule_denials
                    .into_iter()
                    .map(|d| format!("would be denied ({why}, rules.{key}): {d}")),
            );
            gated.status = RuleStatus::Warned;
        }
    }
    gated
}

fn cannot_decide(rule: &Rule, when: WhenUnavailable, unavailable: &StateUnavailable) -> Gated {
    let (id, key) = (rule.id, rule.policy_key);
    let mut gated = Gated {
        status: RuleStatus::Unavailable,
        denials: Vec::new(),
        patch: Vec::new(),
        notes: Vec::new(),
        warnings: Vec::new(),
        said: Vec::new(),
        undecided: true,
    };
    if when == WhenUnavailable::Deny && !rule.never_denies {
        gated.denials.push(format!(
            "storage-admission cannot run its {id} check right now: {unavailable}. Retry in a moment; \
             if this persists, check the storage-admission pods (policy rules.{key}.whenStateUnavailable is deny)."
        ));
    } else {
        gated.warnings.push(format!(
            "storage-admission skipped its {id} check: {unavailable} (policy rules.{key}.whenStateUnavailable is allow)"
        ));
    }
    gated
}
