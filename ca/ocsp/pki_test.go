package ocsp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// testPKI is a CA with a delegated OCSP signer (EKU id-kp-OCSPSigning and
// ocsp-nocheck) and a leaf, all of one algorithm, built at test time.
type testPKI struct {
	name      string // "SM2" or "ECDSA"
	caKey     crypto.Signer
	ca        *smx509.Certificate
	signerKey crypto.Signer
	signer    *smx509.Certificate
	leafKey   crypto.Signer
	leaf      *smx509.Certificate
}

var serialCounter int64 = 0x1000

func nextSerial() *big.Int {
	serialCounter++
	// A prefix byte plus random-looking bits, like the CA issues.
	return new(big.Int).SetBytes([]byte{0x5a, byte(serialCounter >> 8), byte(serialCounter), 0x9c, 0x33, 0x71, 0x08, 0xee, 0x42})
}

func newKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "SM2":
		k, err = sm2.GenerateKey(rand.Reader)
	case "ECDSA":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECDSA-P384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		t.Fatalf("unknown algorithm %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue signs tmpl with parent/parentKey (self-signed when parent is nil).
func issue(t testing.TB, tmpl, parent *smx509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *smx509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", tmpl.Subject.CommonName, err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signerTemplate is a delegated responder profile: digitalSignature,
// id-kp-OCSPSigning, id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2).
func signerTemplate(cn string, nb, na time.Time, eku bool) *smx509.Certificate {
	tmpl := &smx509.Certificate{
		SerialNumber:    nextSerial(),
		Subject:         pkix.Name{CommonName: cn, Organization: []string{"govtrust test"}},
		NotBefore:       nb,
		NotAfter:        na,
		KeyUsage:        smx509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: OIDNoCheck, Value: nullDER}},
	}
	if eku {
		tmpl.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageOCSPSigning}
	}
	return tmpl
}

func newTestPKI(t testing.TB, alg string) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{name: alg, caKey: newKey(t, alg), signerKey: newKey(t, alg), leafKey: newKey(t, alg)}
	p.ca = issue(t, &smx509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: alg + " 测试 Root CA", Organization: []string{"govtrust test"}, Country: []string{"CN"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, p.caKey.Public(), p.caKey)
	p.signer = issue(t, signerTemplate(alg+" OCSP signer", now.Add(-time.Hour), now.Add(30*24*time.Hour), true), p.ca, p.signerKey.Public(), p.caKey)
	p.leaf = issue(t, &smx509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: alg + " leaf 张三"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(90 * 24 * time.Hour),
		KeyUsage:     smx509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth},
		OCSPServer:   []string{"http://127.0.0.1/ocsp/test"},
	}, p.ca, p.leafKey.Public(), p.caKey)
	return p
}

// testPKIs are built once per test binary: key generation is not what the
// tests measure.
var testPKIs = map[string]*testPKI{}

func pkiFor(t testing.TB, alg string) *testPKI {
	t.Helper()
	if p, ok := testPKIs[alg]; ok {
		return p
	}
	p := newTestPKI(t, alg)
	testPKIs[alg] = p
	return p
}

// baseTemplate is a good response for the leaf, valid now for a day.
func (p *testPKI) baseTemplate(now time.Time) Template {
	return Template{
		Status:           Good,
		SerialNumber:     p.leaf.SerialNumber,
		HashAlgorithm:    SHA1,
		ThisUpdate:       now.Add(-time.Minute),
		NextUpdate:       now.Add(24 * time.Hour),
		ProducedAt:       now,
		RevocationReason: NoReason,
	}
}

func writePEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeFiles writes ca.pem, signer.pem, leaf.pem and signer.pub to dir.
func (p *testPKI) writeFiles(t testing.TB, dir string) (ca, signer, leaf, signerPub string) {
	t.Helper()
	pub, err := smx509.MarshalPKIXPublicKey(p.signerKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", p.ca.Raw),
		writePEM(t, filepath.Join(dir, "signer.pem"), "CERTIFICATE", p.signer.Raw),
		writePEM(t, filepath.Join(dir, "leaf.pem"), "CERTIFICATE", p.leaf.Raw),
		writePEM(t, filepath.Join(dir, "signer.pub"), "PUBLIC KEY", pub)
}

// assemble builds an OCSPResponse around a given tbsResponseData, signature
// algorithm and signature, so tests can make responses CreateResponse
// refuses to make.
func assemble(tbs []byte, alg asn1.ObjectIdentifier, params []byte, sig []byte, certs ...*smx509.Certificate) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0)
		b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDOCSPBasic)
				b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddBytes(tbs)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(alg)
							b.AddBytes(params)
						})
						b.AddASN1BitString(sig)
						if len(certs) > 0 {
							b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									for _, c := range certs {
										b.AddBytes(c.Raw)
									}
								})
							})
						}
					})
				})
			})
		})
	})
	return b.BytesOrPanic()
}

// signWith signs tbs with key the way CreateResponse does and returns the
// signature algorithm OID and signature.
func signWith(t testing.TB, key crypto.Signer, tbs []byte) (asn1.ObjectIdentifier, []byte) {
	t.Helper()
	a, err := chooseSigAlg(key.Public(), 0)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signTBS(key, a, tbs)
	if err != nil {
		t.Fatal(err)
	}
	return a.oid, sig
}

// reqSpec describes a request for buildRequest, which can write what
// CreateRequest never would.
type reqSpec struct {
	version     *int64
	name        bool // requestorName
	ids         []certID
	singleExts  []pkix.Extension
	exts        []pkix.Extension
	signature   bool
	hashParams  []byte // raw AlgorithmIdentifier parameters, nil = absent
	hashOID     asn1.ObjectIdentifier
	rawExtsBody []byte // raw requestExtensions contents, overrides exts
}

func buildRequest(s reqSpec) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if s.version != nil {
				b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) { b.AddASN1Int64(*s.version) })
			}
			if s.name {
				b.AddASN1(tagCtx1c, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("a@b.cn")) })
				})
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, id := range s.ids {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								oid := id.hash.OID()
								if s.hashOID != nil {
									oid = s.hashOID
								}
								b.AddASN1ObjectIdentifier(oid)
								b.AddBytes(s.hashParams)
							})
							b.AddASN1OctetString(id.nameHash)
							b.AddASN1OctetString(id.keyHash)
							b.AddASN1BigInt(id.serial)
						})
						if len(s.singleExts) > 0 {
							b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) { addExtensions(b, s.singleExts) })
						}
					})
				}
			})
			switch {
			case s.rawExtsBody != nil:
				b.AddASN1(tagCtx2c, func(b *cryptobyte.Builder) { b.AddBytes(s.rawExtsBody) })
			case len(s.exts) > 0:
				b.AddASN1(tagCtx2c, func(b *cryptobyte.Builder) { addExtensions(b, s.exts) })
			}
		})
		if s.signature {
			b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(OIDSM2WithSM3) })
					b.AddASN1BitString([]byte{1, 2, 3})
				})
			})
		}
	})
	return b.BytesOrPanic()
}

// idFor is the CertID of p's leaf under h.
func (p *testPKI) idFor(t testing.TB, h HashAlg) certID {
	t.Helper()
	nh, kh, err := issuerHashes(h, p.ca.RawSubject, p.ca.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	return certID{hash: h, nameHash: nh, keyHash: kh, serial: p.leaf.SerialNumber}
}

func ptr[T any](v T) *T { return &v }
