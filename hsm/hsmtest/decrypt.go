package hsmtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // registers crypto.SHA1 for OAEP on tokens that offer only it
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
)

// encryptor makes a ciphertext for a public key.
type encryptor struct {
	name    string
	encrypt func(pub crypto.PublicKey, pt []byte) ([]byte, error)
}

// sm2Encryptors are the SM2 encryptions (GB/T 32918.4) whose ciphertexts
// every SM2 decryption key must take: gmsm and tjfoc/gmsm, each in the ASN.1
// form of GM/T 0009 §7.2 and in the C1||C3||C2 form.
var sm2Encryptors = []encryptor{
	{"gmsm asn1", func(pub crypto.PublicKey, pt []byte) ([]byte, error) {
		return sm2.EncryptASN1(rand.Reader, pub.(*ecdsa.PublicKey), pt)
	}},
	{"gmsm c1c3c2", func(pub crypto.PublicKey, pt []byte) ([]byte, error) {
		return sm2.Encrypt(rand.Reader, pub.(*ecdsa.PublicKey), pt, nil)
	}},
	{"tjfoc/gmsm asn1", func(pub crypto.PublicKey, pt []byte) ([]byte, error) {
		k, err := tjfocPublic(pub.(*ecdsa.PublicKey))
		if err != nil {
			return nil, err
		}
		return tjsm2.EncryptAsn1(k, pt, rand.Reader)
	}},
	{"tjfoc/gmsm c1c3c2", func(pub crypto.PublicKey, pt []byte) ([]byte, error) {
		k, err := tjfocPublic(pub.(*ecdsa.PublicKey))
		if err != nil {
			return nil, err
		}
		return tjsm2.Encrypt(k, pt, rand.Reader, tjsm2.C1C3C2)
	}},
}

