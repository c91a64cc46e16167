package tsp

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// PKIStatus values (RFC 3161 §2.4.2).
const (
	StatusGranted                = 0
	StatusGrantedWithMods        = 1
	StatusRejection              = 2
	StatusWaiting                = 3
	StatusRevocationWarning      = 4
	StatusRevocationNotification = 5
)

// Response is a TimeStampResp.
type Response struct {
	Status int
	// StatusString is the optional PKIFreeText (its first UTF8String).
	StatusString string
	// Failures holds the failInfo bits set; empty when failInfo is absent.
	Failures []FailureInfo
	// Token is the DER ContentInfo of the time-stamp token, nil when absent.
	Token []byte
}

// Granted returns the DER TimeStampResp carrying token.
func Granted(token []byte) []byte {
	b, _ := (&Response{Status: StatusGranted, Token: token}).Marshal()
	return b
}

// GrantedHeader returns the octets that precede a token of tokenLen
// octets in its granted TimeStampResp: Granted(token) is GrantedHeader
// followed by the token, without copying the token.
func GrantedHeader(tokenLen int) []byte {
	status := []byte{0x30, 0x03, 0x02, 0x01, StatusGranted} // PKIStatusInfo { granted }
	h := appendLength([]byte{0x30}, len(status)+tokenLen)
	return append(h, status...)
}

// appendLength appends a DER definite length (X.690 §8.1.3, §10.1).
func appendLength(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	var octets []byte
	for ; n > 0; n >>= 8 {
		octets = append([]byte{byte(n)}, octets...)
	}
	return append(append(b, 0x80|byte(len(octets))), octets...)
}

// Rejection returns the DER TimeStampResp rejecting a request with fail
// and text (RFC 3161 §2.4.2).
func Rejection(fail FailureInfo, text string) []byte {
	b, _ := (&Response{Status: StatusRejection, StatusString: text, Failures: []FailureInfo{fail}}).Marshal()
	return b
}

// Marshal returns the DER of the response.
func (r *Response) Marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(int64(r.Status))
			if r.StatusString != "" {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(r.StatusString)) })
				})
			}
			if len(r.Failures) > 0 {
				b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) { b.AddBytes(namedBits(r.Failures)) })
			}
		})
		if r.Token != nil {
			b.AddBytes(r.Token)
		}
	})
	return b.Bytes()
}

// namedBits encodes a named-bit BIT STRING's content in DER: trailing
// zero bits removed (X.690 §11.2.2), bit 0 the most significant of the
// first octet.
func namedBits(bits []FailureInfo) []byte {
	top := 0
	for _, f := range bits {
		top = max(top, int(f))
	}
	out := make([]byte, 1+top/8+1)
	for _, f := range bits {
		out[1+int(f)/8] |= 0x80 >> (int(f) % 8)
	}
	out[0] = byte(7 - top%8)
	return out
}

// ParseResponse parses a DER TimeStampResp strictly. The token, when
// present, is returned as DER for ParseToken.
func ParseResponse(der []byte) (*Response, error) {
	in := cryptobyte.String(der)
	var s, st cryptobyte.String
	if !in.ReadASN1(&s, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("tsp: TimeStampResp is not one DER SEQUENCE")
	}
	if !s.ReadASN1(&st, cbasn1.SEQUENCE) {
		return nil, errors.New("tsp: malformed PKIStatusInfo")
	}
	r := &Response{}
	var status int64
	if !st.ReadASN1Int64WithTag(&status, cbasn1.INTEGER) || status < 0 || status > 5 {
		return nil, errors.New("tsp: malformed PKIStatus")
	}
	r.Status = int(status)
	if st.PeekASN1Tag(cbasn1.SEQUENCE) {
		var text cryptobyte.String
		st.ReadASN1(&text, cbasn1.SEQUENCE)
		for first := true; !text.Empty(); first = false {
			var u cryptobyte.String
			if !text.ReadASN1(&u, cbasn1.UTF8String) || !utf8.Valid(u) {
				return nil, errors.New("tsp: malformed statusString")
			}
			if first {
				r.StatusString = string(u)
			}
		}
	}
	if st.PeekASN1Tag(cbasn1.BIT_STRING) {
		var bits cryptobyte.String
		st.ReadASN1(&bits, cbasn1.BIT_STRING)
		if len(bits) < 2 || bits[0] > 7 || bits[len(bits)-1]&(1<<bits[0]-1) != 0 || bits[len(bits)-1]&(1<<bits[0]) == 0 {
			return nil, errors.New("tsp: failInfo is not a DER named-bit BIT STRING")
		}
		for i, o := range bits[1:] {
			for j := 0; j < 8; j++ {
				if o&(0x80>>j) != 0 {
					r.Failures = append(r.Failures, FailureInfo(i*8+j))
				}
			}
		}
	}
	if !st.Empty() {
		return nil, errors.New("tsp: unexpected fields in PKIStatusInfo")
	}
	if !s.Empty() {
		var tok cryptobyte.String
		if !s.ReadASN1Element(&tok, cbasn1.SEQUENCE) || !s.Empty() {
			return nil, errors.New("tsp: malformed timeStampToken")
		}
		r.Token = []byte(tok)
	}
	granted := r.Status == StatusGranted || r.Status == StatusGrantedWithMods
	if granted != (r.Token != nil) {
		return nil, fmt.Errorf("tsp: status %d with%s a token", r.Status, map[bool]string{true: "", false: "out"}[r.Token != nil])
	}
	return r, nil
}
