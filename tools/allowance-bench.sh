#!/usr/bin/env bash
# Times `tollgate cycle close` of one month with and without allowances, on the same
# data, in one run. The workspace is the generator's (default 100 000 accounts, 3 000
# prefixes); N CDRs (default 10 M) of 2026-10 are ingested once. Then two copies are
# closed: "plain" with the generated plans, "allowances" with every plan given three
# allowances (voice 3600 s, 100 SMS, 1 GB of data; every destination and band), so every
# account is on an allowance plan and every record matches one. The close writes every
# document, PDFs included (~2.3 ms each), in both runs; the ratio is printed last
# (issue 14 asks for at most 2x).
#
#   tools/allowance-bench.sh [--records N] [--accounts N] [--dir DIR]
#   (defaults: the issue's size, 10 M records for 100 k accounts; it takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
records=10000000 accounts=100000 dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --accounts) accounts="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. tools/setup.sh bc
# TOLLGATE_BIN_DIR: binaries built already (see bench_bins in tools/shapes.sh).
. tools/shapes.sh
bench_bins
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/tollgate-allowance-bench.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
base="$dir/base"
rm -rf "$base"
"$bin/tollgate-gen" workspace "$base" --accounts "$accounts" --prefixes 3000 --seed 7 >&2
cdr="$dir/cdr-$records.csv"
"$bin/tollgate-gen" cdrs --out "$cdr" --records "$records" --month 2026-10 \
  --accounts "$accounts" --prefixes 3000 --seed 7 --tag A >&2
"$bin/tollgate" ingest --config "$base/tollgate.toml" "$cdr" >&2
rm -f "$cdr" # ingest kept it in the spool's done/

close() { # $1 = name; prints seconds
  local ws="$dir/$1"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$bin/tollgate" cycle close --config "$ws/tollgate.toml" --period 2026-10 \
    --issue-date 2026-11-02 >&2
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

rm -rf "$dir/plain" "$dir/allowances"
cp -a "$base" "$dir/plain"
cp -a "$base" "$dir/allowances"
# Three allowances at the end of every [[plan]] table (a [[plan.allowance]] table belongs
# to the [[plan]] above it, and every key after it would be the allowance's): printed
# before each following [[plan]] header and at the end of the file.
awk 'function allowances() {
    print "[[plan.allowance]]\nname = \"60 min\"\nservice = \"voice\"\nunits = 3600"
    print "[[plan.allowance]]\nname = \"100 SMS\"\nservice = \"sms\"\nunits = 100"
    print "[[plan.allowance]]\nname = \"1 GB\"\nservice = \"data\"\nunits = 1000000000"
  }
  /^\[\[plan\]\]/ { if (seen) allowances(); seen = 1 }
  { print }
  END { if (seen) allowances() }' "$base/tariffs/plans.toml" > "$dir/allowances/tariffs/plans.toml"
"$bin/tollgate" tariff check --config "$dir/allowances/tollgate.toml" >&2

plain=$(close plain)
with=$(close allowances)
n=$(find "$dir/allowances/invoices/2026-10" -name '*.pdf' | wc -l)
# (find, not a glob: 100 000 file names are more than one command line takes)
lines=$(find "$dir/allowances/invoices/2026-10" -name '*.json' ! -name '*.annex.json' \
  -exec cat {} + | grep -c '"kind": "allowance"' || true)
printf 'close without allowances: %.2f s\n' "$plain"
printf 'close with allowances:    %.2f s (%d invoices, %d allowance lines)\n' "$with" "$n" "$lines"
printf 'ratio: %.2fx (PDF rendering included in both)\n' "$(echo "$with / $plain" | bc -l)"
