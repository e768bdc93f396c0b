#!/usr/bin/env bash
# Times invoice generation for 100 000 accounts: `tollgate cycle close` writing every
# document (JSON, UBL, PDF, EPC QR code, and the itemised annex of the opted-in
# accounts, re-derived from the month's spooled files). The workspace is the generator's
# (100 000 accounts, 3 000 prefixes), with every 10th account opted in to an itemised
# bill; N CDRs (default 2 M) in one month are ingested first. Each run closes a fresh
# copy of the ingested workspace and prints its wall time; the median is printed last.
#
#   tools/invoice-bench.sh [--records N] [--runs R] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
records=2000000 runs=1 dir=""
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
  dir="$(mktemp -d /var/tmp/tollgate-invoice-bench.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
base="$dir/base"
rm -rf "$base"
"$bin/tollgate-gen" workspace "$base" --accounts 100000 --prefixes 3000 --seed 7 >&2
# every 10th account opts in to an itemised bill (last 4 digits masked)
awk -F, 'BEGIN { OFS = "," }
  NR == 1 { print $0, "itemised", "masking"; next }
  { print $0, (NR % 10 == 0 ? "yes" : "no"), "last4" }' \
  "$base/accounts.csv" > "$base/accounts.csv.new"
mv "$base/accounts.csv.new" "$base/accounts.csv"
cdr="$dir/cdr-$records.csv"
"$bin/tollgate-gen" cdrs --out "$cdr" --records "$records" --month 2026-10 \
  --accounts 100000 --prefixes 3000 --seed 7 --tag B >&2
"$bin/tollgate" ingest --config "$base/tollgate.toml" "$cdr" >&2
rm -f "$cdr" # ingest kept it in the spool's done/

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
times=()
for i in $(seq 1 "$runs"); do
  ws="$dir/run$i"
  rm -rf "$ws"
  cp -a "$base" "$ws"
  sync
  t0=$(date +%s.%N)
  "$bin/tollgate" cycle close --config "$ws/tollgate.toml" --period 2026-10 \
    --issue-date 2026-11-02 >&2
  t1=$(date +%s.%N)
  t=$(echo "$t1 - $t0" | bc -l)
  times+=("$t")
  docs=$(find "$ws/invoices/2026-10" -type f | wc -l)
  annexes=$(find "$ws/invoices/2026-10" -name '*.annex.json' | wc -l)
  invoices=$(find "$ws/invoices/2026-10" -name '*.pdf' | wc -l)
  printf 'run %d: %.2f s wall, %d invoices, %d files (%d itemised annexes)\n' \
    "$i" "$t" "$invoices" "$docs" "$annexes"
  rm -rf "$ws"
done
printf 'median of %d: %.2f s\n' "$runs" "$(printf '%s\n' "${times[@]}" | median)"
