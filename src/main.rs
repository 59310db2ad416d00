//! The `storage-admission` command line.
#![forbid(unsafe_code)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use storage_admission::cluster::fetch::{self, KubeSnapshotFetcher, SnapshotFetcher};
use storage_admission::cluster::{ClusterIndex, state_file};
use storage_admission::policy::Policy;
use storage_admission::registration::{self, Registrar};
use storage_admission::self_managed::{self, Issuing};
use storage_admission::server::serve::ConnLimits;
use storage_admission::server::{Limits, ServeConfig, Server, TlsSource};
use storage_admission::telemetry::{self, LogFormat};
use storage_admission::{certs, controller, leader, offline};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STORAGE_ADMISSION_GIT_COMMIT"),
    ")"
);

/// The demo cluster `serve --dev` uses when no --state is given (see tests/golden/state.yaml).
const DEMO_STATE: &str = include_str!("../tests/golden/state.yaml");

#[derive(Parser)]
#[command(name = "storage-admission", version = VERSION, about = "Admission webhooks that make CSI snapshot and topology-aware storage workflows safe")]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Check the command line (flags and how they combine), then exit without starting
    /// anything: 0 when `run`/`serve` would accept it. webhook-config/check.sh passes every
    /// overlay's Deployment args through this, so a manifest cannot ship flags the binary
    /// refuses.
    #[arg(long, global = true, hide = true)]
    check_args: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the webhooks over HTTPS (with --state or --dev: no API server needed).
    Serve(ServeArgs),
    /// Serve the webhooks with a live, watch-fed view of the cluster (in-cluster or KUBECONFIG).
    Run(RunArgs),
    /// Review manifests or AdmissionReviews offline: mutate, then validate, as the API server would.
    Review(ReviewArgs),
    /// Policy file tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write a CA and a serving certificate for a Service (ca.crt, tls.crt, tls.key).
    Certs(CertsArgs),
}

/// Flags `serve` and `run` share: listeners, TLS, policy, limits.
#[derive(Args)]
struct CommonArgs {
    /// HTTPS address of the webhooks.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,
    /// Serving certificate (PEM; a chain is allowed, leaf first). Reloaded when it changes.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Policy file (default: the built-in policy, policies/default.yaml). Reloaded when it changes.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// How often certificate and policy files are checked for changes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// How long in-flight reviews may take to finish after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Maximum simultaneous webhook connections.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Maximum review body size in bytes (the API server sends up to ~3 MiB objects, twice on UPDATE).
    #[arg(long, default_value_t = storage_admission::server::router::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Development mode: a throw-away CA and certificate for localhost, and the demo cluster
    /// state unless --state is given.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    dev: bool,
    /// Where --dev writes its certificates.
    #[arg(long, requires = "dev")]
    dev_dir: Option<PathBuf>,
    /// Cluster state file (a kubectl List or YAML stream): no API server is contacted.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The service's own namespace: the controller skips objects there, as the webhook
    /// configurations do. Default: the pod's; out of the cluster the kubeconfig context's,
    /// refused when that is `default` (give --namespace storage-admission).
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Run the controller (node label backfill, audit events) next to the webhooks.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    controller: bool,
    /// How often the controller re-evaluates every cached object (also at once on a policy reload).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    resync: Duration,
    /// Node label patches per second, at most.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    backfill_rate: u32,
    /// The same audit finding (object, rule, message) is reported at most once in this window.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    event_dedup_window: Duration,
    /// This replica's name in the events it reports and in the leader Lease (default: the host
    /// name with a random suffix).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Elect one leader among the replicas (a Lease) to run the controller; `false`: this
    /// replica always leads (one replica, or out of cluster).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease, in --namespace, that elects the leader.
    #[arg(long, default_value = leader::DEFAULT_LEASE_NAME)]
    lease_name: String,
    /// How long the others wait on an unrenewed Lease before taking it over (whole seconds).
    /// 15s, as Kubernetes' own controllers: a crashed leader is replaced within 15s, while a
    /// renewal gets several tries in the meantime.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// The leader stops its loops this long before the others may take over: the margin for
    /// the loops to stop and for a request already sent (see src/leader.rs).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    lease_renew_grace: Duration,
    /// How long the single GET of a restore's VolumeSnapshot that the cache lacks may take
    /// (the restore webhook's timeoutSeconds is 5).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    fallback_timeout: Duration,
    /// Where the serving certificate comes from: `files` serves --tls-cert/--tls-key (e.g. from
    /// cert-manager); `self-managed` keeps a CA and certificate in --tls-secret (the leader
    /// creates and rotates it, every replica watches it; needs --register).
    #[arg(long, value_enum, default_value = "files")]
    certs: CertsMode,
    /// The leader updates both webhook configurations (the shipped manifests, with this
    /// deployment's Service and CA bundle) and keeps their caBundle current. It never creates
    /// them: apply the manifests first.
    #[arg(long)]
    register: bool,
    /// The webhooks' Service, in --namespace.
    #[arg(long, default_value = "storage-admission")]
    service_name: String,
    /// With --register --certs files: the PEM CA bundle for caBundle. Reloaded when it changes.
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// With --certs self-managed: the Secret holding the CA bundle and serving certificate.
    #[arg(long, default_value = "storage-admission-tls")]
    tls_secret: String,
    /// With --certs self-managed: validity of each CA and serving certificate; rotation starts
    /// when a third of it remains.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    cert_validity: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CertsMode {
    Files,
    SelfManaged,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Args)]
