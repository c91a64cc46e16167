package soft

import (
	"bytes"
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjsm4 "github.com/tjfoc/gmsm/sm4"

	"github.com/govtrust/govtrust/hsm"
)

func create(t *testing.T, km *KeyManager, uri string, alg hsm.Algorithm, usage hsm.Usage, service string) *hsm.KeyInfo {
	t.Helper()
	info, err := km.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: uri, Algorithm: alg, Usage: usage, Service: service})
	if err != nil {
		t.Fatalf("create %s %s: %v", uri, alg, err)
	}
	return info
}

func getSigner(t *testing.T, km *KeyManager, uri, service string) crypto.Signer {
	t.Helper()
	s, err := km.Signer(context.Background(), &hsm.SignerRequest{URI: uri, Service: service})
	if err != nil {
		t.Fatalf("signer %s: %v", uri, err)
	}
	return s
}

func tjfocPub(t *testing.T, pub crypto.PublicKey) *tjsm2.PublicKey {
	t.Helper()
	p, ok := pub.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(p) {
		t.Fatalf("not an SM2 public key: %T", pub)
	}
	//lint:ignore SA1019 tjfoc/gmsm takes the coordinates as big.Int
	return &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: p.X, Y: p.Y}
}

func randomMessage(t *testing.T) []byte {
	var n [1]byte
	rand.Read(n[:])
	m := make([]byte, 1+int(n[0])*3) // gmsm refuses to sign an empty message
	rand.Read(m)
	return m
}

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	for _, alg := range hsm.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			uri := "soft:test/" + string(alg)
			info := create(t, km, uri, alg, hsm.UsageSign, "ca")
			if info.URI != uri || info.Backend != "soft" || info.Location != hsm.LocationSoftware || info.Algorithm != alg ||
				info.Usage != hsm.UsageSign || info.Service != "ca" || !info.Created.Equal(testNow) || info.Label != "test/"+string(alg) {
				t.Fatalf("key info %+v", info)
			}
			s := getSigner(t, km, uri, "ca")
			pub, err := km.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []crypto.PublicKey{s.Public(), info.Public} {
				if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(p) {
					t.Fatal("public keys differ between PublicKey, Signer and KeyInfo")
				}
			}
			switch alg {
			case hsm.SM2:
				verifySM2(t, s, 1000)
			case hsm.ECDSAP256:
				verifyECDSA(t, s, crypto.SHA256, 1000)
			case hsm.ECDSAP384:
				verifyECDSA(t, s, crypto.SHA384, 50)
			default:
				verifyRSA(t, s)
			}
		})
	}
}

func verifySM2(t *testing.T, s crypto.Signer, n int) {
	pub := s.Public().(*ecdsa.PublicKey)
	tj := tjfocPub(t, pub)
	for i := range n {
		msg := randomMessage(t)
		sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
		if err != nil {
			t.Fatal(err)
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatalf("message %d: gmsm rejects the signature", i)
		}
		if !tj.Verify(msg, sig) {
			t.Fatalf("message %d: tjfoc/gmsm rejects the signature", i)
		}
	}
	// Custom user ID, digest mode (opts without forceGMSign) and
	// crypto.SignMessage (MessageSigner) follow gmsm's contract.
	msg := []byte("govtrust")
	uid := []byte("alice@example.gov.cn")
	sig, err := s.Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, uid))
	if err != nil || !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) || sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
		t.Fatalf("custom uid: %v", err)
	}
	e, _ := sm2.CalculateSM2Hash(pub, msg, nil)
	for _, opts := range []crypto.SignerOpts{nil, crypto.Hash(0), sm2.NewSM2SignerOption(false, nil)} {
		sig, err = s.Sign(rand.Reader, e, opts)
		if err != nil || !sm2.VerifyASN1(pub, e, sig) || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatalf("digest mode with %T: %v", opts, err)
		}
	}
	for _, opts := range []crypto.SignerOpts{sm2.DefaultSM2SignerOpts, nil} {
		sig, err = crypto.SignMessage(s, rand.Reader, msg, opts)
		if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) || !tj.Verify(msg, sig) {
			t.Fatalf("crypto.SignMessage with %v: %v", opts, err)
		}
	}
	// The empty message (which gmsm itself refuses to sign).
	for _, sign := range []func([]byte, crypto.SignerOpts) ([]byte, error){
		func(m []byte, o crypto.SignerOpts) ([]byte, error) { return s.Sign(rand.Reader, m, o) },
		func(m []byte, o crypto.SignerOpts) ([]byte, error) { return crypto.SignMessage(s, rand.Reader, m, o) },
	} {
		sig, err = sign(nil, sm2.DefaultSM2SignerOpts)
		if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, nil, sig) || !tj.Verify(nil, sig) {
			t.Fatalf("empty message: %v", err)
		}
		sig, err = sign([]byte{}, sm2.NewSM2SignerOption(true, uid))
		if err != nil || !sm2.VerifyASN1WithSM2(pub, uid, nil, sig) {
			t.Fatalf("empty message, custom uid: %v", err)
		}
	}
	// crypto.SignMessage reads the user ID of the options even without
	// forceGMSign, as gmsm's own SignMessage does.
	sig, err = crypto.SignMessage(s, rand.Reader, nil, sm2.NewSM2SignerOption(false, uid))
	if err != nil || !sm2.VerifyASN1WithSM2(pub, uid, nil, sig) || sm2.VerifyASN1WithSM2(pub, nil, nil, sig) {
		t.Fatalf("empty message, custom uid, digest-form options: %v", err)
	}
	if _, err := s.Sign(rand.Reader, nil, nil); err == nil {
		t.Fatal("empty digest signed")
	}
	// hsm.SM2Digest is what PKCS#11 backends sign: it must agree.
	d, err := hsm.SM2Digest(pub, msg, sm2.DefaultSM2SignerOpts)
	if err != nil || !bytes.Equal(d, e) {
		t.Fatalf("hsm.SM2Digest disagrees: %v", err)
	}
}

