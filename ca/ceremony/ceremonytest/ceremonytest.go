// Package ceremonytest makes the certificates of another PKI for tests: a
// self-signed ECDSA root, and cross-certificates it issues to a CA of ours
// through the cross ceremony (ca/ceremony.CrossSign), as `govtrust ca
// cross-sign` would.
package ceremonytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
)

// ExternalRoot returns a self-signed ECDSA P-256 root named cn (C=CN,
// O=Other PKI), valid for 20 years, and its key.
func ExternalRoot(t testing.TB, cn string) (*smx509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ski := sha256.Sum256(spki)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{Country: []string{"CN"}, Organization: []string{"Other PKI"}, CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(20, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 3,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: ski[:20]}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// CrossSign certifies subject (a self-signed ECDSA root) under issuer with
// the cross ceremony: five years, path length 1.
func CrossSign(t testing.TB, subject, issuer *smx509.Certificate, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	f, err := ceremony.Parse([]byte("kind: cross\nca: cross-test\nalgorithm: ecdsa-p256\nvalidity:\n  days: 1825\npath_length: 1\n" +
		"subject_certificate: subject.pem\nsubject_certificate_sha256: " + ceremony.Fingerprint(subject.Raw) +
		"\nissuer:\n  certificate: issuer.pem\n  certificate_sha256: " + ceremony.Fingerprint(issuer.Raw) + "\n  key_uri: soft:ca/other\n"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := ceremony.CrossSign(f, subject, issuer, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return der
}
