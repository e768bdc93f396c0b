#!/usr/bin/env bash
# Sustained ingest: --files backlog-shaped files of --records records (distinct record
# ids, one tag per file) ingested back to back by one `tollgate ingest` into a new store,
# with the cross-file check off (`dedup_window_days = 0`) and on (the default, 62),
# interleaved per round. Prints, per round and mode, the wall time of the whole process
# and each file's time inside it (`seconds` of `--stats`), then the medians and the ratio
# of the mean file time to `wc -l` of one file. Unlike tools/ab.sh (one file, new store)
# this shows what grows with the store: the filter and index of the ids held so far, and
# RocksDB's background compactions of what earlier files wrote.
#
#   tools/sustained.sh --dir /var/tmp/tp [--files 6] [--records 10000000] [--runs 2]
set -euo pipefail
cd "$(dirname "$0")/.."
files=6 records=10000000 runs=2 dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --files) files="$2"; shift 2 ;;
    --records) records="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "usage: tools/sustained.sh --dir DIR [--files N] [--records N] [--runs R]" >&2; exit 2; }
. tools/setup.sh bc
mkdir -p "$dir"
. tools/shapes.sh
bench_bins
shape_generate_workspace backlog "$bin/tollgate-gen"
shape_paths backlog
list=()
for i in $(seq 1 "$files"); do
  f="$dir/sustained-$records-$i.csv"
  [ -f "$f" ] || "$bin/tollgate-gen" cdrs --out "$f" --records "$records" --month 2026-09 \
    --shape backlog --months 3 --accounts 100000 --prefixes 400 --seed $((500 + i)) --tag "S$i" > /dev/null
  list+=("$f")
done
for mode in on off; do
  w="$dir/ws-sustained-$mode"
  if [ ! -f "$w/tollgate.toml" ]; then
    mkdir -p "$w"
    cp -a "$ws/tollgate.toml" "$ws/accounts.csv" "$ws/tariffs" "$w/"
    sed -i 's/^dedup_window_days = .*//' "$w/tollgate.toml"
    [ $mode = on ] || sed -i '0,/^\[/s//dedup_window_days = 0\n\n[/' "$w/tollgate.toml"
  fi
done
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$runs"); do
  fresh_cache "${list[0]}"
  /usr/bin/time -f %e -o "$out/t" wc -l "${list[0]}" > /dev/null
  cat "$out/t" >> "$out/wc"
  for mode in off on; do
    w="$dir/ws-sustained-$mode"
    rm -rf "$w/data" "$w/spool"
    for f in "${list[@]}"; do cat "$f" > /dev/null; done
    sync
    /usr/bin/time -f %e -o "$out/t" "$bin/tollgate" ingest --stats --config "$w/tollgate.toml" \
      "${list[@]}" > "$out/s" 2> /dev/null
    cat "$out/t" >> "$out/wall.$mode"
    per=$(grep -o '"seconds":[0-9.]*' "$out/s" | cut -d: -f2)
    echo "$per" | awk '{s += $1} END {print s / NR}' >> "$out/mean.$mode"
    echo "run $r $mode: wall $(cat "$out/t") s; files: $(echo "$per" | xargs printf '%.2f ')"
  done
done
median() { sort -n "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
w="$(median "$out/wc")"
echo "== $files backlog files of $records records, one process, new store; wc -l of one file: median $w s"
for mode in off on; do
  m="$(median "$out/mean.$mode")"
  echo "check $mode: wall $(median "$out/wall.$mode") s; mean file $(printf '%.2f' "$m") s = $(echo "scale=1; $m / $w" | bc)x wc -l"
done
