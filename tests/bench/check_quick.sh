#!/usr/bin/env bash
# ctest bench_quick: runs exactly-bench --quick against the test cluster and
# checks that it finished and printed every figure. Timings are not judged.
set -euo pipefail
bench=$1
out=$(mktemp /tmp/exactly-bench-quick.XXXXXX)
trap 'rm -f "$out"' EXIT
# valgrind cannot run a worker built with AddressSanitizer (the default
# test build): the instructions per message are then left out.
cg=(--callgrind)
figures=('worker instructions/msg' 'per message by object: own code')
if ldd "${EXACTLY_BIN:?}" 2>/dev/null | grep -q libasan || ! command -v valgrind >/dev/null; then
  echo "bench_quick: sanitizer build or no valgrind: no callgrind figure"
  cg=()
  figures=()
fi
"$bench" --quick "${cg[@]}" "${@:2}" | tee "$out"
missing=0
for figure in "${figures[@]}" '(c)  ceiling' '(c0) SQL only' 'b/c0 ' '(p)  Python peer' '(b)  exactly, built-in' \
              "(b') exactly, projection" '(b2) exactly' 'latency at 5000' \
              '  exactly       p50' '  Python peer   p50' '  4 partitions' \
              ' 64 partitions' '256 partitions' 'b/c ' 'b/p ' "b'/b " \
              'peak RSS built-in' 'latency p99' 'fairness' '2 workers / 1' \
              'timing: first message to last commit' '     CPU: '; do
  if ! grep -qF -- "$figure" "$out"; then
    echo "bench_quick: no line with '$figure'" >&2
    missing=1
  fi
done
if grep -E 'msg/s|us/msg|ms ' "$out" | grep -qE '(nan|inf)'; then
  echo "bench_quick: a figure is not a number" >&2
  missing=1
fi
exit $missing
