# The workspaces and files of the two throughput shapes (sourced by tools/throughput.sh
# and tools/ab.sh). Needs $dir and $records.

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
