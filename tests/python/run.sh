#!/usr/bin/env bash
# The official Python `pusher` SDK against sonde-relay: makes the venv, installs the SDK and a
# websocket client, then runs check_sdk.py (which starts its own relay). Exits non-zero on any
# failed check. The relay binary comes from SONDE_RELAY_BIN or target/debug/sonde-relay.
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

exec "$venv/bin/python" "$here/check_sdk.py"
