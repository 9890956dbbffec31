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
  line=$(grep -E '^([a-z]+: )?[0-9]+ passed, [0-9]+ failed' "$1" | tail -1 | sed -E 's/^[a-z]+: //')
  PASSED+=$(echo "$line" | awk '{print $1}'); FAILED+=$(echo "$line" | awk '{print $3}')
}

step "cargo build (debug, all targets)"
if ! cargo build --workspace --all-targets --locked; then
  echo "build failed"; echo "Summary: 0 passed, 1 failed"; exit 1
fi

# A mechanical check of the code's shape: one pass or one failure each.
check() {
  local label=$1; shift
  if "$@" > "artifacts/check-$label.log" 2>&1; then
    echo "check $label: ok"; PASSED+=1
  else
    echo "check $label: FAILED"; tail -40 "artifacts/check-$label.log"; FAILED+=1; STATUS=1
  fi
}

step "Code checks (rustfmt, clippy with warnings as errors, the stated invariants)"
check rustfmt cargo fmt --all --check
check clippy cargo clippy --workspace --all-targets --locked -- -D warnings
check invariants bash scripts/invariants.sh

step "cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee artifacts/cargo-test.log
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
count_cargo artifacts/cargo-test.log

step "Fuzzing what the relay and the agent parse from the network (${FUZZ_SECONDS:-20} s a target)"
bash scripts/fuzz.sh 2>&1 | tee artifacts/fuzz-test.log
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
count_plain artifacts/fuzz-test.log

export SONDE_RELAY_BIN="$ROOT/target/debug/sonde-relay"
export SONDE_AGENT_BIN="$ROOT/target/debug/sonde-agent"

# An npm project's suite: install its locked packages, run COMMAND in it, count the results.
npm_suite() {
  local dir=$1 label=$2 log=$3; shift 3
  [ -f "$dir/package.json" ] || return 0
  step "$label"
  (cd "$dir" && npm ci --no-audit --no-fund >/dev/null) || { echo "npm ci failed in $dir"; STATUS=1; FAILED+=1; return; }
  (cd "$dir" && "$@" 2>&1) | tee "artifacts/$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
  count_node "artifacts/$log"
}

npm_suite tests/js "JavaScript suite (pusher-js, laravel-echo, pusher SDK)" js-test.log node --test --test-concurrency=2

if [ -f tests/python/run.sh ]; then
  step "Python SDK check"
  bash tests/python/run.sh 2>&1 | tee artifacts/python-test.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
  count_plain artifacts/python-test.log
fi

step "Prometheus config and alert rules (promtool)"
bash scripts/promtool.sh 2>&1 | tee artifacts/promtool-test.log
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
count_plain artifacts/promtool-test.log

npm_suite web "Dashboard unit tests" web-test.log npm test
step "Dashboard type check"
check tsc bash -c 'cd web && npx --no-install tsc --noEmit'
npm_suite tests/browser "Browser suite (Chromium)" browser-test.log node --test --test-concurrency=1

if [ "$STATUS" -ne 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=1; fi
echo
echo "Summary: $PASSED passed, $FAILED failed"
exit $STATUS
