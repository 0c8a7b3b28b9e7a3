#!/usr/bin/env bash
# README.md's command table against the commands themselves: every command
# `exactly --help` lists has a row, and each row names exactly the options
# its command's --help lists (a long option, or its short form as the row
# writes it: `-c FILE`, `-v\|-q`), no more and no fewer (--help aside).
#
#   check_readme_options.sh EXACTLY_BIN README.md
set -euo pipefail

bin=$1
readme=$2
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
fail=0

# The rows: first cell of every table line that starts with `exactly.
rows=$(awk '/^\| `exactly / {
  line = substr($0, 3)
  i = index(line, " | ")
  print substr(line, 1, i - 1) }' "$readme")
[ -n "$rows" ] || { echo "FAIL: no command table rows in $readme" >&2; exit 1; }

# Every command of `exactly --help` has a row.
for cmd in $("$bin" --help | awk '/^commands:$/ {on = 1; next}
                                   on && /^ *$/ {exit}
                                   on {print $1}'); do
  if ! printf '%s\n' "$rows" | grep -q "^\`exactly $cmd[ \`]"; then
    echo "FAIL: README.md's command table has no row for 'exactly $cmd'" >&2
    fail=1
  fi
done

while IFS= read -r row; do
  # The command (and a subcommand written as a plain word: offsets reset).
  first=$(printf '%s\n' "$row" | sed 's/^`//; s/`.*//')
  set -- $first
  cmd=$2
  sub=
  case ${3:-} in
    [a-z]*) case $3 in *\\*) ;; *) sub=$3 ;; esac ;;
  esac
  name="exactly $cmd${sub:+ $sub}"
  help=$("$bin" $cmd ${sub:+$sub} --help) ||
    { echo "FAIL: '$name --help' failed" >&2; fail=1; continue; }
  # The help's option lines: "  -c, --config FILE" or "      --json".
  printf '%s\n' "$help" |
    sed -n 's/^ \{1,\}\(-[A-Za-z]\), \(--[a-z][a-z0-9-]*\).*/\1 \2/p;
            s/^ \{1,\}\(--[a-z][a-z0-9-]*\).*/- \1/p' |
    grep -v -e ' --help$' >"${TMPDIR:-/tmp}/readme-opts.$$" || true
  row_longs=$(printf '%s\n' "$row" | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
  row_shorts=$(printf '%s\n' "$row" | grep -o -- '\(^\|[[ `|]\)-[A-Za-z]\([] `\\]\|$\)' |
               grep -o -- '-[A-Za-z]' | sort -u)
  help_longs=$(awk '{print $2}' "${TMPDIR:-/tmp}/readme-opts.$$" | sort -u)
  help_shorts=$(awk '$1 != "-" {print $1}' "${TMPDIR:-/tmp}/readme-opts.$$" | sort -u)
  for o in $row_longs; do
    printf '%s\n' "$help_longs" | grep -qx -- "$o" ||
      { echo "FAIL: README.md's row for '$name' names $o, which '$name --help' does not list" >&2; fail=1; }
  done
  for o in $row_shorts; do
    printf '%s\n' "$help_shorts" | grep -qx -- "$o" ||
      { echo "FAIL: README.md's row for '$name' names $o, which '$name --help' does not list" >&2; fail=1; }
  done
  while read -r short long; do
    [ -n "$long" ] || continue
    if printf '%s\n' "$row_longs" | grep -qx -- "$long"; then continue; fi
    if [ "$short" != - ] && printf '%s\n' "$row_shorts" | grep -qx -- "$short"; then continue; fi
    alias=
    [ "$short" = - ] || alias=" ($short)"
    echo "FAIL: README.md's row for '$name' lacks $long$alias, which '$name --help' lists" >&2
    fail=1
  done <"${TMPDIR:-/tmp}/readme-opts.$$"
  rm -f "${TMPDIR:-/tmp}/readme-opts.$$"
done <<<"$rows"

[ $fail -eq 0 ] || exit 1
echo "README.md's command table names the options of every command's --help"
