//! The policy file: what each rule does, for whom, and what happens when it cannot decide.
//!
//! A versioned YAML document (`apiVersion: storage-admission.io/v1alpha1`, `kind:
//! AdmissionPolicy`), parsed strictly: an unknown field is an error that names the field and
//! its line. [`Policy::parse`] also validates and compiles it (regular expressions, label keys),
//! so a policy that loads is a policy that works. `policies/default.yaml` is the built-in policy.

use serde::Deserialize;

pub const API_VERSION: &str = "storage-admission.io/v1alpha1";
pub const KIND: &str = "AdmissionPolicy";

/// The built-in policy, identical to `policies/default.yaml`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../policies/default.yaml");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("policy file {path} is not UTF-8")]
    NotUtf8 { path: std::path::PathBuf },
    /// A policy file that does not parse or validate: the file, then why.
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: Box<PolicyError>,
    },
    #[error("invalid policy: {0}")]
    Syntax(String),
    #[error("invalid policy: apiVersion must be {API_VERSION:?}, got {0:?}")]
    ApiVersion(String),
    #[error("invalid policy: kind must be {KIND:?}, got {0:?}")]
    Kind(String),
    #[error("invalid policy: {field}: {message}")]
    Invalid { field: String, message: String },
}

impl PolicyError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How a rule acts on what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny what the rule forbids and apply the patches it makes.
    Enforce,
    /// Allow everything; say in warnings what enforce would have denied or patched.
    Warn,
    /// Do not run the rule.
    Off,
}

/// What a rule does when the cluster state it needs is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnavailable {
    /// Allow, with a warning saying the check was skipped and why.
    Allow,
    /// Deny, saying the check could not run.
    Deny,
}

/// A sub-rule's answer to an unwelcome but not always wrong situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarnOrDeny {
    Warn,
    Deny,
}

/// What a rule says about an object a request names that does not exist (yet), when creating
/// it later is a normal order of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmitOrWarn {
    /// Admit without a word.
    Admit,
    /// Admit with a warning naming what is missing and what waits for it.
    Warn,
}

/// What the binding-mode rule does with a topology-restricted class that binds `Immediate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingModeAction {
    /// Patch `volumeBindingMode` to `WaitForFirstConsumer` and say so in a warning.
    Mutate,
    /// Deny, explaining why `Immediate` breaks with topology.
    Enforce,
    /// Allow with a warning.
    Warn,
    Off,
}

/// Declares a rule's settings struct with the fields every rule has (`mode`, `exemptions`,
/// `whenStateUnavailable`) plus its own. serde cannot combine `flatten` with
/// `deny_unknown_fields`, hence a macro rather than a shared embedded struct.
/// What every rule's config has, whatever its own knobs: the rule table reads a rule's
/// settings through this.
pub trait RuleConfig {
    /// Enforce, warn or off (a rule with its own actions maps them onto these).
    fn mode(&self) -> Mode;
    fn exemptions(&self) -> &Exemptions;
    fn when_state_unavailable(&self) -> WhenUnavailable;
}

/// A rule's `mode` field, as one of the three modes the admission edge knows.
pub trait AsMode: Copy {
    fn as_mode(self) -> Mode;
}

impl AsMode for Mode {
    fn as_mode(self) -> Mode {
        self
    }
}

impl AsMode for BindingModeAction {
    /// `mutate` and `enforce` both act (patch, or deny); the rule itself tells them apart.
    fn as_mode(self) -> Mode {
        match self {
            Self::Mutate | Self::Enforce => Mode::Enforce,
            Self::Warn => Mode::Warn,
            Self::Off => Mode::Off,
        }
    }
}

/// What the pinned-pods rule does with a pod pinned by `spec.nodeName` whose claim waits for
/// its first consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinnedPodsAction {
    /// Move the node from `spec.nodeName` to a required node affinity, and say so.
    Mutate,
    /// Deny, with the affinity to write instead.
    Enforce,
    /// Allow with a warning.
    Warn,
    Off,
}

impl AsMode for PinnedPodsAction {
    /// `mutate` and `enforce` both act (patch, or deny); the rule itself tells them apart.
    fn as_mode(self) -> Mode {
        match self {
            Self::Mutate | Self::Enforce => Mode::Enforce,
            Self::Warn => Mode::Warn,
            Self::Off => Mode::Off,
        }
    }
}

macro_rules! rule_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            mode: $mode:ty = $mode_default:expr,
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
        pub struct $name {
            pub mode: $mode,
            /// Requests this rule does not look at (in addition to the policy-wide ones).
            pub exemptions: Exemptions,
            /// What happens when the cluster state the rule needs is not loaded.
            pub when_state_unavailable: WhenUnavailable,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl RuleConfig for $name {
            fn mode(&self) -> Mode {
                self.mode.as_mode()
            }
            fn exemptions(&self) -> &Exemptions {
                &self.exemptions
            }
            fn when_state_unavailable(&self) -> WhenUnavailable {
                self.when_state_unavailable
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    mode: $mode_default,
                    exemptions: Exemptions::default(),
                    when_state_unavailable: WhenUnavailable::Allow,
                    $( $field: $default, )*
                }
            }
        }
    };
}

