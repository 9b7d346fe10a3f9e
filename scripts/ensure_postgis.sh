#!/usr/bin/env bash
# Make sure a PostGIS database exists and write its URL to var/database_url.
# With DATABASE_URL set, that database is used as it is (it must have PostGIS available).
# Otherwise: install PostgreSQL + PostGIS with apt when missing (as root), keep a private cluster
# under var/pg on a free loopback port, start it if it is not running, create the database.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
var="$root/var"
mkdir -p "$var"
db_name="${WANGGE_DB_NAME:-wangge}"

if [ -n "${DATABASE_URL:-}" ]; then
  printf '%s\n' "$DATABASE_URL" > "$var/database_url"
  echo "using DATABASE_URL from the environment"
  exit 0
fi

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
has_postgis() {
  local bin; bin=$(pg_bindir) || return 1
  [ -n "$bin" ] || return 1
  local ver; ver=$(basename "$(dirname "$bin")")
  [ -f "/usr/share/postgresql/$ver/extension/postgis.control" ]
}

if ! has_postgis; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL with PostGIS is missing and we are not root: install postgresql-15-postgis-3," >&2
    echo "or set DATABASE_URL to an existing PostGIS database." >&2
    exit 1
  fi
  echo "installing PostgreSQL + PostGIS with apt ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Debian 12 names it postgresql-15-postgis-3; elsewhere the metapackage picks the default version.
  apt-get install -y -q --no-install-recommends postgresql-15-postgis-3 \
    || apt-get install -y -q --no-install-recommends postgresql-postgis
  # The packaged default cluster is not ours; it may keep running, we use our own port.
fi

bin=$(pg_bindir)
pgdata="$var/pg"
run_as=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: the cluster belongs to the 'postgres' system user.
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  run_as=(runuser -u postgres --)
  if ! "${run_as[@]}" test -x "$var" 2>/dev/null; then
    # var/ sits under a folder the postgres user cannot enter: keep the data elsewhere, link it.
    alt="/var/tmp/wangge-pg-$(printf '%s' "$root" | md5sum | cut -c1-12)"
    mkdir -p "$alt"; chown postgres: "$alt"
    [ -L "$pgdata" ] || { rm -rf "$pgdata"; ln -s "$alt" "$pgdata"; }
  fi
fi
# Work on the real directory (var/pg may be a link), from a folder every user may enter.
[ -L "$pgdata" ] && pgdata=$(readlink -f "$pgdata")
pg() { (cd / && "${run_as[@]}" "$@"); }

if [ ! -f "$pgdata/PG_VERSION" ]; then
  echo "creating a private PostgreSQL cluster in $pgdata ..."
  mkdir -p "$pgdata"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$pgdata"
  chmod 700 "$pgdata"
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' )
  pwfile=$(mktemp); printf '%s\n' "$password" > "$pwfile"; chmod 644 "$pwfile"
  pg "$bin/initdb" -D "$pgdata" -U postgres --pwfile="$pwfile" --auth-local=peer \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf '%s\n' "$password" > "$var/pg.password"; chmod 600 "$var/pg.password"
fi

port_file="$var/pg.port"
running() { pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; }
if ! running; then
  port=$(cat "$port_file" 2>/dev/null || true)
  free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  if [ -z "$port" ] || ! free "$port"; then
    port=55432
    while ! free "$port"; do port=$((port + 1)); done
  fi
  echo "$port" > "$port_file"
  pg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $pgdata" start >/dev/null
  echo "PostgreSQL started on 127.0.0.1:$port"
fi
port=$(cat "$port_file")
password=$(cat "$var/pg.password")
sock="$pgdata"

exists=$(pg "$bin/psql" -h "$sock" -p "$port" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$db_name'")
if [ "$exists" != 1 ]; then
  pg "$bin/psql" -q -h "$sock" -p "$port" -U postgres -c "CREATE DATABASE \"$db_name\""
fi
pg "$bin/psql" -q -h "$sock" -p "$port" -U postgres -d "$db_name" -c "CREATE EXTENSION IF NOT EXISTS postgis" 2>&1 \
  | grep -v 'already exists' || true

printf 'postgresql+psycopg://postgres:%s@127.0.0.1:%s/%s\n' "$password" "$port" "$db_name" > "$var/database_url"
chmod 600 "$var/database_url"
echo "database ready: 127.0.0.1:$port/$db_name"
