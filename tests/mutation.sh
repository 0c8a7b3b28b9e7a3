#!/usr/bin/env bash
# Mutation check: do the crash tests see a broken contract?
#
#   tests/mutation.sh [BUILD_DIR]
#
# For each deliberate breakage of the runtime (CMake EXACTLY_MUTATION):
#   no_fence          the offset update ignores owner epoch and start offset
#   split_offset_txn  the offset advances in its own transaction after the
#                     batch's writes committed
# it builds a variant (RelWithDebInfo, no sanitizers) in
# BUILD_DIR/mutation-<m> (default BUILD_DIR: build-mutation in the source
# tree), starts a throwaway PostgreSQL for it (scripts/pg.sh) and runs the
# crash tests of that build (test_fencing, test_crash, test_rebalance, and
# test_pg_terminate, whose COMMIT that lands unanswered is a crash at the
# worst moment), the one most likely to catch the mutation first, until a
# run fails. A test
# that reads EXACTLY_TEST_SEED runs up to EXACTLY_MUTATION_RUNS (3) times,
# with seeds EXACTLY_MUTATION_SEED (1000) + 1, + 2, ...; one with fixed
# choices runs once.
#
# A mutation is "detected" when a run exits 1 with a FAIL line about the
# contract: a duplicate (a ledger row twice, a unique violation that ended
# in the dead-letter table), a loss (an offset without a ledger row), a
# stored offset that disagrees with the ledger, or a fence that did not
# refuse. A run that fails any other way (a timeout, a signal, a service
# that would not start, a FAIL about something else) is reported as
# inconclusive, not as a detection. The worker logs of every run must say
# `MUTATION BUILD`, or the run is inconclusive too (it did not test the
# variant).
#
# Exits 0 when both mutations were detected, 1 when one survived every
# run, 2 when a build or the database failed. Prints, per mutation, which
# test and seed detected it and how long that took.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-mutation}
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
runs=${EXACTLY_MUTATION_RUNS:-3}
seed0=${EXACTLY_MUTATION_SEED:-1000}
# One run of a crash test takes 10-70 s here; a hung one is cut off.
run_timeout=${EXACTLY_MUTATION_RUN_TIMEOUT:-240}

# Tests to try per mutation, most likely detector first. A zombie that
# commits after a new owner claimed its partitions is exactly what the
# fencing test stages; a kill between the writes' COMMIT and the separate
# offset update is what the crash test's kills inside transactions aim at
# (by chance: a run can miss the window), and what test_pg_terminate's
# phase C hits every time.
tests_for() {
  case "$1" in
    no_fence) echo "fencing crash rebalance" ;;
    split_offset_txn) echo "crash pg_terminate rebalance fencing" ;;
  esac
}

# A FAIL line that names a broken contract, and ones that name the harness.
violation='ledger|dead.letter|dead_letters|next_offset|stored offset|counters|fenced|applied|unique|duplicate|confirm'
harness='cannot connect|cannot execute|cannot read|pg_start|rd_kafka_new|metadata of|watermarks of|delivery|SKIP:'

t_start=$(date +%s)
log_dir="$build/mutation-logs"
mkdir -p "$log_dir"
pg_dirs=()

