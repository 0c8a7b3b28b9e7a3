#!/usr/bin/env bash
# The installed tree, used the way a plugin author and an operator use it,
# from outside the source tree:
#
#   1. `cmake --install BUILD --prefix TMP` puts the binaries, the plugin
#      headers (those of include/exactly and nothing else), exactly.pc, a
#      man page per command, the docs and examples and the systemd unit in
#      place;
#   2. the README's example plugin (examples/plugins/seen.c) builds in an
#      empty directory with the README's own pkg-config command line and
#      only the installed headers, exporting the one entry symbol, and
#      with the README's CMake block; the other example plugins build
#      there too with -Werror;
#   3. with the pg fixture's PostgreSQL and a mock Kafka cluster, the
#      installed `exactly migrate` and `exactly check` accept a
#      configuration using that plugin, the installed `exactly-produce`
#      sends four keys, and the installed `exactly worker` applies them
#      through the plugin;
#   4. every man page renders (man -l, groff with warnings as errors) and
#      names every option of its command's --help;
#   5. systemd-analyze verify accepts the unit, whose ExecStart is the
#      installed binary and whose TimeoutStopSec exceeds the
#      --shutdown-timeout it passes (skipped, and said, without
#      systemd-analyze).
#
#   test_install_tree.sh BUILD_DIR
# Environment (exactly_add_service_test): EXACTLY_SOURCE_DIR,
# EXACTLY_TEST_PG_DIR, EXACTLY_MOCK_CLUSTER_BIN. EXACTLY_TEST_KEEP=1 keeps
# the temporary directory.
set -euo pipefail

build=$(cd "$1" && pwd)
src=${EXACTLY_SOURCE_DIR:?}
tmp=$(mktemp -d /tmp/exactly-install.XXXXXX)
prefix=$tmp/prefix
mock_pid=
db=
admin=

