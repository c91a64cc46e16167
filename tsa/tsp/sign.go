package tsp

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/der"
)

// Signer makes time-stamp tokens with one TSA certificate and its key.
// It is safe for concurrent use if Key is.
//
// Everything in a token that depends only on the certificate and the key
// (algorithm identifiers, the signer identifier, the certificate set, the
// contentType and signingCertificateV2 attributes) is encoded once, here;
// a token then costs one TSTInfo, one digest, two small attributes and the
// signature (see Sign).
type Signer struct {
	cert  *smx509.Certificate
	chain []*smx509.Certificate
	key   crypto.Signer
	// hash is the SignerInfo digest and the ESSCertIDv2 hash: SM3 for SM2
	// keys, SHA-256 (P-256, RSA) or SHA-384 (P-384) otherwise.
	hash *HashAlg
	// sm2 selects SM2 signing (Z and e = SM3(Z || attributes) made by the
	// key, GB/T 32918.2 §6.1) instead of signing a precomputed digest.
	sm2 bool
	// ess is the DER of the SigningCertificateV2 attribute value.
	ess []byte

	// Precomputed DER, see Sign.
	digestAlgs []byte // SET OF DigestAlgorithmIdentifier (one)
	digestAlg  []byte // DigestAlgorithmIdentifier
	sigAlg     []byte // SignatureAlgorithmIdentifier
	sid        []byte // IssuerAndSerialNumber
	certs      []byte // [0] IMPLICIT CertificateSet: the TSA certificate, then chain
	attrCT     []byte // Attribute contentType = id-ct-TSTInfo
	attrESS    []byte // Attribute signingCertificateV2
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
			s.hash, s.sm2 = SM3, true
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
	if err := s.precompute(); err != nil {
		return nil, err
	}
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

// signatureAlgorithm is the SignerInfo signatureAlgorithm and whether it
// has NULL parameters: 1.2.156.10197.1.301.1 (GM/T 0010) with NULL for
// SM2, as gmsm's pkcs7 writes it (INTEROP.md's tested construction);
// ecdsa-with-SHA* without parameters (RFC 5758 §3.2: "the encoding MUST
// omit the parameters field"); sha*WithRSAEncryption with NULL (RFC 4055
// §5).
func (s *Signer) signatureAlgorithm() (oid asn1.ObjectIdentifier, null bool, err error) {
	switch pub := s.key.Public().(type) {
	case *ecdsa.PublicKey:
		switch {
		case s.sm2:
			return oidSM2Sign, true, nil
		case s.hash == SHA384:
			return oidECDSAWithSHA384, false, nil
		case pub.Curve == elliptic.P521():
			return nil, false, errors.New("tsp: P-521 TSA keys are not supported")
		}
		return oidECDSAWithSHA256, false, nil
	case *rsa.PublicKey:
		return oidSHA256WithRSA, true, nil
	}
	return nil, false, fmt.Errorf("tsp: unsupported TSA key type %T", s.key.Public())
}

// precompute encodes the parts of every token that depend only on the
// certificate and the key.
func (s *Signer) precompute() error {
	sigOID, sigNull, err := s.signatureAlgorithm()
	if err != nil {
		return err
	}
	enc := func(f func(b *cryptobyte.Builder)) []byte {
		if err != nil {
			return nil
		}
		var b cryptobyte.Builder
		f(&b)
		var out []byte
		out, err = b.Bytes()
		return out
	}
	// The digest: SM3 with NULL as gmsm writes it; SHA-2 without
	// parameters (RFC 5754 §2: "MUST generate SHA2 AlgorithmIdentifiers
	// with absent parameters").
	s.digestAlg = enc(func(b *cryptobyte.Builder) { addAlgorithm(b, s.hash.OID, s.sm2) })
	s.digestAlgs = enc(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(s.digestAlg) })
	})
	s.sigAlg = enc(func(b *cryptobyte.Builder) { addAlgorithm(b, sigOID, sigNull) })
	// RFC 5652 §5.3: version 1 with issuerAndSerialNumber; the issuer is
	// copied from the certificate octet for octet.
	s.sid = enc(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(s.cert.RawIssuer)
			b.AddASN1BigInt(s.cert.SerialNumber)
		})
	})
	s.certs = enc(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddBytes(s.cert.Raw)
			for _, c := range s.chain {
				b.AddBytes(c.Raw)
			}
		})
	})
	s.attrCT = enc(func(b *cryptobyte.Builder) {
		addAttribute(b, oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(OIDTSTInfo) })
	})
	s.attrESS = enc(func(b *cryptobyte.Builder) {
		addAttribute(b, oidAttrSigningCertV2, func(b *cryptobyte.Builder) { b.AddBytes(s.ess) })
	})
	if err != nil {
		return fmt.Errorf("tsp: signer: %w", err)
	}
	return nil
}

