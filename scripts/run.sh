#!/usr/bin/env bash
# Sonde's main job on one machine: builds what is needed, then starts the relay (embedded,
# in memory, 127.0.0.1:6001), a local agent for this machine and the dashboard, and prints
# the dashboard URL with a viewer token.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_system_packages
ensure_rust

BIND=${SONDE_BIND:-127.0.0.1:6001}
APP=${SONDE_RUN_APP:-1:sonde-dev:sonde-dev-secret}
IFS=: read -r APP_ID APP_KEY APP_SECRET <<<"$APP"

if [ -f web/package.json ]; then
  (cd web && npm ci --no-audit --no-fund >/dev/null && npm run build >/dev/null)
fi
cargo build --release --locked -p sonde-relay -p sonde-agent

STATE=${SONDE_RUN_STATE:-$PWD/target/run-state}
mkdir -p "$STATE"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Secrets go through the environment and a private file, never the command line (`ps`).
SONDE_APP="$APP" ./target/release/sonde-relay --bind "$BIND" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$BIND/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

if ./target/release/sonde-relay token --help >/dev/null 2>&1 && [ -x ./target/release/sonde-agent ]; then
  HOST=$(hostname)
  AGENT_TOKEN=$(SONDE_APP_SECRET=$APP_SECRET ./target/release/sonde-relay token --app "$APP_ID" --role agent --host "$HOST" --ttl 720h)
  VIEWER_TOKEN=$(SONDE_APP_SECRET=$APP_SECRET ./target/release/sonde-relay token --app "$APP_ID" --role viewer --ttl 12h)
  mkdir -p "$STATE/agent"
  (umask 077 && printf '%s\n' "$AGENT_TOKEN" > "$STATE/agent-token")
  ./target/release/sonde-agent --relay "ws://$BIND" --key "$APP_KEY" --token-file "$STATE/agent-token" --host "$HOST" --state-dir "$STATE/agent" &
  pids+=($!)
  echo
  echo "Sonde is running. Open the dashboard:"
  echo "  http://$BIND/#key=$APP_KEY&token=$VIEWER_TOKEN"
else
  echo
  echo "Sonde relay is running on http://$BIND (app $APP_ID, key $APP_KEY)."
fi
echo "Press Ctrl-C to stop."
wait
