#!/usr/bin/env bash
# Discovery across real interfaces: three starling-server nodes, each in its own network
# namespace (its own host, IP and interfaces) on one bridge, listening on 0.0.0.0 and given
# one seed each (B seeds A, C seeds B). Proves that the full mesh forms, that nodes advertise
# their interface address (never 0.0.0.0 or loopback), that clients learn every node's URL,
# and that a message published on A reaches a subscriber on C.
#
# Needs root (CI runs as root) and iproute2. Only addresses inside the namespaces it creates
# are used. Usage: scripts/netns-cluster.sh [path/to/starling-server]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/starling-server}
[ -x "$BIN" ] || cargo build --release -p starling-cli --locked -q
BIN=$(readlink -f "$BIN")
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
  if [ -n "${CI:-}" ]; then echo "netns-cluster: needs root and iproute2 in CI" >&2; exit 1; fi
  echo "netns-cluster: skipped (needs root and iproute2)" >&2; exit 0
fi

TAG=st$$
NET=10.213.$(( $$ % 200 + 10 ))
HUB=${TAG}hub
NODES=(a b c)
WORK=$(mktemp -d)
cleanup() {
  for n in "${NODES[@]}"; do
    [ -f "$WORK/$n.pid" ] && kill "$(cat "$WORK/$n.pid")" 2>/dev/null || true
  done
  sleep 0.2
  for n in "${NODES[@]}"; do ip netns del "$TAG$n" 2>/dev/null || true; done
  ip netns del "$HUB" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
i=1
for n in "${NODES[@]}"; do
  ns=$TAG$n
  ip netns add "$ns"
  ip link add "v$TAG$n" type veth peer name eth0 netns "$ns"
  ip link set "v$TAG$n" netns "$HUB"
  ip -n "$HUB" link set "v$TAG$n" master br0 up
  ip -n "$ns" addr add "$NET.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  i=$((i + 1))
done

ip_of() { case $1 in a) echo "$NET.1";; b) echo "$NET.2";; c) echo "$NET.3";; esac; }

start() { # node seed
  local n=$1 seed=$2 args=()
  [ -n "$seed" ] && args=(--routes "nats-route://$seed:6222")
  ip netns exec "$TAG$n" "$BIN" -a 0.0.0.0 -p 4222 -m 8222 -n "node-$n" \
    --cluster nats://0.0.0.0:6222 --cluster_name netns "${args[@]}" \
    >"$WORK/$n.log" 2>&1 &
  echo $! >"$WORK/$n.pid"
}

start a ""
start b "$(ip_of a)"
start c "$(ip_of b)"

# A tiny NATS client (raw protocol) and monitoring reader, run inside a namespace.
cat >"$WORK/probe.py" <<'PY'
import json, socket, sys, time, urllib.request
cmd = sys.argv[1]
def varz(path):
    return json.load(urllib.request.urlopen("http://127.0.0.1:8222" + path, timeout=2))
if cmd == "routes":   # wait until this node has N routes; print their remote ips
    want, deadline = int(sys.argv[2]), time.time() + 20
    while time.time() < deadline:
        try:
            r = varz("/routez")
            if r["num_routes"] == want:
                print(" ".join(sorted(x["ip"] for x in r["routes"]))); sys.exit(0)
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit("timed out waiting for %d routes" % want)
s = socket.create_connection((sys.argv[2], 4222), timeout=10)
f = s.makefile("rb")
info = json.loads(f.readline()[5:])
if cmd == "info":
    print(json.dumps(info.get("connect_urls", []))); sys.exit(0)
s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n')
if cmd == "sub":      # subscribe, say READY, print the first message's payload
    s.sendall(b"SUB netns.test 1\r\nPING\r\n")
    while not f.readline().startswith(b"PONG"): pass
    print("READY", flush=True)
    while True:
        line = f.readline()
        if line.startswith(b"MSG"):
            print(f.read(int(line.split()[-1]) + 2)[:-2].decode(), flush=True); sys.exit(0)
        if line.startswith(b"PING"): s.sendall(b"PONG\r\n")
if cmd == "pub":
    s.sendall(b"PUB netns.test 14\r\nacross the lan\r\nPING\r\n")
    while not f.readline().startswith(b"PONG"): pass
PY

fail() { echo "netns-cluster: FAIL: $*" >&2; for n in "${NODES[@]}"; do echo "--- node $n"; tail -n 20 "$WORK/$n.log"; done >&2; exit 1; }

start_ts=$(date +%s.%N)
for n in "${NODES[@]}"; do
  ips=$(ip netns exec "$TAG$n" python3 "$WORK/probe.py" routes 2) || fail "node $n never had 2 routes"
  for ip in $ips; do
    case $ip in 127.*|0.0.0.0|"") fail "node $n routes via $ip";; esac
  done
  echo "netns-cluster: node $n ($(ip_of "$n")) routes to: $ips"
done
echo "netns-cluster: full mesh after $(echo "$(date +%s.%N) - $start_ts" | bc 2>/dev/null || echo '?') s"

urls=$(ip netns exec "${TAG}c" python3 "$WORK/probe.py" info "$(ip_of c)")
echo "netns-cluster: a client of node c is told connect_urls=$urls"
for n in "${NODES[@]}"; do
  grep -q "\"$(ip_of "$n"):4222\"" <<<"$urls" || fail "connect_urls lacks node $n: $urls"
done
grep -Eq '127\.0\.0\.1|0\.0\.0\.0' <<<"$urls" && fail "connect_urls advertises loopback/unspecified: $urls"

# Subscribe on C, publish on A: interest crosses to A, the message crosses back.
ip netns exec "${TAG}c" python3 "$WORK/probe.py" sub "$(ip_of c)" >"$WORK/sub.out" &
subpid=$!
for _ in $(seq 100); do grep -q READY "$WORK/sub.out" 2>/dev/null && break; sleep 0.05; done
got=""
for _ in $(seq 50); do   # bounded: until C's interest has reached A
  ip netns exec "${TAG}a" python3 "$WORK/probe.py" pub "$(ip_of a)"
  if grep -q "across the lan" "$WORK/sub.out"; then got=yes; break; fi
  sleep 0.1
done
kill $subpid 2>/dev/null || true
[ -n "$got" ] || fail "message published on A never reached C"
grep -q "advertises" "$WORK/a.log" || fail "node a did not log its advertised address"
grep -h "advertises" "$WORK/a.log" | head -n 1
echo "netns-cluster: passed"
