package crl

import (
	"math/big"
	"time"
)

// DER tags written by hand on the streaming path (X.690 §8.1.2).
const (
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30
)

// appendHeader appends a tag and a definite length in the shortest form
// (X.690 §10.1).
func appendHeader(b []byte, tag byte, n int) []byte {
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

// intContentLen is the DER content length of a positive INTEGER: the
// magnitude plus a leading zero octet when its top bit is set.
func intContentLen(x *big.Int) int { return x.BitLen()/8 + 1 }

// appendPositiveInt appends a positive INTEGER without allocating: the CA's
// cursor may hand every entry with the same *big.Int.
func appendPositiveInt(b []byte, x *big.Int) []byte {
	n := intContentLen(x)
	b = append(b, tagInteger, byte(n))
	mag := (x.BitLen() + 7) / 8
	if n > mag {
		b = append(b, 0)
	}
	start := len(b)
	b = append(b, make([]byte, mag)...) // does not escape; the compiler appends zeros in place
	x.FillBytes(b[start:])
	return b
}

// utc reports whether t is written as UTCTime: RFC 5280 §5.1.2.4 requires
// UTCTime through 2049 and GeneralizedTime from 2050.
func utc(t time.Time) bool { return t.Year() < 2050 }

// timeLen is the DER length of t written by appendTime.
func timeLen(t time.Time) int {
	if utc(t) {
		return 2 + 13
	}
	return 2 + 15
}

// appendTime appends t (UTC, whole seconds) as UTCTime YYMMDDHHMMSSZ or
// GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1, §4.1.2.5.2: seconds
// present, no fraction, Z). Callers keep t within 1950–9999.
func appendTime(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if utc(t) {
		b = append(b, tagUTCTime, 13)
		b = append2(b, y%100)
	} else {
		b = append(b, tagGeneralizedTime, 15)
		b = append2(b, y/100)
		b = append2(b, y%100)
	}
	b = append2(b, int(mo))
	b = append2(b, d)
	b = append2(b, h)
	b = append2(b, mi)
	b = append2(b, s)
	return append(b, 'Z')
}

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
