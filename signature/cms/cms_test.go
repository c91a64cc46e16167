package cms

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	ps := pki(t)
	content := []byte("政务数据 govtrust CMS test content\n")
	for _, alg := range []string{"sm2", "p256", "p384", "rsa"} {
		for _, fam := range []Family{RFC5652, GMT0010} {
			for _, mode := range []string{"attached", "detached", "no-attributes", "hash-only", "ski"} {
				if mode == "ski" && fam == GMT0010 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s", alg, fam, mode), func(t *testing.T) {
					p := ps[alg]
					s := &Signer{Certificate: p.cert, Key: p.key, Chain: []*smx509.Certificate{p.root}, SigningTime: time.Now(), SigningCertificateV2: true}
					opts := &Options{Family: fam, Detached: mode == "detached"}
					var der []byte
					var err error
					switch mode {
					case "no-attributes":
						s.NoAttributes, s.SigningTime, s.SigningCertificateV2 = true, time.Time{}, false
						der, err = Sign(content, []*Signer{s}, opts)
					case "hash-only":
						h := DefaultDigest(p.key.Public())
						der, err = SignDigest(h, h.Sum(content), []*Signer{s}, opts)
					case "ski":
						s.UseSKI = true
						der, err = Sign(content, []*Signer{s}, opts)
					default:
						der, err = Sign(content, []*Signer{s}, opts)
					}
					if err != nil {
						t.Fatal(err)
					}
					sd, err := Parse(der, nil)
					if err != nil {
						t.Fatal(err)
					}
					if sd.Family != fam {
						t.Errorf("family %v, want %v", sd.Family, fam)
					}
					re, err := sd.Marshal()
					if err != nil || !bytes.Equal(re, der) {
						t.Errorf("parse -> marshal is not byte-identical (err %v)", err)
					}
					vo := VerifyOptions{}
					if sd.Detached {
						vo.Content = content
					}
					cert, err := sd.Verify(0, vo)
					if err != nil {
						t.Fatalf("verify: %v", err)
					}
					if !cert.Equal(p.cert) {
						t.Error("verify returned another certificate")
					}
					if mode == "hash-only" {
						if _, err := sd.Verify(0, VerifyOptions{Digest: sd.Signers[0].Digest.Sum(content)}); err != nil {
							t.Errorf("hash-only verify: %v", err)
						}
					}
					// Altered content is refused as such.
					alt := append([]byte("x"), content...)
					if sd.Detached {
						_, err = sd.Verify(0, VerifyOptions{Content: alt})
					} else {
						sd.Content = alt
						_, err = sd.Verify(0, VerifyOptions{})
					}
					want := ReasonContentAltered
					if mode == "no-attributes" {
						want = ReasonSignatureInvalid
					}
					if got := ReasonOf(err); got != want {
						t.Errorf("altered content: reason %q (%v), want %q", got, err, want)
					}
				})
			}
		}
	}
}

// TestGmsmAcceptsOurs cross-checks messages made here with gmsm's pkcs7
// verifier (it knows sm2sign 301.1 only, the default written here).
func TestGmsmAcceptsOurs(t *testing.T) {
	ps := pki(t)
	content := []byte("cross-check with gmsm pkcs7")
	for _, alg := range []string{"sm2", "p256", "rsa"} {
		for _, fam := range []Family{RFC5652, GMT0010} {
			for _, detached := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/detached=%v", alg, fam, detached), func(t *testing.T) {
					p := ps[alg]
					der, err := Sign(content, []*Signer{{Certificate: p.cert, Key: p.key, SigningTime: time.Now()}}, &Options{Family: fam, Detached: detached})
					if err != nil {
						t.Fatal(err)
					}
					p7, err := pkcs7.Parse(der)
					if err != nil {
						t.Fatal(err)
					}
					if detached {
						p7.Content = content
					}
					if err := p7.Verify(); err != nil {
						t.Fatalf("gmsm rejects: %v", err)
					}
					if detached {
						p7.Content = []byte("altered")
						if p7.Verify() == nil {
							t.Fatal("gmsm accepts altered content")
						}
					}
				})
			}
		}
	}
}

