#!/usr/bin/env bash
# scripts/dev-env.sh, the way a plugin developer uses it:
#
#   start   prints export lines on stdout; evaluated, they reach the
#           database `dev` with plain psql, put the built exactly and
#           exactly-produce first on PATH, and are all config/projection.yaml
#           needs: exactly migrate and exactly check pass against the pair,
#           and exactly-produce sends to the mock with no -b; `status`
#           exits 0, `env` prints the same lines, a second `start` changes
#           nothing;
#   stop    ends the mock cluster, removes the PostgreSQL cluster's
#           directory and the state; `status` then exits 1;
#   up      (no argument) in the foreground: on SIGINT, as from Ctrl-C, it
#           exits 0 having stopped both.
#
#   test_dev_env.sh BUILD_DIR       (binaries already built there)
set -euo pipefail

build=$(cd "$1" && pwd)
src=${EXACTLY_SOURCE_DIR:?}
tmp=$(mktemp -d /tmp/exactly-devenv.XXXXXX)
export EXACTLY_DEV_DIR=$tmp/state EXACTLY_BUILD_DIR=$build
dev=$src/scripts/dev-env.sh
fg_pid=

fail() { echo "FAIL: test_dev_env.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
show() { echo "---- $1" >&2; cat "$1" >&2 || true; echo "----" >&2; }

cleanup() {
  local rc=$?
  [ -n "$fg_pid" ] && kill -TERM "$fg_pid" 2>/dev/null && wait "$fg_pid" 2>/dev/null
  "$dev" stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

# gone PID ROOT: the mock cluster PID has ended and the PostgreSQL root
# directory ROOT is removed, within 60 s.
gone() {
  local i
  for i in $(seq 600); do
    if ! kill -0 "$1" 2>/dev/null && [ ! -e "$2" ]; then
      return 0
    fi
    sleep 0.1
  done
  kill -0 "$1" 2>/dev/null && fail "the mock cluster (pid $1) still runs"
  fail "the PostgreSQL cluster directory $2 is still there"
}

# ---- start ----------------------------------------------------------------
"$dev" start >"$tmp/exports" 2>"$tmp/start.err" || { show "$tmp/start.err"; fail "dev-env.sh start failed"; }
grep -q '^export EXACTLY_BOOTSTRAP_SERVERS=' "$tmp/exports" || { show "$tmp/exports"; fail "no EXACTLY_BOOTSTRAP_SERVERS export"; }
grep -q '^export EXACTLY_PG_CONNINFO=' "$tmp/exports" || { show "$tmp/exports"; fail "no EXACTLY_PG_CONNINFO export"; }
if grep -v '^export ' "$tmp/exports" >/dev/null; then show "$tmp/exports"; fail "start printed more than export lines on stdout"; fi
mock_pid=$(cat "$EXACTLY_DEV_DIR/mock.pid")
pg_root=$(cat "$EXACTLY_DEV_DIR/pg/root")
(
  unset PGHOST PGPORT PGUSER PGDATABASE PGSERVICE
  eval "$(cat "$tmp/exports")"
  case $EXACTLY_BOOTSTRAP_SERVERS in 127.0.0.1:[0-9]*) ;; *) fail "EXACTLY_BOOTSTRAP_SERVERS=$EXACTLY_BOOTSTRAP_SERVERS" ;; esac
  [ "$(psql -X -At -c 'SELECT current_database()')" = dev ] || fail "plain psql does not reach the database dev"
  [ "$(command -v exactly)" = "$build/cmd/exactly/exactly" ] || fail "exactly on PATH is $(command -v exactly)"
  [ "$(command -v exactly-produce)" = "$build/cmd/exactly-produce/exactly-produce" ] ||
    fail "exactly-produce on PATH is $(command -v exactly-produce)"
  psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE accounts (id bigint PRIMARY KEY, name text, balance numeric);
CREATE TABLE account_view (id bigint PRIMARY KEY, name text, balance numeric);
SQL
  exactly migrate -c "$src/config/projection.yaml" >"$tmp/migrate.out" 2>&1 ||
    { show "$tmp/migrate.out"; fail "exactly migrate -c config/projection.yaml failed"; }
  exactly check -c "$src/config/projection.yaml" >"$tmp/check.out" 2>&1 ||
    { show "$tmp/check.out"; fail "exactly check -c config/projection.yaml failed"; }
  grep -q '^OK  *kafka topic events' "$tmp/check.out" || { show "$tmp/check.out"; fail "check did not reach topic events"; }
  printf '1\n2\n' | exactly-produce -t events >"$tmp/produce.out" 2>&1 ||
    { show "$tmp/produce.out"; fail "exactly-produce with the exported brokers failed"; }
  grep -q '2 message(s) delivered to events' "$tmp/produce.out" || { show "$tmp/produce.out"; fail "no delivery summary"; }
)
note "start: exports reach psql, exactly migrate/check with config/projection.yaml, exactly-produce"

"$dev" status 2>/dev/null || fail "status exits non-zero while both run"
"$dev" env | cmp -s - "$tmp/exports" || fail "env prints other lines than start did"
"$dev" start >"$tmp/exports2" 2>/dev/null || fail "a second start failed"
cmp -s "$tmp/exports" "$tmp/exports2" || fail "a second start printed other exports"
[ "$(cat "$EXACTLY_DEV_DIR/mock.pid")" = "$mock_pid" ] || fail "a second start started another mock cluster"

# ---- stop -----------------------------------------------------------------
"$dev" stop 2>/dev/null || fail "stop failed"
gone "$mock_pid" "$pg_root"
[ ! -e "$EXACTLY_DEV_DIR" ] || fail "stop left $EXACTLY_DEV_DIR"
if "$dev" status 2>/dev/null; then fail "status exits 0 after stop"; fi
note "stop: mock cluster ended, PostgreSQL removed, state removed"

# ---- foreground, Ctrl-C -----------------------------------------------------
# A background job of a script starts with SIGINT ignored; give it back.
env --default-signal=INT "$dev" >"$tmp/fg.out" 2>"$tmp/fg.err" &
fg_pid=$!
for _ in $(seq 1200); do
  [ -s "$tmp/fg.out" ] && grep -q 'EXACTLY_PG_CONNINFO' "$tmp/fg.out" && break
  kill -0 "$fg_pid" 2>/dev/null || { show "$tmp/fg.err"; fail "dev-env.sh (foreground) exited early"; }
  sleep 0.1
done
grep -q 'EXACTLY_PG_CONNINFO' "$tmp/fg.out" || { show "$tmp/fg.err"; fail "dev-env.sh (foreground) printed no exports in 120 s"; }
mock_pid=$(cat "$EXACTLY_DEV_DIR/mock.pid")
pg_root=$(cat "$EXACTLY_DEV_DIR/pg/root")
kill -INT "$fg_pid"
rc=0
wait "$fg_pid" || rc=$?
fg_pid=
[ $rc -eq 0 ] || { show "$tmp/fg.err"; fail "dev-env.sh (foreground) exited $rc after SIGINT"; }
gone "$mock_pid" "$pg_root"
note "foreground: SIGINT stopped both, exit 0"
note "dev-env test passed"
