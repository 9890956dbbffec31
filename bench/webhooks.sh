#!/usr/bin/env bash
# What webhooks cost the fan-out: `sonde-bench webhooks` (a broadcast measured while channels
# are occupied and vacated at a high rate) against the same relay binary configured without
# webhooks and with channel_occupied / channel_vacated sent to the bench's receiver, taking
# turns (off, on, off, on, …) so both see the same machine.
#
#   bench/webhooks.sh [ROUNDS] [OUT_DIR] [-- extra sonde-bench webhooks arguments]
#
# WEBHOOK_BATCH_MS (default 50) is the app's webhook_batch_ms in the runs with webhooks.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-bench/results/webhooks-$(date -u +%Y%m%dT%H%M%SZ)}
shift $(( $# < 2 ? $# : 2 ))
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
PORT=${SONDE_BENCH_PORT:-7801}
RECEIVER=${SONDE_BENCH_RECEIVER:-127.0.0.1:7799}
BATCH_MS=${WEBHOOK_BATCH_MS:-50}
RELAY=target/release/sonde-relay
BENCH=target/release/sonde-bench
mkdir -p "$OUT"
cargo build --release -p sonde-relay -p sonde-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cp bench/relay.toml "$OUT/off.toml"
# The same app with webhooks: webhook_batch_ms in its table, then its target.
awk -v batch="$BATCH_MS" '{ print } /^\[\[apps\]\]/ { print "webhook_batch_ms = " batch }' bench/relay.toml > "$OUT/on.toml"
cat >> "$OUT/on.toml" <<TOML

[[apps.webhooks]]
url = "http://$RECEIVER/webhooks"
event_types = ["channel_occupied", "channel_vacated"]
TOML

one() {
    local mode=$1 round=$2
    SONDE_LOG=warn "$RELAY" --config "$OUT/$mode.toml" --bind "127.0.0.1:$PORT" >"$OUT/$mode-$round.relay.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$BENCH" --port "$PORT" --server-pid "$pid" --save "$OUT/$mode-$round.json" webhooks --receiver "$RECEIVER" "${EXTRA[@]}" >"$OUT/$mode-$round.txt" 2>"$OUT/$mode-$round.bench.log" || true
    curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null | grep -E '^sonde_webhook_(dropped|requests|queue)' >"$OUT/$mode-$round.metrics" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -E "latency p50|latency p99 |delivered per second|server cpu per million|server cores busy|channels occupied and vacated per second|webhook events received|webhook requests|other processes" "$OUT/$mode-$round.txt" | sed "s/^/  $mode  /"
    PORT=$((PORT + 1))
    sleep 1
}

for round in $(seq "$ROUNDS"); do
    echo "== round $round"
    one off "$round"
    one on "$round"
done | tee "$OUT/summary.txt"
echo "reports in $OUT"
