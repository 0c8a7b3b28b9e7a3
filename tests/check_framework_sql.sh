#!/usr/bin/env bash
# Statements on the framework's tables live in lib/pg/store_*.c, one C
# function each (docs/ARCHITECTURE.md): lib/ops holds the rules and cmd/
# parses and prints, so neither may hold the text of a statement on
# offsets, dead_letters, dedup_keys, reprocess_runs, offset_resets or
# commit_marks.
# A statement is recognised by its verb and the table in the same string
# literal ("UPDATE %s.reprocess_runs SET ...", "FROM %1$s.offsets").
#
#   check_framework_sql.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: check_framework_sql.sh SOURCE_DIR}
tables='offsets|dead_letters|dedup_keys|reprocess_runs|offset_resets|commit_marks'
verbs='SELECT|INSERT INTO|UPDATE|DELETE FROM|FROM|JOIN|INTO'

hits=$(cd "$src" && grep -nE "\"[^\"]*\\b($verbs)\\b[^\"]*\\.\"?($tables)\\b" \
         lib/ops/*.[ch] cmd/exactly/*.[ch] || true)
if [ -n "$hits" ]; then
  while IFS= read -r hit; do
    echo "FAIL: ${hit%%:*}:$(cut -d: -f2 <<<"$hit"): SQL on a framework table outside lib/pg/store_*.c"
  done <<<"$hits"
  exit 1
fi
echo "OK: no statement on a framework table in lib/ops or cmd/exactly"
