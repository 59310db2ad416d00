//! The command line: the clap types, durations, and the one check of how flags combine
//! that `serve`, `run` and `--check-args` share (so a manifest checked with `--check-args`
//! is refused, or accepted, with the very words the service would use).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::server::TlsSource;
use crate::telemetry::LogFormat;
use crate::{certs, leader};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STORAGE_ADMISSION_GIT_COMMIT"),
    ")"
);

/// Flags that do not combine: what `serve`, `run` and `--check-args` refuse, with the same
/// message (exit code 2, bad input or usage).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Shown under `--help`: the exit codes, from the one table in [`crate::commands::exit`].
const EXIT_CODES: &str = "Exit codes: 0 success (review: everything allowed; explain: nothing \
blocks it); 1 the service failed (e.g. cannot listen); 2 bad input or usage (flags, files); \
3 review: something was denied, explain: something blocks it; 4 the Kubernetes API cannot be \
reached (run, explain: no in-cluster config, no usable kubeconfig, a read refused)";

#[derive(Parser)]
#[command(
    name = "storage-admission",
    version = VERSION,
    about = "Admission webhooks that make CSI snapshot and topology-aware storage workflows safe",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Check the command line (flags and how they combine), then exit without starting
    /// anything: 0 when `run`/`serve` would accept it. webhook-config/check.sh passes every
    /// overlay's Deployment args through this, so a manifest cannot ship flags the binary
    /// refuses.
    #[arg(long, global = true, hide = true)]
    pub check_args: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the webhooks over HTTPS (with --state or --dev: no API server needed).
    Serve(ServeArgs),
    /// Serve the webhooks with a live, watch-fed view of the cluster (in-cluster or KUBECONFIG).
    // Boxed: by far the largest variant (clippy's `large_enum_variant`).
    Run(Box<RunArgs>),
    /// Review manifests or AdmissionReviews offline: mutate, then validate, as the API server would.
    Review(ReviewArgs),
    /// Policy file tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write a CA and a serving certificate for a Service (ca.crt, tls.crt, tls.key).
    Certs(CertsArgs),
    /// Why is it stuck? The chain behind a Pending PVC or an unready VolumeSnapshot, and the fix
    /// (read-only: GET and LIST in the current kubeconfig context, or --state FILE).
    Explain(ExplainArgs),
}

/// Flags `serve` and `run` share: listeners, TLS, policy, limits.
#[derive(Args)]
pub struct CommonArgs {
    /// HTTPS address of the webhooks.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM; a chain is allowed, leaf first). Reloaded when it changes.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Policy file (default: the built-in policy, policies/default.yaml). Reloaded when it changes.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// How often certificate and policy files are checked for changes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// How long in-flight reviews may take to finish after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Maximum simultaneous webhook connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Maximum review body size in bytes (the API server sends up to ~3 MiB objects, twice on UPDATE).
    #[arg(long, default_value_t = crate::server::router::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Development mode: a throw-away CA and certificate for localhost, and the demo cluster
    /// state unless --state is given.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub dev: bool,
    /// Where --dev writes its certificates.
    #[arg(long, requires = "dev")]
    pub dev_dir: Option<PathBuf>,
    /// Cluster state file (a kubectl List or YAML stream): no API server is contacted.
    #[arg(long)]
    pub state: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The service's own namespace: the controller skips objects there, as the webhook
    /// configurations do. Default: the pod's; out of the cluster the kubeconfig context's,
    /// except that `default` there becomes `storage-admission` (the shipped manifests').
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Run the controller (node label backfill, audit events) next to the webhooks.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub controller: bool,
    /// How often the controller re-evaluates every cached object (also at once on a policy reload).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Node label patches per second, at most.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub backfill_rate: u32,
    /// The same audit finding (object, rule, message) is reported at most once in this window.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub event_dedup_window: Duration,
    /// A claim not bound, or a snapshot not ready, this long after its creation is reported as
    /// stuck (a Warning Event with `explain`'s verdict and fix).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub stuck_after: Duration,
    /// This replica's name in the events it reports and in the leader Lease (default: the host
    /// name with a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Elect one leader among the replicas (a Lease) to run the controller; `false`: this
    /// replica always leads (one replica, or out of cluster).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The Lease, in --namespace, that elects the leader.
    #[arg(long, default_value = leader::DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// How long the others wait on an unrenewed Lease before taking it over (whole seconds).
    /// 15s, as Kubernetes' own controllers: a crashed leader is replaced within 15s, while a
    /// renewal gets several tries in the meantime.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// The leader stops its loops this long before the others may take over: the margin for
    /// the loops to stop and for a request already sent (see src/leader.rs).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub lease_renew_grace: Duration,
    /// How long the single GET of a restore's VolumeSnapshot that the cache lacks may take
    /// (the restore webhook's timeoutSeconds is 5).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub fallback_timeout: Duration,
    /// Where the serving certificate comes from: `files` serves --tls-cert/--tls-key (e.g. from
    /// cert-manager); `self-managed` keeps a CA and certificate in --tls-secret (the leader
    /// creates and rotates it, every replica watches it; needs --register).
    #[arg(long, value_enum, default_value = "files")]
    pub certs: CertsMode,
    /// The leader updates both webhook configurations (the shipped manifests, with this
    /// deployment's Service and CA bundle) and keeps their caBundle current. It never creates
    /// them: apply the manifests first.
    #[arg(long)]
    pub register: bool,
    /// The webhooks' Service, in --namespace.
    #[arg(long, default_value = "storage-admission")]
    pub service_name: String,
    /// With --register --certs files: the PEM CA bundle for caBundle. Reloaded when it changes.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// With --certs self-managed: the Secret holding the CA bundle and serving certificate.
    #[arg(long, default_value = "storage-admission-tls")]
    pub tls_secret: String,
    /// With --certs self-managed: validity of each CA and serving certificate; rotation starts
    /// when a third of it remains.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    pub cert_validity: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertsMode {
    Files,
    SelfManaged,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Args)]
