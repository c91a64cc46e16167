package tsp

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/der"
)

// TSTInfo is the content of a time-stamp token (RFC 3161 §2.4.2).
type TSTInfo struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint MessageImprint
	SerialNumber   *big.Int
	// GenTime is encoded to the millisecond, without trailing zeros.
	GenTime time.Time
	// Accuracy is zero when absent.
	Accuracy time.Duration
	Ordering bool
	// Nonce is nil when absent.
	Nonce *big.Int
	// TSA is the DER of the [0] GeneralName, nil when absent.
	TSA        []byte
	Extensions []Extension
	// Raw is the DER this TSTInfo was parsed from.
	Raw []byte
}

// GenTimePrecision is the resolution of genTime in the tokens made here:
// Marshal truncates GenTime to it, so a TSA that records the genTime of a
// token truncates it first.
const GenTimePrecision = time.Millisecond

// Marshal returns the DER of the TSTInfo. ordering FALSE is omitted
// (DEFAULT, X.690 §11.5).
//
// The TSA marshals one per token, so the fields are appended to a stack
// buffer rather than built with cryptobyte, whose closures and child
// builders cost more than the encoding (4 % of the TSA's CPU per token).
// TestMarshalMatchesBuilder holds it to the cryptobyte encoding.
func (t *TSTInfo) Marshal() ([]byte, error) {
	if t.SerialNumber == nil || t.SerialNumber.Sign() <= 0 || t.SerialNumber.BitLen() > 160 {
		return nil, errors.New("tsp: serialNumber must be positive and at most 160 bits (RFC 3161 §2.4.2)")
	}
	var buf [384]byte
	body := append(buf[:0], derInt1...) // version v1
	var ok bool
	if body, ok = appendOID(body, t.Policy); !ok {
		return nil, fmt.Errorf("tsp: invalid policy OID %v", t.Policy)
	}
	if t.MessageImprint.raw != nil {
		body = append(body, t.MessageImprint.raw...)
	} else {
		var b cryptobyte.Builder
		addImprint(&b, &t.MessageImprint)
		mi, err := b.Bytes()
		if err != nil {
			return nil, err
		}
		body = append(body, mi...)
	}
	body = appendInteger(body, t.SerialNumber)
	var tb [24]byte
	body = appendTLV(body, cbasn1.GeneralizedTime, appendGenTime(tb[:0], t.GenTime))
	if t.Accuracy > 0 {
		body = appendAccuracy(body, t.Accuracy)
	}
	if t.Ordering {
		body = append(body, 0x01, 0x01, 0xff)
	}
	if t.Nonce != nil {
		body = appendInteger(body, t.Nonce)
	}
	if t.TSA != nil {
		body = appendTLV(body, cbasn1.Tag(0).Constructed().ContextSpecific(), t.TSA)
	}
	if len(t.Extensions) > 0 {
		var b cryptobyte.Builder
		addExtensions(&b, t.Extensions)
		exts, err := b.Bytes()
		if err != nil {
			return nil, err
		}
		body = appendTLV(body, cbasn1.Tag(1).Constructed().ContextSpecific(), exts)
	}
	return appendTLV(make([]byte, 0, tlvSize(len(body))), cbasn1.SEQUENCE, body), nil
}

// appendOID appends the DER OBJECT IDENTIFIER of oid; false for what
// X.660 does not allow (fewer than two arcs, a first arc above 2, a second
// above 39 under 0 or 1, a negative arc), which cryptobyte refuses too.
func appendOID(b []byte, oid asn1.ObjectIdentifier) ([]byte, bool) {
	if len(oid) < 2 || oid[0] < 0 || oid[0] > 2 || oid[1] < 0 || (oid[0] < 2 && oid[1] >= 40) {
		return b, false
	}
	var buf [64]byte
	c := appendBase128(buf[:0], uint64(oid[0])*40+uint64(oid[1]))
	for _, arc := range oid[2:] {
		if arc < 0 {
			return b, false
		}
		c = appendBase128(c, uint64(arc))
	}
	return appendTLV(b, cbasn1.OBJECT_IDENTIFIER, c), true
}

