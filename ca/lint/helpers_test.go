package lint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// testNow is the fixed "now" of the lint tests.
var testNow = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// testCA is a CA made at test time.
type testCA struct {
	cert *smx509.Certificate
	key  crypto.Signer
}

func newTestCA(t testing.TB, key crypto.Signer, cn string, nb, na time.Time) *testCA {
	t.Helper()
	tmpl := &smx509.Certificate{
		SerialNumber:          big.NewInt(0).SetBytes(append([]byte{0x01}, randBytes(t, 16)...)),
		Subject:               pkix.Name{Country: []string{"CN"}, Organization: []string{"govtrust 测试"}, CommonName: cn},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign | smx509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create CA %s: %v", cn, err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA %s: %v", cn, err)
	}
	return &testCA{cert: cert, key: key}
}

var (
	pkiOnce          sync.Once
	sm2CA, ecdsaCA   *testCA
	sm2Leaf, ecLeaf  crypto.Signer
	pkiErr           error
	sm2LeafDER       []byte
	ecLeafDER        []byte
	identityIDCard   = "11010519491231002X" // the GB 11643 specimen number
	identityUSCC     = "91350100M000100Y43"
	identityBadCheck = "110105194912310021"
)

// pki returns the shared test hierarchy: an SM2 and an ECDSA P-256 root,
// and a good leaf under each.
func pki(t testing.TB) {
	t.Helper()
	pkiOnce.Do(func() {
		sk, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			pkiErr = err
			return
		}
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			pkiErr = err
			return
		}
		sm2CA = newTestCA(t, sk, "govtrust SM2 test root", testNow.AddDate(-1, 0, 0), testNow.AddDate(10, 0, 0))
		ecdsaCA = newTestCA(t, ek, "govtrust ECDSA test root", testNow.AddDate(-1, 0, 0), testNow.AddDate(10, 0, 0))
		if sm2Leaf, err = sm2.GenerateKey(rand.Reader); err != nil {
			pkiErr = err
			return
		}
		if ecLeaf, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			pkiErr = err
			return
		}
		sm2LeafDER = issueGood(t, sm2CA, sm2Leaf.Public())
		ecLeafDER = issueGood(t, ecdsaCA, ecLeaf.Public())
	})
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// goodTemplate is a leaf that passes every lint with a zero Expect.
func goodTemplate(t testing.TB, pub crypto.PublicKey) *smx509.Certificate {
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	info, err := parseSPKI(spki)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(info.key)
	ski := h[:20]
	return &smx509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(append([]byte{0x01}, randBytes(t, 16)...)),
		Subject:               pkix.Name{Country: []string{"CN"}, Organization: []string{"某某市人民政府"}, CommonName: "张三"},
		NotBefore:             testNow.Add(-time.Hour),
		NotAfter:              testNow.Add(365*24*time.Hour - time.Hour - time.Second),
		KeyUsage:              smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment,
		ExtKeyUsage:           []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth},
		SubjectKeyId:          ski,
		CRLDistributionPoints: []string{"http://pki.example.gov.cn/crl/test.crl"},
		OCSPServer:            []string{"http://pki.example.gov.cn/ocsp/test"},
		IssuingCertificateURL: []string{"http://pki.example.gov.cn/ca/test.cer"},
	}
}

func issueGood(t testing.TB, ca *testCA, pub crypto.PublicKey) []byte {
	der, err := smx509.CreateCertificate(rand.Reader, goodTemplate(t, pub), ca.cert, pub, ca.key)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return der
}

// encode assembles a certificate from a rawCert, with a dummy signature
// (the lints never check it: lint certificates are signed with a
// throw-away key).
func (r *rawCert) encode() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if r.versionPresent {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(r.version) })
				})
			}
			b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(r.serial) })
			b.AddBytes(r.innerAlg)
			b.AddBytes(r.issuer)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(r.notBefore.tag, func(b *cryptobyte.Builder) { b.AddBytes(r.notBefore.content) })
				b.AddASN1(r.notAfter.tag, func(b *cryptobyte.Builder) { b.AddBytes(r.notAfter.content) })
			})
			b.AddBytes(r.subject)
			b.AddBytes(r.spki)
			if r.issuerUID {
				b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0, 1}) })
			}
			if r.subjectUID {
				b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0, 1}) })
			}
			if r.extsPresent {
				b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						for _, e := range r.exts {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(e.id)
								if e.critical || e.criticalPresent {
									b.AddASN1Boolean(e.critical)
								}
								b.AddASN1OctetString(e.value)
							})
						}
					})
				})
			}
		})
		b.AddBytes(r.outerAlg)
		b.AddASN1BitString([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	})
	return b.BytesOrPanic()
}

// setExt replaces the first extension id, or appends it.
func (r *rawCert) setExt(id asn1.ObjectIdentifier, critical bool, value []byte) {
	r.extsPresent = true
	for i := range r.exts {
		if r.exts[i].id.Equal(id) {
			r.exts[i] = rawExt{id: id, critical: critical, value: value}
			return
		}
	}
	r.exts = append(r.exts, rawExt{id: id, critical: critical, value: value})
}

