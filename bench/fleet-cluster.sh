#!/usr/bin/env bash
# The fleet on a cluster: a real redis-server and NODES relay nodes on this machine (3 unless
# the environment says otherwise), simulated agents spread over them (agent i on node i mod
# NODES; when a connection fails an agent moves on to another node, the dead node's agents
# spread evenly over the others), a dashboard on each node. Measured: the inventory and GET
# /apps/{id}/agents on every node; Redis messages and bytes per agent per minute (steady
# window); the last node killed (SIGKILL): its agents back on the others and listed online
# again; 30 s later the same node started again on the same port: time to /readyz, bytes
# through Redis while it syncs, its inventory and GET /agents afterwards; 20 s after that a
# new node joins the loaded cluster, and 30 s later each node's RSS goes to OUT/rss.txt. Every
# second, each node's connections, agents online, RSS and CPU go to OUT/nodes.tsv.
#
#   [NODES=5] bench/fleet-cluster.sh [AGENTS] [OUT_DIR] [EXTRA[,EXTRA…]]
#
# One bench process holds at most ~19,000 sockets (the descriptor limit is 20,000): each
# EXTRA is a further bench process with that many agents (numbered after the others) that
# only stays connected. 50,000 agents on 5 nodes:
#
#   NODES=5 bench/fleet-cluster.sh 18000 OUT 16000,16000
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-18000}
OUT=${2:-bench/results/fleet-cluster-$(date -u +%Y%m%dT%H%M%SZ)}
IFS=, read -r -a EXTRAS <<<"${3:-0}"
NODES=${NODES:-3}
STEADY=${STEADY:-90} # seconds of the steady window
RELAY=${SONDE_RELAY:-target/release/sonde-relay}
BENCH=${SONDE_BENCH:-target/release/sonde-bench}
RPORT=${SONDE_BENCH_REDIS_PORT:-7730}
PORTS=()
for i in $(seq 0 "$NODES"); do PORTS+=($((RPORT + 1 + i))); done # the last one: the joining node
LAST=$((NODES - 1))
JOINER=$NODES
TOTAL=$N
for e in "${EXTRAS[@]}"; do TOTAL=$((TOTAL + e)); done
mkdir -p "$OUT"
cp bench/relay-fleet.toml "$OUT/relay.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for p in "$RPORT" "${PORTS[@]}"; do
    if ss -ltn | grep -q ":$p "; then echo "port $p is in use" >&2; exit 1; fi
