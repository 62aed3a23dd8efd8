#!/usr/bin/env bash
# Lints a running pod's /metrics with `promtool check metrics`: a fresh pod on loopback
# ports, with a guest session so that labelled families show. The pod runs with the
# settings of k8s/parlor.yaml's ConfigMap (the chart's single profile), so this also
# checks that the pod accepts the config the chart renders.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${OPS_TOOLS:-$HOME/.cache/parlor/tools}"
PROMTOOL="$TOOLS/bin/promtool"
cargo build --locked --quiet --bin parlor
bin="${CARGO_TARGET_DIR:-target}/debug/parlor"

dir=$(mktemp -d)
# The ConfigMap's variables, but the data dir (the pod's volume there, a temp dir here).
# The ops venv has PyYAML (kubernetes-validate needs it).
"$TOOLS/venv/bin/python" - >"$dir/env" <<'PY'
import yaml
for doc in yaml.safe_load_all(open("k8s/parlor.yaml")):
    if doc and doc["kind"] == "ConfigMap":
        for k, v in doc["data"].items():
            if k != "PARLOR_SERVER__DATA_DIR":
                print(f"{k}={v}")
PY
grep -q '^PARLOR_STORE__KIND=' "$dir/env" || { echo "k8s/parlor.yaml has no ConfigMap settings" >&2; exit 1; }
# Only these: the pod would refuse any other PARLOR_* variable of the caller's as a typo.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PARLOR_' || true)
while IFS= read -r kv; do
  export "${kv?}"
done <"$dir/env"
ports=$(python3 -c 'import socket
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
public=$(echo "$ports" | sed -n 1p)
admin=$(echo "$ports" | sed -n 2p)
"$bin" serve --public-addr "127.0.0.1:$public" --admin-addr "127.0.0.1:$admin" \
  --data-dir "$dir" >"$dir/log" 2>&1 &
pod=$!
trap 'kill "$pod" 2>/dev/null; wait "$pod" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
  "$bin" health --ready --addr "127.0.0.1:$admin" 2>/dev/null && break
  sleep 0.05
done
"$bin" health --ready --addr "127.0.0.1:$admin" || { cat "$dir/log" >&2; exit 1; }
# A guest account and a refused login put a few labelled families on the page (python
# rather than curl, which a new machine may lack).
python3 - "$public" "$admin" "$dir/metrics" <<'PY'
import json, sys, urllib.request, urllib.error
public, admin, out = sys.argv[1:]
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{public}{path}", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as e:
        if e.code != 401:
            raise
post("/api/v1/auth/guest", {"name": "lint"})
post("/api/v1/auth/login", {"login": "nobody", "password": "wrong password"})
with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
    open(out, "wb").write(r.read())
PY
families=$(grep -c '^# TYPE ' "$dir/metrics")
echo "promtool check metrics: $families families"
"$PROMTOOL" check metrics <"$dir/metrics"
