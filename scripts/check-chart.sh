#!/usr/bin/env bash
# Every check of the Helm chart, the plain manifests in k8s/ and the Dockerfile. Each step
# fails the run. Tools come from scripts/ops-deps.sh: $OPS_TOOLS/bin (helm,
# kubernetes-validate, promtool, hadolint) and the venv's python, which has PyYAML.
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS="${OPS_TOOLS:-$HOME/.cache/parlor/tools}"
BIN="$TOOLS/bin"
PY="$TOOLS/venv/bin/python"
CHART=helm/parlor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n== %s\n' "$*"; }

for t in helm kubernetes-validate promtool hadolint; do
  [ -x "$BIN/$t" ] || { echo "missing $BIN/$t: run scripts/ops-deps.sh" >&2; exit 1; }
done
[ -x "$PY" ] || { echo "missing $PY: run scripts/ops-deps.sh" >&2; exit 1; }

# The values files: "default" (values.yaml alone) and each ci/*.yaml.
cases=(default)
for f in "$CHART"/ci/*.yaml; do cases+=("$(basename "$f" .yaml)"); done
values_flags() { [ "$1" = default ] || echo "-f $CHART/ci/$1.yaml"; }

for c in "${cases[@]}"; do
  step "helm lint --strict ($c)"
  # shellcheck disable=SC2046
  "$BIN/helm" lint --strict "$CHART" $(values_flags "$c")
done

for c in "${cases[@]}"; do
  step "helm template ($c)"
  # shellcheck disable=SC2046
  "$BIN/helm" template parlor "$CHART" --namespace default $(values_flags "$c") >"$tmp/$c.yaml"
  echo "$(grep -c '^kind:' "$tmp/$c.yaml") objects"
done

# kubernetes-validate has no schemas for CRD kinds: it only warns and passes them, and it
# does the same for a built-in kind with a wrong apiVersion. So the CRD documents are split
# off and checked below, and any warning on the rest fails.
step "split rendered output: built-in kinds, and the CRD kinds ServiceMonitor and PrometheusRule"
"$PY" - "$tmp" "${cases[@]}" <<'EOF'
import sys, yaml
tmp, cases = sys.argv[1], sys.argv[2:]
crds = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
for c in cases:
    docs = [d for d in yaml.safe_load_all(open(f"{tmp}/{c}.yaml")) if d]
    builtin = [d for d in docs if "monitoring.coreos.com" not in d["apiVersion"]]
    crd = [d for d in docs if d not in builtin]
    for d in crd:
        if (d["apiVersion"], d["kind"]) not in crds:
            sys.exit(f"{c}: unexpected kind {d['apiVersion']} {d['kind']}")
    yaml.safe_dump_all(builtin, open(f"{tmp}/{c}.builtin.yaml", "w"))
    yaml.safe_dump_all(crd, open(f"{tmp}/{c}.crd.yaml", "w"))
    print(f"{c}: {len(builtin)} built-in, {len(crd)} CRD ({', '.join(d['kind'] for d in crd) or 'none'})")
EOF

# validate FILE...: kubernetes-validate --strict, where a warning (unknown kind) also fails.
validate() {
  local out
  if ! out=$("$BIN/kubernetes-validate" --strict "$@" 2>&1); then
    echo "$out"
    return 1
  fi
  echo "$out"
  if grep -q "^WARN" <<<"$out"; then
    echo "kubernetes-validate had no schema for a document above" >&2
    return 1
  fi
}

for c in "${cases[@]}"; do
  step "kubernetes-validate --strict ($c, built-in kinds)"
  validate "$tmp/$c.builtin.yaml"
done

# No CRD schemas offline: check that the CRD documents parse, carry the right apiVersion and
# kind, point at what the chart renders, and that the rules pass promtool.
for c in "${cases[@]}"; do
  [ -s "$tmp/$c.crd.yaml" ] && grep -q kind "$tmp/$c.crd.yaml" || continue
  step "CRD kinds ($c): ServiceMonitor selects the admin Service, PrometheusRule passes promtool"
  "$PY" - "$tmp/$c.yaml" "$CHART/rules/parlor.rules.yaml" "$tmp/$c.rules.yaml" <<'EOF'
import sys, yaml
rendered, rules_file, out = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
services = [d for d in docs if d["kind"] == "Service"]
for d in docs:
    if d["apiVersion"] != "monitoring.coreos.com/v1" and d["kind"] in ("ServiceMonitor", "PrometheusRule"):
        sys.exit(f"{d['kind']} has apiVersion {d['apiVersion']}")
    if d["kind"] == "ServiceMonitor":
        sel = d["spec"]["selector"]["matchLabels"]
        hits = [s for s in services if sel.items() <= s["metadata"]["labels"].items()]
        if [s["metadata"]["name"] for s in hits] != [s["metadata"]["name"] for s in services if s["metadata"]["name"].endswith("-admin")]:
            sys.exit(f"ServiceMonitor selects {[s['metadata']['name'] for s in hits]}, not the admin Service alone")
        ports = {p["name"] for p in hits[0]["spec"]["ports"]}
        for e in d["spec"]["endpoints"]:
            if e["port"] not in ports or e["path"] != "/metrics":
                sys.exit(f"ServiceMonitor endpoint {e} does not match the admin Service's ports {ports}")
        print(f"ServiceMonitor {d['metadata']['name']}: selects {hits[0]['metadata']['name']}, port {e['port']}")
    if d["kind"] == "PrometheusRule":
        groups = d["spec"]["groups"]
        if groups != (yaml.safe_load(open(rules_file)) or {}).get("groups"):
            sys.exit(f"PrometheusRule groups differ from {rules_file}")
        yaml.safe_dump({"groups": groups}, open(out, "w"))
        print(f"PrometheusRule {d['metadata']['name']}: {len(groups)} groups, as in {rules_file}")
EOF
  if [ -f "$tmp/$c.rules.yaml" ]; then
    "$BIN/promtool" check rules "$tmp/$c.rules.yaml"
  fi
done

step "ConfigMap env: PARLOR_* names, values as the pod parses them (ci/cluster-values)"
"$PY" - "$tmp/cluster-values.yaml" <<'EOF'
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "parlor")
env = cm["data"]
for k, v in env.items():
    if not re.fullmatch(r"PARLOR_[A-Z0-9]+(_[A-Z0-9]+)*(__[A-Z0-9]+(_[A-Z0-9]+)*)*", k):
        sys.exit(f"bad variable name {k}")
    if re.fullmatch(r"-?[0-9.]+e[+-][0-9]+", v):
        sys.exit(f"{k}={v}: a number in exponent form")
want = {
    "PARLOR_WS__OUTBOUND_SOFT_BYTES": "1048576",
    "PARLOR_AUTH__REFRESH_TTL_SECS": "2592000",
    "PARLOR_ROOMS__MATCHMAKING_WINDOW": "150.5",
    "PARLOR_AUTH__ADMINS": '["alice"]',
    "PARLOR_CLUSTER__KIND": "redis",
    "PARLOR_STORE__KIND": "mongodb",
    "PARLOR_CLUSTER__REDIS_MODE": "cluster",
    "PARLOR_AUTH__SIGNING_KEY": "/etc/parlor/keys/signing.pem",
    "PARLOR_AUTH__VERIFY_KEYS": '["/etc/parlor/keys/verify/signing-2025.pem"]',
    "PARLOR_LOG_LEVEL": "info,parlor_server=debug",
}
for k, v in want.items():
    if env.get(k) != v:
        sys.exit(f"{k}={env.get(k)!r}, want {v!r}")
if not env["PARLOR_AUTH__OIDC"].startswith('[{"client_id"="parlor",'):
    sys.exit(f"PARLOR_AUTH__OIDC={env['PARLOR_AUTH__OIDC']!r}: tables in lists are written {{\"k\"=v}}")
print(f"{len(env)} variables")
EOF

step "kubernetes-validate --strict k8s/*.yaml"
validate k8s/*.yaml

step "values.schema.json: additionalProperties false on every object"
"$PY" - "$CHART/values.schema.json" <<'EOF'
import json, sys
schema = json.load(open(sys.argv[1]))
# Kubernetes affinity terms pass through as they are; "global" is Helm's own.
passthrough = {"/definitions/selectorTerms", "/properties/global"}
bad = []
def walk(node, path):
    if isinstance(node, dict):
        if node.get("type") == "object" and path not in passthrough and "additionalProperties" not in node:
            bad.append(path)
        if node.get("additionalProperties") is True:
            bad.append(path)
        for k, v in node.items():
            walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, f"{path}/{i}")
walk(schema, "")
if schema.get("$schema") != "http://json-schema.org/draft-07/schema#":
    sys.exit("not draft-07")
if bad:
    sys.exit("objects without additionalProperties: " + ", ".join(bad))
print("every object is closed")
EOF

# The schema must refuse each of these; helm accepting one fails the run.
step "values.schema.json rejects bad values"
bad_values=(
  'unknown top-level key|profil: single'
  'unknown nested key|drain: {graceSecond: 5}'
  'unknown config key|config: {ws: {outbound_soft_byte: 5}}'
  'config key the chart sets|config: {server: {pod_name: x}}'
  'bad type (string for integer)|replicas: "3"'
  'bad type (float for integer)|drain: {graceSecs: 1.5}'
  'bad type (string for a config list)|config: {auth: {admins: alice}}'
  'bad enum|profile: multi'
  'bad enum in a list|ingress: {hosts: [{host: a, paths: [{path: /, pathType: Any}]}]}'
)
for entry in "${bad_values[@]}"; do
  name=${entry%%|*}
  printf '%s\n' "${entry#*|}" >"$tmp/bad.yaml"
  if out=$("$BIN/helm" template parlor "$CHART" -f "$tmp/bad.yaml" 2>&1); then
    echo "FAIL: helm accepted values with $name: ${entry#*|}" >&2
    exit 1
  fi
  grep -q "don't meet the specifications of the schema" <<<"$out" \
    || { echo "FAIL: $name was refused, but not by the schema:"; echo "$out"; exit 1; } >&2
  echo "refused, $name: $(grep -m1 "at '" <<<"$out")"
done

step "templates refuse broken combinations"
bad_combos=(
  'profile cluster needs signingKey.existingSecret|--set profile=cluster --set backends.existingSecret=b'
  'profile cluster needs backends.existingSecret|--set profile=cluster --set signingKey.existingSecret=k'
  'autoscaling needs profile cluster|--set autoscaling.enabled=true'
  'verifyKeys needs signingKey.existingSecret|--set verifyKeys.keys={old.pem}'
)
for entry in "${bad_combos[@]}"; do
  want=${entry%%|*}
  # shellcheck disable=SC2086
  if out=$("$BIN/helm" template parlor "$CHART" ${entry#*|} 2>&1); then
    echo "FAIL: helm rendered ${entry#*|}" >&2
    exit 1
  fi
  grep -qF "$want" <<<"$out" || { echo "FAIL: want \"$want\", got:"; echo "$out"; exit 1; } >&2
  echo "refused: $want"
done

step "config keys: values.schema.json against README.md's configuration table"
"$PY" - README.md "$CHART/values.schema.json" <<'EOF'
import json, re, sys
readme, schema = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
table = readme.split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
documented = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
# Set by the chart from its own values, or for development and tests only (the image
# carries its web client built in, so server.web_dir has nothing to point at).
owned = {"server.public_addr", "server.admin_addr", "server.data_dir", "server.pod_name",
         "server.shutdown_grace_secs", "server.web_dir", "auth.signing_key", "auth.verify_keys", "cluster.kind",
         "cluster.redis_mode", "cluster.redis_url", "cluster.redis_urls", "store.kind",
         "store.mongodb_uri", "sentry_dsn", "debug.fault_injection"}
keys = set()
def walk(node, prefix):
    for k, v in node.get("properties", {}).items():
        key = prefix + k
        if "properties" in v:
            walk(v, key + ".")
            continue
        keys.add(key)
        if v.get("type") == "array" and "properties" in v["items"]:
            walk(v["items"], key + "[].")
walk(schema["properties"]["config"], "")
missing, unknown = documented - owned - keys, keys - documented
if missing or unknown:
    sys.exit(f"README keys missing from the schema's config: {sorted(missing)}; "
             f"schema keys not in README: {sorted(unknown)}")
print(f"{len(keys)} config keys in the schema, {len(owned)} set by the chart")
EOF

step "values keys: values.yaml against docs/operations.md's Values table"
"$PY" - "$CHART/values.yaml" "$CHART/values.schema.json" docs/operations.md <<'EOF'
import json, re, sys, yaml
values, schema = yaml.safe_load(open(sys.argv[1])), json.load(open(sys.argv[2]))
doc = open(sys.argv[3]).read().split("\n## Values", 1)[1].split("\n## ", 1)[0]
documented = set(re.findall(r"^\| `([^`]+)` \|", doc, re.M))
# Rows for whole maps: resources is one Kubernetes block.
whole = {"resources"}
keys = set()
def walk(v, s, prefix):
    for k, sub in v.items():
        key = prefix + k
        node = s["properties"][k]
        if isinstance(sub, dict) and "properties" in node and sub and key not in whole:
            walk(sub, node, key + ".")
        else:
            keys.add(key)
walk(values, schema, "")
missing, unknown = keys - documented, documented - keys
if missing or unknown:
    sys.exit(f"values not in the docs table: {sorted(missing)}; docs rows not in values.yaml: {sorted(unknown)}")
print(f"{len(keys)} values documented")
EOF

step "scripts/render-k8s.sh --check"
scripts/render-k8s.sh --check

step "hadolint Dockerfile"
"$BIN/hadolint" Dockerfile
echo "no findings"

printf '\nall chart checks passed\n'
