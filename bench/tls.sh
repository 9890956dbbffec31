#!/usr/bin/env bash
# The same relay binary measured plain and with TLS, taking turns (plain, TLS, plain, TLS, …)
# so that both see the same machine: on a shared machine only ratios measured in one run mean
# anything. A throwaway CA and server certificate are made for the run in a temporary folder
# (never in the results) by `sonde-bench tls-certs`.
#
#   bench/tls.sh [ROUNDS] [OUT_DIR]
#   ONLY="broadcast-1k" bench/tls.sh 4 OUT_DIR      # more pairs of one scenario
#
# Each measurement first waits up to WAIT_QUIET seconds (default 60) for other processes to
# leave the machine nearly idle; every window reports how busy they were meanwhile.
#
# Scenarios: idle connections (relay RSS per connection), handshakes (relay CPU per plain
# connect, per full and per resumed TLS handshake), broadcast to 1,000 subscribers at 100 msg/s
# and to 5,000 subscribers in rate steps (relay CPU per million deliveries, p99).
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
OUT=${2:-bench/results/tls-$(date -u +%Y%m%dT%H%M%SZ)}
PORT=${SONDE_BENCH_PORT:-7901}
RELAY=${RELAY:-target/release/sonde-relay}
BENCH=${BENCH:-target/release/sonde-bench}
mkdir -p "$OUT"
git rev-parse --short HEAD >"$OUT/commit.txt"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p sonde-relay -p sonde-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CERTS=$(mktemp -d)
trap 'rm -rf "$CERTS"' EXIT
"$BENCH" tls-certs "$CERTS" >/dev/null
cp bench/relay.toml "$OUT/relay.toml"

# Both processes hold one descriptor per connection, plus a few of their own.
if [ -z "${IDLE_N:-}" ]; then
    IDLE_N=$(( $(ulimit -Hn) - 100 ))
    [ "$IDLE_N" -gt 20000 ] && IDLE_N=20000
fi
: "${BROADCAST_5K_RATES:=100,200,300,400,600,800}"
: "${DURATION:=15}"

# NAME|bench arguments|rows to keep (a regular expression)
SCENARIOS=(
    "idle|idle -n $IDLE_N --channels 100 --hold 5|    connections |server rss per connection|bench rss per connection"
    "handshakes|handshakes --duration $((DURATION * 2 / 3)) -c 64|^  [^ ]|connections per second|resumed|server cpu per connection|per server core-second|latency p99 |other processes"
    "broadcast-1k|broadcast -n 1000 --rate 100 --duration $DURATION|latency p50|latency p99 |server cores busy|bench cores busy|other processes|server cpu per million|lost  "
    "broadcast-5k|broadcast -n 5000 --rate $BROADCAST_5K_RATES --duration $((DURATION * 2 / 3))|^  [^ ]|delivered per second|latency p99 |server cpu per million|other processes|sustained"
)

one() {
    local label=$1 name=$2 args=$3 rows=$4 round=$5
    local relay_tls=() bench_tls=()
    if [ "$label" = tls ]; then
        relay_tls=(--tls-cert "$CERTS/cert.pem" --tls-key "$CERTS/key.pem")
        bench_tls=(--tls --tls-ca "$CERTS/ca.pem")
    fi
    local health=$((PORT + 1000))
    SONDE_LOG=warn "$RELAY" --config bench/relay.toml --bind "127.0.0.1:$PORT" \
        --metrics-bind "127.0.0.1:$health" "${relay_tls[@]}" >"$OUT/$name-$label-$round.relay.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$health/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    "$BENCH" --port "$PORT" --server-pid "$pid" --wait-quiet "${WAIT_QUIET:-60}" "${bench_tls[@]}" --save "$OUT/$name-$label-$round.json" \
        $args >"$OUT/$name-$label-$round.txt" 2>"$OUT/$name-$label-$round.err" || echo "  $label: bench failed (see $OUT/$name-$label-$round.err)"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -E "$rows" "$OUT/$name-$label-$round.txt" | sed "s/^/  $label  /"
    PORT=$((PORT + 1))
    sleep 1
}

for round in $(seq "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        name=$(cut -d'|' -f1 <<<"$s")
        # ONLY="broadcast-1k idle": a subset of the scenarios.
        [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $name "* ]] || continue
        args=$(cut -d'|' -f2 <<<"$s")
        rows=$(cut -d'|' -f3- <<<"$s")
        echo "== round $round: $name ($args)"
        one plain "$name" "$args" "$rows" "$round"
        one tls "$name" "$args" "$rows" "$round"
    done
done | tee "$OUT/tls.txt"
echo "reports in $OUT"
