//! Heap bytes per cached object, measured exactly with a counting allocator: objects shaped
//! like a real cluster's (with managedFields and last-applied-configuration, which the model
//! drops) are converted and inserted one at a time, as the watches do, and the live heap is
//! compared before and after.
//!
//! `cargo bench --bench cache_memory` (N=100000 snapshots by default; 20% as many PVCs and PVs,
//! 5% as many nodes).

use std::alloc::System;

use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use storage_admission::cluster::{ClusterIndex, SyncState};
use storage_admission::model::{
    Node, PersistentVolume, PersistentVolumeClaim, VolumeSnapshot, VolumeSnapshotContent,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn noise() -> Value {
    json!({
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600)},
        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
        "resourceVersion": "123456789", "uid": "6f1c2d3e-0000-4000-8000-000000000000",
        "creationTimestamp": "2026-11-21T22:42:46Z"
    })
}

fn meta(name: String, namespace: Option<String>) -> Value {
    let mut m = noise();
    m["name"] = json!(name);
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn live_bytes(region: &Region<'_, System>) -> isize {
    let s = region.change();
    (s.bytes_allocated as isize - s.bytes_deallocated as isize) + (s.bytes_reallocated)
}

fn measure<T: serde::de::DeserializeOwned>(
    what: &str,
    count: usize,
    make: impl Fn(usize) -> Value,
    insert: impl Fn(T),
) {
    let region = Region::new(GLOBAL);
    for i in 0..count {
        // Convert and insert one object at a time: the JSON is freed before the next, as with
        // watch events, so what remains is the cache.
        let obj: T = serde_json::from_value(make(i)).expect("generated object parses");
        insert(obj);
    }
    let bytes = live_bytes(&region);
    println!(
        "{what:<24} {count:>7} objects {:>8.1} MB {:>6} bytes/object",
        bytes as f64 / 1e6,
        bytes / count as isize
    );
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let index = ClusterIndex::new(SyncState::Synced);
    let total = Region::new(GLOBAL);
    measure::<VolumeSnapshot>(
        "VolumeSnapshot",
        n,
        |i| {
            json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": meta(format!("data-{}-snap-{i}", i % (n / 5)), Some(format!("team-{}", i % 200))),
                "spec": {"source": {"persistentVolumeClaimName": format!("data-{}", i % (n / 5))}, "volumeSnapshotClassName": "default-snapclass"},
                "status": {"boundVolumeSnapshotContentName": format!("snapcontent-{i:08}"), "readyToUse": true, "restoreSize": "20Gi",
                           "creationTime": "2026-11-21T22:42:46Z"}
            })
        },
        |o| index.snapshots.apply(o),
    );
    measure::<VolumeSnapshotContent>(
        "VolumeSnapshotContent",
        n,
        |i| {
            json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
                "metadata": meta(format!("snapcontent-{i:08}"), None),
                "spec": {"deletionPolicy": "Delete", "driver": "diskplugin.csi.alibabacloud.com", "source": {"volumeHandle": format!("d-{:012}", i % (n / 5))},
                         "sourceVolumeMode": "Filesystem", "volumeSnapshotClassName": "default-snapclass",
                         "volumeSnapshotRef": {"name": format!("data-{}-snap-{i}", i % (n / 5)), "namespace": format!("team-{}", i % 200)}},
                "status": {"readyToUse": true, "restoreSize": 21474836480u64, "snapshotHandle": format!("s-{i:012}")}
            })
        },
        |o| index.snapshot_contents.apply(o),
    );
    measure::<PersistentVolumeClaim>(
        "PersistentVolumeClaim",
        n / 5,
        |i| {
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": meta(format!("data-{i}"), Some(format!("team-{}", i % 200))),
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "csi-disk", "volumeName": format!("d-{i:012}"), "volumeMode": "Filesystem",
                         "resources": {"requests": {"storage": "20Gi"}}},
                "status": {"phase": "Bound", "capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"]}
            })
        },
        |o| index.pvcs.apply(o),
    );
    measure::<PersistentVolume>(
        "PersistentVolume",
        n / 5,
        |i| {
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(format!("d-{i:012}"), None),
                "spec": {"csi": {"driver": "diskplugin.csi.alibabacloud.com", "volumeHandle": format!("d-{i:012}"), "fsType": "ext4"},
                         "capacity": {"storage": "20Gi"}, "storageClassName": "csi-disk",
                         "claimRef": {"namespace": format!("team-{}", i % 200), "name": format!("data-{i}")},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["cn-hangzhou-b"]}]}]}}}
            })
        },
        |o| index.pvs.apply(o),
    );
    measure::<Node>(
        "Node",
        n / 20,
        |i| {
            let mut m = meta(format!("node-{i}"), None);
            m["labels"] = json!({
                "kubernetes.io/hostname": format!("node-{i}"), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "ecs.g7.xlarge", "topology.kubernetes.io/region": "cn-hangzhou",
                "topology.kubernetes.io/zone": format!("cn-hangzhou-{}", &"bcdefghijk"[i % 10..i % 10 + 1]), "rack": format!("rack{}", i % 40)
            });
            json!({"apiVersion": "v1", "kind": "Node", "metadata": m, "status": {"capacity": {"cpu": "4"}, "images": [{"names": ["x"], "sizeBytes": 1}]}})
        },
        |o| index.nodes.apply(o),
    );
    let bytes = live_bytes(&total);
    let objects = n * 2 + n / 5 * 2 + n / 20;
    println!(
        "{:<24} {objects:>7} objects {:>8.1} MB {:>6} bytes/object",
        "all, with indexes",
        bytes as f64 / 1e6,
        bytes / objects as isize
    );
    std::hint::black_box(&index);
}
