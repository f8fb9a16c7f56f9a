#!/usr/bin/env bash
# The declared rust-version must be the true minimum: no locked dependency may need a newer
# Rust than the workspace declares. (Clippy's incompatible_msrv lint checks our own code
# against the same number; only one toolchain is installed, so this is the check we can run.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
def version(s):
    parts = [int(p) for p in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
members = set(meta["workspace_members"])
declared = {p["rust_version"] for p in meta["packages"] if p["id"] in members and p.get("rust_version")}
if len(declared) != 1:
    sys.exit(f"msrv-check: workspace members declare {sorted(declared)}, expected one rust-version")
msrv = declared.pop()
newer = sorted(
    "%s %s needs %s" % (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p.get("rust_version") and version(p["rust_version"]) > version(msrv)
)
if newer:
    sys.exit("msrv-check: the workspace declares rust-version " + msrv + ", but:\n  " + "\n  ".join(newer))
print(f"msrv-check: every locked dependency builds with Rust {msrv}")
'