fail() { echo "FAIL: test_install_tree.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

cleanup() {
  local rc=$?
  if [ -n "$mock_pid" ]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  if [ -n "$db" ]; then
    psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
  if [ "${EXACTLY_TEST_KEEP:-}" = 1 ]; then
    echo "# kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit $rc
}
trap cleanup EXIT

# Print a file to stderr, framed, before failing on it.
show() { echo "---- $1" >&2; cat "$1" >&2 || true; echo "----" >&2; }

# ---- 1. the tree ------------------------------------------------------
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { show "$tmp/install.log"; fail "cmake --install failed"; }

doc=$prefix/share/doc/exactly
man1=$prefix/share/man/man1
unit=$prefix/lib/systemd/system/exactly@.service
for f in bin/exactly bin/exactly-produce; do
  [ -x "$prefix/$f" ] || fail "$f is not installed"
done
for f in share/pkgconfig/exactly.pc lib/systemd/system/exactly@.service \
         share/doc/exactly/README.md share/doc/exactly/PRIVILEGES.md \
         share/doc/exactly/CONFIGURATION.md share/doc/exactly/OPERATIONS.md \
         share/doc/exactly/examples/config/projection.yaml \
         share/doc/exactly/examples/plugins/README.md \
         share/doc/exactly/examples/plugins/seen.c \
         share/doc/exactly/examples/plugins/projection.c; do
  [ -f "$prefix/$f" ] || fail "$f is not installed"
done
# The plugin ABI and nothing else: the headers of include/exactly, no
# header of lib/ anywhere.
want=$(cd "$src/include/exactly" && ls -1 ./*.h | sort)
have=$(cd "$prefix/include/exactly" && ls -1 ./*.h | sort)
[ "$want" = "$have" ] ||
  fail "installed headers differ from include/exactly: have $(echo $have), want $(echo $want)"
others=$(cd "$prefix" && find . -name '*.h' ! -path './include/exactly/*')
[ -z "$others" ] || fail "headers outside include/exactly installed: $others"
cmp -s "$doc/examples/plugins/seen.c" "$src/plugins/seen.c" ||
  fail "the installed seen.c is not plugins/seen.c"
# The test handlers are not examples: none of tests/plugins is installed.
for f in "$src"/tests/plugins/*.c; do
  [ ! -e "$doc/examples/plugins/$(basename "$f")" ] ||
    fail "the test handler $(basename "$f") is installed as an example"
done
note "installed tree: binaries, $(echo $have | wc -w) headers, exactly.pc, docs, unit"

# ---- 2. a plugin built against the installed headers only ------------
export PKG_CONFIG_PATH=$prefix/share/pkgconfig
version=$("$prefix/bin/exactly" --version | awk '{print $2}')
[ "$(pkg-config --modversion exactly)" = "$version" ] ||
  fail "pkg-config --modversion exactly says '$(pkg-config --modversion exactly)', exactly --version '$version'"
[ "$(pkg-config --cflags exactly | sed 's/ *$//')" = "-I$prefix/include" ] ||
  fail "pkg-config --cflags exactly is '$(pkg-config --cflags exactly)'"

plug=$tmp/plugin
mkdir "$plug"
cp "$doc/examples/plugins/seen.c" "$doc/examples/plugins/projection.c" \
   "$plug/"
# The README's command, as written there (installed copy).
readme_cc=$(grep -m1 '^cc .*\$(pkg-config --cflags exactly).*seen\.c' "$doc/README.md") ||
  fail "README.md shows no 'cc ... \$(pkg-config --cflags exactly) ... seen.c' line"
(cd "$plug" && env -u CPATH -u C_INCLUDE_PATH sh -ec "$readme_cc") \
  >"$tmp/cc.log" 2>&1 || { show "$tmp/cc.log"; fail "README's command failed: $readme_cc"; }
[ -f "$plug/seen.so" ] || fail "README's command made no seen.so: $readme_cc"
# Every exactly header it read came from the prefix.
(cd "$plug" && env -u CPATH -u C_INCLUDE_PATH cc -M $(pkg-config --cflags exactly) seen.c) \
  | tr ' \\' '\n\n' | grep 'exactly/' >"$tmp/deps" || fail "seen.c includes no exactly header"
if grep -v "^$prefix/include/exactly/" "$tmp/deps" >/dev/null; then
  show "$tmp/deps"; fail "seen.c read exactly headers from outside the prefix"
fi
exported=$(nm -D --defined-only "$plug/seen.so" | awk '$2 == "T" {print $3}' |
           grep -v -e '^_init$' -e '^_fini$' || true)
[ "$exported" = "exactly_handler_entry" ] ||
  fail "seen.so exports '$(echo $exported)', want exactly_handler_entry only"
# The README's CMake way, as written there, in a project of its own.
mkdir "$tmp/cmake-plugin"
cp "$plug/seen.c" "$tmp/cmake-plugin/"
{
  echo 'cmake_minimum_required(VERSION 3.18)'
  echo 'project(seen C)'
  awk '/^```cmake$/ { on = 1; block = ""; next }
       on && /^```$/ { on = 0; if (block ~ /pkg_check_modules\(EXACTLY/) { printf "%s", block; exit } next }
       on { block = block $0 "\n" }' "$doc/README.md"
} >"$tmp/cmake-plugin/CMakeLists.txt"
grep -q 'pkg_check_modules(EXACTLY' "$tmp/cmake-plugin/CMakeLists.txt" ||
  fail "README.md shows no cmake block with pkg_check_modules(EXACTLY ...)"
(cd "$tmp/cmake-plugin" && env -u CPATH -u C_INCLUDE_PATH cmake -S . -B b &&
   env -u CPATH -u C_INCLUDE_PATH cmake --build b) >"$tmp/cmake-plugin.log" 2>&1 ||
  { show "$tmp/cmake-plugin.log"; fail "the README's CMake block does not build seen.c"; }
[ -f "$tmp/cmake-plugin/b/seen.so" ] || fail "the README's CMake block made no seen.so"
for p in projection; do
  (cd "$plug" && env -u CPATH -u C_INCLUDE_PATH cc -std=c11 -Wall -Wextra -Werror \
     -shared -fPIC -fvisibility=hidden $(pkg-config --cflags exactly) \
     -o "$p.so" "$p.c") >"$tmp/cc-$p.log" 2>&1 ||
    { show "$tmp/cc-$p.log"; fail "examples/plugins/$p.c does not build with the installed headers"; }
done
note "plugins built outside the tree: $readme_cc; the README's CMake block; projection.c with -Werror"

# ---- 3. the installed programs with the plugin -----------------------
admin=$(cat "${EXACTLY_TEST_PG_DIR:?}/conninfo")
db=install_tree_$$
psql -X -q -v ON_ERROR_STOP=1 "$admin" -c "CREATE DATABASE $db" >/dev/null
conninfo=$(printf '%s' "$admin" | sed "s/dbname=[^ ]*/dbname=$db/")
psql -X -q -v ON_ERROR_STOP=1 "$conninfo" >/dev/null <<'SQL'
CREATE TABLE entities (id text PRIMARY KEY);
INSERT INTO entities VALUES ('a'), ('b'), ('c');
CREATE TABLE seen (id text PRIMARY KEY, last_offset bigint NOT NULL, source text);
SQL

"${EXACTLY_MOCK_CLUSTER_BIN:?}" --topic entities:2 --bootstrap-file "$tmp/bootstrap" \
  >/dev/null 2>"$tmp/mock.log" &
mock_pid=$!
for _ in $(seq 600); do
  [ -s "$tmp/bootstrap" ] && break
  kill -0 "$mock_pid" 2>/dev/null || { show "$tmp/mock.log"; fail "the mock cluster exited"; }
  sleep 0.1
done
[ -s "$tmp/bootstrap" ] || { show "$tmp/mock.log"; fail "the mock cluster did not start in 60 s"; }
bootstrap=$(cat "$tmp/bootstrap")

cat >"$tmp/seen.yaml" <<YAML
kafka:
  bootstrap.servers: '$bootstrap'
  auto.offset.reset: earliest
postgres:
  conninfo: '$conninfo'
pipelines:
  seen:
    topics: [entities]
    group: install-tree
    id: {from: key, type: text}
    lookup: {table: entities, id_column: id}
    handler:
      plugin: plugin/seen.so
      options: {source: install-test}
    batch: {max_messages: 100, max_wait_ms: 50}
YAML

"$prefix/bin/exactly" migrate -c "$tmp/seen.yaml" >"$tmp/migrate.out" 2>&1 ||
  { show "$tmp/migrate.out"; fail "installed exactly migrate failed"; }
rc=0
"$prefix/bin/exactly" check -c "$tmp/seen.yaml" >"$tmp/check.out" 2>&1 || rc=$?
[ $rc -eq 0 ] || { show "$tmp/check.out"; fail "installed exactly check exited $rc"; }
grep -q '^OK  *handler open \[seen\]' "$tmp/check.out" ||
  { show "$tmp/check.out"; fail "exactly check has no OK line for the seen plugin's open()"; }
if grep -q '^FAIL' "$tmp/check.out"; then show "$tmp/check.out"; fail "exactly check printed FAIL lines"; fi
note "installed exactly check: $(grep -c '^OK' "$tmp/check.out") OK lines, none FAIL"

printf 'a\nb\nc\na\n' |
  "$prefix/bin/exactly-produce" -b "$bootstrap" -t entities >"$tmp/produce.out" 2>&1 ||
  { show "$tmp/produce.out"; fail "installed exactly-produce failed"; }
rc=0
timeout 240 "$prefix/bin/exactly" worker -c "$tmp/seen.yaml" --exit-idle 3000 \
  >"$tmp/worker.out" 2>&1 || rc=$?
[ $rc -eq 0 ] || { show "$tmp/worker.out"; fail "installed exactly worker exited $rc"; }
got=$(psql -X -At "$conninfo" -c "SELECT string_agg(id || ':' || source, ',' ORDER BY id) FROM seen")
[ "$got" = "a:install-test,b:install-test,c:install-test" ] ||
  { show "$tmp/worker.out"; fail "seen holds '$got' after the worker, want a, b and c from install-test"; }
stored=$(psql -X -At "$conninfo" -c "SELECT sum(next_offset) FROM exactly.offsets WHERE pipeline = 'seen'")
[ "$stored" = 4 ] || fail "stored offsets sum to '$stored', want 4 (the messages produced)"
note "installed exactly-produce and exactly worker: 4 messages through seen.so, 3 rows"

# ---- 4. man pages -----------------------------------------------------
for page in exactly exactly-run exactly-worker exactly-check exactly-migrate \
            exactly-offsets exactly-dlq exactly-reprocess exactly-produce; do
  f=$man1/$page.1
  [ -f "$f" ] || fail "man page $page(1) is not installed"
  [ "$(MANPATH=$prefix/share/man man -w "$page" 2>/dev/null)" = "$f" ] ||
    fail "man -w $page does not find $f under MANPATH=$prefix/share/man"
  groff -man -ww -z -Tutf8 "$f" 2>"$tmp/groff.err" || fail "groff cannot format $f"
  [ ! -s "$tmp/groff.err" ] || { show "$tmp/groff.err"; fail "groff warns about $page.1"; }
  LC_ALL=C MANWIDTH=100 MANPAGER=cat man -l "$f" >"$tmp/$page.txt" 2>"$tmp/man.err" ||
    { show "$tmp/man.err"; fail "man -l $f failed"; }
  for section in NAME SYNOPSIS DESCRIPTION; do
    grep -q "^$section" "$tmp/$page.txt" || fail "$page(1) has no $section section"
  done
  # The command's --help (each subcommand's too) names no option the
  # page does not.
  case $page in
    exactly) helps=("$prefix/bin/exactly") ;;
    exactly-produce) helps=("$prefix/bin/exactly-produce") ;;
    exactly-offsets) helps=("$prefix/bin/exactly offsets" "$prefix/bin/exactly offsets reset") ;;
    *) helps=("$prefix/bin/exactly ${page#exactly-}") ;;
  esac
  for h in "${helps[@]}"; do
    for opt in $($h --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
      grep -q -- "$opt" "$tmp/$page.txt" || fail "$page(1) does not mention $opt of '$h --help'"
    done
  done
done
note "9 man pages render without warnings and name every option of their --help"

# ---- 5. the systemd unit ----------------------------------------------
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
case $execstart in
  "$prefix/bin/exactly run -c /etc/exactly/%i.yaml "*) ;;
  *) fail "ExecStart is '$execstart', want $prefix/bin/exactly run -c /etc/exactly/%i.yaml ..." ;;
