#!/usr/bin/env bash
# Install the Debian packages exactly needs to build and test, and nothing
# else. Idempotent: when everything is present it only says so. It never
# starts or relies on a system PostgreSQL service; the tests run their own
# throwaway cluster (scripts/pg.sh). prometheus brings promtool, which the
# metrics tests run on every scrape (its server is not started).
set -euo pipefail

# clang and libclang-rt-14-dev (its libFuzzer) build the fuzz targets.
# libjansson-dev: JSON (the log's json format, --json output, the tests'
# strict JSON reader). libmicrohttpd-dev: the supervisor's HTTP server.
packages=(build-essential cmake pkg-config librdkafka-dev libpq-dev
          libyaml-dev libssl-dev libjansson-dev postgresql clang
          libclang-rt-14-dev prometheus libmicrohttpd-dev)
# chromium: the status page test renders / headlessly (skipped without it).
packages+=(chromium)
# The install tests (ctest -L install): man pages rendered with man and
# groff, the .deb built by CPack with dpkg-shlibdeps. systemd is not
# installed for its systemd-analyze alone: where it is missing, that part
# of the test is skipped and says so.
packages+=(man-db groff-base dpkg-dev)
# PgBouncer: the tests run a worker behind it (scripts/pgbouncer.sh starts
# its own, never the system service).
packages+=(pgbouncer)
# The benchmark (scripts/bench.sh, ctest -L bench): its Python peer
# consumer and valgrind for the instructions-per-message figure.
packages+=(python3-confluent-kafka python3-psycopg2 valgrind)

missing=()
for p in "${packages[@]}"; do
  # dpkg -s also knows removed-but-configured packages: check the Status.
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "deps: missing ${missing[*]} and not root (no sudo to install them)" >&2
    exit 1
  fi
  sudo=(sudo)
fi

log=$(mktemp /tmp/exactly-deps.XXXXXX)
if ! { "${sudo[@]}" apt-get update &&
       "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "deps: installing ${missing[*]} failed (log above)" >&2
  exit 1
fi
rm -f "$log"
echo "deps: installed ${missing[*]}"
