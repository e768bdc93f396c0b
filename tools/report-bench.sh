#!/usr/bin/env bash
# Times `tollgate report` over N rated records (default 10 M; 100 000 accounts, one month,
# a few thousand deck prefixes): first while the period is open (groups from the unbilled
# usage), then after closing it (groups from the invoices). Prints the wall time of each
# report (median of --runs).
#
#   tools/report-bench.sh [--records N] [--runs R] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
records=10000000 runs=3 dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. tools/setup.sh bc
cargo build --release --locked --bins >&2
bin="$CARGO_TARGET_DIR/release"
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/tollgate-report-bench.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
ws="$dir/ws"
rm -rf "$ws"
"$bin/tollgate-gen" workspace "$ws" --accounts 100000 --prefixes 3000 --seed 7 >&2
cdr="$dir/cdr-$records.csv"
if [ ! -f "$cdr" ]; then
  "$bin/tollgate-gen" cdrs --out "$cdr" --records "$records" --month 2026-10 \
    --accounts 100000 --prefixes 3000 --seed 7 --tag T >&2
fi
"$bin/tollgate" ingest --config "$ws/tollgate.toml" "$cdr" >&2

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
bench() {
  local label="$1"; shift
  local times=()
  for _ in $(seq 1 "$runs"); do
    local t0 t1
    t0=$(now)
    "$bin/tollgate" report "$@" --config "$ws/tollgate.toml" --period 2026-10 > "$dir/out"
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%-44s %6.2f s  (%s bytes of output)\n' "$label $*" \
    "$(printf '%s\n' "${times[@]}" | median)" "$(stat -c %s "$dir/out")"
}
rated=$("$bin/tollgate" report usage --config "$ws/tollgate.toml" --period 2026-10 --format json \
  | grep -m1 '"records"' | tr -dc 0-9)
echo "records rated in 2026-10: $rated (of $records CDRs); median of $runs runs each"
bench "open:  " usage --by day --format json
bench "open:  " revenue --by destination --format csv
bench "open:  " revenue --by account --format csv
bench "open:  " usage --by plan --format html
"$bin/tollgate" cycle close --config "$ws/tollgate.toml" --period 2026-10 --issue-date 2026-11-02 >&2
bench "closed:" usage --by day --format json
bench "closed:" revenue --by destination --format csv
bench "closed:" revenue --by account --format html
