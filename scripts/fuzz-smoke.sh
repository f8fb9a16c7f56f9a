#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 60) from its seed corpus.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
export RUSTC_BOOTSTRAP=1
[ -f Cargo.toml ] || { echo "fuzz-smoke: no fuzz package yet" >&2; exit 0; }
targets=$(cargo fuzz list)
[ -n "$targets" ] || { echo "fuzz-smoke: no fuzz targets" >&2; exit 0; }
for t in $targets; do
  mkdir -p "corpus/$t"
  echo "fuzz-smoke: $t for ${secs}s" >&2
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12
done
