#!/usr/bin/env bash
# The main job: builds tollgate and runs `tollgate demo` (see README.md).
# Extra arguments go to `tollgate demo` (for example --records 2000000 --dir /tmp/d).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
set --   # tools/setup.sh takes extra package names as arguments: give it none
. tools/setup.sh
cargo build --release --locked --bin tollgate
exec "$CARGO_TARGET_DIR/release/tollgate" demo "${args[@]}"
