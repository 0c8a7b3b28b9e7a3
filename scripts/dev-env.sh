#!/usr/bin/env bash
# A throwaway PostgreSQL and mock Kafka cluster for developing a handler
# plugin, with the environment that points exactly at them.
#
#   scripts/dev-env.sh [--topic NAME[:PARTITIONS]]...
#         start both, print the export lines, and stay in the foreground:
#         Ctrl-C (or SIGTERM) stops both and removes their data
#   scripts/dev-env.sh start [--topic NAME[:PARTITIONS]]...
#         start both in the background and print the export lines on
#         stdout (eval "$(scripts/dev-env.sh start)" applies them)
#   scripts/dev-env.sh env      print the export lines of the running pair
#   scripts/dev-env.sh status   say whether both run (exit 0 if they do)
#   scripts/dev-env.sh stop     stop both and remove their data
#
# Topics default to `events` with 4 partitions; the mock cluster also
# creates a topic on first use. The exports: EXACTLY_BOOTSTRAP_SERVERS and
# EXACTLY_PG_CONNINFO (what config/*.yaml read), PGHOST, PGPORT, PGUSER and
# PGDATABASE (so that plain `psql` reaches the database `dev`), and PATH
# with the built exactly and exactly-produce first.
#
# The binaries come from the build directory build/ (EXACTLY_BUILD_DIR),
# built there (Release, with the test tools) when one is missing. State
# lives in .exactly-dev/ of the checkout (EXACTLY_DEV_DIR). PostgreSQL is
# scripts/pg.sh's: a cluster in /tmp on a unix socket, superuser postgres,
# trust authentication. The mock Kafka is librdkafka's, in memory, on
# 127.0.0.1 (see exactly-mock-cluster --help for its limits).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${EXACTLY_BUILD_DIR:-$repo/build}
case "$build" in /*) ;; *) build=$PWD/$build ;; esac
state=${EXACTLY_DEV_DIR:-$repo/.exactly-dev}
case "$state" in /*) ;; *) state=$PWD/$state ;; esac
mock_bin=$build/tests/tools/exactly-mock-cluster
exactly_bin=$build/cmd/exactly/exactly
produce_bin=$build/cmd/exactly-produce/exactly-produce

die() { echo "dev-env: $*" >&2; exit 1; }
say() { echo "dev-env: $*" >&2; }

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# The pid of the running mock cluster, or nothing: the pid file must name
# a live exactly-mock-cluster (a reused pid is not ours).
mock_pid() {
  local pid
  [ -f "$state/mock.pid" ] || return 0
  pid=$(cat "$state/mock.pid")
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  if [ -r "/proc/$pid/cmdline" ] &&
     tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q exactly-mock-cluster; then
    echo "$pid"
  fi
}

running() {
  [ -n "$(mock_pid)" ] && "$repo/scripts/pg.sh" status "$state/pg" >/dev/null 2>&1
}

print_env() {
  [ -f "$state/env" ] || die "not running (scripts/dev-env.sh start)"
  cat "$state/env"
}

build_if_missing() {
  if [ -x "$mock_bin" ] && [ -x "$exactly_bin" ] && [ -x "$produce_bin" ]; then
    return 0
  fi
  say "building exactly, exactly-produce and exactly-mock-cluster in $build"
  "$repo/scripts/deps.sh" >&2
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON >&2
  fi
  cmake --build "$build" -j2 --target exactly exactly-produce exactly-mock-cluster >&2
}

do_stop() {
  local pid i
  pid=$(mock_pid)
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -d "$state/pg" ]; then
    "$repo/scripts/pg.sh" stop "$state/pg" >/dev/null 2>&1 || true
  fi
  # Only what start made: EXACTLY_DEV_DIR may name a directory of yours.
  rm -f "$state/env" "$state/bootstrap" "$state/mock.pid" "$state/mock.log"
  rmdir "$state" 2>/dev/null || true
}

# Starts both, writes $state/env. Topics in "$@" (NAME[:P]).
do_start() {
  local topics=() conninfo host port bootstrap i pid
  while [ $# -gt 0 ]; do
    case "$1" in
      --topic) [ $# -ge 2 ] || usage; topics+=(--topic "$2"); shift 2 ;;
      *) usage ;;
    esac
  done
  [ ${#topics[@]} -gt 0 ] || topics=(--topic events:4)
  if running; then
    say "already running (scripts/dev-env.sh stop first to start afresh)"
    return 0
  fi
  do_stop # whatever an interrupted start left
  build_if_missing
  mkdir -p "$state"

  "$repo/scripts/pg.sh" start "$state/pg" >&2 || { do_stop; die "PostgreSQL did not start"; }
  conninfo=$("$repo/scripts/pg.sh" conninfo "$state/pg")
  psql -X -q -v ON_ERROR_STOP=1 "$conninfo" -c 'CREATE DATABASE dev' >/dev/null ||
    { do_stop; die "cannot create the database dev"; }
  conninfo=$(printf '%s' "$conninfo" | sed 's/dbname=[^ ]*/dbname=dev/')
  host=$(printf '%s' "$conninfo" | sed -n 's/.*host=\([^ ]*\).*/\1/p')
  port=$(printf '%s' "$conninfo" | sed -n 's/.*port=\([^ ]*\).*/\1/p')

  # Its own session: a Ctrl-C meant for a foreground job of the shell that
  # ran `start` must not reach it; `stop` ends it.
  setsid "$mock_bin" "${topics[@]}" --bootstrap-file "$state/bootstrap" \
    </dev/null >/dev/null 2>"$state/mock.log" &
  pid=$!
  echo "$pid" >"$state/mock.pid"
  for i in $(seq 600); do
    [ -s "$state/bootstrap" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$state/mock.log" >&2; do_stop; die "the mock cluster exited"; }
    sleep 0.1
  done
  [ -s "$state/bootstrap" ] || { cat "$state/mock.log" >&2; do_stop; die "the mock cluster did not start within 60 s"; }
  bootstrap=$(cat "$state/bootstrap")

  {
    printf "export EXACTLY_BOOTSTRAP_SERVERS='%s'\n" "$bootstrap"
    printf "export EXACTLY_PG_CONNINFO='%s'\n" "$conninfo"
    printf "export PGHOST='%s' PGPORT='%s' PGUSER=postgres PGDATABASE=dev\n" "$host" "$port"
    printf "export PATH='%s:%s':\"\$PATH\"\n" "$(dirname "$exactly_bin")" "$(dirname "$produce_bin")"
  } >"$state/env"
  say "PostgreSQL: $conninfo"
  say "mock Kafka: $bootstrap, topics:$(printf ' %s' "${topics[@]}" | sed 's/ --topic//g')"
}

cmd=${1:-up}
case "$cmd" in
  --topic) cmd=up ;;
  *) shift || true ;;
esac

case "$cmd" in
  up)
    do_start "$@"
    trap 'say "stopping"; do_stop; exit 0' INT TERM
    print_env
    say "paste the lines above into your shell; Ctrl-C stops both"
    # Until a signal, or until the mock cluster is gone.
    while [ -n "$(mock_pid)" ]; do
      sleep 1 &
      wait $! || true
    done
    say "the mock cluster exited; stopping"
    do_stop
    ;;
  start)
    do_start "$@"
    print_env
    say "stop both with: scripts/dev-env.sh stop"
    ;;
  env) print_env ;;
  status)
    if running; then
      say "running: Kafka $(cat "$state/bootstrap"), PostgreSQL $(sed -n "s/^export EXACTLY_PG_CONNINFO='\(.*\)'$/\1/p" "$state/env")"
    else
      say "not running"
      exit 1
    fi
    ;;
  stop) do_stop; say "stopped" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
