#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 5): `scripts/fuzz.sh 600`. The committed
# corpus (fuzz/corpus) is replayed first and must pass whole; new inputs go to a scratch
# dir, so the corpus changes only by hand (`cargo fuzz cmin`). A crash fails the script
# and leaves its input under fuzz/artifacts.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-5}"
# cargo fuzz drives libFuzzer; it is a cargo subcommand from crates.io.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# The machine has only a stable toolchain, so libFuzzer's coverage runs without a
# sanitizer (ASan needs nightly): a crash here is a panic or an abort. The code forbids
# unsafe, so memory errors are left to the compiler.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in envelope dice config; do
  mkdir -p "$scratch/$t"
  echo "== fuzz $t: replaying corpus/$t"
  cargo fuzz run --sanitizer none --target-dir "$target_dir" "$t" "corpus/$t" -- -runs=0
  echo "== fuzz $t: ${secs}s of new inputs"
  cargo fuzz run --sanitizer none --target-dir "$target_dir" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1
done
