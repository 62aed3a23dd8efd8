#!/usr/bin/env bash
# Parlor's fan-out against redis-server's own pub/sub, on the same shape and the same
# machine: M members (subscribers), K senders (publishers), P-byte payloads, loopback.
# Each run gets a fresh redis-server and a fresh pod.
#
# Usage: [RATES="50 200 1000"] benches/redis_fanout.sh [members] [senders] [payload] [duration] [runs]
# - Without RATES: closed loop, each sender keeping 16 events in flight. Prints both
#   results and Parlor's delivered frames/s divided by Redis's.
# - With RATES: a paced sweep. At each rate (sends/s from all senders together) every event
#   leaves alone at a fixed interval, as game notes do. Prints, per rate, both systems'
#   server CPU per delivered copy and p99 latency, and Parlor's CPU per copy divided by
#   Redis's, pair by pair.
# Needs: redis-server on PATH (Debian: apt-get install redis-server) and a release build
# (cargo build --release). SERVER_BIN picks another pod binary (an older build, say) while
# BENCH_BIN stays the load generator. SERVER_CPUS and BENCH_CPUS (taskset lists, e.g. 0
# and 1) pin the servers and the load generator to their own cores, so that a saturated
# load generator cannot take CPU from the server it measures. Everything listens on
# 127.0.0.1 and stops at exit.
set -euo pipefail
M=${1:-1000}; K=${2:-4}; P=${3:-64}; D=${4:-10}; RUNS=${5:-3}
cd "$(dirname "$0")/.."
BIN=${BENCH_BIN:-target/release/parlor}
POD_BIN=${SERVER_BIN:-$BIN}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$POD_BIN" ] || { echo "no pod binary at $POD_BIN" >&2; exit 1; }
POD_BIN=$(realpath "$POD_BIN")
command -v redis-server >/dev/null || { echo "redis-server is required" >&2; exit 1; }
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

pin() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
SCPU=${SERVER_CPUS:-}; BCPU=${BENCH_CPUS:-}

. benches/lib.sh

# One run of both systems at send rate $1 (0: closed loop), results tagged $2.
run_pair() {
  local rate=$1 tag=$2 rport pport aport rpid ppid
  rport=$(free_port)
  ${SCPU:+taskset -c "$SCPU"} redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
    --client-output-buffer-limit "pubsub 0 0 0" --daemonize no --logfile "$WORK/redis.log" &
  rpid=$!; pids+=("$rpid")
  pport=$(free_port); aport=$(free_port)
  mkdir -p "$WORK/pod"
  ( cd "$WORK/pod" && PARLOR_LOG_LEVEL=warn PARLOR_WS__MAX_FRAMES_PER_SEC=1000000 \
      exec ${SCPU:+taskset -c "$SCPU"} "$POD_BIN" serve --public-addr "127.0.0.1:$pport" --admin-addr "127.0.0.1:$aport" ) &
  ppid=$!; pids+=("$ppid")
  sleep 1
  local shape="--members $M --senders $K --payload $P --duration $D --window 16 --send-rate $rate"
  pin "$BCPU" "$BIN" bench redis-fanout --redis "127.0.0.1:$rport" $shape --server-pid "$rpid" \
    --out "$OUT/redis-fanout-$tag.json" > "$OUT/redis-fanout-$tag.txt"
  pin "$BCPU" "$BIN" bench fanout --targets "127.0.0.1:$pport" $shape --server-pid "$ppid" \
    --out "$OUT/parlor-fanout-$tag.json" > "$OUT/parlor-fanout-$tag.txt"
  kill "$rpid" "$ppid"; wait "$rpid" "$ppid" 2>/dev/null || true
  rm -rf "$WORK/pod"
}

RATES=${RATES:-}
for rate in ${RATES:-0}; do
  for i in $(seq 1 "$RUNS"); do
    run_pair "$rate" "r$rate-$i"
  done
done

python3 - "$OUT" "$RUNS" ${RATES:-0} <<'PY'
import json, statistics, sys
out, runs, rates = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = statistics.median
for rate in rates:
    load = lambda kind: [json.load(open(f"{out}/{kind}-r{rate}-{i}.json")) for i in range(1, runs + 1)]
    r, p = load("redis-fanout"), load("parlor-fanout")
    cpu = lambda x: x['server']['cpu_us_per_delivered_copy'] or float('nan')
    print(f"sends/s {rate if rate != '0' else 'closed loop'}")
    for name, rs in (("redis", r), ("parlor", p)):
        print(f"  {name:7} delivered/s {med([x['delivered_per_sec'] for x in rs]):>12,.0f}"
              f"  p99 ms {med([x['latency_ms']['p99'] for x in rs]):8.3f}"
              f"  CPU µs/copy {med([cpu(x) for x in rs]):.3f}")
    if rate == '0':
        ratios = [a['delivered_per_sec'] / b['delivered_per_sec'] for a, b in zip(p, r)]
        what = "delivered frames/s"
    else:
        ratios = [cpu(a) / cpu(b) for a, b in zip(p, r)]
        what = "CPU per copy"
    print(f"  parlor/redis {what}, pair by pair: {', '.join(f'{x:.2f}' for x in ratios)}; median {med(ratios):.2f}")
PY
