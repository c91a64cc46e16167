package kmc

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

func mustKey(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The ENVELOPEDKEYBLOB layout of GM/T 0016 (GM-STANDARDS.md §2.4): fixed
// offsets, right-aligned 256-bit values, and a round trip through the
// holder's key.
func TestSKFEnvelopedKey(t *testing.T) {
	holder, enc := mustKey(t), mustKey(t)
	blob, err := MarshalSKFEnvelopedKey(&holder.PublicKey, enc)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(blob) != skfBlobSize || le.Uint32(blob) != 1 || le.Uint32(blob[4:]) != SGDSM4ECB || le.Uint32(blob[8:]) != 256 ||
		!bytes.Equal(blob[12:44], make([]byte, 32)) || le.Uint32(blob[76:]) != 256 ||
		!bytes.Equal(blob[80+32:80+64], enc.X.FillBytes(make([]byte, 32))) || le.Uint32(blob[208+160:]) != 16 {
		t.Fatalf("layout: %x", blob)
	}
	got, err := ParseSKFEnvelopedKey(holder, blob)
	if err != nil || got.D.Cmp(enc.D) != 0 {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseSKFEnvelopedKey(mustKey(t), blob); err == nil {
		t.Fatal("another key opens the blob")
	}
	for _, i := range []int{20, 100, 250, len(blob) - 1} {
		b := bytes.Clone(blob)
		b[i] ^= 1
		if k, err := ParseSKFEnvelopedKey(holder, b); err == nil && k.D.Cmp(enc.D) == 0 {
			t.Errorf("byte %d altered: same key", i)
		}
	}
}

func FuzzParseSKFEnvelopedKey(f *testing.F) {
	holder, enc := mustKey(f), mustKey(f)
	blob, err := MarshalSKFEnvelopedKey(&holder.PublicKey, enc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add(blob[:200])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseSKFEnvelopedKey(holder, b)
	})
}
