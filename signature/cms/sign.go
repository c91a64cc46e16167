package cms

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
)

// DefaultUID is the default SM2 user ID (GM/T 0009 §10).
var DefaultUID = []byte("1234567812345678")

// Signer is one signer of a SignedData.
type Signer struct {
	Certificate *smx509.Certificate
	// Chain is carried in the message after the certificate (issuers, the
	// root optional), unless Options.NoCertificates.
	Chain []*smx509.Certificate
	// Key signs; any crypto.Signer (HSM keys included). SM2 keys must
	// accept *sm2.SM2SignerOption, as gmsm's and hsm's signers do.
	Key crypto.Signer
	// Digest defaults to SM3 for SM2 keys, SHA-384 for P-384 and SHA-256
	// otherwise. SM2 signers always use SM3.
	Digest *Hash
	// UID is the SM2 user ID (default DefaultUID).
	UID []byte
	// SM2OID is the signatureAlgorithm written for SM2: OIDSM2Sign
	// (default, GM/T 0010) or OIDSM2WithSM3.
	SM2OID asn1.ObjectIdentifier
	// UseSKI identifies the signer by subjectKeyIdentifier (SignerInfo
	// version 3). RFC 5652 family only.
	UseSKI bool
	// NoAttributes signs the content itself, without signed attributes
	// (allowed by RFC 5652 for id-data and by GM/T 0010). Not possible in
	// hash-only mode.
	NoAttributes bool
	// SigningTime, when not zero, is put in a signingTime attribute.
	SigningTime time.Time
	// SigningCertificateV2 adds the ESS signing-certificate-v2 attribute
	// naming the certificate (RFC 5035; CAdES-BES requires it).
	SigningCertificateV2 bool
	ExtraSigned          []Attribute
	Unsigned             []Attribute
}

// Options apply to the whole message.
type Options struct {
	Family Family
	// ContentType is the eContentType; nil means id-data of the family.
	ContentType asn1.ObjectIdentifier
	// Detached leaves the content out of the message.
	Detached bool
	// NoCertificates carries no certificate: the verifier must have them.
	NoCertificates bool
}

// DefaultDigest returns the digest a key signs with by default.
func DefaultDigest(pub crypto.PublicKey) *Hash {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch {
		case sm2.IsSM2PublicKey(k):
			return SM3
		case k.Curve == elliptic.P384():
			return SHA384
		case k.Curve == elliptic.P521():
			return SHA512
		}
	}
	return SHA256
}

// Sign returns the DER ContentInfo of a SignedData over content.
func Sign(content []byte, signers []*Signer, opts *Options) ([]byte, error) {
	sd, err := build(content, nil, nil, signers, opts)
	if err != nil {
		return nil, err
	}
	return sd.Marshal()
}

