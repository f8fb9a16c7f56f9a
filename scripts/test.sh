#!/usr/bin/env bash
# The whole test suite: installs the reference servers if missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export STARLING_NATS_SERVER_215="$PWD/target/tools/nats-server-2.15"
exec cargo test --workspace --locked "$@"
