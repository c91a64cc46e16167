package ocsp

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
)

// EncodeGETPath returns the last path segment of an OCSP GET request
// (RFC 6960 Appendix A.1, RFC 5019 §5): the base64 of the DER request,
// URL-encoded. '+', '/' and '=' are all percent-encoded, so no HTTP stack on
// the way can read them as a space, merge "//" or split the path (the cause
// of Let's Encrypt's May 2017 OCSP outage, RELIABILITY.md §1.2).
func EncodeGETPath(der []byte) string {
	b64 := base64.StdEncoding.EncodeToString(der)
	var sb strings.Builder
	for i := 0; i < len(b64); i++ {
		switch c := b64[i]; c {
		case '+':
			sb.WriteString("%2B")
		case '/':
			sb.WriteString("%2F")
		case '=':
			sb.WriteString("%3D")
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// DecodeGETPath returns the DER request carried in the raw (still escaped)
// path after the responder's prefix, e.g. the part of r.URL.EscapedPath()
// after "/ocsp/sm2-issuing/". It percent-decodes once and then decodes as
// DecodeGETValue does. The responder must hand over the path exactly as
// received: a router that cleans paths turns the "//" base64 can contain
// into "/", which no decoder can undo. Every error wraps
// ErrMalformedRequest.
func DecodeGETPath(escaped string) ([]byte, error) {
	if escaped == "" {
		return nil, reqErrf("empty GET request path")
	}
	// base64 of MaxRequestSize octets, percent-encoded in full at worst.
	if len(escaped) > 3*base64.StdEncoding.EncodedLen(MaxRequestSize) {
		return nil, reqErr(fmt.Errorf("%w: GET path of %d characters", ErrRequestTooLarge, len(escaped)))
	}
	s, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, reqErr(fmt.Errorf("GET path: %w", err))
	}
	return DecodeGETValue(s)
}

// DecodeGETValue returns the DER request in a GET path's tail already
// percent-decoded once (a router's path wildcard, provided the router kept
// "//" as it came; httpx.Mux.OpaqueTail does). It reads a space as the '+'
// a form decoder made of it and accepts base64 with or without padding.
// Every error wraps ErrMalformedRequest.
func DecodeGETValue(s string) ([]byte, error) {
	if s == "" {
		return nil, reqErrf("empty GET request path")
	}
	if len(s) > base64.StdEncoding.EncodedLen(MaxRequestSize) {
		return nil, reqErr(fmt.Errorf("%w: GET request of %d base64 characters", ErrRequestTooLarge, len(s)))
	}
	if strings.IndexByte(s, ' ') >= 0 {
		s = strings.ReplaceAll(s, " ", "+")
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	der, err := enc.DecodeString(s)
	if err != nil {
		return nil, reqErr(fmt.Errorf("GET path base64: %w", err))
	}
	return der, nil
}
