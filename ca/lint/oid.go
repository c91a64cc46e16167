package lint

import "encoding/asn1"

// Object identifiers the lints look for. Sources: RFC 5280 Appendix A,
// RFC 5480 §2.1.1, RFC 5758 §3.2, RFC 4055, RFC 6960 §4.2.2.2.1,
// GM/T 0006 (GM-STANDARDS.md §1.2) and GM/T 0015 (GM-STANDARDS.md §2.1).
var (
	oidExtSubjectDirectoryAttributes = asn1.ObjectIdentifier{2, 5, 29, 9}
	oidExtSKI                        = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtKeyUsage                   = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtPrivateKeyUsagePeriod      = asn1.ObjectIdentifier{2, 5, 29, 16}
	oidExtSAN                        = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtIAN                        = asn1.ObjectIdentifier{2, 5, 29, 18}
	oidExtBasicConstraints           = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtNameConstraints            = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidExtCRLDP                      = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtCertificatePolicies        = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidExtPolicyMappings             = asn1.ObjectIdentifier{2, 5, 29, 33}
	oidExtAKI                        = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtPolicyConstraints          = asn1.ObjectIdentifier{2, 5, 29, 36}
	oidExtExtKeyUsage                = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtFreshestCRL                = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidExtInhibitAnyPolicy           = asn1.ObjectIdentifier{2, 5, 29, 54}
	oidExtAIA                        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidExtSIA                        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 11}
	oidExtOCSPNoCheck                = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

	oidAccessOCSP      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1}
	oidAccessCAIssuers = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2}

	oidEKUAny             = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
	oidEKUServerAuth      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidEKUClientAuth      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidEKUEmailProtection = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}
	oidEKUTimeStamping    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	oidEKUOCSPSigning     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}

	oidPublicKeyRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidPublicKeyEC  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}

	oidCurveP192      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 1}
	oidCurveP224      = asn1.ObjectIdentifier{1, 3, 132, 0, 33}
	oidCurveP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384      = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521      = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidCurveSecp256k1 = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	// oidSM2 is the SM2 curve (GM/T 0006). In an SPKI it belongs in the
	// namedCurve parameter of id-ecPublicKey; some old encoders put it in the
	// algorithm field instead.
	oidSM2 = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}

	oidSigSM2WithSM3      = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	oidSigECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSigECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSigSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSigSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSigSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}

	// Name attribute types (RFC 5280 Appendix A, RFC 4519, PKCS #9).
	oidAttrCN           = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidAttrSurname      = asn1.ObjectIdentifier{2, 5, 4, 4}
	oidAttrSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidAttrC            = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidAttrL            = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidAttrST           = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidAttrStreet       = asn1.ObjectIdentifier{2, 5, 4, 9}
	oidAttrO            = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidAttrOU           = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidAttrTitle        = asn1.ObjectIdentifier{2, 5, 4, 12}
	oidAttrPostalCode   = asn1.ObjectIdentifier{2, 5, 4, 17}
	oidAttrName         = asn1.ObjectIdentifier{2, 5, 4, 41}
	oidAttrGivenName    = asn1.ObjectIdentifier{2, 5, 4, 42}
	oidAttrInitials     = asn1.ObjectIdentifier{2, 5, 4, 43}
	oidAttrDNQualifier  = asn1.ObjectIdentifier{2, 5, 4, 46}
	oidAttrPseudonym    = asn1.ObjectIdentifier{2, 5, 4, 65}
	oidAttrOrgID        = asn1.ObjectIdentifier{2, 5, 4, 97}
	oidAttrDC           = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidAttrUID          = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	oidAttrEmail        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// GM/T 0015-2012 subject-identity extensions. The arc 1.2.156.10260.4.1 and
// the five numbers below are what deployed Chinese CAs and client software
// use (GM-STANDARDS.md §2.1: "impl; OIDs seen in many client codebases").
// The standard text itself could not be read here. GM/T 0015-2023 is
// reported by one secondary listing to add 1.2.156.10260.4.1.1.1 (resident
// ID), .4.1.1.2 (passport) and 1.2.156.10260.4.4 (unified social credit
// code); that listing is unverified (GM-STANDARDS.md §10 item 7), so the
// 2012 numbers are emitted and the USCC, which the 2012 edition predates, is
// carried in the organisation-code extension as the field practice in
// GM-STANDARDS.md §2.1 describes.
var (
	OIDIdentityCode         = asn1.ObjectIdentifier{1, 2, 156, 10260, 4, 1, 1} // IdentifyCode: resident ID card number
	OIDInsuranceNumber      = asn1.ObjectIdentifier{1, 2, 156, 10260, 4, 1, 2} // social-insurance number
	OIDICRegistrationNumber = asn1.ObjectIdentifier{1, 2, 156, 10260, 4, 1, 3} // business registration number
	OIDOrganizationCode     = asn1.ObjectIdentifier{1, 2, 156, 10260, 4, 1, 4} // organisation code or USCC
	OIDTaxationNumber       = asn1.ObjectIdentifier{1, 2, 156, 10260, 4, 1, 5} // tax number
)

func oidIn(id asn1.ObjectIdentifier, set ...asn1.ObjectIdentifier) bool {
	for _, s := range set {
		if id.Equal(s) {
			return true
		}
	}
	return false
}
