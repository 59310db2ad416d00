//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::StorageClass;
use crate::policy::BindingModeConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check(
    _input: &Input<'_, StorageClass>,
    _view: &dyn ClusterView,
    _cfg: &BindingModeConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
