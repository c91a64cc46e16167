package crl

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Verify parses a DER CRL and checks that issuer signed it: the issuer is a
// CA allowed to sign CRLs, the CRL's issuer name is byte-identical to the
// issuer's subject, no bytes follow the CRL, and the signature verifies.
//
// SM2 signatures are accepted under both OIDs seen in the wild,
// SM2-with-SM3 1.2.156.10197.1.501 and sm2sign 1.2.156.10197.1.301.1 (with
// absent or NULL parameters), checked with the default user ID; for the
// latter the returned list's SignatureAlgorithm is set to smx509.SM2WithSM3.
// Other algorithms are checked by smx509, which refuses the insecure ones.
//
// Verify checks the signature, not the profile: see Lint. Parsing
// materialises every entry, so for the largest CRLs prefer checking the
// signature of the stored file once and keeping it.
func Verify(der []byte, issuer *smx509.Certificate) (*smx509.RevocationList, error) {
	if issuer == nil {
		return nil, errors.New("crl: verify: no issuer certificate")
	}
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("crl: parse: %w", err)
	}
	if len(rl.Raw) != len(der) {
		return nil, fmt.Errorf("crl: parse: %d trailing bytes after the CRL", len(der)-len(rl.Raw))
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("crl: verify: CRL issuer %q is not the subject of certificate %q", rl.Issuer, issuer.Subject)
	}
	oid, err := signatureOID(rl.Raw)
	if err != nil {
		return nil, fmt.Errorf("crl: parse: %w", err)
	}
	if oid.Equal(oidSM2WithSM3) || oid.Equal(oidSM2Sign) {
		// smx509 knows only the first OID; check both the same way,
		// including its issuer constraints (RFC 5280 §4.2.1.3, §4.2.1.9).
		if issuer.BasicConstraintsValid && !issuer.IsCA || issuer.Version == 3 && !issuer.BasicConstraintsValid ||
			issuer.KeyUsage != 0 && issuer.KeyUsage&smx509.KeyUsageCRLSign == 0 {
			return nil, fmt.Errorf("crl: verify: %w", smx509.ConstraintViolationError{})
		}
		pub, ok := issuer.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != sm2.P256() {
			return nil, fmt.Errorf("crl: verify: SM2 signature but issuer key is %T", issuer.PublicKey)
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, rl.RawTBSRevocationList, rl.Signature) {
			return nil, errors.New("crl: verify: SM2 signature does not verify")
		}
		rl.SignatureAlgorithm = smx509.SM2WithSM3
		return rl, nil
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("crl: verify: %w", err)
	}
	return rl, nil
}

// signatureOID reads the outer signatureAlgorithm of a CertificateList and
// checks its parameters are absent or NULL when it is an SM2 OID (smx509
// already checked that the inner and outer identifiers are equal).
func signatureOID(der []byte) (asn1.ObjectIdentifier, error) {
	s := cryptobyte.String(der)
	var list, ai cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&list, cbasn1.SEQUENCE) || !list.SkipASN1(cbasn1.SEQUENCE) ||
		!list.ReadASN1(&ai, cbasn1.SEQUENCE) || !ai.ReadASN1ObjectIdentifier(&oid) {
		return nil, errors.New("malformed signature algorithm")
	}
	if oid.Equal(oidSM2WithSM3) || oid.Equal(oidSM2Sign) {
		var null cryptobyte.String
		if !ai.Empty() && (!ai.ReadASN1(&null, cbasn1.NULL) || !null.Empty() || !ai.Empty()) {
			return nil, errors.New("SM2 signature algorithm with parameters")
		}
	}
	return oid, nil
}

// Scope is what a CRL's scope extensions say about it.
type Scope struct {
	// DeltaBase is the deltaCRLIndicator's base CRL number; nil for a full CRL.
	DeltaBase *big.Int
	// IDP is the issuingDistributionPoint; nil when absent.
	IDP *IssuingDistributionPoint
	// FreshestCRL lists the URIs of the freshestCRL extension.
	FreshestCRL []string
}

