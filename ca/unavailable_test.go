package ca

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// issueRaw posts an issuance and returns the status, the Retry-After
// header and the body.
func (tn *testNode) issueRaw(ca string, req IssueRequest, idemKey string) (int, string, []byte) {
	tn.t.Helper()
	status, hdr, raw := tn.doFull("POST", "/api/v1/ca/"+ca+"/certificates", "ra", req, map[string]string{"Idempotency-Key": idemKey})
	return status, hdr.Get("Retry-After"), raw
}

// checkUnavailable checks a 503 answer: problem type "unavailable",
// Retry-After, no database detail.
func checkUnavailable(t *testing.T, retryAfter string, raw []byte) {
	t.Helper()
	var p httpx.Problem
	if err := json.Unmarshal(raw, &p); err != nil || p.Type != httpx.TypeURI("unavailable") || p.Status != http.StatusServiceUnavailable {
		t.Errorf("503 body %s (%v)", raw, err)
	}
	if retryAfter != httpx.RetryAfterUnavailable {
		t.Errorf("503 with Retry-After %q", retryAfter)
	}
	if strings.Contains(p.Detail, "SQL") || strings.Contains(p.Detail, "127.0.0.1") {
		t.Errorf("503 detail names the database: %q", p.Detail)
	}
}

// TestDatabaseFullSQLite fills the CA's SQLite database (max_page_count on
// the writer connection, which SQLite answers with SQLITE_FULL exactly as
// a full disk): issuance answers 503 with Retry-After, not 500; OCSP and
// certificate reads go on; once there is room, a retry with the same
// Idempotency-Key issues one certificate.
func TestDatabaseFullSQLite(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	csr := func(i int) IssueRequest {
		host := fmt.Sprintf("full%d.example.gov.cn", i)
		return IssueRequest{CSR: csrPEM(goCSR(t, host, host)), Profile: "server-tls"}
	}
	status, first, raw := tn.issue("ecdsa-issuing", csr(0), "")
	if status != http.StatusCreated {
		t.Fatalf("issue: %d %s", status, raw)
	}
	serial, _ := new(big.Int).SetString(first.Serial, 16)
	if r := tn.query(t, "ecdsa-issuing", serial, nil); r.Status != ocsp.Good {
		t.Fatalf("OCSP before: %v", r.Status)
	}

	var pages int
	if err := tn.db().QueryRow(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// Per connection; the SQLite writer pool has one connection.
	if _, err := tn.db().Exec(ctx, "PRAGMA max_page_count = "+strconv.Itoa(pages)); err != nil {
		t.Fatal(err)
	}
	key, req, full := "", IssueRequest{}, false
	for i := 1; i <= 300 && !full; i++ {
		key, req = fmt.Sprintf("full-%d", i), csr(i)
		status, retryAfter, raw := tn.issueRaw("ecdsa-issuing", req, key)
		switch status {
		case http.StatusCreated: // free pages left in the file
		case http.StatusServiceUnavailable:
			checkUnavailable(t, retryAfter, raw)
			full = true
		default:
			t.Fatalf("issuance %d into a full database: %d %s", i, status, raw)
		}
	}
	if !full {
		t.Fatal("300 issuances fitted in a database at its max_page_count (the test proves nothing)")
	}
	// Reads go on: the certificate, OCSP from the cache and signed on demand.
	if status, raw := tn.do("GET", "/api/v1/ca/ecdsa-issuing/certificates/"+first.Serial, "ra", nil, nil); status != http.StatusOK {
		t.Errorf("GET certificate while full: %d %s", status, raw)
	}
	if r := tn.query(t, "ecdsa-issuing", serial, nil); r.Status != ocsp.Good {
		t.Errorf("OCSP while full: %v", r.Status)
	}
	if r := tn.query(t, "ecdsa-issuing", serial, []byte("nonce-while-full")); r.Status != ocsp.Good {
		t.Errorf("OCSP with a nonce while full: %v", r.Status)
	}

	if _, err := tn.db().Exec(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	status, out, raw := tn.issue("ecdsa-issuing", req, key)
	if status != http.StatusCreated {
		t.Fatalf("retry once there is room: %d %s", status, raw)
	}
	if got := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE idempotency_key = ?", key); got != 1 {
		t.Errorf("%d certificates for the retried key, want 1", got)
	}
	if status, again, raw := tn.issue("ecdsa-issuing", req, key); status != http.StatusOK || again.Serial != out.Serial {
		t.Errorf("replay: %d %s, want 200 and serial %s", status, raw, out.Serial)
	}
}

// TestDatabaseSessionsLostPostgres ends every PostgreSQL session of the CA's
// database three times (what a server restart or a cut network does to the
// pools) and issues concurrently after each: no answer is a 500, an answer
// that is not a certificate is a 503 with Retry-After, the retries with
// the same Idempotency-Key make exactly one certificate each, and the
// store did meet the dead connections.
func TestDatabaseSessionsLostPostgres(t *testing.T) {
	dbURL := storetest.PostgresURL(t)
	tn := startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) { o.DB = &dbURL })
	req := func(round, i int) IssueRequest {
		host := fmt.Sprintf("lost%d-%d.example.gov.cn", round, i)
		return IssueRequest{CSR: csrPEM(goCSR(t, host, host)), Profile: "server-tls"}
	}
	const clients = 16
	retries := tn.db().TxRetries()
	unavailable := 0
	var mu sync.Mutex
	for round := range 4 {
		if round > 0 { // round 0 fills the pools
			if n := storetest.TerminateURLSessions(t, dbURL); n == 0 {
				t.Fatal("no session to end")
			}
		}
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				key := fmt.Sprintf("lost-%d-%d", round, i)
				r := req(round, i)
				for attempt := 1; ; attempt++ {
					status, retryAfter, raw := tn.issueRaw("ecdsa-issuing", r, key)
					if status == http.StatusCreated || status == http.StatusOK {
						return
					}
					if status != http.StatusServiceUnavailable || attempt == 5 {
						t.Errorf("%s attempt %d: %d %s", key, attempt, status, raw)
						return
					}
					checkUnavailable(t, retryAfter, raw)
					mu.Lock()
					unavailable++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if tn.db().TxRetries() == retries {
		t.Error("no transaction met a dead connection (the test proves nothing)")
	}
	if got := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE idempotency_key LIKE 'lost-%'"); got != 4*clients {
		t.Errorf("%d certificates, want %d (one per key)", got, 4*clients)
	}
	t.Logf("transactions run again: %d; 503 answers: %d", tn.db().TxRetries()-retries, unavailable)
}
