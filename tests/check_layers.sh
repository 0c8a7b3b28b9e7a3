#!/usr/bin/env bash
# The layers of lib/ call down, never up (docs/ARCHITECTURE.md): no file
# of a layer includes a header of a layer above it. An include is
# resolved as the build resolves it: "dir/x.h" names folder dir, a bare
# "x.h" the folder of lib/ that holds x.h (or the layer's own).
set -euo pipefail
lib=${1:?usage: check_layers.sh LIB_DIR}

# layer: the layers it must not include. From the bottom: util; config;
# pg and kafka (side by side); builtin (the upsert handler, ABI only);
# plugin (loads handlers, assembles the host table); engine; worker and
# relay (side by side: the processes that write a metrics slot); ops (drives
# the engine itself, never through the worker);
# process (the supervisor forks workers and relays). cmd/ is above lib/.
rules=(
  "util: config pg kafka builtin plugin engine worker relay ops process"
  "config: pg kafka builtin plugin engine worker relay ops process"
  "pg: kafka builtin plugin engine worker relay ops process"
  "kafka: pg builtin plugin engine worker relay ops process"
  "builtin: pg kafka plugin engine worker relay ops process"
  "plugin: engine worker relay ops process"
  "engine: worker relay ops process"
  "worker: relay ops process"
  "relay: worker ops process"
  "ops: worker process"
)

# The folder of lib/ that holds each header, looked up once.
declare -A folder
while IFS= read -r h; do
  [ -n "${folder[${h#*/}]:-}" ] || folder[${h#*/}]=${h%%/*}
done < <(cd "$lib" && ls -- */*.h)

bad=0
for rule in "${rules[@]}"; do
  from=${rule%%:*}
  forbidden=" ${rule#*:} "
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    re='^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)"'
    [[ ${rest#*:} =~ $re ]] || continue
    inc=${BASH_REMATCH[1]}
    if [[ $inc == */* ]]; then
      to=${inc%%/*}
    elif [ -e "$lib/$from/$inc" ]; then
      to=$from
    else
      to=${folder[$inc]:-}
    fi
    if [[ -n $to && $forbidden == *" $to "* ]]; then
      echo "FAIL: $file:$line: lib/$from includes \"$inc\" of lib/$to (a layer above it)"
      bad=1
    fi
  done < <(cd "$lib/.." && grep -sn '#[[:space:]]*include[[:space:]]*"' lib/"$from"/*.[ch] || true)
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
[ "$bad" = 0 ] && echo "OK: no layer of lib/ includes a layer above it; dead_letters, part_state and the worker's consumer include none of their users"
exit "$bad"
