#!/usr/bin/env bash
# A/B of tollgate binaries on the workspaces and files of tools/throughput.sh (both
# shapes, tidy and backlog), in one window.
#
# Interleaves, per round and shape: the shape's file read afresh into the page cache (see
# fresh_cache in tools/shapes.sh), `wc -l` on it, then one whole-process
# `tollgate ingest --stats` per binary (fresh data dir each time). Prints, per shape and
# binary, the median and the runs of the wall time, its ratio to the shape's median
# `wc -l`, records/s, the CPU time the process used (user + system: on a busy host it
# moves less than the wall time, so a small change shows there first), the medians of
# the in-process phases and of peak RSS.
# Interleaving matters: on a shared host the same binary's time moves by a third within
# minutes, so only binaries measured side by side compare.
#
#   tools/throughput.sh --records 10000000 --runs 1 --dir /var/tmp/tp   # once: data
#   cp "$CARGO_TARGET_DIR/release/tollgate" /var/tmp/tg-a               # per build
#   tools/ab.sh --dir /var/tmp/tp [--records 10000000] [--runs 5] [--shapes "tidy backlog"] /var/tmp/tg-a /var/tmp/tg-b
set -euo pipefail
records=10000000 runs=5 dir="" shapes="tidy backlog"
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --shapes) shapes="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ -n "$dir" ] && [ $# -gt 0 ] || { echo "usage: tools/ab.sh --dir DIR [--records N] [--runs R] [--shapes S] BIN..." >&2; exit 2; }
. "$(dirname "$0")/shapes.sh"
for shape in $shapes; do
  shape_paths "$shape"
  [ -f "$cdr" ] && [ -f "$ws/tollgate.toml" ] || { echo "no $cdr or $ws: run tools/throughput.sh --records $records --dir $dir first" >&2; exit 2; }
done
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for _ in $(seq 1 "$runs"); do
  for shape in $shapes; do
    shape_paths "$shape"
    fresh_cache "$cdr"   # page-cached afresh, for wc -l and the ingests alike
    /usr/bin/time -f %e -o "$out/t" wc -l "$cdr" > /dev/null
    cat "$out/t" >> "$out/wc.$shape"
    for i in $(seq 1 $#); do
      bin="${!i}"
      rm -rf "$ws/data" "$ws/spool"
      "$bin" tariff compile --config "$ws/tollgate.toml" > /dev/null
      /usr/bin/time -f '%e %U %S' -o "$out/t" "$bin" ingest --stats --config "$ws/tollgate.toml" "$cdr" > "$out/s"
      read -r wall user sys < "$out/t"
      echo "$wall" >> "$out/wall.$shape.$i"
      echo "$user + $sys" | bc >> "$out/cpu.$shape.$i"
      for p in rate collect deltas commit peak_rss_mb; do
        grep -o "\"$p\":[0-9.]*" "$out/s" | cut -d: -f2 >> "$out/$p.$shape.$i"
      done
    done
  done
done
median() { sort -n "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for shape in $shapes; do
  w="$(median "$out/wc.$shape")"
  echo "== $shape: wc -l median $w s (runs: $(sort -n "$out/wc.$shape" | tr '\n' ' '))"
  for i in $(seq 1 $#); do
    m="$(median "$out/wall.$shape.$i")"
    echo "${!i}: median $m s (runs: $(sort -n "$out/wall.$shape.$i" | tr '\n' ' ')) = $(echo "scale=1; $m / $w" | bc)x wc -l," \
      "$(echo "scale=2; $records / $m / 1000000" | bc) M records/s; cpu $(median "$out/cpu.$shape.$i") s;" \
      "phases: rate $(median "$out/rate.$shape.$i") collect $(median "$out/collect.$shape.$i") deltas $(median "$out/deltas.$shape.$i") commit $(median "$out/commit.$shape.$i") s;" \
      "peak RSS $(median "$out/peak_rss_mb.$shape.$i") MB"
  done
done