cleanup() {
  local d
  for d in "${pg_dirs[@]}"; do
    bash "$src/scripts/pg.sh" stop "$d" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

say() { echo "mutation.sh: $*"; }

# Configure and build the variant; prints nothing unless it fails.
build_variant() {
  local m=$1 b=$2 log=$log_dir/build-$1.log
  if ! cmake -S "$src" -B "$b" -DEXACTLY_MUTATION="$m" \
         -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXACTLY_SANITIZE=OFF \
         >"$log" 2>&1 ||
     ! cmake --build "$b" -j2 --target exactly ledger exactly-mock-cluster \
         integration_test_crash integration_test_fencing \
         integration_test_rebalance integration_test_pg_terminate \
         >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "building the $m variant failed (log: $log)"
    exit 2
  fi
  grep -q "^EXACTLY_MUTATION:STRING=$m\$" "$b/CMakeCache.txt" ||
    { say "$b is not configured as the $m mutation"; exit 2; }
}

# Run one test of build b with seed; sets `verdict` to detected, survived
# or inconclusive and `why` to the deciding line.
run_one() {
  local b=$1 pg=$2 t=$3 seed=$4 out=$5 rc=0 dir
  verdict=inconclusive
  why=""
  env EXACTLY_TEST_PG_DIR="$pg" \
      EXACTLY_BIN="$b/cmd/exactly/exactly" \
      EXACTLY_PLUGIN_DIR="$b/plugins" \
      EXACTLY_SOURCE_DIR="$src" \
      EXACTLY_MOCK_CLUSTER_BIN="$b/tests/tools/exactly-mock-cluster" \
      EXACTLY_TEST_SEED="$seed" \
      EXACTLY_TEST_KEEP=1 \
      timeout -k 10 "$run_timeout" "$b/tests/integration/integration_test_$t" \
      >"$out" 2>&1 || rc=$?
  # The test's temporary directory holds the worker logs: they must come
  # from the mutation build. Then it goes.
  dir=$(grep -o '/tmp/exactly-[a-z]*-[A-Za-z0-9]\{6\}' "$out" | head -n 1 || true)
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    if ! grep -rqs 'MUTATION BUILD' "$dir"; then
      why="no worker log in $dir says MUTATION BUILD"
      rm -rf "$dir"
      return
    fi
    rm -rf "$dir"
  else
    why="the test named no log directory"
    return
  fi
  local fail
  fail=$(grep -m 1 '^FAIL: ' "$out" || true)
  case $rc in
    0) verdict=survived; why="passed" ;;
    1)
      if [ -n "$fail" ] && echo "$fail" | grep -Eq "$violation" &&
         ! echo "$fail" | grep -Eq "$harness"; then
        verdict=detected
      fi
      why=${fail:-"exit 1 without a FAIL line"}
      ;;
    124|137) why="timed out after ${run_timeout} s" ;;
    *) why="exit status $rc${fail:+: $fail}" ;;
  esac
}

detected_all=1
report=()
for m in no_fence split_offset_txn; do
  b="$build/mutation-$m"
  t0=$(date +%s)
  say "$m: building $b"
  build_variant "$m" "$b"
  pg="$b/pg"
  pg_dirs+=("$pg")
  EXACTLY_TEST_PG_FAST=1 bash "$src/scripts/pg.sh" start "$pg" >"$log_dir/pg-$m.log" 2>&1 ||
    { cat "$log_dir/pg-$m.log" >&2; say "cannot start PostgreSQL for $m"; exit 2; }
  say "$m: built in $(( $(date +%s) - t0 )) s"

  found=""
  for t in $(tests_for "$m"); do
    for i in $(seq 1 "$runs"); do
      seed=$((seed0 + i))
      out="$log_dir/$m-$t-$seed.log"
      t1=$(date +%s)
      run_one "$b" "$pg" "$t" "$seed" "$out"
      seeded=1
      what="test_$t seed $seed"
      if ! grep -q EXACTLY_TEST_SEED "$src/tests/integration/test_$t.c"; then
        seeded=0
        what="test_$t (fixed seeds)"
      fi
      say "$m: $what: $verdict in $(( $(date +%s) - t1 )) s ($why)"
      if [ "$verdict" = detected ]; then
        found="$what, $(( $(date +%s) - t0 )) s after the build started; $why"
        break 2
      fi
      # The same choices again would only repeat the timing.
      [ "$seeded" -eq 1 ] || break
    done
  done
  bash "$src/scripts/pg.sh" stop "$pg" >/dev/null 2>&1 || true
  if [ -n "$found" ]; then
    report+=("$m: DETECTED by $found")
  else
    report+=("$m: SURVIVED every run (logs: $log_dir)")
    detected_all=0
  fi
done

for line in "${report[@]}"; do say "$line"; done
say "total $(( $(date +%s) - t_start )) s"
if [ "$detected_all" -eq 1 ]; then
  say "both mutations detected"
  exit 0
fi
say "a mutation survived: the crash tests do not guard that part of the contract"
exit 1