// addAttribute writes an Attribute with one value (RFC 5652 §5.3).
func addAttribute(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, value func(b *cryptobyte.Builder)) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, value)
	})
}

var oidAttrSigningTime = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}

// Sign returns the DER ContentInfo of a token over info. withCerts puts the
// TSA certificate and its chain in the token (the request's certReq, RFC
// 3161 §2.4.1).
//
// The token is the construction INTEROP.md tested on gmsm's pkcs7, encoded
// here directly (TestSignMatchesPKCS7 checks it octet for octet against
// gmsm's, whose algorithm identifiers all have NULL parameters: here only
// SM2's, SM3's and RSA's do, see precompute): a ContentInfo id-signedData with SignedData version 3 (RFC 5652
// §5.1: eContentType is not id-data), one digest algorithm, the TSTInfo as
// eContent of type id-ct-TSTInfo, the certificates when asked, and one
// SignerInfo version 1 (issuerAndSerialNumber) whose signed attributes are
// contentType, signingTime (genTime to the second), messageDigest and
// signingCertificateV2 (RFC 5816), in DER SET OF order (X.690 §11.6).
func (s *Signer) Sign(info *TSTInfo, withCerts bool) ([]byte, error) {
	tst, err := info.Marshal()
	if err != nil {
		return nil, err
	}
	d := s.hash.New()
	d.Write(tst)
	var mdBuf [64]byte
	md := d.Sum(mdBuf[:0])

	// The signed attributes: the two per-token ones, then all four sorted
	// (DER SET OF). Everything is appended with lengths computed first:
	// the TSA makes one of these per token, and cryptobyte's closures
	// cost more than the encoding.
	var attrBuf [128]byte
	timeAttr := appendSigningTimeAttr(attrBuf[:0], info.GenTime)
	mdAttr := appendAttrHeader(timeAttr[len(timeAttr):], derOIDMessageDigest, tlvSize(len(md)))
	mdAttr = appendTLV(mdAttr, cbasn1.OCTET_STRING, md)
	attrs := [4][]byte{s.attrCT, timeAttr, mdAttr, s.attrESS}
	slices.SortFunc(attrs[:], bytes.Compare)
	// RFC 5652 §5.4: the signature covers the DER of the attributes with
	// the EXPLICIT SET OF tag; the SignerInfo carries them as [0] IMPLICIT.
	attrsLen := len(attrs[0]) + len(attrs[1]) + len(attrs[2]) + len(attrs[3])
	signed := appendHeader(make([]byte, 0, tlvSize(attrsLen)), cbasn1.SET, attrsLen)
	for _, a := range attrs {
		signed = append(signed, a...)
	}
	sig, err := s.signAttributes(signed)
	if err != nil {
		return nil, fmt.Errorf("tsp: sign: %w", err)
	}

	// ContentInfo { signedData, [0] SignedData { 3, digestAlgorithms,
	// EncapsulatedContentInfo { id-ct-TSTInfo, [0] OCTET STRING tst },
	// [0] certificates?, SignerInfos { SignerInfo { 1, sid, digestAlg,
	// [0] signedAttrs, signatureAlg, OCTET STRING sig } } } }
	siLen := len(derInt1) + len(s.sid) + len(s.digestAlg) + len(signed) + len(s.sigAlg) + tlvSize(len(sig))
	sisLen := tlvSize(siLen)
	eciLen := len(derOIDTSTInfo) + tlvSize(tlvSize(len(tst)))
	sdLen := len(derInt3) + len(s.digestAlgs) + tlvSize(eciLen) + tlvSize(sisLen)
	if withCerts {
		sdLen += len(s.certs)
	}
	ciLen := len(derOIDSignedData) + tlvSize(tlvSize(sdLen))
	b := make([]byte, 0, tlvSize(ciLen))
	b = appendHeader(b, cbasn1.SEQUENCE, ciLen)
	b = append(b, derOIDSignedData...)
	b = appendHeader(b, tagExplicit0, tlvSize(sdLen))
	b = appendHeader(b, cbasn1.SEQUENCE, sdLen)
	b = append(b, derInt3...)
	b = append(b, s.digestAlgs...)
	b = appendHeader(b, cbasn1.SEQUENCE, eciLen)
	b = append(b, derOIDTSTInfo...)
	b = appendHeader(b, tagExplicit0, tlvSize(len(tst)))
	b = appendTLV(b, cbasn1.OCTET_STRING, tst)
	if withCerts {
		b = append(b, s.certs...)
	}
	b = appendHeader(b, cbasn1.SET, sisLen)
	b = appendHeader(b, cbasn1.SEQUENCE, siLen)
	b = append(b, derInt1...)
	b = append(b, s.sid...)
	b = append(b, s.digestAlg...)
	b = append(b, 0xa0) // [0] IMPLICIT SignedAttributes
	b = append(b, signed[1:]...)
	b = append(b, s.sigAlg...)
	b = appendTLV(b, cbasn1.OCTET_STRING, sig)
	if len(b) != cap(b) {
		return nil, fmt.Errorf("tsp: encode token: %d octets written of %d computed", len(b), cap(b))
	}
	return b, nil
}

