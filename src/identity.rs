//! How this service names itself to the API server.
//!
//! One name for the field manager of every write (the controller's node patches, the
//! webhook registration's server-side applies, the self-managed certificate Secret's writes
//! and its `managed-by` label) and for the reporting controller of its Events, so `--show-managed-fields` and `kubectl get events`
//! point at one service. It lives in its own module, not in `controller`, because
//! registration and the self-managed certificates write too and should not depend on the
//! controller to learn their own name.

/// The field manager of every write, and the reporting controller of events.
pub const FIELD_MANAGER: &str = "storage-admission";
