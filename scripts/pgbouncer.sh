#!/usr/bin/env bash
# A throwaway PgBouncer in front of a throwaway PostgreSQL, for tests.
#
#   scripts/pgbouncer.sh start DIR PG_CONNINFO MODE [POOL_SIZE]
#       start PgBouncer in pool_mode MODE (session | transaction) on a unix
#       socket in a new directory under /tmp, forwarding every database
#       name to the server PG_CONNINFO names (its host= socket directory
#       and port=), with at most POOL_SIZE (default 20) server connections
#       per database and user; write DIR/conninfo (host, port,
#       user=postgres: add dbname=) and DIR/root (its directory)
#   scripts/pgbouncer.sh stop DIR
#       stop it and remove its directory
#
# It listens on a unix socket only, on a port (part of the socket's name)
# it picks from its own pid, so two instances never collide. PgBouncer
# refuses to run as root: as root it runs as the `postgres` user. Exits 77
# when pgbouncer is not installed (ctest's "skipped").
set -euo pipefail

die() { echo "pgbouncer.sh: $*" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

find_bin() {
  local b
  for b in "$(command -v pgbouncer 2>/dev/null || true)" /usr/sbin/pgbouncer; do
    if [ -n "$b" ] && [ -x "$b" ]; then echo "$b"; return 0; fi
  done
  return 1
}

# The value of KEY= in a libpq keyword/value conninfo.
conninfo_get() {
  printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

start() {
  local dir=$1 pg=$2 mode=$3 size=${4:-20} bin root pghost pgport port i
  case "$mode" in session|transaction|statement) ;; *) die "bad pool mode '$mode'" ;; esac
  case "$size" in ''|*[!0-9]*|0) die "bad pool size '$size'" ;; esac
  bin=$(find_bin) || { echo "pgbouncer.sh: pgbouncer is not installed (scripts/deps.sh)" >&2; exit 77; }
  pghost=$(conninfo_get "$pg" host)
  pgport=$(conninfo_get "$pg" port)
  [ -n "$pghost" ] && [ -n "$pgport" ] || die "conninfo needs host= and port=: $pg"
  mkdir -p "$dir"
  root=$(mktemp -d /tmp/exactly-pgb.XXXXXX)
  chmod 0755 "$root"
  [ "$(id -u)" -eq 0 ] && chown postgres "$root"
  port=$((20000 + $$ % 20000))
  cat >"$root/pgbouncer.ini" <<INI
[databases]
* = host=$pghost port=$pgport

[pgbouncer]
listen_addr =
listen_port = $port
unix_socket_dir = $root
auth_type = trust
auth_file = $root/users.txt
pool_mode = $mode
max_client_conn = 200
default_pool_size = $size
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
logfile = $root/pgbouncer.log
pidfile = $root/pgbouncer.pid
INI
  echo '"postgres" ""' >"$root/users.txt"
  [ "$(id -u)" -eq 0 ] && chown postgres "$root/pgbouncer.ini" "$root/users.txt"
  as_pg "$bin" -d "$root/pgbouncer.ini" || die "pgbouncer did not start: $(cat "$root/pgbouncer.log" 2>/dev/null)"
  for i in $(seq 1 100); do
    [ -S "$root/.s.PGSQL.$port" ] && break
    sleep 0.05
  done
  [ -S "$root/.s.PGSQL.$port" ] || die "pgbouncer's socket did not appear: $(cat "$root/pgbouncer.log" 2>/dev/null)"
  echo "$root" >"$dir/root"
  echo "host=$root port=$port user=postgres" >"$dir/conninfo"
}

stop() {
  local dir=$1 root pid i
  [ -f "$dir/root" ] || return 0
  root=$(cat "$dir/root")
  case "$root" in /tmp/exactly-pgb.*) ;; *) die "refusing to remove '$root'" ;; esac
  if [ -f "$root/pgbouncer.pid" ]; then
    pid=$(cat "$root/pgbouncer.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$root" "$dir/root" "$dir/conninfo"
}

case "${1:-}" in
  start) [ $# -eq 4 ] || [ $# -eq 5 ] || die "usage: $0 start DIR PG_CONNINFO MODE [POOL_SIZE]"; start "$2" "$3" "$4" "${5:-20}" ;;
  stop)  [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
