#!/usr/bin/env bash
# Checks the monitoring artifacts of the chart:
# - helm/parlor/rules/parlor.rules.yaml with `promtool check rules` and its unit tests
#   (parlor.rules.test.yaml) with `promtool test rules`;
# - that every alert is well formed (for, severity, summary, description, runbook) and has a
#   test case that fires it and one that does not;
# - that the tests can fail: each alert is broken twice (never firing, firing when all is
#   quiet) and the tests must catch both;
# - helm/parlor/dashboards/parlor.json: valid JSON, a sane layout, the template variables,
#   and every PromQL expression (panels and variable queries, with $namespace, $pod,
#   $__rate_interval, ... replaced by concrete values) through `promtool check rules` as
#   recording rules;
# - that every parlor_* metric the rules and the dashboard use is registered in
#   crates/parlor-server/src/metrics.rs (promtool cannot tell a misspelt name);
# - last, that every runbook anchor has a heading in docs/operations.md.
# promtool comes from ${OPS_TOOLS:-$HOME/.cache/parlor/tools}/bin (scripts/ops-deps.sh
# installs it). Needs python3 with PyYAML (the tools' venv has it).
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS="${OPS_TOOLS:-$HOME/.cache/parlor/tools}"
PROMTOOL="$TOOLS/bin/promtool"
RULES=helm/parlor/rules/parlor.rules.yaml
TESTS=helm/parlor/rules/parlor.rules.test.yaml
DASHBOARD=helm/parlor/dashboards/parlor.json
DOCS=docs/operations.md

[ -x "$PROMTOOL" ] || { echo "no promtool at $PROMTOOL (run scripts/ops-deps.sh)" >&2; exit 1; }
PY=python3
if [ -x "$TOOLS/venv/bin/python3" ] && "$TOOLS/venv/bin/python3" -c 'import yaml' 2>/dev/null; then
  PY="$TOOLS/venv/bin/python3"