func verifyECDSA(t *testing.T, s crypto.Signer, h crypto.Hash, n int) {
	pub := s.Public().(*ecdsa.PublicKey)
	for i := range n {
		msg := randomMessage(t)
		hh := h.New()
		hh.Write(msg)
		d := hh.Sum(nil)
		sig, err := s.Sign(rand.Reader, d, h)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pub, d, sig) {
			t.Fatalf("message %d: signature does not verify", i)
		}
		d[0] ^= 1
		if ecdsa.VerifyASN1(pub, d, sig) {
			t.Fatalf("message %d: signature verifies for another digest", i)
		}
	}
}

func verifyRSA(t *testing.T, s crypto.Signer) {
	pub := s.Public().(*rsa.PublicKey)
	d := sha256.Sum256([]byte("govtrust"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) != nil {
		t.Fatalf("PKCS#1 v1.5: %v", err)
	}
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	sig, err = s.Sign(rand.Reader, d[:], pss)
	if err != nil || rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, pss) != nil {
		t.Fatalf("PSS: %v", err)
	}
	d5 := sha512.Sum384([]byte("govtrust"))
	sig, err = s.Sign(rand.Reader, d5[:], crypto.SHA384)
	if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA384, d5[:], sig) != nil {
		t.Fatalf("PKCS#1 v1.5 SHA-384: %v", err)
	}
}

func TestDecrypt(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	msg := []byte("a content-encryption key 0123456")

	t.Run("sm2", func(t *testing.T) {
		info := create(t, km, "soft:kmc/enc", hsm.SM2, hsm.UsageDecrypt, "kmc")
		d, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: info.URI, Service: "kmc"})
		if err != nil {
			t.Fatal(err)
		}
		pub := d.Public().(*ecdsa.PublicKey)
		asn1CT, _ := sm2.EncryptASN1(rand.Reader, pub, msg)
		plainCT, _ := sm2.Encrypt(rand.Reader, pub, msg, nil)
		legacyCT, _ := sm2.Encrypt(rand.Reader, pub, msg, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C2C3))
		tjCT, err := tjsm2.Encrypt(tjfocPub(t, pub), msg, rand.Reader, tjsm2.C1C3C2)
		if err != nil {
			t.Fatal(err)
		}
		tjASN1, err := tjsm2.EncryptAsn1(tjfocPub(t, pub), msg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			ct   []byte
			opts crypto.DecrypterOpts
		}{
			{"gmsm asn1", asn1CT, nil},
			{"gmsm c1c3c2", plainCT, nil},
			{"gmsm c1c2c3", legacyCT, sm2.NewPlainDecrypterOpts(sm2.C1C2C3)},
			{"tjfoc c1c3c2", tjCT, nil},
			{"tjfoc asn1", tjASN1, nil},
		} {
			got, err := d.Decrypt(rand.Reader, tc.ct, tc.opts)
			if err != nil || !bytes.Equal(got, msg) {
				t.Errorf("%s: %v", tc.name, err)
			}
		}
		bad := bytes.Clone(asn1CT)
		bad[len(bad)-1] ^= 1
		if _, err := d.Decrypt(rand.Reader, bad, nil); err == nil {
			t.Error("altered ciphertext decrypted")
		}
	})
	t.Run("rsa", func(t *testing.T) {
		info := create(t, km, "soft:kmc/rsa", hsm.RSA2048, hsm.UsageDecrypt, "kmc")
		d, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: info.URI, Service: "kmc"})
		if err != nil {
			t.Fatal(err)
		}
		pub := d.Public().(*rsa.PublicKey)
		ct256, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
		got, err := d.Decrypt(rand.Reader, ct256, nil)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("OAEP SHA-256, nil opts: %v", err)
		}
		label := []byte("label")
		ct512, _ := rsa.EncryptOAEP(sha512.New(), rand.Reader, pub, msg, label)
		got, err = d.Decrypt(rand.Reader, ct512, &rsa.OAEPOptions{Hash: crypto.SHA512, Label: label})
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("OAEP SHA-512 with label: %v", err)
		}
		//lint:ignore SA1019 checking that PKCS#1 v1.5 decryption is refused
		ctV15, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
		//lint:ignore SA1019 checking that PKCS#1 v1.5 decryption is refused
		if _, err := d.Decrypt(rand.Reader, ctV15, &rsa.PKCS1v15DecryptOptions{}); !errors.Is(err, hsm.ErrUnsupported) {
			t.Errorf("PKCS#1 v1.5 decryption: %v", err)
		}
	})
}

