package cms

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("cms: malformed message")

// ErrLimit is wrapped when a message exceeds Limits.
var ErrLimit = errors.New("cms: message exceeds a size limit")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func overLimit(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrLimit, fmt.Sprintf(format, args...))
}

// Limits bound what a parser accepts. Zero fields take the defaults of
// DefaultLimits.
type Limits struct {
	MaxBytes        int // whole message
	MaxCertificates int // certificates carried
	MaxRevocation   int // CRLs and OCSP responses carried
	MaxSigners      int // SignerInfos, and counter-signatures per signer
	MaxAttributes   int // attributes per set
	MaxDepth        int // counter-signature nesting
	MaxRecipients   int // RecipientInfos of an envelope
}

// DefaultLimits are generous for real messages and small enough that a
// hostile one cannot exhaust a node (ACCEPTANCE.md N-05).
var DefaultLimits = Limits{
	MaxBytes: 64 << 20, MaxCertificates: 64, MaxRevocation: 64, MaxSigners: 16,
	MaxAttributes: 32, MaxDepth: 3, MaxRecipients: 64,
}

func (l *Limits) fill() Limits {
	out := DefaultLimits
	if l == nil {
		return out
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&out.MaxBytes, l.MaxBytes)
	set(&out.MaxCertificates, l.MaxCertificates)
	set(&out.MaxRevocation, l.MaxRevocation)
	set(&out.MaxSigners, l.MaxSigners)
	set(&out.MaxAttributes, l.MaxAttributes)
	set(&out.MaxDepth, l.MaxDepth)
	set(&out.MaxRecipients, l.MaxRecipients)
	return out
}

var (
	tagC0 = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagC1 = cbasn1.Tag(1).Constructed().ContextSpecific()
	tagC2 = cbasn1.Tag(2).Constructed().ContextSpecific()
	tagP0 = cbasn1.Tag(0).ContextSpecific()
)

// Attribute is one attribute with the DER of each of its values.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values [][]byte
}

// Value returns the single value of the attribute of type t in attrs, or nil.
func Value(attrs []Attribute, t asn1.ObjectIdentifier) []byte {
	for _, a := range attrs {
		if a.Type.Equal(t) && len(a.Values) > 0 {
			return a.Values[0]
		}
	}
	return nil
}

// RevocationInfo is one entry of SignedData.crls: a CRL, or an OCSP
// response carried as OtherRevocationInfoFormat (RFC 5940).
type RevocationInfo struct {
	// CRL is the DER CertificateList, or nil.
	CRL []byte
	// OCSP is the DER OCSPResponse, or nil.
	OCSP []byte
	// Raw is the element as received (either choice).
	Raw []byte
}

// SignedData is a parsed (or built) SignedData.
type SignedData struct {
	Family  Family
	Version int64
	// ContentType is the eContentType (id-data of the family for plain data).
	ContentType asn1.ObjectIdentifier
	// Content is the eContent, nil when detached.
	Content  []byte
	Detached bool
	// Certificates carried, parsed; RawCertificates in the same order.
	Certificates    []*smx509.Certificate
	RawCertificates [][]byte
	Revocation      []RevocationInfo
	Signers         []*SignerInfo

	rawDigestAlgs []byte // DigestAlgorithmIdentifiers element
	rawEncap      []byte // EncapsulatedContentInfo element
}

// SignerInfo is one signer.
type SignerInfo struct {
	Version int64
	// The signer identifier: issuer and serial (version 1), or subject key
	// identifier (version 3).
	Issuer []byte
	Serial *big.Int
	SKI    []byte
	Digest *Hash
	// SignedAttrs are parsed from RawSignedAttrs, the [0] IMPLICIT element
	// as received; the signature covers it with the SET tag (RFC 5652 §5.4).
	SignedAttrs    []Attribute
	RawSignedAttrs []byte
	// SignatureAlgorithm is as received (both SM2 OIDs are accepted).
	SignatureAlgorithm asn1.ObjectIdentifier
	Signature          []byte
	UnsignedAttrs      []Attribute
	// CounterSigners are the counter-signatures among UnsignedAttrs
	// (RFC 5652 §11.4), parsed.
	CounterSigners []*SignerInfo

	rawSID, rawDigestAlg, rawSigAlg []byte
}

