#!/usr/bin/env bash
# Compares two relay binaries on the scenarios where a change shows, taking turns (A, B, A,
# B, …) so that both see the same machine: on a shared machine, only ratios measured in one
# run mean anything.
#
#   bench/compare.sh OLD_RELAY NEW_RELAY [ROUNDS] [OUT_DIR]
#
# Build the old one from another checkout, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p sonde-relay)
#   bench/compare.sh /tmp/old-target/release/sonde-relay target/release/sonde-relay 2
set -euo pipefail

cd "$(dirname "$0")/.."
A=${1:?old relay binary}
B=${2:?new relay binary}
ROUNDS=${3:-2}
OUT=${4:-bench/results/compare-$(date -u +%Y%m%dT%H%M%SZ)}
PORT=${SONDE_BENCH_PORT:-7701}
BENCH=target/release/sonde-bench
mkdir -p "$OUT"
cargo build --release -p sonde-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cp bench/relay.toml "$OUT/relay.toml"
# A relay from before the [edge] settings refuses them (unknown field): give it the file
# without that table (it has no per-address limits to lift).
awk '/^\[edge\]/{skip=1; next} /^\[/{skip=0} !skip' bench/relay.toml > "$OUT/relay-noedge.toml"
config_for() {
    local bin=$1 probe
    probe=$(SONDE_LOG=error timeout 2 "$bin" --config "$OUT/relay.toml" --bind 127.0.0.1:0 2>&1 >/dev/null || true)
    if grep -q "unknown field" <<<"$probe"; then echo "$OUT/relay-noedge.toml"; else echo "$OUT/relay.toml"; fi
}
CONFIG_A=$(config_for "$A")
CONFIG_B=$(config_for "$B")

# NAME|bench arguments|rows to keep (a regular expression)
SCENARIOS=(
    "broadcast-1k|broadcast -n 1000 --rate 10,100 --duration 10|latency p50|latency p99 |server cpu per million"
    "metrics-http|metrics --hosts 500 --viewers 2 --idle 1000 --duration 10 --via http|latency p99 |server cpu per publish"
    "metrics-client|metrics --hosts 500 --viewers 2 --idle 1000 --duration 10 --via client|latency p99 |server cpu per publish"
    "idle|idle -n 10000 --channels 100 --hold 3|server rss per connection"
)

one() {
    local label=$1 bin=$2 name=$3 args=$4 rows=$5 round=$6
    local config=$CONFIG_B
    [ "$label" = A ] && config=$CONFIG_A
    SONDE_LOG=warn "$bin" --config "$config" --bind "127.0.0.1:$PORT" >"$OUT/$name-$label-$round.relay.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    "$BENCH" --port "$PORT" --server-pid "$pid" --save "$OUT/$name-$label-$round.json" $args >"$OUT/$name-$label-$round.txt" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -E "$rows" "$OUT/$name-$label-$round.txt" | sed "s/^/  $label  /"
    PORT=$((PORT + 1))
    sleep 1
}

for round in $(seq "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        name=$(cut -d'|' -f1 <<<"$s")
        args=$(cut -d'|' -f2 <<<"$s")
        rows=$(cut -d'|' -f3- <<<"$s")
        echo "== round $round: $name ($args)"
        one A "$A" "$name" "$args" "$rows" "$round"
        one B "$B" "$name" "$args" "$rows" "$round"
    done
done | tee "$OUT/compare.txt"
echo "A = $A"
echo "B = $B"
echo "reports in $OUT"
