#!/usr/bin/env bash
# End-to-end throughput on two file shapes: generates N CDRs of each, then times `wc -l`
# and `tollgate ingest` on the same page-cached file, several runs each, and prints per
# shape the medians, the ratio, records/s, MB/s, the phase medians and peak RSS.
#
#   tools/throughput.sh [--records N] [--runs R] [--workers W] [--dir DIR] [--shapes "tidy backlog"]
#
# Shapes (both by default, see tools/gen.rs):
#   tidy     100 000 accounts, 3 000 international prefixes, one month (2026-10) in time
#            order, every row good (workspace DIR/ws, file DIR/cdr-N.csv)
#   backlog  100 000 accounts, a 428-row deck with 12 dated rate changes, start times in
#            random order over 2026-09..2026-11 (a DST switch), mixed offsets, 1.7 % bad
#            rows of every reason, in-file duplicates (DIR/ws-backlog, DIR/cdr-backlog-N.csv)
set -euo pipefail
cd "$(dirname "$0")/.."
records=10000000 runs=5 workers=2 dir="" shapes="tidy backlog"
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --shapes) shapes="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. tools/setup.sh bc
cargo build --release --locked --bins >&2
bin="$CARGO_TARGET_DIR/release"
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/tollgate-throughput.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
. tools/shapes.sh

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }

for shape in $shapes; do
  shape_paths "$shape"
  shape_generate "$shape" "$bin/tollgate-gen"
  sed -i "s/^workers = .*/workers = $workers/" "$ws/tollgate.toml"
  fresh_cache "$cdr"   # page cache
  wc_times=() ing_times=() stats=()
  for i in $(seq 1 "$runs"); do
    t0=$(now); wc -l "$cdr" > /dev/null; t1=$(now)
    wc_times+=("$(echo "$t1 - $t0" | bc -l)")
    rm -rf "$ws/data" "$ws/spool"
    "$bin/tollgate" tariff compile --config "$ws/tollgate.toml" > /dev/null
    t0=$(now)
    out=$("$bin/tollgate" ingest --stats --config "$ws/tollgate.toml" "$cdr")
    t1=$(now)
    ing_times+=("$(echo "$t1 - $t0" | bc -l)")
    stats+=("$(echo "$out" | grep '^{' | tail -1)")
    echo "$shape run $i: wc -l $(printf %.3f "${wc_times[-1]}") s, ingest $(printf %.3f "${ing_times[-1]}") s  ${stats[-1]}" >&2
  done
  wc_med=$(printf '%s\n' "${wc_times[@]}" | median)
  ing_med=$(printf '%s\n' "${ing_times[@]}" | median)
  phase() { printf '%s\n' "${stats[@]}" | grep -o "\"$1\":[0-9.]*" | cut -d: -f2 | median; }
  size=$(stat -c %s "$cdr")
  lines=$(( $(wc -l < "$cdr") - 1 ))
  echo "== $shape"
  echo "file:            $cdr ($lines records, $(echo "scale=1; $size/1000000" | bc) MB)"
  echo "runs:            $runs, workers $workers"
  echo "wc -l median:    $(printf %.3f "$wc_med") s"
  echo "ingest median:   $(printf %.3f "$ing_med") s (whole process: open DB, map, rate, commit with fsync)"
  echo "ratio:           $(echo "scale=1; $ing_med / $wc_med" | bc -l)x wc -l"
  echo "records/s:       $(echo "$lines / $ing_med" | bc)"
  echo "MB/s:            $(echo "scale=1; $size / 1000000 / $ing_med" | bc -l)"
  echo "phase medians:   rate $(phase rate) collect $(phase collect) deltas $(phase deltas) commit $(phase commit) s; peak RSS $(phase peak_rss_mb) MB"
  echo "last run stats:  ${stats[-1]}"
done
