# The workspaces and files of the two throughput shapes (sourced by tools/throughput.sh,
# tools/ab.sh and the other benches). Needs $dir and $records.

# Sets $bin, the directory of the tollgate and tollgate-gen binaries: $TOLLGATE_BIN_DIR
# when set (binaries built already, e.g. a private copy while other builds share the
# target directory), else a release build here.
bench_bins() {
  if [ -n "${TOLLGATE_BIN_DIR:-}" ]; then
    bin="$TOLLGATE_BIN_DIR"
  else
    cargo build --release --locked --bins >&2
    bin="$CARGO_TARGET_DIR/release"
  fi
}

# Sets $ws and $cdr of a shape.
shape_paths() {
  case "$1" in
    tidy) ws="$dir/ws" cdr="$dir/cdr-$records.csv" ;;
    backlog) ws="$dir/ws-backlog" cdr="$dir/cdr-backlog-$records.csv" ;;
    *) echo "unknown shape $1 (tidy, backlog)" >&2; return 2 ;;
  esac
}

# Generates the workspace of a shape when missing, with tollgate-gen at $2.
shape_generate_workspace() {
  local gen="$2"
  shape_paths "$1"
  case "$1" in
    tidy)
      [ -f "$ws/tollgate.toml" ] || "$gen" workspace "$ws" --accounts 100000 --prefixes 3000 --seed 7 >&2 ;;
    backlog)
      [ -f "$ws/tollgate.toml" ] || "$gen" workspace "$ws" --accounts 100000 --prefixes 400 \
        --rate-changes 12 --seed 7 >&2 ;;
  esac
}

# Generates the workspace and file of a shape when missing, with tollgate-gen at $2.
shape_generate() {
  local gen="$2"
  shape_generate_workspace "$1" "$gen"
  case "$1" in
    tidy)
      [ -f "$cdr" ] || "$gen" cdrs --out "$cdr" --records "$records" --month 2026-10 \
        --accounts 100000 --prefixes 3000 --seed 7 --tag T >&2 ;;
    backlog)
      [ -f "$cdr" ] || "$gen" cdrs --out "$cdr" --records "$records" --month 2026-09 \
        --shape backlog --months 3 --accounts 100000 --prefixes 400 --seed 7 --tag K >&2 ;;
  esac
}

# Reads file $1 into the page cache afresh: its cached pages are dropped first (GNU dd's
# nocache request for the whole file), then it is read once. The time of `wc -l` on a
# cached file depends on how its pages sit in the cache: on this VM the same 779 MB
# file read 0.14-0.18 s while cached for hours (after other processes' memory came and
# went) and 0.10 s once read again, while the ingest's time did not move. Reading it
# afresh before each round keeps the baseline of the ratios steady.
fresh_cache() {
  dd if="$1" iflag=nocache count=0 status=none
  cat "$1" > /dev/null
}
