#!/usr/bin/env bash
# docs/CONFIGURATION.md against the tables it is generated from: the file
# must be exactly what exactly-config-reference prints now.
#
#   check_config_reference.sh TOOL CONFIGURATION.md BUILD_DIR
set -euo pipefail

tool=$1
doc=$2
build=$3
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1

now=$(mktemp)
trap 'rm -f "$now"' EXIT
"$tool" "$now"
if ! diff -u "$doc" "$now" >&2; then
  echo "FAIL: $doc differs from the configuration tables (diff above:" \
       "- committed, + generated); regenerate it with:" \
       "cmake --build $build --target config-reference" >&2
  exit 1
fi
echo "$doc matches the configuration tables"
