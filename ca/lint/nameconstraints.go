package lint

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Names are the names a certificate asserts, as RFC 5280 §4.2.1.10 and
// §6.1.3 (b), (c) check them against the name constraints of the CAs above
// it: the subject (a directoryName, and its emailAddress attributes as
// rfc822Names) and the subjectAltName entries.
type Names struct {
	// Subject is the DER Name; nil or an empty RDNSequence is no subject.
	Subject []byte
	DNS     []string
	IP      []net.IP
	Email   []string
	URI     []string
}

// GeneralName tags (RFC 5280 §4.2.1.6).
const (
	gnEmail = 1
	gnDNS   = 2
	gnDir   = 4
	gnURI   = 6
	gnIP    = 7
)

var gnTypeName = map[int]string{gnEmail: "rfc822Name", gnDNS: "dNSName", gnDir: "directoryName", gnURI: "URI", gnIP: "iPAddress"}

// nameConstraints are the subtrees of one CA, by GeneralName type. Types
// govtrust never writes into a certificate (otherName, x400Address,
// ediPartyName, registeredID) constrain nothing it issues and are not kept.
type nameConstraints struct {
	permitted, excluded map[int][]generalName
}

// parseNameConstraints reads a nameConstraints extension value (RFC 5280
// §4.2.1.10). BaseDistance minimum and maximum are read past: the profile
// forbids them (minimum MUST be zero, maximum MUST be absent) and the
// subtree is its base either way.
func parseNameConstraints(der []byte) (*nameConstraints, error) {
	nc := &nameConstraints{permitted: map[int][]generalName{}, excluded: map[int][]generalName{}}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errMalformed
	}
	for _, part := range []struct {
		tag cbasn1.Tag
		to  map[int][]generalName
	}{{cbasn1.Tag(0).ContextSpecific().Constructed(), nc.permitted}, {cbasn1.Tag(1).ContextSpecific().Constructed(), nc.excluded}} {
		var subtrees cryptobyte.String
		var present bool
		if !seq.ReadOptionalASN1(&subtrees, &present, part.tag) {
			return nil, errMalformed
		}
		if present && subtrees.Empty() {
			return nil, errMalformed // GeneralSubtrees is SIZE (1..MAX)
		}
		for !subtrees.Empty() {
			var st, base cryptobyte.String
			var tag cbasn1.Tag
			if !subtrees.ReadASN1(&st, cbasn1.SEQUENCE) || !st.ReadAnyASN1(&base, &tag) || tag&0x80 == 0 {
				return nil, errMalformed
			}
			n := int(tag & 0x1f)
			switch n {
			case gnDir:
				// [4] is EXPLICIT: the Name is inside.
				var name cryptobyte.String
				if !base.ReadASN1Element(&name, cbasn1.SEQUENCE) || !base.Empty() {
					return nil, errMalformed
				}
				if _, err := parseRDNs(name); err != nil {
					return nil, err
				}
				base = name
			case gnIP:
				if len(base) != 8 && len(base) != 32 {
					return nil, fmt.Errorf("iPAddress constraint of %d octets, want 8 or 32: %w", len(base), errMalformed)
				}
			case gnEmail, gnDNS, gnURI:
				if !isIA5(string(base)) {
					return nil, fmt.Errorf("%s constraint is not IA5String: %w", gnTypeName[n], errMalformed)
				}
			default:
				continue
			}
			part.to[n] = append(part.to[n], generalName{tag: n, value: base})
		}
	}
	if !seq.Empty() {
		return nil, errMalformed
	}
	return nc, nil
}

// CheckNameConstraints checks names against the nameConstraints of ca (if
// it has any) the way a relying party validating a path through ca does
// (RFC 5280 §6.1.3 (b), (c)): each name of a type ca constrains must lie in
// one of its permitted subtrees of that type, if it lists any, and in none
// of its excluded ones. It returns one sentence per violation, and an error
// when the extension does not decode. A wildcard dNSName is refused when an
// excluded subtree lies under the domain it covers.
func CheckNameConstraints(ca *smx509.Certificate, names Names) ([]string, error) {
	var value []byte
	for _, e := range ca.Extensions {
		if e.Id.Equal(oidExtNameConstraints) {
			value = e.Value
			break
		}
	}
	if value == nil {
		return nil, nil
	}
	nc, err := parseNameConstraints(value)
	if err != nil {
		return nil, fmt.Errorf("nameConstraints of %q: %w", ca.Subject.String(), err)
	}
	return nc.check(names)
}

