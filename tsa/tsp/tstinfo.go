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

// genTimePrecision is the resolution of genTime in the tokens made here.
const genTimePrecision = time.Millisecond

// Marshal returns the DER of the TSTInfo. ordering FALSE is omitted
// (DEFAULT, X.690 §11.5).
func (t *TSTInfo) Marshal() ([]byte, error) {
	if t.SerialNumber == nil || t.SerialNumber.Sign() <= 0 || t.SerialNumber.BitLen() > 160 {
		return nil, errors.New("tsp: serialNumber must be positive and at most 160 bits (RFC 3161 §2.4.2)")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1ObjectIdentifier(t.Policy)
		addImprint(b, &t.MessageImprint)
		b.AddASN1BigInt(t.SerialNumber)
		b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes(appendGenTime(nil, t.GenTime)) })
		if t.Accuracy > 0 {
			addAccuracy(b, t.Accuracy)
		}
		if t.Ordering {
			b.AddASN1Boolean(true)
		}
		if t.Nonce != nil {
			b.AddASN1BigInt(t.Nonce)
		}
		if t.TSA != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(t.TSA) })
		}
		if len(t.Extensions) > 0 {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addExtensions(b, t.Extensions) })
		}
	})
	return b.Bytes()
}

// formatGenTime is GeneralizedTime in UTC with a fraction only when it is
// not zero and without trailing zeros (RFC 3161 §2.4.2).
func formatGenTime(t time.Time) string { return string(appendGenTime(nil, t)) }

// appendGenTime appends formatGenTime's form of t to b.
func appendGenTime(b []byte, t time.Time) []byte {
	t = t.UTC().Truncate(genTimePrecision)
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

func addAccuracy(b *cryptobyte.Builder, d time.Duration) {
	secs := int64(d / time.Second)
	millis := int64(d%time.Second) / int64(time.Millisecond)
	micros := int64(d%time.Millisecond) / int64(time.Microsecond)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if secs > 0 {
			b.AddASN1Int64(secs)
		}
		if millis > 0 {
			b.AddASN1Int64WithTag(millis, cbasn1.Tag(0).ContextSpecific())
		}
		if micros > 0 {
			b.AddASN1Int64WithTag(micros, cbasn1.Tag(1).ContextSpecific())
		}
	})
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
