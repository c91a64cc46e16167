package signature

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/signature/cms"
)

// flipContent changes one byte of the attached content inside a DER CMS.
func flipContent(t testing.TB, der, content []byte) []byte {
	t.Helper()
	i := bytes.Index(der, content)
	if i < 0 {
		t.Fatal("content not found in the message")
	}
	out := bytes.Clone(der)
	out[i] ^= 0x01
	return out
}

func mkCert(t testing.TB, cn string, key crypto.Signer, parent *smx509.Certificate, parentKey crypto.Signer, ca bool, nb, na time.Time) *smx509.Certificate {
	t.Helper()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, KeyUsage: smx509.KeyUsageDigitalSignature, SignatureAlgorithm: smx509.SM2WithSM3}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, smx509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sm2Key(t testing.TB) *sm2.PrivateKey {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func selfSignedCMS(t testing.TB, content []byte) []byte {
	k := sm2Key(t)
	c := mkCert(t, "self-made", k, nil, nil, false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	der, err := cms.Sign(content, []*cms.Signer{{Certificate: c, Key: k}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestVerifierCertificateChecks: the verifier's own reasons, offline, on a
// test hierarchy: an expired signer, an untrusted one, and revocation
// evidence that cannot be had.
func TestVerifierCertificateChecks(t *testing.T) {
	now := time.Now()
	rk := sm2Key(t)
	root := mkCert(t, "test root", rk, nil, nil, true, now.Add(-48*time.Hour), now.Add(48*time.Hour))
	content := []byte("offline checks")
	tests := []struct {
		name   string
		nb, na time.Time
		roots  []*smx509.Certificate
		want   string
	}{
		{"expired signer", now.Add(-24 * time.Hour), now.Add(-time.Hour), []*smx509.Certificate{root}, ReasonExpired},
		{"not yet valid", now.Add(time.Hour), now.Add(24 * time.Hour), []*smx509.Certificate{root}, ReasonNotYetValid},
		{"untrusted", now.Add(-time.Hour), now.Add(time.Hour), nil, ReasonUntrusted},
		{"no revocation evidence offline", now.Add(-time.Hour), now.Add(time.Hour), []*smx509.Certificate{root}, ReasonRevocationUnk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := sm2Key(t)
			c := mkCert(t, "signer", k, root, rk, false, tc.nb, tc.na)
			der, err := cms.Sign(content, []*cms.Signer{{Certificate: c, Key: k}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := &Verifier{Roots: tc.roots}
			r := v.Verify(context.Background(), &Input{Signature: der})
			if r.Valid || !hasReason(r, tc.want) {
				t.Fatalf("valid=%v %v, want %s\n%s", r.Valid, failed(r), tc.want, r.Summary)
			}
			if !r.Signers[0].Checks[0].Pass {
				t.Fatal("the signature itself should verify")
			}
		})
	}
	t.Run("malformed", func(t *testing.T) {
		r := (&Verifier{}).Verify(context.Background(), &Input{Signature: []byte{0x30, 0x03, 1, 2, 3}})
		if r.Valid || !hasReason(r, ReasonMalformed) {
			t.Fatalf("%v", failed(r))
		}
	})
}
