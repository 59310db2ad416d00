//! The rules. Each is a pure function of (request input, cluster view, its policy settings)
//! to an [`Outcome`]: denials, patches and warnings. The webhook ([`crate::admission`]) and the
//! controller's audit and backfill call the same functions, so they never disagree.
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
//!
//! A rule returns `Err(Unavailable)` when the cluster state it needs is not loaded; the
//! admission edge then applies the rule's `whenStateUnavailable` setting. Policy modes
//! (`enforce`/`warn`) are applied by the edge too, in one place: in `warn` mode denials become
//! warnings and patches are not applied.

pub mod allowed_topologies;
pub mod binding_mode;
pub mod default_snapshot_class;
pub mod local_volumes;
pub mod node_topology;
pub mod patch;
pub mod restore_readiness;
pub mod snapshot_class_defaults;
pub mod snapshot_validation;

use json_patch::PatchOperation;

use crate::cluster::Unavailable;
use crate::policy::{self, Exemptions, Policy, Unavailable as WhenUnavailable};

/// Every rule, by its stable name (used in metrics, logs, events and the policy file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    DefaultSnapshotClass,
    SnapshotClassDefaults,
    SnapshotValidation,
    RestoreReadiness,
    BindingMode,
    AllowedTopologies,
    NodeTopology,
    LocalVolumes,
}

impl RuleId {
    pub const ALL: [RuleId; 8] = [
        Self::DefaultSnapshotClass,
        Self::SnapshotClassDefaults,
        Self::SnapshotValidation,
        Self::RestoreReadiness,
        Self::BindingMode,
        Self::AllowedTopologies,
        Self::NodeTopology,
        Self::LocalVolumes,
    ];

    /// The rule's name in metrics, logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DefaultSnapshotClass => "default-snapshot-class",
            Self::SnapshotClassDefaults => "snapshot-class-defaults",
            Self::SnapshotValidation => "snapshot-validation",
            Self::RestoreReadiness => "restore-readiness",
            Self::BindingMode => "binding-mode",
            Self::AllowedTopologies => "allowed-topologies",
            Self::NodeTopology => "node-topology",
            Self::LocalVolumes => "local-volumes",
        }
    }

    /// The rule's key under `rules:` in the policy file.
    pub fn policy_key(self) -> &'static str {
        match self {
            Self::DefaultSnapshotClass => "defaultSnapshotClass",
            Self::SnapshotClassDefaults => "snapshotClassDefaults",
            Self::SnapshotValidation => "snapshotValidation",
            Self::RestoreReadiness => "restoreReadiness",
            Self::BindingMode => "bindingMode",
            Self::AllowedTopologies => "allowedTopologies",
            Self::NodeTopology => "nodeTopology",
            Self::LocalVolumes => "localVolumes",
        }
    }

    /// Rules whose objects must always be admitted (nodes must always be able to register):
    /// whatever happens, they only ever warn.
    pub fn never_denies(self) -> bool {
        matches!(self, Self::NodeTopology)
    }

    /// The rule's mode, exemptions and unavailable-state setting in `policy`.
    pub fn settings(self, policy: &Policy) -> RuleSettings<'_> {
        let r = &policy.rules;
        let (mode, exemptions, when_unavailable) = match self {
            Self::DefaultSnapshotClass => {
                let c = &r.default_snapshot_class;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::SnapshotClassDefaults => {
                let c = &r.snapshot_class_defaults;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::SnapshotValidation => {
                let c = &r.snapshot_validation;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::RestoreReadiness => {
                let c = &r.restore_readiness;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::BindingMode => {
                let c = &r.binding_mode;
                let mode = match c.mode {
                    policy::BindingModeAction::Mutate | policy::BindingModeAction::Enforce => {
                        policy::Mode::Enforce
                    }
                    policy::BindingModeAction::Warn => policy::Mode::Warn,
                    policy::BindingModeAction::Off => policy::Mode::Off,
                };
                (mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::AllowedTopologies => {
                let c = &r.allowed_topologies;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::NodeTopology => {
                let c = &r.node_topology;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
            Self::LocalVolumes => {
                let c = &r.local_volumes;
                (c.mode, &c.exemptions, c.when_state_unavailable)
            }
        };
        RuleSettings {
            mode,
            exemptions,
            when_unavailable,
        }
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings every rule has, whatever its own knobs.
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings<'p> {
    pub mode: policy::Mode,
    pub exemptions: &'p Exemptions,
    pub when_unavailable: WhenUnavailable,
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
    pub ops: Vec<PatchOperation>,
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
    pub mutations: Vec<Mutation>,
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

    pub fn with_mutation(mut self, ops: Vec<PatchOperation>, note: Option<String>) -> Self {
        if !ops.is_empty() {
            self.mutations.push(Mutation { ops, note });
        }
        self
    }

    /// Adds everything `other` decided to this outcome.
    pub fn merge(&mut self, other: Outcome) {
        self.denials.extend(other.denials);
        self.mutations.extend(other.mutations);
        self.warnings.extend(other.warnings);
    }

    pub fn is_empty(&self) -> bool {
        self.denials.is_empty() && self.mutations.is_empty() && self.warnings.is_empty()
    }
}

/// What every rule function returns: an outcome, or the reason it could not decide.
pub type RuleResult = Result<Outcome, Unavailable>;