func TestWrap(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	secret := []byte("data key: 32 bytes of randomness")
	aad := []byte("kms|tenant=finance|key=payroll|v=3")
	for _, alg := range []hsm.Algorithm{hsm.SM4, hsm.AES256} {
		t.Run(string(alg), func(t *testing.T) {
			uri := "soft:kms/kek-" + string(alg)
			info := create(t, km, uri, alg, hsm.UsageWrap, "kms")
			if info.Public != nil {
				t.Error("symmetric key has a public key")
			}
			if _, err := km.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri}); !errors.Is(err, hsm.ErrUnsupported) {
				t.Errorf("PublicKey of a symmetric key: %v", err)
			}
			w, err := km.Wrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: secret, AAD: aad})
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != 1+12+len(secret)+16 || w[0] != 1 || bytes.Contains(w, secret) {
				t.Fatalf("wrapped form: %d bytes, version %d", len(w), w[0])
			}
			w2, _ := km.Wrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: secret, AAD: aad})
			if bytes.Equal(w, w2) {
				t.Error("two wraps are equal: nonce reused")
			}
			got, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: w, AAD: aad})
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("unwrap: %v", err)
			}
			if alg == hsm.SM4 {
				// An independent SM4 (tjfoc/gmsm) in GCM opens it with the raw key.
				p, err := tjfocGCM(t, km.cache[uri].key.([]byte)).Open(nil, w[1:13], w[13:], aad)
				if err != nil || !bytes.Equal(p, secret) {
					t.Errorf("tjfoc SM4 in GCM disagrees with the wrapped form: %v", err)
				}
			}
			for i := range w {
				bad := bytes.Clone(w)
				bad[i] ^= 0x80
				if _, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: bad, AAD: aad}); !errors.Is(err, ErrUnwrap) {
					t.Fatalf("byte %d altered: %v", i, err)
				}
			}
			for _, badAAD := range [][]byte{nil, []byte("kms|tenant=finance|key=payroll|v=4"), append(bytes.Clone(aad), 0)} {
				if _, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: w, AAD: badAAD}); !errors.Is(err, ErrUnwrap) {
					t.Fatalf("wrong AAD %q: %v", badAAD, err)
				}
			}
			if _, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: w[:20], AAD: aad}); !errors.Is(err, ErrUnwrap) {
				t.Errorf("truncated: %v", err)
			}
			if _, err := km.Wrap(ctx, &hsm.WrapRequest{URI: uri, Service: "kms", Data: make([]byte, MaxWrapLen+1)}); err == nil {
				t.Error("oversized secret wrapped")
			}
		})
	}
	// One key's output does not open under the other key.
	w, _ := km.Wrap(ctx, &hsm.WrapRequest{URI: "soft:kms/kek-sm4", Service: "kms", Data: secret, AAD: aad})
	create(t, km, "soft:kms/kek-sm4-b", hsm.SM4, hsm.UsageWrap, "kms")
	if _, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: "soft:kms/kek-sm4-b", Service: "kms", Data: w, AAD: aad}); !errors.Is(err, ErrUnwrap) {
		t.Errorf("unwrap under another key: %v", err)
	}
}

