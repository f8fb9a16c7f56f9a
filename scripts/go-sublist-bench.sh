#!/usr/bin/env bash
# nats-server 2.9.10's own sublist benchmarks (server/sublist_test.go, from Debian's packaged
# source), the counterparts of `cargo bench -p starling-benches --bench sublist`. Run both in one
# sitting on a quiet machine and compare. Not run by CI.
#
#   scripts/go-sublist-bench.sh                 # the benchmarks issue 3 compares against
#   BENCH=Sublist COUNT=3 scripts/go-sublist-bench.sh
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
GOPATH="$tmp" GO111MODULE=off go test -run XXX -count "${COUNT:-1}" -bench "${BENCH:-$default}" .
