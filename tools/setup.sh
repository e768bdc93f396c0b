#!/usr/bin/env bash
# Installs what building and testing tollgate needs on a fresh Debian machine.
# Idempotent: only missing packages are installed, and Rust only when no cargo is found.
# Sourced by tools/test.sh and tools/demo.sh.
#
# Rust comes from rustup (stable, minimal profile, plus rustfmt and clippy): Debian 12's
# own rustc is older than Cargo.toml's rust-version (1.92), so it is never installed.
# There is deliberately no rust-toolchain file: a machine with a recent toolchain keeps it.
set -euo pipefail

RUSTUP_CMD="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi
have_cargo=0
if command -v cargo >/dev/null 2>&1; then have_cargo=1; fi

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
extra=()
# rustup's installer is fetched with curl over https.
if [ "$have_cargo" -eq 0 ]; then extra+=(curl ca-certificates); fi
for pkg in libclang-dev clang pkg-config build-essential ${extra[@]+"${extra[@]}"} "$@"; do
  have_pkg "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$have_cargo" -eq 0 ]; then
  echo "setup: no cargo found; installing the stable Rust toolchain with rustup" >&2
  if curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --default-toolchain stable >&2 \
    && . "$HOME/.cargo/env" \
    && rustup component add rustfmt clippy >&2 \
    && command -v cargo >/dev/null 2>&1; then
    echo "setup: installed $(rustc --version)" >&2
  else
    echo "setup: could not install Rust (no network?). Run this, then start again:" >&2
    echo "  $RUSTUP_CMD && . \"\$HOME/.cargo/env\" && rustup component add rustfmt clippy" >&2
    exit 1
  fi
fi
# One persistent target directory, so RocksDB's C++ is compiled once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tollgate-target}"
