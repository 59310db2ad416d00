//! Every diagnosis, on small state files (read as `serve --state` and `explain --state` read
//! them), and the rule outputs they reuse.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::cluster::state_file;
use crate::testing::policy as policies;

/// Nodes in zone b; the zone-d class of the seed's Pending example; a WFFC class; a default
/// class; a snapshot class of the disk driver marked default.
const BASE: &str = r#"
- {apiVersion: v1, kind: Node, metadata: {name: n1, labels: {topology.kubernetes.io/zone: cn-hangzhou-b}}}
- {apiVersion: v1, kind: Node, metadata: {name: n2, labels: {topology.kubernetes.io/zone: cn-hangzhou-b}}}
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: disk-d}
  provisioner: disk.csi.example.com
  volumeBindingMode: Immediate
  allowedTopologies:
  - matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [cn-hangzhou-d]}]
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: wffc}
  provisioner: disk.csi.example.com
  volumeBindingMode: WaitForFirstConsumer
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: plain}
  provisioner: disk.csi.example.com
- apiVersion: v1
  kind: PersistentVolume
  metadata: {name: pv-src}
  spec: {csi: {driver: disk.csi.example.com, volumeHandle: h}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: src, namespace: app}
  spec: {storageClassName: plain, volumeName: pv-src, resources: {requests: {storage: 10Gi}}}
  status: {phase: Bound, capacity: {storage: 10Gi}}
"#;

fn explain_in(extra: &str, kind: &str, name: &str) -> Explanation {
    let text = format!("apiVersion: v1\nkind: List\nitems:{BASE}{extra}");
    let index = state_file::parse(&text, Path::new("state.yaml"))
        .unwrap()
        .index;
    let target = Target::parse(kind, name, "app").unwrap();
    explain(&target, &index, &policies::default(), SystemTime::now()).unwrap()
}

fn ids(e: &Explanation) -> Vec<&'static str> {
    e.findings.iter().map(|f| f.id).collect()
}

fn claim(spec: &str) -> String {
    format!(
        "\n- apiVersion: v1\n  kind: PersistentVolumeClaim\n  metadata: {{name: data, namespace: app}}\n  spec: {spec}\n"
    )
}

#[test]
fn a_missing_target_is_a_finding_not_an_error() {
    let e = explain_in("", "pvc", "nope");
    assert_eq!(ids(&e), ["pvc.not-found"]);
    assert_eq!(e.verdict, Verdict::Blocked);
    let e = explain_in("", "vs", "nope");
    assert_eq!(ids(&e), ["snapshot.not-found"]);
}