pub struct ReviewArgs {
    /// Policy file (default: the built-in policy).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Cluster state file; without it, checks that need cluster state are skipped with a warning.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Output: a readable summary, or the AdmissionReview responses.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Output,
    /// Manifest or AdmissionReview file(s) (YAML or JSON); `-` or nothing reads standard input.
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// The kind, as kubectl names it: pvc (persistentvolumeclaim), vs (volumesnapshot), po
    /// (pod), vgs (volumegroupsnapshot).
    pub kind: String,
    pub name: String,
    /// The object's namespace (default: the kubeconfig context's; `default` with --state).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Cluster state file (as `serve --state` reads it) instead of the cluster.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Policy file whose rule settings the diagnoses use (default: the built-in policy).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Output: the chain and the verdict, or the same as a JSON document.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; prints each file's verdict.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "storage-admission")]
    pub service: String,
    /// Namespace of the Service.
    #[arg(long, default_value = "storage-admission")]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub days: i64,
    /// A further name of the serving certificate, next to the Service's: a DNS name, or an IP
    /// address (it becomes an IP SAN). For a `url:` webhook, the host the API server calls
    /// (webhook-config/overlays/dev-url). Repeatable.
    #[arg(long = "san", value_name = "HOST")]
    pub sans: Vec<String>,
    /// Replace ca.crt, tls.crt and tls.key when --out already holds them (otherwise refused:
    /// the ca.crt there may be the CA your webhook configurations trust).
    #[arg(long)]
    pub force: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s, 2m, 1h or 90d"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" | "h" | "d" => {
            let unit = match unit {
                "m" => 60,
                "h" => 3600,
                _ => 86_400,
            };
            n.checked_mul(unit)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{s:?} is too long"))
        }
        _ => Err(format!(
            "{s:?} is not a duration like 500ms, 5s, 2m, 1h or 90d"
        )),
    }
}

/// The one check of how flags combine (clap cannot express "required with this value of that
/// flag"): `serve` and `run` call it before they touch a file, a port or the cluster, and
/// `--check-args` prints its verdict. Files named by flags are not read: they exist in the
/// pod, not where manifests are checked.
pub fn validate(command: &Command) -> Result<(), UsageError> {
    match command {
        Command::Serve(args) => validate_serve(args).map(drop),
        Command::Run(args) => validate_run(args).map(drop),
        Command::Review(_) | Command::Policy { .. } | Command::Certs(_) | Command::Explain(_) => {
            Ok(())
        }
    }
}

/// `serve`'s part of [`validate`]; returns the certificate files, `None` with `--dev` (which
/// writes its own).
pub fn validate_serve(args: &ServeArgs) -> Result<Option<TlsSource>, UsageError> {
    if args.state.is_none() && !args.dev {
        return Err(UsageError::new(
            "serve needs --state FILE (a cluster state file) or --dev; `run` watches a real cluster",
        ));
    }
    if args.dev {
        return Ok(None);
    }
    match (args.common.tls_cert.clone(), args.common.tls_key.clone()) {
        (Some(cert), Some(key)) => Ok(Some(TlsSource::Files { cert, key })),
        _ => Err(UsageError::new(
            "serve needs --tls-cert and --tls-key, or --dev",
        )),
    }
}