// ParseContentInfo splits a DER ContentInfo into its content type (of
// either family) and the DER of its [0] EXPLICIT content.
func ParseContentInfo(der []byte) (asn1.ObjectIdentifier, []byte, error) {
	in := cryptobyte.String(der)
	var ci, content cryptobyte.String
	var ct asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, malformed("not one DER ContentInfo")
	}
	if !ci.ReadASN1ObjectIdentifier(&ct) || !ci.ReadASN1(&content, tagC0) || !ci.Empty() {
		return nil, nil, malformed("ContentInfo")
	}
	return ct, content, nil
}

// Parse parses a DER ContentInfo holding a SignedData of either family.
func Parse(der []byte, limits *Limits) (*SignedData, error) {
	l := limits.fill()
	if len(der) > l.MaxBytes {
		return nil, overLimit("message of %d bytes (limit %d)", len(der), l.MaxBytes)
	}
	ct, content, err := ParseContentInfo(der)
	if err != nil {
		return nil, err
	}
	fam, rfc, ok := familyOf(ct)
	if !ok || !rfc.Equal(OIDSignedData) {
		return nil, malformed("content type %s is not signedData", ct)
	}
	var sd cryptobyte.String
	cs := cryptobyte.String(content)
	if !cs.ReadASN1(&sd, cbasn1.SEQUENCE) || !cs.Empty() {
		return nil, malformed("SignedData")
	}
	return parseSignedData(sd, fam, &l)
}

func parseSignedData(sd cryptobyte.String, fam Family, l *Limits) (*SignedData, error) {
	out := &SignedData{Family: fam}
	var digestAlgs, encap, eci, infos cryptobyte.String
	if !sd.ReadASN1Int64WithTag(&out.Version, cbasn1.INTEGER) || out.Version < 1 || out.Version > 5 {
		return nil, malformed("SignedData version")
	}
	if !sd.ReadASN1Element(&digestAlgs, cbasn1.SET) || !sd.ReadASN1Element(&encap, cbasn1.SEQUENCE) {
		return nil, malformed("SignedData digestAlgorithms or encapContentInfo")
	}
	out.rawDigestAlgs, out.rawEncap = digestAlgs, encap
	eci = encap
	if !eci.ReadASN1(&eci, cbasn1.SEQUENCE) || !eci.ReadASN1ObjectIdentifier(&out.ContentType) {
		return nil, malformed("encapContentInfo")
	}
	if eci.Empty() {
		out.Detached = true
	} else {
		var ec cryptobyte.String
		var octets []byte
		if !eci.ReadASN1(&ec, tagC0) || !eci.Empty() || !ec.ReadASN1Bytes(&octets, cbasn1.OCTET_STRING) || !ec.Empty() {
			return nil, malformed("eContent (a constructed or BER OCTET STRING is not DER)")
		}
		out.Content = octets
	}
	if sd.PeekASN1Tag(tagC0) {
		var certs cryptobyte.String
		sd.ReadASN1(&certs, tagC0)
		for !certs.Empty() {
			if len(out.Certificates) == l.MaxCertificates {
				return nil, overLimit("more than %d certificates", l.MaxCertificates)
			}
			var c cryptobyte.String
			var tag cbasn1.Tag
			if !certs.ReadAnyASN1Element(&c, &tag) {
				return nil, malformed("certificates")
			}
			if tag != cbasn1.SEQUENCE {
				continue // attribute and other certificate formats are carried, not used
			}
			cert, err := smx509.ParseCertificate(c)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate: %w", ErrMalformed, err)
			}
			out.Certificates = append(out.Certificates, cert)
			out.RawCertificates = append(out.RawCertificates, []byte(c))
		}
	}
	if sd.PeekASN1Tag(tagC1) {
		var crls cryptobyte.String
		sd.ReadASN1(&crls, tagC1)
		for !crls.Empty() {
			if len(out.Revocation) == l.MaxRevocation {
				return nil, overLimit("more than %d revocation entries", l.MaxRevocation)
			}
			var e cryptobyte.String
			var tag cbasn1.Tag
			if !crls.ReadAnyASN1Element(&e, &tag) {
				return nil, malformed("crls")
			}
			ri := RevocationInfo{Raw: []byte(e)}
			switch tag {
			case cbasn1.SEQUENCE:
				ri.CRL = ri.Raw
			case tagC1: // [1] IMPLICIT OtherRevocationInfoFormat
				var body cryptobyte.String
				var format asn1.ObjectIdentifier
				if !e.ReadASN1(&body, tagC1) || !body.ReadASN1ObjectIdentifier(&format) {
					return nil, malformed("OtherRevocationInfoFormat")
				}
				if format.Equal(OIDRevInfoOCSP) {
					var resp cryptobyte.String
					if !body.ReadASN1Element(&resp, cbasn1.SEQUENCE) || !body.Empty() {
						return nil, malformed("OCSP revocation info")
					}
					ri.OCSP = []byte(resp)
				}
			default:
				return nil, malformed("crls entry with tag %v", tag)
			}
			out.Revocation = append(out.Revocation, ri)
		}
	}
	if !sd.ReadASN1(&infos, cbasn1.SET) || !sd.Empty() {
		return nil, malformed("signerInfos")
	}
	for !infos.Empty() {
		if len(out.Signers) == l.MaxSigners {
			return nil, overLimit("more than %d signers", l.MaxSigners)
		}
		var si cryptobyte.String
		if !infos.ReadASN1(&si, cbasn1.SEQUENCE) {
			return nil, malformed("SignerInfo")
		}
		s, err := parseSignerInfo(si, l, 0)
		if err != nil {
			return nil, err
		}
		out.Signers = append(out.Signers, s)
	}
	// Every signer's digest algorithm is announced in digestAlgorithms
	// (RFC 5652 §5.1), so that one-pass verifiers can hash as they read.
	announced := map[string]bool{}
	if !digestAlgs.ReadASN1(&digestAlgs, cbasn1.SET) {
		return nil, malformed("digestAlgorithms")
	}
	for !digestAlgs.Empty() {
		oid, _, err := readAlgorithm(&digestAlgs)
		if err != nil {
			return nil, malformed("digestAlgorithms")
		}
		announced[oid.String()] = true
	}
	for _, s := range out.Signers {
		if !announced[s.Digest.OID.String()] {
			return nil, malformed("signer digest %s not listed in digestAlgorithms", s.Digest.Name)
		}
	}
	return out, nil
}

