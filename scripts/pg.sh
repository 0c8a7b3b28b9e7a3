#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and demos.
#
#   scripts/pg.sh start DIR     create and start a cluster, write DIR/conninfo
#   scripts/pg.sh stop DIR      stop it and remove DIR and the cluster (the
#                               data is deleted in the background)
#   scripts/pg.sh conninfo DIR  print the libpq conninfo
#   scripts/pg.sh status DIR    exit 0 if the cluster answers
#   scripts/pg.sh kill DIR      crash it (immediate stop: no checkpoint, every
#                               backend dropped), keeping DIR and its data
#   scripts/pg.sh restart DIR   start DIR's cluster again (after kill; if it is
#                               still up, kill it first): same data, socket
#                               and port, so DIR/conninfo stays valid
#
# DIR is only a handle: it holds `conninfo` and `root`, the path of the
# cluster's real home, a mktemp directory under /tmp. The data directory and
# the unix socket live there because DIR may sit in a tree the postgres user
# cannot traverse (root's checkout) and because a socket path must stay under
# ~107 bytes. The server listens on that socket only (listen_addresses=''),
# so the port is only part of the socket's name and never collides with
# anything.
#
# initdb refuses to run as root: as root, the cluster is owned by and run as
# the `postgres` user. The superuser is always `postgres`, trust auth.
#
# Environment:
#   EXACTLY_TEST_PG_FAST=1   fsync=off (faster, loses crash safety)
#   EXACTLY_TEST_PG_PORT     socket port number (default 54329)
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"; return 0
    fi
  fi
  # Highest installed major version first.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"; return 0
    fi
  done
  die "no PostgreSQL server binaries (initdb, pg_ctl) found; run scripts/deps.sh"
}

# Run a command as the cluster's owner: postgres when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Refuse to act on a root path that is not one we created.
check_root() {
  case "$1" in
    /tmp/exactly-pg.*) [ -d "$1" ] ;;
    *) die "refusing to use '$1' as a cluster root (not /tmp/exactly-pg.*)" ;;
  esac
}

show_log() {
  local root=$1
  if [ -f "$root/server.log" ]; then
    echo "---- $root/server.log (last 60 lines) ----" >&2
    tail -n 60 "$root/server.log" >&2 || true
    echo "----" >&2
  fi
}

# Stop the cluster recorded in DIR (if any) and remove everything.
do_stop() {
  local dir=$1 root bindir rc=0
  if [ ! -f "$dir/root" ]; then
    rm -rf "$dir"
    return 0
  fi
  root=$(cat "$dir/root")
  if check_root "$root"; then
    bindir=$(find_bindir)
    # The cluster is thrown away: an immediate stop skips the shutdown
    # checkpoint, which after a whole suite's databases took minutes.
    if [ -f "$root/data/postmaster.pid" ]; then
      (cd "$root" && as_owner "$bindir/pg_ctl" -D "$root/data" -m immediate \
         -w -t 30 stop >/dev/null 2>&1) || rc=1
    fi
    # Deleting a suite's databases (hundreds of MB in thousands of files)
    # takes tens of seconds: the stopped cluster is renamed out of the way
    # and deleted in the background, detached from our output so that a
    # caller waiting for it (ctest) does not wait for the deletion.
    if mv "$root" "$root.removed" 2>/dev/null; then
      setsid rm -rf "$root.removed" </dev/null >/dev/null 2>&1 &
    else
      rm -rf "$root"
    fi
  fi
  rm -rf "$dir"
  return $rc
}

do_start() {
  local dir=$1 bindir root port fsync t0
  t0=$(date +%s%N)
  bindir=$(find_bindir)
  port=${EXACTLY_TEST_PG_PORT:-54329}
  case "$port" in ''|*[!0-9]*) die "EXACTLY_TEST_PG_PORT must be a number" ;; esac
  fsync=on
  [ "${EXACTLY_TEST_PG_FAST:-0}" = 1 ] && fsync=off

  # A cluster left by an interrupted run is stopped and thrown away first.
  if [ -e "$dir" ]; then
    do_stop "$dir" || true
  fi
  mkdir -p "$dir"

  root=$(mktemp -d /tmp/exactly-pg.XXXXXX)
  chmod 755 "$root"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 ||
      die "running as root needs the 'postgres' user (install postgresql)"
    chown postgres: "$root"
  fi
  echo "$root" >"$dir/root"

  fail() {
    echo "pg.sh: $*" >&2
    show_log "$root"
    do_stop "$dir" || true
    exit 1
  }

  # Run from the root so the server never needs our working directory.
  cd "$root"
  if ! as_owner "$bindir/initdb" -D "$root/data" -A trust -U postgres \
         -E UTF8 --locale=C --no-sync --no-instructions \
         >"$root/initdb.log" 2>&1; then
    cat "$root/initdb.log" >&2
    fail "initdb failed"
  fi

  as_owner tee -a "$root/data/postgresql.conf" >/dev/null <<CONF

