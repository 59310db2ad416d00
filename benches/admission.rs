//! The in-process cost of a review — parse, decide, build the patch, serialise — for each
//! captured payload, and the rules alone, against cluster views of 10 and 100,000 objects of
//! each kind, to show the cost does not grow with the cluster.
//!
//! The group snapshot default-class path is measured apart, against the group scenario with
//! 10 and 100,000 extra claims (20,000 of them in the group snapshot's own namespace): the
//! claims are found through the label index, so the cost follows the selected claims, not the
//! namespace's or the cluster's.
//!
//! `cargo bench --bench admission` (numbers in the README's Performance section).

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

use storage_admission::admission::{self, Webhook, review};
use storage_admission::cluster::{ClusterIndex, state_file};
use storage_admission::model::{
    Node, PersistentVolume, PersistentVolumeClaim, StorageClass, VolumeGroupSnapshot,
    VolumeSnapshot, VolumeSnapshotClass,
};
use storage_admission::policy::Policy;
use storage_admission::rules::{self, Input, Operation, Phase};

const CASES: &[(&str, Webhook)] = &[
    (
        "mutate-create-volumesnapshot-disk-snapshot",
        Webhook::Mutate,
    ),
    (
        "mutate-create-volumesnapshotclass-default-snapclass",
        Webhook::Validate,
    ),
    (
        "validate-create-persistentvolumeclaim-restore-pvc",
        Webhook::Validate,
    ),
    (
        "mutate-create-storageclass-csi-disk-topology",
        Webhook::Mutate,
    ),
    (
        "mutate-create-storageclass-csi-disk-topology",
        Webhook::Validate,
    ),
    ("mutate-create-storageclass-local-storage", Webhook::Mutate),
    ("mutate-create-node-cn-hangzhou-b-node2", Webhook::Mutate),
];

fn review_bytes(case: &str) -> Vec<u8> {
    if case == storage_admission::dev::SAMPLE_REVIEW_CASE {
        return storage_admission::dev::SAMPLE_REVIEW.as_bytes().to_vec();
    }
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/captured")
            .join(case)
            .join("review.json"),
    )
    .unwrap()
}

/// The demo cluster plus `extra` synthetic snapshots, snapshot classes, PVCs and nodes.
fn cluster(extra: usize) -> ClusterIndex {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dev/state.yaml");
    let index = state_file::load(&demo).unwrap().index;
    for i in 0..extra {
        let ns = format!("ns-{}", i % 100);
        index.snapshots.apply(
            serde_json::from_value::<VolumeSnapshot>(json!({
                "metadata": {"name": format!("snap-{i}"), "namespace": ns},
                "spec": {"source": {"persistentVolumeClaimName": format!("pvc-{i}")}, "volumeSnapshotClassName": "default-snapclass"},
                "status": {"readyToUse": true, "restoreSize": "10Gi", "boundVolumeSnapshotContentName": format!("content-{i}")}
            }))
            .unwrap(),
        );
        index.pvcs.apply(
            serde_json::from_value::<PersistentVolumeClaim>(json!({
                "metadata": {"name": format!("pvc-{i}"), "namespace": ns},
                "spec": {"storageClassName": "csi-disk", "resources": {"requests": {"storage": "10Gi"}}}
            }))
            .unwrap(),
        );
        index.snapshot_classes.apply(
            serde_json::from_value::<VolumeSnapshotClass>(json!({
                "metadata": {"name": format!("class-{i}")}, "driver": format!("driver-{}.example.com", i % 1000)
            }))
            .unwrap(),
        );
        index.nodes.apply(
            serde_json::from_value::<Node>(json!({
                "metadata": {"name": format!("node-{i}"), "labels": {
                    "kubernetes.io/hostname": format!("node-{i}"),
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 50),
                    "topology.kubernetes.io/region": "region-1"
                }}
            }))
            .unwrap(),
        );
    }
    index
}

fn whole_path(c: &mut Criterion) {
    let policy = Policy::builtin();
    for size in [10usize, 100_000] {
        let view = cluster(size);
        let mut group = c.benchmark_group(format!("review/cluster-{size}"));
        for (case, webhook) in CASES {
            let body = review_bytes(case);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(webhook.as_str(), case),
                &body,
                |b, body| {
                    b.iter(|| {
                        admission::handle_now(*webhook, black_box(body), &view, &policy)
                            .unwrap()
                            .body
                    })
                },
            );
        }
        group.finish();
    }
}

fn decode_only(c: &mut Criterion) {
    // The floor every review pays: the envelope parse and the response encode, no rules.
    let mut group = c.benchmark_group("envelope");
    for (case, _) in CASES.iter().take(1) {
        let body = review_bytes(case);
        group.bench_function(*case, |b| {
            b.iter(|| {
                let (api_version, request) = review::decode(black_box(&body)).unwrap();
                review::encode(&api_version, &request.uid, &admission::Verdict::allow())
            })
        });
    }
    group.finish();
}