// SignDigest returns a detached SignedData from the digest of the content
// made with h (hash-only mode, for documents the signer never sees). Every
// signer uses h and signed attributes.
func SignDigest(h *Hash, digest []byte, signers []*Signer, opts *Options) ([]byte, error) {
	if h == nil || len(digest) != h.Size {
		return nil, errors.New("cms: digest length does not match its algorithm")
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.Detached = true
	sd, err := build(nil, h, digest, signers, &o)
	if err != nil {
		return nil, err
	}
	return sd.Marshal()
}

// New builds a SignedData without encoding it, so that unsigned
// attributes (time-stamps, counter-signatures) and revocation data can be
// added before Marshal.
func New(content []byte, signers []*Signer, opts *Options) (*SignedData, error) {
	return build(content, nil, nil, signers, opts)
}

// NewFromDigest is New in hash-only mode.
func NewFromDigest(h *Hash, digest []byte, signers []*Signer, opts *Options) (*SignedData, error) {
	if h == nil || len(digest) != h.Size {
		return nil, errors.New("cms: digest length does not match its algorithm")
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.Detached = true
	return build(nil, h, digest, signers, &o)
}

func build(content []byte, h *Hash, digest []byte, signers []*Signer, opts *Options) (*SignedData, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if len(signers) == 0 {
		return nil, errors.New("cms: no signer")
	}
	ct := o.ContentType
	if ct == nil {
		ct = o.Family.oid(OIDData)
	}
	sd := &SignedData{Family: o.Family, ContentType: ct, Detached: o.Detached, Version: 1}
	if !o.Detached {
		sd.Content = content
	}
	if o.Family == RFC5652 && !IsData(ct) {
		sd.Version = 3 // RFC 5652 §5.1
	}
	var digestOIDs []asn1.ObjectIdentifier
	for _, s := range signers {
		si, err := s.sign(content, h, digest, ct, o.Family)
		if err != nil {
			return nil, err
		}
		if si.Version == 3 {
			sd.Version = 3
		}
		sd.Signers = append(sd.Signers, si)
		if !slices.ContainsFunc(digestOIDs, si.Digest.OID.Equal) {
			digestOIDs = append(digestOIDs, si.Digest.OID)
		}
		if !o.NoCertificates {
			for _, c := range append([]*smx509.Certificate{s.Certificate}, s.Chain...) {
				sd.AddCertificate(c)
			}
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, oid := range digestOIDs {
			addAlgorithm(b, oid, nil)
		}
	})
	sd.rawDigestAlgs = b.BytesOrPanic()
	sd.rawEncap = encodeEncap(ct, sd.Content, sd.Detached)
	return sd, nil
}

func encodeEncap(ct asn1.ObjectIdentifier, content []byte, detached bool) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(ct)
		if !detached {
			b.AddASN1(tagC0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(content) })
		}
	})
	return b.BytesOrPanic()
}

func addAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, params []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if params != nil {
			b.AddBytes(params)
		}
	})
}

var derNull = []byte{0x05, 0x00}

// sign makes the SignerInfo of s over content (or its digest).
func (s *Signer) sign(content []byte, h *Hash, digest []byte, ct asn1.ObjectIdentifier, fam Family) (*SignerInfo, error) {
	if s.Certificate == nil || s.Key == nil {
		return nil, errors.New("cms: a signer needs a certificate and a key")
	}
	if !samePublicKey(s.Certificate.PublicKey, s.Key.Public()) {
		return nil, errors.New("cms: the key does not match the signer certificate")
	}
	dig := s.Digest
	if dig == nil {
		dig = DefaultDigest(s.Key.Public())
	}
	if h != nil {
		if s.Digest != nil && s.Digest != h {
			return nil, fmt.Errorf("cms: hash-only digest is %s, signer wants %s", h.Name, s.Digest.Name)
		}
		dig = h
	}
	si := &SignerInfo{Version: 1, Digest: dig, Issuer: s.Certificate.RawIssuer, Serial: s.Certificate.SerialNumber}
	sigAlg, sigParams, err := signatureAlgorithm(s.Key.Public(), dig, s.SM2OID)
	if err != nil {
		return nil, err
	}
	si.SignatureAlgorithm = sigAlg
	var b cryptobyte.Builder
	if s.UseSKI {
		if fam == GMT0010 {
			return nil, errors.New("cms: GM/T 0010 identifies signers by issuer and serial only")
		}
		if len(s.Certificate.SubjectKeyId) == 0 {
			return nil, errors.New("cms: signer certificate has no subject key identifier")
		}
		si.Version, si.Issuer, si.Serial, si.SKI = 3, nil, nil, s.Certificate.SubjectKeyId
		b.AddASN1(tagP0, func(b *cryptobyte.Builder) { b.AddBytes(si.SKI) })
	} else {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(s.Certificate.RawIssuer)
			b.AddASN1BigInt(s.Certificate.SerialNumber)
		})
	}
	si.rawSID = b.BytesOrPanic()
	si.rawDigestAlg = algorithmDER(dig.OID, nil)
	si.rawSigAlg = algorithmDER(sigAlg, sigParams)

	var msg []byte
	if s.NoAttributes {
		if h != nil {
			return nil, errors.New("cms: hash-only signing needs signed attributes")
		}
		if !IsData(ct) {
			return nil, errors.New("cms: a content type other than data needs signed attributes (RFC 5652 §5.3)")
		}
		msg = content
	} else {
		if digest == nil {
			digest = dig.Sum(content)
		}
		attrs := []Attribute{
			{Type: OIDAttrContentType, Values: [][]byte{mustMarshal(ct)}},
			{Type: OIDAttrMessageDigest, Values: [][]byte{mustMarshal(digest)}},
		}
		if !s.SigningTime.IsZero() {
			attrs = append(attrs, Attribute{Type: OIDAttrSigningTime, Values: [][]byte{marshalTime(s.SigningTime)}})
		}
		if s.SigningCertificateV2 {
			attrs = append(attrs, Attribute{Type: OIDAttrSigningCertV2, Values: [][]byte{signingCertificateV2(s.Certificate, dig)}})
		}
		for _, a := range s.ExtraSigned {
			for _, have := range attrs {
				if have.Type.Equal(a.Type) {
					return nil, fmt.Errorf("cms: signed attribute %s given twice", a.Type)
				}
			}
			attrs = append(attrs, a)
		}
		si.SignedAttrs = attrs
		si.RawSignedAttrs = encodeAttributes(tagC0, attrs)
		msg = setOf(si.RawSignedAttrs)
	}
	if si.Signature, err = signMessage(s.Key, dig, s.UID, msg); err != nil {
		return nil, err
	}
	si.UnsignedAttrs = append(si.UnsignedAttrs, s.Unsigned...)
	return si, nil
}

