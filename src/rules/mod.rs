//! The rules. Each is a pure function of (request input, cluster view, its policy settings)
//! to an [`Outcome`]: denials, patches and warnings. The webhook ([`crate::admission`]) and the
//! controller's audit and backfill call the same functions, so they never disagree.
//!
//! Every rule is one module that ends in a `pub const RULE: Rule` — its name, policy key,
//! the kinds, phases and operations it judges, whether the audit and the backfill run it, how
//! its settings come out of the policy, and its check functions — and one entry in
//! [`table::RULES`]. Everything else (the webhook's dispatch, the audit, the backfill, the
//! metrics, `policy check`) reads the table; [`gate`] applies policy modes, exemptions and
//! `whenStateUnavailable` to a rule's result, once, for all of them.
//!
//! | rule | module | webhook | objects |
//! |---|---|---|---|
//! | default-snapshot-class | [`default_snapshot_class`] | mutating | VolumeSnapshot CREATE |
//! | snapshot-class-defaults | [`snapshot_class_defaults`] | validating | VolumeSnapshotClass CREATE/UPDATE |
//! | snapshot-validation | [`snapshot_validation`] | validating | VolumeSnapshot, VolumeSnapshotContent CREATE/UPDATE |
//! | restore-readiness | [`restore_readiness`] | validating | PersistentVolumeClaim CREATE |
//! | binding-mode | [`binding_mode`] | mutating + validating | StorageClass CREATE |
//! | allowed-topologies | [`allowed_topologies`] | validating | StorageClass CREATE |
//! | node-topology | [`node_topology`] | mutating | Node CREATE/UPDATE |
//! | local-volumes | [`local_volumes`] | validating | PersistentVolume CREATE |
//! | pinned-pods | [`pinned_pods`] | mutating + validating | Pod CREATE |
//! | default-group-snapshot-class | [`default_group_snapshot_class`] | mutating | VolumeGroupSnapshot CREATE |
//! | group-snapshot-class-defaults | [`group_snapshot_class_defaults`] | validating | VolumeGroupSnapshotClass CREATE/UPDATE |
//! | group-snapshot-validation | [`group_snapshot_validation`] | validating | VolumeGroupSnapshot, VolumeGroupSnapshotContent CREATE/UPDATE |
//!
//! A rule returns `Err(StateUnavailable)` when the cluster state it needs is not loaded; the
//! gate then applies the rule's `whenStateUnavailable` setting.

pub mod allowed_topologies;
pub mod binding_mode;
pub mod default_snapshot_class;
pub mod gate;
pub mod kinds;
pub mod local_volumes;
pub mod node_topology;
pub mod patch;
pub mod pinned_pods;
pub mod restore_readiness;
pub mod snapshot_class_defaults;
pub mod snapshot_validation;
pub mod table;
// Group snapshots (`groupsnapshot.storage.k8s.io`).
pub mod default_group_snapshot_class;
pub mod group_snapshot_class_defaults;
pub mod group_snapshot_validation;

use patch::Op;
use smallvec::SmallVec;

use crate::cluster::StateUnavailable;
use crate::policy::{self, Exemptions, Policy, WhenUnavailable};

pub use gate::RuleStatus;
pub use kinds::{Audited, Check, For, Object};
pub use table::RULES;

/// A rule's stable name (used in metrics, logs, events and findings): `restore-readiness`.
/// Ordered by the rule's place in [`RULES`], so reports list rules in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(&'static str);

impl RuleId {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The rule's name in metrics, logs and events.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The rule's entry in the table (`None` only for an id no rule has).
    pub fn rule(self) -> Option<&'static Rule> {
        table::find(self.0)
    }

    /// The rule's place in [`RULES`] (`None` only for an id no rule has).
    pub fn index(self) -> Option<usize> {
        RULES.iter().position(|r| r.id == self)
    }

    fn position(self) -> usize {
        self.index().unwrap_or(usize::MAX)
    }
}