// ParseScope reads the deltaCRLIndicator, issuingDistributionPoint and
// freshestCRL extensions of a parsed CRL, which smx509 leaves raw. The CA's
// publish guard uses it to check that a CRL goes to the place its IDP names.
// An IDP with features this package never writes (onlySomeReasons,
// indirectCRL, onlyContainsAttributeCerts, nameRelativeToCRLIssuer, names
// other than URIs) is an error.
func ParseScope(rl *smx509.RevocationList) (*Scope, error) {
	sc := &Scope{}
	for _, ext := range rl.Extensions {
		v := cryptobyte.String(ext.Value)
		switch {
		case ext.Id.Equal(oidExtDeltaCRL):
			sc.DeltaBase = new(big.Int)
			if !v.ReadASN1Integer(sc.DeltaBase) || !v.Empty() {
				return nil, errors.New("crl: malformed deltaCRLIndicator")
			}
		case ext.Id.Equal(oidExtIDP):
			idp, err := parseIDP(v)
			if err != nil {
				return nil, fmt.Errorf("crl: malformed issuingDistributionPoint: %w", err)
			}
			sc.IDP = idp
		case ext.Id.Equal(oidExtFreshestCRL):
			var dps cryptobyte.String
			if !v.ReadASN1(&dps, cbasn1.SEQUENCE) || !v.Empty() {
				return nil, errors.New("crl: malformed freshestCRL")
			}
			for !dps.Empty() {
				var dp cryptobyte.String
				if !dps.ReadASN1(&dp, cbasn1.SEQUENCE) {
					return nil, errors.New("crl: malformed freshestCRL")
				}
				uris, err := parseDistributionPointName(&dp)
				if err != nil {
					return nil, fmt.Errorf("crl: malformed freshestCRL: %w", err)
				}
				if !dp.Empty() {
					return nil, errors.New("crl: freshestCRL with reasons or cRLIssuer is not supported")
				}
				sc.FreshestCRL = append(sc.FreshestCRL, uris...)
			}
		}
	}
	return sc, nil
}

func parseIDP(v cryptobyte.String) (*IssuingDistributionPoint, error) {
	var seq cryptobyte.String
	if !v.ReadASN1(&seq, cbasn1.SEQUENCE) || !v.Empty() {
		return nil, errors.New("not a SEQUENCE")
	}
	idp := &IssuingDistributionPoint{}
	uris, err := parseDistributionPointName(&seq)
	if err != nil {
		return nil, err
	}
	idp.FullName = uris
	for i, flag := range []*bool{&idp.OnlyUser, &idp.OnlyCA} {
		tag := cbasn1.Tag(i + 1).ContextSpecific()
		if !seq.PeekASN1Tag(tag) {
			continue
		}
		var b cryptobyte.String
		if !seq.ReadASN1(&b, tag) || len(b) != 1 || b[0] != 0xff {
			// DER: a DEFAULT FALSE BOOLEAN is omitted, and TRUE is 0xff.
			return nil, fmt.Errorf("[%d] is not a DER TRUE", i+1)
		}
		*flag = true
	}
	if !seq.Empty() {
		return nil, errors.New("unsupported fields (onlySomeReasons, indirectCRL or onlyContainsAttributeCerts)")
	}
	if idp.OnlyUser && idp.OnlyCA {
		return nil, errors.New("both onlyContainsUserCerts and onlyContainsCACerts")
	}
	if len(idp.FullName) == 0 && !idp.OnlyUser && !idp.OnlyCA {
		return nil, errors.New("empty")
	}
	return idp, nil
}

// parseDistributionPointName reads an optional distributionPoint [0] {
// fullName [0] GeneralNames } holding only URIs.
func parseDistributionPointName(s *cryptobyte.String) ([]string, error) {
	tag0 := cbasn1.Tag(0).Constructed().ContextSpecific()
	if !s.PeekASN1Tag(tag0) {
		return nil, nil
	}
	var dpn, names cryptobyte.String
	if !s.ReadASN1(&dpn, tag0) || !dpn.ReadASN1(&names, tag0) || !dpn.Empty() {
		return nil, errors.New("distributionPoint is not a fullName")
	}
	var uris []string
	for !names.Empty() {
		var uri cryptobyte.String
		if !names.ReadASN1(&uri, cbasn1.Tag(6).ContextSpecific()) {
			return nil, errors.New("general name is not a URI")
		}
		uris = append(uris, string(uri))
	}
	if len(uris) == 0 {
		return nil, errors.New("empty fullName")
	}
	if err := checkURIs(uris); err != nil {
		return nil, err
	}
	return uris, nil
}

// Lint checks a parsed CRL against the govtrust CRL profile (see the package
// comment; RFC 5280 §5, BR §7.2.2, ACCEPTANCE.md C-01 and C-03) and returns
// every violation found, joined. It does not check the signature (Verify does)
// and needs memory proportional to the entries, to find duplicate serials.
func Lint(rl *smx509.RevocationList, issuer *smx509.Certificate) error {
	return lint(rl, issuer, false)
}

// LintOffline is Lint for the CRL of an offline CA (Template.Offline):
// nextUpdate may be up to MaxOfflineValidity after thisUpdate.
func LintOffline(rl *smx509.RevocationList, issuer *smx509.Certificate) error {
	return lint(rl, issuer, true)
}