func TestRejections(t *testing.T) {
	ps := pki(t)
	content := []byte("rejections")
	sm := ps["sm2"]
	sign := func(s *Signer, opts *Options) *SignedData {
		t.Helper()
		der, err := Sign(content, []*Signer{s}, opts)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := Parse(der, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	// A certificate with the signer's issuer and serial but another key:
	// what a substituted signer certificate looks like.
	other := issue(t, "impostor", genKey(t, "sm2"), sm.root, sm.rootKey, false, sm.cert.NotBefore, sm.cert.NotAfter)
	impostor := *other
	impostor.SerialNumber = sm.cert.SerialNumber

	tests := []struct {
		name string
		sd   func() (*SignedData, VerifyOptions)
		want Reason
	}{
		// Made with an ID the verifier cannot guess: only "invalid" can be said.
		{"unguessable SM2 user ID", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key, UID: []byte("ALICE123@YAHOO.COM")}, nil), VerifyOptions{UID: []byte("BOB")}
		}, ReasonSignatureInvalid},
		{"expected user ID differs", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key}, nil), VerifyOptions{UID: []byte("ALICE123@YAHOO.COM")}
		}, ReasonSM2UserID},
		{"signer certificate absent", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key}, &Options{NoCertificates: true}), VerifyOptions{}
		}, ReasonSignerNotFound},
		{"wrong signer certificate", func() (*SignedData, VerifyOptions) {
			sd := sign(&Signer{Certificate: sm.cert, Key: sm.key}, &Options{NoCertificates: true})
			return sd, VerifyOptions{Certificates: []*smx509.Certificate{&impostor}}
		}, ReasonSignatureInvalid},
		{"tampered signature", func() (*SignedData, VerifyOptions) {
			sd := sign(&Signer{Certificate: sm.cert, Key: sm.key}, nil)
			sd.Signers[0].Signature[len(sd.Signers[0].Signature)-3] ^= 1
			return sd, VerifyOptions{}
		}, ReasonSignatureInvalid},
		{"detached without content", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key}, &Options{Detached: true}), VerifyOptions{}
		}, ReasonContentMissing},
		// An attached message signs its own content: verified "against"
		// other bytes it would say nothing about them (a signature moved
		// onto another document), so the caller's bytes are refused.
		{"attached, other content given", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key}, nil), VerifyOptions{Content: []byte("another document")}
		}, ReasonContentAttached},
		{"attached, its own content given", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key}, nil), VerifyOptions{Content: content}
		}, ReasonContentAttached},
		{"attached, a digest given", func() (*SignedData, VerifyOptions) {
			return sign(&Signer{Certificate: sm.cert, Key: sm.key}, nil), VerifyOptions{Digest: SM3.Sum([]byte("another document"))}
		}, ReasonContentAttached},
		{"attached empty content, content given", func() (*SignedData, VerifyOptions) {
			der, err := Sign(nil, []*Signer{{Certificate: sm.cert, Key: sm.key}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := Parse(der, nil)
			if err != nil || sd.Detached {
				t.Fatalf("attached empty content: detached %v, %v", sd != nil && sd.Detached, err)
			}
			return sd, VerifyOptions{Content: []byte("another document")}
		}, ReasonContentAttached},
		{"content type swapped", func() (*SignedData, VerifyOptions) {
			sd := sign(&Signer{Certificate: sm.cert, Key: sm.key}, nil)
			sd.ContentType = OIDDataGM
			return sd, VerifyOptions{}
		}, ReasonContentType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sd, vo := tc.sd()
			_, err := sd.Verify(0, vo)
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestBothSM2SignatureOIDs(t *testing.T) {
	sm := pki(t)["sm2"]
	for _, oid := range []asn1.ObjectIdentifier{OIDSM2Sign, OIDSM2WithSM3} {
		t.Run(oid.String(), func(t *testing.T) {
			der, err := Sign([]byte("oid"), []*Signer{{Certificate: sm.cert, Key: sm.key, SM2OID: oid}}, &Options{Family: GMT0010})
			if err != nil {
				t.Fatal(err)
			}
			sd, err := Parse(der, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sd.Signers[0].SignatureAlgorithm.Equal(oid) {
				t.Fatalf("wrote %s", sd.Signers[0].SignatureAlgorithm)
			}
			if _, err := sd.Verify(0, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("custom user ID", func(t *testing.T) {
		uid := []byte("ALICE123@YAHOO.COM")
		der, err := Sign([]byte("uid"), []*Signer{{Certificate: sm.cert, Key: sm.key, UID: uid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := Parse(der, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sd.Verify(0, VerifyOptions{UID: uid}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMultipleSignersAndCounterSignature(t *testing.T) {
	ps := pki(t)
	content := []byte("two signers and a counter-signer")
	sd, err := New(content, []*Signer{
		{Certificate: ps["sm2"].cert, Key: ps["sm2"].key, SigningTime: time.Now()},
		{Certificate: ps["p256"].cert, Key: ps["p256"].key},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := CounterSign(sd.Signers[0], &Signer{Certificate: ps["rsa"].cert, Key: ps["rsa"].key, SigningTime: time.Now()}, sd.Family); err != nil {
		t.Fatal(err)
	}
	sd.AddCertificate(ps["rsa"].cert)
	der, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(der, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Signers) != 2 || len(got.Signers[0].CounterSigners) != 1 {
		t.Fatalf("%d signers, %d counter-signers", len(got.Signers), len(got.Signers[0].CounterSigners))
	}
	for i := range got.Signers {
		if _, err := got.Verify(i, VerifyOptions{}); err != nil {
			t.Errorf("signer %d: %v", i, err)
		}
	}
	c, err := got.VerifyCounterSignature(got.Signers[0], 0, VerifyOptions{})
	if err != nil || !c.Equal(ps["rsa"].cert) {
		t.Fatalf("counter-signature: %v", err)
	}
	// The counter-signature covers the signature value: another one fails.
	got.Signers[0].Signature = got.Signers[1].Signature
	if _, err := got.VerifyCounterSignature(got.Signers[0], 0, VerifyOptions{}); ReasonOf(err) != ReasonContentAltered {
		t.Fatalf("counter-signature over another signature: %v", err)
	}
}

func TestLimits(t *testing.T) {
	ps := pki(t)
	p := ps["p256"]
	sd, err := New([]byte("limits"), []*Signer{{Certificate: p.cert, Key: p.key}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 70; i++ {
		c := issue(t, fmt.Sprintf("bag %d", i), p.key, p.root, ps["p256"].rootKey, false, p.cert.NotBefore, p.cert.NotAfter)
		sd.AddCertificate(c)
	}
	der, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(der, nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("70 certificates: %v, want ErrLimit", err)
	}
	if _, err := Parse(der, &Limits{MaxCertificates: 100}); err != nil {
		t.Fatalf("with a higher limit: %v", err)
	}
	if _, err := Parse(der, &Limits{MaxBytes: 1000}); !errors.Is(err, ErrLimit) {
		t.Fatalf("size: %v", err)
	}
	// Trailing data and BER indefinite lengths are refused.
	if _, err := Parse(append(der, 0), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
	ber := append([]byte{0x30, 0x80}, der[4:]...)
	if _, err := Parse(append(ber, 0, 0), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("indefinite length: %v", err)
	}
}

func TestLongTermValidationData(t *testing.T) {
	ps := pki(t)
	p := ps["sm2"]
	content := []byte("ltv")
	sd, err := New(content, []*Signer{{Certificate: p.cert, Key: p.key}}, &Options{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	sd.AddCertificate(p.root)
	sd.AddCRL([]byte{0x30, 0x03, 0x02, 0x01, 0x01})         // opaque to the codec
	sd.AddOCSP([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})        // opaque to the codec
	sd.Signers[0].AddSignatureTimeStamp([]byte{0x30, 0x00}) // opaque to the codec
	imprint, err := sd.ArchiveImprint(0, SM3, content)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddArchiveTimeStamp(0, []byte{0x30, 0x00}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(der, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Revocation) != 2 || got.Revocation[0].CRL == nil || got.Revocation[1].OCSP == nil {
		t.Fatalf("revocation data: %+v", got.Revocation)
	}
	if len(got.Signers[0].SignatureTimeStamps()) != 1 || len(got.Signers[0].ArchiveTimeStamps()) != 1 {
		t.Fatal("time-stamp attributes lost")
	}
	again, err := got.ArchiveImprint(0, SM3, content)
	if err != nil || !bytes.Equal(again, imprint) {
		t.Fatal("archive imprint differs after a round trip (it must ignore archive time-stamps)")
	}
	got.AddCRL([]byte{0x30, 0x03, 0x02, 0x01, 0x02})
	if third, _ := got.ArchiveImprint(0, SM3, content); bytes.Equal(third, imprint) {
		t.Fatal("archive imprint does not cover the revocation data")
	}
	if _, err := got.Verify(0, VerifyOptions{Content: content}); err != nil {
		t.Fatalf("unsigned additions broke the signature: %v", err)
	}
}
