//! The decision on one review, as the engine makes it and the codec encodes it. Its own
//! module, so the codec (`review`) and the engine (`engine`) both depend on it and not on each
//! other.

use smallvec::SmallVec;

use crate::rules::patch::Op;

use crate::rules::RuleId;
pub use crate::rules::RuleStatus;

/// A refusal, as it goes into `response.status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleReport {
    pub rule: RuleId,
    pub status: RuleStatus,
}

/// The decision on one review.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    pub denial: Option<Denial>,
    pub patch: Vec<Op>,
    pub warnings: Vec<String>,
    /// How each rule that ran ended, in table order.
    pub rules: Reports,
}

/// The reports of one review's rules, inline up to [`Reports::inline_size`]: a dispatch slice
/// holds at most that many rules (a test checks), so a review allocates nothing for them.
pub type Reports = SmallVec<[RuleReport; 4]>;

impl Verdict {
    pub fn allow() -> Self {
        Self {
            allowed: true,
            denial: None,
            patch: Vec::new(),
            warnings: Vec::new(),
            rules: Reports::new(),
        }
    }

    /// The bounded decision label: `allowed`, `patched`, `warned` or `denied`.
    pub fn decision(&self) -> &'static str {
        if !self.allowed {
            "denied"
        } else if !self.patch.is_empty() {
            "patched"
        } else if !self.warnings.is_empty() {
            "warned"
        } else {
            "allowed"
        }
    }
}
