#!/usr/bin/env bash
# The fleet on a cluster: a real redis-server and three relay nodes on this machine, N
# simulated agents spread over them (agent i on node i mod 3, moving on to the next node when
# a connection fails), a dashboard on each node. Measured: the inventory and GET
# /apps/{id}/agents on every node; Redis messages and bytes per agent per minute (steady
# window); node 3 killed (SIGKILL): its agents back on the others and listed online again;
# then a fourth node joining the loaded cluster: time to /readyz and bytes through Redis.
#
#   bench/fleet-cluster.sh [AGENTS] [OUT_DIR] [EXTRA]
#
# One bench process holds at most ~19,000 sockets (the descriptor limit is 20,000): EXTRA
# more agents come from a second bench process that only stays connected.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-18000}
OUT=${2:-bench/results/fleet-cluster-$(date -u +%Y%m%dT%H%M%SZ)}
EXTRA=${3:-0}
RELAY=${SONDE_RELAY:-target/release/sonde-relay}
BENCH=target/release/sonde-bench
RPORT=${SONDE_BENCH_REDIS_PORT:-7730}
PORTS=(7731 7732 7733 7734)
mkdir -p "$OUT"
cp bench/relay-fleet.toml "$OUT/relay.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for p in "$RPORT" "${PORTS[@]}"; do
    if ss -ltn | grep -q "127.0.0.1:$p \|:$p "; then echo "port $p is in use" >&2; exit 1; fi
done
cleanup() { kill -9 $(cat "$OUT"/*.pid) 2>/dev/null || true; }
trap cleanup EXIT

redis-server --port "$RPORT" --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
echo $! >"$OUT/redis.pid"
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done

node() { # node INDEX: starts relay node INDEX, its pid in $OUT/node-INDEX.pid
    SONDE_LOG=warn "$RELAY" --config "$OUT/relay.toml" --bind "127.0.0.1:${PORTS[$1]}" \
        --redis "redis://127.0.0.1:$RPORT/0" >>"$OUT/node-$1.log" 2>&1 &
    echo $! >"$OUT/node-$1.pid"
}
ready() { # ready INDEX: waits for /readyz 200, prints the seconds it took
    local t0 t1
    t0=$(date +%s.%N)
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORTS[$1]}/readyz")" = 200 ]; do sleep 0.02; done
    t1=$(date +%s.%N)
    awk "BEGIN { printf \"%.3f\", $t1 - $t0 }"
}
for i in 0 1 2; do node "$i"; done
for i in 0 1 2; do ready "$i" >/dev/null; done

# A fourth node joins 30 s after node 3 is killed, with the fleet connected to the others:
# its time to ready and what went through Redis meanwhile.
join() {
    while kill -0 "$(cat "$OUT/node-2.pid")" 2>/dev/null; do sleep 0.5; done
    sleep 30
    local in0 out0 in1 out1 took
    in0=$(redis-cli -p "$RPORT" info stats | awk -F: '/total_net_input_bytes/{print $2+0}')
    out0=$(redis-cli -p "$RPORT" info stats | awk -F: '/total_net_output_bytes/{print $2+0}')
    node 3
    took=$(ready 3)
    in1=$(redis-cli -p "$RPORT" info stats | awk -F: '/total_net_input_bytes/{print $2+0}')
    out1=$(redis-cli -p "$RPORT" info stats | awk -F: '/total_net_output_bytes/{print $2+0}')
    echo "node 4 joined: ready after ${took} s; redis bytes in $((in1 - in0)), out $((out1 - out0)) meanwhile" | tee "$OUT/join.txt"
}
KILL="kill -9 \$(cat $OUT/node-2.pid)"
ALSO="127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}"
if [ "$EXTRA" -gt 0 ]; then
    "$BENCH" --port "${PORTS[0]}" fleet --agents "$EXTRA" --first "$N" --prefix c- --also "$ALSO" \
        --dashboards 0 --steady 0 --linger 900 >"$OUT/extra.txt" 2>&1 &
    echo $! >"$OUT/extra.pid"
    # Until the cluster counts them online (at most two minutes).
    for _ in $(seq 120); do
        [ "$(curl -s "http://127.0.0.1:${PORTS[0]}/metrics" | awk '/^sonde_agents_online/{s+=$2} END{print s+0}')" -ge "$EXTRA" ] && break
        sleep 1
    done
fi
join &
JOIN=$!
"$BENCH" --port "${PORTS[0]}" --save "$OUT/fleet.json" fleet --agents "$N" --prefix c- \
    --also "$ALSO" --total $((N + EXTRA)) --dashboards 3 --redis "127.0.0.1:$RPORT" \
    --steady 90 --restart-cmd "$KILL" --after 30 --linger 30 2>&1 | tee "$OUT/fleet.txt"
wait "$JOIN"
# Each node's RSS at the end: node 4 holds no agent of its own, only the inventory of the
# others' (what a host costs a node it is not connected to).
for i in 0 1 3; do
    echo "node $((i + 1)): $(awk '/VmRSS/{print $2, $3}' "/proc/$(cat "$OUT/node-$i.pid")/status") RSS, $(curl -s "http://127.0.0.1:${PORTS[$i]}/metrics" | awk '/^sonde_connections[{ ]/{s+=$2} END{print s+0}') connections" | tee -a "$OUT/rss.txt"
done
for i in 0 1 3; do
    curl -s "http://127.0.0.1:${PORTS[$i]}/metrics" | grep -E '^sonde_(agents_online|cluster)' >"$OUT/metrics-node-$i.txt" || true
done
