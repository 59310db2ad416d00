#!/usr/bin/env bash
# Where the server's time goes per review, over HTTP/2 and HTTP/1.1: the release binary runs
# under valgrind's callgrind (it counts instructions, so the result does not depend on what
# else the machine is doing) while h2load sends the same review N times on keep-alive
# connections; then every instruction is attributed to the crate whose function executed it
# (self cost), and the totals are printed per review.
#
#   benches/profile.sh                  # REQUESTS=4000 CONNECTIONS=4 STREAMS=10
#   REVIEW=tests/golden/.../review.json HOOK=validate benches/profile.sh
#   POLICY=benches/baseline-policy.yaml benches/profile.sh   # the no-logic baseline, to compare
#   STATE=tests/golden/pods/state.yaml REVIEW=tests/golden/pods/captured/mutate-create-pod-mysql-pinned/review.json \
#     benches/profile.sh                # a Pod review needs the pods' cluster, or its claim is missing
#
# Needs valgrind and h2load (installed from Debian if absent).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-4000}
CONNECTIONS=${CONNECTIONS:-4}
STREAMS=${STREAMS:-10}
REVIEW=${REVIEW:-src/dev/review.json}
HOOK=${HOOK:-mutate}
STATE=${STATE:-src/dev/state.yaml}

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need valgrind valgrind
need h2load nghttp2-client
need callgrind_annotate valgrind

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/storage-admission
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_once() { # name requests h2load-protocol-args...
  local name=$1 requests=$2; shift 2
  local port admin pid
  port=$(free_port); admin=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" \
    "$BIN" --log-format json serve --dev --dev-dir "$WORK/certs-$name" --state "$STATE" ${POLICY:+--policy "$POLICY"} \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "server did not become ready"; cat "$WORK/$name.log"; exit 1; }
  h2load "$@" -n "$requests" -c "$CONNECTIONS" -m "$STREAMS" -d "$REVIEW" \
    -H 'content-type: application/json' "https://127.0.0.1:$port/$HOOK" >"$WORK/$name.h2load" 2>&1
  grep -q "succeeded, 0 failed, 0 errored, 0 timeout" "$WORK/$name.h2load" \
    || { echo "$name: not every request succeeded"; cat "$WORK/$name.h2load"; exit 1; }
  kill -TERM "$pid"; wait "$pid" || true
  callgrind_annotate --auto=no --threshold=100 --inclusive=no "$WORK/$name.cg" >"$WORK/$name.txt"
}

# Two runs per protocol, N and 3N reviews: their difference is the cost of 2N reviews alone
# (startup and idle work cancel out).
profile() { # name h2load-protocol-args...
  local name=$1; shift
  run_once "$name-short" "$REQUESTS" "$@"
  run_once "$name-long" $((REQUESTS * 3)) "$@"
  echo "== $name ($HOOK, $(basename "$(dirname "$REVIEW")")): instructions per review, by part"
  python3 benches/profile_crates.py "$WORK/$name-short.txt" "$REQUESTS" "$WORK/$name-long.txt" $((REQUESTS * 3))
}

profile http2
profile http1 --h1