// DER pieces of every token.
var (
	derInt1             = []byte{0x02, 0x01, 0x01}
	derInt3             = []byte{0x02, 0x01, 0x03}
	derOIDSignedData    = mustOID(OIDSignedData)
	derOIDTSTInfo       = mustOID(OIDTSTInfo)
	derOIDSigningTime   = mustOID(oidAttrSigningTime)
	derOIDMessageDigest = mustOID(oidAttrMessageDigest)
	tagExplicit0        = cbasn1.Tag(0).Constructed().ContextSpecific()
)

// tlvSize is the size of an element with n octets of contents.
func tlvSize(n int) int { return der.TLVSize(n) }

// appendHeader appends the tag and the DER length of n octets of contents.
func appendHeader(b []byte, tag cbasn1.Tag, n int) []byte { return der.AppendHeader(b, byte(tag), n) }

// appendTLV appends one DER element.
func appendTLV(b []byte, tag cbasn1.Tag, contents []byte) []byte {
	return append(appendHeader(b, tag, len(contents)), contents...)
}

// appendAttrHeader appends the start of Attribute { oid, SET { value } }
// whose one value is valueLen octets of DER.
func appendAttrHeader(b, oid []byte, valueLen int) []byte {
	b = appendHeader(b, cbasn1.SEQUENCE, len(oid)+tlvSize(valueLen))
	b = append(b, oid...)
	return appendHeader(b, cbasn1.SET, valueLen)
}

// appendSigningTimeAttr appends the signingTime attribute of t: UTCTime
// from 1950 to 2049, GeneralizedTime otherwise (RFC 5652 §11.3).
func appendSigningTimeAttr(b []byte, t time.Time) []byte {
	t = t.UTC()
	tag, layout := cbasn1.GeneralizedTime, "20060102150405Z"
	if y := t.Year(); y >= 1950 && y < 2050 {
		tag, layout = cbasn1.UTCTime, "060102150405Z"
	}
	b = appendAttrHeader(b, derOIDSigningTime, tlvSize(len(layout)))
	b = appendHeader(b, tag, len(layout))
	return t.AppendFormat(b, layout)
}

// signAttributes signs the DER signed attributes: SM2 keys get the
// attributes themselves with the default user ID (the key computes Z and
// e = SM3(Z || attributes) once, GB/T 32918.2 §6.1; GM/T 0009 §8), other
// keys the digest with the signer's hash.
func (s *Signer) signAttributes(signed []byte) ([]byte, error) {
	if s.sm2 {
		return s.key.Sign(rand.Reader, signed, sm2.DefaultSM2SignerOpts)
	}
	d := s.hash.New()
	d.Write(signed)
	return s.key.Sign(rand.Reader, d.Sum(nil), s.hash.Hash)
}
