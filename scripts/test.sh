#!/usr/bin/env bash
# The whole check, as CI runs it: machine setup, formatting, lints, tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# rustup's cargo may not be on PATH in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

bash scripts/setup.sh </dev/null

echo "test: cargo fmt --check"
cargo fmt --all --check

echo "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "test: cargo test --release"
# Two test threads: each integration test uses its own databases on the
# shared source and target clusters (tests/it/cluster.rs).
exec cargo test --release -- --test-threads=2
