package crl

import (
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
