#!/bin/sh
# gen-man.sh - man pages from the built programs' own --help text.
#
#   gen-man.sh OUTDIR VERSION PROGRAM...
#
# For every PROGRAM it writes OUTDIR/NAME.1 (NAME: the program's file
# name) from `PROGRAM --help`; when that help lists "commands:", also
# OUTDIR/NAME-COMMAND.1 from `PROGRAM COMMAND --help` for each, with the
# help of the command's own subcommands (a usage line "NAME COMMAND SUB
# ...", e.g. "exactly offsets reset") appended as a section when it differs
# from the command's. NAME: the summary in the commands list, or for a
# program the first sentence of its description, up to a colon. SEE ALSO
# names every other page written. The help text is the only source, so a
# page cannot say anything --help does not (help2roff.awk typesets it).
set -eu

[ $# -ge 3 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
outdir=$1
version=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
awk_prog=$here/help2roff.awk
# A sanitizer build must not fail the build because LeakSanitizer cannot
# run here; --help allocates nothing worth checking.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
export ASAN_OPTIONS
# Help text is English and ASCII whatever the build's locale.
LC_ALL=C
export LC_ALL

mkdir -p "$outdir"
work=$(mktemp -d "${TMPDIR:-/tmp}/exactly-man.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

pages=""

# help TEXTFILE ARGS...: the --help of ARGS, which must exit 0.
help() {
  out=$1
  shift
  if ! "$@" --help </dev/null >"$out" 2>"$work/err"; then
    cat "$work/err" >&2
    echo "gen-man.sh: '$* --help' failed" >&2
    exit 1
  fi
  grep -q '^usage: ' "$out" || {
    echo "gen-man.sh: '$* --help' prints no 'usage: ' line" >&2
    exit 1
  }
}

# Lines "  COMMAND   summary" of the "commands:" list in a help text.
commands_of() {
  awk '/^commands:$/ { on = 1; next }
       on && /^ *$/ { exit }
       on && /^  [a-z]/ { print }' "$1"
}

# The first sentence of the description: up to ". " or ":".
summary_of() {
  awk 'f == 0 && /^ *$/ { f = 1; next }
       f == 1 && /^ *$/ { exit }
       f == 1 { printf "%s ", $0 }' "$1" |
    sed 's/\([.:]\) .*//; s/^\(.\)/\L\1/; s/ *$//'
}

# The subcommands in the usage lines of NAME COMMAND's help.
subcommands_of() {
  awk -v name="$2" -v cmd="$3" '
    /^usage: / { u = 1; sub(/^usage: /, "") }
    u && /^ *$/ { exit }
    u { n = split($0, w, / +/); for (i = 1; i < n; i++)
          if (w[i] == name && w[i + 1] == cmd && w[i + 2] ~ /^[a-z][a-z-]*$/)
            print w[i + 2] }' "$1" | sort -u
}

# page FILE NAME SUMMARY HELPFILE [SUBNAME SUBHELPFILE]...
# Writes the page's body; SEE ALSO is appended once all pages are known.
page() {
  pg_file=$1 pg_name=$2 pg_summary=$3 pg_main=$4
  shift 4
  awk -v OUT="$work/main" -v LEVEL=SH -f "$awk_prog" <"$pg_main"
  upper=$(printf '%s' "$pg_name" | tr 'a-z' 'A-Z' | sed 's/-/\\-/g')
  esc_name=$(printf '%s' "$pg_name" | sed 's/-/\\-/g')
  esc_summary=$(printf '%s' "$pg_summary" | sed 's/\\/\\e/g; s/-/\\-/g')
  {
    printf '.\\" Generated from --help by packaging/man/gen-man.sh; do not edit.\n'
    printf '.TH "%s" 1 "" "exactly %s" "exactly manual"\n' "$upper" "$version"
    printf '.nh\n.ad l\n'
    printf '.SH NAME\n%s \\- %s\n' "$esc_name" "$esc_summary"
    printf '.SH SYNOPSIS\n.nf\n'
    cat "$work/main.syn"
  } >"$pg_file"
  subs=""
  while [ $# -ge 2 ]; do
    awk -v OUT="$work/sub" -v LEVEL=SS -f "$awk_prog" <"$2"
    cat "$work/sub.syn" >>"$pg_file"
    subs="$subs $1"
    cp "$work/sub.desc" "$work/sub-$1.desc"
    cp "$work/sub.rest" "$work/sub-$1.rest"
    shift 2
  done
  {
    printf '.fi\n.SH DESCRIPTION\n'
    cat "$work/main.desc" "$work/main.rest"
    for s in $subs; do
      printf '.SH "%s"\n' "$(printf '%s %s' "$pg_name" "$s" | tr 'a-z-' 'A-Z ' | sed 's/-/\\-/g')"
      cat "$work/sub-$s.desc" "$work/sub-$s.rest"
    done
  } >>"$pg_file"
  pages="$pages $pg_name"
}

for prog in "$@"; do
  name=$(basename "$prog")
  help "$work/$name.help" "$prog"
  page "$work/$name.1" "$name" "$(summary_of "$work/$name.help")" \
       "$work/$name.help"
  commands_of "$work/$name.help" >"$work/$name.commands"
  while read -r cmd summary; do
    help "$work/$name-$cmd.help" "$prog" "$cmd"
    set --
    for sub in $(subcommands_of "$work/$name-$cmd.help" "$name" "$cmd"); do
      help "$work/$name-$cmd-$sub.help" "$prog" "$cmd" "$sub"
      cmp -s "$work/$name-$cmd-$sub.help" "$work/$name-$cmd.help" ||
        set -- "$@" "$sub" "$work/$name-$cmd-$sub.help"
    done
    page "$work/$name-$cmd.1" "$name-$cmd" "$summary" \
         "$work/$name-$cmd.help" "$@"
  done <"$work/$name.commands"
done

# SEE ALSO: every other page, then move the finished pages into place
# (only those that changed, so that make sees nothing new otherwise).
for p in $pages; do
  {
    printf '.SH "SEE ALSO"\n'
    first=1
    for q in $pages; do
      [ "$q" = "$p" ] && continue
      [ $first -eq 1 ] || printf ',\n'
      printf '.BR %s (1)' "$(printf '%s' "$q" | sed 's/-/\\-/g')"
      first=0
    done
    printf '\n.PP\nThe README of exactly, installed in share/doc/exactly.\n'
  } >>"$work/$p.1"
  cmp -s "$work/$p.1" "$outdir/$p.1" 2>/dev/null || cp "$work/$p.1" "$outdir/$p.1"
done
