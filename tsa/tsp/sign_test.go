package tsp

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// fixedSigner returns the same signature whatever it is asked to sign and
// remembers what it was asked, so that two encoders can be compared octet
// for octet.
type fixedSigner struct {
	pub  crypto.PublicKey
	mu   sync.Mutex
	msgs [][]byte
	opts []crypto.SignerOpts
}

func (f *fixedSigner) Public() crypto.PublicKey { return f.pub }

func (f *fixedSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, bytes.Clone(msg))
	f.opts = append(f.opts, opts)
	return []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}, nil
}

// pkcs7Token is the construction INTEROP.md tested, on gmsm's pkcs7: the
// reference that Signer.Sign must reproduce.
func pkcs7Token(t testing.TB, s *Signer, info *TSTInfo, withCerts bool) []byte {
	t.Helper()
	tst, err := info.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sd, err := pkcs7.NewSignedData(tst)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(s.hash.OID)
	raw := sd.GetSignedData()
	raw.ContentInfo.ContentType = OIDTSTInfo
	raw.Version = 3
	cfg := pkcs7.SignerInfoConfig{
		ExtraSignedAttributes: []pkcs7.Attribute{{Type: oidAttrSigningCertV2, Value: asn1.RawValue{FullBytes: s.ess}}},
		SkipCertificates:      !withCerts,
	}
	if err := sd.AddSigner(s.cert, s.key, cfg); err != nil {
		t.Fatal(err)
	}
	// gmsm writes NULL parameters in every algorithm identifier; the TSA
	// does for SM2 and SM3 (gmsm's construction) and RSA signatures (RFC
	// 4055 §5) only: ecdsa-with-SHA* (RFC 5758 §3.2) and SHA-2 digests
	// (RFC 5754 §2) have none.
	if !s.sm2 {
		for i := range raw.DigestAlgorithmIdentifiers {
			raw.DigestAlgorithmIdentifiers[i].Parameters = asn1.RawValue{}
		}
		raw.SignerInfos[0].DigestAlgorithm.Parameters = asn1.RawValue{}
		if _, rsaKey := s.key.Public().(*rsa.PublicKey); !rsaKey {
			raw.SignerInfos[0].DigestEncryptionAlgorithm.Parameters = asn1.RawValue{}
		}
	}
	if withCerts {
		for _, c := range s.chain {
			sd.AddCertificate(c)
		}
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func rsaPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "test tsa rsa"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{root: cert, tsa: cert, key: key}
}

// TestSignMatchesPKCS7 checks that the direct encoding of Sign is octet for
// octet the token gmsm's pkcs7 makes (INTEROP.md's tested construction),
// and that both ask the key to sign the same octets with the same options.
func TestSignMatchesPKCS7(t *testing.T) {
	pkis := map[string]*testPKI{"sm2": newPKI(t, "sm2", true), "ecdsa": newPKI(t, "ecdsa", true), "rsa": rsaPKI(t)}
	for _, alg := range []string{"sm2", "ecdsa", "rsa"} {
		for _, withCerts := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/certs=%v", alg, withCerts), func(t *testing.T) {
				p := pkis[alg]
				fs := &fixedSigner{pub: p.key.Public()}
				s, err := NewSigner(p.tsa, []*smx509.Certificate{p.root}, fs)
				if err != nil {
					t.Fatal(err)
				}
				// gmsm takes signingTime from its own clock: retry when the
				// second turns between the two encodings.
				for attempt := 0; ; attempt++ {
					fs.msgs, fs.opts = nil, nil
					info := &TSTInfo{Policy: testPolicy, SerialNumber: big.NewInt(0x0102030405),
						MessageImprint: MessageImprint{HashAlgorithm: SHA256.OID, HashedMessage: SHA256.Sum([]byte("doc"))},
						GenTime:        time.Now(), Accuracy: time.Second, Nonce: big.NewInt(99)}
					got, err := s.Sign(info, withCerts)
					if err != nil {
						t.Fatal(err)
					}
					want := pkcs7Token(t, s, info, withCerts)
					if !bytes.Equal(got, want) && attempt < 3 && !bytes.Equal(fs.msgs[0], fs.msgs[1]) {
						continue
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("token differs from gmsm pkcs7's:\n got %x\nwant %x", got, want)
					}
					if !bytes.Equal(fs.msgs[0], fs.msgs[1]) || fs.opts[0] != fs.opts[1] {
						t.Fatalf("signed %x (%v), gmsm signs %x (%v)", fs.msgs[0], fs.opts[0], fs.msgs[1], fs.opts[1])
					}
					break
				}
			})
		}
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCPU runs op b.N times and reports the process CPU time per
// operation ("cpu-ns/op"), which a loaded machine disturbs less than the
// wall time.
func benchCPU(b *testing.B, op func() error) {
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSign is the codec's share of a token (TSTInfo, CMS and the
// signature) next to the raw signature it must make, as bench/ref makes it
// (a 1024-byte message): Sign/sm2 over RawSign/sm2 is the codec's overhead.
func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{"sm2", "ecdsa"} {
		p := newPKI(b, alg, true)
		s, err := NewSigner(p.tsa, nil, p.key)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("token/"+alg, func(b *testing.B) {
			req := NewRequest(SHA256, SHA256.Sum([]byte("x")), big.NewInt(1), false)
			serial := new(big.Int).Lsh(big.NewInt(1), 130)
			benchCPU(b, func() error {
				info := &TSTInfo{Policy: testPolicy, MessageImprint: req.MessageImprint, SerialNumber: serial, GenTime: time.Now(), Accuracy: time.Second, Nonce: req.Nonce}
				_, err := s.Sign(info, false)
				return err
			})
		})
		// The gmsm pkcs7 construction Sign replaced, for comparison.
		b.Run("pkcs7/"+alg, func(b *testing.B) {
			req := NewRequest(SHA256, SHA256.Sum([]byte("x")), big.NewInt(1), false)
			serial := new(big.Int).Lsh(big.NewInt(1), 130)
			benchCPU(b, func() error {
				info := &TSTInfo{Policy: testPolicy, MessageImprint: req.MessageImprint, SerialNumber: serial, GenTime: time.Now(), Accuracy: time.Second, Nonce: req.Nonce}
				pkcs7Token(b, s, info, false)
				return nil
			})
		})
		b.Run("raw/"+alg, func(b *testing.B) {
			msg := make([]byte, 1024)
			benchCPU(b, func() error {
				if alg == "sm2" {
					_, err := p.key.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
					return err
				}
				d := SHA256.Sum(msg)
				_, err := p.key.Sign(rand.Reader, d, crypto.SHA256)
				return err
			})
		})
	}
}