func lint(rl *smx509.RevocationList, issuer *smx509.Certificate, offline bool) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if issuer == nil {
		return errors.New("crl: lint: no issuer certificate")
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		bad("issuer is not byte-identical to the CA subject (RFC 5280 §5.1.2.3)")
	}
	switch {
	case rl.NextUpdate.IsZero():
		bad("nextUpdate absent (RFC 5280 §5.1.2.5)")
	case !rl.NextUpdate.After(rl.ThisUpdate):
		bad("nextUpdate %v not after thisUpdate %v", rl.NextUpdate, rl.ThisUpdate)
	case rl.NextUpdate.Sub(rl.ThisUpdate) > maxValidity(offline):
		bad("nextUpdate %v more than %v after thisUpdate %v", rl.NextUpdate, maxValidity(offline), rl.ThisUpdate)
	}

	seen := map[string]bool{}
	var number *big.Int
	for _, ext := range rl.Extensions {
		id := ext.Id.String()
		if seen[id] {
			bad("extension %s appears twice (RFC 5280 §4.2)", id)
		}
		seen[id] = true
		switch {
		case ext.Id.Equal(oidExtAKI):
			if ext.Critical {
				bad("authorityKeyIdentifier is critical (RFC 5280 §4.2.1.1)")
			}
			if len(issuer.SubjectKeyId) == 0 || !bytes.Equal(rl.AuthorityKeyId, issuer.SubjectKeyId) {
				bad("authorityKeyIdentifier %x is not the issuer's subjectKeyIdentifier %x", rl.AuthorityKeyId, issuer.SubjectKeyId)
			}
		case ext.Id.Equal(oidExtCRLNumber):
			if ext.Critical {
				bad("cRLNumber is critical (RFC 5280 §5.2.3)")
			}
			number = rl.Number
			if !validNumber(number) {
				bad("cRLNumber %v outside 1..2^159-1 (BR §7.2.2)", number)
			}
		case ext.Id.Equal(oidExtDeltaCRL), ext.Id.Equal(oidExtIDP):
			if !ext.Critical {
				bad("extension %s must be critical (RFC 5280 §5.2.4, §5.2.5)", id)
			}
		case ext.Id.Equal(oidExtFreshestCRL):
			if ext.Critical {
				bad("freshestCRL is critical (RFC 5280 §5.2.6)")
			}
		default:
			if ext.Critical {
				bad("unknown critical extension %s (RFC 5280 §5.2)", id)
			}
		}
	}
	if !seen[oidExtAKI.String()] {
		bad("authorityKeyIdentifier absent (RFC 5280 §5.2.1)")
	}
	if !seen[oidExtCRLNumber.String()] {
		bad("cRLNumber absent (RFC 5280 §5.2.3)")
	}
	if sc, err := ParseScope(rl); err != nil {
		errs = append(errs, err)
	} else if sc.DeltaBase != nil {
		if !validNumber(sc.DeltaBase) || number != nil && sc.DeltaBase.Cmp(number) >= 0 {
			bad("delta base %v not below the CRL number %v (RFC 5280 §5.2.4)", sc.DeltaBase, number)
		}
		if sc.FreshestCRL != nil {
			bad("freshestCRL in a delta CRL (RFC 5280 §5.2.6)")
		}
	}

	serials := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for i, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber.Sign() <= 0 || e.SerialNumber.BitLen() > maxSerialBits {
			bad("entry %d: serial %v not positive or over 20 octets", i, e.SerialNumber)
		}
		key := string(e.SerialNumber.Bytes())
		if serials[key] {
			bad("entry %d: serial %x listed twice", i, e.SerialNumber)
		}
		serials[key] = true
		if e.RevocationTime.After(rl.ThisUpdate) {
			bad("entry %d: serial %x revoked at %v, after thisUpdate", i, e.SerialNumber, e.RevocationTime)
		}
		extSeen := map[string]bool{}
		for _, ext := range e.Extensions {
			id := ext.Id.String()
			if extSeen[id] {
				bad("entry %d: extension %s twice", i, id)
			}
			extSeen[id] = true
			switch {
			case ext.Id.Equal(oidExtReasonCode):
				if ext.Critical {
					bad("entry %d: reasonCode is critical (RFC 5280 §5.3.1)", i)
				}
				switch e.ReasonCode {
				case ReasonUnspecified:
					bad("entry %d: reasonCode unspecified must be omitted (BR §7.2.2)", i)
				case ReasonCertificateHold, ReasonRemoveFromCRL:
					bad("entry %d: reasonCode %d (suspension) is not allowed", i, e.ReasonCode)
				case ReasonKeyCompromise, ReasonCACompromise, ReasonAffiliationChanged, ReasonSuperseded,
					ReasonCessationOfOperation, ReasonPrivilegeWithdrawn:
				default:
					bad("entry %d: reasonCode %d not allowed", i, e.ReasonCode)
				}
			case ext.Id.Equal(oidExtInvalidity):
				// RFC 5280 §5.3.2, non-critical: allowed though Build never writes it.
			default:
				if ext.Critical {
					bad("entry %d: unknown critical extension %s", i, id)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("crl: lint: %w", errors.Join(errs...))
	}
	return nil
}
