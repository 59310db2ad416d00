//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::{VolumeSnapshot, VolumeSnapshotContent};
use crate::policy::SnapshotValidationConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check_snapshot(
    _input: &Input<'_, VolumeSnapshot>,
    _view: &dyn ClusterView,
    _cfg: &SnapshotValidationConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}

pub fn check_content(
    _input: &Input<'_, VolumeSnapshotContent>,
    _view: &dyn ClusterView,
    _cfg: &SnapshotValidationConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
