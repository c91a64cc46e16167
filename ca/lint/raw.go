package lint

import (
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// rawCert is a certificate read structurally, without the semantic checks
// smx509.ParseCertificate makes. The parser refuses several of the faults the
// lints must report (negative or non-minimal serials, duplicate extensions,
// mismatched algorithm identifiers, critical AKI), so the lints read the DER
// themselves and only use the smx509 view where it parsed.
type rawCert struct {
	tbs []byte // TBSCertificate element, tag and length included

	versionPresent bool
	version        []byte // content of the INTEGER inside [0]

	serial []byte // content octets of the serialNumber INTEGER

	innerAlg []byte // TBSCertificate.signature element
	outerAlg []byte // Certificate.signatureAlgorithm element

	issuer  []byte // Name element
	subject []byte // Name element

	notBefore rawTime
	notAfter  rawTime

	spki []byte // SubjectPublicKeyInfo element

	issuerUID  bool
	subjectUID bool

	extsPresent bool
	exts        []rawExt
}

// rawTime is one Time CHOICE of the validity.
type rawTime struct {
	tag     cbasn1.Tag
	content []byte
}

// rawExt is one Extension.
type rawExt struct {
	id              asn1.ObjectIdentifier
	critical        bool
	criticalPresent bool // DEFAULT FALSE encoded explicitly (a DER fault)
	value           []byte
}

var errMalformed = errors.New("malformed certificate")

// parseRaw reads the Certificate structure of RFC 5280 §4.1.
func parseRaw(der []byte) (*rawCert, error) {
	in := cryptobyte.String(der)
	var cert cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("certificate: %w", errMalformed)
	}
	r := &rawCert{}
	var tbsElem cryptobyte.String
	if !cert.ReadASN1Element(&tbsElem, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("tbsCertificate: %w", errMalformed)
	}
	r.tbs = tbsElem
	var outer cryptobyte.String
	if !cert.ReadASN1Element(&outer, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("signatureAlgorithm: %w", errMalformed)
	}
	r.outerAlg = outer
	var sig cryptobyte.String
	if !cert.ReadASN1(&sig, cbasn1.BIT_STRING) || !cert.Empty() {
		return nil, fmt.Errorf("signatureValue: %w", errMalformed)
	}

	var tbs cryptobyte.String
	if !tbsElem.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("tbsCertificate: %w", errMalformed)
	}
	var ver cryptobyte.String
	if !tbs.ReadOptionalASN1(&ver, &r.versionPresent, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, fmt.Errorf("version: %w", errMalformed)
	}
	if r.versionPresent {
		var v cryptobyte.String
		if !ver.ReadASN1(&v, cbasn1.INTEGER) || !ver.Empty() {
			return nil, fmt.Errorf("version: %w", errMalformed)
		}
		r.version = v
	}
	var serial cryptobyte.String
	if !tbs.ReadASN1(&serial, cbasn1.INTEGER) {
		return nil, fmt.Errorf("serialNumber: %w", errMalformed)
	}
	r.serial = serial
	var inner cryptobyte.String
	if !tbs.ReadASN1Element(&inner, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("signature: %w", errMalformed)
	}
	r.innerAlg = inner
	var issuer, subject, spki cryptobyte.String
	if !tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("issuer: %w", errMalformed)
	}
	r.issuer = issuer
	var validity cryptobyte.String
	if !tbs.ReadASN1(&validity, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("validity: %w", errMalformed)
	}
	for _, t := range []*rawTime{&r.notBefore, &r.notAfter} {
		var c cryptobyte.String
		if !validity.ReadAnyASN1(&c, &t.tag) {
			return nil, fmt.Errorf("validity: %w", errMalformed)
		}
		t.content = c
	}
	if !validity.Empty() {
		return nil, fmt.Errorf("validity: %w", errMalformed)
	}
	if !tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("subject: %w", errMalformed)
	}
	r.subject = subject
	if !tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("subjectPublicKeyInfo: %w", errMalformed)
	}
	r.spki = spki
	if tbs.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) || tbs.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific().Constructed()) {
		r.issuerUID = true
		var skip cryptobyte.String
		var tag cbasn1.Tag
		tbs.ReadAnyASN1(&skip, &tag)
	}
	if tbs.PeekASN1Tag(cbasn1.Tag(2).ContextSpecific()) || tbs.PeekASN1Tag(cbasn1.Tag(2).ContextSpecific().Constructed()) {
		r.subjectUID = true
		var skip cryptobyte.String
		var tag cbasn1.Tag
		tbs.ReadAnyASN1(&skip, &tag)
	}
	var exts cryptobyte.String
	if !tbs.ReadOptionalASN1(&exts, &r.extsPresent, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return nil, fmt.Errorf("extensions: %w", errMalformed)
	}
	if r.extsPresent {
		var seq cryptobyte.String
		if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) || !exts.Empty() {
			return nil, fmt.Errorf("extensions: %w", errMalformed)
		}
		for !seq.Empty() {
			var e cryptobyte.String
			if !seq.ReadASN1(&e, cbasn1.SEQUENCE) {
				return nil, fmt.Errorf("extension: %w", errMalformed)
			}
			var x rawExt
			if !e.ReadASN1ObjectIdentifier(&x.id) {
				return nil, fmt.Errorf("extension id: %w", errMalformed)
			}
			if e.PeekASN1Tag(cbasn1.BOOLEAN) {
				x.criticalPresent = true
				if !e.ReadASN1Boolean(&x.critical) {
					return nil, fmt.Errorf("extension %s critical: %w", x.id, errMalformed)
				}
			}
			var v cryptobyte.String
			if !e.ReadASN1(&v, cbasn1.OCTET_STRING) || !e.Empty() {
				return nil, fmt.Errorf("extension %s value: %w", x.id, errMalformed)
			}
			x.value = v
			r.exts = append(r.exts, x)
		}
	}
	if !tbs.Empty() {
		return nil, fmt.Errorf("tbsCertificate: trailing data: %w", errMalformed)
	}
	return r, nil
}