struct ReviewArgs {
    /// Policy file (default: the built-in policy).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Cluster state file; without it, checks that need cluster state are skipped with a warning.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Output: a readable summary, or the AdmissionReview responses.
    #[arg(short, long, value_enum, default_value = "text")]
    output: Output,
    /// Manifest or AdmissionReview file(s) (YAML or JSON); `-` or nothing reads standard input.
    files: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; prints each file's verdict.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "storage-admission")]
    service: String,
    /// Namespace of the Service.
    #[arg(long, default_value = "storage-admission")]
    namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long)]
    out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
    days: i64,
    /// A further name of the serving certificate, next to the Service's: a DNS name, or an IP
    /// address (it becomes an IP SAN). For a `url:` webhook, the host the API server calls
    /// (webhook-config/overlays/dev-url). Repeatable.
    #[arg(long = "san", value_name = "HOST")]
    sans: Vec<String>,
    /// Replace ca.crt, tls.crt and tls.key when --out already holds them (otherwise refused:
    /// the ca.crt there may be the CA your webhook configurations trust).
    #[arg(long)]
    force: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = telemetry::init(cli.log_format);
    if cli.check_args {
        return check_args(&cli.command);
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Run(args) => run(args),
        Command::Review(args) => review(args),
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => policy_check(&files),
        Command::Certs(args) => write_certs(args),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(offline::EXIT_BAD_INPUT)
}

/// The policy, and the file (path and text) it came from when one was given.
type LoadedPolicy = (Policy, Option<(PathBuf, Vec<u8>)>);

fn load_policy(path: Option<&Path>) -> Result<LoadedPolicy, String> {
    match path {
        None => Ok((Policy::builtin(), None)),
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read policy file {}: {e}", path.display()))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| format!("policy file {} is not UTF-8", path.display()))?;
            let policy = Policy::parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((policy, Some((path.to_owned(), bytes))))
        }
    }
}

fn load_state(path: &Path) -> Result<ClusterIndex, String> {
    let loaded = state_file::load(path).map_err(|e| e.to_string())?;
    if !loaded.ignored_kinds.is_empty() {
        tracing::info!(file = %path.display(), kinds = ?loaded.ignored_kinds, "state file kinds no rule reads were ignored");
    }
    Ok(loaded.index)
}

