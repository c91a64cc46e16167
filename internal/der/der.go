// Package der appends DER encodings (X.690) by hand, for the paths that
// encode once per CRL entry or per time-stamp token and cannot afford
// encoding/asn1 or cryptobyte's builders: ca/crl's streaming CRL and
// tsa/tsp's tokens.
package der

import "math/big"

// TagInteger is the universal INTEGER tag.
const TagInteger = 0x02

// AppendHeader appends a tag and a definite length of n octets in the
// shortest form (X.690 §10.1).
func AppendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0x81, byte(n))
	case n <= 0xffff:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// TLVSize is the size of an element with n octets of contents.
func TLVSize(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n <= 0xff:
		return 3 + n
	case n <= 0xffff:
		return 4 + n
	case n <= 0xffffff:
		return 5 + n
	}
	return 6 + n
}

// IntContentLen is the content length of the INTEGER x >= 0: the
// magnitude plus a leading zero octet when its top bit is set (one octet
// for zero).
func IntContentLen(x *big.Int) int { return x.BitLen()/8 + 1 }

// AppendNonNegativeInt appends the INTEGER x >= 0 without allocating (the
// CRL stream hands every entry with the same *big.Int).
func AppendNonNegativeInt(b []byte, x *big.Int) []byte {
	n := IntContentLen(x)
	b = AppendHeader(b, TagInteger, n)
	mag := (x.BitLen() + 7) / 8
	if n > mag {
		b = append(b, 0)
	}
	start := len(b)
	b = append(b, make([]byte, mag)...) // does not escape; the compiler appends zeros in place
	x.FillBytes(b[start:])
	return b
}
