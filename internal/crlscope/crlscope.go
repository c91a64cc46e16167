// Package crlscope reads what a CRL says of its own scope, and which
// certificates it speaks for, the rules every relying party of the platform
// applies before a CRL that does not list a certificate may make it good
// (RFC 5280 §5.2, §5.3, §6.3.3): a delta CRL (deltaCRLIndicator, §5.2.4)
// lists only the changes since its base; an issuingDistributionPoint
// (§5.2.5) limits the certificates and reasons a CRL is complete for; a CRL
// with a critical extension or entry extension the reader does not process
// must not be used at all. internal/authz's client-certificate CRL checker
// and signature's verifier share it.
//
// It works on the raw extensions, so that crypto/x509 and smx509 CRLs and
// certificates both can be read.
package crlscope

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CRL and certificate extensions read here (RFC 5280 §4.2.1.13, §5.2,
// §5.3).
var (
	oidExtAKI             = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtCRLNumber       = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtDeltaCRL        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidExtIDP             = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidExtCRLDP           = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtReasonCode      = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidExtInvalidityDate  = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidExtHoldInstruction = asn1.ObjectIdentifier{2, 5, 29, 23}
)

// ReasonRemoveFromCRL is the CRLReason of a delta CRL entry that takes a
// certificate off its base CRL (RFC 5280 §5.3.1): such an entry does not
// revoke.
const ReasonRemoveFromCRL = 8

// Reasons is a set of ReasonFlags (RFC 5280 §4.2.1.13): bit i is flag i.
type Reasons uint16

// AllReasons is keyCompromise (1) through aACompromise (8); flag 0 is
// "unused" and names no reason. A CRL that gives the status of a
// certificate for AllReasons is complete for it.
const AllReasons Reasons = 0x1fe

// Scope is what a CRL's extensions say of the CRL.
type Scope struct {
	// Base is the BaseCRLNumber of a delta CRL (deltaCRLIndicator); nil
	// for a complete CRL.
	Base *big.Int
	// IDP is the issuingDistributionPoint, nil when absent; RawIDP its
	// DER value (scopes are equal when their values are).
	IDP    *IDP
	RawIDP []byte
}

// Read reads the extensions of a CRL issued by rawIssuer (the DER Name)
// and refuses a CRL that must not be used (RFC 5280 §5.2): one with a
// critical extension not processed here (indirect CRLs among them), a
// malformed deltaCRLIndicator or issuingDistributionPoint, an extension
// twice, a delta CRL without a cRLNumber. The entries' extensions are
// checked apart, with CheckEntry.
func Read(exts []pkix.Extension, rawIssuer []byte) (*Scope, error) {
	s := &Scope{}
	seen := map[string]bool{}
	for _, ext := range exts {
		id := ext.Id.String()
		if seen[id] {
			return nil, fmt.Errorf("extension %s appears twice", id)
		}
		seen[id] = true
		switch {
		case ext.Id.Equal(oidExtAKI), ext.Id.Equal(oidExtCRLNumber):
			// crypto/x509 and smx509 parse them.
		case ext.Id.Equal(oidExtDeltaCRL):
			v := cryptobyte.String(ext.Value)
			s.Base = new(big.Int)
			if !v.ReadASN1Integer(s.Base) || !v.Empty() || s.Base.Sign() < 0 {
				return nil, errors.New("malformed deltaCRLIndicator")
			}
		case ext.Id.Equal(oidExtIDP):
			p, err := parseIDP(ext.Value, rawIssuer)
			if err != nil {
				return nil, fmt.Errorf("malformed issuingDistributionPoint: %w", err)
			}
			if p.indirect {
				return nil, errors.New("indirect CRLs are not supported (issuingDistributionPoint indirectCRL, RFC 5280 §5.2.5)")
			}
			s.IDP, s.RawIDP = p, ext.Value
		default:
			if ext.Critical {
				return nil, fmt.Errorf("unrecognised critical extension %s (RFC 5280 §5.2)", id)
			}
		}
	}
	if s.Base != nil && !seen[oidExtCRLNumber.String()] {
		return nil, errors.New("delta CRL without a cRLNumber (RFC 5280 §5.2.4)")
	}
	return s, nil
}

// CheckEntry refuses the extensions of a CRL entry with a critical one not
// processed here (RFC 5280 §5.3): reasonCode is processed; invalidityDate
// and holdInstructionCode say nothing about whether the certificate is
// revoked now; certificateIssuer (indirect CRLs) is not supported. A CRL
// with such an entry must not be used.
func CheckEntry(exts []pkix.Extension) error {
	for _, ext := range exts {
		if ext.Critical && !ext.Id.Equal(oidExtReasonCode) && !ext.Id.Equal(oidExtInvalidityDate) && !ext.Id.Equal(oidExtHoldInstruction) {
			return fmt.Errorf("unrecognised critical entry extension %s (RFC 5280 §5.3)", ext.Id)
		}
	}
	return nil
}

// IDP is an issuingDistributionPoint (RFC 5280 §5.2.5).
type IDP struct {
	names    []string // the distributionPoint as DER GeneralNames; nil when absent
	onlyUser bool
	onlyCA   bool
	onlyAttr bool
	reasons  Reasons // onlySomeReasons; AllReasons when absent
	indirect bool
}

// Covers returns the reasons for which a CRL with this
// issuingDistributionPoint gives the status of a certificate (RFC 5280
// §6.3.3 (b)), none when it does not apply: isCA is whether the
// certificate is a CA certificate (basicConstraints cA), dps its
// DistributionPoints. A nil IDP (the extension is absent) covers every
// certificate for AllReasons.
func (p *IDP) Covers(isCA bool, dps []DistributionPoint) Reasons {
	if p == nil {
		return AllReasons
	}
	if p.onlyAttr || p.onlyUser && isCA || p.onlyCA && !isCA {
		return 0
	}
	if p.names == nil {
		return p.reasons
	}
	var m Reasons
	for _, dp := range dps {
		for _, n := range dp.names {
			if slices.Contains(p.names, n) {
				m |= dp.reasons
				break
			}
		}
	}
	return m & p.reasons
}

// DistributionPoint is a DistributionPoint of a certificate whose CRL its
// issuer signs: the names as DER GeneralNames and the reasons.
type DistributionPoint struct {
	names   []string
	reasons Reasons
}

// DistributionPoints returns the CRL distribution points of a certificate,
// given its issuer (RawIssuer) and extensions, that name their CRL and have
// no cRLIssuer (indirect CRLs are not supported), and last the issuer's
// name for all reasons: RFC 5280 §6.3.3 ends with the CRLs "not specified
// in a distribution point but issued by the certificate issuer", taken to
// have that name. A malformed extension adds nothing.
func DistributionPoints(rawIssuer []byte, exts []pkix.Extension) []DistributionPoint {
	var out []DistributionPoint
	for _, ext := range exts {
		if !ext.Id.Equal(oidExtCRLDP) {
			continue
		}
		s := cryptobyte.String(ext.Value)
		var seq cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
			break
		}
		for !seq.Empty() {
			var dp, dpn cryptobyte.String
			var hasName bool
			if !seq.ReadASN1(&dp, cbasn1.SEQUENCE) || !dp.ReadOptionalASN1(&dpn, &hasName, tagDPName) {
				break
			}
			d := DistributionPoint{reasons: AllReasons}
			if dp.PeekASN1Tag(tagReasons) {
				var bits cryptobyte.String
				r, ok := Reasons(0), dp.ReadASN1(&bits, tagReasons)
				if ok {
					r, ok = parseReasonFlags(bits)
				}
				if !ok {
					continue
				}
				d.reasons = r
			}
			if !hasName || !dp.Empty() { // no name, or a cRLIssuer
				continue
			}
			names, ok := parseDPName(dpn, rawIssuer)
			if !ok {
				continue
			}
			d.names = names
			out = append(out, d)
		}
	}
	if n, ok := directoryName(rawIssuer); ok {
		out = append(out, DistributionPoint{names: []string{n}, reasons: AllReasons})
	}
	return out
}