func TestCreateValidation(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	create(t, km, "soft:ca/root-2026", hsm.SM2, hsm.UsageSign, "ca")
	long := "soft:" + strings.Repeat("a", 129)
	for _, tc := range []struct {
		req  hsm.CreateKeyRequest
		want error
	}{
		{hsm.CreateKeyRequest{URI: "soft:ca/root-2026", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrExists},
		{hsm.CreateKeyRequest{URI: "pkcs11:token=ca;object=x", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrBadURI},
		{hsm.CreateKeyRequest{URI: "soft:CA", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrBadURI},
		{hsm.CreateKeyRequest{URI: "soft:-x", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrBadURI},
		{hsm.CreateKeyRequest{URI: "soft:a|b", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrBadURI},
		{hsm.CreateKeyRequest{URI: long, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrBadURI},
		{hsm.CreateKeyRequest{URI: "soft", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrBadURI},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageDecrypt, Service: "ca"}, hsm.ErrUnsupported},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.SM4, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrUnsupported},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.SM2, Usage: hsm.UsageWrap, Service: "ca"}, hsm.ErrUnsupported},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.MLDSA65, Usage: hsm.UsageSign, Service: "ca"}, hsm.ErrUnsupported},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: "dsa", Usage: hsm.UsageSign, Service: "ca"}, nil},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: ""}, nil},
		{hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "c|a"}, nil},
	} {
		_, err := km.CreateKey(ctx, &tc.req)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.req, err, tc.want)
		}
	}
	if n, _ := km.st.CountKeys(ctx); n != 1 {
		t.Errorf("%d keys stored, want 1", n)
	}
}

func TestKeySeparation(t *testing.T) {
	ctx := context.Background()
	var aud auditLog
	km := newPassphraseKM(t, newMemStore(), Config{Audit: aud.fn})
	create(t, km, "soft:ca/root", hsm.SM2, hsm.UsageSign, "ca")
	create(t, km, "soft:tsa/enc", hsm.SM2, hsm.UsageDecrypt, "tsa")
	create(t, km, "soft:kms/kek", hsm.SM4, hsm.UsageWrap, "kms")

	for name, f := range map[string]func() error{
		"signer other service": func() error {
			_, err := km.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/root", Service: "tsa"})
			return err
		},
		"signer on decrypt key": func() error {
			_, err := km.Signer(ctx, &hsm.SignerRequest{URI: "soft:tsa/enc", Service: "tsa"})
			return err
		},
		"decrypter on sign key": func() error {
			_, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: "soft:ca/root", Service: "ca"})
			return err
		},
		"decrypter other service": func() error {
			_, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: "soft:tsa/enc", Service: "seal"})
			return err
		},
		"wrap other service": func() error {
			_, err := km.Wrap(ctx, &hsm.WrapRequest{URI: "soft:kms/kek", Service: "ca", Data: []byte("x")})
			return err
		},
		"wrap with sign key": func() error {
			_, err := km.Wrap(ctx, &hsm.WrapRequest{URI: "soft:ca/root", Service: "ca", Data: []byte("x")})
			return err
		},
		"unwrap other service": func() error {
			_, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: "soft:kms/kek", Service: "ca", Data: []byte("x")})
			return err
		},
		"delete other service": func() error {
			return km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: "soft:ca/root", Service: "tsa"})
		},
	} {
		if err := f(); !errors.Is(err, hsm.ErrKeySeparation) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Nothing was decrypted for a refused request.
	if len(km.cache) != 0 {
		t.Errorf("%d keys decrypted by refused requests", len(km.cache))
	}
	if _, err := km.st.GetKey(ctx, "soft:ca/root"); err != nil {
		t.Errorf("refused delete removed the key: %v", err)
	}
	if len(aud.find(ActionKeyDelete, OutcomeFailure)) != 1 {
		t.Error("refused delete not audited")
	}
	// Through the Router as the rest of the platform sees it.
	r := hsm.NewRouter()
	r.Mount("soft", "", km)
	if _, err := r.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/root", Service: "seal"}); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("router: %v", err)
	}
	if _, err := r.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/root", Service: "ca"}); err != nil {
		t.Errorf("router: %v", err)
	}
}