func (nc *nameConstraints) check(names Names) ([]string, error) {
	var out []string
	test := func(typ int, shown string, match func(c generalName) (bool, string)) {
		for _, c := range nc.excluded[typ] {
			if ok, why := match(c); ok || why != "" {
				if why == "" {
					why = "is within the excluded subtree " + constraintText(c)
				}
				out = append(out, gnTypeName[typ]+" "+shown+" "+why)
				return
			}
		}
		if len(nc.permitted[typ]) == 0 {
			return
		}
		var reason string
		for _, c := range nc.permitted[typ] {
			ok, why := match(c)
			if ok && why == "" {
				return
			}
			if why != "" {
				reason = why
			}
		}
		if reason == "" {
			texts := make([]string, len(nc.permitted[typ]))
			for i, c := range nc.permitted[typ] {
				texts[i] = constraintText(c)
			}
			reason = "is not within the permitted subtrees " + strings.Join(texts, ", ")
		}
		out = append(out, gnTypeName[typ]+" "+shown+" "+reason)
	}

	if len(names.Subject) > 0 {
		subject, err := parseRDNs(names.Subject)
		if err != nil {
			return nil, fmt.Errorf("subject: %w", err)
		}
		if len(subject) > 0 {
			test(gnDir, "(subject)", func(c generalName) (bool, string) {
				base, _ := parseRDNs(c.value)
				return dnWithin(subject, base), ""
			})
		}
		// RFC 5280 §4.2.1.10: emailAddress attributes of the subject are
		// constrained as rfc822Names.
		for _, rdn := range subject {
			for _, a := range rdn {
				if a.typ.Equal(oidAttrEmail) {
					names.Email = append(names.Email, string(a.value))
				}
			}
		}
	}
	for _, d := range names.DNS {
		test(gnDNS, strconvQuote(d), func(c generalName) (bool, string) {
			return dnsWithin(d, string(c.value)), ""
		})
		if strings.HasPrefix(d, "*.") {
			parent := strings.ToLower(d[2:])
			for _, c := range nc.excluded[gnDNS] {
				if e := strings.ToLower(strings.TrimPrefix(string(c.value), ".")); e != "" && strings.HasSuffix(e, "."+parent) {
					out = append(out, "dNSName "+strconvQuote(d)+" covers names of the excluded subtree "+constraintText(c))
					break
				}
			}
		}
	}
	for _, ip := range names.IP {
		test(gnIP, ip.String(), func(c generalName) (bool, string) {
			return ipWithin(ip, c.value), ""
		})
	}
	for _, e := range names.Email {
		test(gnEmail, strconvQuote(e), func(c generalName) (bool, string) {
			return emailWithin(e, string(c.value)), ""
		})
	}
	for _, s := range names.URI {
		host := ""
		if u, err := url.Parse(s); err == nil {
			host = u.Hostname()
		}
		test(gnURI, strconvQuote(s), func(c generalName) (bool, string) {
			// The constraint applies to the host, a domain name (RFC 5280
			// §4.2.1.10): a URI without one, or with an address, cannot be
			// shown to satisfy it, and relying parties refuse it.
			if host == "" || net.ParseIP(host) != nil {
				return false, "has no host name to match the URI constraints against"
			}
			return uriHostWithin(host, string(c.value)), ""
		})
	}
	return out, nil
}

// dnsWithin: a dNSName constraint is satisfied by the name and by any name
// made by adding labels on the left (RFC 5280 §4.2.1.10). A leading period,
// as some CAs write, asks for a proper subdomain; an empty constraint
// matches every name. Comparison is case-insensitive.
func dnsWithin(name, c string) bool {
	name, c = strings.ToLower(strings.TrimSuffix(name, ".")), strings.ToLower(c)
	switch {
	case c == "":
		return true
	case c[0] == '.':
		return strings.HasSuffix(name, c)
	}
	return name == c || strings.HasSuffix(name, "."+c)
}

