//! TODO(rule): being written.

use crate::cluster::ClusterView;
use crate::model::Node;
use crate::policy::NodeTopologyConfig;
use crate::rules::{Input, Outcome, RuleResult};

pub fn check(
    _input: &Input<'_, Node>,
    _view: &dyn ClusterView,
    _cfg: &NodeTopologyConfig,
) -> RuleResult {
    Ok(Outcome::allow())
}