// setOf turns a [0] IMPLICIT attribute set into the explicit SET OF the
// signature covers (RFC 5652 §5.4).
func setOf(implicit []byte) []byte {
	msg := append([]byte(nil), implicit...)
	msg[0] = 0x31
	return msg
}

func algorithmDER(oid asn1.ObjectIdentifier, params []byte) []byte {
	var b cryptobyte.Builder
	addAlgorithm(&b, oid, params)
	return b.BytesOrPanic()
}

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err) // only called with values asn1 always encodes
	}
	return b
}

// marshalTime encodes a signingTime: UTCTime through 2049, GeneralizedTime
// from 2050 (RFC 5652 §11.3).
func marshalTime(t time.Time) []byte {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		return mustMarshal(t)
	}
	b, err := asn1.MarshalWithParams(t, "generalized")
	if err != nil {
		panic(err)
	}
	return b
}

// encodeAttributes encodes attrs as a DER SET OF with tag: elements in
// the order of their encodings (X.690 §11.6).
func encodeAttributes(tag cbasn1.Tag, attrs []Attribute) []byte {
	enc := make([][]byte, 0, len(attrs))
	for _, a := range attrs {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(a.Type)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				vals := slices.Clone(a.Values)
				slices.SortFunc(vals, bytes.Compare)
				for _, v := range vals {
					b.AddBytes(v)
				}
			})
		})
		enc = append(enc, b.BytesOrPanic())
	}
	slices.SortFunc(enc, bytes.Compare)
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, e := range enc {
			b.AddBytes(e)
		}
	})
	return b.BytesOrPanic()
}

// signatureAlgorithm is what SignerInfo.signatureAlgorithm says for a key:
// sm2sign or SM2-with-SM3 (GM/T 0010), ecdsa-with-SHA* (RFC 5753 §2.1.1,
// parameters absent), rsaEncryption with NULL (RFC 3370 §3.2, what OpenSSL
// writes).
func signatureAlgorithm(pub crypto.PublicKey, h *Hash, sm2OID asn1.ObjectIdentifier) (asn1.ObjectIdentifier, []byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			if h != SM3 {
				return nil, nil, errors.New("cms: SM2 signs with SM3")
			}
			if sm2OID == nil {
				return OIDSM2Sign, nil, nil
			}
			if !sm2OID.Equal(OIDSM2Sign) && !sm2OID.Equal(OIDSM2WithSM3) {
				return nil, nil, fmt.Errorf("cms: %s is not an SM2 signature OID", sm2OID)
			}
			return sm2OID, nil, nil
		}
		switch h {
		case SHA256:
			return oidECDSAWithSHA256, nil, nil
		case SHA384:
			return oidECDSAWithSHA384, nil, nil
		case SHA512:
			return oidECDSAWithSHA512, nil, nil
		}
	case *rsa.PublicKey:
		if h != SM3 {
			return oidRSAEncryption, derNull, nil
		}
	}
	return nil, nil, fmt.Errorf("cms: no signature algorithm for %T with %s", pub, h.Name)
}

