#!/usr/bin/env bash
# Starts a cluster on 127.0.0.1: its own redis-server and SecantusDB (MongoDB wire server)
# on free ports, and PODS release pods sharing them and one signing key. Runs one
# `parlor bench` scenario RUNS times with clients spread over the pods, reading the CPU
# and RSS of every pod and of redis-server from /proc, then stops everything. Results
# land in $OUT as JSON and text.
#
# Usage: [PODS=3] benches/cluster.sh NAME RUNS -- <parlor bench arguments without --targets>
# e.g.   PODS=3 benches/cluster.sh notes-3 3 -- notes --rooms 1 --players 16 --rate 100
# PODS=1 gives the single-pod figures on the same shape, with Redis and MongoDB still in
# the path. SERVER_CPUS / BENCH_CPUS pin the servers and the load generator (taskset).
set -euo pipefail
NAME=$1; RUNS=$2; shift 2; [ "${1:-}" = "--" ] && shift
cd "$(dirname "$0")/.."
BIN=$(realpath "${BENCH_BIN:-target/release/parlor}")
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
PODS=${PODS:-3}
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"
venv="${PARLOR_SECANTUS_VENV:-$HOME/.cache/parlor/secantus}"
[ -x "$venv/bin/secantusd-py" ] || { echo "run scripts/test-deps.sh first" >&2; exit 1; }
pin() { if [ -n "${1:-}" ]; then echo "taskset -c $1"; fi; }
. benches/lib.sh

for i in $(seq 1 "$RUNS"); do
  WORK=$(mktemp -d)
  RPORT=$(free_port); MPORT=$(free_port)
  $(pin "${SERVER_CPUS:-}") redis-server --port "$RPORT" --bind 127.0.0.1 --save "" \
    --appendonly no --loglevel warning > "$WORK/redis.log" 2>&1 &
  REDIS=$!
  "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$MPORT" --storage-path :memory: \
    > "$WORK/mongo.log" 2>&1 &
  MONGO=$!
  wait_port "$RPORT"; wait_port "$MPORT"
  export PARLOR_LOG_LEVEL=warn PARLOR_WS__MAX_FRAMES_PER_SEC=1000000 \
    PARLOR_CLUSTER__KIND=redis PARLOR_CLUSTER__REDIS_URL="redis://127.0.0.1:$RPORT/" \
    PARLOR_CLUSTER__KEY_PREFIX="bench$i" \
    PARLOR_STORE__KIND=mongodb PARLOR_STORE__DATABASE="bench$i" \
    PARLOR_STORE__MONGODB_URI="mongodb://127.0.0.1:$MPORT/?directConnection=true"
  "$BIN" keygen --out "$WORK" > /dev/null
  export PARLOR_AUTH__SIGNING_KEY="$WORK/signing.pem"
  PIDS=("$REDIS"); TARGETS=()
  for p in $(seq 1 "$PODS"); do
    PPORT=$(free_port); APORT=$(free_port)
    mkdir -p "$WORK/pod$p"
    ( cd "$WORK/pod$p" && PARLOR_SERVER__POD_NAME="pod$p" exec $(pin "${SERVER_CPUS:-}") \
        "$BIN" serve --public-addr "127.0.0.1:$PPORT" --admin-addr "127.0.0.1:$APORT" ) &
    PIDS+=("$!"); TARGETS+=("127.0.0.1:$PPORT")
    wait_port "$PPORT"
  done
  sleep 1
  $(pin "${BENCH_CPUS:-}") "$BIN" bench "$@" --targets "$(IFS=,; echo "${TARGETS[*]}")" \
    --server-pid "$(IFS=,; echo "${PIDS[*]}")" \
    --out "$OUT/$NAME-$i.json" > "$OUT/$NAME-$i.txt" 2> "$OUT/$NAME-$i.log" || true
  cat "$OUT/$NAME-$i.txt"
  for pid in "${PIDS[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  kill "$REDIS" "$MONGO" 2>/dev/null || true
  wait "$REDIS" "$MONGO" 2>/dev/null || true
  rm -rf "$WORK"
done
