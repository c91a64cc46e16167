package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/store"
)

// TestIssueRecordsSerialBeforeSigning issues certificates concurrently on
// both issuing CAs and checks, for each, that the serial was recorded with
// exactly the TBSCertificate that was then signed (RELIABILITY.md §1.1), that
// the certificate verifies under its CA, and that the concurrent issuances
// shared commits (the CA's batchers: one on SQLite, one for reservations
// and one for certificates on PostgreSQL).
func TestIssueRecordsSerialBeforeSigning(t *testing.T) {
	onBothStores(t, testIssueRecordsSerialBeforeSigning)
}

func testIssueRecordsSerialBeforeSigning(t *testing.T, tn *testNode) {
	// The node's HTTPS certificate (tls.go) went through the batchers at
	// start.
	_, before := tn.svc.batcher().Stats()
	_, reservedBefore := tn.svc.reserveBatcher().Stats()
	const each = 12
	type issued struct{ ca, serial, pem string }
	var mu sync.Mutex
	var got []issued
	var wg sync.WaitGroup
	for _, ca := range []string{"sm2-issuing", "ecdsa-issuing"} {
		for i := range each {
			csr := csrPEM(goCSR(t, fmt.Sprintf("host%d.example.gov.cn", i), fmt.Sprintf("host%d.example.gov.cn", i)))
			if ca == "sm2-issuing" {
				csr = csrPEM(sm2CSRDER(t, fmt.Sprintf("host%d.example.gov.cn", i)))
			}
			wg.Go(func() {
				status, out, raw := tn.issue(ca, IssueRequest{CSR: csr, Profile: "server-tls"}, "")
				if status != http.StatusCreated {
					t.Errorf("%s: status %d: %s", ca, status, raw)
					return
				}
				mu.Lock()
				got = append(got, issued{ca, out.Serial, out.Certificate})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if len(got) != 2*each {
		t.Fatalf("%d certificates issued, want %d", len(got), 2*each)
	}
	for _, c := range got {
		cert, err := smx509.ParseCertificate(pemDER(t, c.pem))
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(tn.svc.cas[c.ca].cert); err != nil {
			t.Errorf("%s/%s: signature: %v", c.ca, c.serial, err)
		}
		var tbs []byte
		var prof string
		if err := tn.db().QueryRow(context.Background(), "SELECT tbs, profile FROM ca_serials WHERE issuer_id = ? AND serial = ?", c.ca, c.serial).Scan(&tbs, &prof); err != nil {
			t.Errorf("%s/%s: no serial record: %v", c.ca, c.serial, err)
			continue
		}
		if !bytes.Equal(tbs, cert.RawTBSCertificate) || prof != "server-tls" {
			t.Errorf("%s/%s: recorded TBS (%d octets, profile %s) is not the signed one", c.ca, c.serial, len(tbs), prof)
		}
	}
	batches, items := tn.svc.batcher().Stats()
	items -= before
	if tn.db().Driver() == store.SQLite {
		if tn.svc.reserveBatcher() != tn.svc.batcher() {
			t.Error("two batchers on SQLite")
		}
		if items != 4*each { // the serial record and the store of each
			t.Errorf("batcher carried %d writes, want %d", items, 4*each)
		}
		t.Logf("%d writes in %d transactions", items, batches)
		return
	}
	reserveBatches, reserved := tn.svc.reserveBatcher().Stats()
	if reserved -= reservedBefore; reserved != 2*each || items != 2*each {
		t.Errorf("reservations batcher carried %d writes, the other %d; want %d each", reserved, items, 2*each)
	}
	t.Logf("%d reservations in %d transactions, %d stores in %d", reserved, reserveBatches, items, batches)
}

// sm2CSRDER makes an SM2 request (default user ID) for a DNS name.
func sm2CSRDER(t *testing.T, host string) []byte {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