// signMessage signs msg: SM2 over Z‖msg with the user ID (GM/T 0009 §8),
// ECDSA and RSA PKCS#1 v1.5 over the digest of msg.
func signMessage(key crypto.Signer, h *Hash, uid []byte, msg []byte) ([]byte, error) {
	if k, ok := key.Public().(*ecdsa.PublicKey); ok && sm2.IsSM2PublicKey(k) {
		opts := sm2.DefaultSM2SignerOpts
		if uid != nil && !bytes.Equal(uid, DefaultUID) {
			opts = sm2.NewSM2SignerOption(true, uid)
		}
		sig, err := key.Sign(rand.Reader, msg, opts)
		if err != nil {
			return nil, fmt.Errorf("cms: SM2 sign: %w", err)
		}
		return sig, nil
	}
	sig, err := key.Sign(rand.Reader, h.Sum(msg), h.Hash)
	if err != nil {
		return nil, fmt.Errorf("cms: sign: %w", err)
	}
	return sig, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	da, err1 := smx509.MarshalPKIXPublicKey(a)
	db, err2 := smx509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

// signingCertificateV2 encodes SigningCertificateV2 (RFC 5035 §3) with one
// ESSCertIDv2 for cert (hashAlgorithm omitted for the DEFAULT SHA-256).
func signingCertificateV2(cert *smx509.Certificate, h *Hash) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if h != SHA256 {
					addAlgorithm(b, h.OID, nil)
				}
				b.AddASN1OctetString(h.Sum(cert.Raw))
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(4).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(cert.RawIssuer)
						})
					})
					b.AddASN1BigInt(cert.SerialNumber)
				})
			})
		})
	})
	return b.BytesOrPanic()
}

// AddCertificate adds cert to the message unless it is there already.
func (sd *SignedData) AddCertificate(cert *smx509.Certificate) {
	for _, raw := range sd.RawCertificates {
		if bytes.Equal(raw, cert.Raw) {
			return
		}
	}
	sd.Certificates = append(sd.Certificates, cert)
	sd.RawCertificates = append(sd.RawCertificates, cert.Raw)
}

// AddCRL carries a DER CRL in SignedData.crls (long-term validation).
func (sd *SignedData) AddCRL(der []byte) {
	for _, r := range sd.Revocation {
		if bytes.Equal(r.CRL, der) {
			return
		}
	}
	sd.Revocation = append(sd.Revocation, RevocationInfo{CRL: der, Raw: der})
}

