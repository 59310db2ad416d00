//! The subcommands' bodies, and the one place where an error becomes an exit code.
//!
//! Each command returns `Result<Outcome, Error>`; [`exit_code`] prints the error and maps
//! both to the codes the README ("Command line") and `--help` document.

use std::path::Path;
use std::sync::Arc;

use crate::certs::CertError;
use crate::cli::{Cli, Command, CommonArgs, PolicyCommand};
use crate::cluster::ClusterIndex;
use crate::cluster::fetch::SnapshotFetcher;
use crate::cluster::state_file::{self, StateError};
use crate::policy::{Policy, PolicyError};
use crate::server::serve::ConnLimits;
use crate::server::{Limits, ServeConfig, ServeError, TlsSource};

pub mod certs;
pub mod explain;
pub mod policy;
pub mod review;
pub mod run;
pub mod serve;

/// Exit codes. Keep README ("Command line") and the `--help` text in `cli.rs` in step.
pub mod exit {
    /// Done; for `review`, everything was allowed.
    pub const OK: u8 = 0;
    /// The service failed for a reason outside its input (e.g. it cannot listen).
    pub const FAILED: u8 = 1;
    /// Bad input or usage: flags, or a file they name.
    pub const BAD_INPUT: u8 = 2;
    /// `review`: at least one object was denied; `explain`: something blocks the object.
    pub const DENIED: u8 = 3;
    /// The Kubernetes API cannot be reached (no in-cluster config, no usable kubeconfig):
    /// not the flags' fault.
    pub const CLUSTER: u8 = 4;
}

/// What a command that did its work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `review`: something was denied.
    Denied,
    /// `explain`: something blocks the object (the same exit code as a denial).
    Blocked,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that do not combine (what `--check-args` refuses).
    #[error(transparent)]
    Usage(#[from] crate::cli::UsageError),
    /// A file named by a flag (or standard input) is missing or invalid.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    State(#[from] StateError),
    /// Certificates that cannot be generated or written (`certs`, `serve --dev`).
    #[error(transparent)]
    Certs(#[from] CertError),
    /// No Kubernetes API to talk to (no in-cluster config, no usable kubeconfig).
    #[error(
        "cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}; for no cluster at all use `serve --state FILE` (or `explain ... --state FILE`)"
    )]
    Cluster(#[source] kube::Error),
    /// `explain`: a read the chain needs was refused or failed.
    #[error("cannot read {what} from the Kubernetes API: {source}")]
    ClusterRead {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(crate::cli::UsageError::new(message))
    }

    pub fn input(message: impl std::fmt::Display) -> Self {
        Self::Input(message.to_string())
    }

    /// The one mapping of error kinds to exit codes.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Input(_) | Self::Policy(_) | Self::State(_) | Self::Certs(_) => {
                exit::BAD_INPUT
            }
            // A certificate or key that cannot be read or parsed is a bad file.
            Self::Serve(ServeError::Tls(_)) => exit::BAD_INPUT,
            Self::Serve(ServeError::Bind { .. }) | Self::Runtime(_) => exit::FAILED,
            Self::Cluster(_) | Self::ClusterRead { .. } => exit::CLUSTER,
        }
    }
}

/// Prints the error (if any) and returns the exit code.
pub fn exit_code(result: Result<Outcome, Error>) -> u8 {
    match result {
        Ok(Outcome::Success) => exit::OK,
        Ok(Outcome::Denied | Outcome::Blocked) => exit::DENIED,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Runs the parsed command line: checks the flags, then `--check-args` stops or the command runs.
pub fn dispatch(cli: Cli) -> Result<Outcome, Error> {
    crate::cli::validate(&cli.command)?;
    if cli.check_args {
        println!("arguments are valid");
        return Ok(Outcome::Success);
    }
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Run(args) => run::run(*args),
        Command::Review(args) => review::review(args),
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => policy::check(&files),
        Command::Certs(args) => certs::write(&args),
        Command::Explain(args) => explain::explain(args),
    }
}

/// Loads a state file, logging the kinds it ignored.
pub fn load_state(path: &Path) -> Result<ClusterIndex, Error> {
    let loaded = state_file::load(path)?;
    if !loaded.ignored_kinds.is_empty() {
        tracing::info!(file = %path.display(), kinds = ?loaded.ignored_kinds, "state file kinds no rule reads were ignored");
    }
    Ok(loaded.index)
}

/// The policy `--policy` names, or the built-in one.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, Error> {
    Ok(path
        .map(Policy::load)
        .transpose()?
        .unwrap_or_else(Policy::builtin))
}

/// The server's configuration from the flags `serve` and `run` share.
pub fn server_config(
    common: &CommonArgs,
    tls: TlsSource,
    index: Arc<ClusterIndex>,
    fetcher: Option<Arc<dyn SnapshotFetcher>>,
) -> Result<ServeConfig, Error> {
    let (policy, policy_file) = match &common.policy {
        None => (Policy::builtin(), None),
        Some(path) => {
            let file = crate::policy::PolicyFile::load(path)?;
            (file.policy, Some((file.path, file.bytes)))
        }
    };
    Ok(ServeConfig {
        listen: common.listen,
        admin_listen: common.admin_listen,
        tls,
        index,
        policy,
        policy_file,
        reload_interval: common.reload_interval,
        conn_limits: ConnLimits {
            max_connections: common.max_connections,
            shutdown_grace: common.shutdown_grace,
            ..ConnLimits::default()
        },
        limits: Limits {
            max_body_bytes: common.max_body_bytes,
            ..Limits::default()
        },
        fetcher,
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_cluster_is_not_bad_input() {
        let cluster = Error::Cluster(kube::Error::Service(Box::new(std::io::Error::other(
            "connection refused",
        ))));
        assert_eq!(cluster.exit_code(), exit::CLUSTER);
        assert_ne!(exit::CLUSTER, exit::BAD_INPUT);
        assert_eq!(Error::usage("x").exit_code(), exit::BAD_INPUT);
        let bind = Error::Serve(ServeError::Bind {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: std::io::Error::other("in use"),
        });
        assert_eq!(bind.exit_code(), exit::FAILED);
        assert_eq!(exit_code(Ok(Outcome::Denied)), exit::DENIED);
        assert_eq!(exit_code(Ok(Outcome::Success)), exit::OK);
    }
}