// TestAADBinding moves the sealed bytes of one row onto another and changes
// bound columns: the key must then fail to decrypt, in a fresh process and
// in one that already had the key in memory.
func TestAADBinding(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	km := newPassphraseKM(t, st, Config{})
	create(t, km, "soft:ca/a", hsm.SM2, hsm.UsageSign, "ca")
	create(t, km, "soft:ca/b", hsm.SM2, hsm.UsageSign, "ca")
	create(t, km, "soft:kms/k1", hsm.SM4, hsm.UsageWrap, "kms")
	create(t, km, "soft:kms/k2", hsm.SM4, hsm.UsageWrap, "kms")
	b, _ := st.GetKey(ctx, "soft:ca/b")
	k2, _ := st.GetKey(ctx, "soft:kms/k2")

	for _, tc := range []struct {
		name, uri, service string
		usage              hsm.Usage
		edit               func(r *KeyRecord)
	}{
		{"sealed copied from b", "soft:ca/a", "ca", hsm.UsageSign, func(r *KeyRecord) { r.Nonce, r.Sealed = bytes.Clone(b.Nonce), bytes.Clone(b.Sealed) }},
		{"row copied from b, public too", "soft:ca/a", "ca", hsm.UsageSign, func(r *KeyRecord) {
			r.Nonce, r.Sealed, r.Public = bytes.Clone(b.Nonce), bytes.Clone(b.Sealed), bytes.Clone(b.Public)
		}},
		{"wrap key copied from k2", "soft:kms/k1", "kms", hsm.UsageWrap, func(r *KeyRecord) { r.Nonce, r.Sealed = bytes.Clone(k2.Nonce), bytes.Clone(k2.Sealed) }},
		{"service moved to tsa", "soft:ca/a", "tsa", hsm.UsageSign, func(r *KeyRecord) { r.Service = "tsa" }},
		{"usage changed", "soft:ca/b", "ca", hsm.UsageDecrypt, func(r *KeyRecord) { r.Usage = hsm.UsageDecrypt }},
		{"public key replaced", "soft:ca/a", "ca", hsm.UsageSign, func(r *KeyRecord) { r.Public = bytes.Clone(b.Public) }},
		{"version changed", "soft:ca/a", "ca", hsm.UsageSign, func(r *KeyRecord) { r.Version = 2 }},
		{"sealed bit flipped", "soft:ca/a", "ca", hsm.UsageSign, func(r *KeyRecord) { r.Sealed[3] ^= 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, warm := range []bool{false, true} {
				fresh := newMemStore()
				fresh.master, _ = st.GetMaster(ctx)
				for _, u := range st.uris() {
					r, _ := st.GetKey(ctx, u)
					fresh.PutKey(ctx, r)
				}
				km2, err := Open(ctx, fresh, Config{Passphrase: []byte(testPassphrase)})
				if err != nil {
					t.Fatal(err)
				}
				if warm { // the key is already in memory when the row changes
					l, err := km2.access(ctx, tc.uri, strings.Split(strings.TrimPrefix(tc.uri, "soft:"), "/")[0], map[bool]hsm.Usage{true: hsm.UsageWrap, false: hsm.UsageSign}[tc.usage == hsm.UsageWrap])
					if err != nil || l == nil {
						t.Fatal(err)
					}
				}
				fresh.tamper(tc.uri, tc.edit)
				var useErr error
				switch tc.usage {
				case hsm.UsageWrap:
					_, useErr = km2.Wrap(ctx, &hsm.WrapRequest{URI: tc.uri, Service: tc.service, Data: []byte("x")})
				case hsm.UsageDecrypt:
					_, useErr = km2.Decrypter(ctx, &hsm.DecrypterRequest{URI: tc.uri, Service: tc.service})
				default:
					_, useErr = km2.Signer(ctx, &hsm.SignerRequest{URI: tc.uri, Service: tc.service})
				}
				if useErr == nil || !strings.Contains(useErr.Error(), "does not authenticate") && !strings.Contains(useErr.Error(), "does not match") {
					t.Errorf("warm=%v: tampered row used: %v", warm, useErr)
				}
				if _, err := km2.PublicKey(ctx, &hsm.PublicKeyRequest{URI: tc.uri}); tc.usage != hsm.UsageWrap && err == nil {
					t.Errorf("warm=%v: public key of a tampered row returned", warm)
				}
				km2.Close()
			}
		})
	}
}

