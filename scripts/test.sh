#!/usr/bin/env bash
# Runs Sonde's whole test suite: Rust unit and integration tests, the JavaScript
# compatibility suite (pusher-js, Laravel Echo, the official pusher SDK), the Python SDK
# check and the browser tests. Installs what it needs on a fresh machine.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib.sh

ensure_system_packages
ensure_rust

mkdir -p artifacts
declare -i PASSED=0 FAILED=0
STATUS=0

step() { printf '\n==> %s\n' "$*"; }

count_cargo() {
  local p f
  p=$(grep -E '^test result:' "$1" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
  f=$(grep -E '^test result:' "$1" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
  PASSED+=${p:-0}; FAILED+=${f:-0}
}

count_node() {
  local p f
  p=$(grep -E '^# pass [0-9]+' "$1" | tail -1 | awk '{print $3}')
  f=$(grep -E '^# fail [0-9]+' "$1" | tail -1 | awk '{print $3}')
  PASSED+=${p:-0}; FAILED+=${f:-0}
}

count_plain() {
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  PASSED+=$(echo "$line" | awk '{print $1}'); FAILED+=$(echo "$line" | awk '{print $3}')
}

step "cargo build (debug, all targets)"
if ! cargo build --workspace --all-targets --locked; then
  echo "build failed"; echo "Summary: 0 passed, 1 failed"; exit 1
fi

step "cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee artifacts/cargo-test.log
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
count_cargo artifacts/cargo-test.log

export SONDE_RELAY_BIN="$ROOT/target/debug/sonde-relay"
export SONDE_AGENT_BIN="$ROOT/target/debug/sonde-agent"

if [ -f tests/js/package.json ]; then
  step "JavaScript suite (pusher-js, laravel-echo, pusher SDK)"
  (cd tests/js && npm ci --no-audit --no-fund >/dev/null) || { echo "npm ci failed"; STATUS=1; FAILED+=1; }
  (cd tests/js && node --test --test-concurrency=2 2>&1) | tee artifacts/js-test.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
  count_node artifacts/js-test.log
fi

if [ -f tests/python/run.sh ]; then
  step "Python SDK check"
  bash tests/python/run.sh 2>&1 | tee artifacts/python-test.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
  count_plain artifacts/python-test.log
fi

if [ -f web/package.json ]; then
  step "Dashboard unit tests"
  (cd web && npm ci --no-audit --no-fund >/dev/null) || { echo "npm ci failed"; STATUS=1; FAILED+=1; }
  (cd web && npm test 2>&1) | tee artifacts/web-test.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
  count_node artifacts/web-test.log
fi

if [ -f tests/browser/package.json ]; then
  step "Browser suite (Chromium)"
  (cd tests/browser && npm ci --no-audit --no-fund >/dev/null) || { echo "npm ci failed"; STATUS=1; FAILED+=1; }
  (cd tests/browser && node --test --test-concurrency=1 2>&1) | tee artifacts/browser-test.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
  count_node artifacts/browser-test.log
fi

if [ "$STATUS" -ne 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=1; fi
echo
echo "Summary: $PASSED passed, $FAILED failed"
exit $STATUS
