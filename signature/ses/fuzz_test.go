package ses

import (
	"bytes"
	"testing"
)

// seeds returns a v4 seal and signature and a v1 seal, made at run time.
func seeds(f *testing.F) [][]byte {
	maker, official := newKey(f, "sm2", "maker"), newKey(f, "sm2", "official")
	seal, err := MakeSeal(sealInfo(official), maker.cert, maker.signer)
	if err != nil {
		f.Fatal(err)
	}
	sig, err := Sign(NewTBS(seal.Raw, t0, SM3([]byte("d")), "d"), official.cert, official.signer)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{seal.Raw, sig.Raw, v1Seal(f, maker, sealInfo(official))}
}

// FuzzParseSeal: the parser never panics, and what it accepts re-encodes
// to the same bytes (strict DER leaves one encoding).
func FuzzParseSeal(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		s, err := ParseSeal(der)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed seal: %v", err)
		}
		if s.TimeStamp == nil && !bytes.Equal(again, der) {
			t.Fatalf("re-encoding differs:\n%x\n%x", der, again)
		}
		_, _ = s.VerifyMaker()
	})
}

// FuzzParseSignature: as FuzzParseSeal, for SES_Signature.
func FuzzParseSignature(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		s, err := ParseSignature(der)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed signature: %v", err)
		}
		if s.TimeStamp == nil && !bytes.Equal(again, der) {
			t.Fatalf("re-encoding differs:\n%x\n%x", der, again)
		}
		_, _ = s.Verify()
		_, _ = s.Seal()
	})
}