// tjfocGCM is GCM over tjfoc/gmsm's SM4, an SM4 implementation independent
// of gmsm's. (tjfoc's own GCM functions compute non-standard tags.)
func tjfocGCM(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	b, err := tjsm4.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSM4GCMVector checks SM4-GCM against RFC 8998 Appendix A.1.
func TestSM4GCMVector(t *testing.T) {
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key, iv := h("0123456789ABCDEFFEDCBA9876543210"), h("00001234567800000000ABCD")
	aad := h("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
	plain := h("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
	want := h("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D" +
		"83DE3541E4C2B58177E065A9BF7B62EC")
	g, err := newSM4GCM(key)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Seal(nil, iv, plain, aad); !bytes.Equal(got, want) {
		t.Errorf("SM4-GCM = %X, want %X", got, want)
	}
	if got := tjfocGCM(t, key).Seal(nil, iv, plain, aad); !bytes.Equal(got, want) {
		t.Errorf("tjfoc SM4 in GCM = %X, want %X", got, want)
	}
}

// TestSealFormat opens a sealed row with an independent SM4 (tjfoc/gmsm) in
// GCM and the HKDF-SM3 subkey, pinning the documented format.
func TestSealFormat(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	km := newPassphraseKM(t, st, Config{})
	create(t, km, "soft:ca/root", hsm.SM2, hsm.UsageSign, "ca")
	s := getSigner(t, km, "soft:ca/root", "ca")
	rec, _ := st.GetKey(ctx, "soft:ca/root")
	mrec, _ := st.GetMaster(ctx)
	master, err := recoverMaster(mrec, Credentials{Passphrase: []byte(testPassphrase)}, false)
	if err != nil {
		t.Fatal(err)
	}
	kek := subkey(master, "key-encryption", 16)
	wantAAD := "govtrust-soft-key|soft:ca/root|1|sm2|ca|sign|"
	if !strings.HasPrefix(string(keyAAD(rec)), wantAAD) || len(keyAAD(rec)) != len(wantAAD)+64 {
		t.Fatalf("AAD %q", keyAAD(rec))
	}
	plain, err := tjfocGCM(t, kek).Open(nil, rec.Nonce, rec.Sealed, keyAAD(rec))
	if err != nil {
		t.Fatalf("independent SM4-GCM: %v", err)
	}
	k, err := smx509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(*sm2.PrivateKey).PublicKey.Equal(s.Public()) {
		t.Fatal("sealed key is not the signer's key")
	}
}

func TestListDelete(t *testing.T) {
	ctx := context.Background()
	var aud auditLog
	km := newPassphraseKM(t, newMemStore(), Config{Audit: aud.fn})
	create(t, km, "soft:tsa/b", hsm.ECDSAP256, hsm.UsageSign, "tsa")
	create(t, km, "soft:ca/b", hsm.SM2, hsm.UsageSign, "ca")
	create(t, km, "soft:ca/a", hsm.SM2, hsm.UsageDecrypt, "ca")
	create(t, km, "soft:kms/a", hsm.AES256, hsm.UsageWrap, "kms")
	uris := func(infos []*hsm.KeyInfo) []string {
		var out []string
		for _, i := range infos {
			out = append(out, i.URI)
		}
		return out
	}
	all, err := km.ListKeys(ctx, &hsm.ListKeysRequest{})
	if err != nil || !slices.Equal(uris(all), []string{"soft:ca/a", "soft:ca/b", "soft:kms/a", "soft:tsa/b"}) {
		t.Fatalf("list all: %v %v", uris(all), err)
	}
	for _, i := range all {
		if i.Backend != "soft" || i.Location != hsm.LocationSoftware || (i.Public == nil) != (i.Algorithm == hsm.AES256) {
			t.Errorf("info %+v", i)
		}
	}
	ca, err := km.ListKeys(ctx, &hsm.ListKeysRequest{Service: "ca"})
	if err != nil || !slices.Equal(uris(ca), []string{"soft:ca/a", "soft:ca/b"}) {
		t.Fatalf("list ca: %v %v", uris(ca), err)
	}
	if s, _ := km.Status(ctx); s.Keys != 4 {
		t.Errorf("status keys %d", s.Keys)
	}

	old := getSigner(t, km, "soft:ca/b", "ca")
	if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: "soft:ca/b", Service: "ca"}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Sign(rand.Reader, []byte("m"), sm2.DefaultSM2SignerOpts); !errors.Is(err, hsm.ErrLocked) {
		t.Errorf("signer of a deleted key still signs: %v", err)
	}
	if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/b", Service: "ca"}); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("signer after delete: %v", err)
	}
	if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: "soft:ca/b", Service: "ca"}); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	// The name can be reused; it is a new key.
	info := create(t, km, "soft:ca/b", hsm.SM2, hsm.UsageSign, "ca")
	if info.Public.(*ecdsa.PublicKey).Equal(old.Public()) {
		t.Error("re-created key has the old public key")
	}
	if len(aud.find(ActionKeyDelete, OutcomeSuccess)) != 1 || len(aud.find(ActionKeyCreate, OutcomeSuccess)) != 5 {
		t.Errorf("audit:\n%s", aud.text())
	}
	rec := aud.find(ActionKeyCreate, OutcomeSuccess)[0]
	if rec.object != "soft:tsa/b" || rec.details["algorithm"] != "ecdsa-p256" || rec.details["service"] != "tsa" {
		t.Errorf("create audit record %+v", rec)
	}
}

