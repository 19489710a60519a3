#!/usr/bin/env bash
# The whole check, as CI runs it: machine setup, formatting, lints, tests. The last line
# is always `N passed, N failed, K skipped` (scripts/summarize-tests.sh); the exit code
# is non-zero when anything failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# rustup's cargo may not be on PATH in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

# A check before the tests that fails ends the suite with one failure.
check() {
    echo "test: $*"
    if ! "$@"; then
        echo "test: $* failed"
        echo "0 passed, 1 failed, 0 skipped"
        exit 1
    fi
}

check bash scripts/setup.sh </dev/null
check cargo fmt --all --check
check cargo clippy --all-targets -- -D warnings

log=$(mktemp)
skipped=$(mktemp)
trap 'rm -f "$log" "$skipped"' EXIT
# Tests that leave a case out append a line to this file (tests/it/main.rs, `skip`).
export TSXFER_SKIPPED_FILE=$skipped

echo "test: cargo test --release"
# Two test threads: each integration test uses its own databases on the
# shared source and target clusters (tests/it/cluster.rs).
set +e
cargo test --release -- --test-threads=2 2>&1 | tee "$log"
code=${PIPESTATUS[0]}
set -e
bash scripts/summarize-tests.sh "$log" "$skipped" "$code"
