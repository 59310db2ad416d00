//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::PersistentVolumeClaim;
use crate::policy::RestoreReadinessConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check(
    _input: &Input<'_, PersistentVolumeClaim>,
    _view: &dyn ClusterView,
    _cfg: &RestoreReadinessConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
