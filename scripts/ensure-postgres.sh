#!/usr/bin/env bash
# A PostgreSQL for the storage conformance suite and the multi-process test, without touching
# the machine's own clusters or their authentication.
#
#   . scripts/ensure-postgres.sh          # from a bash script: exports XIUHUA_TEST_POSTGRES_URL
#   scripts/ensure-postgres.sh CMD ARGS…  # runs CMD with XIUHUA_TEST_POSTGRES_URL exported
#
# When XIUHUA_TEST_POSTGRES_URL is already set it is used as is. Otherwise a throwaway
# cluster is created: `initdb` in a fresh temporary folder, its own free port on 127.0.0.1,
# a random password for TCP (scram-sha-256), trust only on its unix socket, which lives in
# that 0700 folder; the cluster is stopped and the folder removed when the calling shell (or
# CMD) exits. PostgreSQL's server binaries are installed from Debian's packages when no
# `initdb` is found. initdb refuses to run as root: as root, the cluster runs as the
# `postgres` user (created by the package).
#
# Environment: XIUHUA_PG_BIN (folder of initdb/pg_ctl/postgres; default: the newest
# /usr/lib/postgresql/*/bin, else PATH), XIUHUA_PG_KEEP=1 keeps the folder (for debugging).

xiuhua_pg_main() {
  local sourced=$1
  shift
  set -euo pipefail

  if [ -n "${XIUHUA_TEST_POSTGRES_URL:-}" ]; then
    echo "ensure-postgres: using the given XIUHUA_TEST_POSTGRES_URL"
    export XIUHUA_TEST_POSTGRES_URL
    return 0
  fi

  local bin
  bin=$(xiuhua_pg_bin)
  if [ -z "$bin" ]; then
    echo "ensure-postgres: initdb not found; installing PostgreSQL"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >/dev/null
    bin=$(xiuhua_pg_bin)
    if [ -z "$bin" ]; then
      echo "ensure-postgres: no initdb after installing postgresql" >&2
      return 1
    fi
  fi

  # Who runs the cluster: the caller, or `postgres` when the caller is root.
  local as=()
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "ensure-postgres: running as root and there is no postgres user to run initdb as" >&2
      return 1
    fi
    as=(runuser -u postgres --)
  fi

  # As root the folder is under /tmp: the postgres user must be able to reach it.
  local base=${TMPDIR:-/tmp} dir
  [ ${#as[@]} -eq 0 ] || base=/tmp
  dir=$(mktemp -d "$base/xiuhua-pg.XXXXXX")
  chmod 700 "$dir"
  [ ${#as[@]} -eq 0 ] || chown postgres: "$dir"
  XIUHUA_PG_DIR=$dir
  XIUHUA_PG_AS=("${as[@]}")
  XIUHUA_PG_CTL=$bin/pg_ctl
  if [ "$sourced" = 1 ]; then
    trap xiuhua_pg_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi

  local password
  password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
  [ ${#as[@]} -eq 0 ] || chown postgres: "$dir/pwfile"
  if ! xiuhua_pg_as "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    echo "ensure-postgres: initdb failed" >&2
    return 1
  fi
  rm -f "$dir/pwfile"

  local port started=0
  for _ in 1 2 3 4 5; do
    port=$(xiuhua_pg_free_port)
    if xiuhua_pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" \
      start >/dev/null 2>&1; then
      started=1
      break
    fi
  done
  if [ "$started" != 1 ]; then
    cat "$dir/server.log" >&2 || true
    echo "ensure-postgres: the throwaway cluster did not start" >&2
    return 1
  fi
  xiuhua_pg_as "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt \
    -c 'CREATE DATABASE test' >/dev/null
  export XIUHUA_TEST_POSTGRES_URL="postgres://postgres:$password@127.0.0.1:$port/test"
  echo "ensure-postgres: throwaway cluster in $dir on 127.0.0.1:$port (removed at exit)"
}

# Runs a command as the cluster's owner, from the cluster's folder (the owner may not be
# allowed into the caller's working directory).
xiuhua_pg_as() {
  (cd "$XIUHUA_PG_DIR" && "${XIUHUA_PG_AS[@]}" "$@")
}

# The folder of initdb, pg_ctl and postgres, or nothing.
xiuhua_pg_bin() {
  if [ -n "${XIUHUA_PG_BIN:-}" ]; then
    [ -x "$XIUHUA_PG_BIN/initdb" ] && echo "$XIUHUA_PG_BIN"
    return 0
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    echo "$d"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

# A TCP port on 127.0.0.1 nothing listens on (pg_ctl start is retried if it is taken meanwhile).
xiuhua_pg_free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo 5439
}

# Stops the throwaway cluster and removes its folder (idempotent).
xiuhua_pg_cleanup() {
  local dir=${XIUHUA_PG_DIR:-}
  [ -n "$dir" ] || return 0
  if [ -d "$dir/data" ]; then
    xiuhua_pg_as "$XIUHUA_PG_CTL" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  XIUHUA_PG_DIR=
  if [ "${XIUHUA_PG_KEEP:-0}" = 1 ]; then
    echo "ensure-postgres: kept $dir" >&2
  else
    rm -rf "$dir"
  fi
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  xiuhua_pg_main 1
else
  if [ $# -eq 0 ]; then
    echo "usage: . scripts/ensure-postgres.sh   or   scripts/ensure-postgres.sh CMD ARGS..." >&2
    exit 2
  fi
  trap xiuhua_pg_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  xiuhua_pg_main 0
  "$@"
fi
