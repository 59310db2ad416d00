#!/usr/bin/env bash
# Load test over TLS with keep-alive, HTTP/1.1 (wrk, as the API server talks) and HTTP/2
# (h2load), against the release binary with the default policy and, in the same run, the
# same binary with every rule off (the no-logic baseline). Every figure is reported next to
# the baseline's: this machine is shared and noisy, so ratios are what compare across runs.
# Each case runs ROUNDS short rounds, rules and baseline back to back and taking turns to go
# first, so a slow spell of the machine falls on both rather than on one side of the ratio
# (rounds of a few seconds vary by ±10–20% here; the ratio of their means is what is read).
# Twenty rounds: single rounds' ratios spread by about 10 points here, so the mean of ten still
# moved by 3–6 points from run to run on one binary (docs/performance.md, session 9), as much
# as the distances the ratios are read for; twenty make that about 1.4 times smaller. A full
# run takes about 40 minutes; ROUNDS=10 halves it for a rougher look.
# Both log JSON at `info`, as webhook-config/'s Deployment does (a patched or denied review
# writes one line).
#
#   benches/load.sh                 # DURATION=3s ROUNDS=20 CONNECTIONS=32 THREADS=2 RATE=2000
#   BIN=path/to/storage-admission benches/load.sh   # a binary already built
#   ONLY=pods benches/load.sh       # only the reviews whose line in CASES contains "pods"
#
# Prints requests/s (the mean over the rounds) and latency (HTTP/1.1: p50 the mean of the
# rounds', p99 and p99.9 the worst round's; HTTP/2: over every request of every round) per
# review and protocol, the baseline's on the line below (a pause of the machine shows in both
# servers' tails, a pause of one server in its own only), the open-loop p99 at RATE reviews/s
# (h2load --rps), and each server's idle and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-20}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
RATE=${RATE:-2000}

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need h2load nghttp2-client

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/storage-admission
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A port the kernel says is free now (another process could take it before the server binds;
# the server then fails to start and says so).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # name port state policy-args...
  local name=$1 port=$2 state=$3 admin; shift 3
  admin=$(free_port)
  "$BIN" --log-format json serve --dev --dev-dir "$WORK/$name-certs" --state "$state" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "server $name did not become ready"; cat "$WORK/$name.log"; exit 1
}
# p50/p99/p99.9 in ms from an h2load --log-file (third column: request duration in µs).
pct() {
  awk '{print $3}' "$1" | sort -n | awk '{v[NR]=$1} END {
    if (NR == 0) { print "no requests"; exit }
    printf "p50=%.3fms p99=%.3fms p99.9=%.3fms", v[int(NR*0.5)+0]/1000, v[int(NR*0.99)+0]/1000, v[int(NR*0.999)+0]/1000 }'
}
# The rounds of one side of a case: wrk's lines (rps=… p50=…ms p99=…ms p99.9=…ms errors=…)
# and h2load's summaries ("finished in …, N req/s, …").
h1_rps() { awk -F'[ =]' '{s += $2} END {printf "%d", NR ? s / NR : 0}' "$1"; }
h1_summary() {
  awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] + 0 }
         rps += v["rps"]; p50 += v["p50"]; if (v["p99"] > p99) p99 = v["p99"]
         if (v["p99.9"] > p999) p999 = v["p99.9"]; errors += v["errors"] }
       END { printf "rps=%d p50=%.3fms p99=%.3fms p99.9=%.3fms errors=%d", rps / NR, p50 / NR, p99, p999, errors }' "$1"
}
h2_rps() { awk '/^finished in/ {s += $4; n++} END {printf "%d", n ? s / n : 0}' "$1"; }
# Each round's ratio (rules / baseline, %), from two files of one rate per line.
rounds() { paste -d' ' "$1" "$2" | awk '{sep = (NR > 1) ? "," : ""; ratio = ($2 > 0) ? 100 * $1 / $2 : 0; printf "%s%d", sep, ratio}'; }
rss() { awk '/^VmRSS/ {print $2/1024 " MB"}' "/proc/$(cat "$WORK/$1.pid")/status"; }
hwm() { awk '/^VmHWM/ {print $2/1024 " MB"}' "/proc/$(cat "$WORK/$1.pid")/status"; }

# Two clusters: the demo cluster for the storage reviews, and the group-and-pods scenario
# (tests/golden/pods/state.yaml: its nodes, classes and claims) for the Pod reviews. Each has
# a server with the rules and a no-logic baseline.
declare -A PORTS
for state in dev pods; do
  file=src/dev/state.yaml; [ $state = pods ] && file=tests/golden/pods/state.yaml
  PORTS[rules-$state]=$(free_port); PORTS[baseline-$state]=$(free_port)
  start "rules-$state" "${PORTS[rules-$state]}" "$file"
  start "baseline-$state" "${PORTS[baseline-$state]}" "$file" --policy benches/baseline-policy.yaml
done
PORT=${PORTS[rules-dev]}
BASE_PORT=${PORTS[baseline-dev]}
echo "idle RSS: rules $(rss rules-dev), baseline $(rss baseline-dev)"

