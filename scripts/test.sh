#!/usr/bin/env bash
# test.sh is `make test`: install missing test dependencies, check the module,
# vet and lint, build the SM2 software token, then run every test with a
# throw-away PostgreSQL. Any failure fails the run.
set -eu
cd "$(dirname "$0")/.."

GO=${GO:-go}
cache=$PWD/.cache
mkdir -p "$cache/bin"

if [ "${1:-}" = "--inner" ]; then
	# Runs under scripts/with-postgres.sh: one throw-away server for every test.
	# -race where concurrency matters (store, audit, HTTP edge, node, authz, key
	# managers); the rest without, to stay well inside the time budget.
	race_re='/internal/(store|audit|httpx|node|authz|dual)(/|$)|/hsm(/|$)'
	$GO test -race -timeout 15m $($GO list ./... | grep -E "$race_re")
	$GO test -timeout 15m $($GO list ./... | grep -v -E "$race_re")
	exit 0
fi

echo "== test dependencies"
scripts/test-deps.sh

echo "== module"
# INTEROP.md §0: the proxy resolves gmsm@latest to a 2022 version; keep the pin.
if ! grep -Eq '^\s*github.com/emmansun/gmsm v0\.(4[4-9]|[5-9][0-9])\.' go.mod; then
	echo "go.mod: github.com/emmansun/gmsm must stay at v0.44.1 or newer" >&2
	exit 1
fi
$GO mod tidy -diff
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi

echo "== vet"
$GO vet ./...

echo "== staticcheck"
make -s "$cache/bin/staticcheck" >/dev/null
"$cache/bin/staticcheck" ./...

echo "== SM2 software token"
$GO build -buildmode=c-shared -o "$cache/libgovtrust-p11.so" ./cmd/govtrust-p11
export GTTEST_P11_MODULE="$cache/libgovtrust-p11.so"

echo "== tests"
export CI=${CI:-}
scripts/with-postgres.sh "$0" --inner
echo "== all checks passed"
