#!/usr/bin/env bash
# The fleet figures of BENCHMARKS.md on one relay, in one run so their ratios compare:
#   1. idle: N plain subscribers (the relay's RSS per idle subscriber, the yardstick);
#   2. fleet: N simulated agents, dashboards on the inventory, a steady window, sessions
#      (S held open and R started a second), then the relay restarted and the reconnect curve;
#   3. fleet with one agent: subscribe → first live sample without the fleet.
#
#   bench/fleet.sh [AGENTS] [OUT_DIR]
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-10000}
OUT=${2:-bench/results/fleet-$(date -u +%Y%m%dT%H%M%SZ)}
PORT=${SONDE_BENCH_PORT:-7711}
RELAY=${SONDE_RELAY:-target/release/sonde-relay}
BENCH=target/release/sonde-bench
mkdir -p "$OUT"
cp bench/relay-fleet.toml "$OUT/relay.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIDFILE="$OUT/relay.pid"
if ss -ltn | grep -q ":$PORT "; then echo "port $PORT is in use" >&2; exit 1; fi

start_relay() {
    SONDE_LOG=warn "$RELAY" --config "$OUT/relay.toml" --bind "127.0.0.1:$PORT" >>"$OUT/relay.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "relay did not start" >&2
    return 1
}
stop_relay() {
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
trap stop_relay EXIT

start_relay
"$BENCH" --port "$PORT" --server-pid "$(cat "$PIDFILE")" --save "$OUT/idle.json" idle -n "$N" --channels 100 --private --hold 5 | tee "$OUT/idle.txt"
stop_relay

start_relay
# The restart: stop (connections close with 4200), start again on the same port.
RESTART="kill -TERM \$(cat $PIDFILE); while kill -0 \$(cat $PIDFILE) 2>/dev/null; do sleep 0.05; done; \
SONDE_LOG=warn $RELAY --config $OUT/relay.toml --bind 127.0.0.1:$PORT >>$OUT/relay.log 2>&1 & echo \$! > $PIDFILE"
"$BENCH" --port "$PORT" --server-pid "$(cat "$PIDFILE")" --save "$OUT/fleet.json" fleet --agents "$N" --dashboards 2 \
    --steady 120 --sessions 100 --session-rate 0.5,50 --watch 2 --session-window 30 \
    --restart-cmd "$RESTART" --after 60 2>&1 | tee "$OUT/fleet.txt"
stop_relay

start_relay
"$BENCH" --port "$PORT" --server-pid "$(cat "$PIDFILE")" --save "$OUT/one.json" fleet --agents 1 --dashboards 1 \
    --steady 0 --session-rate 0.33 --watch 1 --session-window 90 2>&1 | tee "$OUT/one.txt"
