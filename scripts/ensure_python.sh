#!/usr/bin/env bash
# Create the virtualenv (Python 3.11+) and install Wangge: `ensure_python.sh VENV` installs what the
# service runs on; `ensure_python.sh VENV test` adds the test extras (Playwright, schemathesis,
# GPL-licensed pysheds, ...), which the service never needs.
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-}"
find_python() {
  for py in python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}
if ! py=$(find_python) || ! "$py" -c 'import ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Python 3 with venv support via apt ..."
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-dev
    py=$(find_python)
  else
    echo "Python 3.11+ with venv is required" >&2; exit 1
  fi
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if [ -n "$extras" ]; then
  "$venv/bin/python" -m pip install -q -e ".[$extras]"
else
  "$venv/bin/python" -m pip install -q -e .
fi
