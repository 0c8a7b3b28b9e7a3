#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in a build directory of their own
# (once; later calls only rebuild what changed) and fuzzes one of them for
# a few seconds from its seeds. CTest's `fuzz` label runs this for every
# target, from any build (scripts/test.sh builds with gcc).
#
#   tests/fuzz/run.sh SOURCE_DIR FUZZ_BUILD_DIR NAME SECONDS
#
# Exits 77 (CTest: skipped) when clang or its libFuzzer runtime is missing
# (scripts/deps.sh installs both), 0 when the run found nothing, non-zero
# with the crashing input written to FUZZ_BUILD_DIR otherwise.
set -euo pipefail
src=$1 build=$2 name=$3 seconds=$4

if ! command -v clang >/dev/null 2>&1; then
  echo "SKIP: clang is not installed (scripts/deps.sh installs it)"
  exit 77
fi
mkdir -p "$build"
# Two fuzz tests may start together: one configures and builds at a time.
exec 9>"$build/.lock"
flock 9
if [ ! -f "$build/CMakeCache.txt" ]; then
  probe="$build/probe"
  if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)%s\n' \
       '{ (void)d; (void)n; return 0; }' |
       clang -fsanitize=fuzzer -x c - -o "$probe" >/dev/null 2>&1; then
    echo "SKIP: clang cannot link libFuzzer (scripts/deps.sh installs libclang-rt-14-dev)"
    exit 77
  fi
  rm -f "$probe"
  if ! CC=clang cmake -S "$src" -B "$build" -DEXACTLY_FUZZ=ON \
         -DCMAKE_BUILD_TYPE=Debug >"$build/configure.log" 2>&1; then
    cat "$build/configure.log"
    rm -f "$build/CMakeCache.txt"
    exit 1
  fi
fi
if ! cmake --build "$build" --target "fuzz_$name" -j2 >"$build/build-$name.log" 2>&1; then
  cat "$build/build-$name.log"
  exit 1
fi
flock -u 9

# New inputs go to the build's corpus, never into the source tree.
mkdir -p "$build/corpus/$name"
exec "$build/tests/fuzz/fuzz_$name" "$build/corpus/$name" \
  "$src/tests/fuzz/corpus/$name" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -artifact_prefix="$build/$name-" -print_final_stats=1
