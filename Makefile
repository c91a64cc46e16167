# govtrust build and test entry points. `make test` is what CI runs.

GO              ?= go
STATICCHECK_VER ?= v0.8.2
CACHE           := $(CURDIR)/.cache
BIN             := $(CACHE)/bin
BENCH_DURATION  ?= 3s

.PHONY: all build test test-deps lint vet staticcheck p11 bench soak soak-tsa bench-tsa kms bench-kms bench-signature fuzz-cms fuzz-pdf directory bench-directory seal bench-seal clean

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

## soak: the crash and concurrency acceptance tests at full size (ACCEPTANCE.md
## M-01: 32 clients, 50 kills; M-02: the same on PostgreSQL, 75 kills of the
## node, a backend and the whole server in turn; M-03: 100 kills; B-02: 2
## processes, 64 clients, 50,000 issuances; M-08: 5 PostgreSQL restarts under
## load; G-04: 100,000 tokens, 10 kills, and on PostgreSQL 30 kills of the
## node, a backend and the server), on SQLite and a throw-away PostgreSQL.
## make test runs them smaller.
soak:
	GTTEST_SOAK=1 CI=1 scripts/with-postgres.sh $(GO) test -count=1 -v -timeout 90m -run 'TestM01|TestM02|TestM03|TestB02|TestM08|TestTSAKillG04' ./cmd/govtrust/

## soak-tsa: ACCEPTANCE.md G-04 alone: 100,000 tokens while the node is killed (SIGKILL) 10 times,
## then on PostgreSQL with the node, a backend and the whole server killed 30 times in turn.
soak-tsa:
	GTTEST_SOAK=1 scripts/with-postgres.sh $(GO) test -run '^TestTSAKillG04' -v -timeout 60m ./cmd/govtrust

## bench-tsa: TSA tokens/s over HTTP, SM2 and ECDSA, as ratios to raw signing, p50/p99 at half rate.
bench-tsa:
	$(GO) run ./bench/tsa -duration 10s

## kms: issue #8 (application keys, KMC, dual certificates, recovery) on SQLite and PostgreSQL, with OpenSSL and tjfoc/gmsm.
kms:
	CI=1 scripts/with-postgres.sh $(GO) test ./kms/... ./internal/config
	CI=1 scripts/with-postgres.sh $(GO) test -run 'TestDualCertificate|TestKMSCLI|TestOpenAPI' ./cmd/govtrust

## bench-kms: encrypt/decrypt over HTTPS (1 KB, 1 MB), a 100 MB round trip, dual enrolments per second.
bench-kms:
	$(GO) test -run '^$$' -bench 'HTTPS|100MB' -benchtime 2s ./kms
	$(GO) test -run '^$$' -bench DualEnrolment -benchtime 3s ./cmd/govtrust

## bench-signature: issue 9, signing and verification over HTTPS (raw, CMS 1 KB, hash-only; SM2 and ECDSA);
## fuzz-cms: the CMS parsers, 60 s each.
bench-signature:
	$(GO) test -run '^$$' -bench API -benchtime 3s ./signature/

fuzz-cms:
	for f in FuzzParse FuzzParseEnvelope FuzzOpen; do $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s ./signature/cms || exit 1; done

## fuzz-pdf: the PDF signature reader's ByteRange checks, 60 s.
fuzz-pdf:
	$(GO) test -run '^$$' -fuzz '^FuzzByteRange$$' -fuzztime 60s ./signature/pdf

## directory: the LDAP directory's tests (embedded server, publisher, slapd, PostgreSQL) and fuzzers, briefly.
directory:
	CI=1 scripts/with-postgres.sh $(GO) test -count=1 ./directory/ ./cmd/govtrust -run 'Directory|Acceptance|External|Malformed|StartTLS|TwoPublishers|Fuzz'
	for f in FuzzFilter FuzzDN FuzzRequest; do $(GO) test ./directory -run '^$$' -fuzz "^$$f$$" -fuzztime 30s || exit 1; done

## bench-directory: LDAP searches/s, embedded server next to slapd on the same entries.
bench-directory:
	$(GO) test ./directory -run '^$$' -bench BenchmarkSearch -benchtime 3s -count 3

## seal: issue 10, electronic seals (codec, registry, agent on the SM2 token, OFD); bench-seal: 1 MB sealing and verification.
seal: p11
	CI=1 GTTEST_P11_MODULE=$(CACHE)/libgovtrust-p11.so scripts/with-postgres.sh $(GO) test ./signature/ses ./signature/ofd/... ./signature/seal/... ./internal/config
	CI=1 GTTEST_P11_MODULE=$(CACHE)/libgovtrust-p11.so $(GO) test -run 'TestOpenAPI|TestSealCommands' ./cmd/govtrust

bench-seal:
	GTTEST_P11_MODULE=$(CACHE)/libgovtrust-p11.so $(GO) test -run '^$$' -bench Seal1MB -benchtime 50x ./signature/seal

clean:
	rm -rf bin $(CACHE)
