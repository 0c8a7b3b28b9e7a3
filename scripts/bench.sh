#!/usr/bin/env bash
# The benchmark: builds a release build into build/, starts a throwaway
# PostgreSQL (default settings, synchronous_commit=on, fsync on) and runs
# build/tests/bench/exactly-bench (README, section Benchmark): the C
# ceiling loop, the Python peer, exactly with the built-in upsert and with
# a C plugin, in interleaved rounds; CPU per message, RSS, latency,
# fairness, partition scale, two workers; with --callgrind, instructions
# per message.
#
#   scripts/bench.sh [--messages N] [--rounds N] [--quick] [--callgrind]
#                    [--callgrind-only] [--strict]
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
