#!/usr/bin/env bash
# The whole cycle on this machine, with nothing to set up by hand:
#
#   1. installs what is missing (scripts/deps.sh) and builds into build/;
#   2. starts a throwaway PostgreSQL and librdkafka's mock Kafka cluster;
#   3. creates a source table `accounts` (500 rows) and produces 20,000
#      zero-payload messages (key = account ID) to topic `events`, 4 partitions;
#   4. runs two pipelines over the same messages, each in its own group:
#      `projection` (config/projection.yaml: the built-in upsert, no C) keeps
#      `account_view` current; `ledger` (config/ledger.yaml: the C plugin
#      build/plugins/ledger.so, from tests/plugins/ledger.c) writes one row
#      per message;
#   5. prints what happened, then stops everything it started.
#
#   scripts/demo.sh [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."

messages=${1:-20000}
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON >/dev/null
cmake --build build -j2 --target exactly ledger exactly-mock-cluster >/dev/null
echo "demo: built build/cmd/exactly/exactly and build/plugins/ledger.so"

work=$(mktemp -d /tmp/exactly-demo.XXXXXX)
mock_pid=
cleanup() {
  [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
  scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

scripts/pg.sh start "$work/pg"
export EXACTLY_PG_CONNINFO
EXACTLY_PG_CONNINFO=$(scripts/pg.sh conninfo "$work/pg")
build/tests/tools/exactly-mock-cluster --topic events:4 \
  --produce-ids "$messages" --entities 500 \
  --bootstrap-file "$work/bootstrap" >/dev/null 2>"$work/mock.log" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
[ -s "$work/bootstrap" ] || { cat "$work/mock.log"; echo "demo: mock cluster did not start" >&2; exit 1; }
export EXACTLY_BOOTSTRAP_SERVERS
EXACTLY_BOOTSTRAP_SERVERS=$(cat "$work/bootstrap")
cat "$work/mock.log"

psql() { command psql -X -q -v ON_ERROR_STOP=1 "$EXACTLY_PG_CONNINFO" "$@"; }
psql <<'SQL'
CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, balance numeric NOT NULL);
INSERT INTO accounts SELECT g, 'account ' || g, g * 10 FROM generate_series(1, 500) g;
CREATE TABLE account_view (id bigint PRIMARY KEY, name text, balance numeric);
CREATE TABLE ledger (topic text, partition int, "offset" bigint, entity_id text,
  applied_at timestamptz DEFAULT now(), PRIMARY KEY (topic, partition, "offset"));
CREATE TABLE ledger_counters (entity_id text PRIMARY KEY, n bigint NOT NULL);
SQL

bin=build/cmd/exactly/exactly
"$bin" migrate -c config/projection.yaml
for cfg in projection ledger; do
  echo
  echo "== exactly check -c config/$cfg.yaml"
  "$bin" check -c "config/$cfg.yaml"
  echo "== exactly run -c config/$cfg.yaml --exit-idle 2000"
  "$bin" run -c "config/$cfg.yaml" --exit-idle 2000 -q
done

echo
echo "== results"
psql -c "SELECT pipeline, topic, partition, next_offset AS stored_offset, owner_epoch
           FROM exactly.offsets ORDER BY pipeline, partition"
psql -At -F ' ' <<'SQL'
SELECT 'account_view rows:', count(*), '(accounts named by at least one message)' FROM account_view;
SELECT 'ledger rows:', (SELECT count(*) FROM ledger), '(one per message), counters sum:',
       (SELECT sum(n) FROM ledger_counters);
SELECT 'dead letters:', count(*) FROM exactly.dead_letters;
SELECT 'throughput ' || pipeline || ':',
       round(sum(next_offset) / extract(epoch FROM max(updated_at) - min(claimed_at))),
       'msg/s (claim to last commit)'
  FROM exactly.offsets GROUP BY pipeline ORDER BY pipeline;
SQL