// algID is an AlgorithmIdentifier with its parameters as received.
type algID struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// TestAlgorithmParameters reads the algorithm identifiers of tokens
// without certificates: ECDSA's signatureAlgorithm has no parameters (RFC
// 5758 §3.2), nor have SHA-2 digests (RFC 5754 §2); RSA's signature (RFC
// 4055 §5) and SM2's and SM3's (gmsm's construction, INTEROP.md) have NULL.
func TestAlgorithmParameters(t *testing.T) {
	type signerInfo struct {
		Version     int
		SID         asn1.RawValue
		Digest      algID
		SignedAttrs asn1.RawValue
		Signature   algID
		Value       []byte
	}
	type signedData struct {
		Version     int
		Digests     []algID `asn1:"set"`
		Content     asn1.RawValue
		SignerInfos []signerInfo `asn1:"set"`
	}
	type contentInfo struct {
		Type    asn1.ObjectIdentifier
		Content signedData `asn1:"explicit,tag:0"`
	}
	for _, c := range []struct {
		alg                 string
		pki                 *testPKI
		digestNull, sigNull bool
		digestOID, sigOID   asn1.ObjectIdentifier
	}{
		{"sm2", newPKI(t, "sm2", true), true, true, SM3.OID, oidSM2Sign},
		{"ecdsa", newPKI(t, "ecdsa", true), false, false, SHA256.OID, oidECDSAWithSHA256},
		{"rsa", rsaPKI(t), false, true, SHA256.OID, oidSHA256WithRSA},
	} {
		t.Run(c.alg, func(t *testing.T) {
			s, err := NewSigner(c.pki.tsa, nil, c.pki.key)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign(&TSTInfo{Policy: testPolicy, SerialNumber: big.NewInt(1),
				MessageImprint: MessageImprint{HashAlgorithm: SHA256.OID, HashedMessage: SHA256.Sum([]byte("doc"))}, GenTime: time.Now()}, false)
			if err != nil {
				t.Fatal(err)
			}
			var ci contentInfo
			if rest, err := asn1.Unmarshal(tok, &ci); err != nil || len(rest) != 0 {
				t.Fatalf("token: %v", err)
			}
			si := ci.Content.SignerInfos[0]
			check := func(what string, a algID, oid asn1.ObjectIdentifier, null bool) {
				t.Helper()
				if !a.Algorithm.Equal(oid) {
					t.Errorf("%s %s, want %s", what, a.Algorithm, oid)
				}
				if hasNull := bytes.Equal(a.Parameters.FullBytes, []byte{5, 0}); hasNull != null || !null && len(a.Parameters.FullBytes) != 0 {
					t.Errorf("%s parameters %x, want NULL: %v", what, a.Parameters.FullBytes, null)
				}
			}
			check("digestAlgorithms", ci.Content.Digests[0], c.digestOID, c.digestNull)
			check("SignerInfo digestAlgorithm", si.Digest, c.digestOID, c.digestNull)
			check("SignerInfo signatureAlgorithm", si.Signature, c.sigOID, c.sigNull)
			if _, err := ParseToken(tok); err != nil {
				t.Fatal(err)
			}
		})
	}
}