done
cleanup() { kill -9 $(cat "$OUT"/*.pid 2>/dev/null) 2>/dev/null || true; }
trap cleanup EXIT

redis-server --port "$RPORT" --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
echo $! >"$OUT/redis.pid"
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done

node() { # node INDEX: starts relay node INDEX, its pid in $OUT/node-INDEX.pid
    SONDE_LOG=warn "$RELAY" --config "$OUT/relay.toml" --bind "127.0.0.1:${PORTS[$1]}" \
        --redis "redis://127.0.0.1:$RPORT/0" >>"$OUT/node-$1.log" 2>&1 &
    echo $! >"$OUT/node-$1.pid"
}
ready() { # ready INDEX: waits for /readyz 200 (two minutes at most), prints the seconds it took
    local t0 t1
    t0=$(date +%s.%N)
    until [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORTS[$1]}/readyz")" = 200 ]; do
        if awk "BEGIN { exit !($(date +%s.%N) - $t0 > 120) }"; then echo "never (120 s)"; return; fi
        sleep 0.02
    done
    t1=$(date +%s.%N)
    awk "BEGIN { printf \"%.3f\", $t1 - $t0 }"
}
redis_bytes() { # "in out": Redis's network counters
    redis-cli -p "$RPORT" info stats | awk -F: '/total_net_input_bytes/{i=$2+0} /total_net_output_bytes/{o=$2+0} END{printf "%.0f %.0f\n", i, o}'
}
for i in $(seq 0 "$LAST"); do node "$i"; done
for i in $(seq 0 "$LAST"); do ready "$i" >/dev/null; done

# Every second: Redis's CPU ticks, and per node: local connections, agents online in its
# inventory, RSS (KiB), CPU ticks (user + system, 1/100 s).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo -; }
watch_nodes() {
    set +e # a node that is down is a row of dashes, not the end of the record
    local i pid m line
    printf 'unix_s\tredis_ticks' >"$OUT/nodes.tsv"
    for i in $(seq 0 "$JOINER"); do printf '\tconn%d\tonline%d\trss%d\tticks%d' "$((i + 1))" "$((i + 1))" "$((i + 1))" "$((i + 1))" >>"$OUT/nodes.tsv"; done
    echo >>"$OUT/nodes.tsv"
    while true; do
        line=$(date +%s)$'\t'$(ticks "$(cat "$OUT/redis.pid")")
        for i in $(seq 0 "$JOINER"); do
            pid=$(cat "$OUT/node-$i.pid" 2>/dev/null || echo 0)
            if [ "$pid" != 0 ] && kill -0 "$pid" 2>/dev/null; then
                m=$(curl -s -m 1 "http://127.0.0.1:${PORTS[$i]}/metrics" |
                    awk '/^sonde_connections[{ ]/{c+=$2} /^sonde_agents_online[{ ]/{o+=$2} END{print c+0 "\t" o+0}')
                line+=$'\t'"$m"$'\t'"$(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo -)"$'\t'"$(ticks "$pid")"
            else
                line+=$'\t-\t-\t-\t-'
            fi
        done
        echo "$line" >>"$OUT/nodes.tsv"
        sleep 1
    done
}
watch_nodes &
echo $! >"$OUT/watch.pid"

# The killed node started again on its port 30 s after it died; 20 s later a new node joins.
# Each: time to ready and what went through Redis meanwhile.
comeback() { # comeback INDEX LABEL
    local b0 b1 took
    b0=$(redis_bytes)
    node "$1"
    took=$(ready "$1")
    b1=$(redis_bytes)
    echo "$2: ready after ${took} s; redis bytes in $(($(cut -d' ' -f1 <<<"$b1") - $(cut -d' ' -f1 <<<"$b0"))), out $(($(cut -d' ' -f2 <<<"$b1") - $(cut -d' ' -f2 <<<"$b0"))) meanwhile (at $(date -u +%T))" | tee -a "$OUT/join.txt"
}
later() {
    set +e
    while kill -0 "$(cat "$OUT/node-$LAST.pid")" 2>/dev/null; do sleep 0.5; done
    echo "node $NODES killed at $(date -u +%T)" | tee -a "$OUT/join.txt"
    sleep 30
    comeback "$LAST" "node $NODES started again"
    sleep 20
    comeback "$JOINER" "node $((JOINER + 1)) joined"
    sleep 30
    # Each node's RSS with the whole fleet connected: the joined node holds no agent of its
    # own, only the inventory of the others' (what a host costs a node it is not connected to).
    for i in $(seq 0 "$JOINER"); do
        echo "node $((i + 1)): $(awk '/VmRSS/{print $2, $3}' "/proc/$(cat "$OUT/node-$i.pid")/status") RSS, $(curl -s "http://127.0.0.1:${PORTS[$i]}/metrics" | awk '/^sonde_connections[{ ]/{s+=$2} END{print s+0}') connections ($(date -u +%T))" | tee -a "$OUT/rss.txt"
        curl -s "http://127.0.0.1:${PORTS[$i]}/metrics" | grep -E '^sonde_(agents_online|cluster)' >"$OUT/metrics-node-$i.txt" || true
    done
}
KILL="kill -9 \$(cat $OUT/node-$LAST.pid)"
ALSO=$(for i in $(seq 1 "$LAST"); do printf '127.0.0.1:%s,' "${PORTS[$i]}"; done)
ALSO=${ALSO%,}
first=$N
for e in "${EXTRAS[@]}"; do
    [ "$e" -gt 0 ] || continue
    "$BENCH" --port "${PORTS[0]}" fleet --agents "$e" --first "$first" --prefix c- --also "$ALSO" \
        --dashboards 0 --steady 0 --linger 1200 >"$OUT/extra-$first.txt" 2>&1 &
    echo $! >"$OUT/extra-$first.pid"
    first=$((first + e))
done
if [ "$TOTAL" -gt "$N" ]; then
    # Until the cluster counts them online (at most three minutes).
    for _ in $(seq 180); do
        [ "$(curl -s "http://127.0.0.1:${PORTS[0]}/metrics" | awk '/^sonde_agents_online/{s+=$2} END{print s+0}')" -ge $((TOTAL - N)) ] && break
        sleep 1
    done
fi
later &
LATER=$!
"$BENCH" --port "${PORTS[0]}" --save "$OUT/fleet.json" fleet --agents "$N" --prefix c- \
    --also "$ALSO" --total "$TOTAL" --dashboards "$NODES" --redis "127.0.0.1:$RPORT" \
    --steady "$STEADY" --restart-cmd "$KILL" --after 90 --linger 20 2>&1 | tee "$OUT/fleet.txt"
wait "$LATER"
