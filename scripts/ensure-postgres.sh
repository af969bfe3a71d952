#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for user postgres
# and a database `test` (what the storage conformance suite and the multi-process test use).
# Starts the machine's cluster when nothing listens there; installs PostgreSQL from Debian's
# packages when it is missing. Idempotent. Needs root for the install and cluster start.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

listening() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL is not installed; installing it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

if ! listening; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  conf=/etc/postgresql/$version/main
  # Listen on loopback with trust auth for local test use (as on this kind of machine).
  if ! grep -qE "^listen_addresses" "$conf/postgresql.conf"; then
    echo "listen_addresses = '127.0.0.1'" >>"$conf/postgresql.conf"
  fi
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  echo "ensure-postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi

for _ in $(seq 1 60); do
  listening && break
  sleep 0.5
done
if ! listening; then
  echo "ensure-postgres: PostgreSQL does not answer on $HOST:$PORT" >&2
  exit 1
fi

psql -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc 'select 1' >/dev/null
if [ "$(psql -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'test'")" != 1 ]; then
  psql -h "$HOST" -p "$PORT" -U postgres -d postgres -qc 'create database test'
fi
psql -h "$HOST" -p "$PORT" -U postgres -d test -tAc 'select 1' >/dev/null
echo "ensure-postgres: PostgreSQL answers at postgres://postgres@$HOST:$PORT/test"
