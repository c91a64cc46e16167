package cms

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	ps := pki(t)
	content := bytes.Repeat([]byte("机密 envelope "), 100)
	all := []*smx509.Certificate{ps["sm2"].cert, ps["p256"].cert, ps["p384"].cert, ps["rsa"].cert}
	for _, fam := range []Family{RFC5652, GMT0010} {
		recips := all
		if fam == GMT0010 {
			recips = []*smx509.Certificate{ps["sm2"].cert, ps["rsa"].cert}
		}
		der, err := Encrypt(content, recips, &EnvelopeOptions{Family: fam})
		if err != nil {
			t.Fatal(err)
		}
		env, err := ParseEnvelope(der, nil)
		if err != nil {
			t.Fatal(err)
		}
		if env.Family != fam || len(env.Recipients) != len(recips) {
			t.Fatalf("family %v, %d recipients", env.Family, len(env.Recipients))
		}
		for _, r := range recips {
			t.Run(fmt.Sprintf("%s/%s", fam, r.Subject.CommonName), func(t *testing.T) {
				var key crypto.PrivateKey
				for _, p := range ps {
					if p.cert.Equal(r) {
						key = p.key
					}
				}
				got, err := env.Decrypt(r, key)
				if err != nil || !bytes.Equal(got, content) {
					t.Fatalf("decrypt: %v", err)
				}
				if _, err := env.Decrypt(r, ps["p256"].key); r != ps["p256"].cert && err == nil {
					t.Fatal("another key decrypts")
				}
			})
		}
		if _, err := env.Decrypt(ps["sm2"].root, ps["sm2"].rootKey); !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("non-recipient: %v", err)
		}
	}
	// gmsm's pkcs7 opens our SM2 and RSA envelopes of both families.
	for _, fam := range []Family{RFC5652, GMT0010} {
		der, err := Encrypt(content, []*smx509.Certificate{ps["sm2"].cert}, &EnvelopeOptions{Family: fam})
		if err != nil {
			t.Fatal(err)
		}
		p7, err := pkcs7.Parse(der)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p7.Decrypt(ps["sm2"].cert, ps["sm2"].key); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("gmsm decrypt %v: %v", fam, err)
		}
	}
	// And we open gmsm's.
	der, err := pkcs7.EncryptSM(pkcs.SM4CBC, content, []*smx509.Certificate{ps["sm2"].cert})
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnvelope(der, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := env.Decrypt(ps["sm2"].cert, ps["sm2"].key); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("gmsm EncryptSM: %v", err)
	}
}

// TestOpenSSLDecryptsOurs: EnvelopedData made here with RFC OIDs decrypts
// with `openssl cms -decrypt` for SM2, ECDH (P-256, P-384) and RSA
// recipients (issue 9 acceptance).
func TestOpenSSLDecryptsOurs(t *testing.T) {
	ossl := openssl(t)
	ps := pki(t)
	content := []byte("openssl opens this envelope\n")
	for _, alg := range []string{"sm2", "p256", "p384", "rsa"} {
		t.Run(alg, func(t *testing.T) {
			p := ps[alg]
			der, err := Encrypt(content, []*smx509.Certificate{p.cert}, nil)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			if o, err := run(t, ossl, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", writeFile(t, "env.der", der), "-recip", p.certPEM, "-inkey", p.keyPEM, "-out", out); err != nil {
				t.Fatalf("openssl cms -decrypt: %v\n%s", err, o)
			}
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, content) {
				t.Fatalf("openssl decrypted %q", got)
			}
		})
	}
}

// TestOpenSSLEnvelopesOpenHere: `openssl cms -encrypt` to ECDH and RSA
// recipients opens here (an independent check of the key agreement).
func TestOpenSSLEnvelopesOpenHere(t *testing.T) {
	ossl := openssl(t)
	ps := pki(t)
	content := []byte("openssl made this envelope\n")
	for _, alg := range []string{"p256", "p384", "rsa"} {
		for _, cipher := range []string{"-aes256", "-aes128"} {
			t.Run(alg+cipher, func(t *testing.T) {
				p := ps[alg]
				out := filepath.Join(t.TempDir(), "env.der")
				if o, err := run(t, ossl, "cms", "-encrypt", "-binary", cipher, "-in", writeFile(t, "m", content), "-outform", "DER", "-out", out, p.certPEM); err != nil {
					t.Fatalf("openssl cms -encrypt: %v\n%s", err, o)
				}
				der, _ := os.ReadFile(out)
				env, err := ParseEnvelope(der, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := env.Decrypt(p.cert, p.key)
				if err != nil || !bytes.Equal(got, content) {
					t.Fatalf("decrypt: %v", err)
				}
			})
		}
	}
}

func TestSealOpen(t *testing.T) {
	ps := pki(t)
	s, r := ps["sm2"], ps["sm2"]
	content := []byte("GM/T 0010 signedAndEnvelopedData")
	der, err := Seal(content, s.cert, s.key, []*smx509.Certificate{s.root}, []*smx509.Certificate{r.cert})
	if err != nil {
		t.Fatal(err)
	}
	ct, _, err := ParseContentInfo(der)
	if err != nil || !ct.Equal(OIDSignedAndEnvelopedDataGM) {
		t.Fatalf("content type %v: %v", ct, err)
	}
	got, signer, err := Open(der, r.cert, r.key, nil)
	if err != nil || !bytes.Equal(got, content) || !signer.Equal(s.cert) {
		t.Fatalf("open: %v", err)
	}
	if _, _, err := Open(der, s.root, s.rootKey, nil); err == nil {
		t.Fatal("a non-recipient opens it")
	}
	if _, _, err := Open(append(der, 0), r.cert, r.key, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing data: %v", err)
	}
}

func TestKeyWrapVector(t *testing.T) {
	// RFC 3394 §4.1: 128-bit key data with a 128-bit KEK.
	kek := []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F}
	key := []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF}
	want := []byte{0x1F, 0xA6, 0x8B, 0x0A, 0x81, 0x12, 0xB4, 0x47, 0xAE, 0xF3, 0x4B, 0xD8, 0xFB, 0x5A, 0x7B, 0x82, 0x9D, 0x3E, 0x86, 0x23, 0x71, 0xD2, 0xCF, 0xE5}
	got, err := aesWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("wrap = %x, %v", got, err)
	}
	back, err := aesUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("unwrap = %x, %v", back, err)
	}
	got[3] ^= 1
	if _, err := aesUnwrap(kek, got); err == nil {
		t.Fatal("altered wrap unwraps")
	}
}