cat >"$WORK/post.lua" <<'LUA'
local f = io.open(os.getenv("REVIEW"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("rps=%.0f p50=%.3fms p99=%.3fms p99.9=%.3fms errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

# webhook, state, review (a folder under tests/golden/, or a file).
CASES=(
  "mutate dev src/dev/review.json"
  "validate dev captured/validate-create-persistentvolumeclaim-restore-pvc"
  "validate dev captured/mutate-create-volumesnapshotclass-default-snapclass"
  "mutate dev captured/mutate-create-storageclass-csi-disk-topology"
  "validate dev captured/mutate-create-storageclass-csi-disk-topology"
  "mutate dev captured/mutate-create-node-cn-hangzhou-b-node2"
  "mutate pods pods/captured/mutate-create-pod-mysql-pinned"
  "validate pods pods/validated-after-mutation"
  "validate pods pods/bound-pv-other-zone-unpinned"
)

printf '\n%-9s %-52s %-6s %-60s %s\n' webhook review proto "rules" "baseline / ratio (each round's)"
for entry in "${CASES[@]}"; do
  [[ "$entry" == *"${ONLY:-}"* ]] || continue
  read -r hook state review <<<"$entry"
  file="tests/golden/$review/review.json"; [ -f "$review" ] && file=$review
  rm -f "$WORK"/h1-* "$WORK"/h2-* "$WORK"/h2log-*
  for round in $(seq "$ROUNDS"); do
    # Rules and baseline back to back for each protocol, the first of the pair changing each
    # time (rules, baseline | baseline, rules, then the other way round): a machine that
    # speeds up or slows down across a round favours neither side.
    first=rules second=baseline
    [ $((round % 2)) = 0 ] && first=baseline second=rules
    for target in $first $second; do
      port=${PORTS[$target-$state]}
      REVIEW=$file wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/post.lua" \
        "https://127.0.0.1:$port/$hook" | tail -1 >>"$WORK/h1-$target"
    done
    for target in $second $first; do
      port=${PORTS[$target-$state]}
      h2load -D "${DURATION%s}" -c "$CONNECTIONS" -m 10 -t "$THREADS" -d "$file" --log-file="$WORK/h2log-$target-$round" \
        -H 'content-type: application/json' "https://127.0.0.1:$port/$hook" >>"$WORK/h2-$target" 2>&1 || true
    done
  done
  for target in rules baseline; do
    cat "$WORK"/h2log-$target-* >"$WORK/h2log-$target"
  done
  for target in rules baseline; do
    sed 's/^rps=\([0-9]*\).*/\1/' "$WORK/h1-$target" >"$WORK/h1-rates-$target"
    awk '/^finished in/ {print int($4)}' "$WORK/h2-$target" >"$WORK/h2-rates-$target"
  done
  r=$(h1_rps "$WORK/h1-rules"); b=$(h1_rps "$WORK/h1-baseline")
  printf '%-9s %-52s %-6s %-60s %s / %s%% (rounds %s)\n' "$hook" "$review" h1 "$(h1_summary "$WORK/h1-rules")" "$b" \
    "$((100 * r / (b > 0 ? b : 1)))" "$(rounds "$WORK/h1-rates-rules" "$WORK/h1-rates-baseline")"
  printf '%-9s %-52s %-6s %s\n' "" "  baseline" h1 "$(h1_summary "$WORK/h1-baseline")"
  r=$(h2_rps "$WORK/h2-rules"); b=$(h2_rps "$WORK/h2-baseline")
  errors=$(awk '/^requests:/ {e += $12} END {print e + 0}' "$WORK/h2-rules")
  printf '%-9s %-52s %-6s %-60s %s / %s%% (rounds %s)\n' "$hook" "$review" h2 "rps=$r $(pct "$WORK/h2log-rules") errors=$errors" "$b" \
    "$((100 * r / (b > 0 ? b : 1)))" "$(rounds "$WORK/h2-rates-rules" "$WORK/h2-rates-baseline")"
  errors=$(awk '/^requests:/ {e += $12} END {print e + 0}' "$WORK/h2-baseline")
  printf '%-9s %-52s %-6s %s\n' "" "  baseline" h2 "rps=$b $(pct "$WORK/h2log-baseline") errors=$errors"
done

echo
echo "open loop: $RATE reviews/s for $DURATION over HTTP/2 (h2load --rps), mutate VolumeSnapshot"
file="src/dev/review.json"
for target in rules baseline; do
  port=$PORT; [ $target = baseline ] && port=$BASE_PORT
  secs=${DURATION%s}
  h2load -n $((RATE * secs)) -c 10 --rps $((RATE / 10)) -t "$THREADS" -d "$file" --log-file="$WORK/openlog-$target" \
    -H 'content-type: application/json' "https://127.0.0.1:$port/mutate" >"$WORK/open-$target" 2>&1 || true
  echo "$target: $(grep -E '^requests:' "$WORK/open-$target" | cut -d, -f4-5) | $(pct "$WORK/openlog-$target")"
done
echo
echo "peak RSS: rules $(hwm rules-dev), baseline $(hwm baseline-dev)"
