#!/usr/bin/env bash
# Closes the suite: reads the output of `cargo test` (LOG), the cases the tests said they
# skipped (SKIPPED, one `<test>: <what>` line each, see `skip` in tests/it/main.rs) and
# cargo's exit code (CODE); lists what was not tested, then prints the closing line
#     N passed, N failed, K skipped
# last. Exits non-zero when anything failed (a build error counts as one failure).
# Usage: summarize-tests.sh LOG SKIPPED CODE
set -euo pipefail
log=$1 skipped=$2 code=$3

passed=0 failed=0
while read -r p f; do
    passed=$((passed + p))
    failed=$((failed + f))
done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed;.*/\1 \2/p' "$log")

# A failed cargo with no failing test (a build error, a crashed test binary) is a failure.
if [[ "$code" != 0 && "$failed" == 0 ]]; then
    echo "cargo test exited with code $code without a failing test: counted as one failure"
    failed=1
fi

cases=()
if [[ -s "$skipped" ]]; then
    mapfile -t cases < <(sort -u "$skipped")
fi
mapfile -t ignored < <(sed -nE 's/^test (.+) \.\.\. ignored.*/\1 (ignored)/p' "$log" | sort -u)
cases+=("${ignored[@]}")

if ((${#cases[@]} > 0)); then
    echo
    echo "not tested here (${#cases[@]}):"
    for c in "${cases[@]}"; do
        echo "  - $c"
    done
    echo "(README.md, \"Testing\", says what a machine needs to run them)"
fi
echo "$passed passed, $failed failed, ${#cases[@]} skipped"
[[ "$failed" == 0 ]]
