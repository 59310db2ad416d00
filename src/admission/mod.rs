//! The admission edge: an AdmissionReview in, an AdmissionReview out.
//!
//! [`review`] decodes the envelope (with a clear error for every kind of bad input) and encodes
//! the response; [`engine`] picks the rules for the request's kind and phase, applies policy
//! modes and exemptions, and merges the rules' outcomes into one [`Verdict`]. Nothing here
//! blocks or calls the API server: the same code serves HTTPS, `storage-admission review`
//! and the golden tests — except [`fallback`], the one bounded lookup of a restore's
//! VolumeSnapshot that the cache lacks, made before deciding and only where a fetcher is given
//! (`run`).

pub mod engine;
pub mod fallback;
pub mod review;

pub use engine::{RuleReport, RuleStatus, Verdict, decide};
pub use review::{AdmissionRequest, ReviewError};

use crate::cluster::ClusterView;
use crate::policy::Policy;
use crate::rules::Phase;

/// The two webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Webhook {
    Mutate,
    Validate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }

    pub fn phase(self) -> Phase {
        match self {
            Self::Mutate => Phase::Mutating,
            Self::Validate => Phase::Validating,
        }
    }
}

/// A decided review: the response body and what the decision was, for logs and metrics.
pub struct Reviewed {
    pub request: AdmissionRequest,
    pub verdict: Verdict,
    pub body: Vec<u8>,
}

/// Decodes a review body, decides it, and encodes the response: the whole in-process path.
pub fn handle(
    webhook: Webhook,
    body: &[u8],
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<Reviewed, ReviewError> {
    let (api_version, request) = review::decode(body)?;
    let verdict = decide(webhook.phase(), &request, view, policy);
    let body = review::encode(&api_version, &request.uid, &verdict)?;
    Ok(Reviewed {
        request,
        verdict,
        body,
    })
}
