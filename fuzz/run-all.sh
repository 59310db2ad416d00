#!/usr/bin/env bash
# Runs every fuzz target, one after another, for SECONDS each (default 1200), seeded by the
# committed corpus plus the golden inputs (a temporary copy, so the seeds are not committed),
# and prints each target's final libFuzzer stats. New inputs land in fuzz/corpus/<target>/;
# minimise afterwards with `cargo fuzz cmin` (see README.md).
#
#   fuzz/run-all.sh                     # all four targets, 20 minutes each
#   SECONDS_EACH=600 fuzz/run-all.sh review policy
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

SECONDS_EACH=${SECONDS_EACH:-1200}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(review object patch policy)
seeds=$(mktemp -d -t storage-admission-fuzz-seeds.XXXXXX)
trap 'rm -rf "$seeds"' EXIT

# The golden inputs, as seed.sh would add them, but outside the committed corpus.
mkdir -p "$seeds"/{review,object,patch,policy}
find tests/golden src/dev -name review.json -print0 | while IFS= read -r -d '' f; do
  for t in review object patch; do cp "$f" "$seeds/$t/$(sha1sum "$f" | cut -c1-40)"; done
done
find policies tests/golden -name '*.yaml' ! -name state.yaml -print0 | while IFS= read -r -d '' f; do
  cp "$f" "$seeds/policy/$(sha1sum "$f" | cut -c1-40)"
done

cargo fuzz build
for t in "${targets[@]}"; do
  echo "=== $t: ${SECONDS_EACH}s"
  cargo fuzz run "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -print_final_stats=1 2>&1 \
    | tee -a "${FUZZ_LOG:-/dev/null}" | grep -E '^(stat::|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Test unit written|INFO: seed corpus|artifact_prefix|error|Error|No such file)' || true
  # A crash stops the run before its time; cargo fuzz exits non-zero and says where the
  # input was written (the grep above keeps that line).
done
