#!/usr/bin/env bash
# Builds the relay and sonde-bench in release, then runs every scenario of BENCHMARKS.md
# against a fresh relay each (so RSS baselines are clean) on 127.0.0.x only, and writes one
# JSON report and one table per scenario into a folder.
#
#   bench/run-all.sh [OUT_DIR]            # default: bench/results/<UTC timestamp>
#   ONLY="idle churn" bench/run-all.sh    # a subset, by scenario name
#   PERF=1 bench/run-all.sh               # also `perf record` the relay during each run
#   RELAY="/path/to/other-server" …       # any binary taking --config FILE (see below)
#   QUIET=120 NICE=-10 …                  # the defaults: see below
#
# Each run takes 10-20 s of load; the whole suite takes about 12 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
PORT=${SONDE_BENCH_PORT:-7601}
ONLY=${ONLY:-}
PERF=${PERF:-0}
RELAY=${RELAY:-target/release/sonde-relay}
BENCH=target/release/sonde-bench
# The machine may be shared (builds, other test suites): each scenario first waits up to
# QUIET seconds for other processes to go quiet, every window reports how many cores other
# processes used meanwhile ("other processes cores busy"), and the relay and the bench run
# at a higher priority (NICE; needs root, ignored otherwise) so that a build started during a
# run disturbs it less.
QUIET=${QUIET:-120}
NICE=${NICE:--10}
mkdir -p "$OUT"

cargo build --release -p sonde-relay -p sonde-bench

# Every connection is a file descriptor, in the relay and in the bench alike. A process may
# raise its soft limit up to the hard one; raising the hard limit needs root with
# CAP_SYS_RESOURCE (or `ulimit -Hn` / limits.conf set by an administrator).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
IDLE_N=${IDLE_N:-20000}
if [ "$NOFILE" != unlimited ] && [ "$IDLE_N" -gt $((NOFILE - 100)) ]; then
    echo "open files limit is $NOFILE: idle runs $((NOFILE - 100)) connections instead of $IDLE_N" >&2
    IDLE_N=$((NOFILE - 100))
fi

# Client events at full speed need an app with them on and no per-connection rate limit.
cp bench/relay.toml "$OUT/relay.toml"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -r)"
    echo "open files: $NOFILE"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

# prio CMD…: CMD at priority $NICE when allowed, else as is.
prio() {
    if [ "$NICE" != 0 ] && nice -n "$NICE" true 2>/dev/null; then
        exec nice -n "$NICE" "$@"
    fi
    exec "$@"
}

RELAY_PID=
stop_relay() {
    if [ -n "$RELAY_PID" ]; then
        kill "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=
    fi
}
trap stop_relay EXIT

start_relay() {
    (export SONDE_LOG=${SONDE_LOG:-warn}; prio "$RELAY" --config "$OUT/relay.toml" --bind "127.0.0.1:$PORT") >"$OUT/$1.relay.log" 2>&1 &
    RELAY_PID=$!
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "relay did not come up; see $OUT/$1.relay.log" >&2
    exit 1
}

# selected NAME: in $ONLY by full name or by scenario (the part before the first '-').
selected() {
    [ -z "$ONLY" ] && return 0
    for w in $ONLY; do
        if [ "$w" = "$1" ] || [ "$w" = "${1%%-*}" ]; then
            return 0
        fi
    done
    return 1
}

# run NAME args…: the scenario named before the first - of NAME, against a fresh relay.
run() {
    local name=$1
    shift
    selected "$name" || return 0
    echo "== $name: sonde-bench $*"
    start_relay "$name"
    local perf_pid=
    if [ "$PERF" = 1 ]; then
        perf record -F 499 -g -p "$RELAY_PID" -o "$OUT/$name.perf.data" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    (prio "$BENCH" --port "$PORT" --server-pid "$RELAY_PID" --wait-quiet "$QUIET" --save "$OUT/$name.json" "${name%%-*}" "$@") \
        >"$OUT/$name.txt" 2>"$OUT/$name.log" || echo "   $name failed: see $OUT/$name.log" >&2
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    stop_relay
    cat "$OUT/$name.txt"
    sleep 1
}

# run_floor NAME args…: `sonde-bench floor`, which starts its own writer process (no relay):
# the cheapest possible fan-out of the same messages to the same kind of subscribers.
run_floor() {
    local name=$1
    shift
    selected "$name" || return 0
    echo "== $name: sonde-bench floor $*"
    (prio "$BENCH" --wait-quiet "$QUIET" --save "$OUT/$name.json" floor "$@") \
        >"$OUT/$name.txt" 2>"$OUT/$name.log" || echo "   $name failed: see $OUT/$name.log" >&2
    cat "$OUT/$name.txt"
    sleep 1
}

run idle -n "$IDLE_N" --channels 100 --hold 5
run broadcast-1k-10 -n 1000 --rate 10 --duration 15
run broadcast-1k-100 -n 1000 --rate 100 --duration 15
run broadcast-1k-100-client -n 1000 --rate 100 --duration 15 --via client
run_floor floor-1k -n 1000 --rate 10,100 --duration 15
# Slow consumers: 2 KB messages, so that a stalled socket's backlog passes the relay's
# per-connection bound within the run; compared with the same run without stalled readers.
run broadcast-1k-100-2kb -n 1000 --rate 100 --duration 20 --payload 2000
run broadcast-1k-100-stalled -n 1000 --rate 100 --duration 20 --payload 2000 --stalled 10
# Steps up until a step is not sustained: the asked rate not kept, a loss, or over 1 s of backlog.
run broadcast-5k-max -n 5000 --rate 10,20,40,60,80,100,150,200,300,400,600,800,1000 --duration 10
run_floor floor-5k -n 5000 --rate 40,200 --duration 10
run metrics-http --hosts 500 --viewers 2 --idle 1000 --duration 15 --via http
run metrics-client --hosts 500 --viewers 2 --idle 1000 --duration 15 --via client
run churn --rate 5000 --duration 10 --concurrency 512
run churn-max --rate 0 --duration 10 --concurrency 256
run http -c 32 --duration 10

"$BENCH" summary "$OUT" >"$OUT/summary.md"
echo "results in $OUT (tables: $OUT/summary.md)"
