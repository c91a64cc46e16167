package soft

import (
	"context"
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/govtrust/govtrust/hsm"
)

// The issue asks the software keystore to sign at >= 0.9 of raw gmsm speed:
// compare BenchmarkSignSM2Soft with BenchmarkSignSM2Raw (ns/op ratio).

var benchMsg = []byte("a to-be-signed certificate of a few hundred bytes would go here; 64B")

func BenchmarkSignSM2Raw(b *testing.B) {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, k)
}

func BenchmarkSignSM2Soft(b *testing.B) {
	km := benchKM(b)
	if _, err := km.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: "soft:bench", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
		b.Fatal(err)
	}
	s, err := km.Signer(context.Background(), &hsm.SignerRequest{URI: "soft:bench", Service: "ca"})
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, s)
}

func benchSign(b *testing.B, s crypto.Signer) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(rand.Reader, benchMsg, sm2.DefaultSM2SignerOpts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignSM2RawParallel(b *testing.B) {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	benchSignParallel(b, k)
}

func BenchmarkSignSM2SoftParallel(b *testing.B) {
	km := benchKM(b)
	if _, err := km.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: "soft:bench", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
		b.Fatal(err)
	}
	s, err := km.Signer(context.Background(), &hsm.SignerRequest{URI: "soft:bench", Service: "ca"})
	if err != nil {
		b.Fatal(err)
	}
	benchSignParallel(b, s)
}

func benchSignParallel(b *testing.B, s crypto.Signer) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Sign(rand.Reader, benchMsg, sm2.DefaultSM2SignerOpts); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSigner measures resolving a signer (a store read and a cache
// hit), which hot paths do once, not per signature.
func BenchmarkSigner(b *testing.B) {
	km := benchKM(b)
	ctx := context.Background()
	if _, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:bench", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: "soft:bench", Service: "ca"}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchKM(b *testing.B) *KeyManager {
	ctx := context.Background()
	st := newMemStore()
	if _, err := Init(ctx, st, InitRequest{Kind: KindPassphrase, Passphrase: []byte(testPassphrase), KDF: &testKDF}); err != nil {
		b.Fatal(err)
	}
	logger, _ := captureLog()
	km, err := Open(ctx, st, Config{Passphrase: []byte(testPassphrase), Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { km.Close() })
	return km
}
