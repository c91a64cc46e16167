package ca

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"
)

// TestCompromisedKeyRefused revokes certificates for key compromise and
// for another reason, then asks for new certificates for the same keys: the
// compromised key is refused on every issuing CA (a key, not a
// certificate, is what was compromised), naming the revoked certificate,
// and no serial is reserved for it; the other is issued again. On SQLite
// and on PostgreSQL (the check is part of the serial's INSERT).
func TestCompromisedKeyRefused(t *testing.T) {
	onBothStores(t, testCompromisedKeyRefused)
}

func testCompromisedKeyRefused(t *testing.T, tn *testNode) {
	compromised := csrPEM(goCSR(t, "leak.example.gov.cn", "leak.example.gov.cn"))
	superseded := csrPEM(goCSR(t, "moved.example.gov.cn", "moved.example.gov.cn"))
	var leaked string
	for _, c := range []struct{ csr, reason string }{{compromised, "keyCompromise"}, {superseded, "superseded"}} {
		status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: c.csr, Profile: "server-tls"}, "")
		if status != http.StatusCreated {
			t.Fatalf("issue: %d %s", status, raw)
		}
		if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, c.reason); status != http.StatusOK {
			t.Fatalf("revoke %s: %d %s", c.reason, status, raw)
		}
		if c.reason == "keyCompromise" {
			leaked = out.Serial
		}
	}
	serials := tn.count("SELECT COUNT(*) FROM ca_serials")
	status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: compromised, Profile: "server-tls"}, "")
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "compromised") || !strings.Contains(strings.ToLower(string(raw)), "ecdsa-issuing/"+strings.ToLower(leaked)) {
		t.Errorf("compromised key: %d %s; want 422 naming the compromise and certificate ecdsa-issuing/%s", status, raw, leaked)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_serials"); n != serials {
		t.Errorf("serials reserved: %d after the refusal, %d before", n, serials)
	}
	status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: superseded, Profile: "server-tls"}, "")
	if status != http.StatusCreated {
		t.Fatalf("key of a superseded certificate: %d %s; want 201", status, raw)
	}
	// The serial's record holds the TBS that was signed (the INSERT ...
	// SELECT stores the bytes, not a text rendering of them).
	cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	var tbs []byte
	if err := tn.db().QueryRow(t.Context(), "SELECT tbs FROM ca_serials WHERE issuer_id = 'ecdsa-issuing' AND serial = ?", out.Serial).Scan(&tbs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tbs, cert.RawTBSCertificate) {
		t.Errorf("recorded TBS (%d octets) is not the signed one (%d)", len(tbs), len(cert.RawTBSCertificate))
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_blocked_keys"); n != 1 {
		t.Errorf("%d blocked keys, want 1", n)
	}
}