fi
"$PY" -c 'import yaml' 2>/dev/null || { echo "$PY lacks PyYAML" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PROMTOOL RULES TESTS DASHBOARD DOCS WORK

echo "== promtool check rules $RULES"
"$PROMTOOL" check rules "$RULES"

echo "== promtool test rules $TESTS"
"$PROMTOOL" test rules "$TESTS"

echo "== alerts: well formed, each with a firing and a quiet test case"
"$PY" - <<'EOF'
import os, sys, yaml

rules = yaml.safe_load(open(os.environ["RULES"]))
tests = yaml.safe_load(open(os.environ["TESTS"]))
alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
fires, quiet = set(), set()
for t in tests.get("tests", []):
    for c in t.get("alert_rule_test") or []:
        (fires if c.get("exp_alerts") else quiet).add(c["alertname"])
bad = []
for a in alerts:
    name = a["alert"]
    if "for" not in a:
        bad.append(f"{name}: no `for:`")
    if not (a.get("labels") or {}).get("severity"):
        bad.append(f"{name}: no severity label")
    ann = a.get("annotations") or {}
    for k in ("summary", "description", "runbook"):
        if not ann.get(k):
            bad.append(f"{name}: no {k} annotation")
    want = f"docs/operations.md#{name.lower()}"
    if ann.get("runbook") and ann["runbook"] != want:
        bad.append(f"{name}: runbook is {ann['runbook']!r}, want {want!r}")
    if name not in fires:
        bad.append(f"{name}: no test case where it fires")
    if name not in quiet:
        bad.append(f"{name}: no test case where it does not fire (exp_alerts: [])")
names = {a["alert"] for a in alerts}
for n in sorted((fires | quiet) - names):
    bad.append(f"tests name {n}, which is no alert")
for b in bad:
    print("  " + b)
if bad:
    sys.exit(1)
print(f"  {len(alerts)} alerts, each fired and kept quiet by the tests")
EOF

echo "== mutations: the tests catch each alert broken (never firing, firing when quiet)"
"$PY" - <<'EOF'
import os, shutil, subprocess, sys, yaml

promtool, work = os.environ["PROMTOOL"], os.environ["WORK"]
rules = yaml.safe_load(open(os.environ["RULES"]))
rules_name = os.path.basename(os.environ["RULES"])
tests_copy = os.path.join(work, os.path.basename(os.environ["TESTS"]))
shutil.copy(os.environ["TESTS"], tests_copy)
mutants = {
    # No result at all: every case that expects the alert must fail.
    "never fires": "({}) and on () (vector(0) > 1)",
    # A label-less result whenever the real expression has none: every quiet case past the
    # `for` must fail.
    "fires when quiet": "({}) or on () vector(1)",
}
survivors = []
for gi, g in enumerate(rules["groups"]):
    for ri, r in enumerate(g["rules"]):
        if "alert" not in r:
            continue
        for what, form in mutants.items():
            m = yaml.safe_load(yaml.safe_dump(rules))
            m["groups"][gi]["rules"][ri]["expr"] = form.format(r["expr"].strip())
            with open(os.path.join(work, rules_name), "w") as f:
                yaml.safe_dump(m, f, sort_keys=False)
            p = subprocess.run([promtool, "test", "rules", tests_copy],
                               capture_output=True, text=True)
            caught = p.returncode != 0 and f"alertname: {r['alert']}," in p.stdout + p.stderr
            print(f"  {r['alert']}, {what}: {'caught' if caught else 'NOT CAUGHT'}")
            if not caught:
                survivors.append((r["alert"], what))
if survivors:
    print("tests that cannot fail:", survivors)
    sys.exit(1)
EOF

echo "== dashboard $DASHBOARD: JSON, layout, variables"
"$PY" - <<'EOF'
import json, os, sys

d = json.load(open(os.environ["DASHBOARD"]))
bad = []
if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
    bad.append(f"schemaVersion {d.get('schemaVersion')!r}, want >= 36")
for k in ("uid", "title"):
    if not d.get(k):
        bad.append(f"no {k}")
vars_ = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
ds = [v for v in vars_.values() if v.get("type") == "datasource"]
if not any(v.get("query") == "prometheus" for v in ds):
    bad.append("no datasource variable of type datasource for prometheus")
for name in ("namespace", "pod"):
    v = vars_.get(name)
    q = v and v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if not v or v.get("type") != "query" or "label_values(parlor_connections" not in (q or ""):
        bad.append(f"no {name} variable from label_values(parlor_connections, ...)")
ds_ref = "${%s}" % ds[0]["name"] if ds else None

panels = []
def walk(ps):
    for p in ps:
        panels.append(p)
        walk(p.get("panels", []))
walk(d.get("panels", []))
ids, cells = set(), {}
for p in panels:
    t = p.get("title") or f"panel {p.get('id')}"
    if p.get("id") in ids:
        bad.append(f"{t}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    g = p.get("gridPos") or {}
    if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
        bad.append(f"{t}: bad gridPos {g}")
        continue
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            if (x, y) in cells:
                bad.append(f"{t}: overlaps {cells[(x, y)]}")
                break
            cells[(x, y)] = t
        else:
            continue
        break
    if p.get("type") == "row":
        continue
    if (p.get("datasource") or {}).get("uid") != ds_ref:
        bad.append(f"{t}: datasource is not {ds_ref}")
    if not p.get("targets"):
        bad.append(f"{t}: no queries")
    for tg in p.get("targets", []):
        if not (tg.get("expr") or "").strip():
            bad.append(f"{t}: query {tg.get('refId')} has no expr")
        if (tg.get("datasource") or {}).get("uid") not in (None, ds_ref):
            bad.append(f"{t}: query {tg.get('refId')} datasource is not {ds_ref}")
for b in bad:
    print("  " + b)
if bad:
    sys.exit(1)
print(f"  {len(panels)} panels, variables {', '.join(vars_)}")
EOF

echo "== dashboard $DASHBOARD: every PromQL expression through promtool"
"$PY" - <<'EOF' >"$WORK/dashboard-exprs.json"
import json, os, re, sys

d = json.load(open(os.environ["DASHBOARD"]))
# Concrete values for the template and Grafana's built-in variables.
values = {"namespace": "games", "pod": "parlor-0", "__rate_interval": "1m",
          "__interval": "1m", "__interval_ms": "60000", "__range": "1h", "__range_s": "3600",
          "__range_ms": "3600000"}
var = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)")
unknown = []
def subst(expr, where):
    def one(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            unknown.append(f"{where}: unknown variable ${name}")
            return m.group(0)
        return values[name]
    return var.sub(one, expr)

rules, seen = [], set()
def add(name, expr, where):
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    while name in seen:
        name += "_"
    seen.add(name)
    rules.append({"record": name, "expr": subst(expr, where),
                  "labels": {"dashboard_query": where}})

def walk(ps):
    for p in ps:
        for t in p.get("targets", []):
            if t.get("expr"):
                add(f"dashboard:panel_{p.get('id')}_{t.get('refId')}", t["expr"],
                    f"{p.get('title')} / {t.get('refId')}")
        walk(p.get("panels", []))
walk(d.get("panels", []))
for v in d.get("templating", {}).get("list", []):
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = (q.get("query") if isinstance(q, dict) else q) or v.get("definition") or ""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q, re.S)
    if m:
        q = m.group(1)
    elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", q):
        continue
    else:
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
        q = m.group(1) if m else q
    add(f"dashboard:var_{v.get('name')}", q, f"variable {v.get('name')}")
if unknown:
    print("\n".join(unknown), file=sys.stderr)
    sys.exit(1)
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, sys.stdout, indent=1)
print(f"  {len(rules)} expressions", file=sys.stderr)
EOF
"$PROMTOOL" check rules "$WORK/dashboard-exprs.json"

