#!/usr/bin/env bash
# Installs what the browser-side checks need, each only when missing: the npm packages of
# clients/typescript (the SDK), web/ (the web client) and tests/browser (its Chromium
# tests), from their lock files, and Debian's chromium, which playwright-core drives
# (a browser that playwright downloads itself cannot be fetched here).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if ! command -v chromium >/dev/null; then
  echo "== installing Debian's chromium"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
chromium --version

for dir in clients/typescript web tests/browser; do
  [ -f "$dir/package-lock.json" ] || continue
  # npm ci when the lock file changed since the last install (or none was made).
  stamp="$dir/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "== npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
