package profile

import (
	"bytes"
	"encoding/pem"
	"fmt"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxCSRSize bounds a PKCS #10 request. An RSA-8192 request with a few
// hundred SANs stays far below it.
const MaxCSRSize = 64 << 10

// pemSpace is the whitespace allowed around a PEM request; pemBegin starts
// a PEM block (RFC 7468 §2).
var (
	pemSpace = " \t\r\n"
	pemBegin = []byte("-----BEGIN")
)

// ParseCSR decodes a PKCS #10 request: DER, or exactly one PEM
// "CERTIFICATE REQUEST" block with nothing but whitespace before and after
// it. A second block, trailing text or text before the block is refused
// rather than dropped, so that what is certified is all that was sent
// (pem.Decode alone returns the first block and the rest). It reads the
// SubjectPublicKeyInfo first and runs the key lints on it, so a key on a
// curve the Go parser does not know (P-192, secp256k1) is refused as a
// key-policy error naming the curve rather than as a parse failure. It
// does not check the signature; Apply does.
func ParseCSR(data []byte) (*smx509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadCSR, len(data), MaxCSRSize)
	}
	der := data
	lead := bytes.TrimLeft(data, pemSpace)
	switch {
	case bytes.HasPrefix(lead, pemBegin):
		b, rest := pem.Decode(lead)
		if b == nil || (b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST") {
			return nil, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST", ErrBadCSR)
		}
		if extra := bytes.Trim(rest, pemSpace); len(extra) > 0 {
			return nil, fmt.Errorf("%w: %d bytes after the PEM CERTIFICATE REQUEST block; send one request in one block", ErrBadCSR, len(extra))
		}
		der = b.Bytes
	case len(data) > 0 && data[0] == 0x30:
		// DER: a CertificationRequest is a SEQUENCE (csrSPKI checks the rest).
	case bytes.Contains(data, pemBegin):
		return nil, fmt.Errorf("%w: text before the PEM block; send the CERTIFICATE REQUEST block alone", ErrBadCSR)
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
