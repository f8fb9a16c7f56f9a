#!/usr/bin/env bash
# nats-server 2.9.10's own sublist benchmarks (server/sublist_test.go, from Debian's packaged
# source), the counterparts of `cargo bench -p starling-benches --bench sublist`. Run both in one
# sitting on a quiet machine and compare. Not run by CI.
#
#   scripts/go-sublist-bench.sh                 # the benchmarks issue 3 compares against
#   BENCH=Sublist COUNT=3 scripts/go-sublist-bench.sh
#   scripts/go-sublist-bench.sh cpu             # CPU time per op (for a busy machine), the
#                                               # counterpart of `cargo run --release -p
#                                               # starling-sublist --example cpu_time`
set -euo pipefail

src=/usr/share/gocode/src/github.com/nats-io/nats-server
if ! command -v go >/dev/null || [ ! -d "$src" ]; then
    apt-get install -y golang-go golang-github-nats-io-nats-server-dev
fi

# The 1k-removal benchmarks exhaust memory at the default benchtime: keep -bench narrow.
default='SublistInsert$|SublistMatchSingleToken|SublistMatchTwoTokens|SublistMatchFourTokens$|SublistMatchFourTokensMultiResults|SublistMissOnLastTokenOfFive|SublistMatchLiteral|SublistMatch10kSubsWithNoCache|SublistRemove1TokenSingle|IsValidLiteralSubject|subjectIsLiteral'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r /usr/share/gocode/. "$tmp/"
cd "$tmp/src/github.com/nats-io/nats-server/server"
if [ "${1:-}" != cpu ]; then
    GOPATH="$tmp" GO111MODULE=off go test -run XXX -count "${COUNT:-1}" -bench "${BENCH:-$default}" .
    exit
fi

# CPU mode: the process's user+system time for N iterations less that for one, divided by N.
GOPATH="$tmp" GO111MODULE=off go test -c -o "$tmp/server.test" .
cpu_seconds() {
    local TIMEFORMAT='%U %S'
    { time "$tmp/server.test" -test.run XXX -test.bench "$1" -test.benchtime "$2" >/dev/null; } 2>&1 |
        awk '{ print $1 + $2 }'
}
scale=${SCALE:-1}
for spec in 'SublistInsert$:2000000' 'SublistMatchSingleToken:50000000' 'SublistMatchTwoTokens:50000000' \
    'SublistMatchFourTokens$:50000000' 'SublistMatchFourTokensMultiResults:50000000' \
    'SublistMissOnLastTokenOfFive:50000000' 'SublistMatchLiteral:1000000' \
    'SublistMatch10kSubsWithNoCache:300000' 'SublistRemove1TokenSingle:2000000'; do
    name=${spec%%:*}
    n=$(( ${spec##*:} * scale ))
    base=$(cpu_seconds "$name" 1x)
    full=$(cpu_seconds "$name" "${n}x")
    awk -v name="$name" -v b="$base" -v f="$full" -v n="$n" \
        'BEGIN { printf "%-40s %10.2f ns/op (cpu)\n", name, (f - b) * 1e9 / n }'
done
