package tsp

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var update = flag.Bool("update", false, "rewrite testdata")

// testPKI is a root and a TSA certificate made at test time.
type testPKI struct {
	root, tsa *smx509.Certificate
	key       crypto.Signer
	roots     *smx509.CertPool
}

var testPolicy = asn1.ObjectIdentifier{1, 2, 3, 4, 1}

func newKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	if alg == "sm2" {
		k, err = sm2.GenerateKey(rand.Reader)
	} else {
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newPKI makes a root and a TSA certificate; ekuCritical false makes a
// non-conforming TSA certificate.
func newPKI(t testing.TB, alg string, ekuCritical bool) *testPKI {
	t.Helper()
	return newPKIWith(t, alg, ekuCritical, nil)
}

// newPKIWith is newPKI with edit applied to the TSA certificate's template.
func newPKIWith(t testing.TB, alg string, ekuCritical bool, edit func(*smx509.Certificate)) *testPKI {
	t.Helper()
	rootKey := newKey(t, alg)
	now := time.Now()
	rootTmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root " + alg},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign}
	rootDER, err := smx509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := smx509.ParseCertificate(rootDER)
	key := newKey(t, alg)
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{OIDTimeStamping})
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test tsa " + alg},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: ekuCritical, Value: eku}}}
	if edit != nil {
		edit(tmpl)
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := smx509.NewCertPool()
	pool.AddCert(root)
	return &testPKI{root: root, tsa: cert, key: key, roots: pool}
}

func (p *testPKI) stamp(t testing.TB, req *Request, withCerts bool) []byte {
	t.Helper()
	s, err := NewSigner(p.tsa, []*smx509.Certificate{p.root}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	info := &TSTInfo{Policy: testPolicy, MessageImprint: req.MessageImprint, SerialNumber: big.NewInt(0x1234567),
		GenTime: time.Now(), Accuracy: time.Second, Nonce: req.Nonce}
	tok, err := s.Sign(info, withCerts)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSignAndVerify(t *testing.T) {
	data := []byte("the document")
	for _, alg := range []string{"sm2", "ecdsa"} {
		for _, h := range HashAlgs {
			t.Run(alg+"/"+h.Name, func(t *testing.T) {
				p := newPKI(t, alg, true)
				req := NewRequest(h, h.Sum(data), big.NewInt(42), true)
				der, err := req.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if req, err = ParseRequest(der); err != nil {
					t.Fatal(err)
				}
				tok, err := ParseToken(p.stamp(t, req, true))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tok.Verify(VerifyOptions{Roots: p.roots, Request: req, Data: data}); err != nil {
					t.Fatalf("verify: %v", err)
				}
				if tok.Info.Nonce.Int64() != 42 || !tok.Info.Policy.Equal(testPolicy) || tok.Info.Accuracy != time.Second {
					t.Errorf("TSTInfo = %+v", tok.Info)
				}
				// Negative cases: each must fail.
				bad := []struct {
					name string
					opts VerifyOptions
				}{
					{"other data", VerifyOptions{Roots: p.roots, Data: []byte("another document")}},
					{"other nonce", VerifyOptions{Roots: p.roots, Request: NewRequest(h, h.Sum(data), big.NewInt(43), true)}},
					{"other root", VerifyOptions{Roots: newPKI(t, alg, true).roots}},
					{"other policy", VerifyOptions{Roots: p.roots, Policies: []asn1.ObjectIdentifier{{1, 2, 3}}}},
					{"after expiry", VerifyOptions{Roots: p.roots, CurrentTime: time.Now().Add(48 * time.Hour)}},
				}
				for _, b := range bad {
					if _, err := tok.Verify(b.opts); !errors.Is(err, ErrVerify) {
						t.Errorf("%s: Verify = %v, want ErrVerify", b.name, err)
					}
				}
			})
		}
	}
}

func TestVerifyWithoutCerts(t *testing.T) {
	p := newPKI(t, "sm2", true)
	req := NewRequest(SM3, SM3.Sum([]byte("x")), nil, false)
	tok, err := ParseToken(p.stamp(t, req, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Certificates) != 0 {
		t.Fatalf("token without certReq carries %d certificates", len(tok.Certificates))
	}
	if _, err := tok.Verify(VerifyOptions{Roots: p.roots}); !errors.Is(err, ErrVerify) {
		t.Fatalf("verify without the TSA certificate = %v, want ErrVerify", err)
	}
	if _, err := tok.Verify(VerifyOptions{Roots: p.roots, Intermediates: []*smx509.Certificate{p.tsa}, Request: req}); err != nil {
		t.Fatal(err)
	}
}

func TestNonCriticalEKURefused(t *testing.T) {
	p := newPKI(t, "ecdsa", false)
	req := NewRequest(SHA256, SHA256.Sum([]byte("x")), nil, true)
	tok, err := ParseToken(p.stamp(t, req, true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Verify(VerifyOptions{Roots: p.roots}); !errors.Is(err, ErrVerify) {
		t.Fatalf("verify = %v, want ErrVerify for a non-critical EKU", err)
	}
}

// The signer must be an end entity whose key usage, when present, is
// digitalSignature and/or nonRepudiation alone (OpenSSL's
// X509_PURPOSE_TIMESTAMP_SIGN; a CA certificate is refused too, which
// OpenSSL does not check). openssl ts -verify, when installed, agrees on
// the key usages.
func TestTSACertKeyUsage(t *testing.T) {
	openssl, _ := exec.LookPath("openssl")
	for _, c := range []struct {
		name string
		edit func(*smx509.Certificate)
		ok   bool
	}{
		{"digitalSignature", nil, true},
		{"nonRepudiation", func(c *smx509.Certificate) { c.KeyUsage = smx509.KeyUsageContentCommitment }, true},
		{"both, as profile tsa", func(c *smx509.Certificate) {
			c.KeyUsage = smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
		}, true},
		{"no key usage", func(c *smx509.Certificate) { c.KeyUsage = 0 }, true},
		{"cA false", func(c *smx509.Certificate) { c.BasicConstraintsValid = true }, true},
		{"keyEncipherment", func(c *smx509.Certificate) { c.KeyUsage = smx509.KeyUsageKeyEncipherment }, false},
		{"digitalSignature and keyAgreement", func(c *smx509.Certificate) {
			c.KeyUsage = smx509.KeyUsageDigitalSignature | smx509.KeyUsageKeyAgreement
		}, false},
		{"digitalSignature and keyCertSign", func(c *smx509.Certificate) {
			c.KeyUsage = smx509.KeyUsageDigitalSignature | smx509.KeyUsageCertSign
		}, false},
		{"CA", func(c *smx509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage = smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign
		}, false},
		{"CA with digitalSignature", func(c *smx509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage = smx509.KeyUsageDigitalSignature
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPKIWith(t, "ecdsa", true, c.edit)
			data := []byte("x")
			req := NewRequest(SHA256, SHA256.Sum(data), big.NewInt(1), true)
			der := p.stamp(t, req, true)
			tok, err := ParseToken(der)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tok.Verify(VerifyOptions{Roots: p.roots, Request: req, Data: data})
			if c.ok != (err == nil) {
				t.Fatalf("Verify = %v, want ok %v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrVerify) {
				t.Fatalf("Verify = %v, want ErrVerify", err)
			}
			if openssl == "" || c.name == "CA with digitalSignature" {
				// OpenSSL's purpose check does not look at cA: the one
				// case refused here that it accepts.
				return
			}
			dir := t.TempDir()
			write := func(name string, b []byte) string {
				f := filepath.Join(dir, name)
				if err := os.WriteFile(f, b, 0o600); err != nil {
					t.Fatal(err)
				}
				return f
			}
			root := write("root.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw}))
			out, err := exec.Command(openssl, "ts", "-verify", "-token_in", "-in", write("t.tst", der),
				"-data", write("data", data), "-CAfile", root).CombinedOutput()
			if c.ok != (err == nil) {
				t.Fatalf("openssl ts -verify: %v %s, want ok %v", err, out, c.ok)
			}
		})
	}
}

// A token with one altered octet anywhere must never verify: it either
// fails to parse or fails Verify.
func TestTamperedTokens(t *testing.T) {
	p := newPKI(t, "sm2", true)
	req := NewRequest(SM3, SM3.Sum([]byte("x")), big.NewInt(7), true)
	// Without certificates: every octet left is signed or structural (a
	// copy of a certificate the verifier ignores is not).
	good := p.stamp(t, req, false)
	for i := 0; i < len(good); i++ {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		tok, err := ParseToken(b)
		if err != nil {
			continue
		}
		if _, err := tok.Verify(VerifyOptions{Roots: p.roots, Intermediates: []*smx509.Certificate{p.tsa}, Request: req}); err == nil {
			t.Fatalf("token with octet %d altered verifies", i)
		}
	}
}

func TestParseRequestRejections(t *testing.T) {
	good, _ := NewRequest(SHA256, make([]byte, 32), big.NewInt(1), true).Marshal()
	mk := func(f func(r *Request)) []byte {
		r := NewRequest(SHA256, make([]byte, 32), big.NewInt(1), true)
		f(r)
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		der  []byte
		want FailureInfo
	}{
		{"garbage", []byte("hello, world"), BadDataFormat},
		{"empty", nil, BadDataFormat},
		{"truncated", good[:len(good)-3], BadDataFormat},
		{"trailing", append(bytes.Clone(good), 0), BadDataFormat},
		{"version 2", mk(func(r *Request) { r.Version = 2 }), BadDataFormat},
		{"sha1", mk(func(r *Request) {
			r.MessageImprint.HashAlgorithm = oidSHA1
			r.MessageImprint.HashedMessage = make([]byte, 20)
		}), BadAlg},
		{"unknown hash", mk(func(r *Request) { r.MessageImprint.HashAlgorithm = asn1.ObjectIdentifier{1, 2, 3, 4} }), BadAlg},
		{"short digest", mk(func(r *Request) { r.MessageImprint.HashedMessage = make([]byte, 31) }), BadDataFormat},
		{"long nonce", mk(func(r *Request) { r.Nonce = new(big.Int).Lsh(big.NewInt(1), 8*MaxNonceLen+1) }), BadDataFormat},
		{"non-minimal length", append([]byte{0x30, 0x81, byte(len(good) - 2)}, good[2:]...), BadDataFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest(tt.der)
			var re *RequestError
			if !errors.As(err, &re) || re.Fail != tt.want {
				t.Fatalf("ParseRequest = %v, want %s", err, tt.want)
			}
		})
	}
	r, err := ParseRequest(mk(func(r *Request) {
		r.ReqPolicy = testPolicy
		r.Extensions = []Extension{{ID: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}}}
	}))
	if err != nil || !r.ReqPolicy.Equal(testPolicy) || len(r.Extensions) != 1 || !r.Extensions[0].Critical {
		t.Fatalf("request with policy and extension = %+v, %v", r, err)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, f := range []FailureInfo{BadAlg, BadRequest, BadDataFormat, TimeNotAvailable, UnacceptedPolicy, UnacceptedExtension, SystemFailure} {
		t.Run(f.String(), func(t *testing.T) {
			r, err := ParseResponse(Rejection(f, "no"))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != StatusRejection || len(r.Failures) != 1 || r.Failures[0] != f || r.StatusString != "no" {
				t.Fatalf("round trip = %+v", r)
			}
		})
	}
	// timeNotAvailable (bit 14) in DER: 03 03 01 00 02.
	if b := Rejection(TimeNotAvailable, ""); !bytes.Contains(b, []byte{3, 3, 1, 0, 2}) {
		t.Errorf("timeNotAvailable encoded as % x", b)
	}
}

func TestGrantedHeader(t *testing.T) {
	for _, n := range []int{0, 1, 100, 122, 123, 124, 250, 251, 252, 1236, 65535, 70000} {
		tok := append([]byte{0x30}, bytes.Repeat([]byte{0}, n)...)
		want := Granted(tok)
		if got := append(GrantedHeader(len(tok)), tok...); !bytes.Equal(got, want) {
			t.Errorf("token of %d octets: header+token % x, Granted % x", len(tok), got[:8], want[:8])
		}
	}
}

func TestGenTime(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), "20261121100000Z"},
		{time.Date(2026, 11, 21, 10, 0, 0, 500_000_000, time.UTC), "20261121100000.5Z"},
		{time.Date(2026, 11, 21, 10, 0, 0, 120_999_999, time.UTC), "20261121100000.12Z"},
	}
	for _, tt := range tests {
		if got := formatGenTime(tt.in); got != tt.want {
			t.Errorf("formatGenTime(%v) = %s, want %s", tt.in, got, tt.want)
		}
		if back, err := parseGenTime(tt.want); err != nil || !back.Equal(tt.in.Truncate(time.Millisecond)) {
			t.Errorf("parseGenTime(%s) = %v, %v", tt.want, back, err)
		}
	}
	for _, bad := range []string{"20261121100000.50Z", "20261121100000.Z", "20261121100000", "2026112110000Z", "20261121100000+0800"} {
		if _, err := parseGenTime(bad); err == nil {
			t.Errorf("parseGenTime(%s) accepted", bad)
		}
	}
}

// TestWriteSeeds writes the fuzz seeds (requests, responses, tokens) into
// testdata with -update.
func TestWriteSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata")
	}
	for _, alg := range []string{"sm2", "ecdsa"} {
		p := newPKI(t, alg, true)
		h := map[string]*HashAlg{"sm2": SM3, "ecdsa": SHA256}[alg]
		req := NewRequest(h, h.Sum([]byte("seed")), big.NewInt(99), true)
		reqDER, _ := req.Marshal()
		tok := p.stamp(t, req, true)
		for name, b := range map[string][]byte{alg + ".tsq": reqDER, alg + ".tst": tok, alg + ".tsr": Granted(tok)} {
			if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// ESSCertIDv2's hashAlgorithm is DEFAULT sha256: DER omits it (X.690
// §11.5), so the verifier refuses it written out (no TSA writes it:
// OpenSSL and Bouncy Castle leave it out); SHA-256 with NULL parameters is
// another value, valid DER (RFC 5754 §2), and verifies, as does the
// default left out and another hash written out.
func TestESSCertIDv2DefaultHash(t *testing.T) {
	p := newPKI(t, "ecdsa", true)
	for _, c := range []struct {
		name string
		alg  func(b *cryptobyte.Builder)
		ok   bool
	}{
		{"default omitted", nil, true},
		{"default written out", func(b *cryptobyte.Builder) { addAlgorithm(b, SHA256.OID, false) }, false},
		{"sha256 with NULL", func(b *cryptobyte.Builder) { addAlgorithm(b, SHA256.OID, true) }, true},
		{"sha384", func(b *cryptobyte.Builder) { addAlgorithm(b, SHA384.OID, false) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSigner(p.tsa, nil, p.key)
			if err != nil {
				t.Fatal(err)
			}
			h := SHA256
			if c.name == "sha384" {
				h = SHA384
			}
			var b cryptobyte.Builder
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						if c.alg != nil {
							c.alg(b)
						}
						b.AddASN1OctetString(h.Sum(p.tsa.Raw))
					})
				})
			})
			if s.ess, err = b.Bytes(); err != nil {
				t.Fatal(err)
			}
			if err := s.precompute(); err != nil {
				t.Fatal(err)
			}
			req := NewRequest(SHA256, SHA256.Sum([]byte("ess")), big.NewInt(3), true)
			der, err := s.Sign(&TSTInfo{Policy: testPolicy, MessageImprint: req.MessageImprint, SerialNumber: big.NewInt(9), GenTime: time.Now(), Nonce: req.Nonce}, true)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := ParseToken(der)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tok.Verify(VerifyOptions{Roots: p.roots, Request: req})
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && (!errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "DEFAULT")) {
				t.Fatalf("verify: %v, want the explicit DEFAULT refused", err)
			}
		})
	}
}
