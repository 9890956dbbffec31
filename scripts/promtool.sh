#!/usr/bin/env bash
# Checks deploy/prometheus with promtool: the scrape config, the alert rules, and the rules'
# unit tests (each alert fires on the series that should fire it, and only on those).
set -uo pipefail
cd "$(dirname "$0")/../deploy/prometheus"
passed=0
failed=0
for args in "check config prometheus.yml" "check rules sonde-rules.yml" "test rules sonde-rules.test.yml"; do
  # shellcheck disable=SC2086
  if promtool $args; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: promtool $args"; fi
done
echo "promtool: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
