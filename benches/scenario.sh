#!/usr/bin/env bash
# Starts a fresh release pod on 127.0.0.1 (its own data dir, bench-friendly limits), runs
# one `parlor bench` scenario against it RUNS times with the pod's PID for /proc readings,
# and stops the pod. Results land in $OUT as JSON and text.
#
# Usage: [PAUSE=secs] benches/scenario.sh NAME RUNS -- <parlor bench arguments without --targets>
# SERVER_BIN picks another pod binary (an older build, say); BENCH_BIN is the load generator.
# e.g.   benches/scenario.sh connect-18k 3 -- connect --clients 18000 --procs 2 \
#            --sources 127.0.0.2,127.0.0.3 --checkpoints 1000,5000,10000,18000
set -euo pipefail
NAME=$1; RUNS=$2; shift 2; [ "${1:-}" = "--" ] && shift
cd "$(dirname "$0")/.."
BIN=${BENCH_BIN:-target/release/parlor}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
POD_BIN=$(realpath "${SERVER_BIN:-$BIN}")
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"
. benches/lib.sh
for i in $(seq 1 "$RUNS"); do
  WORK=$(mktemp -d)
  PPORT=$(free_port); APORT=$(free_port)
  # Frame limits are raised so that the scenario, not the anti-flood guard, sets the pace.
  ( cd "$WORK" && PARLOR_LOG_LEVEL=warn PARLOR_WS__MAX_FRAMES_PER_SEC=1000000 \
      exec "$POD_BIN" serve --public-addr "127.0.0.1:$PPORT" --admin-addr "127.0.0.1:$APORT" ) &
  POD=$!
  sleep 1
  "$BIN" bench "$@" --targets "127.0.0.1:$PPORT" --server-pid "$POD" \
    --out "$OUT/$NAME-$i.json" > "$OUT/$NAME-$i.txt" 2> "$OUT/$NAME-$i.log" || true
  cat "$OUT/$NAME-$i.txt"
  kill -TERM "$POD"; wait "$POD" 2>/dev/null || true
  rm -rf "$WORK"
  # Between runs: let the previous run's sockets leave TIME_WAIT (60 s on Linux) when
  # PAUSE asks for it; thousands of them skew a connection-heavy run.
  if [ "$i" -lt "$RUNS" ]; then sleep "${PAUSE:-0}"; fi
done