fn serve(args: ServeArgs) -> ExitCode {
    let index = match (&args.state, args.dev) {
        (Some(path), _) => match load_state(path) {
            Ok(index) => index,
            Err(e) => return fail(e),
        },
        (None, true) => match state_file::parse(DEMO_STATE, Path::new("tests/golden/state.yaml")) {
            Ok(loaded) => {
                tracing::info!(
                    "--dev without --state: serving the demo cluster of tests/golden/state.yaml"
                );
                loaded.index
            }
            Err(e) => return fail(e),
        },
        (None, false) => {
            return fail(
                "serve needs --state FILE (a cluster state file) or --dev; `run` watches a real cluster",
            );
        }
    };
    let tls = if args.dev {
        let dir = args
            .dev_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("storage-admission-dev"));
        match dev_certs(&dir, args.common.listen.port()) {
            Ok(pair) => pair,
            Err(e) => return fail(e),
        }
    } else {
        match (args.common.tls_cert.clone(), args.common.tls_key.clone()) {
            (Some(c), Some(k)) => (c, k),
            _ => return fail("serve needs --tls-cert and --tls-key, or --dev"),
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let tls = TlsSource::Files {
        cert: tls.0,
        key: tls.1,
    };
    runtime.block_on(serve_until_signal(
        &args.common,
        tls,
        Arc::new(index),
        None,
        None,
    ))
}

/// Checks the certificate and registration flags of `run` together (clap cannot express
/// "required with this value of that flag"); returns where the serving certificate comes from.
fn run_tls(args: &RunArgs) -> Result<TlsSource, String> {
    let files = args
        .common
        .tls_cert
        .clone()
        .zip(args.common.tls_key.clone());
    match args.certs {
        CertsMode::Files => {
            if args.register && args.ca_bundle.is_none() {
                return Err("--register with --certs files needs --ca-bundle FILE (the CA that signed --tls-cert, for caBundle)".into());
            }
            if !args.register && args.ca_bundle.is_some() {
                return Err("--ca-bundle is only used with --register".into());
            }
            files
                .map(|(cert, key)| TlsSource::Files { cert, key })
                .ok_or_else(|| {
                    "run needs --tls-cert and --tls-key (or --certs self-managed)".into()
                })
        }
        CertsMode::SelfManaged => {
            if files.is_some() || args.ca_bundle.is_some() {
                return Err("--certs self-managed takes its certificate from --tls-secret: drop --tls-cert, --tls-key and --ca-bundle".into());
            }
            if !args.register {
                return Err("--certs self-managed needs --register: only registration tells the API server the CA it generates".into());
            }
            // At least an hour (rotation starts with a third left, checked every --resync);
            // at most ten years, as `certs --days`.
            if !(Duration::from_secs(3600)..=Duration::from_secs(3650 * 86_400))
                .contains(&args.cert_validity)
            {
                return Err("--cert-validity must be between 1h and 3650d".into());
            }
            certs::check_dns_label("--tls-secret", &args.tls_secret).map_err(|e| e.to_string())?;
            Ok(TlsSource::InMemory)
        }
    }
}

/// `--check-args`: what `run` and `serve` refuse before they touch a file, a port or the
/// cluster. (Files named by flags are not read: they exist in the pod, not where manifests
/// are checked.)
fn check_args(command: &Command) -> ExitCode {
    let checked = match command {
        Command::Run(args) => check_run(args).map(drop),
        Command::Serve(args) if args.state.is_none() && !args.dev => {
            Err("serve needs --state FILE (a cluster state file) or --dev".to_owned())
        }
        Command::Serve(args) if !args.dev && args.common.tls_cert.is_none() => {
            Err("serve needs --tls-cert and --tls-key, or --dev".to_owned())
        }
        _ => Ok(()),
    };
    match checked {
        Ok(()) => {
            println!("arguments are valid");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Every check of `run`'s flags that needs no cluster; returns where the certificate comes from.
fn check_run(args: &RunArgs) -> Result<TlsSource, String> {
    let tls = run_tls(args)?;
    if args.fallback_timeout.is_zero() || args.fallback_timeout >= Duration::from_secs(5) {
        return Err(
            "--fallback-timeout must be above 0 and below the restore webhook's 5s timeoutSeconds"
                .to_owned(),
        );
    }
    certs::check_dns_label("--service-name", &args.service_name).map_err(|e| e.to_string())?;
    if args.leader_election {
        // The namespace and identity are only known in the cluster; the timings are checked here.
        leader::Config::new(
            String::new(),
            args.lease_name.clone(),
            String::new(),
            args.lease_duration,
            args.lease_renew_grace,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

fn run(args: RunArgs) -> ExitCode {
    let tls = match check_run(&args) {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                return fail(format!(
                    "cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {e}; for no cluster at all use `serve --state FILE`"
                ));
            }
        };
        let namespace = match own_namespace(args.namespace.as_deref(), client.default_namespace()) {
            Ok(ns) => ns,
            Err(e) => return fail(e),
        };
        let election = if args.leader_election {
            match leader::Config::new(
                namespace.clone(),
                args.lease_name.clone(),
                leader::identity(args.pod_name.as_deref()),
                args.lease_duration,
                args.lease_renew_grace,
            ) {
                Ok(config) => Some(config),
                Err(e) => return fail(e),
            }
        } else {
            None
        };
        tracing::info!(%namespace, "watching the cluster");
        let index = Arc::new(ClusterIndex::unavailable("waiting for the first list from the API server"));
        let watches = storage_admission::cluster::watch::spawn_all(client.clone(), index.clone(), args.controller);
        let fetcher: Arc<dyn SnapshotFetcher> = Arc::new(KubeSnapshotFetcher::new(
            client.clone(),
            args.fallback_timeout,
            fetch::DEFAULT_FALLBACK_CONCURRENCY,
        ));
        let controller = args.controller.then(|| ControllerStart {
            instance: args.pod_name.clone(),
            config: controller::Config {
                resync: args.resync,
                poll: args.common.reload_interval,
                backfill_rate: args.backfill_rate,
                dedup_window: args.event_dedup_window,
                scope: controller::Scope::for_namespace(&namespace),
            },
        });
        let target = registration::Target {
            namespace: namespace.clone(),
            service: args.service_name.clone(),
        };
        let certs = match args.certs {
            CertsMode::Files => CertsStart::Files {
                register: args.register.then(|| target.clone()).zip(args.ca_bundle.clone()),
            },
            CertsMode::SelfManaged => CertsStart::SelfManaged {
                secret: args.tls_secret.clone(),
                issuing: Issuing {
                    names: certs::service_names(&args.service_name, &namespace),
                    common_name: args.service_name.clone(),
                    validity: time_duration(args.cert_validity),
                },
                target,
            },
        };
        let cluster = ClusterStart {
            client,
            election,
            controller,
            certs,
            resync: args.resync,
        };
        let code = serve_until_signal(&args.common, tls, index, Some(fetcher), Some(cluster)).await;
        for watch in watches {
            watch.abort();
        }
        code
    })
}

/// The service's own namespace: the controller's audit skips it (as the webhook
/// configurations do), and the Lease, the self-managed Secret and registration's Service live
/// there. Without --namespace (or POD_NAMESPACE) it is the client's default: the pod's in the
/// cluster, but out of the cluster the kubeconfig context's, usually `default` — and taking
/// that as "our own" would silently stop auditing the user's objects there. So that guess is
/// refused; `default` given explicitly is someone's decision, and only warned about.
fn own_namespace(given: Option<&str>, client_default: &str) -> Result<String, String> {
    match given {
        Some("default") => {
            tracing::warn!(
                "--namespace default: the controller skips objects in its own namespace, so nothing in `default` is audited; the shipped webhook configurations exclude `storage-admission` instead"
            );
            Ok("default".to_owned())
        }
        Some(ns) => Ok(ns.to_owned()),
        None if client_default == "default" => Err(
            "no --namespace (or POD_NAMESPACE) given, and the client's namespace is `default` (out of the cluster: the kubeconfig context's). The controller skips objects in its own namespace, so it would not audit anything in `default`. Give --namespace storage-admission (the namespace the shipped webhook configurations exclude), or --namespace default if the service really runs there".to_owned(),
        ),
        None => Ok(client_default.to_owned()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Writes throw-away certificates for localhost and prints how to try the server.
fn dev_certs(dir: &Path, port: u16) -> Result<(PathBuf, PathBuf), certs::CertError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    // Throw-away files, regenerated on every start: replacing them is the point.
    let written = certs::write(
        dir,
        &certs::generate(&names, "storage-admission dev", 7)?,
        certs::Existing::Replace,
    )?;
    let review = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/captured/mutate-create-volumesnapshot-disk-snapshot/review.json");
    println!(
        "development certificates (valid 7 days) written to {}:",
        dir.display()
    );
    println!("  CA:          {}", written.ca_cert.display());
    println!("  certificate: {}", written.cert.display());
    println!("  key:         {}", written.key.display());
    // With --listen on port 0 the port is picked when binding, after this: the `serving` log
    // line that follows names it.
    let port = if port == 0 {
        "PORT".to_owned()
    } else {
        port.to_string()
    };
    println!("try it (from any directory):");
    println!(
        "  curl --cacert {} -H 'Content-Type: application/json' --data @{} https://localhost:{port}/mutate",
        written.ca_cert.display(),
        review.display()
    );
    if port == "PORT" {
        println!("  (PORT: the port of https_addr in the `serving` log line)");
    }
    Ok((written.cert, written.key))
}

fn time_duration(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// What `run` needs to start the controller once the server (its metrics and policy) is up.
struct ControllerStart {
    instance: Option<String>,
    config: controller::Config,
}

/// How `run` keeps certificates and webhook configurations.
enum CertsStart {
    /// Mounted files; with `register`, the leader registers the webhooks with `--ca-bundle`.
    Files {
        register: Option<(registration::Target, PathBuf)>,
    },
    /// The leader keeps the Secret and the registration; every replica watches the Secret.
    SelfManaged {
        secret: String,
        issuing: Issuing,
        target: registration::Target,
    },
}

/// The in-cluster tasks of `run`.
struct ClusterStart {
    client: kube::Client,
    /// `None`: this replica always leads (`--leader-election=false`).
    election: Option<leader::Config>,
    controller: Option<ControllerStart>,
    certs: CertsStart,
    resync: Duration,
}

async fn serve_until_signal(
    common: &CommonArgs,
    tls: TlsSource,
    index: Arc<ClusterIndex>,
    fetcher: Option<Arc<dyn SnapshotFetcher>>,
    cluster: Option<ClusterStart>,
) -> ExitCode {
    let (policy, policy_file) = match load_policy(common.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let config = ServeConfig {
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
    };
    let index = config.index.clone();
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Every replica serves the webhooks; only the leader writes to the cluster. Tasks that
    // write only while leader take the elector's signal (they return once it closes); tasks
    // every replica runs (the Secret watch) go until shutdown.
    let mut elector = None;
    let mut leading = Vec::new();
    let mut background = Vec::new();
    if let Some(cluster) = cluster {
        let client = cluster.client;
        let election = match cluster.election {
            Some(config) => leader::Elector::spawn(client.clone(), config, server.metrics.clone()),
            None => leader::Elector::always(&server.metrics),
        };
        let is_leader = election.subscribe();
        elector = Some(election);
        if let Some(start) = cluster.controller {
            let ctx = controller::Context::new(
                client.clone(),
                start.instance,
                server.metrics.clone(),
                server.current_policy.clone(),
                index,
                start.config,
            );
            leading.push(tokio::spawn(controller::run(
                Arc::new(ctx),
                is_leader.clone(),
            )));
        }
        let registrar = |target| Registrar {
            client: client.clone(),
            target,
            metrics: server.metrics.clone(),
        };
        match cluster.certs {
            CertsStart::Files { register: None } => {}
            CertsStart::Files {
                register: Some((target, bundle_file)),
            } => leading.push(tokio::spawn(registration::run_from_file(
                Arc::new(registrar(target)),
                bundle_file,
                common.reload_interval,
                cluster.resync,
                is_leader.clone(),
            ))),
            CertsStart::SelfManaged {
                secret,
                issuing,
                target,
            } => {
                let changed = Arc::new(tokio::sync::Notify::new());
                background.push(tokio::spawn(self_managed::watch_secret(
                    client.clone(),
                    target.namespace.clone(),
                    secret.clone(),
                    server.cert.clone(),
                    server.metrics.clone(),
                    changed.clone(),
                )));
                let leader_task = Arc::new(self_managed::Leader {
                    client: client.clone(),
                    namespace: target.namespace.clone(),
                    secret,
                    issuing,
                    registrar: registrar(target),
                    metrics: server.metrics.clone(),
                    clock: Arc::new(time::OffsetDateTime::now_utc),
                    resync: cluster.resync,
                    retry: common.reload_interval,
                });
                leading.push(tokio::spawn(leader_task.run(is_leader.clone(), changed)));
            }
        }
    }
    wait_for_signal().await;
    tracing::info!("shutdown signal received");
    // The leader's tasks stop first (no new patches, events or Secret writes from a
    // terminating pod), then the Lease is released so another replica leads at once. The
    // webhooks keep serving meanwhile.
    if let Some(elector) = elector {
        let stopped = async move {
            for task in leading {
                let _ = task.await;
            }
        };
        elector.shutdown(stopped, &server.metrics).await;
    }
    for task in background {
        task.abort();
    }
    server.shutdown();
    // Exit 0 either way: the process did what SIGTERM asks, and the log says whether any
    // connection was cut off after the grace period.
    server.wait().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
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
}

fn review(args: ReviewArgs) -> ExitCode {
    let (policy, _) = match load_policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let index = match &args.state {
        Some(path) => match load_state(path) {
            Ok(index) => index,
            Err(e) => return fail(e),
        },
        None => {
            ClusterIndex::unavailable("no --state file was given to `storage-admission review`")
        }
    };
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files
    };
    let mut results = Vec::new();
    for file in &files {
        let text = if file.as_os_str() == "-" {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                return fail(format!("cannot read standard input: {e}"));
            }
            text
        } else {
            match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
            }
        };
        match offline::review_text(&text, &index, &policy) {
            Ok(r) => results.extend(r),
            Err(e) => return fail(format!("{}: {e}", file.display())),
        }
    }
    match args.output {
        Output::Text => print!("{}", offline::render_text(&results)),
        Output::Json => {
            for r in &results {
                match r.to_review_json() {
                    Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
                    Err(e) => return fail(e),
                }
            }
        }
    }
    if results.iter().all(offline::Result1::allowed) {
        ExitCode::from(offline::EXIT_ALLOWED)
    } else {
        ExitCode::from(offline::EXIT_DENIED)
    }
}

fn policy_check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match Policy::load(file) {
            Ok(_) => println!("{}: valid", file.display()),
            Err(e) => {
                println!("{}: {e}", file.display());
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(offline::EXIT_BAD_INPUT)
    }
}

fn write_certs(args: CertsArgs) -> ExitCode {
    let result = certs::check_dns_label("service", &args.service)
        .and_then(|()| certs::check_dns_label("namespace", &args.namespace))
        .and_then(|()| {
            args.sans
                .iter()
                .map(|san| certs::San::parse(san))
                .collect::<Result<Vec<_>, _>>()
        })
        .and_then(|sans| {
            let names = certs::names_with(&args.service, &args.namespace, &sans);
            let existing = if args.force {
                certs::Existing::Replace
            } else {
                certs::Existing::Refuse
            };
            certs::generate(&names, &args.service, args.days)
                .and_then(|generated| certs::write(&args.out, &generated, existing))
                .map(|written| (written, names))
        });
    match result {
        Ok((written, names)) => {
            println!(
                "wrote {}, {} and {}",
                written.ca_cert.display(),
                written.cert.display(),
                written.key.display()
            );
            println!(
                "the certificate is valid for {} days for: {}",
                args.days,
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e @ certs::CertError::Exists { .. }) => fail(format!(
            "{e}. The ca.crt there may be the CA in your webhook configurations' caBundle, which a \
             renewal keeps in the bundle until every replica serves the new certificate \
             (certs/README.md): write to another --out directory, or pass --force to replace them"
        )),
        Err(e) => fail(e),
    }
}
