#!/usr/bin/env bash
# Parlor's fan-out against redis-server's own pub/sub, on the same shape and the same
# machine: M members (subscribers), K senders (publishers), P-byte payloads, loopback.
# Prints both results and Parlor's delivered frames/s divided by Redis's.
#
# Usage: benches/redis_fanout.sh [members] [senders] [payload] [duration] [runs]
# Needs: redis-server on PATH (Debian: apt-get install redis-server) and a release build
# (cargo build --release). Everything it starts listens on 127.0.0.1 and is stopped at exit.
set -euo pipefail
M=${1:-1000}; K=${2:-4}; P=${3:-64}; D=${4:-10}; RUNS=${5:-3}
cd "$(dirname "$0")/.."
BIN=${BENCH_BIN:-target/release/parlor}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is required" >&2; exit 1; }
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --client-output-buffer-limit "pubsub 0 0 0" --daemonize no --logfile "$WORK/redis.log" &
pids+=($!); RPID=$!

PPORT=$(free_port); APORT=$(free_port)
( cd "$WORK" && PARLOR_LOG_LEVEL=warn PARLOR_WS__MAX_FRAMES_PER_SEC=1000000 \
    PARLOR_WS__OUTBOUND_QUEUE=4096 \
    exec "$OLDPWD/$BIN" serve --public-addr "127.0.0.1:$PPORT" --admin-addr "127.0.0.1:$APORT" ) &
pids+=($!); PPID_=$!
sleep 1

shape="--members $M --senders $K --payload $P --duration $D --window 16"
for i in $(seq 1 "$RUNS"); do
  "$BIN" bench redis-fanout --redis "127.0.0.1:$RPORT" $shape --server-pid "$RPID" \
    --out "$OUT/redis-fanout-$i.json" > "$OUT/redis-fanout-$i.txt"
  "$BIN" bench fanout --targets "127.0.0.1:$PPORT" $shape --server-pid "$PPID_" \
    --out "$OUT/parlor-fanout-$i.json" > "$OUT/parlor-fanout-$i.txt"
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def load(kind):
    return [json.load(open(f"{out}/{kind}-{i}.json")) for i in range(1, runs + 1)]
r, p = load("redis-fanout"), load("parlor-fanout")
med = lambda xs: statistics.median(xs)
for name, rs in (("redis", r), ("parlor", p)):
    print(f"{name:7} delivered/s median {med([x['delivered_per_sec'] for x in rs]):>12,.0f}"
          f"  p99 ms {med([x['latency_ms']['p99'] for x in rs]):.3f}"
          f"  CPU µs/copy {med([x['server']['cpu_us_per_delivered_copy'] or 0 for x in rs]):.3f}")
ratios = [a['delivered_per_sec'] / b['delivered_per_sec'] for a, b in zip(p, r)]
print(f"parlor/redis delivered frames/s, pair by pair: {', '.join(f'{x:.2f}' for x in ratios)}; median {med(ratios):.2f}")
PY
