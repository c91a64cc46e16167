package signature

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/crlscope"
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
		// Embedded evidence that disagrees: the revocation wins.
		{"good OCSP beside a CRL listing the certificate", func(t *testing.T, sd *cms.SignedData) {
			sd.AddOCSP(ocspResp(t, ocsp.Good, cur, curNext))
			sd.AddCRL(crl(t, true, cur, curNext))
		}, false, ReasonRevoked},
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

// crlHierarchy is an SM2 root that signs CRLs, and a leaf it issued whose
// CRL distribution points are dps.
func crlHierarchy(t *testing.T, dps ...string) (root *smx509.Certificate, rootKey *sm2.PrivateKey, leaf *smx509.Certificate, leafKey *sm2.PrivateKey) {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	rootKey, leafKey = sm2Key(t), sm2Key(t)
	rootTmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scope root"},
		NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(72 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, SignatureAlgorithm: smx509.SM2WithSM3}
	der, err := smx509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = smx509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	leafTmpl := &smx509.Certificate{SerialNumber: big.NewInt(0x5c09e), Subject: pkix.Name{CommonName: "scoped signer"},
		NotBefore: now.Add(-60 * time.Hour), NotAfter: now.Add(60 * time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature,
		CRLDistributionPoints: dps, SignatureAlgorithm: smx509.SM2WithSM3}
	if der, err = smx509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey.Public(), rootKey); err != nil {
		t.Fatal(err)
	}
	if leaf, err = smx509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	return root, rootKey, leaf, leafKey
}

// scopedCRL is a CRL of root, current, with the extensions given; listed
// are the serials on it with their reason.
func scopedCRL(t *testing.T, root *smx509.Certificate, key *sm2.PrivateKey, number int64, ext []pkix.Extension, listed ...smx509.RevocationListEntry) []byte {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	tmpl := &smx509.RevocationList{Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(2 * time.Hour),
		ExtraExtensions: ext, RevokedCertificateEntries: listed}
	der, err := smx509.CreateRevocationList(rand.Reader, tmpl, root, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Extensions of the CRLs the scope tests make (RFC 5280 §5.2.4, §5.2.5).
func deltaExt(base int64) pkix.Extension {
	v, _ := asn1.Marshal(big.NewInt(base))
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: v}
}

// idpExt is an issuingDistributionPoint: a fullName of one URI when uri is
// set, then the DER fields given as they are (onlyContainsUserCerts
// [1] 0x81 0x01 0xff, onlyContainsCACerts [2] 0x82 ..., onlySomeReasons
// [3] 0x83 ...).
func idpExt(uri string, fields ...byte) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if uri != "" {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(uri)) })
				})
			})
		}
		b.AddBytes(fields)
	})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: b.BytesOrPanic()}
}