// ext returns the first extension with the given id.
func (r *rawCert) ext(id asn1.ObjectIdentifier) (rawExt, bool) {
	for _, e := range r.exts {
		if e.id.Equal(id) {
			return e, true
		}
	}
	return rawExt{}, false
}

// rawAttr is one AttributeTypeAndValue of a Name.
type rawAttr struct {
	typ     asn1.ObjectIdentifier
	tag     cbasn1.Tag
	value   []byte
	rdnSize int // number of attributes in the enclosing RDN
}

// parseName reads a Name (RDNSequence, RFC 5280 §4.1.2.4) keeping each
// value's string type.
func parseName(der []byte) ([]rawAttr, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("name: %w", errMalformed)
	}
	var out []rawAttr
	for !seq.Empty() {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) {
			return nil, fmt.Errorf("name: RDN: %w", errMalformed)
		}
		start := len(out)
		for !set.Empty() {
			var atv cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) {
				return nil, fmt.Errorf("name: attribute: %w", errMalformed)
			}
			var a rawAttr
			if !atv.ReadASN1ObjectIdentifier(&a.typ) {
				return nil, fmt.Errorf("name: attribute type: %w", errMalformed)
			}
			var v cryptobyte.String
			if !atv.ReadAnyASN1(&v, &a.tag) || !atv.Empty() {
				return nil, fmt.Errorf("name: attribute value: %w", errMalformed)
			}
			a.value = v
			out = append(out, a)
		}
		if len(out) == start {
			return nil, fmt.Errorf("name: empty RDN: %w", errMalformed)
		}
		for i := start; i < len(out); i++ {
			out[i].rdnSize = len(out) - start
		}
	}
	return out, nil
}

// generalName is one GeneralName (RFC 5280 §4.2.1.6).
type generalName struct {
	tag   int // context tag number: 1 rfc822Name, 2 dNSName, 6 URI, 7 iPAddress ...
	value []byte
}

func parseGeneralNames(der []byte) ([]generalName, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errMalformed
	}
	var out []generalName
	for !seq.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&v, &tag) {
			return nil, errMalformed
		}
		if tag&0xc0 != 0x80 { // context-specific class
			return nil, errMalformed
		}
		out = append(out, generalName{tag: int(tag & 0x1f), value: v})
	}
	return out, nil
}

// parseKeyUsage returns the KeyUsage bits as smx509.KeyUsage numbering
// (bit 0 digitalSignature = 1 << 0).
func parseKeyUsage(der []byte) (int, bool) {
	var bs asn1.BitString
	rest, err := asn1.Unmarshal(der, &bs)
	if err != nil || len(rest) != 0 {
		return 0, false
	}
	u := 0
	for i := 0; i < 9; i++ {
		if bs.At(i) != 0 {
			u |= 1 << uint(i)
		}
	}
	return u, true
}

// basicConstraints is the parsed BasicConstraints (RFC 5280 §4.2.1.9).
type basicConstraints struct {
	ca         bool
	pathLen    int
	hasPathLen bool
}

