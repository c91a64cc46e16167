package lint

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Lints of the TBSCertificate fields other than the extensions and the key.
func init() {
	register("e_x509_parse", Error, "RFC 5280 §4.1",
		"the Go X.509 parser (smx509) refuses the certificate; relying parties built on it will too",
		func(c *ctx) []string {
			if c.parseErr != nil {
				return one("smx509: %v", c.parseErr)
			}
			return nil
		})

	register("e_version_not_v3", Error, "RFC 5280 §4.1.2.1",
		"version must be v3 (2): govtrust certificates always carry extensions",
		func(c *ctx) []string {
			if !c.raw.versionPresent {
				return one("version field absent (v1)")
			}
			if !bytes.Equal(c.raw.version, []byte{2}) {
				return one("version INTEGER is % x, want 02 (v3)", c.raw.version)
			}
			return nil
		})

	register("e_unique_id_present", Error, "RFC 5280 §4.1.2.8",
		"conforming CAs must not generate issuerUniqueID or subjectUniqueID",
		func(c *ctx) []string {
			var out []string
			if c.raw.issuerUID {
				out = append(out, "issuerUniqueID present")
			}
			if c.raw.subjectUID {
				out = append(out, "subjectUniqueID present")
			}
			return out
		})

	register("e_serial_not_positive", Error, "RFC 5280 §4.1.2.2",
		"the serial number must be a positive integer",
		func(c *ctx) []string {
			s := c.raw.serial
			if len(s) == 0 {
				return one("serial INTEGER has no content octets")
			}
			if s[0]&0x80 != 0 {
				return one("serial is negative (first octet %#02x)", s[0])
			}
			for _, b := range s {
				if b != 0 {
					return nil
				}
			}
			return one("serial is zero")
		})

	register("e_serial_not_minimal", Error, "X.690 §8.3.2 (DER), RFC 5280 §4.1.2.2",
		"the serial INTEGER must use the fewest octets (no redundant leading 00 or FF)",
		func(c *ctx) []string {
			s := c.raw.serial
			if len(s) > 1 && (s[0] == 0 && s[1]&0x80 == 0 || s[0] == 0xff && s[1]&0x80 != 0) {
				return one("serial starts % x: redundant leading octet", s[:2])
			}
			return nil
		})

	register("e_serial_too_long", Error, "RFC 5280 §4.1.2.2",
		"the serial number must not be longer than 20 octets",
		func(c *ctx) []string {
			if n := len(c.raw.serial); n > 20 {
				return one("serial is %d octets", n)
			}
			return nil
		})

	register("e_serial_low_entropy", Error, "BR §7.1 (≥ 64 bits of CSPRNG output); RELIABILITY.md §1.1",
		"the serial must hold a prefix octet and at least 64 random bits, so at least 9 octets",
		func(c *ctx) []string {
			if n := len(c.raw.serial); n < 9 {
				return one("serial is %d octets, at most %d random bits after the prefix", n, 8*(n-1))
			}
			return nil
		})

	register("e_sigalg_mismatch", Error, "RFC 5280 §4.1.1.2",
		"TBSCertificate.signature must equal Certificate.signatureAlgorithm octet for octet",
		func(c *ctx) []string {
			if !bytes.Equal(c.raw.innerAlg, c.raw.outerAlg) {
				return one("inner % x, outer % x", c.raw.innerAlg, c.raw.outerAlg)
			}
			return nil
		})

	register("e_issuer_dn_mismatch", Error, "RFC 5280 §4.1.2.4, §7.1",
		"the issuer field must be byte-identical to the issuing CA's subject, or chains and CRL matching break",
		func(c *ctx) []string {
			want := c.raw.subject
			if !c.selfSigned {
				want = c.issuer.RawSubject
			}
			if !bytes.Equal(c.raw.issuer, want) {
				return one("issuer % x differs from the CA subject % x", c.raw.issuer, want)
			}
			return nil
		})

	register("e_issuer_empty", Error, "RFC 5280 §4.1.2.4",
		"the issuer field must contain a non-empty distinguished name",
		func(c *ctx) []string {
			if len(c.issuerDN) == 0 {
				return one("issuer is an empty Name")
			}
			return nil
		})

	register("e_validity_inverted", Error, "RFC 5280 §4.1.2.5",
		"notBefore must not be later than notAfter",
		func(c *ctx) []string {
			if c.validityOK && c.notBefore.After(c.notAfter) {
				return one("notBefore %s is after notAfter %s", c.notBefore, c.notAfter)
			}
			return nil
		})

	register("e_validity_time_type", Error, "RFC 5280 §4.1.2.5",
		"dates through 2049 must be UTCTime, dates from 2050 GeneralizedTime",
		func(c *ctx) []string {
			var out []string
			for _, t := range []struct {
				name string
				v    rawTime
			}{{"notBefore", c.raw.notBefore}, {"notAfter", c.raw.notAfter}} {
				switch t.v.tag {
				case cbasn1.UTCTime:
				case cbasn1.GeneralizedTime:
					if len(t.v.content) >= 4 && string(t.v.content[:4]) < "2050" {
						out = append(out, t.name+" year "+string(t.v.content[:4])+" is a GeneralizedTime; before 2050 it must be UTCTime")
					}
				default:
					out = append(out, t.name+" is a "+tagName(t.v.tag)+", not a Time")
				}
			}
			return out
		})

	register("e_validity_time_format", Error, "RFC 5280 §4.1.2.5.1, §4.1.2.5.2",
		"times must be YYMMDDHHMMSSZ (UTCTime) or YYYYMMDDHHMMSSZ (GeneralizedTime): seconds present, Zulu, no fraction",
		func(c *ctx) []string {
			var out []string
			for _, t := range []struct {
				name string
				v    rawTime
			}{{"notBefore", c.raw.notBefore}, {"notAfter", c.raw.notAfter}} {
				want := 0
				switch t.v.tag {
				case cbasn1.UTCTime:
					want = 13
				case cbasn1.GeneralizedTime:
					want = 15
				default:
					continue
				}
				s := string(t.v.content)
				if len(s) != want || s[want-1] != 'Z' || !allDigits(s[:want-1]) {
					out = append(out, t.name+" is "+strconvQuote(s)+", not the DER form")
					continue
				}
				if _, ok := t.v.time(); !ok {
					out = append(out, t.name+" "+strconvQuote(s)+" is not a calendar time")
				}
			}
			return out
		})

	register("e_validity_beyond_issuer", Error, "RFC 5280 §6.1.3 (a)(2); govtrust policy (ACCEPTANCE A-09)",
		"notAfter must not be later than the issuing CA's notAfter",
		func(c *ctx) []string {
			if c.selfSigned || !c.validityOK {
				return nil
			}
			if c.notAfter.After(c.issuer.NotAfter) {
				return one("notAfter %s is after the issuer's notAfter %s", c.notAfter, c.issuer.NotAfter)
			}
			return nil
		})

	register("w_validity_before_issuer", Warning, "RFC 5280 §6.1.3 (a)(2)",
		"notBefore earlier than the issuing CA's notBefore makes the early part of the period unverifiable",
		func(c *ctx) []string {
			if c.selfSigned || !c.validityOK {
				return nil
			}
			if c.notBefore.Before(c.issuer.NotBefore) {
				return one("notBefore %s is before the issuer's notBefore %s", c.notBefore, c.issuer.NotBefore)
			}
			return nil
		})

	register("e_subject_empty_ca", Error, "RFC 5280 §4.1.2.6",
		"a CA certificate must have a non-empty subject",
		func(c *ctx) []string {
			if c.isCA && c.subjectErr == nil && len(c.subject) == 0 {
				return one("CA certificate with an empty subject")
			}
			return nil
		})

	register("e_subject_string_type", Error, "RFC 5280 §4.1.2.4, Appendix A",
		"DirectoryString attributes must be PrintableString or UTF8String; C, SERIALNUMBER and dnQualifier PrintableString; DC and emailAddress IA5String",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				info, known := attrInfos[a.typ.String()]
				kind := byte('D')
				if known {
					kind = info.kind
				}
				ok := false
				switch kind {
				case 'D':
					ok = a.tag == cbasn1.PrintableString || a.tag == cbasn1.UTF8String
				case 'P':
					ok = a.tag == cbasn1.PrintableString
				case 'I':
					ok = a.tag == cbasn1.IA5String
				}
				if !ok {
					out = append(out, AttributeName(a.typ)+" is a "+tagName(a.tag))
				}
			}
			return out
		})

	register("e_subject_printable_charset", Error, "X.680 §41.4; RFC 5280 Appendix A",
		"a PrintableString may hold only A-Z a-z 0-9 space ' ( ) + , - . / : = ? (no '&', no '*')",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				if a.tag == cbasn1.PrintableString && !isPrintableString(string(a.value)) {
					out = append(out, AttributeName(a.typ)+" PrintableString "+strconvQuote(string(a.value))+" has characters outside the set")
				}
			}
			return out
		})

	register("e_subject_bad_characters", Error, "RFC 5280 §4.1.2.4, §7.1; Unicode TR #9",
		"names must be valid UTF-8 without control characters (NUL included) or bidirectional overrides",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				if r, why, bad := BadRune(attrText(a)); bad {
					out = append(out, AttributeName(a.typ)+": "+why+" "+strconvQuoteRune(r))
				}
			}
			return out
		})

	register("e_subject_attr_too_long", Error, "RFC 5280 Appendix A (ub-common-name 64, ub-organization-name 64, ...)",
		"attribute values must respect the upper bounds of RFC 5280 Appendix A",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				max := AttributeMaxLen(a.typ)
				n := utf8.RuneCountInString(attrText(a))
				if max > 0 && n > max {
					out = append(out, AttributeName(a.typ)+" has "+itoa(n)+" characters, upper bound "+itoa(max))
				}
			}
			return out
		})

	register("e_subject_attr_empty", Error, "RFC 5280 Appendix A (SIZE (1..ub))",
		"attribute values must not be empty",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				if len(a.value) == 0 {
					out = append(out, AttributeName(a.typ)+" is empty")
				}
			}
			return out
		})

	register("e_subject_country_invalid", Error, "RFC 5280 Appendix A (X520countryName); ISO 3166-1",
		"countryName must be two capital letters",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				if !a.typ.Equal(oidAttrC) {
					continue
				}
				v := string(a.value)
				if len(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z' {
					out = append(out, "C is "+strconvQuote(v))
				}
			}
			return out
		})

	register("w_subject_whitespace", Warning, "BR §7.1.4.3",
		"attribute values should not begin or end with white space",
		func(c *ctx) []string {
			var out []string
			for _, a := range c.subject {
				v := attrText(a)
				if v != strings.TrimFunc(v, unicode.IsSpace) {
					out = append(out, AttributeName(a.typ)+" "+strconvQuote(v)+" has leading or trailing white space")
				}
			}
			return out
		})

	register("w_subject_multivalued_rdn", Warning, "BR §7.1.4.3",
		"each RDN should hold one attribute (multi-valued RDNs have no defined order for display and matching)",
		func(c *ctx) []string {
			for _, a := range c.subject {
				if a.rdnSize > 1 {
					return one("an RDN holds %d attributes", a.rdnSize)
				}
			}
			return nil
		})

	register("w_subject_repeated_cn", Warning, "BR §7.1.4.3",
		"the subject should hold at most one commonName",
		func(c *ctx) []string {
			n := 0
			for _, a := range c.subject {
				if a.typ.Equal(oidAttrCN) {
					n++
				}
			}
			if n > 1 {
				return one("%d commonName attributes", n)
			}
			return nil
		})
}

// attrText decodes an attribute value to UTF-8 by its string type: UTF-16
// for BMPString, UTF-32 for UniversalString, Latin-1 for TeletexString, the
// octets as they are otherwise (invalid UTF-8 then shows in BadRune).
func attrText(a rawAttr) string {
	switch a.tag {
	case cbasn1.Tag(30): // BMPString
		if len(a.value)%2 != 0 {
			return string(utf8.RuneError)
		}
		u := make([]uint16, len(a.value)/2)
		for i := range u {
			u[i] = uint16(a.value[2*i])<<8 | uint16(a.value[2*i+1])
		}
		return string(utf16.Decode(u))
	case cbasn1.Tag(28): // UniversalString
		if len(a.value)%4 != 0 {
			return string(utf8.RuneError)
		}
		var rs []rune
		for i := 0; i < len(a.value); i += 4 {
			rs = append(rs, rune(uint32(a.value[i])<<24|uint32(a.value[i+1])<<16|uint32(a.value[i+2])<<8|uint32(a.value[i+3])))
		}
		return string(rs)
	case cbasn1.T61String:
		rs := make([]rune, len(a.value))
		for i, b := range a.value {
			rs[i] = rune(b)
		}
		return string(rs)
	}
	return string(a.value)
}
