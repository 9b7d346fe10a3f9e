#!/usr/bin/env bash
# System libraries the service itself needs: Pango (WeasyPrint lays out the printable 明白卡 PDF
# with it) and a CJK font so Chinese prints as Chinese. Installed with apt when root; otherwise
# named, so the operator can install them.
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so.0' || missing+=(libpango-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' || missing+=(libpangoft2-1.0-0)
fc-list 2>/dev/null | grep -qi 'Noto Sans CJK' || missing+=(fonts-noto-cjk fontconfig)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "missing system packages for PDF output: ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1
fi
