#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the project's own inputs: every golden AdmissionReview for
# the review-shaped targets, every policy file for the policy target. Files are named by their
# content hash (as libFuzzer does), so running this again adds nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."

seed() {
    local target=$1
    shift
    mkdir -p "fuzz/corpus/$target"
    for f in "$@"; do
        cp "$f" "fuzz/corpus/$target/$(sha1sum "$f" | cut -c1-40)"
    done
}

mapfile -t reviews < <(find tests/golden src/dev -name review.json | sort)
mapfile -t policies < <(find policies tests/golden -name '*.yaml' ! -name state.yaml | sort)

seed review "${reviews[@]}"
# The structured targets read their input through `arbitrary`; the reviews are still useful
# starting bytes, and the targets build their objects from the goldens anyway.
seed object "${reviews[@]}"
seed patch "${reviews[@]}"
seed policy "${policies[@]}"
for t in review object patch policy; do
    echo "$t: $(ls "fuzz/corpus/$t" | wc -l) files"
done
