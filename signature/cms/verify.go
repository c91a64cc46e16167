package cms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Reason says why a signature does not verify. The verification service
// reports it as it is; each rejection has its own (ACCEPTANCE of issue 9).
type Reason string

// Reasons of VerifyError.
const (
	ReasonSignerNotFound   Reason = "signer-certificate-not-found"
	ReasonContentAltered   Reason = "content-altered"
	ReasonContentMissing   Reason = "content-missing"
	ReasonContentAttached  Reason = "content-attached"
	ReasonContentType      Reason = "content-type-mismatch"
	ReasonSignatureInvalid Reason = "signature-invalid"
	ReasonSM2UserID        Reason = "sm2-user-id-mismatch"
	ReasonAlgorithm        Reason = "algorithm-mismatch"
	ReasonAttributes       Reason = "signed-attributes-invalid"
)

// VerifyError is a signature that does not verify, with its reason.
type VerifyError struct {
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string { return "cms: " + string(e.Reason) + ": " + e.Detail }

func verr(r Reason, format string, args ...any) error {
	return &VerifyError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a *VerifyError in err's chain, or "".
func ReasonOf(err error) Reason {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return ""
}

// VerifyOptions say what a signer is verified against.
type VerifyOptions struct {
	// Content is the detached content. Digest, instead, is its digest with
	// the signer's digest algorithm (hash-only verification). Either is
	// for a detached message only: a message that carries its own content
	// (eContent) is refused with ReasonContentAttached when one is given,
	// since what it signs is not what the caller asked about.
	Content []byte
	Digest  []byte
	// Certificates complete those the message carries.
	Certificates []*smx509.Certificate
	// UID is the SM2 user ID the signer is expected to have used (default
	// DefaultUID).
	UID []byte
}

// FindCertificate returns the certificate s names among those of the
// message and extra.
func (sd *SignedData) FindCertificate(s *SignerInfo, extra []*smx509.Certificate) *smx509.Certificate {
	for _, c := range append(append([]*smx509.Certificate{}, sd.Certificates...), extra...) {
		if s.Identifies(c) {
			return c
		}
	}
	return nil
}

// Identifies reports whether s's signer identifier names cert.
func (s *SignerInfo) Identifies(cert *smx509.Certificate) bool {
	if s.SKI != nil {
		return bytes.Equal(cert.SubjectKeyId, s.SKI)
	}
	return bytes.Equal(cert.RawIssuer, s.Issuer) && cert.SerialNumber.Cmp(s.Serial) == 0
}

// SigningTime returns the signingTime attribute, if any. It is the
// signer's claim; only a time-stamp proves a time.
func (s *SignerInfo) SigningTime() (time.Time, bool) {
	v := Value(s.SignedAttrs, OIDAttrSigningTime)
	if v == nil {
		return time.Time{}, false
	}
	var t time.Time
	if rest, err := asn1.Unmarshal(v, &t); err != nil || len(rest) > 0 {
		return time.Time{}, false
	}
	return t, true
}

// Verify checks signer i cryptographically: its certificate is found, the
// signed attributes bind the content (contentType and messageDigest, RFC
// 5652 §11.1, §11.2), and the signature is valid. It returns the signer's
// certificate. The chain, validity and revocation are the caller's
// (package signature) to check.
func (sd *SignedData) Verify(i int, opts VerifyOptions) (*smx509.Certificate, error) {
	if i < 0 || i >= len(sd.Signers) {
		return nil, fmt.Errorf("cms: no signer %d", i)
	}
	s := sd.Signers[i]
	cert := sd.FindCertificate(s, opts.Certificates)
	if cert == nil {
		return nil, verr(ReasonSignerNotFound, "no certificate for the signer identifier")
	}
	if !sd.Detached && (opts.Content != nil || opts.Digest != nil) {
		// The caller's bytes are what must be verified; the message
		// signs its own (OpenSSL's PKCS7_verify refuses the same,
		// "content and data present").
		return nil, verr(ReasonContentAttached, "the message carries its own content (eContent): it does not sign the content or digest given")
	}
	content := sd.Content
	if sd.Detached {
		content = opts.Content
	}
	var digest []byte
	switch {
	case content != nil:
		digest = s.Digest.Sum(content)
	case opts.Digest != nil:
		if len(opts.Digest) != s.Digest.Size {
			return nil, verr(ReasonContentMissing, "the digest given is not %s", s.Digest.Name)
		}
		digest = opts.Digest
	case sd.Detached:
		return nil, verr(ReasonContentMissing, "detached signature: the content or its %s digest is needed", s.Digest.Name)
	default:
		content = []byte{} // attached empty content
		digest = s.Digest.Sum(nil)
	}
	if s.RawSignedAttrs == nil {
		if content == nil {
			return nil, verr(ReasonContentMissing, "a signer without signed attributes signs the content itself: hash-only verification is impossible")
		}
		if !IsData(sd.ContentType) {
			return nil, verr(ReasonAttributes, "content type %s needs signed attributes (RFC 5652 §5.3)", sd.ContentType)
		}
		return cert, verifyMessage(cert, s, content, opts.UID)
	}
	if err := checkAttributes(s, sd.ContentType, digest, false); err != nil {
		return nil, err
	}
	return cert, verifyMessage(cert, s, setOf(s.RawSignedAttrs), opts.UID)
}

// VerifyCounterSignature checks counter-signature j of signer s (RFC 5652
// §11.4) against the certificates given and those of sd.
func (sd *SignedData) VerifyCounterSignature(s *SignerInfo, j int, opts VerifyOptions) (*smx509.Certificate, error) {
	if j < 0 || j >= len(s.CounterSigners) {
		return nil, fmt.Errorf("cms: no counter-signature %d", j)
	}
	cs := s.CounterSigners[j]
	cert := sd.FindCertificate(cs, opts.Certificates)
	if cert == nil {
		return nil, verr(ReasonSignerNotFound, "no certificate for the counter-signer")
	}
	if cs.RawSignedAttrs == nil {
		return cert, verifyMessage(cert, cs, s.Signature, opts.UID)
	}
	if err := checkAttributes(cs, nil, cs.Digest.Sum(s.Signature), true); err != nil {
		return nil, err
	}
	return cert, verifyMessage(cert, cs, setOf(cs.RawSignedAttrs), opts.UID)
}

func checkAttributes(s *SignerInfo, ct asn1.ObjectIdentifier, digest []byte, counter bool) error {
	ctv := Value(s.SignedAttrs, OIDAttrContentType)
	switch {
	case counter && ctv != nil:
		return verr(ReasonAttributes, "a counter-signature must not have a contentType attribute (RFC 5652 §11.4)")
	case !counter && ctv == nil:
		return verr(ReasonAttributes, "no contentType attribute (RFC 5652 §5.3)")
	case !counter && !bytes.Equal(ctv, mustMarshal(ct)):
		return verr(ReasonContentType, "contentType attribute differs from eContentType")
	}
	md := Value(s.SignedAttrs, OIDAttrMessageDigest)
	if md == nil {
		return verr(ReasonAttributes, "no messageDigest attribute (RFC 5652 §5.3)")
	}
	in := cryptobyte.String(md)
	var got []byte
	if !in.ReadASN1Bytes(&got, cbasn1.OCTET_STRING) || !in.Empty() {
		return verr(ReasonAttributes, "malformed messageDigest")
	}
	if !bytes.Equal(got, digest) {
		return verr(ReasonContentAltered, "messageDigest does not match the %s of the content", s.Digest.Name)
	}
	return nil
}

// verifyMessage checks s.Signature over msg with cert's key. An SM2
// signature that fails with the expected user ID is tried with the default
// and the empty ID, only to name the reason precisely.
func verifyMessage(cert *smx509.Certificate, s *SignerInfo, msg []byte, uid []byte) error {
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(pub) {
			a := s.SignatureAlgorithm
			if !a.Equal(OIDSM2Sign) && !a.Equal(OIDSM2WithSM3) && !a.Equal(oidECPublicKey) {
				return verr(ReasonAlgorithm, "signature algorithm %s does not fit an SM2 key", a)
			}
			if s.Digest != SM3 {
				return verr(ReasonAlgorithm, "an SM2 signer digests with SM3, not %s", s.Digest.Name)
			}
			if uid == nil {
				uid = DefaultUID
			}
			if sm2.VerifyASN1WithSM2(pub, uid, msg, s.Signature) {
				return nil
			}
			for _, other := range [][]byte{DefaultUID, {}} {
				if !bytes.Equal(other, uid) && sm2.VerifyASN1WithSM2(pub, other, msg, s.Signature) {
					return verr(ReasonSM2UserID, "the SM2 signature was made with user ID %q, not the expected %q", other, uid)
				}
			}
			return verr(ReasonSignatureInvalid, "SM2 signature invalid")
		}
		want := map[*Hash]asn1.ObjectIdentifier{SHA256: oidECDSAWithSHA256, SHA384: oidECDSAWithSHA384, SHA512: oidECDSAWithSHA512}[s.Digest]
		if want == nil || !s.SignatureAlgorithm.Equal(want) && !s.SignatureAlgorithm.Equal(oidECPublicKey) {
			return verr(ReasonAlgorithm, "signature algorithm %s does not fit an ECDSA key with %s", s.SignatureAlgorithm, s.Digest.Name)
		}
		if !ecdsa.VerifyASN1(pub, s.Digest.Sum(msg), s.Signature) {
			return verr(ReasonSignatureInvalid, "ECDSA signature invalid")
		}
		return nil
	case *rsa.PublicKey:
		want := map[*Hash]asn1.ObjectIdentifier{SHA256: oidSHA256WithRSA, SHA384: oidSHA384WithRSA, SHA512: oidSHA512WithRSA}[s.Digest]
		if want == nil || !s.SignatureAlgorithm.Equal(want) && !s.SignatureAlgorithm.Equal(oidRSAEncryption) {
			return verr(ReasonAlgorithm, "signature algorithm %s does not fit an RSA key with %s", s.SignatureAlgorithm, s.Digest.Name)
		}
		if err := rsa.VerifyPKCS1v15(pub, s.Digest.Hash, s.Digest.Sum(msg), s.Signature); err != nil {
			return verr(ReasonSignatureInvalid, "RSA signature invalid")
		}
		return nil
	}
	return verr(ReasonAlgorithm, "unsupported signer key %T", cert.PublicKey)
}
