#!/usr/bin/env bash
# Build the Debian package of exactly: a Release build with prefix /usr in
# build-pkg/ (EXACTLY_PKG_BUILD_DIR overrides), then CPack. Prints the
# package's control fields and its path.
#
#   scripts/package.sh
#   sudo apt install ./build-pkg/exactly_0.1.0_amd64.deb
#
# The package holds what `cmake --install` installs, under /usr: the
# exactly and exactly-produce binaries, the plugin headers and exactly.pc,
# the man pages, README and examples in /usr/share/doc/exactly, and
# /usr/lib/systemd/system/exactly@.service. Its postinst creates the system
# user `exactly` and /etc/exactly (mode 0750, group exactly).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
build=${EXACTLY_PKG_BUILD_DIR:-build-pkg}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j2
rm -f "$build"/exactly_*.deb
(cd "$build" && cpack -G DEB -B "$PWD" >/dev/null 2>&1)
deb=$(ls "$build"/exactly_*.deb)
dpkg-deb -f "$deb" Package Version Architecture Depends Installed-Size
echo "package: $deb"
