#!/usr/bin/env bash
# Build exactly with AddressSanitizer + UndefinedBehaviorSanitizer and run
# its tests. Extra arguments go to ctest:
#
#   scripts/test.sh                 everything but the labels below
#   scripts/test.sh -L unit         unit tests only (no services)
#   scripts/test.sh -L integration  real PostgreSQL + mock Kafka
#   scripts/test.sh -R smoke -V     one test, verbose
#   scripts/test.sh -L soak         the soak: steady load through one worker
#                                   for EXACTLY_SOAK_SECONDS (default 300)
#   scripts/test.sh -L mutation     builds two broken variants; the crash
#                                   tests must catch both (about 6 minutes)
#   scripts/test.sh -L long         multi-host and rolling-restart runs
#   scripts/test.sh -L bench        the benchmark's --quick run (a few
#                                   minutes): checks it prints every figure
#
# These four labels run only when an argument names them: each one no
# argument names is excluded with `-LE`, joined to the caller's own -LE
# (ctest 3.25 keeps only the last -LE given). They keep the default run,
# which CI runs, under 30 minutes on 2 cores.
# Tests that need a real Kafka broker run when EXACTLY_TEST_BOOTSTRAP_SERVERS
# is set and are reported as skipped otherwise. The build directory is
# build-test (EXACTLY_TEST_BUILD_DIR overrides). Exits with ctest's status.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

# The demo and the benchmark build with optimisation, where GCC sees more
# (inlined format truncation, say): -Werror must hold there too.
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON >/dev/null
cmake --build build-release -j2

build=${EXACTLY_TEST_BUILD_DIR:-build-test}
cmake -S . -B "$build" -DEXACTLY_SANITIZE=ON -DEXACTLY_FAULT_INJECTION=ON \
  -DCMAKE_BUILD_TYPE=Debug
cmake --build "$build" -j2

# LeakSanitizer cannot run under ptrace and in some sandboxes; find out
# whether it works here rather than failing every test at exit.
leaks=1
probe_dir=$(mktemp -d /tmp/exactly-lsan.XXXXXX)
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <stdlib.h>\nint main(void){void *volatile p = malloc(7); p = 0; (void)p; return 0;}\n' \
  >"$probe_dir/probe.c"
if cc -fsanitize=address -g -o "$probe_dir/probe" "$probe_dir/probe.c" 2>/dev/null; then
  # The probe leaks on purpose, so it fails; only its report matters.
  probe_out=$(ASAN_OPTIONS=detect_leaks=1 "$probe_dir/probe" 2>&1 || true)
  if [[ "$probe_out" != *"detected memory leaks"* ]]; then
    leaks=0
    echo "test.sh: LeakSanitizer does not work here (ptrace or sandbox): leak checks off"
  fi
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=$leaks:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Unit tests may run side by side; integration tests are RUN_SERIAL.
export CTEST_PARALLEL_LEVEL=${CTEST_PARALLEL_LEVEL:-2}

args=("$@")
excl=()
for label in soak long mutation bench; do
  [[ " $* " == *"$label"* ]] || excl+=("$label")
done
if ((${#excl[@]})); then
  pattern=$(IFS='|'; echo "${excl[*]}")
  excluded=0
  for i in "${!args[@]}"; do
    case "${args[$i]}" in
      -LE | --label-exclude)
        j=$((i + 1))
        args[j]="(${args[j]-})|$pattern"
        excluded=1
        ;;
    esac
  done
  ((excluded)) || args+=(-LE "$pattern")
fi

rc=0
ctest --test-dir "$build" --output-on-failure "${args[@]}" || rc=$?
exit "$rc"
