//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::VolumeSnapshotClass;
use crate::policy::SnapshotClassDefaultsConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check(
    _input: &Input<'_, VolumeSnapshotClass>,
    _view: &dyn ClusterView,
    _cfg: &SnapshotClassDefaultsConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
