//! storage-admission: admission webhooks and a small controller that make CSI snapshot and
//! topology-aware storage workflows safe.
//!
//! The layout is the architecture:
//! - [`model`]: the slim, typed views of the objects the rules read (only the fields they read).
//! - [`cluster`]: the read-only cluster view the rules consult, and its indexed in-memory store
//!   (fed by a state file with `--state`, or by watches in a cluster).
//! - [`policy`]: the versioned policy file: per-rule modes, exemptions and knobs.
//! - [`rules`]: the pure rules, one module each: (object, old object, cluster view, policy) →
//!   outcome. The webhook and the controller call the same functions.
//! - [`explain`]: why a claim or snapshot is stuck, from the cluster view, reusing the rules'
//!   checks on existing objects (`storage-admission explain`, the controller's stuck Events).
//! - [`admission`]: the edge: AdmissionReview in, AdmissionReview out.
//! - [`controller`]: node label backfill and the audit of existing objects (Events, metrics),
//!   with the same rule functions, over the same caches.
//! - [`leader`]: leader election over a Lease: only the leader runs what writes to the cluster.
//! - [`metrics`]: the Prometheus metrics every part records into (the admin port renders them).
//! - [`server`]: HTTPS serving, certificate reload, admin endpoints.
//! - [`registration`]: `--register`, the leader keeping the webhook configurations current.
//! - [`self_managed`]: `--certs self-managed`, the CA and serving certificate in a Secret.
//! - [`offline`]: `storage-admission review`, the same engine on files.
//! - [`cli`]: the command line and the one check of its flags; [`commands`]: each
//!   subcommand's body and the exit codes; [`app`]: the running service (server and the
//!   in-cluster tasks), started and stopped as a unit; [`dev`]: what `serve --dev` embeds.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admission;
pub mod app;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod controller;
pub mod dev;
pub mod explain;
pub mod identity;
pub mod json_string;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod policy;
pub mod registration;
pub mod rules;
pub mod self_managed;
pub mod server;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod yaml;
