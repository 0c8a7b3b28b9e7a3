#!/usr/bin/env bash
# The layers of lib/ call down, never up (docs/ARCHITECTURE.md): no file
# of a layer includes a header of a layer above it. An include is
# resolved as the build resolves it: "dir/x.h" names folder dir, a bare
# "x.h" the folder of lib/ that holds x.h (or the layer's own).
set -euo pipefail
lib=${1:?usage: check_layers.sh LIB_DIR}

# layer: the layers it must not include.
rules=(
  "engine: worker ops process relay"
  "kafka: engine worker ops process relay"
)

# The folder of lib/ that holds header $1 ("" when none does).
folder_of() {
  local h
  h=$(cd "$lib" && ls -- */"$1" 2>/dev/null | head -n 1)
  echo "${h%%/*}"
}

bad=0
for rule in "${rules[@]}"; do
  from=${rule%%:*}
  forbidden=" ${rule#*:} "
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    inc=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' <<<"${rest#*:}")
    [ -n "$inc" ] || continue
    if [[ $inc == */* ]]; then
      to=${inc%%/*}
    elif [ -e "$lib/$from/$inc" ]; then
      to=$from
    else
      to=$(folder_of "$inc")
    fi
    if [[ -n $to && $forbidden == *" $to "* ]]; then
      echo "FAIL: $file:$line: lib/$from includes \"$inc\" of lib/$to (a layer above it)"
      bad=1
    fi
  done < <(cd "$lib/.." && grep -n '#[[:space:]]*include[[:space:]]*"' lib/"$from"/*.[ch] || true)
done

# Modules that must not know their users: file: the headers it must not
# include (directly; what it includes must not either, checked by hand).
modules=(
  "engine/dead_letters.h: engine.h engine_internal.h cycle_internal.h"
  "engine/dead_letters.c: engine.h engine_internal.h cycle_internal.h"
  "engine/part_state.h: engine.h engine_internal.h cycle_internal.h"
  "engine/part_state.c: engine.h engine_internal.h cycle_internal.h"
  "worker/consumer.h: worker.h worker_internal.h engine.h"
  "worker/consumer.c: worker.h worker_internal.h engine.h"
)
for rule in "${modules[@]}"; do
  file=${rule%%:*}
  for h in ${rule#*:}; do
    if grep -qE "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]*/)?$h\"" "$lib/$file"; then
      echo "FAIL: lib/$file includes \"$h\" (a user of it)"
      bad=1
    fi
  done
done
[ "$bad" = 0 ] && echo "OK: lib/engine and lib/kafka include no layer above them; dead_letters, part_state and the worker's consumer include none of their users"
exit "$bad"
