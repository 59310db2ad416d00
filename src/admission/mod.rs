//! The admission edge: an AdmissionReview in, an AdmissionReview out.
//!
//! [`handle`] is the one entry point: the HTTPS router, `storage-admission review`, the
//! benches and the fuzz targets all call it. [`review`] decodes the envelope (with a clear
//! error for every kind of bad input) and encodes the response; [`engine`] runs the rules of the
//! table for the request's kind, phase and operation into one [`Verdict`]; [`fallback`] is the
//! one bounded lookup of a VolumeSnapshot that the cache lacks, made only when the decision
//! read such a miss and a fetcher is given (`run`). Without a fetcher nothing here awaits.

pub mod engine;
pub mod fallback;
pub mod review;
pub mod verdict;

pub use engine::decide;
pub use review::{AdmissionRequest, ReviewError};
pub use verdict::{Denial, RuleReport, RuleStatus, Verdict};

use crate::cluster::ClusterView;
use crate::cluster::fetch::{Fetched, SnapshotFetcher};
use crate::policy::Policy;
use crate::rules::Phase;
use fallback::Lookaside;

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
    /// The restore fallback's lookup, when one was made.
    pub lookup: Option<Fetched>,
}

/// Decodes a review body, decides it (with the restore fallback when `fetcher` is given), and
/// encodes the response: the whole path of a review.
pub async fn handle(
    webhook: Webhook,
    body: &[u8],
    view: &dyn ClusterView,
    policy: &Policy,
    fetcher: Option<&dyn SnapshotFetcher>,
) -> Result<Reviewed, ReviewError> {
    let (api_version, request) = review::decode(body)?;
    let phase = webhook.phase();
    let recording = Lookaside::recording(view);
    let mut verdict = decide(phase, &request, &recording, policy);
    let mut lookup = None;
    if let (Some(fetcher), Some(miss)) = (fetcher, recording.missed()) {
        let fetched = fetcher.snapshot(&miss.0, &miss.1).await;
        verdict = decide(
            phase,
            &request,
            &Lookaside::answered(view, miss, &fetched),
            policy,
        );
        lookup = Some(fetched);
    }
    let body = review::encode(&api_version, &request.uid, &verdict);
    Ok(Reviewed {
        request,
        verdict,
        body,
        lookup,
    })
}

/// [`handle`] without a fetcher, for callers with no async runtime (`review`, benches, fuzz
/// targets). Without a fetcher `handle` never awaits, so its future is ready at the first poll.
pub fn handle_now(
    webhook: Webhook,
    body: &[u8],
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<Reviewed, ReviewError> {
    use futures::FutureExt as _;
    handle(webhook, body, view, policy, None)
        .now_or_never()
        .unwrap_or(Err(ReviewError::Incomplete))
}
