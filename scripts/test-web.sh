#!/usr/bin/env bash
# The browser side's tests, after `cargo test` built the pod (target/debug/parlor, or under
# $CARGO_TARGET_DIR): the TypeScript SDK's tests against real pods; the web client rebuilt
# from source, which must equal the committed web/dist that the binary embeds; and the
# Chromium tests. scripts/web-deps.sh installs Debian's chromium and the npm packages
# when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/web-deps.sh
pod_bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/parlor"
[ -x "$pod_bin" ] || { echo "no pod at $pod_bin: run cargo test (or cargo build) first" >&2; exit 1; }

echo "== clients/typescript: npm test (the SDK against a real pod)"
(cd clients/typescript && PARLOR_BIN="$pod_bin" npm test)
echo "== web: npm run check && npm run build; web/dist must match the commit"
(cd web && npm run check && npm run build)
if [ -n "$(git status --porcelain -- web/dist)" ]; then
  git status --short -- web/dist
  echo "web/dist differs from a build of web/src: run npm run build in web/ and commit" >&2
  exit 1
fi
echo "== tests/browser: npm test (Chromium)"
(cd tests/browser && PARLOR_BIN="$pod_bin" npm test)
