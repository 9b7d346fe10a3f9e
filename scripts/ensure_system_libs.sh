#!/usr/bin/env bash
# System libraries the service itself needs: Pango (WeasyPrint lays out the printable 明白卡 PDF
# with it) and a CJK font so Chinese prints as Chinese. Installed with apt when root; otherwise
# named, so the operator can install them. When nothing is missing this touches no network.
set -euo pipefail
# Read each listing whole before searching it: with pipefail, `lister | grep -q` fails when grep
# stops at the first match and the lister dies of SIGPIPE (exit 141), which looked like "missing".
libs=$(ldconfig -p 2>/dev/null || true)
fonts=$(fc-list 2>/dev/null || true)
missing=()
grep -q 'libpango-1.0.so.0' <<<"$libs" || missing+=(libpango-1.0-0)
grep -q 'libpangoft2-1.0.so.0' <<<"$libs" || missing+=(libpangoft2-1.0-0)
grep -qi 'Noto Sans CJK' <<<"$fonts" || missing+=(fonts-noto-cjk fontconfig)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "missing system packages for PDF output: ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1
fi
