#!/usr/bin/env bash
# What live rooms cost Redis: starts its own redis-server and one release pod (cluster
# mode, embedded store) on free ports, runs `parlor bench notes` with ROOMS rooms of
# PLAYERS members each sending RATE events a second, and part way through reads, for
# every room, MEMORY USAGE of its keys, the members in its checkpoint and the events in
# its history, plus INFO commandstats over 5 s. Prints medians per room, per member and
# per retained event, and commands per second per 1,000 active members.
#
# Usage: [ROOMS=200] [PLAYERS=8] [RATE=1] benches/redis_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BENCH_BIN:-target/release/parlor}")
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
ROOMS=${ROOMS:-200}; PLAYERS=${PLAYERS:-8}; RATE=${RATE:-1}
. benches/lib.sh
WORK=$(mktemp -d)
RPORT=$(free_port); PPORT=$(free_port); APORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --loglevel warning > "$WORK/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS ${POD:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port "$RPORT"
"$BIN" keygen --out "$WORK" > /dev/null
( cd "$WORK" && PARLOR_LOG_LEVEL=warn PARLOR_WS__MAX_FRAMES_PER_SEC=1000000 \
    PARLOR_CLUSTER__KIND=redis PARLOR_CLUSTER__REDIS_URL="redis://127.0.0.1:$RPORT/" \
    PARLOR_AUTH__SIGNING_KEY="$WORK/signing.pem" PARLOR_SERVER__DATA_DIR="$WORK/data" \
    exec "$BIN" serve --public-addr "127.0.0.1:$PPORT" --admin-addr "127.0.0.1:$APORT" ) &
POD=$!
wait_port "$PPORT"
cli() { redis-cli -p "$RPORT" "$@"; }
base=$(cli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r')
"$BIN" bench notes --rooms "$ROOMS" --players "$PLAYERS" --rate "$RATE" --payload 16 \
  --duration 25 --warmup 2 --targets "127.0.0.1:$PPORT" > "$WORK/bench.txt" 2>&1 &
BENCH=$!
sleep 15
calls() { cli info commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([a-z]*\):calls=\([0-9]*\).*/\1 \2/p'; }
calls > "$WORK/calls0"; sleep 5; calls > "$WORK/calls1"
used=$(cli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r')
cli --scan --pattern 'parlor:{*}:state' > "$WORK/rooms"
while read -r key; do
  room=${key%:state}
  printf '%s' "$room"
  for k in state hist listing lease epoch; do
    printf ' %s' "$(cli memory usage "$room:$k" samples 0 | tr -d '\r')"
  done
  printf ' %s %s\n' "$(cli hlen "$room:state" | tr -d '\r')" "$(cli xlen "$room:hist" | tr -d '\r')"
done < "$WORK/rooms" > "$WORK/usage"
wait "$BENCH" || true
python3 - "$WORK" "$ROOMS" "$PLAYERS" "$base" "$used" <<'EOF'
import statistics as st, sys
work, rooms, players, base, used = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = []
for line in open(f"{work}/usage"):
    f = line.split()
    n = lambda x: int(x) if x.isdigit() else 0
    state, hist, listing, lease, epoch, fields, events = map(n, f[1:8])
    # The checkpoint holds seq, info, settings, bans and mutes beside one field per member.
    members = max(fields - 5, 0)
    rows.append((state, hist, listing, lease + epoch, members, events))
med = lambda i: st.median(r[i] for r in rows)
print(f"rooms live: {len(rows)} of {rooms}, {players} players each")
print(f"used_memory over the empty server: {(used - base) / max(len(rows), 1):.0f} bytes per room")
print(f"per room, median bytes: checkpoint {med(0):.0f}, history {med(1):.0f}, listing {med(2):.0f}, lease+epoch {med(3):.0f}")
print(f"members per checkpoint {med(4):.0f}, events retained {med(5):.0f}")
per_event = st.median(r[1] / r[5] for r in rows if r[5])
print(f"history bytes per retained event: {per_event:.0f}")
c0 = dict(l.split() for l in open(f"{work}/calls0"))
c1 = dict(l.split() for l in open(f"{work}/calls1"))
delta = {k: (int(v) - int(c0.get(k, 0))) / 5 for k, v in c1.items()}
active = len(rows) * players
total = sum(delta.values())
top = ", ".join(f"{k} {v * 1000 / active:.0f}" for k, v in sorted(delta.items(), key=lambda kv: -kv[1])[:5])
print(f"commands/s: {total:.0f} in all, {total * 1000 / active:.0f} per 1,000 active members ({top})")
EOF
tail -12 "$WORK/bench.txt"
