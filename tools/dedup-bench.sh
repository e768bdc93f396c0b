#!/usr/bin/env bash
# The cross-file duplicate index at size: fills the index with --held record ids from
# earlier files (backlog-shaped files of --records records, distinct ids), then times,
# interleaved per round, `wc -l` on the backlog file and three ingests of it: without the
# check (`dedup_window_days = 0`) into a new store (`off`), without the check into a copy
# of the filled store (`held-off`: the same store history, so the same background
# compactions, as `on`), and against the full index (62) in a copy of the filled store
# (`on`). Into each copy a one-record file is ingested first, untimed: it replays the
# copy's write-ahead log. `on` less `held-off` is what the index itself costs. Prints
# medians, ratios to `wc -l`, the phases, the filter's memory per id held and its
# rebuild at start.
#
#   tools/dedup-bench.sh --dir /var/tmp/tp [--records 10000000] [--held 100000000] [--runs 3]
#
# `seconds` is the file's time inside the process (what a running daemon spends on
# it); `wall` adds process start, where a one-shot `tollgate ingest` reads the filter
# back from the snapshot the warm-up kept (the warm-up read it from the index), and exit,
# where it keeps it again. Needs ~1.2 GB of disk per 100 M ids held, besides the backlog file.
set -euo pipefail
cd "$(dirname "$0")/.."
records=10000000 held=100000000 runs=3 dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --held) held="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "usage: tools/dedup-bench.sh --dir DIR [--records N] [--held N] [--runs R]" >&2; exit 2; }
. tools/setup.sh bc
mkdir -p "$dir"
. tools/shapes.sh
bench_bins
shape_generate backlog "$bin/tollgate-gen"
shape_paths backlog
cdr_file="$cdr" base_ws="$ws"

# A workspace like the backlog one, with the index on; filled once (kept in DIR).
idx="$dir/ws-dedup-$held"
if [ ! -f "$idx/data.held/ids" ]; then
  rm -rf "$idx"
  mkdir -p "$idx"
  cp -a "$base_ws/tollgate.toml" "$base_ws/accounts.csv" "$base_ws/tariffs" "$idx/"
  sed -i 's/^dedup_window_days = .*//' "$idx/tollgate.toml"
  sed -i '0,/^\[/s//dedup_window_days = 62\n\n[/' "$idx/tollgate.toml"
  "$bin/tollgate" tariff compile --config "$idx/tollgate.toml" > /dev/null
  n=0 i=0
  while [ "$n" -lt "$held" ]; do
    i=$((i + 1))
    f="$dir/held-$i.csv"
    "$bin/tollgate-gen" cdrs --out "$f" --records "$records" --month 2026-09 --shape backlog \
      --months 3 --accounts 100000 --prefixes 400 --seed $((100 + i)) --tag "H$i" > /dev/null
    out=$("$bin/tollgate" ingest --config "$idx/tollgate.toml" "$f" 2> /dev/null)
    rated=$(echo "$out" | grep -o '[0-9]* rated' | cut -d' ' -f1)
    n=$((n + rated))
    rm -f "$f" "$idx/spool/done/held-$i.csv" "$idx/spool/rejects/held-$i.csv.rejects.csv"
    echo "filled: file $i, $n ids held" >&2
  done
  mv "$idx/data" "$idx/data.held"
  echo "$n" > "$idx/data.held/ids"
