#!/usr/bin/env bash
# Creates (once) the Python venv tests use, /var/tmp/tollgate-venv, and pip-installs the
# pinned package specs given as arguments that are not installed yet. Idempotent.
#   tools/pyenv.sh 'sepaxml==2.6.1'
# Prints nothing on success when everything is present already.
set -euo pipefail
VENV="${TOLLGATE_VENV:-/var/tmp/tollgate-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "pyenv: creating $VENV" >&2
  python3 -m venv "$VENV"
fi
missing=()
for spec in "$@"; do
  name="${spec%%[=<>!~ ]*}"
  want="${spec#"$name"}"; want="${want#==}"
  have="$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n "s/^Version: //p" || true)"
  if [ -z "$have" ] || { [ -n "$want" ] && [ "$have" != "$want" ]; }; then
    missing+=("$spec")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pyenv: installing ${missing[*]}" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi
