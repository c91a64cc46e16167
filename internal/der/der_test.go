package der

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"testing"
)

// TestAgainstEncodingASN1: headers and non-negative INTEGERs are what
// encoding/asn1 writes, across the length forms and the top-bit edges.
func TestAgainstEncodingASN1(t *testing.T) {
	for _, n := range []int{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x1000000} {
		content := make([]byte, n)
		want, err := asn1.Marshal(asn1.RawValue{Tag: 4, Bytes: content}) // OCTET STRING
		if err != nil {
			t.Fatal(err)
		}
		got := append(AppendHeader(nil, 0x04, n), content...)
		if !bytes.Equal(got, want) {
			t.Fatalf("header of %d octets: % x, want % x", n, got[:6], want[:6])
		}
		if TLVSize(n) != len(want) {
			t.Fatalf("TLVSize(%d) = %d, want %d", n, TLVSize(n), len(want))
		}
	}
	for _, x := range []*big.Int{
		big.NewInt(0), big.NewInt(1), big.NewInt(0x7f), big.NewInt(0x80), big.NewInt(0xff), big.NewInt(0x100),
		new(big.Int).Lsh(big.NewInt(1), 159), new(big.Int).Lsh(big.NewInt(1), 1200),
	} {
		want, err := asn1.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendNonNegativeInt(nil, x); !bytes.Equal(got, want) {
			t.Fatalf("INTEGER %x: % x, want % x", x, got, want)
		}
		var rv asn1.RawValue
		if _, err := asn1.Unmarshal(want, &rv); err != nil {
			t.Fatal(err)
		}
		if IntContentLen(x) != len(rv.Bytes) {
			t.Fatalf("IntContentLen(%x) = %d, want %d", x, IntContentLen(x), len(rv.Bytes))
		}
	}
}
