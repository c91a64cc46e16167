package cms

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"
)

// Seal returns a GM/T 0010 SignedAndEnvelopedData (content type
// 1.2.156.10197.6.1.4.2.4): content signed by signer (SM2 over the content
// itself with Z, no attributes, as GM/T 0010 §9 has it) and encrypted with
// SM4-CBC to SM2 (or RSA) recipients. RFC 5652 dropped this type; GM/T
// 0010 keeps it, and departments exchanging with GM-only systems need it.
// It is gmsm's pkcs7 construction, wrapped.
func Seal(content []byte, signer *smx509.Certificate, key crypto.Signer, chain, recipients []*smx509.Certificate) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("cms: no recipient")
	}
	if !samePublicKey(signer.PublicKey, key.Public()) {
		return nil, errors.New("cms: the key does not match the signer certificate")
	}
	sed, err := pkcs7.NewSMSignedAndEnvelopedData(content, pkcs.SM4CBC)
	if err != nil {
		return nil, fmt.Errorf("cms: seal: %w", err)
	}
	if err := sed.AddSigner(signer, key); err != nil {
		return nil, fmt.Errorf("cms: seal: sign: %w", err)
	}
	for _, c := range chain {
		sed.AddCertificate(c)
	}
	for _, r := range recipients {
		if err := sed.AddRecipient(r); err != nil {
			return nil, fmt.Errorf("cms: seal: recipient %s: %w", r.Subject, err)
		}
	}
	der, err := sed.Finish()
	if err != nil {
		return nil, fmt.Errorf("cms: seal: %w", err)
	}
	return der, nil
}

// Open decrypts a SignedAndEnvelopedData for the recipient cert with key
// and verifies its signature (not the signer's chain: the caller's). It
// returns the content and the signer's certificate. The input is checked
// to be one DER ContentInfo of that type within limits before gmsm's
// lenient parser sees it.
func Open(der []byte, cert *smx509.Certificate, key crypto.PrivateKey, limits *Limits) ([]byte, *smx509.Certificate, error) {
	l := limits.fill()
	if len(der) > l.MaxBytes {
		return nil, nil, overLimit("message of %d bytes (limit %d)", len(der), l.MaxBytes)
	}
	ct, _, err := ParseContentInfo(der)
	if err != nil {
		return nil, nil, err
	}
	if _, rfc, ok := familyOf(ct); !ok || !rfc.Equal(OIDSignedAndEnvelopedData) {
		return nil, nil, malformed("content type %s is not signedAndEnvelopedData", ct)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(p7.Certificates) > l.MaxCertificates || len(p7.Signers) > l.MaxSigners {
		return nil, nil, overLimit("too many certificates or signers")
	}
	if len(p7.Signers) != 1 {
		return nil, nil, malformed("a SignedAndEnvelopedData here has one signer, not %d", len(p7.Signers))
	}
	content, err := p7.DecryptAndVerify(cert, key, p7.Verify)
	if err != nil {
		if errors.Is(err, pkcs7.ErrUnsupportedAlgorithm) {
			return nil, nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
		}
		var mm *pkcs7.MessageDigestMismatchError
		if errors.As(err, &mm) {
			return nil, nil, verr(ReasonContentAltered, "%v", err)
		}
		return nil, nil, fmt.Errorf("cms: open: %w", err)
	}
	return content, p7.GetOnlySigner(), nil
}
