//! `storage-admission explain` against state files of each stuck shape.
//!
//! Each folder under `tests/explain/` is one shape: `state.yaml` (a cluster, read as
//! `serve --state` reads it), `args` (what follows `explain`, before `--state`),
//! `expected.txt` (the text output) and `expected.json` (`-o json`). The exit code follows from
//! the verdict: 3 when something blocks the object, 0 when nothing does.
//!
//! `UPDATE_EXPLAIN=1 cargo nextest run --test explain` writes the expected files of a NEW
//! folder (one without them); existing expected files are never rewritten.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_storage-admission");

fn explain(argv0: Option<&str>, dir: &Path, extra: &[&str]) -> Output {
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    let mut command = Command::new(BIN);
    if let Some(name) = argv0 {
        use std::os::unix::process::CommandExt as _;
        command.arg0(name);
    }
    command
        .arg("explain")
        .args(args.split_whitespace())
        .arg("--state")
        .arg(dir.join("state.yaml"))
        .args(extra)
        .output()
        .unwrap()
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/explain");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("state.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn check(dir: &Path, file: &str, actual: &str, failures: &mut Vec<String>) {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{}: output differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) if std::env::var_os("UPDATE_EXPLAIN").is_some() => {
            std::fs::write(&path, actual).unwrap();
        }
        Err(_) => failures.push(format!(
            "{}: missing (UPDATE_EXPLAIN=1 writes it for a new case)",
            path.display()
        )),
    }
}

#[test]
fn every_stuck_shape_explains_itself_in_text_and_json() {
    let cases = cases();
    assert!(cases.len() >= 7, "{cases:?}");
    let mut failures = Vec::new();
    for dir in &cases {
        let text = explain(None, dir, &[]);
        let json = explain(None, dir, &["-o", "json"]);
        let stdout = |o: &Output| String::from_utf8(o.stdout.clone()).unwrap();
        check(dir, "expected.txt", &stdout(&text), &mut failures);
        check(dir, "expected.json", &stdout(&json), &mut failures);
        let doc: serde_json::Value = serde_json::from_str(&stdout(&json))
            .unwrap_or_else(|e| panic!("{}: -o json is not JSON: {e}", dir.display()));
        let blocked = doc["verdict"] == "blocked";
        assert_eq!(
            blocked,
            !doc["findings"].as_array().unwrap().is_empty(),
            "{}",
            dir.display()
        );
        for output in [&text, &json] {
            assert_eq!(
                output.status.code(),
                Some(if blocked { 3 } else { 0 }),
                "{}: {}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn finding_ids_are_the_stable_json_contract() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/explain/pv-zone-no-node");
    let out = explain(None, &dir, &["--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "pvc.volume-affinity-no-node",
            "pvc.allowed-topologies-no-node"
        ]
    );
    assert!(
        doc["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("Add nodes")
    );
}

#[test]
fn runs_as_a_kubectl_plugin_whatever_its_name() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/explain/wffc-no-consumer");
    let plugin = explain(Some("kubectl-storage_admission"), &dir, &[]);
    let plain = explain(None, &dir, &[]);
    assert_eq!(plugin.status.code(), Some(3));
    assert_eq!(plugin.stdout, plain.stdout);
}

#[test]
fn an_unknown_kind_is_a_usage_error_naming_the_kinds() {
    let out = Command::new(BIN)
        .args(["explain", "deployment", "web", "--state", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pvc (persistentvolumeclaim), vs (volumesnapshot)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unreadable_state_file_is_bad_input() {
    let out = Command::new(BIN)
        .args([
            "explain",
            "pvc",
            "data",
            "--state",
            "/nonexistent/state.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_readme_transcripts_are_the_real_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // The claim's side of the seed's example, then the pod's.
    for (args, shape) in [
        ("pvc mysql-data -n shop", "pv-zone-no-node"),
        ("pod mysql-0 -n shop", "pod-pv-zone-no-node"),
    ] {
        let command = format!(
            "$ storage-admission explain {args} --state tests/explain/{shape}/state.yaml\n"
        );
        let start = readme
            .find(&command)
            .unwrap_or_else(|| panic!("README shows the transcript of {args}"))
            + command.len();
        let end = start + readme[start..].find("$ echo $?").unwrap();
        let expected =
            std::fs::read_to_string(root.join(format!("tests/explain/{shape}/expected.txt")))
                .unwrap();
        assert_eq!(&readme[start..end], expected, "{shape}");
    }
}

#[test]
fn without_a_state_file_an_unreachable_cluster_is_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let explain_in_cluster = |kubeconfig: &Path| {
        Command::new(BIN)
            .args(["explain", "pvc", "data", "-n", "app"])
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    };
    // No kubeconfig at all.
    let out = explain_in_cluster(&dir.path().join("no-such-kubeconfig"));
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Kubernetes API") && err.contains("--state FILE"),
        "{err}"
    );
    // A kubeconfig whose API server does not answer: the first read fails.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: dev\n  user: {token: x}\ncontexts:\n- name: dev\n  context: {cluster: dev, user: dev}\ncurrent-context: dev\n",
    )
    .unwrap();
    let out = explain_in_cluster(&kubeconfig);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read PersistentVolumeClaim data from the Kubernetes API"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Every finding `explain` can give is shown end to end by at least one shape, so a new
/// finding comes with its state file and expected output.
#[test]
fn every_finding_id_has_a_shape() {
    let mut shown = std::collections::BTreeSet::new();
    for dir in cases() {
        let json = std::fs::read_to_string(dir.join("expected.json")).unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        for finding in doc["findings"].as_array().into_iter().flatten() {
            shown.insert(finding["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    let missing: Vec<&str> = storage_admission::explain::KINDS
        .iter()
        .flat_map(|kind| kind.finding_ids.iter().copied())
        .filter(|id| !shown.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "findings with no folder under tests/explain/: {missing:?}"
    );
}
