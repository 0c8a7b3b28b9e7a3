#!/usr/bin/env bash
# The alerting rules of deploy/prometheus: `promtool check rules` accepts
# them and `promtool test rules` shows each alert firing on the series
# that should raise it (alerts_test.yml). Skipped (77) without promtool
# (Debian's prometheus package; scripts/deps.sh installs it).
set -euo pipefail
dir=${1:?usage: check_alerts.sh DEPLOY_PROMETHEUS_DIR}
if ! command -v promtool >/dev/null 2>&1; then
  echo "SKIP: promtool not installed (apt-get install prometheus)"
  exit 77
fi
cd "$dir"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
