package profile

import (
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxCSRSize bounds a PKCS #10 request. An RSA-8192 request with a few
// hundred SANs stays far below it.
const MaxCSRSize = 64 << 10

// ParseCSR decodes a PKCS #10 request (DER, or PEM "CERTIFICATE REQUEST").
// It reads the SubjectPublicKeyInfo first and runs the key lints on it, so a
// key on a curve the Go parser does not know (P-192, secp256k1) is refused
// as a key-policy error naming the curve rather than as a parse failure.
// It does not check the signature; Apply does.
func ParseCSR(data []byte) (*smx509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadCSR, len(data), MaxCSRSize)
	}
	der := data
	if strings.HasPrefix(strings.TrimSpace(string(data[:min(len(data), 64)])), "-----BEGIN") {
		b, _ := pem.Decode(data)
		if b == nil || (b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST") {
			return nil, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST", ErrBadCSR)
		}
		der = b.Bytes
	}
	spki, err := csrSPKI(der)
	if err != nil {
		return nil, err
	}
	if err := checkSPKI(spki, nil, nil); err != nil {
		return nil, err
	}
	csr, err := smx509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if csr.Version != 0 {
		return nil, fmt.Errorf("%w: version %d, want 0 (v1, RFC 2986 §4.1)", ErrBadCSR, csr.Version)
	}
	return csr, nil
}

// csrSPKI returns the SubjectPublicKeyInfo element of a CertificationRequest
// (RFC 2986 §4.1).
func csrSPKI(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var req, info, spki cryptobyte.String
	var version int64
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !in.Empty() ||
		!req.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.ReadASN1Integer(&version) ||
		!info.SkipASN1(cbasn1.SEQUENCE) || // subject
		!info.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: not a PKCS #10 CertificationRequest", ErrBadCSR)
	}
	return spki, nil
}
