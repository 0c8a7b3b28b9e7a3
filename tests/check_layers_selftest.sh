#!/usr/bin/env bash
# check_layers.sh must refuse an include that runs up a layer, however it
# is written (by path or by bare name), and accept one that runs down.
set -euo pipefail
check=${1:?usage: check_layers_selftest.sh CHECK_LAYERS_SH}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mk() { mkdir -p "$tmp/$1/lib/util" "$tmp/$1/lib/pg" "$tmp/$1/lib/process" \
         "$tmp/$1/lib/worker" "$tmp/$1/lib/plugin"
       touch "$tmp/$1/lib/util/strbuf.h" "$tmp/$1/lib/process/http.h" \
         "$tmp/$1/lib/worker/worker.h" "$tmp/$1/lib/plugin/options.h"; }

mk down
printf '#include "util/strbuf.h"\n#include "strbuf.h"\n' >"$tmp/down/lib/pg/txn.c"
printf '#include "worker.h"\n' >"$tmp/down/lib/process/supervisor.c"
bash "$check" "$tmp/down/lib" >/dev/null || { echo "FAIL: a downward include refused"; exit 1; }

for up in 'pg/txn.c:options.h' 'worker/worker.h:process/http.h' \
          'util/log.c:worker.h'; do
  mk up
  printf '#include "%s"\n' "${up#*:}" >"$tmp/up/lib/${up%%:*}"
  if out=$(bash "$check" "$tmp/up/lib"); then
    echo "FAIL: lib/${up%%:*} including \"${up#*:}\" was accepted"; exit 1
  fi
  grep -q '^FAIL: ' <<<"$out" || { echo "FAIL: no FAIL line for ${up}"; exit 1; }
  rm -rf "$tmp/up"
done
echo "OK: check_layers.sh refuses upward includes and accepts downward ones"
