#!/usr/bin/env bash
# Starts a cluster on 127.0.0.1: its own redis-server and SecantusDB (MongoDB wire server)
# on free ports, and PODS release pods sharing them and one signing key. Runs one
# `parlor bench` scenario RUNS times with clients spread over the pods, reading the CPU
# and RSS of every pod and of redis-server from /proc, then stops everything. Results
# land in $OUT as JSON and text, with each pod's log beside them.
#
# Usage: [PODS=3] benches/cluster.sh NAME RUNS -- <parlor bench arguments without --targets>
# e.g.   PODS=3 benches/cluster.sh notes-3 3 -- notes --rooms 1 --players 16 --rate 100
# PODS=1 gives the single-pod figures on the same shape, with Redis and MongoDB still in
# the path. SERVER_CPUS / BENCH_CPUS pin the servers and the load generator (taskset).
# REDIS=cluster runs a Redis Cluster of MASTERS masters (3), each with one replica, in
# place of the one redis-server; the pods then use sharded pub/sub and wait for one
# replica (the cluster-mode default). Redis processes are reported apart from the pods.
# CLIENT_PODS="2 3" sends every client to those pods only, and ROOM_POD=1 creates rooms
# through pod 1, so that a room's home and its members can be put on different pods.
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
  MPORT=$(free_port)
  "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$MPORT" --storage-path :memory: \
    > "$WORK/mongo.log" 2>&1 &
  MONGO=$!
  REDIS_PIDS=()
  if [ "${REDIS:-standalone}" = cluster ]; then
    NODES=()
    for n in $(seq 1 $((2 * ${MASTERS:-3}))); do
      P=$(free_port); B=$(free_port)
      $(pin "${SERVER_CPUS:-}") redis-server --port "$P" --bind 127.0.0.1 --save "" \
        --appendonly no --loglevel warning --cluster-enabled yes --cluster-port "$B" \
        --cluster-config-file "$WORK/nodes-$P.conf" --cluster-node-timeout 2000 \
        --dir "$WORK" > "$WORK/redis-$P.log" 2>&1 &
      REDIS_PIDS+=("$!"); NODES+=("127.0.0.1:$P")
    done
    for a in "${NODES[@]}"; do wait_port "${a#*:}"; done
    redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes > "$WORK/create.log"
    # Every node agrees, and every replica has synced, before pods start.
    for _ in $(seq 1 300); do
      ok=1
      for a in "${NODES[@]}"; do
        redis-cli -p "${a#*:}" cluster info | grep -q cluster_state:ok || ok=0
        redis-cli -p "${a#*:}" info replication | grep -Eq 'role:master|master_link_status:up' || ok=0
      done
      [ $ok = 1 ] && break; sleep 0.1
    done
    [ $ok = 1 ] || { echo "Redis Cluster did not come up" >&2; exit 1; }
    URLS=$(printf '"redis://%s",' "${NODES[@]}")
    export PARLOR_CLUSTER__REDIS_MODE=cluster PARLOR_CLUSTER__REDIS_URLS="[${URLS%,}]"
  else
    RPORT=$(free_port)
    $(pin "${SERVER_CPUS:-}") redis-server --port "$RPORT" --bind 127.0.0.1 --save "" \
      --appendonly no --loglevel warning > "$WORK/redis.log" 2>&1 &
    REDIS_PIDS+=("$!")
    wait_port "$RPORT"
    export PARLOR_CLUSTER__REDIS_URL="redis://127.0.0.1:$RPORT/"
  fi
  wait_port "$MPORT"
  export PARLOR_LOG_LEVEL=warn PARLOR_WS__MAX_FRAMES_PER_SEC=1000000 \
    PARLOR_CLUSTER__KIND=redis PARLOR_CLUSTER__KEY_PREFIX="bench$i" \
    PARLOR_STORE__KIND=mongodb PARLOR_STORE__DATABASE="bench$i" \
    PARLOR_STORE__MONGODB_URI="mongodb://127.0.0.1:$MPORT/?directConnection=true"
  "$BIN" keygen --out "$WORK" > /dev/null
  export PARLOR_AUTH__SIGNING_KEY="$WORK/signing.pem"
  PIDS=(); TARGETS=(); ADMINS=()
  for p in $(seq 1 "$PODS"); do
    PPORT=$(free_port); APORT=$(free_port)
    mkdir -p "$WORK/pod$p"
    ( cd "$WORK/pod$p" && PARLOR_SERVER__POD_NAME="pod$p" exec $(pin "${SERVER_CPUS:-}") \
        "$BIN" serve --public-addr "127.0.0.1:$PPORT" --admin-addr "127.0.0.1:$APORT" \
        > "$OUT/$NAME-$i-pod$p.log" 2>&1 ) &
    PIDS+=("$!"); TARGETS+=("127.0.0.1:$PPORT"); ADMINS+=("$APORT")
    wait_port "$PPORT"
  done
  sleep 1
  # CLIENT_PODS (e.g. "2") puts every client on those pods; ROOM_POD picks the pod that
  # rooms are created through, which becomes their home.
  CLIENTS=()
  for p in ${CLIENT_PODS:-$(seq 1 "$PODS")}; do CLIENTS+=("${TARGETS[$((p - 1))]}"); done
  VIA=(); [ -n "${ROOM_POD:-}" ] && VIA=(--room-via "${TARGETS[$((ROOM_POD - 1))]}")
  $(pin "${BENCH_CPUS:-}") "$BIN" bench "$@" "${VIA[@]}" --targets "$(IFS=,; echo "${CLIENTS[*]}")" \
    --server-pid "$(IFS=,; echo "${PIDS[*]}")" --redis-pid "$(IFS=,; echo "${REDIS_PIDS[*]}")" \
    --out "$OUT/$NAME-$i.json" > "$OUT/$NAME-$i.txt" 2> "$OUT/$NAME-$i.log" || true
  # Rooms each pod is home to, from its own gauge, while the run's rooms still live.
  for a in "${ADMINS[@]}"; do
    { curl -s "http://127.0.0.1:$a/metrics" || true; } | awk '$1 == "parlor_rooms" {printf "%d ", $2}'
  done | sed 's/^/  rooms homed per pod   /;s/ $/\n/' >> "$OUT/$NAME-$i.txt" || true
  cat "$OUT/$NAME-$i.txt"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  kill "${REDIS_PIDS[@]}" "$MONGO" 2>/dev/null || true
  wait "${REDIS_PIDS[@]}" "$MONGO" 2>/dev/null || true
  rm -rf "$WORK"
done
