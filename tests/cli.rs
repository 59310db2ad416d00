//! The command line as a user runs it: exit codes, messages, files written.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_storage-admission");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_names_the_commit() {
    let out = run(&["--version"], None);
    assert!(out.status.success());
    assert!(stdout(&out).contains("(commit "), "{}", stdout(&out));
}

#[test]
fn help_documents_the_exit_codes() {
    let out = run(&["--help"], None);
    assert!(out.status.success());
    let help = stdout(&out);
    for code in [
        "0 success",
        "1 the service failed",
        "2 bad input or usage",
        "3 review: something was denied",
        "4 the Kubernetes API cannot be reached",
    ] {
        assert!(help.contains(code), "{code:?} in {help}");
    }
}

#[test]
fn policy_check_accepts_the_default_and_names_the_bad_field() {
    let out = run(&["policy", "check", "policies/default.yaml"], None);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("policies/default.yaml: valid"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  restoreReadiness:\n    mode: sometimes\n").unwrap();
    let out = run(&["policy", "check", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("sometimes"), "{}", stdout(&out));
}

#[test]
fn policy_check_rejects_a_when_missing_that_is_neither_admit_nor_warn() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  pinnedPods:\n    whenMissing: deny\n").unwrap();
    let out = run(&["policy", "check", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains("line 5") && text.contains("`deny`") && text.contains("admit, warn"),
        "{text}"
    );
}

#[test]
fn review_reads_manifests_from_stdin_and_exits_0_when_allowed() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
    let out = run(&["review", "-"], Some(manifest));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("1 reviewed, 1 allowed, 0 denied"));
}