// Tags of the DistributionPoint and IssuingDistributionPoint fields (RFC
// 5280 §4.2.1.13, §5.2.5; IMPLICIT, so a CHOICE inside [0] is explicit).
var (
	tagDPName   = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagFullName = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagRelative = cbasn1.Tag(1).Constructed().ContextSpecific()
	tagReasons  = cbasn1.Tag(1).ContextSpecific()
	tagDirName  = cbasn1.Tag(4).Constructed().ContextSpecific()
)

// parseIDP parses an issuingDistributionPoint; issuer is the CRL's issuer
// name, which a nameRelativeToCRLIssuer extends.
func parseIDP(v []byte, issuer []byte) (*IDP, error) {
	s := cryptobyte.String(v)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("not a SEQUENCE")
	}
	p := &IDP{reasons: AllReasons}
	if seq.PeekASN1Tag(tagDPName) {
		var dpn cryptobyte.String
		names, ok := []string(nil), seq.ReadASN1(&dpn, tagDPName)
		if ok {
			names, ok = parseDPName(dpn, issuer)
		}
		if !ok {
			return nil, errors.New("malformed distributionPoint")
		}
		p.names = names
	}
	for i, f := range []*bool{&p.onlyUser, &p.onlyCA} {
		if err := readFlag(&seq, cbasn1.Tag(i+1).ContextSpecific(), f); err != nil {
			return nil, err
		}
	}
	if tag := cbasn1.Tag(3).ContextSpecific(); seq.PeekASN1Tag(tag) {
		var bits cryptobyte.String
		r, ok := Reasons(0), seq.ReadASN1(&bits, tag)
		if ok {
			r, ok = parseReasonFlags(bits)
		}
		if !ok {
			return nil, errors.New("malformed onlySomeReasons")
		}
		p.reasons = r
	}
	for i, f := range []*bool{&p.indirect, &p.onlyAttr} {
		if err := readFlag(&seq, cbasn1.Tag(i+4).ContextSpecific(), f); err != nil {
			return nil, err
		}
	}
	if !seq.Empty() {
		return nil, errors.New("unknown fields")
	}
	n := 0
	for _, f := range []bool{p.onlyUser, p.onlyCA, p.onlyAttr} {
		if f {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("more than one of onlyContainsUserCerts, onlyContainsCACerts and onlyContainsAttributeCerts")
	}
	return p, nil
}

