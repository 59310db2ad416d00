//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::PersistentVolume;
use crate::policy::LocalVolumesConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check(
    _input: &Input<'_, PersistentVolume>,
    _view: &dyn ClusterView,
    _cfg: &LocalVolumesConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