func (r *rawCert) delExt(id asn1.ObjectIdentifier) {
	var keep []rawExt
	for _, e := range r.exts {
		if !e.id.Equal(id) {
			keep = append(keep, e)
		}
	}
	r.exts = keep
}

func (r *rawCert) getExt(id asn1.ObjectIdentifier) *rawExt {
	for i := range r.exts {
		if r.exts[i].id.Equal(id) {
			return &r.exts[i]
		}
	}
	return nil
}

// attr is one attribute of a test Name.
type attr struct {
	id  asn1.ObjectIdentifier
	tag cbasn1.Tag
	v   string
}

func ps(id asn1.ObjectIdentifier, v string) attr { return attr{id, cbasn1.PrintableString, v} }
func u8(id asn1.ObjectIdentifier, v string) attr { return attr{id, cbasn1.UTF8String, v} }

// mkName encodes a Name; each argument is one RDN.
func mkName(rdns ...[]attr) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, rdn := range rdns {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, a := range rdn {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(a.id)
						b.AddASN1(a.tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(a.v)) })
					})
				}
			})
		}
	})
	return b.BytesOrPanic()
}

// names builds a Name with one attribute per RDN.
func names(as ...attr) []byte {
	rdns := make([][]attr, len(as))
	for i, a := range as {
		rdns[i] = []attr{a}
	}
	return mkName(rdns...)
}

func kuValue(bits int) []byte {
	var bs asn1.BitString
	n := 0
	for i := 0; i < 9; i++ {
		if bits&(1<<uint(i)) != 0 {
			n = i + 1
		}
	}
	bs.BitLength = n
	bs.Bytes = make([]byte, (n+7)/8)
	for i := 0; i < n; i++ {
		if bits&(1<<uint(i)) != 0 {
			bs.Bytes[i/8] |= 0x80 >> uint(i%8)
		}
	}
	v, _ := asn1.Marshal(bs)
	return v
}

func bcValue(ca bool, pathLen int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if ca {
			b.AddASN1Boolean(true)
		}
		if pathLen >= 0 {
			b.AddASN1Int64(int64(pathLen))
		}
	})
	return b.BytesOrPanic()
}

func oidSeq(ids ...asn1.ObjectIdentifier) []byte {
	v, _ := asn1.Marshal(ids)
	return v
}

// gn is a GeneralName for sanValue.
type gn struct {
	tag int
	v   []byte
}

func dnsName(s string) gn { return gn{2, []byte(s)} }

func sanValue(ns ...gn) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, n := range ns {
			b.AddASN1(cbasn1.Tag(n.tag).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(n.v) })
		}
	})
	return b.BytesOrPanic()
}

func crldpValue(uri string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(uri)) })
				})
			})
		})
	})
	return b.BytesOrPanic()
}

func akiValue(id []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if id != nil {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(id) })
		}
	})
	return b.BytesOrPanic()
}

func algID(id asn1.ObjectIdentifier, params []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(id)
		if params != nil {
			b.AddBytes(params)
		}
	})
	return b.BytesOrPanic()
}

// spkiDER encodes a SubjectPublicKeyInfo by hand, for keys Go cannot make.
func spkiDER(alg asn1.ObjectIdentifier, params []byte, key []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(algID(alg, params))
		b.AddASN1BitString(key)
	})
	return b.BytesOrPanic()
}

func oidParam(id asn1.ObjectIdentifier) []byte {
	v, _ := asn1.Marshal(id)
	return v
}

// rsaSPKI encodes an RSA key with modulus n and exponent e.
func rsaSPKI(n *big.Int, e int64, withNull bool) []byte {
	var k cryptobyte.Builder
	k.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(n)
		b.AddASN1Int64(e)
	})
	var params []byte
	if withNull {
		params = []byte{5, 0}
	}
	return spkiDER(oidPublicKeyRSA, params, k.BytesOrPanic())
}

// oddModulus returns a random odd modulus of exactly bits bits with no
// small factor and neither the ROCA nor the Fermat weakness: a stand-in for
// an RSA modulus, since the lints look only at n.
func oddModulus(t testing.TB, bits int) *big.Int {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		if err != nil {
			t.Fatal(err)
		}
		n.SetBit(n, bits-1, 1)
		n.SetBit(n, 0, 1)
		if rsaSmallFactor(n) == 0 && !rsaROCA(n) {
			return n
		}
	}
}

// hugeModulus is an odd modulus of exactly bits bits divisible by 3: the
// small-factor lint would refuse it, if it ran.
func hugeModulus(t testing.TB, bits int) *big.Int {
	b := randBytes(t, bits/8)
	b[0] |= 0x80
	n := new(big.Int).SetBytes(b)
	n.Sub(n, new(big.Int).Mod(n, big.NewInt(3)))
	if n.Bit(0) == 0 {
		n.Sub(n, big.NewInt(3))
	}
	if n.BitLen() != bits {
		t.Fatalf("modulus of %d bits", n.BitLen())
	}
	return n
}
