package ca

import (
	"bytes"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/internal/node"
)

// With ca.public_url and ca.public_ldap_url, certificates and CRLs name the
// CA by its public URLs, not by the listener's address: CRL distribution
// points (HTTP and LDAP), AIA CA issuers and OCSP, and the CRL's issuing
// distribution point, which must equal the certificates' first CRLDP.
func TestPublicURLs(t *testing.T) {
	tn := startNodeEnv(t, filepath.Join(t.TempDir(), "data"),
		"GOVTRUST_CA_PUBLIC_URL=https://pki.example.gov.cn/trust/", "GOVTRUST_CA_PUBLIC_LDAP_URL=ldap://ldap.example.gov.cn")
	_, cert := tn.issueSM2Go(t)
	const base = "https://pki.example.gov.cn/trust"
	wantHTTP := base + "/pki/sm2-issuing.crl"
	if len(cert.CRLDistributionPoints) == 0 || cert.CRLDistributionPoints[0] != wantHTTP {
		t.Errorf("CRL distribution points %q, want %s first", cert.CRLDistributionPoints, wantHTTP)
	}
	if !slices.ContainsFunc(cert.CRLDistributionPoints, func(u string) bool {
		return strings.HasPrefix(u, "ldap://ldap.example.gov.cn/cn=sm2-issuing,ou=ca,")
	}) {
		t.Errorf("no LDAP distribution point under ldap://ldap.example.gov.cn: %q", cert.CRLDistributionPoints)
	}
	if !slices.Contains(cert.IssuingCertificateURL, base+"/pki/sm2-issuing.crt") || !slices.Contains(cert.OCSPServer, base+"/ocsp/sm2-issuing") {
		t.Errorf("AIA CA issuers %q, OCSP %q; want them under %s", cert.IssuingCertificateURL, cert.OCSPServer, base)
	}
	for _, u := range slices.Concat(cert.CRLDistributionPoints, cert.IssuingCertificateURL, cert.OCSPServer) {
		if strings.Contains(u, "127.0.0.1") {
			t.Errorf("a URL names the listener: %s", u)
		}
	}
	_, rl := tn.fetchCRL(t, "sm2-issuing")
	if idp := idpDistributionPoint(t, rl); !bytes.Contains(idp, []byte(wantHTTP)) || bytes.Contains(idp, []byte("127.0.0.1")) {
		t.Errorf("CRL issuing distribution point % x, want it to name %s", idp, wantHTTP)
	}
}

// An https ca.public_url, which the configuration accepts, puts https CRL
// and AIA URLs in certificates; the Baseline Requirements (and the CA's BR
// lints, and zlint) want http ones in TLS server certificates, so every
// server-tls request is refused. The CA says so once at start, naming the
// profile, rather than only in each refusal.
func TestHTTPSPublicURLWarnsForServerTLS(t *testing.T) {
	var logs syncBuffer
	tn := startNodeOpts(t, node.Options{DataDir: filepath.Join(t.TempDir(), "data"), HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: &logs, Environ: []string{"GOVTRUST_CA_PUBLIC_URL=https://pki.example.gov.cn"}})
	if out := logs.String(); !strings.Contains(out, "ca.public_url is https") || !strings.Contains(out, `"profile":"server-tls"`) {
		t.Errorf("no start-up error naming server-tls for an https ca.public_url:\n%.2000s", out)
	}
	status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "www.example.gov.cn", "www.example.gov.cn")), Profile: "server-tls"}, "")
	if status != http.StatusUnprocessableEntity || !bytes.Contains(raw, []byte("e_br_tls_crldp_missing")) {
		t.Errorf("server-tls with an https ca.public_url: %d %.300s; want 422 from the BR lints", status, raw)
	}
}