#[test]
fn pvc_class_that_does_not_exist() {
    let e = explain_in(&claim("{storageClassName: fast}"), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.no-storage-class"]);
    assert!(
        e.findings[0]
            .message
            .contains("StorageClass fast, which does not exist")
    );
}

#[test]
fn pvc_with_no_class_and_no_default() {
    let e = explain_in(&claim("{}"), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.no-default-class"]);
    assert!(
        e.findings[0]
            .fix
            .contains("storageclass.kubernetes.io/is-default-class")
    );
}

#[test]
fn pvc_with_several_defaults() {
    let defaults = r#"
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: d1, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}
  provisioner: disk.csi.example.com
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: d2, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}
  provisioner: disk.csi.example.com
"#;
    let e = explain_in(&format!("{defaults}{}", claim("{}")), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.several-default-classes"]);
    assert!(e.findings[0].message.contains("d1, d2"));
}

#[test]
fn pvc_asking_for_no_class_waits_for_a_static_volume() {
    let e = explain_in(&claim("{storageClassName: \"\"}"), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.static-binding"]);
}

#[test]
fn pvc_restoring_from_a_missing_snapshot_says_what_the_rule_says() {
    let e = explain_in(
        &claim(
            "{storageClassName: plain, dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: gone}}",
        ),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.restore-source"]);
    // The rule's own message, for the existing claim: one code path.
    assert!(
        e.findings[0]
            .message
            .starts_with("PersistentVolumeClaim app/data cannot be restored from VolumeSnapshot app/gone: it does not exist."),
        "{}",
        e.findings[0].message
    );
    assert!(e.findings[0].fix.contains("cannot be changed"));
    assert_eq!(e.chain[1].fact, "restore source: does not exist");
}

#[test]
fn pvc_restoring_from_a_failed_snapshot() {
    let snap = r#"
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshot
  metadata: {name: broken, namespace: app}
  spec: {source: {persistentVolumeClaimName: src}}
  status: {readyToUse: false, error: {message: "quota exceeded"}}
"#;
    let e = explain_in(
        &format!(
            "{snap}{}",
            claim(
                "{storageClassName: plain, dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: broken}}"
            )
        ),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.restore-source"]);
    assert!(
        e.findings[0]
            .message
            .contains("the snapshot failed: quota exceeded")
    );
}

#[test]
fn pvc_cloned_from_a_claim_that_is_gone_or_too_large() {
    let e = explain_in(
        &claim("{storageClassName: plain, dataSource: {kind: PersistentVolumeClaim, name: gone}}"),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.clone-source-gone"]);
    let e = explain_in(
        &claim(
            "{storageClassName: plain, dataSource: {kind: PersistentVolumeClaim, name: src}, resources: {requests: {storage: 1Gi}}}",
        ),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.clone-source"]);
    assert!(
        e.findings[0]
            .message
            .contains("a clone must be at least as large")
    );
    // A source being deleted is gone; that it is also larger is the other finding.
    let deleted = r#"
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: old, namespace: app, deletionTimestamp: "2024-05-01T00:00:00Z", finalizers: [kubernetes.io/pvc-protection]}
  spec: {storageClassName: plain, resources: {requests: {storage: 10Gi}}}
  status: {phase: Bound, capacity: {storage: 10Gi}}
"#;
    let e = explain_in(
        &format!(
            "{deleted}{}",
            claim(
                "{storageClassName: plain, dataSource: {kind: PersistentVolumeClaim, name: old}, resources: {requests: {storage: 1Gi}}}"
            )
        ),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.clone-source-gone", "pvc.clone-source"]);
    assert!(
        e.findings[0]
            .message
            .contains("the source is being deleted")
    );
    assert!(
        e.findings[1]
            .message
            .contains("a clone must be at least as large")
    );
    // A source in another namespace is refused as such, whether it exists there or not.
    let e = explain_in(
        &claim(
            "{storageClassName: plain, dataSourceRef: {kind: PersistentVolumeClaim, name: gone, namespace: other}}",
        ),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.clone-source"]);
    assert!(
        e.findings[0]
            .message
            .contains("a clone must be in the same namespace as its source")
    );
}

#[test]
fn pvc_of_a_class_whose_topologies_match_no_node() {
    let e = explain_in(&claim("{storageClassName: disk-d}"), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.allowed-topologies-no-node"]);
    // The allowed-topologies rule's message, on the existing class.
    assert!(
        e.findings[0]
            .message
            .starts_with("StorageClass disk-d matches no current node"),
        "{}",
        e.findings[0].message
    );
    let nodes = e.chain.iter().find(|s| s.object.kind == "Node").unwrap();
    assert_eq!(
        nodes.fact,
        "2 nodes; topology.kubernetes.io/zone: cn-hangzhou-b (2)"
    );
}

#[test]
fn wffc_pvc_without_a_consumer_and_with_a_selected_node_that_is_gone() {
    let e = explain_in(&claim("{storageClassName: wffc}"), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.wffc-no-consumer"]);
    assert!(e.findings[0].message.contains("and no pod uses it"));

    let selected = |node: &str| {
        format!(
            "\n- apiVersion: v1\n  kind: PersistentVolumeClaim\n  metadata: {{name: data, namespace: app, annotations: {{volume.kubernetes.io/selected-node: {node}}}}}\n  spec: {{storageClassName: wffc}}\n"
        )
    };
    let e = explain_in(&selected("n9"), "pvc", "data");
    assert_eq!(ids(&e), ["pvc.selected-node-gone"]);
    assert!(
        e.findings[0]
            .fix
            .contains("kubectl annotate pvc -n app data volume.kubernetes.io/selected-node-")
    );
    // A selected node that exists: provisioning is under way, nothing blocks.
    let e = explain_in(&selected("n1"), "pvc", "data");
    assert_eq!(ids(&e), Vec::<&str>::new());
    assert_eq!(e.verdict, Verdict::Clear);
}

#[test]
fn bound_pvc_whose_volume_no_node_can_mount() {
    let extra = r#"
- apiVersion: v1
  kind: PersistentVolume
  metadata: {name: pv-d}
  spec:
    csi: {driver: disk.csi.example.com, volumeHandle: d-1}
    nodeAffinity:
      required:
        nodeSelectorTerms:
        - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [cn-hangzhou-d]}]
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data, namespace: app}
  spec: {storageClassName: disk-d, volumeName: pv-d}
  status: {phase: Bound}
"#;
    let e = explain_in(extra, "pvc", "data");
    assert_eq!(
        ids(&e),
        [
            "pvc.volume-affinity-no-node",
            "pvc.allowed-topologies-no-node"
        ]
    );
    assert!(e.findings[0].message.contains(
        "node affinity topology.kubernetes.io/zone In [cn-hangzhou-d] matches no current node"
    ));
    // The same claim in a cluster with a node in zone d is fine.
    let node_d = "\n- {apiVersion: v1, kind: Node, metadata: {name: n3, labels: {topology.kubernetes.io/zone: cn-hangzhou-d}}}\n";
    let e = explain_in(&format!("{extra}{node_d}"), "pvc", "data");
    assert_eq!(e.verdict, Verdict::Clear);
    assert!(
        e.summary.contains("bound to PersistentVolume pv-d"),
        "{}",
        e.summary
    );
}

#[test]
fn bound_pvc_whose_volume_is_gone() {
    let e = explain_in(
        &claim("{storageClassName: plain, volumeName: pv-gone}"),
        "pvc",
        "data",
    );
    assert_eq!(ids(&e), ["pvc.volume-missing"]);
    assert_eq!(e.chain[0].fact, "Bound to PersistentVolume pv-gone");
    // The PV controller marks such a claim Lost: the chain says so rather than "Bound".
    let lost = claim("{storageClassName: plain, volumeName: pv-gone}\n  status: {phase: Lost}");
    let e = explain_in(&lost, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.volume-missing"]);
    assert_eq!(
        e.chain[0].fact,
        "Lost; was bound to PersistentVolume pv-gone"
    );
    assert!(e.findings[0].message.contains("(Lost)"), "{e:?}");
}

#[test]
fn pending_pvc_prebound_to_a_volume_not_created_yet_waits_for_it_and_is_not_lost() {
    let prebound =
        claim("{storageClassName: plain, volumeName: pv-static}\n  status: {phase: Pending}");
    let e = explain_in(&prebound, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.volume-missing"]);
    assert_eq!(
        e.chain[0].fact,
        "Pending; spec.volumeName names PersistentVolume pv-static"
    );
    let finding = &e.findings[0];
    assert!(
        finding.message.contains("does not exist yet") && !finding.message.contains("Lost"),
        "{finding:?}"
    );
    assert!(
        finding.fix.contains("Create PersistentVolume pv-static"),
        "{finding:?}"
    );
}

/// A CSIDriver named `name` (a state file holding one can tell which drivers are installed).
fn csi_driver(name: &str) -> String {
    format!(
        "\n- {{apiVersion: storage.k8s.io/v1, kind: CSIDriver, metadata: {{name: {name}}}, spec: {{attachRequired: true}}}}\n"
    )
}

/// A StorageClass `name` of `provisioner`, binding Immediate.
fn class_of(name: &str, provisioner: &str) -> String {
    format!(
        "\n- {{apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {{name: {name}}}, provisioner: {provisioner}}}\n"
    )
}

#[test]
fn pending_pvc_whose_provisioner_no_csi_driver_serves() {
    // The cluster's CSIDrivers are known (one, of another driver), and none is the class's.
    let state = format!(
        "{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: plain}")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.provisioner-unserved"]);
    let f = &e.findings[0];
    assert!(
        f.message.starts_with(
            "PersistentVolumeClaim app/data uses StorageClass plain, whose provisioner is disk.csi.example.com, and no CSIDriver named disk.csi.example.com exists: the CSI driver is not installed"
        ) && f.message.contains("check that it is running"),
        "{}",
        f.message
    );
    assert!(
        f.fix.contains("kubectl get csidriver") && f.fix.contains("kubectl get storageclass"),
        "{}",
        f.fix
    );
    // The lookup is a step of the chain, right after the class.
    let at = e
        .chain
        .iter()
        .position(|s| s.object.kind == "StorageClass")
        .unwrap();
    assert_eq!(
        e.chain[at + 1].object.to_string(),
        "CSIDriver disk.csi.example.com"
    );
    assert_eq!(e.chain[at + 1].fact, "does not exist");

    // A WaitForFirstConsumer claim: no driver is the reason, not the missing consumer.
    let state = format!(
        "{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: wffc}")
    );
    assert_eq!(
        ids(&explain_in(&state, "pvc", "data")),
        ["pvc.provisioner-unserved"]
    );
    // The default class is followed the same way.
    let state = format!(
        "{}{}{}",
        csi_driver("nfs.csi.k8s.io"),
        "\n- {apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: std, annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}}, provisioner: local.csi.example.com}\n",
        claim("{}")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.provisioner-unserved"]);
    assert!(
        e.findings[0]
            .message
            .contains("StorageClass std, whose provisioner is local.csi.example.com")
    );
    // A pod shows its claim's finding.
    let state = format!(
        "{}{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: plain}"),
        pod(
            "web",
            "{volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    assert_eq!(
        ids(&explain_in(&state, "pod", "web")),
        ["pvc.provisioner-unserved"]
    );
}

#[test]
fn pending_pvc_whose_provisioner_is_installed_is_not_blocked_by_it() {
    let state = format!(
        "{}{}",
        csi_driver("disk.csi.example.com"),
        claim("{storageClassName: plain}")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    let step = e
        .chain
        .iter()
        .find(|s| s.object.kind == "CSIDriver")
        .unwrap();
    assert_eq!(step.fact, "installed");
    // Installed, the claim waits for its consumer as before.
    let state = format!(
        "{}{}",
        csi_driver("disk.csi.example.com"),
        claim("{storageClassName: wffc}")
    );
    assert_eq!(
        ids(&explain_in(&state, "pvc", "data")),
        ["pvc.wffc-no-consumer"]
    );
}

#[test]
fn an_in_tree_provisioner_is_served_by_its_csi_migration_driver() {
    let ebs = class_of("gp2", "kubernetes.io/aws-ebs");
    let pending = claim("{storageClassName: gp2}");
    // No migration driver: the finding names it, and says why it is the one looked for.
    let state = format!("{ebs}{}{pending}", csi_driver("efs.csi.aws.com"));
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.provisioner-unserved"]);
    assert!(
        e.findings[0].message.contains(
            "whose in-tree provisioner kubernetes.io/aws-ebs is served by CSI driver ebs.csi.aws.com (CSI migration), and no CSIDriver named ebs.csi.aws.com exists"
        ),
        "{}",
        e.findings[0].message
    );
    assert!(
        e.findings[0]
            .fix
            .starts_with("Install the CSI driver ebs.csi.aws.com")
    );
    let step = e
        .chain
        .iter()
        .find(|s| s.object.kind == "CSIDriver")
        .unwrap();
    assert_eq!(step.object.name, "ebs.csi.aws.com");
    // With it: served.
    let state = format!("{ebs}{}{pending}", csi_driver("ebs.csi.aws.com"));
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    let step = e
        .chain
        .iter()
        .find(|s| s.object.kind == "CSIDriver")
        .unwrap();
    assert_eq!(
        step.fact,
        "installed; serves kubernetes.io/aws-ebs by CSI migration"
    );
    // Every in-tree name of the list maps to its driver.
    for (in_tree, driver) in [
        ("kubernetes.io/gce-pd", "pd.csi.storage.gke.io"),
        ("kubernetes.io/azure-disk", "disk.csi.azure.com"),
        ("kubernetes.io/azure-file", "file.csi.azure.com"),
        ("kubernetes.io/cinder", "cinder.csi.openstack.org"),
        ("kubernetes.io/vsphere-volume", "csi.vsphere.vmware.com"),
        ("kubernetes.io/portworx-volume", "pxd.portworx.com"),
    ] {
        let state = format!(
            "{}{}{pending}",
            class_of("gp2", in_tree),
            csi_driver("efs.csi.aws.com")
        );
        let e = explain_in(&state, "pvc", "data");
        assert_eq!(ids(&e), ["pvc.provisioner-unserved"], "{in_tree}");
        assert!(
            e.findings[0]
                .message
                .contains(&format!("no CSIDriver named {driver} exists"))
        );
        let state = format!(
            "{}{}{pending}",
            class_of("gp2", in_tree),
            csi_driver(driver)
        );
        assert_eq!(
            explain_in(&state, "pvc", "data").verdict,
            Verdict::Clear,
            "{in_tree}"
        );
    }
    // Another in-tree name has no CSI driver to look for.
    let state = format!(
        "{}{}{pending}",
        class_of("gp2", "kubernetes.io/host-path"),
        csi_driver("efs.csi.aws.com")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    assert!(e.chain.iter().all(|s| s.object.kind != "CSIDriver"));
}

#[test]
fn an_external_provisioner_no_csi_driver_can_be_named_after_is_not_looked_up() {
    // k3s's local-path: not a CSI driver, and no CSIDriver can be named with a `/`.
    let local_path = "\n- {apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: local-path}, provisioner: rancher.io/local-path, volumeBindingMode: WaitForFirstConsumer}\n";
    let state = format!(
        "{local_path}{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: local-path}")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.wffc-no-consumer"]);
    assert!(e.chain.iter().all(|s| s.object.kind != "CSIDriver"));
    // A name a CSIDriver could have is looked up, whatever provisions it.
    let state = format!(
        "{}{}{}",
        class_of("hostpath", "hostpath.example.com"),
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: hostpath}")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.provisioner-unserved"]);
    assert!(
        e.findings[0].message.ends_with(
            "If hostpath.example.com is an external provisioner that is not a CSI driver, it has no CSIDriver: check that it is running."
        ),
        "{}",
        e.findings[0].message
    );
}

#[test]
fn static_local_volumes_have_no_provisioner_to_look_for() {
    let local = "\n- {apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: local}, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: WaitForFirstConsumer}\n";
    let state = format!(
        "{local}{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: local}")
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.wffc-no-consumer"]);
    assert!(e.chain.iter().all(|s| s.object.kind != "CSIDriver"));
    // A class that does not exist is its own finding, with no driver to look up.
    let state = format!(
        "{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: fast}")
    );
    assert_eq!(
        ids(&explain_in(&state, "pvc", "data")),
        ["pvc.no-storage-class"]
    );
}

#[test]
fn unreadable_csi_drivers_are_no_finding_and_no_error() {
    // A state file without CSIDrivers does not say which drivers are installed.
    let e = explain_in(&claim("{storageClassName: plain}"), "pvc", "data");
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    assert!(e.chain.iter().all(|s| s.object.kind != "CSIDriver"));
    // Nor does a cache whose CSIDrivers could not be listed (a ClusterRole without them).
    let text = format!(
        "apiVersion: v1\nkind: List\nitems:{BASE}{}{}",
        csi_driver("nfs.csi.k8s.io"),
        claim("{storageClassName: plain}")
    );
    let index = state_file::parse(&text, Path::new("state.yaml"))
        .unwrap()
        .index;
    index
        .csi_drivers
        .set_state(crate::cluster::SyncState::Pending(
            "listing CSIDrivers failed: forbidden".into(),
        ));
    let target = Target::parse("pvc", "data", "app").unwrap();
    let e = explain(&target, &index, &policies::default(), SystemTime::now()).unwrap();
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    assert!(e.chain.iter().all(|s| s.object.kind != "CSIDriver"));
}

#[test]
fn a_bound_claim_does_not_look_its_driver_up() {
    let state = format!(
        "{}{}",
        csi_driver("nfs.csi.k8s.io"),
        "\n- {apiVersion: v1, kind: PersistentVolumeClaim, metadata: {name: data, namespace: app}, spec: {storageClassName: plain, volumeName: pv-src}, status: {phase: Bound}}\n"
    );
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    assert!(e.chain.iter().all(|s| s.object.kind != "CSIDriver"));
}

fn snapshot_of(claim: &str, class: Option<&str>, status: &str) -> String {
    let class = class.map_or_else(String::new, |c| format!(", volumeSnapshotClassName: {c}"));
    format!(
        "\n- apiVersion: snapshot.storage.k8s.io/v1\n  kind: VolumeSnapshot\n  metadata: {{name: snap, namespace: app, uid: u-snap}}\n  spec: {{source: {{persistentVolumeClaimName: {claim}}}{class}}}\n  status: {status}\n"
    )
}

const SNAP_CLASS: &str = r#"
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata: {name: disk-snap, annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}}
  driver: disk.csi.example.com
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata: {name: nfs-snap}
  driver: nfs.csi.example.com
"#;

#[test]
fn snapshot_of_a_claim_that_is_missing_or_unbound() {
    let e = explain_in(&snapshot_of("gone", Some("disk-snap"), "{}"), "vs", "snap");
    assert_eq!(ids(&e), ["snapshot.source-missing"]);
    let unbound = claim("{storageClassName: wffc}");
    let e = explain_in(
        &format!("{unbound}{}", snapshot_of("data", Some("disk-snap"), "{}")),
        "volumesnapshot",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.source-unbound"]);
    assert!(
        e.findings[0]
            .fix
            .contains("storage-admission explain pvc -n app data")
    );
}

#[test]
fn snapshot_with_no_default_class_or_several() {
    let e = explain_in(&snapshot_of("src", None, "{}"), "vs", "snap");
    assert_eq!(ids(&e), ["snapshot.no-default-class"]);
    // The default-snapshot-class rule's message, asked as the audit asks it.
    assert!(
        e.findings[0]
            .message
            .contains("CSI driver disk.csi.example.com has no default"),
        "{}",
        e.findings[0].message
    );
    let two = r#"
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata: {name: a, annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}}
  driver: disk.csi.example.com
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata: {name: b, annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}}
  driver: disk.csi.example.com
"#;
    let e = explain_in(
        &format!("{two}{}", snapshot_of("src", None, "{}")),
        "vs",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.several-default-classes"]);
    // One default: the snapshot controller picks it; nothing blocks.
    let e = explain_in(
        &format!("{SNAP_CLASS}{}", snapshot_of("src", None, "{}")),
        "vs",
        "snap",
    );
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
}

#[test]
fn snapshot_class_of_another_driver_or_missing() {
    let e = explain_in(
        &format!("{SNAP_CLASS}{}", snapshot_of("src", Some("nfs-snap"), "{}")),
        "vs",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.class-driver-mismatch"]);
    assert!(
        e.findings[0]
            .message
            .contains("of CSI driver nfs.csi.example.com")
    );
    let e = explain_in(&snapshot_of("src", Some("nope"), "{}"), "vs", "snap");
    assert_eq!(ids(&e), ["snapshot.class-missing"]);
}

#[test]
fn an_invalid_snapshot_is_the_validation_rules_finding_and_nothing_else() {
    let spec = |spec: &str| {
        format!(
            "\n- apiVersion: snapshot.storage.k8s.io/v1\n  kind: VolumeSnapshot\n  metadata: {{name: snap, namespace: app}}\n  spec: {spec}\n  status: {{}}\n"
        )
    };
    // Both sources (older CRDs let it in): the rule's message, not the missing content.
    let e = explain_in(
        &spec("{source: {persistentVolumeClaimName: src, volumeSnapshotContentName: c-1}}"),
        "vs",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.invalid"]);
    assert!(
        e.findings[0].message.contains("sets both"),
        "{}",
        e.findings[0].message
    );
    assert!(
        e.findings[0]
            .fix
            .contains("delete it (kubectl delete volumesnapshot -n app snap)"),
        "{}",
        e.findings[0].fix
    );
    // An empty class name: not taken for "no class named" (no default-class finding).
    let e = explain_in(
        &format!(
            "{SNAP_CLASS}{}",
            spec("{source: {persistentVolumeClaimName: src}, volumeSnapshotClassName: ''}")
        ),
        "vs",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.invalid"]);
    assert!(
        e.findings[0]
            .message
            .contains("must not be the empty string")
    );
    // A valid snapshot is judged as before (its class is checked, and fine).
    let e = explain_in(
        &format!(
            "{SNAP_CLASS}{}",
            snapshot_of("src", Some("disk-snap"), "{}")
        ),
        "vs",
        "snap",
    );
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
}

fn content(status: &str, bound_to: &str) -> String {
    format!(
        "\n- apiVersion: snapshot.storage.k8s.io/v1\n  kind: VolumeSnapshotContent\n  metadata: {{name: c-1}}\n  spec: {{driver: disk.csi.example.com, deletionPolicy: Delete, source: {{volumeHandle: h}}, volumeSnapshotRef: {{namespace: app, name: {bound_to}}}}}\n  status: {status}\n"
    )
}

#[test]
fn snapshot_whose_content_failed_quotes_the_error() {
    let e = explain_in(
        &format!(
            "{SNAP_CLASS}{}{}",
            snapshot_of(
                "src",
                Some("disk-snap"),
                "{boundVolumeSnapshotContentName: c-1, readyToUse: false}"
            ),
            content(
                "{readyToUse: false, error: {message: \"rpc error: snapshot quota exceeded\"}}",
                "snap"
            )
        ),
        "vs",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.content-error"]);
    assert!(
        e.findings[0].message.ends_with(
            "failed (VolumeSnapshotContent c-1): \"rpc error: snapshot quota exceeded\""
        ),
        "{}",
        e.findings[0].message
    );
}

#[test]
fn snapshot_whose_content_is_missing_or_bound_elsewhere() {
    let bound = "{boundVolumeSnapshotContentName: c-1, readyToUse: false}";
    let e = explain_in(&snapshot_of("src", Some("disk-snap"), bound), "vs", "snap");
    assert_eq!(ids(&e), ["snapshot.content-missing"]);
    let e = explain_in(
        &format!(
            "{}{}",
            snapshot_of("src", Some("disk-snap"), bound),
            content("{readyToUse: true}", "other")
        ),
        "vs",
        "snap",
    );
    assert_eq!(ids(&e), ["snapshot.content-bound-elsewhere"]);
    assert!(
        !e.findings[0].message.contains("same name"),
        "{}",
        e.findings[0].message
    );
}

#[test]
fn a_content_bound_to_a_namesake_says_whether_it_reads_as_this_snapshot() {
    let bound = "{boundVolumeSnapshotContentName: c-1, readyToUse: false}";
    let bound_to = |reference: &str| {
        explain_in(
            &format!(
                "{}\n- apiVersion: snapshot.storage.k8s.io/v1\n  kind: VolumeSnapshotContent\n  metadata: {{name: c-1}}\n  spec: {{driver: disk.csi.example.com, deletionPolicy: Delete, source: {{volumeHandle: h}}, volumeSnapshotRef: {reference}}}\n",
                snapshot_of("src", Some("disk-snap"), bound)
            ),
            "vs",
            "snap",
        )
    };
    // This snapshot's namespace and name, another uid: the snapshot was recreated.
    let e = bound_to("{namespace: app, name: snap, uid: u-old}");
    assert_eq!(ids(&e), ["snapshot.content-bound-elsewhere"]);
    assert!(
        e.findings[0].message.contains(
            "bound to VolumeSnapshot app/snap (another object of the same name): a content"
        ),
        "{}",
        e.findings[0].message
    );
    // Its name in another namespace: plainly another snapshot.
    let e = bound_to("{namespace: shop, name: snap}");
    assert_eq!(ids(&e), ["snapshot.content-bound-elsewhere"]);
    assert!(
        e.findings[0]
            .message
            .contains("bound to VolumeSnapshot shop/snap: a content"),
        "{}",
        e.findings[0].message
    );
}

#[test]
fn a_ready_snapshot_is_clear() {
    let e = explain_in(
        &format!(
            "{SNAP_CLASS}{}{}",
            snapshot_of(
                "src",
                Some("disk-snap"),
                "{boundVolumeSnapshotContentName: c-1, readyToUse: true}"
            ),
            content("{readyToUse: true}", "snap")
        ),
        "vs",
        "snap",
    );
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    assert!(e.summary.contains("ready to use"), "{}", e.summary);
}

#[test]
fn the_age_comes_from_the_creation_timestamp() {
    let text = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: app, creationTimestamp: \"1970-01-01T00:00:00Z\"}\nspec: {storageClassName: fast}\n";
    let index = state_file::parse(text, Path::new("s")).unwrap().index;
    let target = Target::parse("pvc", "data", "app").unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(7_980);
    let e = explain(&target, &index, &policies::default(), now).unwrap();
    assert_eq!(e.age_seconds, Some(7_980));
    assert!(render_text(&e).contains("(created 2h13m ago)"));
}

#[test]
fn an_unloaded_cache_is_an_error_not_a_verdict() {
    let index = crate::cluster::ClusterIndex::unavailable("not synced");
    let target = Target::parse("pvc", "data", "app").unwrap();
    let err = explain(&target, &index, &policies::default(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, ExplainError::Unavailable(_)), "{err}");
}

#[test]
fn every_finding_id_is_listed() {
    // Each id the tests above produced is in the fixed set (the metric's label values).
    for id in [
        "pvc.wffc-no-consumer",
        "pvc.selected-node-gone",
        "pvc.provisioner-unserved",
        "snapshot.content-error",
        "snapshot.content-bound-elsewhere",
    ] {
        assert!(finding_ids().any(|known| known == id), "{id}");
    }
}

/// A Pending pod in `app` with `spec` (YAML flow mapping).
fn pod(name: &str, spec: &str) -> String {
    format!(
        "\n- apiVersion: v1\n  kind: Pod\n  metadata: {{name: {name}, namespace: app}}\n  spec: {spec}\n  status: {{phase: Pending}}\n"
    )
}

const PV_IN_D: &str = r#"
- apiVersion: v1
  kind: PersistentVolume
  metadata: {name: pv-d}
  spec:
    csi: {driver: disk.csi.example.com, volumeHandle: d-1}
    nodeAffinity:
      required:
        nodeSelectorTerms:
        - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [cn-hangzhou-d]}]
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data, namespace: app}
  spec: {storageClassName: disk-d, volumeName: pv-d}
  status: {phase: Bound}
"#;

#[test]
fn pinned_pod_with_a_wffc_claim_is_the_pinned_pods_rules_finding() {
    let state = format!(
        "{}{}",
        claim("{storageClassName: wffc}"),
        pod(
            "web",
            "{nodeName: n1, volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    let e = explain_in(&state, "po", "web");
    // The claim waits for this very pod: its wffc finding is not repeated under it.
    assert_eq!(ids(&e), ["pod.pinned-wffc"]);
    assert!(
        e.findings[0]
            .message
            .contains("Pod app/web is Pending on node n1 (spec.nodeName)"),
        "{}",
        e.findings[0].message
    );
    assert!(e.chain.iter().any(|s| s.object.kind == "StorageClass"));
    // The claim now names the pod that uses it.
    let e = explain_in(&state, "pvc", "data");
    assert_eq!(ids(&e), ["pvc.wffc-no-consumer"]);
    assert!(
        e.findings[0].message.contains("Pod web uses it")
            && e.findings[0]
                .fix
                .contains("storage-admission explain pod -n app web"),
        "{:?}",
        e.findings[0]
    );
}

#[test]
fn pod_whose_bound_volume_no_node_it_may_run_on_reaches() {
    // Scheduled by the scheduler: the rule's validating warning, with the claim's cause.
    let state = format!(
        "{PV_IN_D}{}",
        pod(
            "db",
            "{volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    let e = explain_in(&state, "pod", "db");
    assert_eq!(
        ids(&e),
        [
            "pod.volume-affinity-conflict",
            "pvc.allowed-topologies-no-node"
        ]
    );
    assert!(
        e.findings[0]
            .message
            .contains("node affinity of PersistentVolume pv-d"),
        "{}",
        e.findings[0].message
    );
    // Pinned to a node in zone b: the rule's denial and its own fix.
    let state = format!(
        "{PV_IN_D}{}",
        pod(
            "db",
            "{nodeName: n1, volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    let e = explain_in(&state, "pod", "db");
    assert_eq!(
        ids(&e),
        [
            "pod.volume-affinity-conflict",
            "pvc.allowed-topologies-no-node"
        ]
    );
    assert!(
        e.findings[0]
            .fix
            .starts_with("Remove spec.nodeName from Pod app/db")
    );
    // A node in zone d, and a pod free to go there: nothing blocks.
    let node_d = "\n- {apiVersion: v1, kind: Node, metadata: {name: n3, labels: {topology.kubernetes.io/zone: cn-hangzhou-d}}}\n";
    let state = format!(
        "{PV_IN_D}{node_d}{}",
        pod(
            "db",
            "{volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    assert_eq!(explain_in(&state, "pod", "db").verdict, Verdict::Clear);
    // ... but not one whose nodeSelector keeps it in zone b.
    let state = format!(
        "{PV_IN_D}{node_d}{}",
        pod(
            "db",
            "{nodeSelector: {topology.kubernetes.io/zone: cn-hangzhou-b}, volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    assert_eq!(
        ids(&explain_in(&state, "pod", "db")),
        ["pod.volume-affinity-conflict"]
    );
}

#[test]
fn pod_with_a_missing_or_pending_claim() {
    let e = explain_in(
        &pod(
            "web",
            "{volumes: [{name: d, persistentVolumeClaim: {claimName: nope}}]}",
        ),
        "pod",
        "web",
    );
    assert_eq!(ids(&e), ["pod.claim-missing"]);
    // The claim's own diagnosis shows under the pod.
    let state = format!(
        "{}{}",
        claim("{storageClassName: fast}"),
        pod(
            "web",
            "{volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}"
        )
    );
    assert_eq!(
        ids(&explain_in(&state, "pod", "web")),
        ["pvc.no-storage-class"]
    );
    let e = explain_in("", "pods", "nope");
    assert_eq!(ids(&e), ["pod.not-found"]);
}

#[test]
fn a_running_pod_is_settled() {
    let state = "\n- {apiVersion: v1, kind: Pod, metadata: {name: web, namespace: app}, spec: {}, status: {phase: Running}}\n";
    let e = explain_in(state, "pod", "web");
    assert_eq!(e.verdict, Verdict::Clear);
    assert!(e.summary.contains("is Running"), "{}", e.summary);
}

/// A group snapshot in `app` with `spec` and `status`.
fn vgs(spec: &str, status: &str) -> String {
    format!(
        "\n- apiVersion: groupsnapshot.storage.k8s.io/v1beta2\n  kind: VolumeGroupSnapshot\n  metadata: {{name: g, namespace: app}}\n  spec: {spec}\n  status: {status}\n"
    )
}

const GROUP_CLASS: &str = r#"
- apiVersion: groupsnapshot.storage.k8s.io/v1beta2
  kind: VolumeGroupSnapshotClass
  metadata: {name: gc, annotations: {groupsnapshot.storage.kubernetes.io/is-default-class: "true"}}
  driver: disk.csi.example.com
  deletionPolicy: Delete
"#;

fn labelled_claim(name: &str, spec: &str) -> String {
    format!(
        "\n- apiVersion: v1\n  kind: PersistentVolumeClaim\n  metadata: {{name: {name}, namespace: app, labels: {{app: db}}}}\n  spec: {spec}\n"
    )
}

#[test]
fn group_snapshot_checks_of_the_default_class_rule() {
    let selecting = vgs("{source: {selector: {matchLabels: {app: db}}}}", "{}");
    let e = explain_in(&selecting, "vgs", "g");
    assert_eq!(ids(&e), ["group.nothing-selected"]);
    assert!(
        e.findings[0]
            .message
            .contains("selects no PersistentVolumeClaim")
    );

    let bound = labelled_claim("a", "{storageClassName: plain, volumeName: pv-src}");
    let e = explain_in(&format!("{selecting}{bound}"), "volumegroupsnapshot", "g");
    assert_eq!(ids(&e), ["group.no-default-class"]);
    // A usable default: nothing blocks (the controller takes it from here).
    let e = explain_in(&format!("{selecting}{bound}{GROUP_CLASS}"), "vgs", "g");
    assert_eq!(ids(&e), Vec::<&str>::new());

    let unbound = labelled_claim("b", "{storageClassName: wffc}");
    let e = explain_in(
        &format!("{selecting}{bound}{unbound}{GROUP_CLASS}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.claims-unbound"]);
    assert!(e.findings[0].message.contains("not bound yet"));

    let other = "\n- {apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: nas}, provisioner: nas.example.com}\n";
    let nas = labelled_claim("c", "{storageClassName: nas}");
    let e = explain_in(
        &format!("{selecting}{bound}{other}{nas}{GROUP_CLASS}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.claims-unbound", "group.several-drivers"]);
}

#[test]
fn a_group_selecting_a_volume_that_is_not_csi_says_so_and_how_to_leave_it_out() {
    let selecting = vgs("{source: {selector: {matchLabels: {app: db}}}}", "{}");
    let local = "\n- {apiVersion: v1, kind: PersistentVolume, metadata: {name: pv-local}, spec: {local: {path: /mnt/disks/d0}}}\n";
    let claim = labelled_claim("a", "{storageClassName: plain, volumeName: pv-local}");
    let e = explain_in(
        &format!("{selecting}{local}{claim}{GROUP_CLASS}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.driver-unknown"]);
    let selected = e
        .chain
        .iter()
        .find(|s| s.object.name == "(selected)")
        .unwrap();
    assert_eq!(selected.fact, "a; CSI driver unknown");
    let fix = &e.findings[0].fix;
    assert!(fix.contains("selects only claims of CSI volumes"), "{fix}");
    // Marking a class default cannot help: the driver is what is not known.
    assert!(!fix.contains("default"), "{fix}");
    // Beside a CSI claim, the step names the claims whose driver is unknown.
    let csi = labelled_claim("b", "{storageClassName: plain, volumeName: pv-src}");
    let e = explain_in(
        &format!("{selecting}{local}{claim}{csi}{GROUP_CLASS}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.driver-unknown"]);
    let selected = e
        .chain
        .iter()
        .find(|s| s.object.name == "(selected)")
        .unwrap();
    assert_eq!(
        selected.fact,
        "a, b; CSI driver disk.csi.example.com, unknown for a"
    );
}

#[test]
fn group_snapshot_content_error_missing_and_members() {
    let bound_to = |status: &str| {
        vgs(
            "{source: {selector: {matchLabels: {app: db}}}, volumeGroupSnapshotClassName: gc}",
            status,
        )
    };
    let e = explain_in(
        &bound_to("{boundVolumeGroupSnapshotContentName: gsc}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.content-missing"]);

    let content = |status: &str| {
        format!(
            "\n- apiVersion: groupsnapshot.storage.k8s.io/v1beta2\n  kind: VolumeGroupSnapshotContent\n  metadata: {{name: gsc}}\n  spec: {{driver: disk.csi.example.com, deletionPolicy: Delete, source: {{volumeHandles: [h]}}, volumeGroupSnapshotRef: {{name: g, namespace: app}}}}\n  status: {status}\n"
        )
    };
    let e = explain_in(
        &format!(
            "{}{}",
            bound_to("{boundVolumeGroupSnapshotContentName: gsc}"),
            content("{readyToUse: false, error: {message: 'quota exceeded'}}")
        ),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.content-error"]);
    assert!(e.findings[0].message.contains("\"quota exceeded\""));

    let member = |name: &str, ready: bool| {
        format!(
            "\n- apiVersion: snapshot.storage.k8s.io/v1\n  kind: VolumeSnapshot\n  metadata: {{name: {name}, namespace: app, ownerReferences: [{{apiVersion: groupsnapshot.storage.k8s.io/v1beta2, kind: VolumeGroupSnapshot, name: g, uid: u}}]}}\n  spec: {{source: {{volumeSnapshotContentName: c-{name}}}}}\n  status: {{readyToUse: {ready}}}\n"
        )
    };
    let e = explain_in(
        &format!(
            "{}{}{}{}",
            bound_to("{boundVolumeGroupSnapshotContentName: gsc}"),
            content("{readyToUse: false}"),
            member("m1", true),
            member("m2", false)
        ),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.members-not-ready"]);
    assert!(
        e.findings[0]
            .message
            .contains("member VolumeSnapshot m2, not ready"),
        "{}",
        e.findings[0].message
    );

    let e = explain_in(
        &format!(
            "{}{}",
            bound_to("{boundVolumeGroupSnapshotContentName: gsc, readyToUse: true}"),
            content("{readyToUse: true}")
        ),
        "vgs",
        "g",
    );
    assert_eq!(e.verdict, Verdict::Clear);
    assert!(e.summary.contains("is ready to use"), "{}", e.summary);
}

#[test]
fn group_snapshot_naming_a_class_that_is_missing_or_of_another_driver() {
    let bound = labelled_claim("a", "{storageClassName: plain, volumeName: pv-src}");
    let naming = |class: &str| {
        vgs(
            &format!(
                "{{source: {{selector: {{matchLabels: {{app: db}}}}}}, volumeGroupSnapshotClassName: {class}}}"
            ),
            "{}",
        )
    };
    let e = explain_in(
        &format!("{}{bound}{GROUP_CLASS}", naming("nope")),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.class-missing"]);
    assert!(
        e.findings[0]
            .message
            .contains("names VolumeGroupSnapshotClass nope, which does not exist"),
        "{}",
        e.findings[0].message
    );
    assert!(
        e.findings[0]
            .fix
            .contains("kubectl delete volumegroupsnapshot -n app g")
    );

    let nfs = r#"
- apiVersion: groupsnapshot.storage.k8s.io/v1beta2
  kind: VolumeGroupSnapshotClass
  metadata: {name: nfs-group}
  driver: nfs.csi.example.com
  deletionPolicy: Delete
"#;
    let e = explain_in(&format!("{}{bound}{nfs}", naming("nfs-group")), "vgs", "g");
    assert_eq!(ids(&e), ["group.class-driver-mismatch"]);
    let f = &e.findings[0];
    assert!(
        f.message.contains("of CSI driver nfs.csi.example.com")
            && f.message.contains("disk.csi.example.com (a)"),
        "{}",
        f.message
    );
    assert!(
        f.fix.contains("with a class of disk.csi.example.com"),
        "{}",
        f.fix
    );

    // Claims of the class's driver and of another: one group snapshot per driver (b, not
    // bound yet, is a finding of its own).
    let nas = "\n- {apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: nas}, provisioner: nfs.csi.example.com}\n";
    let other = labelled_claim("b", "{storageClassName: nas}");
    let e = explain_in(
        &format!("{}{bound}{nas}{other}{nfs}", naming("nfs-group")),
        "vgs",
        "g",
    );
    assert_eq!(
        ids(&e),
        ["group.claims-unbound", "group.class-driver-mismatch"]
    );
    assert!(
        e.findings[1]
            .message
            .contains("of disk.csi.example.com (a):"),
        "{}",
        e.findings[1].message
    );
    assert!(e.findings[1].fix.contains("once per CSI driver"));

    // A class of the claims' driver: nothing blocks (no default needed either).
    let plain_class = GROUP_CLASS.replace(
        "annotations: {groupsnapshot.storage.kubernetes.io/is-default-class: \"true\"}",
        "",
    );
    let e = explain_in(&format!("{}{bound}{plain_class}", naming("gc")), "vgs", "g");
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
    let facts: Vec<&str> = e.chain.iter().map(|s| s.fact.as_str()).collect();
    assert!(facts.contains(&"driver disk.csi.example.com"), "{facts:?}");
}

#[test]
fn group_snapshot_naming_a_class_that_selects_nothing_or_claims_not_bound() {
    let plain_class = GROUP_CLASS.replace(
        "annotations: {groupsnapshot.storage.kubernetes.io/is-default-class: \"true\"}",
        "",
    );
    let naming_gc = vgs(
        "{source: {selector: {matchLabels: {app: db}}}, volumeGroupSnapshotClassName: gc}",
        "{}",
    );
    // Nothing labelled app=db: the class is fine, the selection is not.
    let e = explain_in(&format!("{naming_gc}{plain_class}"), "vgs", "g");
    assert_eq!(ids(&e), ["group.nothing-selected"]);
    assert_eq!(e.verdict, Verdict::Blocked);
    let f = &e.findings[0];
    assert_eq!(
        f.message,
        "VolumeGroupSnapshot app/g uses VolumeGroupSnapshotClass gc, but its selector app=db selects no PersistentVolumeClaim in namespace app: the snapshot controller has nothing to snapshot, and the group snapshot cannot be taken."
    );
    assert!(
        f.fix
            .starts_with("Label the claims to snapshot (kubectl get pvc -n app --show-labels)")
            && f.fix
                .contains("kubectl delete volumegroupsnapshot -n app g"),
        "{}",
        f.fix
    );

    // One claim bound, one waiting for its first consumer: the group waits for it.
    let bound = labelled_claim("a", "{storageClassName: plain, volumeName: pv-src}");
    let unbound = labelled_claim("b", "{storageClassName: wffc}");
    let e = explain_in(
        &format!("{naming_gc}{bound}{unbound}{plain_class}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.claims-unbound"]);
    let f = &e.findings[0];
    assert_eq!(
        f.message,
        "VolumeGroupSnapshot app/g: PersistentVolumeClaim b in app, selected by app=db, is not bound yet; the snapshot controller takes no group snapshot until every selected claim is bound."
    );
    assert_eq!(
        f.fix,
        "See why each claim is not bound: storage-admission explain pvc -n app b"
    );
    let also = labelled_claim("c", "{storageClassName: wffc}");
    let e = explain_in(
        &format!("{naming_gc}{bound}{unbound}{also}{plain_class}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.claims-unbound"]);
    assert!(
        e.findings[0]
            .message
            .contains("PersistentVolumeClaims b, c in app, selected by app=db, are not bound yet"),
        "{}",
        e.findings[0].message
    );

    // Unbound claims and a class of another driver are two problems.
    let nfs = plain_class
        .replace("name: gc", "name: nfs-group")
        .replace("disk.csi.example.com", "nfs.csi.example.com");
    let naming_nfs = naming_gc.replace(
        "volumeGroupSnapshotClassName: gc",
        "volumeGroupSnapshotClassName: nfs-group",
    );
    let e = explain_in(&format!("{naming_nfs}{bound}{unbound}{nfs}"), "vgs", "g");
    assert_eq!(
        ids(&e),
        ["group.claims-unbound", "group.class-driver-mismatch"]
    );

    // Every selected claim bound: neither finding, nothing blocks.
    let e = explain_in(&format!("{naming_gc}{bound}{plain_class}"), "vgs", "g");
    assert_eq!(ids(&e), Vec::<&str>::new());
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
}

#[test]
fn an_invalid_group_snapshot_is_the_validation_rules_finding_and_nothing_else() {
    let bound = labelled_claim("a", "{storageClassName: plain, volumeName: pv-src}");
    // Both sources (older CRDs let it in): the rule's message, and no content or class finding.
    let both = vgs(
        "{source: {selector: {matchLabels: {app: db}}, volumeGroupSnapshotContentName: gsc}, volumeGroupSnapshotClassName: nope}",
        "{}",
    );
    let e = explain_in(&format!("{both}{bound}"), "vgs", "g");
    assert_eq!(ids(&e), ["group.invalid"]);
    assert!(
        e.findings[0].message.contains(
            "sets both spec.source.selector and spec.source.volumeGroupSnapshotContentName"
        ),
        "{}",
        e.findings[0].message
    );
    assert!(
        e.findings[0]
            .fix
            .contains("delete it (kubectl delete volumegroupsnapshot -n app g)"),
        "{}",
        e.findings[0].fix
    );
    // Neither source, and an empty class name: one finding per problem.
    let e = explain_in(
        &vgs("{source: {}, volumeGroupSnapshotClassName: ''}", "{}"),
        "vgs",
        "g",
    );
    assert_eq!(ids(&e), ["group.invalid", "group.invalid"]);
    assert!(e.findings[0].message.contains("sets neither"));
    assert!(
        e.findings[1]
            .message
            .contains("must not be the empty string")
    );
    // A valid group: no such finding (the default-class checks run as before).
    let e = explain_in(
        &format!(
            "{}{bound}{GROUP_CLASS}",
            vgs("{source: {selector: {matchLabels: {app: db}}}}", "{}")
        ),
        "vgs",
        "g",
    );
    assert_eq!(e.verdict, Verdict::Clear, "{:?}", e.findings);
}