// appendBase128 appends v in base 128, high groups first, the
// continuation bit on all but the last.
func appendBase128(b []byte, v uint64) []byte {
	n := 1
	for w := v >> 7; w != 0; w >>= 7 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		o := byte(v>>(7*uint(i))) & 0x7f
		if i != 0 {
			o |= 0x80
		}
		b = append(b, o)
	}
	return b
}

// appendInteger appends the DER INTEGER of n (minimal two's complement).
func appendInteger(b []byte, n *big.Int) []byte {
	if n.Sign() < 0 {
		// Negative only in a nonce a client chose: rare, left to cryptobyte.
		var c cryptobyte.Builder
		c.AddASN1BigInt(n)
		enc, _ := c.Bytes() // AddASN1BigInt cannot fail
		return append(b, enc...)
	}
	return der.AppendNonNegativeInt(b, n)
}

// appendUint appends the DER INTEGER of v (non-negative) under tag.
func appendUint(b []byte, tag cbasn1.Tag, v uint64) []byte {
	n := 1 // octets, with a leading zero when the high bit is set
	for w := v >> 7; w != 0; w >>= 8 {
		n++
	}
	b = append(b, byte(tag), byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*uint(i))))
	}
	return b
}

// formatGenTime is GeneralizedTime in UTC with a fraction only when it is
// not zero and without trailing zeros (RFC 3161 §2.4.2).
func formatGenTime(t time.Time) string { return string(appendGenTime(nil, t)) }

// appendGenTime appends formatGenTime's form of t to b.
func appendGenTime(b []byte, t time.Time) []byte {
	t = t.UTC().Truncate(GenTimePrecision)
	b = t.AppendFormat(b, "20060102150405")
	if ms := t.Nanosecond() / int(time.Millisecond); ms != 0 {
		b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
	}
	return append(b, 'Z')
}

// parseGenTime parses the GeneralizedTime form formatGenTime writes, with
// any number of fraction digits but never a trailing zero or a bare dot.
func parseGenTime(s string) (time.Time, error) {
	bad := fmt.Errorf("tsp: genTime %q is not YYYYMMDDhhmmss[.f]Z", s)
	if len(s) < 15 || s[len(s)-1] != 'Z' {
		return time.Time{}, bad
	}
	body := s[:len(s)-1]
	main, frac, hasFrac := strings.Cut(body, ".")
	if len(main) != 14 || strings.Trim(main, "0123456789") != "" {
		return time.Time{}, bad
	}
	t, err := time.Parse("20060102150405", main)
	if err != nil {
		return time.Time{}, bad
	}
	if hasFrac {
		if frac == "" || len(frac) > 9 || strings.Trim(frac, "0123456789") != "" || frac[len(frac)-1] == '0' {
			return time.Time{}, bad
		}
		n, _ := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
		t = t.Add(time.Duration(n))
	}
	return t.UTC(), nil
}

// appendAccuracy appends Accuracy { seconds, [0] millis, [1] micros }, each
// present only when not zero (RFC 3161 §2.4.2).
func appendAccuracy(b []byte, d time.Duration) []byte {
	secs := int64(d / time.Second)
	millis := int64(d%time.Second) / int64(time.Millisecond)
	micros := int64(d%time.Millisecond) / int64(time.Microsecond)
	var buf [24]byte
	c := buf[:0]
	if secs > 0 {
		c = appendUint(c, cbasn1.INTEGER, uint64(secs))
	}
	if millis > 0 {
		c = appendUint(c, cbasn1.Tag(0).ContextSpecific(), uint64(millis))
	}
	if micros > 0 {
		c = appendUint(c, cbasn1.Tag(1).ContextSpecific(), uint64(micros))
	}
	return appendTLV(b, cbasn1.SEQUENCE, c)
}