#[test]
fn review_json_output_is_an_admission_review_per_object() {
    let review = Path::new(ROOT).join("src/dev/review.json");
    let out = run(
        &[
            "review",
            "-o",
            "json",
            "--state",
            "src/dev/state.yaml",
            review.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["kind"], "AdmissionReview");
    assert_eq!(
        json["response"]["uid"],
        "12df998f-5f20-4add-be10-fb0294891c8f"
    );
}

#[test]
fn review_exits_2_on_bad_input() {
    let out = run(&["review", "-"], Some("kind: [unclosed"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not valid YAML or JSON"),
        "{}",
        stderr(&out)
    );
    let out = run(&["review", "no-such-file.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-such-file.yaml"));
    let out = run(&["review", "--state", "no-such-state.yaml", "-"], Some(""));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn review_exits_3_when_anything_is_denied() {
    // An object the rules cannot read is refused (400 inside the review): a denial.
    let manifest = "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata:\n  name: s\nspec:\n  source:\n    persistentVolumeClaimName: [not, a, string]\n";
    let out = run(&["review", "-"], Some(manifest));
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("VolumeSnapshot default/s: DENIED"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn certs_writes_a_ca_and_a_serving_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "certs",
            "--service",
            "webhook",
            "--namespace",
            "storage",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("webhook.storage.svc.cluster.local"));
    for f in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let out = run(
        &[
            "certs",
            "--service",
            "Bad_Name",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Bad_Name"));
}

#[test]
fn certs_adds_each_san_to_the_serving_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "certs",
            "--service",
            "storage-admission",
            "--namespace",
            "storage-admission",
            "--san",
            "host.docker.internal",
            "--san",
            "172.18.0.1",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("storage-admission.storage-admission.svc.cluster.local, host.docker.internal, 172.18.0.1"),
        "{}",
        stdout(&out)
    );
    let pem = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let cert = &storage_admission::certs::inspect(&pem).unwrap()[0];
    assert_eq!(
        cert.names,
        [
            "storage-admission",
            "storage-admission.storage-admission",
            "storage-admission.storage-admission.svc",
            "storage-admission.storage-admission.svc.cluster.local",
            "host.docker.internal",
            "172.18.0.1",
        ]
    );
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    assert!(cert.is_signed_by(&storage_admission::certs::inspect(&ca).unwrap()[0]));
}

#[test]
fn certs_rejects_a_bad_san_with_the_reason_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    for (san, reason) in [
        ("", "empty"),
        ("host.docker.internal:8443", "without a port"),
        ("my_laptop", "not a DNS name"),
    ] {
        let out = run(
            &["certs", "--san", san, "--out", out_dir.to_str().unwrap()],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{san:?}");
        assert!(
            stderr(&out).contains(&format!("invalid --san {san:?}"))
                && stderr(&out).contains(reason),
            "{san:?}: {}",
            stderr(&out)
        );
        assert!(!out_dir.exists(), "{san:?}: nothing is written");
    }
}

#[test]
fn certs_refuses_to_replace_an_existing_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let ca = || std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    assert!(run(&["certs", "--out", out_dir], None).status.success());
    let first = ca();

    let out = run(&["certs", "--out", out_dir], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already holds ca.crt, tls.crt, tls.key")
            && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ca(), first, "the old CA is kept");

    let out = run(&["certs", "--out", out_dir, "--force"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(ca(), first, "--force writes a new CA");
}

#[test]
fn serve_refuses_to_start_without_a_certificate_or_state() {
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--state"), "{}", stderr(&out));
    let out = run(
        &[
            "serve",
            "--state",
            "src/dev/state.yaml",
            "--tls-cert",
            "/nonexistent.crt",
            "--tls-key",
            "/nonexistent.key",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent.crt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_dev_writes_the_sample_review_and_prints_a_command_that_works_from_anywhere() {
    // Started from a directory that is not the checkout, with a relative --dev-dir: the
    // printed command must name absolute paths of files the binary wrote itself.
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--dev", "--dev-dir", "dev-files"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    let mut curl = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.trim_start().starts_with("curl ") {
            curl = Some(line);
            break;
        }
        printed.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let curl = curl.unwrap_or_else(|| panic!("no curl command in {printed:?}"));
    let words: Vec<&str> = curl.split_whitespace().collect();
    let data = words
        .iter()
        .position(|w| *w == "--data")
        .and_then(|i| words.get(i + 1))
        .and_then(|w| w.strip_prefix('@'))
        .unwrap_or_else(|| panic!("no --data @FILE in {curl}"));
    let review = Path::new(data);
    assert!(review.is_absolute(), "{curl}");
    assert_eq!(
        review.canonicalize().unwrap(),
        dir.path()
            .join("dev-files/review.json")
            .canonicalize()
            .unwrap(),
        "{curl}"
    );
    assert_eq!(
        std::fs::read_to_string(review).unwrap(),
        storage_admission::dev::SAMPLE_REVIEW
    );
    let ca = dir.path().join("dev-files/ca.crt").canonicalize().unwrap();
    assert!(
        curl.contains(&format!("--cacert {}", ca.display())),
        "{curl}"
    );
    assert!(curl.ends_with("https://localhost:PORT/mutate"), "{curl}");
}

/// `run` with placeholder certificate paths on ephemeral ports: what happens before it
/// reads them is what these tests look at.
fn run_out_of_cluster() -> Command {
    let mut command = Command::new(BIN);
    command.args([
        "run",
        "--tls-cert",
        "x.crt",
        "--tls-key",
        "x.key",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    command
}

#[test]
fn run_explains_when_no_cluster_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_out_of_cluster()
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    // Not bad input: the cluster is unavailable (README "Command line", exit codes).
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Kubernetes API") && err.contains("serve --state"),
        "{err}"
    );
}

#[test]
fn run_out_of_cluster_takes_storage_admission_rather_than_the_kubeconfig_default_namespace() {
    // A kubeconfig whose context names no namespace (so `default`), and a serving pair:
    // `run` starts (the API server it names is never reached) and says which namespace it
    // took and why. The log line comes before the server starts, so reading stderr up to it
    // is the synchronisation; then the process is killed.
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: dev\n  user: {token: x}\ncontexts:\n- name: dev\n  context: {cluster: dev, user: dev}\ncurrent-context: dev\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--leader-election=false",
            "--controller=false",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("missing.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("missing.key"))
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .env_remove("POD_NAMESPACE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut chosen = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("watching the cluster") {
            chosen = Some(line);
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(
        log.contains("no --namespace (or POD_NAMESPACE) given")
            && log.contains("using `storage-admission`"),
        "{log}"
    );
    let chosen = chosen.unwrap_or_else(|| panic!("no `watching the cluster` line: {log}"));
    assert!(chosen.contains("namespace=storage-admission"), "{chosen}");
}

#[test]
fn run_checks_the_certificate_and_registration_flags_before_contacting_the_cluster() {
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--certs",
                "self-managed",
                "--register",
                "--cert-validity",
                "10m",
            ],
            "--cert-validity must be between 1h and 3650d",
        ),
        (
            &[
                "--certs",
                "self-managed",
                "--register",
                "--cert-validity",
                "99999999999999999d",
            ],
            "too long",
        ),
        (
            &["--certs", "self-managed"],
            "--certs self-managed needs --register",
        ),
        (
            &[
                "--certs",
                "self-managed",
                "--register",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
            ],
            "drop --tls-cert, --tls-key and --ca-bundle",
        ),
        (
            &["--register", "--tls-cert", "c", "--tls-key", "k"],
            "needs --ca-bundle FILE",
        ),
        (
            &["--ca-bundle", "ca.crt", "--tls-cert", "c", "--tls-key", "k"],
            "only used with --register",
        ),
        (
            &[
                "--certs",
                "self-managed",
                "--register",
                "--service-name",
                "Not_A_Name",
            ],
            "invalid --service-name",
        ),
    ];
    for (args, message) in cases {
        let out = run(&[&["run"], args].concat(), None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn check_args_accepts_what_run_would_and_refuses_the_rest_without_starting() {
    // webhook-config/check.sh runs every overlay's Deployment args through this.
    let ok = run(
        &[
            "run",
            "--certs=self-managed",
            "--register",
            "--namespace=storage-admission",
            "--log-format=json",
            "--check-args",
        ],
        None,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("arguments are valid"));
    for (args, message) in [
        (
            &["run", "--certs=self-managed", "--check-args"][..],
            "--certs self-managed needs --register",
        ),
        (
            &[
                "run",
                "--tls-cert=c",
                "--tls-key=k",
                "--lease-duration=3s",
                "--check-args",
            ][..],
            "--lease-renew-grace (5s) must be shorter than --lease-duration (3s)",
        ),
        (
            &[
                "run",
                "--tls-cert=c",
                "--tls-key=k",
                "--fallback-timeout=5s",
                "--check-args",
            ][..],
            "--fallback-timeout must be above 0",
        ),
        (
            &["run", "--tls-cert=c", "--no-such-flag", "--check-args"][..],
            "unexpected argument '--no-such-flag'",
        ),
        (&["serve", "--check-args"][..], "serve needs --state FILE"),
    ] {
        let out = run(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}
