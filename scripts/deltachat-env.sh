#!/usr/bin/env bash
# scripts/deltachat-env.sh - installs the real Delta Chat core the tests and
# the demo drive (deltachat-rpc-server and deltachat-rpc-client from PyPI,
# pinned), idempotently, into a venv made with Debian's python3:
#   ${COI_DELTACHAT_VENV:-$COI_CACHE_DIR/deltachat-<version>}
# (COI_CACHE_DIR defaults to /var/cache/coi as root, ~/.cache/coi otherwise;
# tests/harness/deltachat.py looks in the same place). Nothing is fetched
# when the venv already holds the pinned versions. Sourced by scripts/test and
# scripts/demo (they export COI_DELTACHAT_VENV); run it alone to prepare a
# machine. Needs python3-venv (scripts/deps.sh).
set -euo pipefail

COI_DELTACHAT_VERSION=2.65.0

coi_deltachat_venv_dir() {
  if [ -n "${COI_DELTACHAT_VENV:-}" ]; then
    echo "$COI_DELTACHAT_VENV"
    return
  fi
  local cache=${COI_CACHE_DIR:-}
  if [ -z "$cache" ]; then
    if [ "$(id -u)" -eq 0 ]; then
      cache=/var/cache/coi
    else
      cache=${XDG_CACHE_HOME:-$HOME/.cache}/coi
    fi
  fi
  echo "$cache/deltachat-$COI_DELTACHAT_VERSION"
}

coi_deltachat_ok() {
  local venv=$1
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$COI_DELTACHAT_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = sys.argv[1]
sys.exit(0 if version("deltachat-rpc-server") == want and version("deltachat-rpc-client") == want else 1)
PY
}

coi_install_deltachat() {
  local venv
  venv=$(coi_deltachat_venv_dir)
  if ! coi_deltachat_ok "$venv"; then
    echo "coi: installing Delta Chat $COI_DELTACHAT_VERSION (deltachat-rpc-server, deltachat-rpc-client) into $venv" >&2
    rm -rf "$venv.new"
    mkdir -p "$(dirname "$venv")"
    # Debian's interpreter: the test harness imports the client library into
    # /usr/bin/python3, so the venv must be of the same Python.
    /usr/bin/python3 -m venv "$venv.new"
    "$venv.new/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q \
      "deltachat-rpc-server==$COI_DELTACHAT_VERSION" "deltachat-rpc-client==$COI_DELTACHAT_VERSION"
    rm -rf "$venv"
    mv "$venv.new" "$venv"
    # venv scripts carry the absolute path of their interpreter; fix them after the move.
    sed -i "1s|^#!$venv.new/|#!$venv/|" "$venv"/bin/* 2>/dev/null || true
    coi_deltachat_ok "$venv" || { echo "coi: Delta Chat install in $venv failed" >&2; return 1; }
  fi
  export COI_DELTACHAT_VENV=$venv
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  coi_install_deltachat
  echo "$COI_DELTACHAT_VENV"
fi