// TestEmbeddedCRLScope: a CRL that does not list the signer proves it good
// only when it is complete for it (RFC 5280 §5.2.4, §5.2.5, §6.3.3): not a
// delta CRL (the signer could embed the CA's current delta, which does not
// list a certificate revoked before its base), not a CRL whose
// issuingDistributionPoint leaves the certificate out, not a CRL with a
// critical extension the verifier does not process. A listing on any CRL
// of the issuer, a delta among them, is a revocation, and wins over the
// "good" of another embedded CRL.
func TestEmbeddedCRLScope(t *testing.T) {
	const dp = "http://crl.example.gov.cn/pki/scope.crl"
	root, rk, leaf, k := crlHierarchy(t, dp)
	content := []byte("signed, perhaps after revocation")
	listed := func(reason int) smx509.RevocationListEntry {
		return smx509.RevocationListEntry{SerialNumber: leaf.SerialNumber, RevocationTime: time.Now().Add(-10 * time.Hour), ReasonCode: reason}
	}
	other := smx509.RevocationListEntry{SerialNumber: big.NewInt(0x7777), RevocationTime: time.Now().Add(-time.Hour)}
	crl := func(number int64, ext []pkix.Extension, entries ...smx509.RevocationListEntry) []byte {
		return scopedCRL(t, root, rk, number, ext, entries...)
	}
	unknownCritical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4, 5}, Critical: true, Value: []byte{5, 0}}
	certIssuer := other
	certIssuer.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 29}, Critical: true, Value: []byte{0x30, 0}}}
	complete := crl(100, []pkix.Extension{idpExt(dp)}, other)
	for _, tc := range []struct {
		name   string
		crls   [][]byte
		status string // "good", "revoked", "" (no usable evidence)
	}{
		{"delta CRL not listing the revoked signer", [][]byte{crl(101, []pkix.Extension{deltaExt(100)}, other)}, ""},
		{"ARL (onlyContainsCACerts) not listing a leaf", [][]byte{crl(102, []pkix.Extension{idpExt("", 0x82, 1, 0xff)})}, ""},
		{"CRL of another distribution point", [][]byte{crl(103, []pkix.Extension{idpExt("http://crl.example.gov.cn/pki/other.crl")})}, ""},
		{"CRL for keyCompromise only", [][]byte{crl(104, []pkix.Extension{idpExt(dp, 0x83, 2, 6, 0x40)})}, ""},
		{"CRL with an unknown critical extension", [][]byte{crl(105, []pkix.Extension{unknownCritical})}, ""},
		{"CRL with an unknown critical entry extension", [][]byte{crl(106, nil, certIssuer)}, ""},
		{"delta taking the signer off its base", [][]byte{crl(107, []pkix.Extension{deltaExt(100)}, listed(crlscope.ReasonRemoveFromCRL))}, ""},
		{"complete CRL of its distribution point", [][]byte{complete}, "good"},
		{"complete CRL of user certificates", [][]byte{crl(108, []pkix.Extension{idpExt("", 0x81, 1, 0xff)})}, "good"},
		{"complete CRL without scope", [][]byte{crl(109, nil, other)}, "good"},
		{"delta listing the signer", [][]byte{crl(110, []pkix.Extension{deltaExt(100)}, listed(1))}, "revoked"},
		{"ARL listing the signer", [][]byte{crl(111, []pkix.Extension{idpExt("", 0x82, 1, 0xff)}, listed(1))}, "revoked"},
		{"complete CRL, then a delta listing the signer", [][]byte{complete, crl(112, []pkix.Extension{deltaExt(100)}, listed(1))}, "revoked"},
		{"a delta listing the signer, then a complete CRL", [][]byte{crl(113, []pkix.Extension{deltaExt(100)}, listed(1)), complete}, "revoked"},
		{"a delta not listing the signer, then a complete CRL", [][]byte{crl(114, []pkix.Extension{deltaExt(100)}), complete}, "good"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := cms.Sign(content, []*cms.Signer{{Certificate: leaf, Key: k}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := cms.Parse(der, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.crls {
				sd.AddCRL(c)
			}
			if der, err = sd.Marshal(); err != nil {
				t.Fatal(err)
			}
			r := (&Verifier{Roots: []*smx509.Certificate{root}}).Verify(context.Background(), &Input{Signature: der})
			switch tc.status {
			case "good":
				mustValid(t, r)
				if ev := r.Signers[0].Revocation; len(ev) != 1 || ev[0].Status != "good" || ev[0].Source != "embedded-crl" {
					t.Fatalf("revocation evidence %+v, want good from the embedded CRL", ev)
				}
			case "revoked":
				if r.Valid || !hasReason(r, ReasonRevoked) {
					t.Fatalf("valid=%v %v, want %s\n%s", r.Valid, failed(r), ReasonRevoked, r.Summary)
				}
			default:
				if r.Valid || !hasReason(r, ReasonRevocationUnk) {
					t.Fatalf("valid=%v %v, want %s\n%s", r.Valid, failed(r), ReasonRevocationUnk, r.Summary)
				}
			}
		})
	}
}

// TestLTVEmbedsOnlyCompleteCRLs: LTV signing embeds a CRL from the
// signer's distribution points only when it can prove the certificate's
// status (crlEvidence's rules): a delta CRL served there is passed over
// for the complete CRL, and alone it is an error, not embedded evidence
// that a verifier would refuse.
func TestLTVEmbedsOnlyCompleteCRLs(t *testing.T) {
	var deltaDER, fullDER []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/delta.crl":
			_, _ = w.Write(deltaDER)
		case "/full.crl":
			_, _ = w.Write(fullDER)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	full, delta := srv.URL+"/full.crl", srv.URL+"/delta.crl"
	for _, tc := range []struct {
		name string
		dps  []string
		want string // "full", or "" when nothing can be embedded
	}{
		{"delta named first", []string{delta, full}, "full"},
		{"delta only", []string{delta}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, rk, leaf, k := crlHierarchy(t, tc.dps...)
			fullDER = scopedCRL(t, root, rk, 200, []pkix.Extension{idpExt(full)})
			deltaDER = scopedCRL(t, root, rk, 201, []pkix.Extension{idpExt(full), deltaExt(200)})
			der, err := cms.Sign([]byte("LTV"), []*cms.Signer{{Certificate: leaf, Key: k}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := cms.Parse(der, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := &Signing{Key: k, Cert: leaf, Verifier: &Verifier{Roots: []*smx509.Certificate{root}, Fetch: &HTTPFetcher{}}}
			err = s.embedStatus(context.Background(), sd, leaf, root)
			var got [][]byte
			for _, r := range sd.Revocation {
				got = append(got, r.CRL)
			}
			switch tc.want {
			case "full":
				if err != nil || len(got) != 1 || !bytes.Equal(got[0], fullDER) {
					t.Fatalf("embedStatus: %v, %d CRLs embedded, want the complete CRL alone", err, len(got))
				}
			default:
				if err == nil || !strings.Contains(err.Error(), "delta CRL") || len(got) != 0 {
					t.Fatalf("embedStatus: %v, %d CRLs embedded, want an error about the delta CRL and nothing embedded", err, len(got))
				}
			}
		})
	}
}

// TestSignerKeyUsage: a signer's certificate must be one for signing
// (RFC 5280 §4.2.1.3): keyUsage, when present, has digitalSignature or
// nonRepudiation. The encryption half of a GM/T 0015 dual pair
// (keyEncipherment, dataEncipherment: a key the KMC escrows) and a CA
// certificate are refused as signers, for CMS and raw signatures alike,
// while the rest of their checks stay as they are.
func TestSignerKeyUsage(t *testing.T) {
	now := time.Now()
	rk := sm2Key(t)
	root := mkCert(t, "test root", rk, nil, nil, true, now.Add(-48*time.Hour), now.Add(48*time.Hour))
	content := []byte("who signed this?")
	for _, tc := range []struct {
		name   string
		usage  smx509.KeyUsage
		refuse bool
	}{
		{"digitalSignature", smx509.KeyUsageDigitalSignature, false},
		{"nonRepudiation", smx509.KeyUsageContentCommitment, false},
		{"signing and encipherment", smx509.KeyUsageDigitalSignature | smx509.KeyUsageKeyEncipherment, false},
		{"no keyUsage extension", 0, false},
		{"encryption certificate", smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment, true},
		{"key agreement", smx509.KeyUsageKeyAgreement, true},
		{"CA key", smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := sm2Key(t)
			tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "张三"},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: tc.usage, SignatureAlgorithm: smx509.SM2WithSM3}
			der, err := smx509.CreateCertificate(rand.Reader, tmpl, root, k.Public(), rk)
			if err != nil {
				t.Fatal(err)
			}
			c, err := smx509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := SigningUsage(c); (err != nil) != tc.refuse {
				t.Fatalf("SigningUsage: %v, want refused=%v", err, tc.refuse)
			}
			sig, err := cms.Sign(content, []*cms.Signer{{Certificate: c, Key: k}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := cms.SignRaw(k, nil, nil, content, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := &Verifier{Roots: []*smx509.Certificate{root}}
			for name, r := range map[string]*Report{
				"cms": v.Verify(context.Background(), &Input{Signature: sig}),
				"raw": v.Verify(context.Background(), &Input{Signature: raw, Certificate: c, Content: content}),
			} {
				if got := hasReason(r, ReasonKeyUsage); got != tc.refuse {
					t.Errorf("%s: %s reported=%v, want %v: %v", name, ReasonKeyUsage, got, tc.refuse, failed(r))
				}
				// Offline without evidence: revocation-unavailable is the
				// only other failure.
				for _, f := range failed(r) {
					if f != CheckKeyUsage+":"+ReasonKeyUsage && f != CheckRevocation+":"+ReasonRevocationUnk {
						t.Errorf("%s: unexpected failure %s\n%s", name, f, r.Summary)
					}
				}
			}
		})
	}
}