/// The captured review's `request.object`, parsed into the rule's model.
fn captured_object<T: serde::de::DeserializeOwned>(case: &str) -> T {
    let review: serde_json::Value = serde_json::from_slice(&review_bytes(case)).unwrap();
    serde_json::from_value(review["request"]["object"].clone()).unwrap()
}

/// A rule function on an already parsed object: what the rule itself costs, without the
/// envelope, the object parse and the response.
fn bench_rule<T>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    phase: Phase,
    object: &T,
    check: impl Fn(&Input<'_, T>) -> rules::RuleResult,
) {
    group.bench_function(name, |b| {
        b.iter(|| {
            let input = Input {
                operation: Operation::Create,
                phase,
                object: black_box(object),
                old_object: None,
            };
            check(&input).unwrap()
        })
    });
}

fn rules_alone(c: &mut Criterion) {
    let policy = Policy::builtin();
    let r = &policy.rules;
    let snapshot: VolumeSnapshot = captured_object("mutate-create-volumesnapshot-disk-snapshot");
    let class: VolumeSnapshotClass =
        captured_object("mutate-create-volumesnapshotclass-default-snapclass");
    let pvc: PersistentVolumeClaim =
        captured_object("validate-create-persistentvolumeclaim-restore-pvc");
    // Binds WaitForFirstConsumer already: bindingMode has nothing to do, allowedTopologies
    // checks its zones against the nodes.
    let storage_class: StorageClass =
        captured_object("mutate-create-storageclass-csi-disk-topology");
    // A local-volume class binding Immediate: bindingMode patches it.
    let local_class: StorageClass = captured_object("mutate-create-storageclass-local-storage");
    let node: Node = captured_object("mutate-create-node-cn-hangzhou-b-node2");
    for size in [10usize, 100_000] {
        let view = cluster(size);
        let mut group = c.benchmark_group(format!("rule/cluster-{size}"));
        bench_rule(
            &mut group,
            "defaultSnapshotClass",
            Phase::Mutating,
            &snapshot,
            |i| rules::default_snapshot_class::check(i, &view, &r.default_snapshot_class),
        );
        bench_rule(
            &mut group,
            "snapshotClassDefaults",
            Phase::Validating,
            &class,
            |i| rules::snapshot_class_defaults::check(i, &view, &r.snapshot_class_defaults),
        );
        bench_rule(
            &mut group,
            "restoreReadiness",
            Phase::Validating,
            &pvc,
            |i| rules::restore_readiness::check(i, &view, &r.restore_readiness),
        );
        bench_rule(
            &mut group,
            "bindingMode",
            Phase::Mutating,
            &local_class,
            |i| rules::binding_mode::check(i, &view, &r.binding_mode),
        );
        bench_rule(
            &mut group,
            "allowedTopologies",
            Phase::Validating,
            &storage_class,
            |i| rules::allowed_topologies::check(i, &view, &r.allowed_topologies),
        );
        bench_rule(&mut group, "nodeTopology", Phase::Mutating, &node, |i| {
            rules::node_topology::check(i, &view, &r.node_topology)
        });
        group.finish();
    }
}

/// The captured pinned pod (3.4 KB), and the same pod grown to about 50 KB the way real pods
/// grow (sidecar containers with env, probes and mounts, and their managedFields): the slim
/// Pod model skips all of it, so the two should cost about the same.
fn pod_reviews() -> [(&'static str, Vec<u8>); 2] {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/pods/captured/mutate-create-pod-mysql-pinned/review.json");
    let small = std::fs::read(path).unwrap();
    let mut review: serde_json::Value = serde_json::from_slice(&small).unwrap();
    let object = &mut review["request"]["object"];
    let mut i = 0;
    while serde_json::to_vec(object).unwrap().len() < 50_000 {
        let env: Vec<_> = (0..30)
            .map(|e| json!({"name": format!("SIDECAR_{i}_SETTING_{e}"), "value": format!("value-{e}-of-a-typical-length")}))
            .collect();
        object["spec"]["containers"].as_array_mut().unwrap().push(json!({
            "name": format!("sidecar-{i}"), "image": "registry.example.com/team/sidecar:1.2.3",
            "env": env, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10},
            "volumeMounts": [{"name": "data", "mountPath": format!("/data/{i}")}]
        }));
        object["metadata"]["managedFields"].as_array_mut().unwrap().push(json!({
            "manager": format!("controller-{i}"), "operation": "Update", "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:containers": {format!("k:{{\"name\":\"sidecar-{i}\"}}"): {".": {}, "f:env": {}, "f:image": {}}}}}
        }));
        i += 1;
    }
    [
        ("pod-3KB", small),
        ("pod-50KB", serde_json::to_vec(&review).unwrap()),
    ]
}

