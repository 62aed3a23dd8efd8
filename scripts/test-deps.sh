#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, once per machine, outside the
# clone (so later runs reuse it):
# - SecantusDB, a MongoDB wire-compatible server from PyPI, in a venv under
#   ~/.cache/parlor/secantus. The store suites start it on loopback ports. With
#   MONGODB_URI set, the tests use that server instead and this install is skipped.
# - redis-server, from Debian's package: the cluster tests start their own on loopback
#   ports (never the machine's own on 6379), and the Redis benches use it. Its redis-cli
#   joins six of them into a Redis Cluster for the cluster-mode tests.
# Re-running it is cheap: it checks what is installed and returns.
set -euo pipefail
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  echo "redis-server: present ($(redis-server --version | cut -d' ' -f3))"
else
  # redis-tools (redis-cli) comes with it; the Redis Cluster tests join nodes with it.
  echo "redis-server: installing Debian's package"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq redis-server redis-tools
fi

SECANTUS_VERSION=0.7.0b3
venv="${PARLOR_SECANTUS_VENV:-$HOME/.cache/parlor/secantus}"

if [ -n "${MONGODB_URI:-}" ]; then
  echo "MONGODB_URI is set: the tests use it, SecantusDB is not needed"
elif [ -x "$venv/bin/secantusd-py" ] &&
     "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('secantusdb') != '$SECANTUS_VERSION')" 2>/dev/null; then
  echo "SecantusDB $SECANTUS_VERSION: present in $venv"
else
  command -v python3 >/dev/null || { echo "python3 is required (3.11)" >&2; exit 1; }
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "python3 lacks venv: installing Debian's python3-venv"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv
  fi
  echo "SecantusDB $SECANTUS_VERSION: installing into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$SECANTUS_VERSION"
  [ -x "$venv/bin/secantusd-py" ] || { echo "secantusd-py missing after install" >&2; exit 1; }
fi

# oidc-provider (npm) for the OIDC sign-in test: a real OpenID Provider on Node, which a
# new machine has. Installed from the committed lockfile into tests/oidc/node_modules.
oidc_dir="$(dirname "$0")/../tests/oidc"
want=$(sed -n 's/.*"oidc-provider": "\(.*\)".*/\1/p' "$oidc_dir/package.json")
have=$(sed -n 's/^  "version": "\(.*\)".*/\1/p' "$oidc_dir/node_modules/oidc-provider/package.json" 2>/dev/null || true)
if [ -n "$want" ] && [ "$want" = "$have" ]; then
  echo "oidc-provider: present in tests/oidc"
else
  command -v npm >/dev/null || { echo "node and npm are required (Node 20)" >&2; exit 1; }
  echo "oidc-provider: npm ci in tests/oidc"
  (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
