package ca

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompromisedKeyRefused revokes certificates for key compromise and
// for another reason, then asks for new certificates for the same keys: the
// compromised key is refused on every issuing CA (a key, not a
// certificate, is what was compromised), the other is issued again.
func TestCompromisedKeyRefused(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	compromised := csrPEM(goCSR(t, "leak.example.gov.cn", "leak.example.gov.cn"))
	superseded := csrPEM(goCSR(t, "moved.example.gov.cn", "moved.example.gov.cn"))
	for _, c := range []struct{ csr, reason string }{{compromised, "keyCompromise"}, {superseded, "superseded"}} {
		status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: c.csr, Profile: "server-tls"}, "")
		if status != http.StatusCreated {
			t.Fatalf("issue: %d %s", status, raw)
		}
		if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, c.reason); status != http.StatusOK {
			t.Fatalf("revoke %s: %d %s", c.reason, status, raw)
		}
	}
	status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: compromised, Profile: "server-tls"}, "")
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "compromised") {
		t.Errorf("compromised key: %d %s; want 422 naming the compromise", status, raw)
	}
	if status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: superseded, Profile: "server-tls"}, ""); status != http.StatusCreated {
		t.Errorf("key of a superseded certificate: %d %s; want 201", status, raw)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_blocked_keys"); n != 1 {
		t.Errorf("%d blocked keys, want 1", n)
	}
}
