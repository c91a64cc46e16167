//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
)

// TestUsageTypes checks that a key handed out for one usage cannot be used
// for the other by a type assertion (ACCEPTANCE.md E-04): a Decrypter is
// not a crypto.Signer and a Signer not a crypto.Decrypter, for wrapped SM2
// keys (on SoftHSM2 nothing on the token would refuse the other use) and for
// RSA keys on the token.
func TestUsageTypes(t *testing.T) {
	tk := newToken(t, "usage")
	km := open(t, tk.config())
	ctx := context.Background()
	for _, alg := range []hsm.Algorithm{hsm.SM2, hsm.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			dec := create(t, km, "dec-"+string(alg), alg, hsm.UsageDecrypt, "kmc")
			sig := create(t, km, "sig-"+string(alg), alg, hsm.UsageSign, "kmc")
			d, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: dec.URI, Service: "kmc"})
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := d.(crypto.Signer); ok {
				msg := sha256.Sum256([]byte("must not be signed"))
				_, err := s.Sign(rand.Reader, msg[:], crypto.SHA256)
				t.Errorf("the Decrypter of a decryption key is a crypto.Signer (%T); Sign: %v", d, err)
			}
			s := signer(t, km, sig.URI, "kmc")
			if _, ok := s.(crypto.Decrypter); ok {
				t.Errorf("the Signer of a signing key is a crypto.Decrypter (%T)", s)
			}
		})
	}
}

// TestDecryptKeyCannotSign drives the signing paths below Signer with a
// decryption key's record: each refuses with ErrKeySeparation from the usage
// the token stores, before any private key is unwrapped or used.
func TestDecryptKeyCannotSign(t *testing.T) {
	tk := newToken(t, "nosign")
	km := open(t, tk.config())
	ctx := context.Background()
	msg := []byte("must not be signed")

	smInfo := create(t, km, "sm2-dec", hsm.SM2, hsm.UsageDecrypt, "kmc")
	smRec, err := km.lookup(ctx, smInfo.URI)
	if err != nil {
		t.Fatal(err)
	}
	smPub := smInfo.Public.(*ecdsa.PublicKey)
	ws := &wrappedSM2Signer{wrappedSM2{km: km, rec: smRec, pub: smPub}}
	if _, err := ws.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("wrapped SM2 signer around a decryption key: %v, want ErrKeySeparation", err)
	}
	called := false
	use := func(*sm2.PrivateKey) error { called = true; return nil }
	if err := km.withSM2(ctx, smRec, smPub, hsm.UsageSign, use); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("withSM2 for signing with a decryption key: %v, want ErrKeySeparation", err)
	}
	// A record whose usage was changed in memory is refused too: the
	// metadata object on the token still says decrypt.
	forged := *smRec
	forged.meta.Usage = hsm.UsageSign
	if err := km.withSM2(ctx, &forged, smPub, hsm.UsageSign, use); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("withSM2 with a record altered to usage sign: %v, want ErrKeySeparation", err)
	}
	if called {
		t.Error("the unwrapped decryption key was handed to a signing function")
	}
	if n := km.sm2keys.held(); n != 0 {
		t.Errorf("%d SM2 keys unwrapped by refused signing attempts", n)
	}

	rsaInfo := create(t, km, "rsa-dec", hsm.RSA2048, hsm.UsageDecrypt, "kmc")
	rsaRec, err := km.lookup(ctx, rsaInfo.URI)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tokenSigner{tokenKey{km: km, rec: rsaRec, pub: rsaInfo.Public}}
	d := sha256.Sum256(msg)
	if _, err := ts.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("token signer around an RSA decryption key: %v, want ErrKeySeparation", err)
	}

	// And the other way round: a signing key does not decrypt.
	sigInfo := create(t, km, "sm2-sig", hsm.SM2, hsm.UsageSign, "kmc")
	sigRec, err := km.lookup(ctx, sigInfo.URI)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := sm2.EncryptASN1(rand.Reader, sigInfo.Public.(*ecdsa.PublicKey), msg)
	if err != nil {
		t.Fatal(err)
	}
	wd := &wrappedSM2Decrypter{wrappedSM2{km: km, rec: sigRec, pub: sigInfo.Public.(*ecdsa.PublicKey)}}
	if pt, err := wd.Decrypt(rand.Reader, ct, nil); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("wrapped SM2 decrypter around a signing key: %q, %v; want ErrKeySeparation", pt, err)
	}
}
