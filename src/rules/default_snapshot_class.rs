//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::VolumeSnapshot;
use crate::policy::DefaultSnapshotClassConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check(
    _input: &Input<'_, VolumeSnapshot>,
    _view: &dyn ClusterView,
    _cfg: &DefaultSnapshotClassConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