mod exemptions;
mod node_labels;

pub use exemptions::{Exemptions, UserInfo};
pub use node_labels::{DeprecatedLabels, LabelRule, LabelSource, NodeTopologyConfig};

rule_config! {
    /// Mutating, VolumeSnapshot CREATE: fill in the default VolumeSnapshotClass of the driver.
    pub struct DefaultSnapshotClassConfig {
        mode: Mode = Mode::Enforce,
        /// No default class exists for the driver: allow with a warning, or deny.
        pub when_no_default: WarnOrDeny = WarnOrDeny::Warn,
        /// The source PVC does not exist (yet): allow with a warning, or deny.
        pub when_source_missing: WarnOrDeny = WarnOrDeny::Warn,
    }
}

rule_config! {
    /// Validating, VolumeSnapshotClass CREATE/UPDATE: at most one default class per driver.
    pub struct SnapshotClassDefaultsConfig {
        mode: Mode = Mode::Enforce,
    }
}

rule_config! {
    /// Validating, VolumeSnapshot and VolumeSnapshotContent: the CRDs' CEL rules, for clusters
    /// whose CRDs predate them, plus a warning for drivers without a snapshot class.
    pub struct SnapshotValidationConfig {
        mode: Mode = Mode::Enforce,
    }
}

rule_config! {
    /// Validating, PVC CREATE: restore only from ready snapshots (and sane clones).
    pub struct RestoreReadinessConfig {
        mode: Mode = Mode::Enforce,
    }
}

rule_config! {
    /// Mutating + validating, StorageClass CREATE: topology-restricted classes bind on first
    /// consumer.
    pub struct BindingModeConfig {
        mode: BindingModeAction = BindingModeAction::Mutate,
        /// Provisioners whose volumes are reachable from only part of the cluster (zonal
        /// block disks, local and LVM volumes).
        pub topology_restricted_provisioners: Vec<String> = Vec::new(),
    }
}

rule_config! {
    /// Validating, StorageClass CREATE: warn when `allowedTopologies` selects no current node.
    pub struct AllowedTopologiesConfig {
        mode: Mode = Mode::Warn,
    }
}

rule_config! {
    /// Validating, PersistentVolume CREATE: local volumes must be reachable.
    pub struct LocalVolumesConfig {
        mode: Mode = Mode::Warn,
    }
}

rule_config! {
    /// Mutating + validating, Pod CREATE: pods pinned with `spec.nodeName` that can never
    /// start (a claim waiting for its first consumer, a volume out of the node's reach).
    pub struct PinnedPodsConfig {
        mode: PinnedPodsAction = PinnedPodsAction::Mutate,
        /// A claim, a claim's StorageClass or the node (`spec.nodeName`) does not exist:
        /// admit silently (pods may be created before them), or warn.
        pub when_missing: AdmitOrWarn = AdmitOrWarn::Admit,
    }
}

rule_config! {
    /// Mutating, VolumeGroupSnapshot CREATE: fill in the default VolumeGroupSnapshotClass of
    /// the selected claims' driver.
    pub struct DefaultGroupSnapshotClassConfig {
        mode: Mode = Mode::Enforce,
        /// No default class exists for the driver: allow with a warning, or deny.
        pub when_no_default: WarnOrDeny = WarnOrDeny::Warn,
        /// The selector selects no claim: allow with a warning, or deny.
        pub when_nothing_selected: WarnOrDeny = WarnOrDeny::Warn,
    }
}

rule_config! {
    /// Validating, VolumeGroupSnapshotClass CREATE/UPDATE: at most one default class per driver.
    pub struct GroupSnapshotClassDefaultsConfig {
        mode: Mode = Mode::Enforce,
    }
}

rule_config! {
    /// Validating, VolumeGroupSnapshot and VolumeGroupSnapshotContent: the group snapshot
    /// CRDs' CEL rules, for clusters whose CRDs predate them.
    pub struct GroupSnapshotValidationConfig {
        mode: Mode = Mode::Enforce,
    }
}

/// The settings of every rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Rules {
    pub default_snapshot_class: DefaultSnapshotClassConfig,
    pub snapshot_class_defaults: SnapshotClassDefaultsConfig,
    pub snapshot_validation: SnapshotValidationConfig,
    pub restore_readiness: RestoreReadinessConfig,
    pub binding_mode: BindingModeConfig,
    pub allowed_topologies: AllowedTopologiesConfig,
    pub node_topology: NodeTopologyConfig,
    pub local_volumes: LocalVolumesConfig,
    pub pinned_pods: PinnedPodsConfig,
    pub default_group_snapshot_class: DefaultGroupSnapshotClassConfig,
    pub group_snapshot_class_defaults: GroupSnapshotClassDefaultsConfig,
    pub group_snapshot_validation: GroupSnapshotValidationConfig,
}

/// A parsed, validated and compiled policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    pub api_version: String,
    pub kind: String,
    /// Requests no rule looks at.
    #[serde(default)]
    pub exemptions: Exemptions,
    #[serde(default)]
    pub rules: Rules,
}