impl PartialOrd for RuleId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RuleId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.position(), self.0).cmp(&(other.position(), other.0))
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One rule: everything the webhook, the audit, the backfill and the metrics need to know.
pub struct Rule {
    pub id: RuleId,
    /// The rule's key under `rules:` in the policy file.
    pub policy_key: &'static str,
    /// The admission phases it answers in.
    pub phases: &'static [Phase],
    /// The operations it judges; the webhook does not run it (nor read the object for it) on
    /// any other.
    pub operations: &'static [Operation],
    /// Its check of each kind it judges (and, per kind, whether and how the audit runs it).
    pub checks: &'static [Check],
    /// Objects that must always be admitted (nodes must always be able to register): the
    /// rule only ever warns, whatever its mode.
    pub never_denies: bool,
    /// The controller's backfill applies its patches to existing objects (node labels).
    pub backfill: bool,
    /// Its mode, exemptions and `whenStateUnavailable` in a policy.
    pub settings: for<'p> fn(&'p Policy) -> RuleSettings<'p>,
}

impl Rule {
    /// Whether the webhook runs it for this phase and operation.
    pub fn answers(&self, phase: Phase, operation: Operation) -> bool {
        self.phases.contains(&phase) && self.operations.contains(&operation)
    }

    /// Its check of `kind`, if it judges that kind.
    pub fn check_for(&self, kind: crate::cluster::ResourceKind) -> Option<&'static Check> {
        self.checks.iter().find(|c| c.kind() == kind)
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The settings every rule has, whatever its own knobs.
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings<'p> {
    pub mode: policy::Mode,
    pub exemptions: &'p Exemptions,
    pub when_unavailable: WhenUnavailable,
}

impl<'p> RuleSettings<'p> {
    /// The common settings of a rule config with a plain [`policy::Mode`].
    pub fn of<C: policy::RuleConfig>(config: &'p C) -> Self {
        Self {
            mode: config.mode(),
            exemptions: config.exemptions(),
            when_unavailable: config.when_state_unavailable(),
        }
    }
}

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// Which admission phase is asking. Most rules belong to one phase; the binding-mode rule
/// patches in the mutating phase and denies or warns in the validating one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Mutating,
    Validating,
}

/// What a rule is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a, T> {
    pub operation: Operation,
    pub phase: Phase,
    /// The object as it would be stored (after earlier mutations).
    pub object: &'a T,
    /// The stored object, on UPDATE.
    pub old_object: Option<&'a T>,
}

/// A patch a rule wants, with what it means for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub ops: Vec<Op>,
    /// Said as a warning when the patch is applied (`None`: applied silently). In `warn` mode
    /// the patch is not applied and the warning says what it would have done.
    pub note: Option<String>,
}

/// What a rule decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Why the object must be refused; each a full sentence naming the objects involved and
    /// what to do next.
    pub denials: Vec<String>,
    /// Inline: a rule patches once if at all, and a `Vec` was an allocation per patched review.
    pub mutations: SmallVec<[Mutation; 1]>,
    pub warnings: Vec<String>,
}

impl Outcome {
    pub fn allow() -> Self {
        Self::default()
    }

    pub fn deny(message: impl Into<String>) -> Self {
        Self {
            denials: vec![message.into()],
            ..Self::default()
        }
    }

    pub fn warn(message: impl Into<String>) -> Self {
        Self {
            warnings: vec![message.into()],
            ..Self::default()
        }
    }

    pub fn with_warning(mut self, message: impl Into<String>) -> Self {
        self.warnings.push(message.into());
        self
    }

    pub fn with_denial(mut self, message: impl Into<String>) -> Self {
        self.denials.push(message.into());
        self
    }

    pub fn with_mutation(mut self, ops: Vec<Op>, note: Option<String>) -> Self {
        if !ops.is_empty() {
            self.mutations.push(Mutation { ops, note });
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.denials.is_empty() && self.mutations.is_empty() && self.warnings.is_empty()
    }
}

/// What every rule function returns: an outcome, or the reason it could not decide.
pub type RuleResult = Result<Outcome, StateUnavailable>;
