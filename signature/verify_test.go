package signature

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
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

// TestForeignAnchors: a signature under another CA's root is untrusted until
// that root is configured in signature.anchors; files that are not
// self-signed CA certificates are refused at start.
func TestForeignAnchors(t *testing.T) {
	now := time.Now()
	rk := sm2Key(t)
	root := mkCert(t, "foreign root", rk, nil, nil, true, now.Add(-48*time.Hour), now.Add(48*time.Hour))
	k := sm2Key(t)
	leaf := mkCert(t, "foreign signer", k, root, rk, false, now.Add(-time.Hour), now.Add(time.Hour))
	der, err := cms.Sign([]byte("from another CA"), []*cms.Signer{{Certificate: leaf, Key: k}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, c *smx509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootFile, leafFile := write("root.pem", root), write("leaf.pem", leaf)

	anchors, err := loadAnchors([]string{rootFile})
	if err != nil || len(anchors) != 1 {
		t.Fatalf("loadAnchors: %v, %d", err, len(anchors))
	}
	for _, bad := range [][]string{{leafFile}, {filepath.Join(dir, "missing.pem")}} {
		if _, err := loadAnchors(bad); err == nil {
			t.Errorf("loadAnchors(%v) accepted a non-anchor", bad)
		}
	}
	without := (&Service{}).verifierWith(nil).Verify(context.Background(), &Input{Signature: der})
	if !hasReason(without, ReasonUntrusted) {
		t.Errorf("without the anchor: %v, want %s", failed(without), ReasonUntrusted)
	}
	with := (&Service{foreign: anchors}).verifierWith(nil).Verify(context.Background(), &Input{Signature: der})
	if hasReason(with, ReasonUntrusted) {
		t.Errorf("with the anchor configured the chain is still untrusted: %v", failed(with))
	}
}

// TestStaleRevocationEvidence: revocation evidence speaks for the signing
// time only if it was issued at or after it, or was still valid then. A
// "good" OCSP response or CRL that had expired before the signing time
// (one replayed by whoever embeds or serves it) is not taken as the
// status; "revoked" is conclusive whenever it was issued.
func TestStaleRevocationEvidence(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	rk := sm2Key(t)
	rootTmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evidence root"},
		NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(72 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, SignatureAlgorithm: smx509.SM2WithSM3}
	rootDER, err := smx509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rk.Public(), rk)
	if err != nil {
		t.Fatal(err)
	}
	root, err := smx509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	k := sm2Key(t)
	leaf := mkCert(t, "evidence signer", k, root, rk, false, now.Add(-60*time.Hour), now.Add(60*time.Hour))
	content := []byte("revocation evidence")
	signed := func(t *testing.T, add func(sd *cms.SignedData)) []byte {
		t.Helper()
		der, err := cms.Sign(content, []*cms.Signer{{Certificate: leaf, Key: k}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := cms.Parse(der, nil)
		if err != nil {
			t.Fatal(err)
		}
		add(sd)
		if der, err = sd.Marshal(); err != nil {
			t.Fatal(err)
		}
		return der
	}
	ocspResp := func(t *testing.T, status ocsp.Status, this, next time.Time) []byte {
		t.Helper()
		tmpl := ocsp.Template{Status: status, SerialNumber: leaf.SerialNumber, ThisUpdate: this, NextUpdate: next, ProducedAt: this}
		if status == ocsp.Revoked {
			tmpl.RevokedAt, tmpl.RevocationReason = this.Add(-time.Hour), 1
		}
		der, err := ocsp.CreateResponse(root, nil, tmpl, rk)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	crl := func(t *testing.T, revoked bool, this, next time.Time) []byte {
		t.Helper()
		tmpl := &smx509.RevocationList{Number: big.NewInt(this.Unix()), ThisUpdate: this, NextUpdate: next}
		if revoked {
			tmpl.RevokedCertificateEntries = []smx509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: this.Add(-time.Hour)}}
		}
		der, err := smx509.CreateRevocationList(rand.Reader, tmpl, root, rk)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	old, oldNext := now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	cur, curNext := now.Add(-time.Hour), now.Add(23*time.Hour)
	tests := []struct {
		name  string
		add   func(t *testing.T, sd *cms.SignedData)
		valid bool
		want  string
	}{
		{"good OCSP valid now", func(t *testing.T, sd *cms.SignedData) { sd.AddOCSP(ocspResp(t, ocsp.Good, cur, curNext)) }, true, ""},
		{"good OCSP expired a day ago", func(t *testing.T, sd *cms.SignedData) { sd.AddOCSP(ocspResp(t, ocsp.Good, old, oldNext)) }, false, ReasonRevocationUnk},
		{"revoked OCSP expired a day ago", func(t *testing.T, sd *cms.SignedData) { sd.AddOCSP(ocspResp(t, ocsp.Revoked, old, oldNext)) }, false, ReasonRevoked},
		{"expired good OCSP beside a current one", func(t *testing.T, sd *cms.SignedData) {
			sd.AddOCSP(ocspResp(t, ocsp.Good, old, oldNext))
			sd.AddOCSP(ocspResp(t, ocsp.Good, cur, curNext))
		}, true, ""},
		{"CRL valid now", func(t *testing.T, sd *cms.SignedData) { sd.AddCRL(crl(t, false, cur, curNext)) }, true, ""},
		{"CRL expired a day ago", func(t *testing.T, sd *cms.SignedData) { sd.AddCRL(crl(t, false, old, oldNext)) }, false, ReasonRevocationUnk},
		{"expired CRL listing the certificate", func(t *testing.T, sd *cms.SignedData) { sd.AddCRL(crl(t, true, old, oldNext)) }, false, ReasonRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der := signed(t, func(sd *cms.SignedData) { tc.add(t, sd) })
			r := (&Verifier{Roots: []*smx509.Certificate{root}}).Verify(context.Background(), &Input{Signature: der})
			if r.Valid != tc.valid || (tc.want != "" && !hasReason(r, tc.want)) {
				t.Fatalf("valid=%v %v, want valid=%v %s\n%s", r.Valid, failed(r), tc.valid, tc.want, r.Summary)
			}
		})
	}
}