esac
shutdown=$(printf '%s\n' "$execstart" | sed -n 's/.*--shutdown-timeout \([0-9]*\).*/\1/p')
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
[ -n "$shutdown" ] || fail "ExecStart passes no --shutdown-timeout"
[ -n "$stop" ] && [ "$stop" -gt "$shutdown" ] ||
  fail "TimeoutStopSec=$stop must exceed --shutdown-timeout $shutdown (systemd would SIGKILL the drain)"
for want in Type=notify KillMode=mixed RuntimeDirectory=exactly \
            RuntimeDirectoryPreserve=yes "RestartPreventExitStatus=2 3" \
            NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes; do
  grep -qx "$want" "$unit" || fail "the unit lacks $want"
done
grep -q -- '--lock-dir %t/exactly' "$unit" || fail "ExecStart does not put the locks in RuntimeDirectory"
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir "$tmp/units"
  cp "$unit" "$tmp/units/"
  ln -s exactly@.service "$tmp/units/exactly@demo.service"
  rc=0
  # Documentation=man:... is checked with man(1): the pages of this prefix.
  MANPATH=$prefix/share/man systemd-analyze verify "$tmp/units/exactly@demo.service" \
    >"$tmp/verify.out" 2>&1 || rc=$?
  [ $rc -eq 0 ] && [ ! -s "$tmp/verify.out" ] ||
    { show "$tmp/verify.out"; fail "systemd-analyze verify exited $rc or complained"; }
  exposure=$(systemd-analyze security --offline=true "$tmp/units/exactly@demo.service" 2>/dev/null |
             grep -o 'Overall exposure level.*' || true)
  note "systemd-analyze verify: clean; ${exposure:-security score not available}"
else
  note "systemd-analyze is not installed: the unit was checked by its lines only"
fi
note "install tree test passed"