// TestLockZeroises checks that Lock clears keys and stops signers.
func TestLockZeroises(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	create(t, km, "soft:a", hsm.SM2, hsm.UsageSign, "ca")
	create(t, km, "soft:b", hsm.RSA2048, hsm.UsageSign, "ca")
	create(t, km, "soft:c", hsm.ECDSAP256, hsm.UsageSign, "ca")
	create(t, km, "soft:d", hsm.SM4, hsm.UsageWrap, "kms")
	var ss []crypto.Signer
	for _, u := range []string{"soft:a", "soft:b", "soft:c"} {
		ss = append(ss, getSigner(t, km, u, "ca"))
	}
	if _, err := km.Wrap(ctx, &hsm.WrapRequest{URI: "soft:d", Service: "kms", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	sm2Key := km.cache["soft:a"].key.(*sm2.PrivateKey)
	rsaKey := km.cache["soft:b"].key.(*rsa.PrivateKey)
	ecKey := km.cache["soft:c"].key.(*ecdsa.PrivateKey)
	symKey := km.cache["soft:d"].key.([]byte)
	dWords := sm2Key.D.Bits()[:cap(sm2Key.D.Bits())]
	pWords := rsaKey.Primes[0].Bits()
	kek := km.kek
	km.Lock()
	zero := func(name string, ws []big.Word) {
		for _, w := range ws {
			if w != 0 {
				t.Errorf("%s not cleared", name)
				return
			}
		}
	}
	zero("SM2 D words", dWords)
	zero("RSA prime words", pWords[:cap(pWords)])
	//lint:ignore SA1019 reading D is how zeroisation is checked
	if sm2Key.D.Sign() != 0 || rsaKey.D.Sign() != 0 || ecKey.D.Sign() != 0 || rsaKey.Precomputed.Dp.Sign() != 0 {
		t.Error("private scalars not zero")
	}
	if !bytes.Equal(symKey, make([]byte, 16)) || !bytes.Equal(kek, make([]byte, 16)) || km.kek != nil {
		t.Error("symmetric key or key-encryption key not cleared")
	}
	for _, s := range ss {
		d := sha256.Sum256([]byte("m"))
		if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrLocked) {
			t.Errorf("%T signs after Lock: %v", s.Public(), err)
		}
	}
	if err := km.Unlock(ctx, Credentials{Passphrase: []byte(testPassphrase)}); err != nil {
		t.Fatal(err)
	}
	s := getSigner(t, km, "soft:a", "ca")
	if _, err := s.Sign(rand.Reader, []byte("m"), sm2.DefaultSM2SignerOpts); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// TestNoSecretsInErrors drives every failure path it can and scans the
// errors, the log and the audit records for the passphrase, the master key,
// its subkeys and the private keys.
func TestNoSecretsInErrors(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	var aud auditLog
	logger, logs := captureLog()
	km := newPassphraseKM(t, st, Config{Audit: aud.fn, Logger: logger})
	var errs []error
	keep := func(_ any, err error) {
		if err == nil {
			t.Helper()
			t.Fatal("expected an error")
		}
		errs = append(errs, err)
	}
	for _, alg := range []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256, hsm.RSA2048, hsm.SM4, hsm.AES256} {
		usage := hsm.UsageSign
		if alg.Symmetric() {
			usage = hsm.UsageWrap
		}
		create(t, km, "soft:k/"+string(alg), alg, usage, "ca")
	}
	secrets := map[string][]byte{"passphrase": []byte(testPassphrase)}
	mrec, _ := st.GetMaster(ctx)
	master, _ := recoverMaster(mrec, Credentials{Passphrase: []byte(testPassphrase)}, false)
	secrets["master key"], secrets["kek"] = master, subkey(master, "key-encryption", 16)
	for _, u := range st.uris() {
		rec, _ := st.GetKey(ctx, u)
		if rec.Algorithm.Symmetric() {
			_, err := km.Wrap(ctx, &hsm.WrapRequest{URI: u, Service: "ca", Data: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			secrets[u] = bytes.Clone(km.cache[u].key.([]byte))
		} else {
			getSigner(t, km, u, "ca")
			der, _ := smx509.MarshalPKCS8PrivateKey(km.cache[u].key)
			secrets[u+" pkcs8"] = der
			secrets[u+" scalar tail"] = der[len(der)-40:]
		}
		keep(km.Signer(ctx, &hsm.SignerRequest{URI: u, Service: "tsa"}))
		keep(km.Unwrap(ctx, &hsm.WrapRequest{URI: u, Service: "ca", Data: []byte("garbage garbage garbage garbage")}))
	}
	keep(Open(ctx, st, Config{Passphrase: []byte(testPassphrase[:len(testPassphrase)-1]), Audit: aud.fn, Logger: logger}))
	keep(km.Signer(ctx, &hsm.SignerRequest{URI: "soft:none", Service: "ca"}))
	keep(km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:k/sm2", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}))
	st.tamper("soft:k/sm2", func(r *KeyRecord) { r.Sealed[0] ^= 1 })
	km2, err := Open(ctx, st, Config{Passphrase: []byte(testPassphrase), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer km2.Close()
	keep(km2.Signer(ctx, &hsm.SignerRequest{URI: "soft:k/sm2", Service: "ca"}))
	km2.Lock()
	keep(km2.Signer(ctx, &hsm.SignerRequest{URI: "soft:k/ecdsa-p256", Service: "ca"}))

	var all strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&all, "%v\n%+v\n%#v\n", e, e, e)
	}
	fmt.Fprintf(&all, "%v %+v", km, km)
	assertNoSecret(t, "errors", all.String(), secrets)
	assertNoSecret(t, "log", logs.String(), secrets)
	assertNoSecret(t, "audit", aud.text(), secrets)
}

func TestConcurrency(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	create(t, km, "soft:shared", hsm.SM2, hsm.UsageSign, "ca")
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			uri := fmt.Sprintf("soft:g%d", g)
			for i := range 5 {
				if _, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
					errc <- err
					return
				}
				for _, u := range []string{uri, "soft:shared"} {
					s, err := km.Signer(ctx, &hsm.SignerRequest{URI: u, Service: "ca"})
					if err != nil {
						errc <- err
						return
					}
					msg := fmt.Appendf(nil, "%d/%d", g, i)
					sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
					if err != nil || !sm2.VerifyASN1WithSM2(s.Public().(*ecdsa.PublicKey), nil, msg, sig) {
						errc <- fmt.Errorf("%s: bad signature (%v)", u, err)
						return
					}
				}
				if _, err := km.ListKeys(ctx, &hsm.ListKeysRequest{}); err != nil {
					errc <- err
					return
				}
				if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: uri, Service: "ca"}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	// Racing creators of one name: exactly one wins.
	var won sync.Map
	for g := range 8 {
		wg.Go(func() {
			_, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:race", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: "ca"})
			if err == nil {
				won.Store(g, true)
			} else if !errors.Is(err, hsm.ErrExists) {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	n := 0
	won.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d creators of soft:race won", n)
	}
	// A shared key is decrypted once and cached once.
	if len(km.cache) != 1 {
		t.Errorf("cache holds %d keys, want 1", len(km.cache))
	}
}

// TestConcurrentLock signs while another goroutine locks: every signature
// is either valid or refused with ErrLocked, never made with a half-cleared
// key.
func TestConcurrentLock(t *testing.T) {
	ctx := context.Background()
	km := newPassphraseKM(t, newMemStore(), Config{})
	create(t, km, "soft:k", hsm.SM2, hsm.UsageSign, "ca")
	for range 5 {
		s := getSigner(t, km, "soft:k", "ca")
		pub := s.Public().(*ecdsa.PublicKey)
		var wg, started sync.WaitGroup
		for range 4 {
			started.Add(1)
			wg.Go(func() {
				for i := 0; ; i++ {
					if i == 10 {
						started.Done()
					}
					sig, err := s.Sign(rand.Reader, []byte("m"), sm2.DefaultSM2SignerOpts)
					if errors.Is(err, hsm.ErrLocked) && i >= 10 { // started.Done came first at i == 10
						return
					}
					if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, []byte("m"), sig) {
						t.Errorf("signature %d during Lock: %v", i, err)
						if i < 10 {
							started.Done()
						}
						return
					}
				}
			})
		}
		started.Wait() // every goroutine has signed 10 times and goes on
		km.Lock()
		wg.Wait()
		if err := km.Unlock(ctx, Credentials{Passphrase: []byte(testPassphrase)}); err != nil {
			t.Fatal(err)
		}
	}
}
