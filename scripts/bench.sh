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
# EXACTLY_BENCH_STATEMENTS=1 also loads pg_stat_statements into the
# throwaway cluster for the per-statement figures of EXACTLY_BENCH_BC_ONLY
# (tests/bench/bench.c); EXACTLY_TEST_PG_PORT picks its socket's port.
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
if [ -n "${EXACTLY_BENCH_STATEMENTS:-}" ]; then
  # Per-statement figures (tests/bench/bench.c): pg_stat_statements loaded.
  root=$(cat "$work/pg/root")
  printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\npg_stat_statements.track_planning = on\n" |
    { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- tee -a "$root/data/postgresql.conf"; else tee -a "$root/data/postgresql.conf"; fi; } >/dev/null
  scripts/pg.sh restart "$work/pg"
fi

EXACTLY_TEST_PG_DIR="$work/pg" \
EXACTLY_BIN="$PWD/build/cmd/exactly/exactly" \
EXACTLY_PLUGIN_DIR="$PWD/build/plugins" \
  build/tests/bench/exactly-bench "$@"
[ -n "${EXACTLY_BENCH_BC_ONLY:-}" ] && exit 0

# The outbox relay: rows/s against a tight producer loop, and end to end.
EXACTLY_TEST_PG_DIR="$work/pg" \
EXACTLY_BIN="$PWD/build/cmd/exactly/exactly" \
EXACTLY_PLUGIN_DIR="$PWD/build/plugins" \
  build/tests/bench/exactly-bench-relay
