package lint

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode/utf8"

	zutil "github.com/zmap/zlint/v3/util"
	"golang.org/x/net/idna"
)

// isPrintableString reports whether s uses only the PrintableString
// character set of X.680 §41.4: A-Z a-z 0-9 space ' ( ) + , - . / : = ?.
// Unlike the Go parsers it admits neither '*' nor '&' (DigiCert put '&' in
// a PrintableString in 2020 and had to revoke, Bugzilla 1593814).
func isPrintableString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isPrintableByte(s[i]) {
			return false
		}
	}
	return true
}

func isPrintableByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == ' ' || b == '\'' || b == '(' || b == ')' || b == '+' || b == ',' ||
		b == '-' || b == '.' || b == '/' || b == ':' || b == '=' || b == '?'
}

// IsPrintableString reports whether s fits the PrintableString character set
// (X.680 §41.4), so a DirectoryString value may be encoded as one.
func IsPrintableString(s string) bool { return isPrintableString(s) }

// BadRune returns the first rune of s that must not appear in a name or
// identity string, with a reason: C0 and C1 controls (NUL included), DEL,
// and the Unicode bidirectional formatting characters (U+202A–U+202E,
// U+2066–U+2069, U+200E, U+200F, U+061C) that let "moc.knab" display as
// "bank.com" (Unicode TR #9; the RLO trick of CVE-2021-42574), plus the
// byte-order mark and the replacement character, which only appear in
// mis-converted text.
func BadRune(s string) (rune, string, bool) {
	if !utf8.ValidString(s) {
		return utf8.RuneError, "invalid UTF-8", true
	}
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return r, "control character", true
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			return r, "bidirectional formatting character", true
		case r == 0xfeff:
			return r, "byte-order mark", true
		case r == utf8.RuneError:
			return r, "replacement character (mis-converted text)", true
		case r >= 0xfdd0 && r <= 0xfdef, r&0xfffe == 0xfffe:
			return r, "Unicode noncharacter", true
		}
	}
	return 0, "", false
}

// attrInfo describes how RFC 5280 Appendix A types a Name attribute.
type attrInfo struct {
	name string
	max  int // upper bound in characters, 0 for none
	// kind: 'D' DirectoryString (PrintableString or UTF8String, RFC 5280
	// §4.1.2.4), 'P' PrintableString only, 'I' IA5String only.
	kind byte
}

// attrInfos holds the upper bounds of RFC 5280 Appendix A (ub-*) and X.520.
var attrInfos = map[string]attrInfo{
	oidAttrCN.String():           {"CN", 64, 'D'},
	oidAttrSurname.String():      {"SN", 32768, 'D'},
	oidAttrSerialNumber.String(): {"SERIALNUMBER", 64, 'P'},
	oidAttrC.String():            {"C", 2, 'P'},
	oidAttrL.String():            {"L", 128, 'D'},
	oidAttrST.String():           {"ST", 128, 'D'},
	oidAttrStreet.String():       {"STREET", 128, 'D'},
	oidAttrO.String():            {"O", 64, 'D'},
	oidAttrOU.String():           {"OU", 64, 'D'},
	oidAttrTitle.String():        {"title", 64, 'D'},
	oidAttrPostalCode.String():   {"postalCode", 40, 'D'},
	oidAttrName.String():         {"name", 32768, 'D'},
	oidAttrGivenName.String():    {"givenName", 32768, 'D'},
	oidAttrInitials.String():     {"initials", 32768, 'D'},
	oidAttrDNQualifier.String():  {"dnQualifier", 0, 'P'},
	oidAttrPseudonym.String():    {"pseudonym", 128, 'D'},
	oidAttrOrgID.String():        {"organizationIdentifier", 0, 'D'},
	oidAttrDC.String():           {"DC", 63, 'I'},
	oidAttrUID.String():          {"UID", 256, 'D'},
	oidAttrEmail.String():        {"emailAddress", 255, 'I'},
}

// AttributeName returns the short name of a Name attribute type, or its
// dotted form.
func AttributeName(id asn1.ObjectIdentifier) string {
	if a, ok := attrInfos[id.String()]; ok {
		return a.name
	}
	return id.String()
}

// AttributeMaxLen returns the RFC 5280 Appendix A upper bound, in
// characters, of an attribute type (0 when it has none).
func AttributeMaxLen(id asn1.ObjectIdentifier) int { return attrInfos[id.String()].max }