// testDecrypt creates a decryption key of alg and decrypts with it.
func (s *suite) testDecrypt(t *testing.T, alg hsm.Algorithm) {
	info := s.create(t, "dec-"+string(alg), alg, hsm.UsageDecrypt, serviceDecrypt)
	s.checkPublicKey(t, info)
	d := s.decrypter(t, info.URI, serviceDecrypt)
	if !equalPublic(info.Public, d.Public()) {
		t.Fatal("Decrypter.Public differs from KeyInfo.Public")
	}
	decrypt := func(t *testing.T, what string, ct, want []byte, opts crypto.DecrypterOpts) {
		t.Helper()
		got, err := d.Decrypt(rand.Reader, ct, opts)
		if err != nil {
			t.Errorf("%s: Decrypt: %v", what, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s: Decrypt returned other bytes than were encrypted", what)
		}
	}
	switch alg {
	case hsm.SM2:
		for _, e := range sm2Encryptors {
			t.Run(e.name, func(t *testing.T) {
				// No 1-byte plaintext: gmsm v0.44.1 makes an undecryptable
				// ciphertext when its KDF output is all zero (probability
				// 2^-8n), because the retry multiplies the public point
				// it overwrote (internal/sm2/sm2_pke.go, Encrypt).
				for _, n := range []int{16, 32, 255, 1000} {
					pt := randomMessage(n)
					ct, err := e.encrypt(info.Public, pt)
					if err != nil {
						t.Fatalf("encrypt %d bytes: %v", n, err)
					}
					decrypt(t, fmt.Sprintf("%d bytes", n), ct, pt, nil)
				}
			})
		}
		t.Run("tampered", func(t *testing.T) {
			ct, err := sm2.EncryptASN1(rand.Reader, info.Public.(*ecdsa.PublicKey), randomMessage(32))
			if err != nil {
				t.Fatal(err)
			}
			ct[len(ct)-1] ^= 1 // last byte of C2: C3 no longer matches
			if _, err := d.Decrypt(rand.Reader, ct, nil); err == nil {
				t.Error("a tampered SM2 ciphertext decrypts")
			}
		})
		t.Run("openssl", func(t *testing.T) {
			pt := randomMessage(16)
			decrypt(t, "OpenSSL ciphertext", opensslEncrypt(t, info.Public, pt, 0), pt, nil)
		})
	case hsm.RSA2048, hsm.RSA3072:
		pub := info.Public.(*rsa.PublicKey)
		o := s.b.OAEP.options(nil)
		pt := randomMessage(32)
		ct, err := rsa.EncryptOAEP(o.Hash.New(), rand.Reader, pub, pt, nil)
		if err != nil {
			t.Fatal(err)
		}
		decrypt(t, fmt.Sprintf("OAEP %v", o.Hash), ct, pt, o)
		tampered := bytes.Clone(ct)
		tampered[len(tampered)-1] ^= 1
		if _, err := d.Decrypt(rand.Reader, tampered, o); err == nil {
			t.Error("a tampered OAEP ciphertext decrypts")
		}
		label := []byte("govtrust label")
		ct, err = rsa.EncryptOAEP(o.Hash.New(), rand.Reader, pub, pt, label)
		if err != nil {
			t.Fatal(err)
		}
		if s.b.OAEP.NoLabel {
			if _, err := d.Decrypt(rand.Reader, ct, s.b.OAEP.options(label)); err == nil {
				t.Error("OAEP with a label decrypts on a backend said to refuse labels")
			}
		} else {
			decrypt(t, fmt.Sprintf("OAEP %v with a label", o.Hash), ct, pt, s.b.OAEP.options(label))
		}
		if _, err := d.Decrypt(rand.Reader, ct, o); err == nil {
			t.Error("OAEP ciphertext with a label decrypts without it")
		}
		// PKCS#1 v1.5 decryption is refused (Bleichenbacher padding oracle),
		// which is why the test uses the deprecated API to ask for it.
		//lint:ignore SA1019 the backend must refuse what this makes
		v15, err := rsa.EncryptPKCS1v15(rand.Reader, pub, pt)
		if err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 the backend must refuse this request
		v15opts := &rsa.PKCS1v15DecryptOptions{}
		if _, err := d.Decrypt(rand.Reader, v15, v15opts); !errors.Is(err, hsm.ErrUnsupported) {
			t.Errorf("PKCS#1 v1.5 decryption: %v, want ErrUnsupported", err)
		}
		t.Run("openssl", func(t *testing.T) {
			pt := randomMessage(32)
			decrypt(t, "OpenSSL OAEP ciphertext", opensslEncrypt(t, info.Public, pt, o.Hash), pt, o)
		})
	default:
		t.Fatalf("hsmtest does not know how to encrypt for %s", alg)
	}
}

// opensslEncrypt encrypts pt for pub with OpenSSL: SM2 (ASN.1 ciphertext) or
// RSA-OAEP with h for OAEP and MGF1.
func opensslEncrypt(t *testing.T, pub crypto.PublicKey, pt []byte, h crypto.Hash) []byte {
	t.Helper()
	openssl := testenv.LookPath(t, "openssl")
	dir := t.TempDir()
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pub.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pt"), pt, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "pt", "-out", "ct"}
	if _, ok := pub.(*rsa.PublicKey); ok {
		md := strings.ToLower(strings.ReplaceAll(h.String(), "-", "")) // "SHA-256" -> "sha256"
		args = append(args, "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md)
	}
	cmd := exec.CommandContext(t.Context(), openssl, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	ct, err := os.ReadFile(filepath.Join(dir, "ct"))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// decryptOnce encrypts a random secret to the key and decrypts it.
func (s *suite) decryptOnce(ctx context.Context, info *hsm.KeyInfo) error {
	d, ok := s.manager().(hsm.Decrypter)
	if !ok {
		return fmt.Errorf("%T does not implement hsm.Decrypter", s.manager())
	}
	dec, err := d.Decrypter(ctx, &hsm.DecrypterRequest{URI: info.URI, Service: info.Service})
	if err != nil {
		return err
	}
	pt := randomMessage(32)
	var (
		ct   []byte
		opts crypto.DecrypterOpts
	)
	switch k := info.Public.(type) {
	case *rsa.PublicKey:
		o := s.b.OAEP.options(nil)
		ct, err = rsa.EncryptOAEP(o.Hash.New(), rand.Reader, k, pt, nil)
		opts = o
	case *ecdsa.PublicKey:
		ct, err = sm2.EncryptASN1(rand.Reader, k, pt)
	default:
		err = fmt.Errorf("cannot encrypt to %T", k)
	}
	if err != nil {
		return err
	}
	got, err := dec.Decrypt(rand.Reader, ct, opts)
	if err != nil {
		return fmt.Errorf("%s: Decrypt: %w", info.URI, err)
	}
	if !bytes.Equal(got, pt) {
		return fmt.Errorf("%s: Decrypt returned other bytes than were encrypted", info.URI)
	}
	return nil
}