// readFlag reads an optional [tag] IMPLICIT BOOLEAN DEFAULT FALSE.
func readFlag(s *cryptobyte.String, tag cbasn1.Tag, f *bool) error {
	if !s.PeekASN1Tag(tag) {
		return nil
	}
	var b cryptobyte.String
	if !s.ReadASN1(&b, tag) || len(b) != 1 {
		return fmt.Errorf("malformed BOOLEAN [%d]", tag&0x1f)
	}
	*f = b[0] != 0
	return nil
}

// parseReasonFlags reads the contents of a ReasonFlags BIT STRING.
func parseReasonFlags(b []byte) (Reasons, bool) {
	if len(b) == 0 || b[0] > 7 || len(b) == 1 && b[0] != 0 {
		return 0, false
	}
	var r Reasons
	for i, o := range b[1:] {
		for j := range 8 {
			if bit := i*8 + j; o&(0x80>>j) != 0 && bit < 16 {
				r |= 1 << bit
			}
		}
	}
	return r & AllReasons, true
}

// parseDPName reads the contents of a distributionPoint [0]: a fullName or a
// nameRelativeToCRLIssuer, which extends issuer. It returns the names as DER
// GeneralNames, the form in which they are compared.
func parseDPName(dpn cryptobyte.String, issuer []byte) ([]string, bool) {
	var inner cryptobyte.String
	switch {
	case dpn.PeekASN1Tag(tagFullName):
		if !dpn.ReadASN1(&inner, tagFullName) || !dpn.Empty() {
			return nil, false
		}
		var names []string
		for !inner.Empty() {
			var gn cryptobyte.String
			var tag cbasn1.Tag
			if !inner.ReadAnyASN1Element(&gn, &tag) || tag&0xc0 != 0x80 {
				return nil, false
			}
			names = append(names, string(gn))
		}
		return names, len(names) > 0
	case dpn.PeekASN1Tag(tagRelative):
		if !dpn.ReadASN1(&inner, tagRelative) || !dpn.Empty() || inner.Empty() {
			return nil, false
		}
		s := cryptobyte.String(issuer)
		var rdns cryptobyte.String
		if !s.ReadASN1(&rdns, cbasn1.SEQUENCE) {
			return nil, false
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(rdns)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(inner) })
		})
		name, err := b.Bytes()
		if err != nil {
			return nil, false
		}
		n, ok := directoryName(name)
		return []string{n}, ok
	}
	return nil, false
}

// directoryName returns the DER GeneralName directoryName of a DER Name.
func directoryName(name []byte) (string, bool) {
	var b cryptobyte.Builder
	b.AddASN1(tagDirName, func(b *cryptobyte.Builder) { b.AddBytes(name) })
	out, err := b.Bytes()
	return string(out), err == nil && len(name) > 0
}