// readAlgorithm reads an AlgorithmIdentifier and returns its OID and the
// DER of its parameters (nil when absent).
func readAlgorithm(s *cryptobyte.String) (asn1.ObjectIdentifier, []byte, error) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, errors.New("malformed AlgorithmIdentifier")
	}
	if alg.Empty() {
		return oid, nil, nil
	}
	var params cryptobyte.String
	var tag cbasn1.Tag
	if !alg.ReadAnyASN1Element(&params, &tag) || !alg.Empty() {
		return nil, nil, errors.New("malformed AlgorithmIdentifier parameters")
	}
	return oid, []byte(params), nil
}

func parseSignerInfo(si cryptobyte.String, l *Limits, depth int) (*SignerInfo, error) {
	s := &SignerInfo{}
	if !si.ReadASN1Int64WithTag(&s.Version, cbasn1.INTEGER) || (s.Version != 1 && s.Version != 3) {
		return nil, malformed("SignerInfo version")
	}
	var sid cryptobyte.String
	switch {
	case s.Version == 1 && si.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias, name cryptobyte.String
		s.Serial = new(big.Int)
		si.ReadASN1Element(&sid, cbasn1.SEQUENCE)
		ias = sid
		if !ias.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Integer(s.Serial) || !ias.Empty() {
			return nil, malformed("issuerAndSerialNumber")
		}
		s.Issuer = []byte(name)
	case s.Version == 3 && si.PeekASN1Tag(tagP0):
		si.ReadASN1Element(&sid, tagP0)
		ski := sid
		if !ski.ReadASN1((*cryptobyte.String)(&s.SKI), tagP0) || len(s.SKI) == 0 {
			return nil, malformed("subjectKeyIdentifier")
		}
	default:
		return nil, malformed("SignerInfo version and signer identifier disagree (RFC 5652 §5.3)")
	}
	s.rawSID = sid
	var dalg cryptobyte.String
	if !si.ReadASN1Element(&dalg, cbasn1.SEQUENCE) {
		return nil, malformed("SignerInfo digestAlgorithm")
	}
	s.rawDigestAlg = dalg
	oid, _, err := readAlgorithm(&dalg)
	if err != nil {
		return nil, malformed("SignerInfo digestAlgorithm")
	}
	if s.Digest = HashByOID(oid); s.Digest == nil {
		return nil, malformed("digest algorithm %s not supported", oid)
	}
	if si.PeekASN1Tag(tagC0) {
		var attrs cryptobyte.String
		si.ReadASN1Element(&attrs, tagC0)
		s.RawSignedAttrs = attrs
		inner := attrs
		inner.ReadASN1(&inner, tagC0)
		if s.SignedAttrs, err = parseAttributes(inner, l, true); err != nil {
			return nil, fmt.Errorf("signed attributes: %w", err)
		}
		if len(s.SignedAttrs) == 0 {
			return nil, malformed("empty signed attributes")
		}
	}
	var salg cryptobyte.String
	if !si.ReadASN1Element(&salg, cbasn1.SEQUENCE) {
		return nil, malformed("SignerInfo signatureAlgorithm")
	}
	s.rawSigAlg = salg
	if s.SignatureAlgorithm, _, err = readAlgorithm(&salg); err != nil {
		return nil, malformed("SignerInfo signatureAlgorithm")
	}
	if !si.ReadASN1Bytes(&s.Signature, cbasn1.OCTET_STRING) || len(s.Signature) == 0 {
		return nil, malformed("SignerInfo signature")
	}
	if si.PeekASN1Tag(tagC1) {
		var attrs cryptobyte.String
		si.ReadASN1(&attrs, tagC1)
		if s.UnsignedAttrs, err = parseAttributes(attrs, l, false); err != nil {
			return nil, fmt.Errorf("unsigned attributes: %w", err)
		}
	}
	if !si.Empty() {
		return nil, malformed("trailing data in SignerInfo")
	}
	for _, a := range s.UnsignedAttrs {
		if !a.Type.Equal(OIDAttrCounterSignature) {
			continue
		}
		if depth+1 > l.MaxDepth {
			return nil, overLimit("counter-signatures nested deeper than %d", l.MaxDepth)
		}
		for _, v := range a.Values {
			if len(s.CounterSigners) == l.MaxSigners {
				return nil, overLimit("more than %d counter-signatures", l.MaxSigners)
			}
			in := cryptobyte.String(v)
			var csi cryptobyte.String
			if !in.ReadASN1(&csi, cbasn1.SEQUENCE) || !in.Empty() {
				return nil, malformed("counterSignature")
			}
			cs, err := parseSignerInfo(csi, l, depth+1)
			if err != nil {
				return nil, fmt.Errorf("counterSignature: %w", err)
			}
			s.CounterSigners = append(s.CounterSigners, cs)
		}
	}
	return s, nil
}