/// The pods' cluster (tests/golden/pods/state.yaml) plus `extra` claims bound to zonal PVs,
/// and nodes.
fn pod_cluster(extra: usize) -> ClusterIndex {
    let state = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pods/state.yaml");
    let index = state_file::load(&state).unwrap().index;
    for i in 0..extra {
        let zone = format!("zone-{}", i % 50);
        index.pvcs.apply(
            serde_json::from_value::<PersistentVolumeClaim>(json!({
                "metadata": {"name": format!("pvc-{i}"), "namespace": format!("ns-{}", i % 100)},
                "spec": {"storageClassName": "gs-disk", "volumeName": format!("pv-{i}"), "resources": {"requests": {"storage": "10Gi"}}}
            }))
            .unwrap(),
        );
        index.pvs.apply(
            serde_json::from_value::<PersistentVolume>(json!({
                "metadata": {"name": format!("pv-{i}")},
                "spec": {"storageClassName": "gs-disk", "csi": {"driver": "diskplugin.csi.alibabacloud.com", "volumeHandle": format!("d-{i}")},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}}}
            }))
            .unwrap(),
        );
        index.nodes.apply(
            serde_json::from_value::<Node>(json!({
                "metadata": {"name": format!("node-{i}"), "labels": {
                    "kubernetes.io/hostname": format!("node-{i}"),
                    "topology.kubernetes.io/zone": zone
                }}
            }))
            .unwrap(),
        );
    }
    index
}

/// Each pod review with the built-in policy, and with every rule off (the load test's no-logic
/// baseline, `benches/baseline-policy.yaml`): the difference is what the rules cost, the
/// baseline what reading the review costs any webhook.
fn pods(c: &mut Criterion) {
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline-policy.yaml");
    let policies = [
        ("", Policy::builtin()),
        (
            "no-logic-",
            Policy::parse(&std::fs::read_to_string(baseline).unwrap()).unwrap(),
        ),
    ];
    let reviews = pod_reviews();
    for size in [10usize, 100_000] {
        let view = pod_cluster(size);
        let mut group = c.benchmark_group(format!("pod/cluster-{size}"));
        for (name, body) in &reviews {
            group.throughput(Throughput::Bytes(body.len() as u64));
            for webhook in [Webhook::Mutate, Webhook::Validate] {
                for (prefix, policy) in &policies {
                    group.bench_with_input(
                        BenchmarkId::new(format!("{prefix}{}", webhook.as_str()), name),
                        body,
                        |b, body| {
                            b.iter(|| {
                                admission::handle_now(webhook, black_box(body), &view, policy)
                                    .unwrap()
                                    .body
                            })
                        },
                    );
                }
            }
        }
        group.finish();
    }
}

/// The group scenario (`tests/golden/group/state.yaml`) plus `extra` claims of the disk
/// driver: a fifth in the group snapshot's namespace (`default`) under other `group` labels,
/// the rest in 100 other namespaces labelled `group: db` like the selected ones.
fn group_cluster(extra: usize) -> ClusterIndex {
    let state = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/group/state.yaml");
    let index = state_file::load(&state).unwrap().index;
    for i in 0..extra {
        let (ns, group) = if i < extra / 5 {
            ("default".to_owned(), format!("g-{}", i % 1000))
        } else {
            (format!("ns-{}", i % 100), "db".to_owned())
        };
        index.pvcs.apply(
            serde_json::from_value::<PersistentVolumeClaim>(json!({
                "metadata": {"name": format!("claim-{i}"), "namespace": ns,
                             "labels": {"app": "filler", "group": group}},
                "spec": {"storageClassName": "gs-disk", "resources": {"requests": {"storage": "10Gi"}}}
            }))
            .unwrap(),
        );
    }
    index
}

fn group_snapshot_default_class(c: &mut Criterion) {
    let policy = Policy::builtin();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/group/captured/mutate-create-volumegroupsnapshot-db-group/review.json");
    let body = std::fs::read(path).unwrap();
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let object: VolumeGroupSnapshot =
        serde_json::from_value(review["request"]["object"].clone()).unwrap();
    for size in [10usize, 100_000] {
        let view = group_cluster(size);
        let mut group = c.benchmark_group(format!("group/claims-{size}"));
        group.bench_function("review/defaultGroupSnapshotClass", |b| {
            b.iter(|| {
                admission::handle_now(Webhook::Mutate, black_box(&body), &view, &policy)
                    .unwrap()
                    .body
            })
        });
        bench_rule(
            &mut group,
            "rule/defaultGroupSnapshotClass",
            Phase::Mutating,
            &object,
            |i| {
                let out = rules::default_group_snapshot_class::check(
                    i,
                    &view,
                    &policy.rules.default_group_snapshot_class,
                );
                // Still the two scenario claims, patched: the filler never matches.
                debug_assert!(out.as_ref().is_ok_and(|o| o.mutations.len() == 1));
                out
            },
        );
        group.finish();
    }
}

criterion_group!(
    benches,
    whole_path,
    decode_only,
    rules_alone,
    pods,
    group_snapshot_default_class
);
criterion_main!(benches);
