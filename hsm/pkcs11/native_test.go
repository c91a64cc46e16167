//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
	p11 "github.com/miekg/pkcs11"
)

// TestNativeSM2 runs the vendor-SM2 path against a token that offers SM2
// with the "tass" mechanism table: the govtrust-p11 software token
// (cmd/govtrust-p11, libgovtrust-p11.so). It needs
//
//	GOVTRUST_P11_MODULE  path of the module (required)
//	GOVTRUST_P11_TOKEN   label of an initialised token (default "govtrust")
//	GOVTRUST_P11_PIN     its user PIN (default "1234")
func TestNativeSM2(t *testing.T) {
	module := testenv.Env(t, "GOVTRUST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so")
	cfg := Config{Module: module, Token: envOr("GOVTRUST_P11_TOKEN", "govtrust"), PIN: envOr("GOVTRUST_P11_PIN", "1234"), Vendor: "tass"}
	km := open(t, cfg)
	ctx := context.Background()
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	name := func(s string) string { return s + "-" + hex.EncodeToString(suffix) }
	cleanup := func(info *hsm.KeyInfo) {
		t.Cleanup(func() {
			if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: info.URI, Service: info.Service}); err != nil {
				t.Errorf("DeleteKey %s: %v", info.Label, err)
			}
		})
	}

	t.Run("sign", func(t *testing.T) {
		info := create(t, km, name("sm2-sign"), hsm.SM2, hsm.UsageSign, "seal")
		cleanup(info)
		if info.Location != hsm.LocationHardware {
			t.Errorf("location %q, want hardware", info.Location)
		}
		pub := info.Public.(*ecdsa.PublicKey)
		if !sm2.IsSM2PublicKey(pub) {
			t.Fatal("public key not on the SM2 curve")
		}
		s := signer(t, km, info.URI, "seal")
		msg := []byte("signed inside the token")
		uid := []byte("ALICE123@YAHOO.COM")
		for _, tt := range []struct {
			name string
			in   func() []byte
			opts crypto.SignerOpts
			uid  []byte
		}{
			{"default uid", func() []byte { return msg }, sm2.DefaultSM2SignerOpts, hsm.DefaultSM2UID},
			{"custom uid", func() []byte { return msg }, sm2.NewSM2SignerOption(true, uid), uid},
			{"precomputed e", func() []byte {
				e, err := sm2.CalculateSM2Hash(pub, msg, hsm.DefaultSM2UID)
				if err != nil {
					t.Fatal(err)
				}
				return e
			}, crypto.Hash(0), hsm.DefaultSM2UID},
		} {
			t.Run(tt.name, func(t *testing.T) {
				sig, err := s.Sign(rand.Reader, tt.in(), tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				verifySM2(t, pub, tt.uid, msg, sig)
			})
		}
		// The private key stays in the token.
		err := km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
			obj, err := km.object(h, gen, p11.CKO_PRIVATE_KEY, mustID(t, info.URI))
			if err != nil {
				return err
			}
			attrs, err := km.mod.ctx.GetAttributeValue(h, obj, []*p11.Attribute{
				p11.NewAttribute(p11.CKA_SENSITIVE, nil), p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
			})
			if err != nil {
				return err
			}
			if !bytes.Equal(attrs[0].Value, []byte{1}) || !bytes.Equal(attrs[1].Value, []byte{0}) {
				t.Errorf("sensitive %x extractable %x", attrs[0].Value, attrs[1].Value)
			}
			if _, err := km.mod.ctx.GetAttributeValue(h, obj, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)}); err == nil {
				t.Error("CKA_VALUE of the SM2 private key is readable")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("decrypt", func(t *testing.T) {
		info := create(t, km, name("sm2-enc"), hsm.SM2, hsm.UsageDecrypt, "kmc")
		cleanup(info)
		d, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: info.URI, Service: "kmc"})
		if err != nil {
			t.Fatal(err)
		}
		secret := []byte("session key material")
		plain, err := sm2.Encrypt(rand.Reader, info.Public.(*ecdsa.PublicKey), secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		asn, err := sm2.EncryptASN1(rand.Reader, info.Public.(*ecdsa.PublicKey), secret)
		if err != nil {
			t.Fatal(err)
		}
		for name, ct := range map[string][]byte{"c1c3c2": plain, "asn1": asn} {
			got, err := d.Decrypt(rand.Reader, ct, nil)
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("%s: Decrypt = %q, %v", name, got, err)
			}
		}
		if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "kmc"}); !errors.Is(err, hsm.ErrKeySeparation) {
			t.Errorf("Signer on a decryption key: %v", err)
		}
	})
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestVendorPlumbing drives the vendor-SM2 code path on SoftHSM2 with a
// pseudo vendor table whose "raw sign" is CKM_ECDSA on the SM2 curve (SoftHSM2
// accepts that curve for EC keys, INTEROP.md §3). The signature is ECDSA, not
// SM2, so it is checked with C_Verify on the token: what the test establishes
// is the plumbing around the vendor mechanism (key generation template on the
// SM2 curve, CKA_EC_POINT decoding, e = SM3(Z||M) computed in Go and sent
// alone, r||s converted to DER, key reported as hardware), not SM2 itself.
func TestVendorPlumbing(t *testing.T) {
	tk := newToken(t, "vendor")
	cfg := tk.config()
	cfg.VendorTable = &Vendor{Name: "plumbing", KeyType: p11.CKK_EC, KeyGen: p11.CKM_EC_KEY_PAIR_GEN, SignRaw: p11.CKM_ECDSA}
	km := open(t, cfg)
	ctx := context.Background()
	info := create(t, km, "sm2-curve", hsm.SM2, hsm.UsageSign, "seal")
	if info.Location != hsm.LocationHardware {
		t.Errorf("location %q", info.Location)
	}
	pub := info.Public.(*ecdsa.PublicKey)
	if !sm2.IsSM2PublicKey(pub) {
		t.Fatal("public key not on the SM2 curve")
	}
	msg := []byte("plumbing")
	uid := []byte("ALICE123@YAHOO.COM")
	sig, err := signer(t, km, info.URI, "seal").Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, uid))
	if err != nil {
		t.Fatal(err)
	}
	r, s := sm2Sig(t, sig)
	raw := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	e, err := sm2.CalculateSM2Hash(pub, msg, uid)
	if err != nil {
		t.Fatal(err)
	}
	err = km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		obj, err := km.object(h, gen, p11.CKO_PUBLIC_KEY, mustID(t, info.URI))
		if err != nil {
			return err
		}
		if err := km.mod.ctx.VerifyInit(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, obj); err != nil {
			return err
		}
		return km.mod.ctx.Verify(h, e, raw)
	})
	if err != nil {
		t.Errorf("token does not verify the signature over e: %v", err)
	}
	// A key made with another vendor table is refused, not misused.
	km.vendor = &Vendor{Name: "other", KeyType: 1, KeyGen: 1, SignRaw: 1}
	if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "seal"}); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("Signer with another vendor table: %v", err)
	}
}