func parseBasicConstraints(der []byte) (basicConstraints, bool) {
	var bc basicConstraints
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return bc, false
	}
	if seq.PeekASN1Tag(cbasn1.BOOLEAN) {
		if !seq.ReadASN1Boolean(&bc.ca) {
			return bc, false
		}
	}
	if seq.PeekASN1Tag(cbasn1.INTEGER) {
		if !seq.ReadASN1Integer(&bc.pathLen) || bc.pathLen < 0 {
			return bc, false
		}
		bc.hasPathLen = true
	}
	return bc, seq.Empty()
}

func parseOIDSequence(der []byte) ([]asn1.ObjectIdentifier, bool) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false
	}
	var out []asn1.ObjectIdentifier
	for !seq.Empty() {
		var id asn1.ObjectIdentifier
		if !seq.ReadASN1ObjectIdentifier(&id) {
			return nil, false
		}
		out = append(out, id)
	}
	return out, true
}

// parsePolicies returns the policy identifiers of a certificatePolicies
// extension (RFC 5280 §4.2.1.4), ignoring qualifiers.
func parsePolicies(der []byte) ([]asn1.ObjectIdentifier, bool) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false
	}
	var out []asn1.ObjectIdentifier
	for !seq.Empty() {
		var pi cryptobyte.String
		var id asn1.ObjectIdentifier
		if !seq.ReadASN1(&pi, cbasn1.SEQUENCE) || !pi.ReadASN1ObjectIdentifier(&id) {
			return nil, false
		}
		out = append(out, id)
	}
	return out, true
}

// parseAKI returns the keyIdentifier of an AuthorityKeyIdentifier
// (RFC 5280 §4.2.1.1).
func parseAKI(der []byte) (keyID []byte, ok bool) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false
	}
	var id cryptobyte.String
	var present bool
	if !seq.ReadOptionalASN1(&id, &present, cbasn1.Tag(0).ContextSpecific()) {
		return nil, false
	}
	return id, true
}

func parseSKI(der []byte) ([]byte, bool) {
	in := cryptobyte.String(der)
	var id cryptobyte.String
	if !in.ReadASN1(&id, cbasn1.OCTET_STRING) || !in.Empty() {
		return nil, false
	}
	return id, true
}

// parseCRLDP returns the URIs of the fullName of each DistributionPoint
// (RFC 5280 §4.2.1.13) and reports whether any point has a form other than
// a fullName of URIs.
func parseCRLDP(der []byte) (uris []string, other bool, ok bool) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false, false
	}
	for !seq.Empty() {
		var dp cryptobyte.String
		if !seq.ReadASN1(&dp, cbasn1.SEQUENCE) {
			return nil, false, false
		}
		var dpName cryptobyte.String
		var present bool
		if !dp.ReadOptionalASN1(&dpName, &present, cbasn1.Tag(0).ContextSpecific().Constructed()) {
			return nil, false, false
		}
		if !dp.Empty() { // reasons or cRLIssuer
			other = true
		}
		if !present {
			other = true
			continue
		}
		var full cryptobyte.String
		var fullPresent bool
		if !dpName.ReadOptionalASN1(&full, &fullPresent, cbasn1.Tag(0).ContextSpecific().Constructed()) {
			return nil, false, false
		}
		if !fullPresent {
			other = true
			continue
		}
		for !full.Empty() {
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !full.ReadAnyASN1(&v, &tag) {
				return nil, false, false
			}
			if tag == cbasn1.Tag(6).ContextSpecific() {
				uris = append(uris, string(v))
			} else {
				other = true
			}
		}
	}
	return uris, other, true
}

// accessDescription is one entry of an AuthorityInfoAccessSyntax
// (RFC 5280 §4.2.2.1).
type accessDescription struct {
	method asn1.ObjectIdentifier
	uri    string
	isURI  bool
}

func parseAIA(der []byte) ([]accessDescription, bool) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false
	}
	var out []accessDescription
	for !seq.Empty() {
		var ad cryptobyte.String
		var a accessDescription
		if !seq.ReadASN1(&ad, cbasn1.SEQUENCE) || !ad.ReadASN1ObjectIdentifier(&a.method) {
			return nil, false
		}
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !ad.ReadAnyASN1(&v, &tag) || !ad.Empty() {
			return nil, false
		}
		if tag == cbasn1.Tag(6).ContextSpecific() {
			a.isURI = true
			a.uri = string(v)
		}
		out = append(out, a)
	}
	return out, true
}