/// `run`'s part of [`validate`]: every check of its flags that needs no cluster; returns where
/// the certificate comes from.
pub fn validate_run(args: &RunArgs) -> Result<TlsSource, UsageError> {
    let has_files = args.common.tls_cert.is_some() || args.common.tls_key.is_some();
    match args.certs {
        CertsMode::Files => {
            if args.register && args.ca_bundle.is_none() {
                return Err(UsageError::new(
                    "--register with --certs files needs --ca-bundle FILE (the CA that signed --tls-cert, for caBundle)",
                ));
            }
            if !args.register && args.ca_bundle.is_some() {
                return Err(UsageError::new("--ca-bundle is only used with --register"));
            }
        }
        CertsMode::SelfManaged => {
            if has_files || args.ca_bundle.is_some() {
                return Err(UsageError::new(
                    "--certs self-managed takes its certificate from --tls-secret: drop --tls-cert, --tls-key and --ca-bundle",
                ));
            }
            if !args.register {
                return Err(UsageError::new(
                    "--certs self-managed needs --register: only registration tells the API server the CA it generates",
                ));
            }
            // At least an hour (rotation starts with a third left, checked every --resync);
            // at most ten years, as `certs --days`.
            if !(Duration::from_secs(3600)..=Duration::from_secs(3650 * 86_400))
                .contains(&args.cert_validity)
            {
                return Err(UsageError::new(
                    "--cert-validity must be between 1h and 3650d",
                ));
            }
            certs::check_dns_label("--tls-secret", &args.tls_secret)
                .map_err(|e| UsageError::new(e.to_string()))?;
        }
    }
    let tls = match args.certs {
        CertsMode::Files => args
            .common
            .tls_cert
            .clone()
            .zip(args.common.tls_key.clone())
            .map(|(cert, key)| TlsSource::Files { cert, key })
            .ok_or_else(|| {
                UsageError::new("run needs --tls-cert and --tls-key (or --certs self-managed)")
            })?,
        CertsMode::SelfManaged => TlsSource::InMemory,
    };
    if args.fallback_timeout.is_zero() || args.fallback_timeout >= Duration::from_secs(5) {
        return Err(UsageError::new(
            "--fallback-timeout must be above 0 and below the restore webhook's 5s timeoutSeconds",
        ));
    }
    certs::check_dns_label("--service-name", &args.service_name)
        .map_err(|e| UsageError::new(e.to_string()))?;
    if args.leader_election {
        // The namespace and identity are only known in the cluster; the timings are checked here.
        leader::Config::new(
            String::new(),
            args.lease_name.clone(),
            String::new(),
            args.lease_duration,
            args.lease_renew_grace,
        )
        .map_err(|e| UsageError::new(e.to_string()))?;
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from([&["storage-admission"], args].concat())
            .unwrap()
            .command
    }

    #[test]
    fn durations_take_the_units_the_help_names() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert!(parse_duration("5 s").is_err());
        assert!(
            parse_duration("99999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn serve_needs_state_or_dev_and_a_certificate() {
        let err = validate(&parse(&["serve"])).unwrap_err();
        assert!(
            err.to_string().contains("serve needs --state FILE"),
            "{err}"
        );
        let err = validate(&parse(&["serve", "--state", "s.yaml"])).unwrap_err();
        assert!(
            err.to_string().contains("--tls-cert and --tls-key"),
            "{err}"
        );
        validate(&parse(&["serve", "--dev"])).unwrap();
        validate(&parse(&[
            "serve",
            "--state",
            "s",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ]))
        .unwrap();
    }

    #[test]
    fn run_takes_its_certificate_from_files_or_the_secret() {
        assert!(matches!(
            validate_run(&run_args(&["--tls-cert", "c", "--tls-key", "k"])),
            Ok(TlsSource::Files { .. })
        ));
        assert!(matches!(
            validate_run(&run_args(&["--certs", "self-managed", "--register"])),
            Ok(TlsSource::InMemory)
        ));
        let err = validate_run(&run_args(&[])).unwrap_err();
        assert!(err.to_string().contains("run needs --tls-cert"), "{err}");
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(&[&["run"], args].concat()) {
            Command::Run(args) => *args,
            _ => unreachable!(),
        }
    }
}
