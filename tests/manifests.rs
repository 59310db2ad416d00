//! `storage-admission review` on the example manifests of `tests/manifests/`: each file's
//! verdict (exit code) and the key part of its message, as the folder's README promises.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_storage-admission");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const ALLOWED: i32 = 0;
const DENIED: i32 = 3;

fn review(file: &str, state: &str, policy: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(ROOT).args(["review", "--state", state]);
    if let Some(p) = policy {
        cmd.args(["--policy", p]);
    }
    let out = cmd.arg(file).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn check(cases: &[(&str, Option<&str>, i32, &str)], dir: &str, state: &str) {
    let mut failures = Vec::new();
    for (file, policy, code, needle) in cases {
        let path = format!("tests/manifests/{dir}/{file}");
        let (got, text) = review(&path, state, *policy);
        if got != *code || !text.contains(needle) {
            failures.push(format!(
                "{path} (policy {policy:?}): exit {got}, want {code} and {needle:?}\n{text}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn snapshot_manifests() {
    let cases: &[(&str, Option<&str>, i32, &str)] = &[
        (
            "snapshot-of-unbound-pvc.yaml",
            None,
            ALLOWED,
            "volumeSnapshotClassName set to default-snapclass",
        ),
        (
            "snapshot-driver-without-default-class.yaml",
            None,
            ALLOWED,
            "has no default VolumeSnapshotClass",
        ),
        (
            "snapshot-driver-with-two-default-classes.yaml",
            None,
            DENIED,
            "has 2 default VolumeSnapshotClasses",
        ),
        (
            "snapshot-of-missing-pvc.yaml",
            None,
            ALLOWED,
            "does not exist yet",
        ),
        (
            "snapshot-with-explicit-class.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        (
            "snapshot-preprovisioned.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        (
            "second-default-snapshot-class.yaml",
            None,
            DENIED,
            "cannot be a default class",
        ),
        (
            "non-default-snapshot-class.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        (
            "snapshot-with-two-sources.yaml",
            None,
            DENIED,
            "sets both spec.source.persistentVolumeClaimName",
        ),
        (
            "snapshot-with-empty-class.yaml",
            None,
            DENIED,
            "must not be the empty string",
        ),
        (
            "snapshot-driver-without-any-class.yaml",
            None,
            ALLOWED,
            "nfs.csi.k8s.io",
        ),
        (
            "content-with-two-handles.yaml",
            None,
            DENIED,
            "exactly one must be set",
        ),
        (
            "content-without-ref-namespace.yaml",
            None,
            DENIED,
            "missing: namespace",
        ),
        (
            "content-preprovisioned.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        ("restore-ready.yaml", None, ALLOWED, "1 allowed, 0 denied"),
        (
            "restore-exact-bytes.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        (
            "restore-missing-snapshot.yaml",
            None,
            DENIED,
            "it does not exist",
        ),
        (
            "restore-not-ready.yaml",
            None,
            DENIED,
            "shows READYTOUSE true, then apply again",
        ),
        (
            "restore-failed-snapshot.yaml",
            None,
            DENIED,
            "the snapshot failed",
        ),
        (
            "restore-deleting-snapshot.yaml",
            None,
            DENIED,
            "the snapshot is being deleted",
        ),
        (
            "restore-too-small.yaml",
            None,
            DENIED,
            "has a restoreSize of 20Gi (21474836480 bytes)",
        ),
        (
            "restore-other-driver.yaml",
            None,
            DENIED,
            "taken by CSI driver",
        ),
        (
            "restore-volume-mode-change.yaml",
            None,
            DENIED,
            "was taken of a Block",
        ),
        (
            "restore-mismatched-sources.yaml",
            None,
            DENIED,
            "spec.dataSource",
        ),
        (
            "restore-cross-namespace.yaml",
            None,
            ALLOWED,
            "in another namespace",
        ),
        (
            "restore-from-populator.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        ("clone-ready.yaml", None, ALLOWED, "1 allowed, 0 denied"),
        (
            "clone-missing-source.yaml",
            None,
            DENIED,
            "it does not exist",
        ),
        (
            "clone-too-small.yaml",
            None,
            DENIED,
            "its source PersistentVolumeClaim default/big-pvc",
        ),
    ];
    check(cases, "snapshot", "tests/golden/snapshot/state.yaml");
}

#[test]
fn topology_manifests_with_each_policy() {
    let onprem = Some("policies/examples/onprem-racks.yaml");
    let cloud = Some("policies/examples/cloud-region-zone.yaml");
    let cases: &[(&str, Option<&str>, i32, &str)] = &[
        (
            "local-storage-class.yaml",
            None,
            ALLOWED,
            "volumeBindingMode set to WaitForFirstConsumer",
        ),
        (
            "local-storage-class.yaml",
            onprem,
            DENIED,
            "binds Immediate, but kubernetes.io/no-provisioner volumes are node-local",
        ),
        (
            "zonal-class-missing-zone.yaml",
            None,
            ALLOWED,
            "nodes have [cn-hangzhou-b]",
        ),
        (
            "node-cn-hangzhou-b-node3.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        (
            "node-cn-hangzhou-b-node3.yaml",
            cloud,
            ALLOWED,
            "topology.kubernetes.io/zone=cn-hangzhou-b",
        ),
        (
            "node-dc1-row3-rack12-node4.yaml",
            onprem,
            ALLOWED,
            "topology.example.com/row=row3",
        ),
        (
            "node-dc1-row3-rack12-node4.yaml",
            None,
            ALLOWED,
            "1 allowed, 0 denied",
        ),
        (
            "local-pv-unknown-node.yaml",
            None,
            ALLOWED,
            "which no current node matches",
        ),
    ];
    check(cases, "topology", "src/dev/state.yaml");
}

#[test]
fn group_snapshot_manifests() {
    let cases: &[(&str, Option<&str>, i32, &str)] = &[
        (
            "db-group.yaml",
            None,
            ALLOWED,
            "volumeGroupSnapshotClassName set to disk-group-default",
        ),
        (
            "app-across-drivers.yaml",
            None,
            DENIED,
            "selects PersistentVolumeClaims of 2 CSI drivers",
        ),
        (
            "selector-matching-nothing.yaml",
            None,
            ALLOWED,
            "its selector group in (web) selects no PersistentVolumeClaim",
        ),
        (
            "second-default-group-class.yaml",
            None,
            DENIED,
            "VolumeGroupSnapshotClass disk-group-default is already its default",
        ),
        (
            "content-with-both-sources.yaml",
            None,
            DENIED,
            "exactly one must be set",
        ),
        (
            "member-snapshot.yaml",
            None,
            ALLOWED,
            // Not "allowed, patched": a member gets no class.
            "snapshot-member-of-db-group: allowed\n",
        ),
    ];
    check(cases, "group", "tests/golden/group/state.yaml");
}