/// A policy read from a file, with the bytes it was read from (a reload compares them to
/// tell whether the file changed). The one way a policy file is loaded: `--policy` at start,
/// its reloads, `review --policy` and `policy check`.
#[derive(Debug)]
pub struct PolicyFile {
    pub path: std::path::PathBuf,
    pub bytes: Vec<u8>,
    pub policy: Policy,
}

impl PolicyFile {
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Parses what was read from `path`; errors name the file.
    pub fn from_bytes(path: &std::path::Path, bytes: Vec<u8>) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(&bytes).map_err(|_| PolicyError::NotUtf8 {
            path: path.to_owned(),
        })?;
        let policy = Policy::parse(text).map_err(|source| PolicyError::File {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Ok(Self {
            path: path.to_owned(),
            bytes,
            policy,
        })
    }
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut policy: Policy =
            serde_saphyr::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Reads and parses a policy file (see [`PolicyFile::load`]).
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        PolicyFile::load(path).map(|file| file.policy)
    }

    /// The built-in policy.
    pub fn builtin() -> Self {
        // The built-in policy is checked by a unit test; failing here would be a build defect.
        Self::parse(DEFAULT_POLICY_YAML)
            .unwrap_or_else(|e| panic!("built-in policy is invalid: {e}"))
    }

    fn validate(&mut self) -> Result<(), PolicyError> {
        if self.api_version != API_VERSION {
            return Err(PolicyError::ApiVersion(self.api_version.clone()));
        }
        if self.kind != KIND {
            return Err(PolicyError::Kind(self.kind.clone()));
        }
        self.exemptions.validate("exemptions")?;
        let r = &mut self.rules;
        r.default_snapshot_class
            .exemptions
            .validate("rules.defaultSnapshotClass.exemptions")?;
        r.snapshot_class_defaults
            .exemptions
            .validate("rules.snapshotClassDefaults.exemptions")?;
        r.snapshot_validation
            .exemptions
            .validate("rules.snapshotValidation.exemptions")?;
        r.restore_readiness
            .exemptions
            .validate("rules.restoreReadiness.exemptions")?;
        r.binding_mode
            .exemptions
            .validate("rules.bindingMode.exemptions")?;
        r.allowed_topologies
            .exemptions
            .validate("rules.allowedTopologies.exemptions")?;
        r.local_volumes
            .exemptions
            .validate("rules.localVolumes.exemptions")?;
        r.pinned_pods
            .exemptions
            .validate("rules.pinnedPods.exemptions")?;
        for (i, p) in r
            .binding_mode
            .topology_restricted_provisioners
            .iter()
            .enumerate()
        {
            if p.trim().is_empty() {
                return Err(PolicyError::invalid(
                    format!("rules.bindingMode.topologyRestrictedProvisioners[{i}]"),
                    "must not be empty",
                ));
            }
        }
        r.node_topology.validate("rules.nodeTopology")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_policy_parses() {
        let policy = Policy::builtin();
        assert_eq!(policy.rules.binding_mode.mode, BindingModeAction::Mutate);
        assert!(
            !policy
                .rules
                .binding_mode
                .topology_restricted_provisioners
                .is_empty()
        );
    }

    #[test]
    fn minimal_policy_gets_defaults() {
        let policy =
            Policy::parse("apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n")
                .unwrap();
        assert_eq!(policy.rules.restore_readiness.mode, Mode::Enforce);
        assert_eq!(
            policy.rules.default_snapshot_class.when_no_default,
            WarnOrDeny::Warn
        );
        assert_eq!(policy.rules.allowed_topologies.mode, Mode::Warn);
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let err = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  restoreReadiness:\n    mood: warn\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mood"), "{err}");
        assert!(err.contains("line 5") || err.contains("5:"), "{err}");
    }

    #[test]
    fn pinned_pods_when_missing_admits_by_default_and_names_a_bad_value() {
        let policy =
            Policy::parse("apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\n")
                .unwrap();
        assert_eq!(policy.rules.pinned_pods.when_missing, AdmitOrWarn::Admit);
        let policy = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  pinnedPods:\n    whenMissing: warn\n",
        )
        .unwrap();
        assert_eq!(policy.rules.pinned_pods.when_missing, AdmitOrWarn::Warn);
        let err = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  pinnedPods:\n    whenMissing: deny\n",
        )
        .unwrap_err()
        .to_string();
        for part in ["deny", "admit", "warn"] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(err.contains("line 5") || err.contains("5:"), "{err}");
    }

    #[test]
    fn wrong_version_kind_and_mode_are_rejected() {
        assert!(matches!(
            Policy::parse("apiVersion: v1\nkind: AdmissionPolicy\n"),
            Err(PolicyError::ApiVersion(_))
        ));
        assert!(matches!(
            Policy::parse("apiVersion: storage-admission.io/v1alpha1\nkind: Policy\n"),
            Err(PolicyError::Kind(_))
        ));
        let err = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  localVolumes: {mode: maybe}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("maybe"), "{err}");
    }
}
