#!/usr/bin/env bash
# The throughput benchmark: builds a release build into build/, starts a
# throwaway PostgreSQL (default settings, synchronous_commit=on, fsync on)
# and runs build/tests/bench/exactly-bench, which prints messages per second
# for (a) one transaction per message, (b) exactly with the built-in upsert,
# (b') exactly with a C plugin, (c) exactly's SQL from a tight loop, the
# ratios b/a, b/c, b'/c and the worker's peak RSS, against their targets.
#
#   scripts/bench.sh [--messages N] [--naive-messages N] [--strict]
#
# All figures come from one run on this machine, so the ratios compare like
# with like; absolute numbers move with whatever else the machine does.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON >/dev/null
cmake --build build -j2 --target exactly projection exactly-bench ledger \
  exactly-bench-relay >/dev/null

work=$(mktemp -d /tmp/exactly-bench-pg.XXXXXX)
trap 'scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT INT TERM
scripts/pg.sh start "$work/pg"

EXACTLY_TEST_PG_DIR="$work/pg" \
EXACTLY_BIN="$PWD/build/cmd/exactly/exactly" \
EXACTLY_PLUGIN_DIR="$PWD/build/plugins" \
  build/tests/bench/exactly-bench "$@"

# The outbox relay: rows/s against a tight producer loop, and end to end.
EXACTLY_TEST_PG_DIR="$work/pg" \
EXACTLY_BIN="$PWD/build/cmd/exactly/exactly" \
EXACTLY_PLUGIN_DIR="$PWD/build/plugins" \
  build/tests/bench/exactly-bench-relay
