package ca

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