// parseAttributes reads a SET OF Attribute. Signed attributes have each
// type once with exactly one value for the types RFC 5652 §11 defines.
func parseAttributes(set cryptobyte.String, l *Limits, signed bool) ([]Attribute, error) {
	var out []Attribute
	seen := map[string]bool{}
	for !set.Empty() {
		if len(out) == l.MaxAttributes {
			return nil, overLimit("more than %d attributes", l.MaxAttributes)
		}
		var a, vals cryptobyte.String
		var at Attribute
		if !set.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&at.Type) || !a.ReadASN1(&vals, cbasn1.SET) || !a.Empty() {
			return nil, malformed("attribute")
		}
		for !vals.Empty() {
			if len(at.Values) == l.MaxSigners {
				return nil, overLimit("attribute %s with more than %d values", at.Type, l.MaxSigners)
			}
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !vals.ReadAnyASN1Element(&v, &tag) {
				return nil, malformed("attribute %s value", at.Type)
			}
			at.Values = append(at.Values, []byte(v))
		}
		if len(at.Values) == 0 {
			return nil, malformed("attribute %s without values", at.Type)
		}
		if signed {
			if seen[at.Type.String()] {
				return nil, malformed("signed attribute %s repeated (RFC 5652 §5.3)", at.Type)
			}
			if len(at.Values) != 1 {
				return nil, malformed("signed attribute %s must have one value", at.Type)
			}
		}
		seen[at.Type.String()] = true
		out = append(out, at)
	}
	return out, nil
}
