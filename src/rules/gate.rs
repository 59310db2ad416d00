//! Policy applied to a rule's result, in one place for the webhook, the audit and the backfill:
//! whether the rule runs at all (mode `off`, exemptions), what its mode makes of its denials
//! and patches (`warn` turns them into warnings), and what `whenStateUnavailable` makes of a
//! rule that could not decide. Each caller takes from the [`Gated`] result what it acts on: the
//! webhook all of it, the audit what the rule said (its findings), the backfill the patch.

use super::patch::Op;

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
    /// Every status, in the order of [`RuleStatus::index`].
    pub const ALL: [Self; 6] = [
        Self::Allowed,
        Self::Warned,
        Self::Patched,
        Self::Denied,
        Self::Unavailable,
        Self::Invalid,
    ];

    /// The status's place in [`RuleStatus::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

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
///
/// Every text is held once, in the field the webhook takes it from; the notes and what the
/// rule said are read back from there. (Copies of each note and each warning were a tenth of
/// a patched review's rule cost, for the audit and the backfill, which run in the controller.)
#[derive(Debug, Clone, PartialEq)]
pub struct Gated {
    pub status: RuleStatus,
    /// Denials that stand (mode enforce, a rule that may deny).
    pub denials: Vec<String>,
    /// The patch to apply (mode enforce only).
    pub patch: Vec<Op>,
    /// Warnings as the webhook returns them: the rule's own warnings, then the notes of the
    /// applied patch, then what `warn` mode did not apply or deny.
    pub warnings: Vec<String>,
    /// The rule's own warnings: `warnings[..own_warnings]`.
    own_warnings: usize,
    /// What the applied patch does, in the rule's words: `warnings[notes]`.
    notes: std::ops::Range<usize>,
    /// The rule's denials that did not stand (mode warn, or a rule that never denies), as the
    /// rule wrote them; the warnings carry them reworded.
    overruled: Vec<String>,
    /// The rule could not decide: the audit neither reports nor forgets its findings.
    pub undecided: bool,
}

impl Gated {
    /// What the applied patch does, in the rule's words (also among the warnings).
    pub fn notes(&self) -> &[String] {
        &self.warnings[self.notes.clone()]
    }

    /// What the rule itself said — its denials, then its warnings — whatever the mode: an
    /// audit finding when not empty.
    pub fn said(&self) -> Vec<&str> {
        self.denials
            .iter()
            .chain(&self.overruled)
            .chain(&self.warnings[..self.own_warnings])
            .map(String::as_str)
            .collect()
    }
}

/// Applies `rule`'s mode and `whenStateUnavailable` from `policy` to what it returned.
pub fn gate(rule: &Rule, policy: &Policy, result: RuleResult) -> Gated {
    let settings = (rule.settings)(policy);
    match result {
        Ok(outcome) => settle(rule, settings.mode, outcome),
        Err(unavailable) => cannot_decide(rule, settings.when_unavailable, &unavailable),
    }
}

/// Moves `items` to the end of `into`; into an empty Vec by taking it whole, not copying.
pub(crate) fn append<T>(into: &mut Vec<T>, mut items: Vec<T>) {
    if into.is_empty() {
        *into = items;
    } else {
        into.append(&mut items);
    }
}

fn settle(rule: &Rule, mode: Mode, outcome: Outcome) -> Gated {
    let Outcome {
        denials: rule_denials,
        mutations,
        warnings,
    } = outcome;
    let own_warnings = warnings.len();
    let mut gated = Gated {
        status: if warnings.is_empty() {
            RuleStatus::Allowed
        } else {
            RuleStatus::Warned
        },
        denials: Vec::new(),
        patch: Vec::new(),
        warnings,
        own_warnings,
        notes: own_warnings..own_warnings,
        overruled: Vec::new(),
        undecided: false,
    };
    let key = rule.policy_key;
    for mutation in mutations {
        if mode == Mode::Enforce {
            append(&mut gated.patch, mutation.ops);
            if let Some(note) = mutation.note {
                gated.warnings.push(note);
                gated.notes.end += 1;
            }
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
                    .iter()
                    .map(|d| format!("would be denied ({why}, rules.{key}): {d}")),
            );
            gated.overruled = rule_denials;
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
        warnings: Vec::new(),
        own_warnings: 0,
        notes: 0..0,
        overruled: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::default_snapshot_class::RULE;

    fn op(path: &str) -> Vec<Op> {
        vec![patch::add(patch::pointer([path]), serde_json::json!("v"))]
    }

    /// A rule that warns, patches twice (once silently) and denies.
    fn outcome() -> Outcome {
        Outcome::warn("w1")
            .with_warning("w2")
            .with_mutation(op("a"), Some("note a".into()))
            .with_mutation(op("b"), None)
            .with_mutation(op("c"), Some("note c".into()))
            .with_denial("d1")
    }

    #[test]
    fn enforce_keeps_the_denials_and_reads_notes_and_findings_from_the_warnings() {
        let gated = settle(&RULE, Mode::Enforce, outcome());
        assert_eq!(gated.status, RuleStatus::Denied);
        assert_eq!(gated.denials, ["d1"]);
        assert_eq!(gated.patch.len(), 3);
        assert_eq!(gated.warnings, ["w1", "w2", "note a", "note c"]);
        assert_eq!(gated.notes(), ["note a", "note c"]);
        assert_eq!(gated.said(), ["d1", "w1", "w2"]);
    }

    #[test]
    fn warn_mode_rewords_what_it_does_not_do_but_finds_what_the_rule_said() {
        let gated = settle(&RULE, Mode::Warn, outcome());
        assert_eq!(gated.status, RuleStatus::Warned);
        assert!(gated.denials.is_empty() && gated.patch.is_empty());
        assert_eq!(gated.notes(), [] as [String; 0]);
        assert_eq!(gated.warnings.len(), 6, "{:?}", gated.warnings);
        assert_eq!(
            gated.warnings[2],
            "not applied (policy rules.defaultSnapshotClass.mode is warn): note a"
        );
        assert_eq!(
            gated.warnings[5],
            "would be denied (policy mode is warn, rules.defaultSnapshotClass): d1"
        );
        assert_eq!(gated.said(), ["d1", "w1", "w2"]);
    }

    #[test]
    fn a_rule_that_cannot_decide_says_nothing_to_the_audit() {
        let gated = cannot_decide(
            &RULE,
            WhenUnavailable::Allow,
            &StateUnavailable {
                kind: crate::cluster::ResourceKind::PersistentVolumeClaim,
                reason: "the cache is syncing".into(),
            },
        );
        assert!(gated.undecided);
        assert_eq!(gated.warnings.len(), 1);
        assert!(gated.said().is_empty() && gated.notes().is_empty());
    }
}
