package lint

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/gbcode"
)

// IdentityKind names a GM/T 0015 subject-identity extension as profiles and
// registration records spell it.
type IdentityKind string

// The identity extensions a profile can ask for.
const (
	IdentityIDCard          IdentityKind = "id-card"          // 居民身份证号码, GB 11643
	IdentitySocialInsurance IdentityKind = "social-insurance" // 社会保险号
	IdentityOrgCode         IdentityKind = "org-code"         // 组织机构代码, GB 11714
	IdentityUSCC            IdentityKind = "uscc"             // 统一社会信用代码, GB 32100
	IdentityTax             IdentityKind = "tax"              // 纳税人识别号
)

// IdentityKinds lists every kind, in a stable order.
var IdentityKinds = []IdentityKind{IdentityIDCard, IdentitySocialInsurance, IdentityOrgCode, IdentityUSCC, IdentityTax}

// IdentityOID returns the extension identifier that carries kind. The
// organisation code and the unified social credit code share
// OIDOrganizationCode (see the note on the OID block).
func IdentityOID(kind IdentityKind) (asn1.ObjectIdentifier, error) {
	switch kind {
	case IdentityIDCard:
		return OIDIdentityCode, nil
	case IdentitySocialInsurance:
		return OIDInsuranceNumber, nil
	case IdentityOrgCode, IdentityUSCC:
		return OIDOrganizationCode, nil
	case IdentityTax:
		return OIDTaxationNumber, nil
	}
	return nil, fmt.Errorf("unknown GM/T 0015 identity kind %q", kind)
}

func isIdentityOID(id asn1.ObjectIdentifier) bool {
	return oidIn(id, OIDIdentityCode, OIDInsuranceNumber, OIDICRegistrationNumber, OIDOrganizationCode, OIDTaxationNumber)
}

// MarshalIdentity validates value for kind and encodes the extension,
// non-critical (relying parties that do not know these private extensions
// must still accept the certificate, RFC 5280 §4.2).
//
// Encodings (GM/T 0015-2012 as implemented by deployed CAs and XiPKI; the
// standard text was not available here):
//
//	IdentifyCode ::= CHOICE {
//	    residenterCardNumber      [0] PrintableString,
//	    militaryOfficerCardNumber [1] UTF8String,
//	    passportNumber            [2] PrintableString }
//	InsuranceNumber, OrganizationCode, TaxationNumber ::= PrintableString
//
// The standard does not say whether the CHOICE tags are EXPLICIT or
// IMPLICIT; govtrust writes EXPLICIT, as XiPKI does and as field readers
// that skip four header octets expect, and accepts both when reading.
func MarshalIdentity(kind IdentityKind, value string) (pkix.Extension, error) {
	if err := ValidateIdentity(kind, value); err != nil {
		return pkix.Extension{}, err
	}
	id, err := IdentityOID(kind)
	if err != nil {
		return pkix.Extension{}, err
	}
	var b cryptobyte.Builder
	if kind == IdentityIDCard {
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.PrintableString, func(b *cryptobyte.Builder) { b.AddBytes([]byte(value)) })
		})
	} else {
		b.AddASN1(cbasn1.PrintableString, func(b *cryptobyte.Builder) { b.AddBytes([]byte(value)) })
	}
	der, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("encode %s extension: %w", kind, err)
	}
	return pkix.Extension{Id: id, Value: der}, nil
}

