#!/usr/bin/env bash
# Broadcast only, three relays taking turns (before, after with the recorder off, after with
# it on), ROUNDS rounds: CPU per million deliveries is what a change to the fan-out shows in.
set -euo pipefail
cd /tmp/sonde-old
OUT=$1; ROUNDS=${2:-4}; PORT=7901
BENCH=/tmp/sonde-old-target/release/sonde-bench
mkdir -p "$OUT"; cp bench/relay.toml "$OUT/relay.toml"
awk '/^\[edge\]/{skip=1; next} /^\[/{skip=0} !skip' bench/relay.toml > "$OUT/relay-noedge.toml"
{ cat "$OUT/relay.toml"; printf '\n[recorder]\nenabled = false\n'; } > "$OUT/relay-off.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
run() {
  local label=$1 bin=$2 config=$3 round=$4
  SONDE_LOG=warn "$bin" --config "$config" --bind "127.0.0.1:$PORT" >"$OUT/$label-$round.relay.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  "$BENCH" --port "$PORT" --server-pid "$pid" --save "$OUT/$label-$round.json" broadcast -n 1000 --rate 10,100 --duration 10 >"$OUT/$label-$round.txt" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -E "latency p99 |server cpu per million" "$OUT/$label-$round.txt" | sed "s/^/  $label  /"
  PORT=$((PORT + 1)); sleep 1
}
for round in $(seq "$ROUNDS"); do
  echo "== round $round ($(cut -d' ' -f1-3 /proc/loadavg))"
  run before /tmp/sonde-relay-before "$OUT/relay.toml" "$round"
  run off /tmp/sonde-relay-after2 "$OUT/relay-off.toml" "$round"
  run on /tmp/sonde-relay-after2 "$OUT/relay.toml" "$round"
done | tee "$OUT/rotate.txt"