fi
ids=$(cat "$idx/data.held/ids")
off="$dir/ws-dedup-off"
if [ ! -f "$off/tollgate.toml" ]; then
  mkdir -p "$off"
  cp -a "$idx/tollgate.toml" "$idx/accounts.csv" "$idx/tariffs" "$off/"
  sed -i 's/^dedup_window_days = .*/dedup_window_days = 0/' "$off/tollgate.toml"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$runs"); do
  fresh_cache "$cdr_file"
  /usr/bin/time -f %e -o "$out/t" wc -l "$cdr_file" > /dev/null
  cat "$out/t" >> "$out/wc"
  for mode in off held-off on; do
    if [ $mode = off ]; then
      w="$off"; rm -rf "$w/data" "$w/spool"; "$bin/tollgate" tariff compile --config "$w/tollgate.toml" > /dev/null
    else
      if [ $mode = on ]; then w="$idx"; else w="$off"; fi
      rm -rf "$w/data" "$w/spool"; cp -a "$idx/data.held" "$w/data"
      rm -f "$w/data/ids" "$w/data/dedup-filter.snapshot"
      # The copied store holds the last fill's write-ahead log: a one-record file first,
      # so that its replay and flush (~190 MB at 100 M ids) are not inside the timed run.
      { head -1 "$cdr_file"; sed -n 2p "$cdr_file" | sed 's/^[^,]*,/warm-up-1,/'; } > "$out/warm-up.csv"
      # The warm-up reads the filter from the index and keeps it at exit: the timed run
      # reads it back from that snapshot.
      RUST_LOG=tollgate=info "$bin/tollgate" ingest --config "$w/tollgate.toml" "$out/warm-up.csv" \
        > /dev/null 2> "$out/warm-log"
    fi
    sync
    RUST_LOG=tollgate=info /usr/bin/time -f %e -o "$out/t" "$bin/tollgate" ingest --stats \
      --config "$w/tollgate.toml" "$cdr_file" > "$out/s" 2> "$out/log"
    cat "$out/t" >> "$out/wall.$mode"
    grep -o '"seconds":[0-9.]*' "$out/s" | cut -d: -f2 >> "$out/seconds.$mode"
    for p in rate collect deltas commit peak_rss_mb; do
      grep -o "\"$p\":[0-9.]*" "$out/s" | cut -d: -f2 >> "$out/$p.$mode"
    done
    if [ $mode = on ]; then
      sed 's/\x1b\[[0-9;]*m//g' "$out/warm-log" | grep 'filter built' | head -1 > "$out/built"
      grep -o 'seconds=[0-9.]*' "$out/built" | cut -d= -f2 >> "$out/build"
      grep -o 'bytes=[0-9]*' "$out/built" | cut -d= -f2 > "$out/bytes"
      sed 's/\x1b\[[0-9;]*m//g' "$out/log" | grep 'read from its snapshot' | head -1 \
        | grep -o 'seconds=[0-9.]*' | cut -d= -f2 >> "$out/snapshot"
      sed 's/\x1b\[[0-9;]*m//g' "$out/log" | grep 'kept for the next start' | head -1 \
        | grep -o 'seconds=[0-9.]*' | cut -d= -f2 >> "$out/kept"
    fi
    echo "run $r $mode: wall $(tail -1 "$out/wall.$mode") s, file $(tail -1 "$out/seconds.$mode") s" >&2
  done
done
median() { sort -n "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
w="$(median "$out/wc")"
echo "== backlog file, $records records; index holding $ids ids from earlier files; wc -l median $w s"
for mode in off held-off on; do
  s="$(median "$out/seconds.$mode")"
  echo "index $mode: file $s s = $(echo "scale=1; $s / $w" | bc)x wc -l (wall $(median "$out/wall.$mode") s);" \
    "phases: rate $(median "$out/rate.$mode") collect $(median "$out/collect.$mode") deltas $(median "$out/deltas.$mode") commit $(median "$out/commit.$mode") s;" \
    "peak RSS $(median "$out/peak_rss_mb.$mode") MB"
done
echo "filter at start: $(median "$out/build") s to read from the index (the warm-up), $(cat "$out/bytes") bytes = $(echo "scale=2; $(cat "$out/bytes") / $ids" | bc) bytes per id held;" \
  "$(median "$out/snapshot") s to read back from the snapshot kept at exit (the timed run; keeping it at its exit $(median "$out/kept") s)"
