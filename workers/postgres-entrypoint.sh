#!/bin/sh
# Entrypoint of farm/postgres: initdb on first start (user/database "farm"), then run.
set -e
: "${FARM_PG_PASSWORD:?set FARM_PG_PASSWORD}"
PGDATA=/var/lib/postgresql/data
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp); printf '%s\n' "$FARM_PG_PASSWORD" >"$pw"
  "$bin/initdb" -D "$PGDATA" -U farm --pwfile="$pw" -A scram-sha-256 --no-sync >/dev/null
  rm -f "$pw"
  # the superuser is "farm"; its own database too
  "$bin/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start >/dev/null
  PGPASSWORD=$FARM_PG_PASSWORD "$bin/psql" -h /var/run/postgresql -U farm -d postgres -qc 'CREATE DATABASE farm'
  "$bin/pg_ctl" -D "$PGDATA" -w -m fast stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -k /var/run/postgresql \
  -c listen_addresses="${FARM_PG_LISTEN:-127.0.0.1}" -p "${FARM_PG_PORT:-5432}"
