package crl

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"iter"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// testCA is an issuing CA made at test time: a certificate and its key.
type testCA struct {
	cert   *smx509.Certificate
	signer crypto.Signer
	alg    string
}

// Algorithms the tests run on.
const (
	algSM2  = "sm2"
	algP256 = "ecdsa-p256"
	algP384 = "ecdsa-p384"
	algRSA  = "rsa-2048"
)

func generateKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case algSM2:
		k, err = sm2.GenerateKey(rand.Reader)
	case algP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case algP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case algRSA:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("unknown algorithm %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRoot makes a self-signed root CA; its subject has a Chinese
// organisation (UTF8String) so byte identity of the issuer name is tested on
// a name that a re-encoding would change.
func newRoot(t testing.TB, alg string) *testCA {
	t.Helper()
	return newCAWithKey(t, nil, alg, generateKey(t, alg), "Root "+alg, smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign)
}

// newSub makes a sub-CA issued by parent.
func newSub(t testing.TB, parent *testCA, alg string) *testCA {
	t.Helper()
	return newCAWithKey(t, parent, alg, generateKey(t, alg), "Sub "+alg, smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign)
}

func newCAWithKey(t testing.TB, parent *testCA, alg string, key crypto.Signer, cn string, ku smx509.KeyUsage) *testCA {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	tmpl := &smx509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Country: []string{"CN"}, Organization: []string{"政务信任测试"}, CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              ku,
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.signer
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, signer: key, alg: alg}
}

// signSM2 signs msg as gmsm does for certificates: SM3 over Z ‖ msg with the
// default user ID.
func signSM2(ca *testCA, msg []byte) ([]byte, error) {
	return ca.signer.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
}

// entries adapts a slice to the iterator Build takes.
func entries(es []Entry) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// sampleEntries returns n entries with 18-octet serials (a prefix byte and
// 136 random bits, as Boulder makes them) in increasing order, revoked before
// at, cycling through every allowed reason.
func sampleEntries(t testing.TB, n int, at time.Time) []Entry {
	t.Helper()
	reasons := []int{ReasonUnspecified, ReasonKeyCompromise, ReasonCACompromise, ReasonAffiliationChanged,
		ReasonSuperseded, ReasonCessationOfOperation, ReasonPrivilegeWithdrawn, -1}
	es := make([]Entry, n)
	s := new(big.Int).Lsh(big.NewInt(1), 136)
	for i := range es {
		step, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		if err != nil {
			t.Fatal(err)
		}
		s = new(big.Int).Add(s, step.Add(step, big.NewInt(1)))
		es[i] = Entry{Serial: s, RevokedAt: at.Add(-time.Duration(i+1) * time.Minute), Reason: reasons[i%len(reasons)]}
	}
	return es
}

// build runs Build into memory and fails the test on error.
func build(t testing.TB, tmpl Template, es []Entry, signer crypto.Signer) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Build(context.Background(), &buf, tmpl, entries(es), int64(len(es)), signer); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes()
}

// baseTemplate is a valid full-CRL template for ca at now.
func baseTemplate(ca *testCA, now time.Time, number int64) Template {
	return Template{
		Issuer:     ca.cert,
		Number:     big.NewInt(number),
		ThisUpdate: now,
		NextUpdate: now.Add(24 * time.Hour),
	}
}

// extension returns the CRL extension with id, and whether it is present.
func extension(rl *smx509.RevocationList, id asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range rl.Extensions {
		if e.Id.Equal(id) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

func serialHex(s *big.Int) string { return fmt.Sprintf("%X", s) }
