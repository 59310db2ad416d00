//! Serving: the webhook router, HTTPS with reloadable certificates, the admin endpoints
//! (`/livez`, `/readyz`, `/metrics`) and graceful shutdown.

pub mod metrics;
pub mod router;

pub use metrics::Metrics;
pub use router::{AppState, Limits, router};