// ParseIdentity decodes a GM/T 0015 identity extension value and returns the
// kind and the string. For OIDOrganizationCode the kind is IdentityUSCC for
// an 18-character value and IdentityOrgCode otherwise; for OIDIdentityCode
// the military-officer and passport alternatives are returned as
// IdentityIDCard with the value, and an error says which alternative it was
// only when the encoding is wrong.
func ParseIdentity(id asn1.ObjectIdentifier, der []byte) (IdentityKind, string, error) {
	in := cryptobyte.String(der)
	switch {
	case id.Equal(OIDIdentityCode):
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !in.ReadAnyASN1(&v, &tag) || !in.Empty() {
			return "", "", errors.New("IdentifyCode: malformed")
		}
		num := tag & 0x1f
		if tag&0xc0 != 0x80 || num > 2 {
			return "", "", fmt.Errorf("IdentifyCode: tag %#x is not [0], [1] or [2]", uint8(tag))
		}
		want := cbasn1.PrintableString
		if num == 1 {
			want = cbasn1.UTF8String
		}
		if tag&0x20 != 0 { // EXPLICIT
			var inner cryptobyte.String
			if !v.ReadASN1(&inner, want) || !v.Empty() {
				return "", "", fmt.Errorf("IdentifyCode [%d]: inner string is not a %s", num, tagName(want))
			}
			v = inner
		}
		if want == cbasn1.PrintableString && !isPrintableString(string(v)) {
			return "", "", fmt.Errorf("IdentifyCode [%d]: %q is outside the PrintableString character set", num, string(v))
		}
		return IdentityIDCard, string(v), nil
	case oidIn(id, OIDInsuranceNumber, OIDICRegistrationNumber, OIDOrganizationCode, OIDTaxationNumber):
		var v cryptobyte.String
		if !in.ReadASN1(&v, cbasn1.PrintableString) || !in.Empty() {
			return "", "", errors.New("value is not a single PrintableString")
		}
		if !isPrintableString(string(v)) {
			return "", "", fmt.Errorf("%q is outside the PrintableString character set", string(v))
		}
		switch {
		case id.Equal(OIDInsuranceNumber):
			return IdentitySocialInsurance, string(v), nil
		case id.Equal(OIDTaxationNumber):
			return IdentityTax, string(v), nil
		case id.Equal(OIDOrganizationCode):
			if len(v) == 18 {
				return IdentityUSCC, string(v), nil
			}
			return IdentityOrgCode, string(v), nil
		}
		return "", string(v), nil // IC registration number: no kind of ours
	}
	return "", "", fmt.Errorf("%s is not a GM/T 0015 identity extension", id)
}

// ValidateIdentity checks value against the format of kind: the GB 11643
// check digit of an 18-digit resident ID, the GB 32100 check character of a
// unified social credit code, the GB 11714 check digit of an organisation
// code, and the PrintableString character set for all.
func ValidateIdentity(kind IdentityKind, value string) error {
	if value == "" {
		return fmt.Errorf("%s: empty value", kind)
	}
	if !isPrintableString(value) {
		return fmt.Errorf("%s: %q is outside the PrintableString character set", kind, value)
	}
	switch kind {
	case IdentityIDCard:
		return checkResidentID(value)
	case IdentityUSCC:
		return gbcode.CheckUSCC(value)
	case IdentityOrgCode:
		return gbcode.CheckOrgCode("org-code", value)
	case IdentityTax:
		// Taxpayer numbers are the USCC since 2015, before that 15 (or 17,
		// 20) characters. Only the shape is checked.
		if n := len(value); n < 15 || n > 20 || !isUpperAlnum(value) {
			return fmt.Errorf("tax: %q is not 15 to 20 digits or capital letters", value)
		}
		return nil
	case IdentitySocialInsurance:
		if n := len(value); n > 32 || !isUpperAlnum(strings.ReplaceAll(value, "-", "")) {
			return fmt.Errorf("social-insurance: %q is not up to 32 digits, capital letters or hyphens", value)
		}
		return nil
	}
	return fmt.Errorf("unknown GM/T 0015 identity kind %q", kind)
}

func isUpperAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return s != ""
}

// checkResidentID checks an 18-character resident identity number
// (GB 11643-1999): 17 digits, a valid birth date in positions 7-14, and the
// ISO 7064 MOD 11-2 check character.
func checkResidentID(s string) error {
	if len(s) != 18 {
		return fmt.Errorf("id-card: %d characters, want 18", len(s))
	}
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := 0; i < 17; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("id-card: character %d is not a digit", i+1)
		}
		sum += int(c-'0') * weights[i]
	}
	if _, err := time.Parse("20060102", s[6:14]); err != nil {
		return fmt.Errorf("id-card: birth date %s is not a date", s[6:14])
	}
	check := "10X98765432"[sum%11]
	if s[17] != check {
		return fmt.Errorf("id-card: check character %c, want %c (GB 11643)", s[17], check)
	}
	return nil
}

func tagName(t cbasn1.Tag) string {
	switch t {
	case cbasn1.PrintableString:
		return "PrintableString"
	case cbasn1.UTF8String:
		return "UTF8String"
	case cbasn1.IA5String:
		return "IA5String"
	case cbasn1.T61String:
		return "TeletexString"
	case cbasn1.Tag(28):
		return "UniversalString"
	case cbasn1.Tag(30):
		return "BMPString"
	case cbasn1.UTCTime:
		return "UTCTime"
	case cbasn1.GeneralizedTime:
		return "GeneralizedTime"
	}
	return fmt.Sprintf("tag %#x", uint8(t))
}