echo "== metric names: each parlor_* name used is registered in crates/parlor-server/src/metrics.rs"
"$PY" - <<'EOF'
import json, os, re, sys

import yaml

src = "crates/parlor-server/src/metrics.rs"
if not os.path.exists(src):
    print(f"  {src} missing; skipped")
    raise SystemExit
text = open(src).read()
known = set()
for kind, name in re.findall(r'\b(\w*Opts|Int\w+|Histogram|Gauge|Counter)::(?:new|with_opts)\(\s*"(\w+)"', text):
    known.add("parlor_" + name)
    if kind.startswith("Histogram"):
        known |= {f"parlor_{name}_{s}" for s in ("bucket", "sum", "count")}
used = {}
exprs = [r["expr"] for r in json.load(open(os.path.join(os.environ["WORK"], "dashboard-exprs.json")))["groups"][0]["rules"]]
exprs += [r["expr"] for g in yaml.safe_load(open(os.environ["RULES"]))["groups"] for r in g["rules"]]
for e in exprs:
    for n in re.findall(r"\bparlor_\w+", e):
        used.setdefault(n, 0)
        used[n] += 1
missing = sorted(n for n in used if n not in known)
for n in missing:
    print(f"  {n} is not registered in {src}")
if missing:
    sys.exit(1)
print(f"  all {len(used)} metric names are registered")
EOF

echo "== runbook anchors: a heading in $DOCS for each"
"$PY" - <<'EOF'
import os, re, sys, yaml

docs = os.environ["DOCS"]
rules = yaml.safe_load(open(os.environ["RULES"]))
want = []
for g in rules["groups"]:
    for r in g["rules"]:
        rb = (r.get("annotations") or {}).get("runbook", "")
        if rb:
            path, _, anchor = rb.partition("#")
            want.append((r.get("alert"), path, anchor))

def anchors(md):
    # GitHub's heading anchors: lower-cased, punctuation dropped, spaces to hyphens, and -1,
    # -2, ... on repeats. Headings inside fenced code blocks do not count.
    out, counts, fence = set(), {}, False
    for line in md.splitlines():
        if re.match(r"\s*(```|~~~)", line):
            fence = not fence
            continue
        m = None if fence else re.match(r"\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", lambda x: x.group(1) or "", m.group(1))
        a = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        n = counts.get(a, 0)
        counts[a] = n + 1
        out.add(a if n == 0 else f"{a}-{n}")
    return out

have = anchors(open(docs).read()) if os.path.exists(docs) else set()
missing = []
for alert, path, anchor in want:
    if path != docs:
        missing.append(f"{alert}: runbook points at {path}, not {docs}")
    elif anchor not in have:
        missing.append(f"{alert}: no heading for #{anchor} in {docs} (e.g. `### {alert}`)")
if not os.path.exists(docs):
    print(f"  {docs} does not exist")
for m in missing:
    print("  missing: " + m)
if missing:
    sys.exit(1)
print(f"  {len(want)} runbook anchors, all in {docs}")
EOF

echo "== all checks passed"
