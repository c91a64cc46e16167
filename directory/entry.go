package directory

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Entry kinds: what an entry stands for. External servers may map each kind
// to their own object classes (config directory.external[].object_classes).
const (
	KindContainer   = "container"   // the base entry and ou=ca, ou=departments, ou=services
	KindCA          = "ca"          // a certification authority
	KindDepartment  = "department"  // an organisational unit of the organisation
	KindPerson      = "person"      // an official
	KindApplication = "application" // a department's application account
	KindService     = "service"     // a registered service endpoint
	KindCertificate = "certificate" // one issued certificate (uid=<serial>,cn=<ca>,ou=ca,...)
)

// Entry is one directory entry. Attribute names are kept in their
// canonical spelling (schemaName); values are raw bytes (UTF-8 text, or DER
// for the binary attributes of RFC 4523).
type Entry struct {
	DN    string
	Kind  string
	Attrs map[string][][]byte

	norm, parent string
}

// Get returns the values of attribute name (any case, options ignored).
func (e *Entry) Get(name string) [][]byte {
	return e.Attrs[schemaName(name)]
}

// First returns the first value of name as a string, or "".
func (e *Entry) First(name string) string {
	if v := e.Get(name); len(v) > 0 {
		return string(v[0])
	}
	return ""
}

// clone returns a deep copy of e.
func (e *Entry) clone() *Entry {
	c := *e
	c.Attrs = make(map[string][][]byte, len(e.Attrs))
	for k, vs := range e.Attrs {
		c.Attrs[k] = slices.Clone(vs)
	}
	return &c
}

// set replaces the values of name; no values removes the attribute.
func (e *Entry) set(name string, values ...[]byte) {
	name = schemaName(name)
	if len(values) == 0 {
		delete(e.Attrs, name)
		return
	}
	e.Attrs[name] = values
}

// setStr is set with string values, empty strings left out.
func (e *Entry) setStr(name string, values ...string) {
	var vs [][]byte
	for _, v := range values {
		if v != "" {
			vs = append(vs, []byte(v))
		}
	}
	e.set(name, vs...)
}

// newEntry returns an entry of kind at dn with object classes ocs.
func newEntry(dn, kind string, ocs ...string) (*Entry, error) {
	norm, parent, err := normalizeDN(dn)
	if err != nil {
		return nil, err
	}
	e := &Entry{DN: dn, Kind: kind, Attrs: map[string][][]byte{}, norm: norm, parent: parent}
	e.setStr("objectClass", ocs...)
	return e, nil
}

// binaryAttrs are the attributes of ASN.1 syntax that RFC 4522 transfers
// with the ;binary option (RFC 4523 §2: certificates, CRLs, pairs).
var binaryAttrs = map[string]bool{
	"userCertificate": true, "cACertificate": true, "certificateRevocationList": true,
	"authorityRevocationList": true, "deltaRevocationList": true, "crossCertificatePair": true,
	"userSMIMECertificate": true,
}

// knownAttrs are the canonical spellings of the attributes the directory
// writes (RFC 4519, RFC 4523, RFC 2798, RFC 2079).
var knownAttrs = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"objectClass", "cn", "sn", "givenName", "displayName", "ou", "o", "c", "l", "st", "dc", "uid", "mail",
		"title", "description", "businessCategory", "departmentNumber", "labeledURI", "seeAlso",
		"telephoneNumber", "mobile", "homePhone", "postalAddress", "postalCode", "street", "serialNumber",
		"employeeNumber", "employeeType", "userPassword", "facsimileTelephoneNumber",
		"userCertificate", "cACertificate", "certificateRevocationList", "authorityRevocationList",
		"deltaRevocationList", "crossCertificatePair", "userSMIMECertificate", "member", "manager",
	} {
		m[strings.ToLower(n)] = n
	}
	m["commonname"], m["surname"], m["userid"], m["organizationalunitname"], m["organizationname"] = "cn", "sn", "uid", "ou", "o"
	m["rfc822mailbox"], m["localityname"], m["stateorprovincename"], m["countryname"] = "mail", "l", "st", "c"
	m["domaincomponent"] = "dc"
	// The OIDs of the attributes relying parties ask for by number.
	for oid, n := range map[string]string{
		"2.5.4.3": "cn", "2.5.4.4": "sn", "2.5.4.11": "ou", "2.5.4.10": "o", "0.9.2342.19200300.100.1.1": "uid",
		"2.5.4.0": "objectClass", "2.5.4.36": "userCertificate", "2.5.4.37": "cACertificate",
		"2.5.4.38": "authorityRevocationList", "2.5.4.39": "certificateRevocationList", "2.5.4.53": "deltaRevocationList",
		"2.5.4.40": "crossCertificatePair", "0.9.2342.19200300.100.1.3": "mail", "2.5.4.5": "serialNumber",
	} {
		m[oid] = n
	}
	return m
}()

// schemaName returns the canonical name of an attribute description: its
// options (";binary") dropped, known names in their schema spelling,
// unknown ones as given.
func schemaName(desc string) string {
	name, _, _ := strings.Cut(desc, ";")
	if n, ok := knownAttrs[strings.ToLower(name)]; ok {
		return n
	}
	return name
}

// wireName is the name an attribute is sent under: the binary ones always
// with ;binary, as slapd does (RFC 4522 §2).
func wireName(name string) string {
	if binaryAttrs[name] {
		return name + ";binary"
	}
	return name
}

// ErrInvalidDN reports a DN that does not parse (RFC 4514).
var ErrInvalidDN = errors.New("directory: invalid DN")

// normalizeDN returns the comparison form of dn (attribute types and
// values lower-cased, spaces around separators dropped, values re-escaped)
// and that of its parent ("" for a single RDN).
func normalizeDN(dn string) (norm, parent string, err error) {
	if strings.TrimSpace(dn) == "" {
		return "", "", nil
	}
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrInvalidDN, dn, err)
	}
	rdns := make([]string, len(p.RDNs))
	for i, r := range p.RDNs {
		if len(r.Attributes) == 0 {
			return "", "", fmt.Errorf("%w: %q: empty RDN", ErrInvalidDN, dn)
		}
		parts := make([]string, len(r.Attributes))
		for j, a := range r.Attributes {
			parts[j] = strings.ToLower(schemaName(a.Type)) + "=" + escapeValue(strings.ToLower(a.Value))
		}
		slices.Sort(parts)
		rdns[i] = strings.Join(parts, "+")
	}
	return strings.Join(rdns, ","), strings.Join(rdns[1:], ","), nil
}

// escapeValue escapes an attribute value for a DN string (RFC 4514 §2.4).
func escapeValue(v string) string {
	var b strings.Builder
	for i, r := range v {
		switch {
		case strings.ContainsRune(`,+"\<>;=`, r),
			(r == ' ' || r == '#') && i == 0,
			r == ' ' && i == len(v)-1:
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == 0:
			b.WriteString(`\00`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// rdn returns attr=value, escaped.
func rdn(attr, value string) string { return attr + "=" + escapeValue(value) }

// underBase reports whether norm is base or below it.
func underBase(norm, base string) bool {
	return norm == base || base == "" || strings.HasSuffix(norm, ","+base)
}

// sortedNames returns the attribute names of e, sorted (objectClass
// first), so answers are stable.
func (e *Entry) sortedNames() []string {
	names := slices.Collect(maps.Keys(e.Attrs))
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "objectClass":
			return -1
		case b == "objectClass":
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}
