#!/usr/bin/env bash
# npm is needed once, at setup, to fetch the map pages' JS/CSS (served locally afterwards).
set -euo pipefail
command -v npm >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
else
  echo "npm is required to install the map assets" >&2; exit 1
fi