# --- exactly test cluster (scripts/pg.sh) ---
listen_addresses = ''
port = $port
unix_socket_directories = '$root'
max_connections = 100
shared_buffers = 128MB
fsync = $fsync
synchronous_commit = on
logging_collector = off
log_min_messages = warning
CONF

  if ! as_owner "$bindir/pg_ctl" -D "$root/data" -l "$root/server.log" \
         -w -t 60 start >/dev/null 2>&1; then
    fail "pg_ctl start failed"
  fi

  local i
  for i in $(seq 1 300); do
    if "$bindir/pg_isready" -q -h "$root" -p "$port" -U postgres; then
      break
    fi
    [ "$i" -eq 300 ] && fail "server did not become ready within 30 s"
    sleep 0.1
  done

  echo "host=$root port=$port user=postgres dbname=postgres" >"$dir/conninfo"
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "pg.sh: started PostgreSQL ($("$bindir/postgres" --version | awk '{print $3}'), fsync=$fsync) in ${ms} ms: $(cat "$dir/conninfo")"
}

# The root of DIR's cluster, or die.
cluster_root() {
  local dir=$1 root
  [ -f "$dir/root" ] || die "no cluster at $dir (run: scripts/pg.sh start $dir)"
  root=$(cat "$dir/root")
  check_root "$root" || die "cluster root $root of $dir is gone"
  echo "$root"
}

# What a crash does to clients: every connection drops at once and the
# server comes back only through crash recovery. Waits until it is down.
do_kill() {
  local root bindir
  root=$(cluster_root "$1")
  bindir=$(find_bindir)
  [ -f "$root/data/postmaster.pid" ] || return 0
  (cd "$root" && as_owner "$bindir/pg_ctl" -D "$root/data" -m immediate \
     -w -t 30 stop >/dev/null 2>&1) || { show_log "$root"; die "immediate stop failed"; }
}

# Start the existing cluster again with the options do_start used (they
# live in its postgresql.conf), appending to the same server log. Returns
# once it accepts connections.
do_restart() {
  local dir=$1 root bindir port i
  root=$(cluster_root "$dir")
  bindir=$(find_bindir)
  port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$dir/conninfo")
  if [ -f "$root/data/postmaster.pid" ]; then
    do_kill "$dir"
  fi
  (cd "$root" && as_owner "$bindir/pg_ctl" -D "$root/data" -l "$root/server.log" \
     -w -t 60 start >/dev/null 2>&1) || { show_log "$root"; die "pg_ctl start failed"; }
  for i in $(seq 1 300); do
    if "$bindir/pg_isready" -q -h "$root" -p "$port" -U postgres; then
      return 0
    fi
    sleep 0.1
  done
  show_log "$root"
  die "server did not become ready within 30 s after restart"
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac

case "$cmd" in
  start) do_start "$dir" ;;
  stop)
    t0=$(date +%s%N)
    do_stop "$dir"
    echo "pg.sh: stopped and removed in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    ;;
  conninfo)
    [ -f "$dir/conninfo" ] || die "no cluster at $dir (run: scripts/pg.sh start $dir)"
    cat "$dir/conninfo"
    ;;
  status)
    [ -f "$dir/conninfo" ] || die "no cluster at $dir"
    root=$(cat "$dir/root")
    port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$dir/conninfo")
    "$(find_bindir)/pg_isready" -h "$root" -p "$port" -U postgres
    ;;
  kill) do_kill "$dir" ;;
  restart) do_restart "$dir" ;;
  *) usage ;;
esac
