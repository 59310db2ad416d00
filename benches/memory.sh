#!/usr/bin/env bash
# Memory of the cluster view: serves a generated state file of N VolumeSnapshots (each with a
# VolumeSnapshotContent), N/5 PVCs with their PVs, N/20 nodes and a few classes, and reports
# the server's RSS against the same server with an empty cluster, plus bytes per object and
# the peak RSS while the file was loaded.
#
#   benches/memory.sh            # N=100000 by default (100,000 snapshots, 20,000 PVCs, 5,000 nodes)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
cargo build --release --quiet
BIN=target/release/storage-admission
WORK=$(mktemp -d)
# Servers are started from functions; their pids are kept in a file so the trap can stop them.
trap 'kill $(cat "$WORK"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT

python3 - "$N" "$WORK/state.json" <<'PY'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
items = []
annotations = {"kubectl.kubernetes.io/last-applied-configuration": "x" * 600}  # dropped at load, as in a real cluster
for i in range(n // 20):
    items.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}", "annotations": annotations, "labels": {
        "kubernetes.io/hostname": f"node-{i}", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "ecs.g7.xlarge", "topology.kubernetes.io/region": "cn-hangzhou",
        "topology.kubernetes.io/zone": f"cn-hangzhou-{'bcdefghijk'[i % 10]}", "rack": f"rack{i % 40}"}}})
for i in range(n // 5):
    ns = f"team-{i % 200}"
    items.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"data-{i}", "namespace": ns, "annotations": annotations},
                  "spec": {"storageClassName": "csi-disk", "volumeName": f"d-{i:012d}", "volumeMode": "Filesystem",
                           "resources": {"requests": {"storage": "20Gi"}}}, "status": {"phase": "Bound"}})
    items.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"d-{i:012d}", "annotations": annotations},
                  "spec": {"csi": {"driver": "diskplugin.csi.alibabacloud.com", "volumeHandle": f"d-{i:012d}"},
                           "storageClassName": "csi-disk", "claimRef": {"namespace": ns, "name": f"data-{i}"},
                           "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                               {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["cn-hangzhou-b"]}]}]}}}})
for i in range(n):
    ns = f"team-{i % 200}"
    items.append({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                  "metadata": {"name": f"data-{i % (n // 5)}-snap-{i}", "namespace": ns, "annotations": annotations},
                  "spec": {"source": {"persistentVolumeClaimName": f"data-{i % (n // 5)}"}, "volumeSnapshotClassName": "default-snapclass"},
                  "status": {"boundVolumeSnapshotContentName": f"snapcontent-{i:08d}", "readyToUse": True, "restoreSize": "20Gi"}})
    items.append({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
                  "metadata": {"name": f"snapcontent-{i:08d}", "annotations": annotations},
                  "spec": {"deletionPolicy": "Delete", "driver": "diskplugin.csi.alibabacloud.com", "source": {"volumeHandle": f"d-{i % (n // 5):012d}"},
                           "sourceVolumeMode": "Filesystem", "volumeSnapshotClassName": "default-snapclass",
                           "volumeSnapshotRef": {"name": f"data-{i % (n // 5)}-snap-{i}", "namespace": ns}},
                  "status": {"readyToUse": True, "restoreSize": 21474836480, "snapshotHandle": f"s-{i:012d}"}})
items.append({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "csi-disk",
              "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
              "provisioner": "diskplugin.csi.alibabacloud.com", "volumeBindingMode": "WaitForFirstConsumer"})
items.append({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": "default-snapclass",
              "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}}, "driver": "diskplugin.csi.alibabacloud.com", "deletionPolicy": "Delete"})
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(out, "w"))
print(f"{len(items)} objects: {n} snapshots + {n} contents, {n // 5} PVCs + {n // 5} PVs, {n // 20} nodes")
PY
echo '{"apiVersion":"v1","kind":"List","items":[]}' >"$WORK/empty.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

measure() { # name state → prints RSS in kB
  local port admin
  port=$(free_port); admin=$(free_port)
  "$BIN" serve --dev --dev-dir "$WORK/certs-$1" --state "$2" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >/dev/null 2>"$WORK/$1.log" &
  local pid=$!
  echo "$pid" >"$WORK/$1.pid"
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { echo "server $1 exited:" >&2; cat "$WORK/$1.log" >&2; exit 1; }
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
    sleep 0.1
  done
  # Exercise the validating webhook once so lazily initialised paths are counted.
  curl -sf --cacert "$WORK/certs-$1/ca.crt" -H 'Content-Type: application/json' \
    --data @tests/golden/captured/validate-create-persistentvolumeclaim-restore-pvc/review.json \
    "https://localhost:$port/validate" >/dev/null
  awk '/^VmRSS/ {print $2}' "/proc/$pid/status" >"$WORK/$1.rss"
  # The high-water mark: loading the state file is where the peak is.
  awk '/^VmHWM/ {print $2}' "/proc/$pid/status" >"$WORK/$1.peak"
}
measure empty "$WORK/empty.json"
measure full "$WORK/state.json"
empty=$(cat "$WORK/empty.rss")
full=$(cat "$WORK/full.rss")
objects=$((N * 2 + N / 5 * 2 + N / 20))
echo "RSS with an empty cluster: $((empty / 1024)) MB"
echo "RSS with the generated cluster: $((full / 1024)) MB (peak while loading: $(($(cat "$WORK/full.peak") / 1024)) MB)"
echo "per cached object: $(( (full - empty) * 1024 / objects )) bytes (${objects} objects, indexes included)"
