#!/usr/bin/env bash
# The official Python `pusher` SDK against sonde-relay: makes the venv, installs the SDK and a
# websocket client, then runs check_sdk.py and check_tls.py (each starts its own relay). Exits
# non-zero on any failed check. The relay binary comes from SONDE_RELAY_BIN or
# target/debug/sonde-relay.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

fail() {
  echo "$*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" || fail "could not create the venv at $venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" \
  || fail "could not install the Python SDK (pip install -r requirements.txt)"

export SONDE_RELAY_BIN="${SONDE_RELAY_BIN:-$repo/target/debug/sonde-relay}"
[[ -x "$SONDE_RELAY_BIN" ]] || fail "sonde-relay not found at $SONDE_RELAY_BIN (cargo build -p sonde-relay)"

# check_sdk.py over http and ws, check_tls.py over https and wss; one total line at the end,
# which scripts/test.sh counts.
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0
for script in check_sdk.py check_tls.py; do
  "$venv/bin/python" "$here/$script" | tee "$logs/$script.log" || status=1
done
total=$(cat "$logs"/*.log | grep -E '^[0-9]+ passed, [0-9]+ failed$' | awk '{p += $1; f += $3} END {printf "%d passed, %d failed", p, f}')
echo "python: $total"
exit $status
