#!/usr/bin/env bash
# A streaming standby of a scripts/pg.sh cluster, for failover tests.
#
#   scripts/pg-replica.sh start PRIMARY REPLICA [async|sync]
#        pg_basebackup PRIMARY's cluster into a new one, start it as a
#        streaming standby and wait until it streams; `sync` also sets
#        synchronous_standby_names='*' on the primary (every commit waits
#        for the standby). REPLICA is a pg.sh handle (conninfo, root):
#        `scripts/pg.sh stop REPLICA` removes it, `pg.sh kill` crashes it.
#   scripts/pg-replica.sh detach REPLICA
#        stop streaming (primary_conninfo emptied, reloaded) and wait until
#        the WAL receiver is gone: from here on the standby lacks whatever
#        the primary commits, as an asynchronous standby that lags would.
#   scripts/pg-replica.sh promote REPLICA
#        pg_ctl promote; returns once it accepts writes.
#   scripts/pg-replica.sh conninfo PRIMARY REPLICA
#        the multi-host conninfo of both (target_session_attrs=read-write):
#        libpq connects to whichever of them accepts writes.
#
# Environment: EXACTLY_TEST_PG_REPLICA_PORT (default 54330) is the standby's
# socket port; like pg.sh, it listens on its own socket directory only.
set -euo pipefail

die() { echo "pg-replica.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/pg_basebackup" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"; return 0
    fi
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    if [ -x "$d/pg_basebackup" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"; return 0
    fi
  done
  die "no PostgreSQL server binaries (pg_basebackup, pg_ctl) found; run scripts/deps.sh"
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# root and port of a pg.sh handle.
handle_root() {
  local root
  [ -f "$1/root" ] || die "no cluster at $1"
  root=$(cat "$1/root")
  case "$root" in /tmp/exactly-pg.*) [ -d "$root" ] || die "$root is gone" ;;
    *) die "refusing to use '$root' (not /tmp/exactly-pg.*)" ;; esac
  echo "$root"
}
handle_port() { sed -n 's/.*port=\([0-9]*\).*/\1/p' "$1/conninfo"; }

# psql on a handle's cluster: $1 handle, $2 SQL; prints the value.
q() {
  local root port
  root=$(handle_root "$1")
  port=$(handle_port "$1")
  "$BINDIR/psql" -X -At -h "$root" -p "$port" -U postgres -d postgres -c "$2"
}

# Wait until `q $1 $2` prints $3 (at most $4 tenths of a second).
wait_for() {
  local i
  for i in $(seq 1 "$4"); do
    [ "$(q "$1" "$2" 2>/dev/null || true)" = "$3" ] && return 0
    sleep 0.1
  done
  die "timed out waiting for '$2' = '$3' on $1"
}

do_start() {
  local primary=$1 replica=$2 mode=$3 proot pport root port
  case "$mode" in async|sync) ;; *) usage ;; esac
  proot=$(handle_root "$primary")
  pport=$(handle_port "$primary")
  port=${EXACTLY_TEST_PG_REPLICA_PORT:-54330}
  case "$port" in ''|*[!0-9]*) die "EXACTLY_TEST_PG_REPLICA_PORT must be a number" ;; esac
  [ -e "$replica" ] && { bash "$(dirname "$0")/pg.sh" stop "$replica" >/dev/null || true; }
  mkdir -p "$replica"
  root=$(mktemp -d /tmp/exactly-pg.XXXXXX)
  chmod 755 "$root"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$root"
  # Recorded first: a failure below still leaves pg.sh stop something to remove.
  echo "$root" >"$replica/root"
  echo "host=$root port=$port user=postgres dbname=postgres" >"$replica/conninfo"

  cd "$root"
  as_owner "$BINDIR/pg_basebackup" -h "$proot" -p "$pport" -U postgres \
    -D "$root/data" -X stream -R -c fast --no-sync >"$root/basebackup.log" 2>&1 ||
    { cat "$root/basebackup.log" >&2; die "pg_basebackup failed"; }
  # The copy carries the primary's settings: move port and socket, and name
  # the standby so that synchronous_standby_names can match it.
  as_owner tee -a "$root/data/postgresql.conf" >/dev/null <<CONF

# --- exactly test standby (scripts/pg-replica.sh) ---
port = $port
unix_socket_directories = '$root'
synchronous_standby_names = ''
CONF
  as_owner sed -i "s/^primary_conninfo = '/primary_conninfo = 'application_name=replica /" \
    "$root/data/postgresql.auto.conf"
  as_owner "$BINDIR/pg_ctl" -D "$root/data" -l "$root/server.log" -w -t 60 \
    start >/dev/null 2>&1 || { tail -n 40 "$root/server.log" >&2; die "standby did not start"; }
  wait_for "$primary" "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'replica' AND state = 'streaming'" 1 300
  if [ "$mode" = sync ]; then
    q "$primary" "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
    q "$primary" "SELECT pg_reload_conf()" >/dev/null
    wait_for "$primary" "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'replica'" sync 300
  fi
  echo "pg-replica.sh: $mode standby streaming: $(cat "$replica/conninfo")"
}

do_detach() {
  q "$1" "ALTER SYSTEM SET primary_conninfo = ''" >/dev/null
  q "$1" "SELECT pg_reload_conf()" >/dev/null
  wait_for "$1" "SELECT count(*) FROM pg_stat_wal_receiver" 0 300
  echo "pg-replica.sh: standby detached at $(q "$1" "SELECT pg_last_wal_replay_lsn()")"
}

do_promote() {
  local root
  root=$(handle_root "$1")
  (cd "$root" && as_owner "$BINDIR/pg_ctl" -D "$root/data" -w -t 60 promote >/dev/null 2>&1) ||
    die "pg_ctl promote failed"
  wait_for "$1" "SELECT pg_is_in_recovery()" f 600
  echo "pg-replica.sh: promoted"
}

do_conninfo() {
  echo "host=$(handle_root "$1"),$(handle_root "$2") port=$(handle_port "$1"),$(handle_port "$2") user=postgres dbname=postgres target_session_attrs=read-write"
}

[ $# -ge 2 ] || usage
BINDIR=$(find_bindir)
cmd=$1
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
case "$cmd" in
  start) [ $# -ge 3 ] || usage; do_start "$(abs "$2")" "$(abs "$3")" "${4:-async}" ;;
  detach) do_detach "$(abs "$2")" ;;
  promote) do_promote "$(abs "$2")" ;;
  conninfo) [ $# -eq 3 ] || usage; do_conninfo "$(abs "$2")" "$(abs "$3")" ;;
  *) usage ;;
esac
