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
// (cmd/govtrust-p11, libgovtrust-p11.so; make test builds it and sets
// GTTEST_P11_MODULE). The test initialises a fresh token of its own in a
// temporary directory through the module's C_InitToken and C_InitPIN.
func TestNativeSM2(t *testing.T) {
	module := testenv.Env(t, "GTTEST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so")
	t.Setenv("GOVTRUST_P11_CONF", "")
	os.Unsetenv("GOVTRUST_P11_CONF")
	t.Setenv("GOVTRUST_P11_DIR", t.TempDir())
	initSoftToken(t, module, "govtrust", "87654321", "1234")
	cfg := Config{Module: module, Token: "govtrust", PIN: "1234", Vendor: "tass"}
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
		if _, ok := d.(crypto.Signer); ok {
			t.Errorf("the Decrypter of an SM2 decryption key is a crypto.Signer (%T)", d)
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

// initSoftToken initialises the govtrust-p11 token in $GOVTRUST_P11_DIR as
// any PKCS#11 client would: C_InitToken with the SO PIN, then C_InitPIN.
func initSoftToken(t *testing.T, module, label, soPIN, pin string) {
	t.Helper()
	ctx := p11.New(module)
	if ctx == nil {
		t.Fatalf("cannot load %s", module)
	}
	if err := ctx.Initialize(); err != nil {
		t.Fatalf("C_Initialize: %v", err)
	}
	defer ctx.Finalize()
	slots, err := ctx.GetSlotList(false)
	if err != nil || len(slots) == 0 {
		t.Fatalf("slots: %v %v", slots, err)
	}
	if err := ctx.InitToken(slots[0], soPIN, label); err != nil {
		t.Fatalf("C_InitToken: %v", err)
	}
	h, err := ctx.OpenSession(slots[0], p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.CloseSession(h)
	if err := ctx.Login(h, p11.CKU_SO, soPIN); err != nil {
		t.Fatalf("SO login: %v", err)
	}
	if err := ctx.InitPIN(h, pin); err != nil {
		t.Fatalf("C_InitPIN: %v", err)
	}
	if err := ctx.Logout(h); err != nil {
		t.Fatal(err)
	}
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