func parseAccuracy(s cryptobyte.String) (time.Duration, error) {
	var d time.Duration
	var v int64
	if s.PeekASN1Tag(cbasn1.INTEGER) {
		if !s.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || v < 0 || v > 1<<32 {
			return 0, errors.New("tsp: malformed accuracy seconds")
		}
		d += time.Duration(v) * time.Second
	}
	for i, unit := range []time.Duration{time.Millisecond, time.Microsecond} {
		tag := cbasn1.Tag(i).ContextSpecific()
		if s.PeekASN1Tag(tag) {
			if !s.ReadASN1Int64WithTag(&v, tag) || v < 1 || v > 999 {
				return 0, errors.New("tsp: accuracy millis/micros must be 1..999")
			}
			d += time.Duration(v) * unit
		}
	}
	if !s.Empty() {
		return 0, errors.New("tsp: malformed accuracy")
	}
	return d, nil
}

// ParseTSTInfo parses a DER TSTInfo strictly.
func ParseTSTInfo(der []byte) (*TSTInfo, error) {
	in := cryptobyte.String(der)
	var s cryptobyte.String
	if !in.ReadASN1(&s, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("tsp: TSTInfo is not one DER SEQUENCE")
	}
	t := &TSTInfo{Raw: der}
	var v int64
	if !s.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || v != 1 {
		return nil, errors.New("tsp: TSTInfo version is not v1")
	}
	t.Version = 1
	if !s.ReadASN1ObjectIdentifier(&t.Policy) {
		return nil, errors.New("tsp: malformed TSTInfo policy")
	}
	mi, err := parseImprint(&s)
	if err != nil {
		return nil, fmt.Errorf("tsp: TSTInfo messageImprint: %w", err)
	}
	t.MessageImprint = *mi
	t.SerialNumber = new(big.Int)
	if !s.ReadASN1Integer(t.SerialNumber) || t.SerialNumber.Sign() <= 0 || t.SerialNumber.BitLen() > 160 {
		return nil, errors.New("tsp: malformed TSTInfo serialNumber")
	}
	var gt cryptobyte.String
	if !s.ReadASN1(&gt, cbasn1.GeneralizedTime) {
		return nil, errors.New("tsp: malformed genTime")
	}
	if t.GenTime, err = parseGenTime(string(gt)); err != nil {
		return nil, err
	}
	if s.PeekASN1Tag(cbasn1.SEQUENCE) {
		var acc cryptobyte.String
		s.ReadASN1(&acc, cbasn1.SEQUENCE)
		if t.Accuracy, err = parseAccuracy(acc); err != nil {
			return nil, err
		}
	}
	if s.PeekASN1Tag(cbasn1.BOOLEAN) {
		if !s.ReadASN1Boolean(&t.Ordering) || !t.Ordering {
			return nil, errors.New("tsp: ordering FALSE encoded (DER omits DEFAULT values)")
		}
	}
	if s.PeekASN1Tag(cbasn1.INTEGER) {
		t.Nonce = new(big.Int)
		if !s.ReadASN1Integer(t.Nonce) {
			return nil, errors.New("tsp: malformed nonce")
		}
	}
	if s.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var name cryptobyte.String
		if !s.ReadASN1(&name, cbasn1.Tag(0).Constructed().ContextSpecific()) || len(name) == 0 {
			return nil, errors.New("tsp: malformed tsa name")
		}
		t.TSA = []byte(name)
	}
	if s.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var exts cryptobyte.String
		s.ReadASN1(&exts, cbasn1.Tag(1).Constructed().ContextSpecific())
		if t.Extensions, err = parseExtensions(exts); err != nil {
			return nil, fmt.Errorf("tsp: TSTInfo extensions: %w", err)
		}
	}
	if !s.Empty() {
		return nil, errors.New("tsp: unexpected fields in TSTInfo")
	}
	return t, nil
}
