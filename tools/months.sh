#!/usr/bin/env bash
# Peak RSS of `tollgate ingest` against the number of months a file spans: per months
# value, a backlog-shaped file of N records (start times in random order over that many
# months, see tools/shapes.sh) is ingested into the backlog workspace, and the median
# peak RSS is printed beside the file's size and what is left beyond it.
#
#   tools/months.sh [--records N] [--months "1 3 6"] [--runs R] [--dir DIR] [--bin TOLLGATE]
#
# Defaults: 3 000 000 records, months 1 3 6, 3 runs, a temporary directory under /var/tmp
# (with --dir the workspace and files are kept and reused), the tollgate just built (or
# --bin, e.g. another build to compare; then nothing is built but a missing tollgate-gen). Peak RSS is `ingest --stats`' peak_rss_mb; the
# mapped file is read in full, so its pages are part of it.
set -euo pipefail
cd "$(dirname "$0")/.."
records=3000000 months="1 3 6" runs=3 dir="" tg=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --months) months="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --bin) tg="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. tools/setup.sh bc
bin="$CARGO_TARGET_DIR/release"
# With --bin, nothing is built unless tollgate-gen is missing.
if [ -z "$tg" ] || [ ! -x "$bin/tollgate-gen" ]; then cargo build --release --locked --bins >&2; fi
tg="${tg:-$bin/tollgate}"
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/tollgate-months.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
. tools/shapes.sh
shape_generate_workspace backlog "$bin/tollgate-gen"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

echo "binary: $tg; $records backlog records per file, $runs runs, median peak RSS"
printf '%-7s %10s %14s %14s\n' months "file MB" "peak RSS MB" "beyond file MB"
for m in $months; do
  f="$dir/cdr-backlog-$records-m$m.csv"
  [ -f "$f" ] || "$bin/tollgate-gen" cdrs --out "$f" --records "$records" --month 2026-06 \
    --shape backlog --months "$m" --accounts 100000 --prefixes 400 --seed 7 --tag K > /dev/null
  fresh_cache "$f"   # page cache
  peaks=()
  for _ in $(seq 1 "$runs"); do
    rm -rf "$ws/data" "$ws/spool"
    "$tg" tariff compile --config "$ws/tollgate.toml" > /dev/null
    peaks+=("$("$tg" ingest --stats --config "$ws/tollgate.toml" "$f" | grep -o '"peak_rss_mb":[0-9.]*' | cut -d: -f2)")
  done
  peak=$(printf '%s\n' "${peaks[@]}" | median)
  size=$(echo "scale=1; $(stat -c %s "$f") / 1000000" | bc)
  printf '%-7s %10s %14.0f %14.0f\n' "$m" "$size" "$peak" "$(echo "$peak - $size" | bc)"
done