// AddOCSP carries a DER OCSPResponse in SignedData.crls as
// OtherRevocationInfoFormat id-ri-ocsp-response (RFC 5940 §2.2).
func (sd *SignedData) AddOCSP(der []byte) {
	for _, r := range sd.Revocation {
		if bytes.Equal(r.OCSP, der) {
			return
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(tagC1, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(OIDRevInfoOCSP)
		b.AddBytes(der)
	})
	sd.Revocation = append(sd.Revocation, RevocationInfo{OCSP: der, Raw: b.BytesOrPanic()})
}

// AddUnsigned adds an unsigned attribute to the signer. Attributes
// already there of the same type get the value appended.
func (s *SignerInfo) AddUnsigned(a Attribute) {
	for i := range s.UnsignedAttrs {
		if s.UnsignedAttrs[i].Type.Equal(a.Type) {
			s.UnsignedAttrs[i].Values = append(s.UnsignedAttrs[i].Values, a.Values...)
			return
		}
	}
	s.UnsignedAttrs = append(s.UnsignedAttrs, a)
}

// TimeStampImprint is what a signature time-stamp stamps: the hash of the
// signature value (RFC 3161 Appendix A).
func (s *SignerInfo) TimeStampImprint(h *Hash) []byte { return h.Sum(s.Signature) }

// AddSignatureTimeStamp adds a signature-time-stamp token (DER
// ContentInfo) as an unsigned attribute (CAdES-T).
func (s *SignerInfo) AddSignatureTimeStamp(token []byte) {
	s.AddUnsigned(Attribute{Type: OIDAttrSignatureTimeStamp, Values: [][]byte{token}})
}

// SignatureTimeStamps returns the signature-time-stamp tokens of s.
func (s *SignerInfo) SignatureTimeStamps() [][]byte { return s.unsigned(OIDAttrSignatureTimeStamp) }

// ArchiveTimeStamps returns the archive time-stamp tokens of s.
func (s *SignerInfo) ArchiveTimeStamps() [][]byte { return s.unsigned(OIDAttrArchiveTimeStampV2) }

func (s *SignerInfo) unsigned(t asn1.ObjectIdentifier) [][]byte {
	var out [][]byte
	for _, a := range s.UnsignedAttrs {
		if a.Type.Equal(t) {
			out = append(out, a.Values...)
		}
	}
	return out
}

// CounterSign adds a counter-signature by signer over target's signature
// value (RFC 5652 §11.4): signed attributes messageDigest (and
// signingTime), never contentType.
func CounterSign(target *SignerInfo, signer *Signer, fam Family) error {
	s := *signer
	s.NoAttributes = false
	for _, a := range s.ExtraSigned {
		if a.Type.Equal(OIDAttrContentType) {
			return errors.New("cms: a counter-signature has no contentType attribute")
		}
	}
	// sign() adds contentType; build with it, then drop it and re-sign:
	// simpler to build the attributes here.
	dig := s.Digest
	if dig == nil {
		dig = DefaultDigest(s.Key.Public())
	}
	s.Digest = dig
	si, err := s.sign(target.Signature, nil, nil, fam.oid(OIDData), fam)
	if err != nil {
		return err
	}
	attrs := si.SignedAttrs[1:] // drop contentType (always first as built)
	si.SignedAttrs = attrs
	si.RawSignedAttrs = encodeAttributes(tagC0, attrs)
	if si.Signature, err = signMessage(s.Key, dig, s.UID, setOf(si.RawSignedAttrs)); err != nil {
		return err
	}
	target.AddUnsigned(Attribute{Type: OIDAttrCounterSignature, Values: [][]byte{si.encode()}})
	target.CounterSigners = append(target.CounterSigners, si)
	return nil
}

func (s *SignerInfo) encode() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(s.Version)
		b.AddBytes(s.rawSID)
		b.AddBytes(s.rawDigestAlg)
		if s.RawSignedAttrs != nil {
			b.AddBytes(s.RawSignedAttrs)
		}
		b.AddBytes(s.rawSigAlg)
		b.AddASN1OctetString(s.Signature)
		if len(s.UnsignedAttrs) > 0 {
			b.AddBytes(encodeAttributes(tagC1, s.UnsignedAttrs))
		}
	})
	return b.BytesOrPanic()
}

func (sd *SignedData) encodeCerts() []byte {
	if len(sd.RawCertificates) == 0 {
		return nil
	}
	var b cryptobyte.Builder
	b.AddASN1(tagC0, func(b *cryptobyte.Builder) {
		for _, c := range sd.RawCertificates {
			b.AddBytes(c)
		}
	})
	return b.BytesOrPanic()
}

func (sd *SignedData) encodeCRLs() []byte {
	if len(sd.Revocation) == 0 {
		return nil
	}
	var b cryptobyte.Builder
	b.AddASN1(tagC1, func(b *cryptobyte.Builder) {
		for _, r := range sd.Revocation {
			b.AddBytes(r.Raw)
		}
	})
	return b.BytesOrPanic()
}

// Marshal encodes the SignedData as a DER ContentInfo of its family. The
// signed parts of parsed signers are kept byte for byte.
func (sd *SignedData) Marshal() ([]byte, error) {
	if len(sd.Signers) == 0 {
		return nil, errors.New("cms: no signer")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(sd.Family.oid(OIDSignedData))
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(sd.Version)
				b.AddBytes(sd.rawDigestAlgs)
				b.AddBytes(sd.rawEncap)
				b.AddBytes(sd.encodeCerts())
				b.AddBytes(sd.encodeCRLs())
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for _, s := range sd.Signers {
						b.AddBytes(s.encode())
					}
				})
			})
		})
	})
	return b.Bytes()
}
