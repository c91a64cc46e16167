# govtrust build and test entry points. `make test` is what CI runs.

GO              ?= go
STATICCHECK_VER ?= v0.8.2
CACHE           := $(CURDIR)/.cache
BIN             := $(CACHE)/bin
BENCH_DURATION  ?= 3s

.PHONY: all build test test-deps lint vet staticcheck p11 bench soak soak-tsa bench-tsa directory bench-directory clean

all: build

build:
	$(GO) build -o bin/govtrust ./cmd/govtrust

## test: install what the tests need (apt-get when missing), then vet, lint and run every test.
test:
	scripts/test.sh

## test-deps: only install the test dependencies.
test-deps:
	scripts/test-deps.sh

vet:
	$(GO) vet ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VER)

staticcheck: $(BIN)/staticcheck
	$(BIN)/staticcheck ./...

lint: vet staticcheck

## p11: the SM2 software PKCS#11 token, as a shared library.
p11:
	$(GO) build -buildmode=c-shared -o $(CACHE)/libgovtrust-p11.so ./cmd/govtrust-p11

## bench: raw crypto reference rates, then every service benchmark as ratios to them.
bench: p11
	$(GO) run ./bench/rawcrypto -duration $(BENCH_DURATION)
	GTTEST_P11_MODULE=$(CACHE)/libgovtrust-p11.so $(GO) run ./bench/hsmsign -duration $(BENCH_DURATION)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

## soak-tsa: ACCEPTANCE.md G-04 in full: 100,000 tokens while the node is killed (SIGKILL) 10 times.
soak-tsa:
	GTTEST_SOAK=1 $(GO) test -run '^TestTSAKillG04$$' -v -timeout 60m ./cmd/govtrust

## bench-tsa: TSA tokens/s over HTTP, SM2 and ECDSA, as ratios to raw signing, p50/p99 at half rate.
bench-tsa:
	$(GO) run ./bench/tsa -duration 10s

## directory: the LDAP directory's tests (embedded server, publisher, slapd, PostgreSQL) and fuzzers, briefly.
directory:
	CI=1 scripts/with-postgres.sh $(GO) test -count=1 ./directory/ ./cmd/govtrust -run 'Directory|Acceptance|External|Malformed|StartTLS|TwoPublishers|Fuzz'
	for f in FuzzFilter FuzzDN FuzzRequest; do $(GO) test ./directory -run '^$$' -fuzz "^$$f$$" -fuzztime 30s || exit 1; done

## bench-directory: LDAP searches/s, embedded server next to slapd on the same entries.
bench-directory:
	$(GO) test ./directory -run '^$$' -bench BenchmarkSearch -benchtime 3s -count 3

clean:
	rm -rf bin $(CACHE)