// emailWithin: "local@host" names one mailbox, "host" every mailbox at that
// host, ".domain" every mailbox at a host under it (RFC 5280 §4.2.1.10).
// The local part compares exactly, the domain case-insensitively.
func emailWithin(addr, c string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	local, domain := addr[:at], strings.ToLower(addr[at+1:])
	if cat := strings.LastIndexByte(c, '@'); cat >= 0 {
		return c[:cat] == local && strings.EqualFold(c[cat+1:], domain)
	}
	c = strings.ToLower(c)
	if strings.HasPrefix(c, ".") {
		return strings.HasSuffix(domain, c)
	}
	return domain == c
}

// uriHostWithin: "host" is that host, ".domain" any host under it (RFC 5280
// §4.2.1.10).
func uriHostWithin(host, c string) bool {
	host, c = strings.ToLower(host), strings.ToLower(c)
	if strings.HasPrefix(c, ".") {
		return strings.HasSuffix(host, c)
	}
	return host == c
}

// ipWithin: an iPAddress constraint is an address and a mask of the same
// family, 8 octets for IPv4 and 32 for IPv6 (RFC 5280 §4.2.1.10).
func ipWithin(ip net.IP, c []byte) bool {
	addr := []byte(ip)
	if v4 := ip.To4(); v4 != nil {
		addr = v4
	}
	if len(c) != 2*len(addr) {
		return false // another family
	}
	n, mask := c[:len(addr)], c[len(addr):]
	for i := range addr {
		if addr[i]&mask[i] != n[i]&mask[i] {
			return false
		}
	}
	return true
}

// dnRDN is one relative distinguished name: a set of attributes.
type dnRDN []rawAttr

// parseRDNs reads a Name keeping its RDNs apart (parseName flattens them).
func parseRDNs(der []byte) ([]dnRDN, error) {
	attrs, err := parseName(der)
	if err != nil {
		return nil, err
	}
	var out []dnRDN
	for i := 0; i < len(attrs); {
		n := max(attrs[i].rdnSize, 1)
		if i+n > len(attrs) {
			return nil, errors.New("name: RDN sizes do not add up")
		}
		out = append(out, dnRDN(attrs[i:i+n]))
		i += n
	}
	return out, nil
}

// dnWithin: a directoryName constraint is satisfied by the names it is a
// prefix of, RDN by RDN (RFC 5280 §4.2.1.10, §7.1).
func dnWithin(name, base []dnRDN) bool {
	if len(base) > len(name) {
		return false
	}
	for i := range base {
		if !rdnEqual(name[i], base[i]) {
			return false
		}
	}
	return true
}

func rdnEqual(a, b dnRDN) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
outer:
	for _, x := range a {
		for j, y := range b {
			if !used[j] && attrEqual(x, y) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// attrEqual compares two attribute values as RFC 5280 §7.1 asks of
// implementations at least: directory strings of any type by their text,
// case-insensitively, with leading, trailing and repeated inner white space
// ignored (a simplification of RFC 4518's preparation); other values by
// their encoding.
func attrEqual(a, b rawAttr) bool {
	if !a.typ.Equal(b.typ) {
		return false
	}
	if isDirectoryString(a.tag) && isDirectoryString(b.tag) {
		return foldText(attrText(a)) == foldText(attrText(b))
	}
	return a.tag == b.tag && bytes.Equal(a.value, b.value)
}

func isDirectoryString(t cbasn1.Tag) bool {
	switch t {
	case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.T61String, cbasn1.IA5String, cbasn1.Tag(28), cbasn1.Tag(30):
		return true
	}
	return false
}

func foldText(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// constraintText shows a subtree as OpenSSL prints it.
func constraintText(c generalName) string {
	switch c.tag {
	case gnIP:
		n := len(c.value) / 2
		ones, bits := net.IPMask(c.value[n:]).Size()
		if bits == 0 { // a mask that is not a prefix
			return fmt.Sprintf("%s/%s", net.IP(c.value[:n]), net.IP(c.value[n:]))
		}
		return fmt.Sprintf("%s/%d", net.IP(c.value[:n]), ones)
	case gnDir:
		var rdns []string
		if parsed, err := parseRDNs(c.value); err == nil {
			for _, rdn := range parsed {
				for _, a := range rdn {
					rdns = append(rdns, AttributeName(a.typ)+"="+attrText(a))
				}
			}
		}
		return strconvQuote(strings.Join(rdns, ","))
	}
	return strconvQuote(string(c.value))
}
