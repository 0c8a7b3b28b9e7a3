#!/usr/bin/env bash
# The Debian package CPack builds from this build tree:
#
#   - one .deb, package exactly, version of `exactly --version`;
#   - Depends names the package of every library the binaries need, as
#     ldd resolves them (librdkafka1, libpq5, libyaml-0-2, libjansson4, libmicrohttpd12,
#     libc6 ..., found by dpkg-shlibdeps), and adduser (the postinst), each
#     installed here;
#   - its files are the install tree under /usr (binaries, headers,
#     exactly.pc, man pages, docs, the unit), nothing outside /usr;
#   - extracted into a throwaway root, the unit starts /usr/bin/exactly,
#     exactly.pc says prefix=/usr, and the binaries run;
#   - postinst and postrm are there and executable.
#
#   test_install_deb.sh BUILD_DIR
# Skipped (77) where dpkg-deb, dpkg-shlibdeps or cpack are missing
# (scripts/deps.sh installs dpkg-dev).
set -euo pipefail

build=$(cd "$1" && pwd)
for t in dpkg-deb dpkg-shlibdeps cpack; do
  command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t is not installed" >&2; exit 77; }
done
tmp=$(mktemp -d /tmp/exactly-deb.XXXXXX)
trap '[ "${EXACTLY_TEST_KEEP:-}" = 1 ] && echo "# kept $tmp" >&2 || rm -rf "$tmp"' EXIT

fail() { echo "FAIL: test_install_deb.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
show() { echo "---- $1" >&2; cat "$1" >&2 || true; echo "----" >&2; }

cpack --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1 ||
  { show "$tmp/cpack.log"; fail "cpack -G DEB failed"; }
debs=("$tmp"/pkg/*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || fail "cpack made ${#debs[@]} .deb files"
deb=${debs[0]}
note "built $(basename "$deb")"

version=$(ASAN_OPTIONS=detect_leaks=0 "$build/cmd/exactly/exactly" --version | awk '{print $2}')
[ "$(dpkg-deb -f "$deb" Package)" = exactly ] || fail "Package is '$(dpkg-deb -f "$deb" Package)'"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version is '$(dpkg-deb -f "$deb" Version)', exactly --version says $version"
depends=$(dpkg-deb -f "$deb" Depends)
note "Depends: $depends"
# Package names only, one per line.
dep_names=$(printf '%s\n' "$depends" | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | sort -u)
has_dep() { printf '%s\n' "$dep_names" | grep -qx "$1"; }
for p in librdkafka1 libpq5 libyaml-0-2 libjansson4 libmicrohttpd12 libc6 adduser; do
  has_dep "$p" || fail "Depends lacks $p: $depends"
done

# ---- the files ----------------------------------------------------------
dpkg-deb -c "$deb" | awk '{print $6}' >"$tmp/files"
for f in ./usr/bin/exactly ./usr/bin/exactly-produce \
         ./usr/include/exactly/exactly.h ./usr/include/exactly/handler.h \
         ./usr/include/exactly/error.h ./usr/include/exactly/sqlbuf.h \
         ./usr/share/pkgconfig/exactly.pc \
         ./usr/lib/systemd/system/exactly@.service \
         ./usr/share/man/man1/exactly.1 ./usr/share/man/man1/exactly-run.1 \
         ./usr/share/man/man1/exactly-produce.1 \
         ./usr/share/doc/exactly/README.md \
         ./usr/share/doc/exactly/examples/plugins/seen.c \
         ./usr/share/doc/exactly/examples/config/projection.yaml; do
  grep -qx -- "$f" "$tmp/files" || { show "$tmp/files"; fail "the package lacks $f"; }
done
if grep -v -e '^\./$' -e '^\./usr/' "$tmp/files" >/dev/null; then
  show "$tmp/files"; fail "the package has files outside /usr"
fi

dpkg-deb -e "$deb" "$tmp/control"
for s in postinst postrm; do
  [ -x "$tmp/control/$s" ] || fail "the package has no executable $s"
  sh -n "$tmp/control/$s" || fail "$s is not valid sh"
done

# ---- extracted into a throwaway root -------------------------------------
root=$tmp/root
dpkg-deb -x "$deb" "$root"
grep -q '^ExecStart=/usr/bin/exactly run -c /etc/exactly/%i.yaml ' \
  "$root/usr/lib/systemd/system/exactly@.service" ||
  fail "the packaged unit does not start /usr/bin/exactly"
grep -qx 'prefix=/usr' "$root/usr/share/pkgconfig/exactly.pc" ||
  fail "the packaged exactly.pc does not say prefix=/usr"
ASAN_OPTIONS=detect_leaks=0 "$root/usr/bin/exactly" --version >/dev/null ||
  fail "the packaged exactly does not run"
ASAN_OPTIONS=detect_leaks=0 "$root/usr/bin/exactly-produce" --help >/dev/null ||
  fail "the packaged exactly-produce does not run"

# Every shared library the binaries need (DT_NEEDED, where ldd finds it)
# belongs to a package named in Depends, and that package is installed
# here. The libraries those load in turn are their packages' business.
for bin in "$root/usr/bin/exactly" "$root/usr/bin/exactly-produce"; do
  ldd "$bin" >"$tmp/ldd"
  objdump -p "$bin" | awk '$1 == "NEEDED" {print $2}' >"$tmp/needed"
  [ -s "$tmp/needed" ] || fail "objdump shows no NEEDED library for $(basename "$bin")"
  while read -r soname; do
    awk -v so="$soname" '$1 == so && $2 == "=>" {print $3}' "$tmp/ldd"
  done <"$tmp/needed" >"$tmp/libs"
  [ "$(wc -l <"$tmp/libs")" -eq "$(wc -l <"$tmp/needed")" ] ||
    { show "$tmp/ldd"; fail "ldd does not resolve every NEEDED library of $(basename "$bin")"; }
  while read -r lib; do
    owner=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1) ||
      owner=
    if [ -z "$owner" ]; then
      owner=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1) || owner=
    fi
    [ -n "$owner" ] || fail "no Debian package owns $lib (ldd of $(basename "$bin"))"
    has_dep "$owner" || fail "$(basename "$bin") loads $lib of $owner, which Depends lacks: $depends"
  done <"$tmp/libs"
done
while read -r p; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    fail "dependency $p is not installed here"
done <<<"$dep_names"
note "the package of every NEEDED library (ldd) is in Depends; every dependency is installed here"
note "install deb test passed"
