#!/usr/bin/env bash
# ctest bench_quick: runs exactly-bench --quick against the test cluster and
# checks that it finished and printed every figure. Timings are not judged.
set -euo pipefail
bench=$1
out=$(mktemp /tmp/exactly-bench-quick.XXXXXX)
trap 'rm -f "$out"' EXIT
"$bench" --quick --callgrind "${@:2}" | tee "$out"
missing=0
for figure in '(c)  ceiling' '(p)  Python peer' '(b)  exactly, built-in' \
              "(b') exactly, projection" '(b2) exactly' 'latency at 5000' \
              '  exactly       p50' '  Python peer   p50' '  4 partitions' \
              ' 64 partitions' '256 partitions' 'b/c ' 'b/p ' "b'/b " \
              'peak RSS built-in' 'latency p99' 'fairness' '2 workers / 1' \
              'worker instructions/msg'; do
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
