package tsp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Signer makes time-stamp tokens with one TSA certificate and its key.
// It is safe for concurrent use if Key is.
type Signer struct {
	cert  *smx509.Certificate
	chain []*smx509.Certificate
	key   crypto.Signer
	// hash is the SignerInfo digest and the ESSCertIDv2 hash: SM3 for SM2
	// keys, SHA-256 (P-256, RSA) or SHA-384 (P-384) otherwise.
	hash *HashAlg
	// ess is the DER of the SigningCertificateV2 attribute value.
	ess []byte
}

// NewSigner returns a signer for the TSA certificate cert, whose issuers
// (without the root, or with it: they are sent as given) are chain, and
// its key. The key must match the certificate.
func NewSigner(cert *smx509.Certificate, chain []*smx509.Certificate, key crypto.Signer) (*Signer, error) {
	if cert == nil || key == nil {
		return nil, errors.New("tsp: signer needs a certificate and a key")
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, errors.New("tsp: the key does not match the TSA certificate")
	}
	s := &Signer{cert: cert, chain: chain, key: key}
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch {
		case sm2.IsSM2PublicKey(pub):
			s.hash = SM3
		case pub.Curve == elliptic.P384():
			s.hash = SHA384
		default:
			s.hash = SHA256
		}
	case *rsa.PublicKey:
		s.hash = SHA256
	default:
		return nil, fmt.Errorf("tsp: unsupported TSA key type %T", pub)
	}
	ess, err := signingCertificateV2(cert, s.hash)
	if err != nil {
		return nil, err
	}
	s.ess = ess
	return s, nil
}

// Certificate returns the TSA certificate.
func (s *Signer) Certificate() *smx509.Certificate { return s.cert }

// Hash returns the signer's digest algorithm.
func (s *Signer) Hash() *HashAlg { return s.hash }

func samePublicKey(a, b crypto.PublicKey) bool {
	da, err1 := smx509.MarshalPKIXPublicKey(a)
	db, err2 := smx509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && string(da) == string(db)
}

// signingCertificateV2 encodes SigningCertificateV2 (RFC 5816 §2.2.1,
// RFC 5035 §3) with one ESSCertIDv2 for cert: its hash with h
// (hashAlgorithm omitted for the DEFAULT SHA-256) and its issuerSerial.
func signingCertificateV2(cert *smx509.Certificate, h *HashAlg) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SigningCertificateV2
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // certs
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ESSCertIDv2
				if h != SHA256 {
					addAlgorithm(b, h.OID, false)
				}
				b.AddASN1OctetString(h.Sum(cert.Raw))
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerSerial
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
						b.AddASN1(cbasn1.Tag(4).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(cert.RawIssuer) // directoryName [4] EXPLICIT Name
						})
					})
					b.AddASN1BigInt(cert.SerialNumber)
				})
			})
		})
	})
	return b.Bytes()
}

// Sign returns the DER ContentInfo of a token over info. withCerts puts the
// TSA certificate and its chain in the token (the request's certReq, RFC
// 3161 §2.4.1).
//
// The construction is the one INTEROP.md tested on gmsm's pkcs7:
// eContentType id-ct-TSTInfo set before signing (the contentType signed
// attribute is taken from it), SignedData version 3 (RFC 5652 §5.1),
// signingCertificateV2 as an extra signed attribute.
func (s *Signer) Sign(info *TSTInfo, withCerts bool) ([]byte, error) {
	tst, err := info.Marshal()
	if err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(tst)
	if err != nil {
		return nil, fmt.Errorf("tsp: signed data: %w", err)
	}
	sd.SetDigestAlgorithm(s.hash.OID)
	raw := sd.GetSignedData()
	raw.ContentInfo.ContentType = OIDTSTInfo
	raw.Version = 3
	cfg := pkcs7.SignerInfoConfig{
		ExtraSignedAttributes: []pkcs7.Attribute{{Type: oidAttrSigningCertV2, Value: asn1.RawValue{FullBytes: s.ess}}},
		SkipCertificates:      !withCerts,
	}
	if err := sd.AddSigner(s.cert, s.key, cfg); err != nil {
		return nil, fmt.Errorf("tsp: sign: %w", err)
	}
	if withCerts {
		for _, c := range s.chain {
			sd.AddCertificate(c)
		}
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("tsp: encode token: %w", err)
	}
	return der, nil
}