// ValidDNSName checks a dNSName against the preferred name syntax of
// RFC 1034 §3.5 as RFC 5280 §4.2.1.6 requires: LDH labels of 1–63 octets,
// no leading or trailing hyphen, at most 253 octets, lower or upper case
// ASCII only (IDNs in their A-label form), no underscore, no trailing dot;
// an "xn--" label must be a valid A-label (checkALabel). A wildcard is allowed only as the whole leftmost label of a name with at
// least two more labels (RFC 6125 §6.4.3, BR 7.1.2.7.12), and only when
// allowWildcard is set.
func ValidDNSName(name string, allowWildcard bool) error {
	if name == "" {
		return errors.New("empty DNS name")
	}
	if len(name) > 253 {
		return fmt.Errorf("DNS name of %d octets exceeds 253", len(name))
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if l == "*" && i == 0 {
			if !allowWildcard {
				return fmt.Errorf("wildcard DNS name %q not allowed", name)
			}
			if len(labels) < 3 {
				return fmt.Errorf("wildcard DNS name %q covers a whole registry-level domain", name)
			}
			continue
		}
		if strings.Contains(l, "*") {
			return fmt.Errorf("DNS name %q has a wildcard outside the whole leftmost label", name)
		}
		if l == "" {
			return fmt.Errorf("DNS name %q has an empty label", name)
		}
		if len(l) > 63 {
			return fmt.Errorf("DNS name %q has a label longer than 63 octets", name)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("DNS name %q has a label starting or ending with a hyphen", name)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c == '_' {
				return fmt.Errorf("DNS name %q contains an underscore", name)
			}
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("DNS name %q contains %q, outside letters, digits and hyphen", name, c)
			}
		}
	}
	for _, l := range labels {
		if len(l) >= 4 && strings.EqualFold(l[:4], "xn--") {
			if err := checkALabel(l); err != nil {
				return fmt.Errorf("DNS name %q: label %q is not a valid IDNA A-label (RFC 5890 §2.3.2.1, RFC 5891 §5.4): %w", name, l, err)
			}
		}
	}
	if last := labels[len(labels)-1]; allDigits(last) {
		return fmt.Errorf("DNS name %q ends in a numeric label (an IP address belongs in iPAddress)", name)
	}
	return nil
}

// checkALabel checks an "xn--" label: its Punycode must decode to a
// U-label that IDNA2008 (x/net/idna's registration profile) accepts, that
// is not plain ASCII, and that encodes back to the same label (so each
// name has one A-label form, as relying parties compare them).
func checkALabel(l string) error {
	a := strings.ToLower(l)
	u, err := idna.Registration.ToUnicode(a)
	if err != nil {
		return err
	}
	if isIA5(u) {
		return errors.New("it decodes to no non-ASCII character")
	}
	back, err := idna.Registration.ToASCII(u)
	if err != nil {
		return err
	}
	if back != a {
		return fmt.Errorf("it decodes to %q, whose A-label is %q", u, back)
	}
	return nil
}

// ValidMailbox checks an rfc822Name (RFC 5280 §4.2.1.6: a Mailbox of
// RFC 5321 §4.1.2): a Dot-string local part of at most 64 octets (atoms of
// RFC 5322 atext joined by single dots, so no control character, space or
// quoting) and a domain that passes ValidDNSName (no address literal); at
// most 254 octets in all (RFC 5321 §4.5.3.1).
func ValidMailbox(addr string) error {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return errors.New("no @ between local part and domain")
	}
	if len(addr) > 254 {
		return fmt.Errorf("%d octets exceeds 254", len(addr))
	}
	local, domain := addr[:at], addr[at+1:]
	if local == "" || len(local) > 64 {
		return fmt.Errorf("local part of %d octets, want 1 to 64", len(local))
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return errors.New("local part has an empty atom (leading, trailing or double dot)")
		}
		for i := 0; i < len(atom); i++ {
			if !isAtext(atom[i]) {
				return fmt.Errorf("local part contains %q, outside RFC 5322 atext (quoted local parts are not accepted)", atom[i])
			}
		}
	}
	if err := ValidDNSName(domain, false); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	return nil
}

// isAtext: RFC 5322 §3.2.3 atext, printable ASCII except specials.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// internalTLDs are suffixes that never resolve on the public Internet
// (RFC 6761, RFC 6762, RFC 8375, ICANN SAC113 for "internal") and the
// common private ones the BR call Internal Names.
var internalTLDs = map[string]bool{
	"local": true, "localhost": true, "internal": true, "intranet": true, "lan": true,
	"corp": true, "home": true, "localdomain": true, "test": true, "invalid": true,
	"example": true, "private": true,
}

// IsInternalName reports whether a DNS name is an Internal Name in the
// sense of the BR §1.6.1: a single label, a reserved or private suffix, or
// a top-level label that is not in the IANA root zone (zlint's list, so the
// profile refuses what zlint's e_dnsname_not_valid_tld would).
func IsInternalName(name string) bool {
	name = strings.TrimPrefix(strings.ToLower(name), "*.")
	if !strings.Contains(name, ".") {
		return true
	}
	if strings.HasSuffix(name, ".home.arpa") {
		return true
	}
	tld := name[strings.LastIndexByte(name, '.')+1:]
	return internalTLDs[tld] || !zutil.IsInTLDMap(tld)
}

// IsReservedIP reports whether ip is in an IANA special-purpose range
// (private, loopback, link-local, documentation, shared, multicast...):
// a Reserved IP Address of BR §1.6.1, which BR §7.1.2.7.12 keeps out of
// TLS server certificates. The list is zlint's, so the profile and the
// lint agree.
func IsReservedIP(ip net.IP) bool { return zutil.IsIANAReserved(ip) }

// CheckURL checks a CRL distribution point, OCSP or caIssuers URL
// (RFC 5280 §4.2.1.13, §4.2.2.1): an IA5String, absolute, with a host, and
// a scheme of http or ldap (https is accepted but reported by the lints,
// because fetching it needs revocation data of its own).
func CheckURL(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("URL %q contains a space, a control or a non-ASCII octet (IA5String, RFC 3986)", s)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https", "ldap":
	default:
		return fmt.Errorf("URL %q: scheme %q is not http or ldap", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("URL %q carries user information", s)
	}
	if u.Fragment != "" {
		return fmt.Errorf("URL %q has a fragment", s)
	}
	return nil
}
