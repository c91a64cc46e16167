package ca

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
)

// TestOutboxEvents checks that every change the directory publisher needs
// is announced in the outbox by the transaction that made it: each CA
// (ca_added, with its certificate's serial), each stored CRL
// (crl_published, with its kind and number), each issuance and each
// revocation.
func TestOutboxEvents(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	for _, a := range tn.svc.authorities() {
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'ca_added' AND issuer_id = ? AND serial = ?", a.id, serialHex(a.cert.SerialNumber)); n != 1 {
			t.Errorf("%s: %d ca_added events, want 1", a.id, n)
		}
	}
	status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "box.example.gov.cn", "box.example.gov.cn")), Profile: "server-tls"}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue: %d %s", status, raw)
	}
	if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	for _, ev := range []string{"issued", "revoked"} {
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = ? AND issuer_id = 'ecdsa-issuing' AND serial = ?", ev, out.Serial); n != 1 {
			t.Errorf("%d %s events, want 1", n, ev)
		}
	}
	// Every stored CRL has its event (older CRLs are pruned from ca_crls,
	// their events stay).
	rows, err := tn.db().Query(ctx, "SELECT issuer_id, kind, number FROM ca_crls")
	if err != nil {
		t.Fatal(err)
	}
	type crlID struct {
		issuer, kind string
		number       int64
	}
	var crls []crlID
	for rows.Next() {
		var c crlID
		if err := rows.Scan(&c.issuer, &c.kind, &c.number); err != nil {
			t.Fatal(err)
		}
		crls = append(crls, c)
	}
	rows.Close()
	if len(crls) < 8 {
		t.Fatalf("%d CRLs stored, want a full and a delta for each of the 4 CAs at least", len(crls))
	}
	for _, c := range crls {
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'crl_published' AND issuer_id = ? AND crl_kind = ? AND crl_number = ?", c.issuer, c.kind, c.number); n != 1 {
			t.Errorf("CRL %s/%s/%d: %d events, want 1", c.issuer, c.kind, c.number, n)
		}
	}
}
