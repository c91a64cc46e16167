package profile

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/govtrust/govtrust/ca/lint"
	"gopkg.in/yaml.v3"
)

// Errors callers map to their protocol (STYLE.md: one sentinel per class,
// details wrapped with %w).
var (
	// ErrProfile: the profile itself is invalid.
	ErrProfile = errors.New("invalid profile")
	// ErrBadCSR: the request is malformed or its proof of possession fails.
	ErrBadCSR = errors.New("bad certificate request")
	// ErrKeyPolicy: the public key is weak, known-bad or of a type the
	// profile does not allow (BR §6.1.5).
	ErrKeyPolicy = errors.New("public key refused")
	// ErrPolicy: the request asks for something the profile does not allow.
	ErrPolicy = errors.New("request not allowed by profile")
)

// Duration is a time.Duration written in YAML as Go does ("8760h") or in
// whole days ("365d").
type Duration time.Duration

// UnmarshalYAML reads "365d" or a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration: %w", n.Line, err)
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes whole days as "Nd".
func (d Duration) MarshalYAML() (any, error) {
	if v := time.Duration(d); v%(24*time.Hour) == 0 && v != 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d", nil
	}
	return time.Duration(d).String(), nil
}

func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseUint(strings.TrimSuffix(s, "d"), 10, 16)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want whole days like 365d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	return v, nil
}

// KeyType names a key a profile accepts: "sm2", "ecdsa-p256", "ecdsa-p384",
// or "rsa-N" for RSA keys of at least N bits (N one of 2048, 3072, 4096).
type KeyType string

// FieldRule says where one subject attribute comes from.
type FieldRule struct {
	// Source is "csr" (the request's value), "fixed:VALUE", "record:KEY"
	// (the RA's registration record) or "forbidden" (a request that carries
	// it is refused). Attributes a profile does not list are dropped.
	Source   string `yaml:"source"`
	Required bool   `yaml:"required"`
	// MaxLen bounds the value in characters; 0 means the RFC 5280
	// Appendix A upper bound, and larger values are refused.
	MaxLen int `yaml:"max_len"`
}

// SANType allows one kind of subjectAltName name.
type SANType struct {
	Max      int  `yaml:"max"`      // most names of this kind; 0 forbids them
	Wildcard bool `yaml:"wildcard"` // dNSName only: "*.example.gov.cn" allowed
	Internal bool `yaml:"internal"` // dNSName: single-label and reserved-suffix names allowed; iPAddress: reserved (private...) addresses allowed
	// Source is where the names come from: "csr" (the default: the
	// request's names, checked against the rules above) or "record" /
	// "record:KEY" (the RA's registration record: one name under KEY,
	// by default "mail" for email, "dns", "ip" or "uri"). With a record
	// source a request may repeat the record's name but never name
	// another: that is refused, not silently replaced.
	Source string `yaml:"source"`
}

// recordKey returns the registration record key of a record-sourced SAN
// type kind ("email", "dns", "ip", "uri"), and whether the source is the
// record.
func (t SANType) recordKey(kind string) (string, bool) {
	src, arg, _ := strings.Cut(t.Source, ":")
	if src != "record" {
		return "", false
	}
	if arg != "" {
		return arg, true
	}
	if kind == "email" {
		return "mail", true
	}
	return kind, true
}

// SANRules are the subjectAltName names a request may carry.
type SANRules struct {
	DNS   SANType `yaml:"dns"`
	IP    SANType `yaml:"ip"`
	Email SANType `yaml:"email"`
	URI   SANType `yaml:"uri"`
	// Min is the fewest names the certificate must end up with.
	Min int `yaml:"min"`
	// CNInSAN: the commonName, if any, must be one of the names; when the
	// request lacks it, it is added (BR §7.1.4.3).
	CNInSAN bool `yaml:"cn_in_san"`
}

// CAConstraints makes the profile issue CA certificates.
type CAConstraints struct {
	// PathLen is the pathLenConstraint; nil leaves the path unconstrained.
	PathLen *int `yaml:"path_len"`
}

// NameConstraints are the RFC 5280 §4.2.1.10 constraints a CA profile
// writes (always critical).
type NameConstraints struct {
	PermittedDNS   []string `yaml:"permitted_dns"`
	ExcludedDNS    []string `yaml:"excluded_dns"`
	PermittedIP    []string `yaml:"permitted_ip"` // CIDR
	ExcludedIP     []string `yaml:"excluded_ip"`
	PermittedEmail []string `yaml:"permitted_email"`
	ExcludedEmail  []string `yaml:"excluded_email"`
	PermittedURI   []string `yaml:"permitted_uri"`
	ExcludedURI    []string `yaml:"excluded_uri"`
}

// AIA are the authorityInfoAccess URL templates.
type AIA struct {
	CAIssuers []string `yaml:"ca_issuers"`
	OCSP      []string `yaml:"ocsp"`
}

// IdentityRule asks for one GM/T 0015 identity extension, filled from the
// registration record entry of the same name ("id-card", "uscc"...).
type IdentityRule struct {
	Type     lint.IdentityKind `yaml:"type"`
	Required bool              `yaml:"required"`
}

// Profile is a versioned certificate profile.
type Profile struct {
	Name        string       `yaml:"name"`
	Version     string       `yaml:"version"`
	Description string       `yaml:"description"`
	Purpose     lint.Purpose `yaml:"purpose"`
	// Validity is the longest validity; requests may ask for less.
	Validity Duration `yaml:"validity"`
	// Backdate sets notBefore = now − Backdate (at most one hour) so clients
	// with slow clocks accept a fresh certificate.
	Backdate Duration `yaml:"backdate"`
	// KeySource is "csr" (the request's key) or "kmc" (the key the KMC
	// generated for an encryption certificate, Input.PublicKey).
	KeySource string    `yaml:"key_source"`
	KeyTypes  []KeyType `yaml:"key_types"`
	// KeyUsage and ExtKeyUsage use the RFC 5280 names ("digitalSignature",
	// "serverAuth") or, for EKUs, dotted OIDs.
	KeyUsage            []string         `yaml:"key_usage"`
	ExtKeyUsage         []string         `yaml:"ext_key_usage"`
	ExtKeyUsageCritical bool             `yaml:"ext_key_usage_critical"`
	CA                  *CAConstraints   `yaml:"ca"`
	NameConstraints     *NameConstraints `yaml:"name_constraints"`
	// Subject maps attribute short names (C, ST, L, STREET, O, OU, CN,
	// SERIALNUMBER) to their rule.
	Subject map[string]FieldRule `yaml:"subject"`
	SAN     SANRules             `yaml:"san"`
	// Policies are certificate policy OIDs.
	Policies []string `yaml:"policies"`
	// CRLDP, AIA.CAIssuers and AIA.OCSP are URL templates: {ca} is the
	// issuing CA's id, other {name}s come from Input.Vars.
	CRLDP       []string       `yaml:"crl_distribution_points"`
	AIA         AIA            `yaml:"aia"`
	Identity    []IdentityRule `yaml:"identity"`
	OCSPNoCheck bool           `yaml:"ocsp_no_check"`
	// Internal marks a profile the platform issues only to its own
	// services (the OCSP responder, the TSA's units, the seal maker, a
	// node's HTTPS listener) through the CA service's internal path: the
	// platform trusts what such a certificate signs or serves, so the
	// issue API refuses it to every caller. Purposes ocsp-signer, tsa and
	// tls-server-private are internal by nature and must set it.
	Internal bool `yaml:"internal"`
}

// maxProfileSize bounds a profile file; real ones are a few KiB.
const maxProfileSize = 1 << 20

// Parse decodes one profile strictly (an unknown key is an error naming its
// line) and validates it.
func Parse(data []byte) (*Profile, error) {
	if len(data) > maxProfileSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrProfile, len(data), maxProfileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProfile, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrProfile)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// subjectAttr is a subject attribute a profile can set.
type subjectAttr struct {
	name      string
	oid       asn1.ObjectIdentifier
	printable bool // X.520 types it PrintableString only
}

// subjectOrder is the order attributes are written in, most significant
// first, as crypto/x509's pkix.Name does (RFC 4514 prints it reversed).
var subjectOrder = []subjectAttr{
	{"C", asn1.ObjectIdentifier{2, 5, 4, 6}, true},
	{"ST", asn1.ObjectIdentifier{2, 5, 4, 8}, false},
	{"L", asn1.ObjectIdentifier{2, 5, 4, 7}, false},
	{"STREET", asn1.ObjectIdentifier{2, 5, 4, 9}, false},
	{"O", asn1.ObjectIdentifier{2, 5, 4, 10}, false},
	{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}, false},
	{"CN", asn1.ObjectIdentifier{2, 5, 4, 3}, false},
	{"SERIALNUMBER", asn1.ObjectIdentifier{2, 5, 4, 5}, true},
}

func subjectAttrByName(name string) (subjectAttr, bool) {
	for _, a := range subjectOrder {
		if a.name == name {
			return a, true
		}
	}
	return subjectAttr{}, false
}

var (
	kuBits = map[string]int{}
	ekuOID = map[string]asn1.ObjectIdentifier{
		"serverAuth":      {1, 3, 6, 1, 5, 5, 7, 3, 1},
		"clientAuth":      {1, 3, 6, 1, 5, 5, 7, 3, 2},
		"codeSigning":     {1, 3, 6, 1, 5, 5, 7, 3, 3},
		"emailProtection": {1, 3, 6, 1, 5, 5, 7, 3, 4},
		"timeStamping":    {1, 3, 6, 1, 5, 5, 7, 3, 8},
		"OCSPSigning":     {1, 3, 6, 1, 5, 5, 7, 3, 9},
	}
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	varRE  = regexp.MustCompile(`\{([a-z_]+)\}`)
)

func init() {
	for i, n := range lint.KeyUsageNames() {
		kuBits[n] = 1 << uint(i)
	}
}

// keyUsageBits returns the profile's key usage as smx509.KeyUsage bits.
func (p *Profile) keyUsageBits() int {
	u := 0
	for _, n := range p.KeyUsage {
		u |= kuBits[n]
	}
	return u
}

// extKeyUsageOIDs returns the profile's EKUs as OIDs.
func (p *Profile) extKeyUsageOIDs() []asn1.ObjectIdentifier {
	var out []asn1.ObjectIdentifier
	for _, n := range p.ExtKeyUsage {
		id, _ := parseEKU(n)
		out = append(out, id)
	}
	return out
}

func parseEKU(s string) (asn1.ObjectIdentifier, error) {
	if id, ok := ekuOID[s]; ok {
		return id, nil
	}
	return parseOID(s)
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	id := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		id[i] = int(n)
	}
	if id[0] > 2 || (id[0] < 2 && id[1] > 39) {
		return nil, fmt.Errorf("%q is not a valid OID", s)
	}
	return id, nil
}

// Validate checks that the profile is complete and coherent: the purpose
// agrees with key usage, extended key usage and CA constraints; sources,
// lengths and fixed values of the subject are legal; URL templates expand to
// http or ldap URLs. A profile that validates yields certificates that pass
// the lints.
func (p *Profile) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	if !nameRE.MatchString(p.Name) {
		bad("name %q must be lowercase letters, digits and hyphens", p.Name)
	}
	if strings.TrimSpace(p.Version) == "" {
		bad("version is required")
	}
	switch p.Purpose {
	case lint.PurposeSign, lint.PurposeEnc, lint.PurposeTLSServer, lint.PurposeTLSPrivate, lint.PurposeTLSClient,
		lint.PurposeOCSPSigner, lint.PurposeTSA, lint.PurposeCodeSign, lint.PurposeCA:
	default:
		bad("purpose %q is not one of sign, enc, tls-server, tls-server-private, tls-client, ocsp-signer, tsa, code-sign, ca", p.Purpose)
	}
	if v := time.Duration(p.Validity); v < time.Hour || v > 30*365*24*time.Hour {
		bad("validity %s must be between 1h and 30 years", v)
	}
	if b := time.Duration(p.Backdate); b < 0 || b > time.Hour {
		bad("backdate %s must be between 0 and 1h", b)
	}
	switch p.KeySource {
	case "", "csr":
	case "kmc":
		if p.Purpose != lint.PurposeEnc {
			bad("key_source kmc is only for encryption certificates")
		}
	default:
		bad("key_source %q is not csr or kmc", p.KeySource)
	}
	if len(p.KeyTypes) == 0 {
		bad("key_types is empty")
	}
	for _, kt := range p.KeyTypes {
		if _, _, err := kt.parse(); err != nil {
			bad("%v", err)
		}
	}
	p.validateUsage(bad)
	p.validateSubject(bad)
	p.validateSAN(bad)
	p.validateBR(bad)
	for _, s := range p.Policies {
		if _, err := parseOID(s); err != nil {
			bad("policy: %v", err)
		}
	}
	p.validateURLs(bad)
	p.validateIdentity(bad)
	switch p.Purpose {
	case lint.PurposeOCSPSigner, lint.PurposeTSA, lint.PurposeTLSPrivate:
		// A delegated responder speaks for the CA (RFC 6960 §4.2.2.2), the
		// platform's verifiers accept any time-stamping unit chaining to
		// its roots, and a private TLS server is one of the platform's
		// listeners: none may go to a subscriber.
		if !p.Internal {
			bad("purpose %s needs internal: true (only the platform's own services hold such certificates)", p.Purpose)
		}
	}
	if p.NameConstraints != nil {
		if p.CA == nil {
			bad("name_constraints need a CA profile")
		}
		p.NameConstraints.validate(bad)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrProfile, p.Name, strings.Join(errs, "; "))
	}
	return nil
}

func (p *Profile) validateUsage(bad func(string, ...any)) {
	if len(p.KeyUsage) == 0 {
		bad("key_usage is empty")
	}
	seen := map[string]bool{}
	for _, n := range p.KeyUsage {
		if _, ok := kuBits[n]; !ok {
			bad("key usage %q is not an RFC 5280 §4.2.1.3 name", n)
		}
		if seen[n] {
			bad("key usage %q listed twice", n)
		}
		seen[n] = true
	}
	ku := p.keyUsageBits()
	const (
		ds, nr, ke, de, ka, cs, crl, eo, do = 1, 2, 4, 8, 16, 32, 64, 128, 256
	)
	if (ku&(eo|do) != 0) && ku&ka == 0 {
		bad("encipherOnly and decipherOnly need keyAgreement (RFC 5280 §4.2.1.3)")
	}
	isCA := p.Purpose == lint.PurposeCA
	if isCA != (p.CA != nil) {
		bad("a ca section goes with purpose ca, and only with it")
	}
	if isCA && ku&cs == 0 {
		bad("a CA profile needs keyCertSign")
	}
	if !isCA && ku&(cs|crl) != 0 {
		bad("keyCertSign and cRLSign are for CA profiles only")
	}
	// The key usage must suit every key type the profile accepts, or every
	// certificate for that type would fail the lints (zlint's
	// e_ecdsa_allowed_ku, e_rsa_allowed_ku_*, the own e_gmt0015_ku_mixed).
	for _, kt := range p.KeyTypes {
		family, _, err := kt.parse()
		if err != nil {
			continue // reported by Validate
		}
		switch {
		case family == "ecdsa-p256" || family == "ecdsa-p384":
			if ku&(ke|de) != 0 {
				bad("key type %s: an EC key has no keyEncipherment or dataEncipherment (RFC 8813 §3)", kt)
			}
		case family == "rsa":
			if ku&(ka|eo|do) != 0 {
				bad("key type %s: an RSA key has no keyAgreement, encipherOnly or decipherOnly (RFC 3279 §2.3.1)", kt)
			}
			if isCA && ku&(ke|de) != 0 {
				bad("key type %s: an RSA CA key signs only, no keyEncipherment or dataEncipherment (RFC 3279 §2.3.1)", kt)
			}
		case family == "sm2" && !isCA:
			if ku&(ds|nr) != 0 && ku&(ke|de|ka|eo|do) != 0 {
				bad("key type sm2: an SM2 end-entity key either signs (digitalSignature, nonRepudiation) or encrypts (keyEncipherment, dataEncipherment, keyAgreement), never both (GM/T 0015 dual certificates)")
			}
		}
	}
	if p.CA != nil && p.CA.PathLen != nil && *p.CA.PathLen < 0 {
		bad("ca.path_len must not be negative")
	}
	switch p.Purpose {
	case lint.PurposeSign:
		if ku&^(ds|nr) != 0 {
			bad("a signing profile has only digitalSignature and nonRepudiation (GM/T 0015)")
		}
	case lint.PurposeEnc:
		if ku&^(ke|de|ka) != 0 {
			bad("an encryption profile has only keyEncipherment, dataEncipherment and keyAgreement (GM/T 0015)")
		}
	case lint.PurposeTLSServer, lint.PurposeTLSPrivate, lint.PurposeTLSClient, lint.PurposeOCSPSigner, lint.PurposeTSA, lint.PurposeCodeSign:
		if ku&ds == 0 {
			bad("purpose %s needs digitalSignature", p.Purpose)
		}
	}
	ekus := map[string]bool{}
	for _, n := range p.ExtKeyUsage {
		id, err := parseEKU(n)
		if err != nil {
			bad("ext key usage: %v", err)
			continue
		}
		if id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37, 0}) {
			bad("anyExtendedKeyUsage is not allowed")
		}
		if ekus[id.String()] {
			bad("ext key usage %q listed twice", n)
		}
		ekus[id.String()] = true
	}
	has := func(n string) bool { return ekus[ekuOID[n].String()] }
	switch p.Purpose {
	case lint.PurposeTLSServer, lint.PurposeTLSPrivate:
		if !has("serverAuth") {
			bad("a %s profile needs serverAuth", p.Purpose)
		}
	case lint.PurposeTLSClient:
		if !has("clientAuth") {
			bad("a tls-client profile needs clientAuth")
		}
	case lint.PurposeOCSPSigner:
		if !has("OCSPSigning") || !p.OCSPNoCheck {
			bad("an ocsp-signer profile needs OCSPSigning and ocsp_no_check (RFC 6960 §4.2.2.2)")
		}
	case lint.PurposeTSA:
		if len(ekus) != 1 || !has("timeStamping") || !p.ExtKeyUsageCritical {
			bad("a tsa profile has exactly timeStamping, critical (RFC 3161 §2.3)")
		}
	case lint.PurposeCodeSign:
		if !has("codeSigning") {
			bad("a code-sign profile needs codeSigning")
		}
	}
	if p.ExtKeyUsageCritical && len(ekus) == 0 {
		bad("ext_key_usage_critical without ext_key_usage")
	}
	if has("timeStamping") && p.Purpose != lint.PurposeTSA {
		bad("timeStamping belongs to tsa profiles only (RFC 3161 §2.3 wants it alone)")
	}
	if p.OCSPNoCheck && !has("OCSPSigning") {
		bad("ocsp_no_check without OCSPSigning would exempt a non-responder from revocation checking")
	}
	// A certificate with id-kp-OCSPSigning issued by a CA is a delegated
	// responder for all of that CA's certificates (RFC 6960 §4.2.2.2):
	// on a subscriber's or a sub-CA's certificate it would let its holder
	// answer "good" for any of them (the 2020 delegated-responder
	// incident), and with ocsp_no_check nobody could revoke it.
	if (has("OCSPSigning") || p.OCSPNoCheck) && p.Purpose != lint.PurposeOCSPSigner {
		bad("OCSPSigning and ocsp_no_check belong to ocsp-signer profiles only (RFC 6960 §4.2.2.2: the holder would answer for every certificate of the CA)")
	}
}

func (p *Profile) validateSubject(bad func(string, ...any)) {
	for name, r := range p.Subject {
		a, ok := subjectAttrByName(name)
		if !ok {
			bad("subject attribute %q is not one of C, ST, L, STREET, O, OU, CN, SERIALNUMBER", name)
			continue
		}
		bound := lint.AttributeMaxLen(a.oid)
		if r.MaxLen < 0 || r.MaxLen > bound {
			bad("subject %s max_len %d outside 0..%d (RFC 5280 Appendix A)", name, r.MaxLen, bound)
		}
		src, arg, _ := strings.Cut(r.Source, ":")
		switch src {
		case "csr":
		case "forbidden":
			if r.Required {
				bad("subject %s is both forbidden and required", name)
			}
		case "record":
			if arg == "" {
				bad("subject %s: record: needs a key", name)
			}
		case "fixed":
			max := r.MaxLen
			if max == 0 {
				max = bound
			}
			if err := checkValue(a, arg, max); err != nil {
				bad("subject %s fixed value: %v", name, err)
			}
		default:
			bad("subject %s source %q is not csr, fixed:VALUE, record:KEY or forbidden", name, r.Source)
		}
	}
	if p.Purpose == lint.PurposeCA {
		if r, ok := p.Subject["CN"]; !ok || !r.Required {
			bad("a CA profile requires a CN (RFC 5280 §4.1.2.6: CA subjects are not empty)")
		}
	}
}

func (p *Profile) validateSAN(bad func(string, ...any)) {
	s := p.SAN
	for _, t := range []struct {
		name string
		v    SANType
	}{{"dns", s.DNS}, {"ip", s.IP}, {"email", s.Email}, {"uri", s.URI}} {
		if t.v.Max < 0 || t.v.Max > 1000 {
			bad("san.%s.max %d outside 0..1000", t.name, t.v.Max)
		}
		if t.name != "dns" && t.v.Wildcard {
			bad("san.%s: wildcard applies to dns only", t.name)
		}
		if t.name != "dns" && t.name != "ip" && t.v.Internal {
			bad("san.%s: internal applies to dns and ip only", t.name)
		}
		switch src, arg, hasArg := strings.Cut(t.v.Source, ":"); {
		case src == "" && !hasArg, src == "csr" && !hasArg:
		case src == "record" && (!hasArg || arg != ""):
			if t.v.Max == 0 {
				bad("san.%s.source record with max 0: the profile allows no such name", t.name)
			}
		default:
			bad("san.%s.source %q is not csr, record or record:KEY", t.name, t.v.Source)
		}
		// BR §7.1.2.7.12 keeps Internal Names and Reserved IP Addresses
		// out of TLS server certificates, and zlint's BR lints refuse them.
		if p.Purpose == lint.PurposeTLSServer && t.v.Internal {
			bad("san.%s.internal: a tls-server profile follows the BR, which forbid internal names and reserved addresses (§7.1.2.7.12)", t.name)
		}
	}
	total := s.DNS.Max + s.IP.Max + s.Email.Max + s.URI.Max
	if s.Min < 0 || s.Min > total {
		bad("san.min %d outside 0..%d (the sum of the maxima)", s.Min, total)
	}
	if s.CNInSAN && s.DNS.Max+s.IP.Max == 0 {
		bad("san.cn_in_san needs dns or ip names")
	}
	if p.Purpose == lint.PurposeTLSServer && (s.Min < 1 || !s.CNInSAN) {
		bad("a tls-server profile needs san.min ≥ 1 and san.cn_in_san (BR §7.1.2.7.12, §7.1.4.3)")
	}
	if r, ok := p.Subject["CN"]; p.Purpose == lint.PurposeTLSServer && ok && strings.HasPrefix(r.Source, "fixed:") {
		bad("a tls-server profile cannot fix the CN")
	}
}

// validateBR refuses tls-server profiles whose certificates the CA/B Forum
// Baseline Requirements forbid. The lints refuse such certificates too (for
// every key type, lints_br.go), but a profile that could only produce
// refusals, or refusals depending on the request, is a configuration error
// better reported when it is loaded.
func (p *Profile) validateBR(bad func(string, ...any)) {
	if p.Purpose != lint.PurposeTLSServer {
		return
	}
	listed := func(attr string) bool {
		r, ok := p.Subject[attr]
		return ok && r.Source != "forbidden"
	}
	if (listed("L") || listed("ST")) && !listed("O") {
		bad("a tls-server profile with L or ST needs O (BR §7.1.2.7.4: no locality or province without an organisation)")
	}
	if listed("OU") {
		bad("a tls-server profile has no OU (BR §7.1.2.7.4: organizationalUnitName must not be present)")
	}
	if p.SAN.Email.Max > 0 || p.SAN.URI.Max > 0 {
		bad("a tls-server profile allows only dns and ip names (BR §7.1.2.7.12: no rfc822Name or URI)")
	}
	if !hasHTTPTemplate(p.CRLDP) {
		bad("a tls-server profile needs an http crl_distribution_points URL (BR §7.1.2.11.2)")
	}
	if !hasHTTPTemplate(p.AIA.OCSP) || !hasHTTPTemplate(p.AIA.CAIssuers) {
		bad("a tls-server profile needs http aia.ocsp and aia.ca_issuers URLs (BR §7.1.2.7.7)")
	}
}

// hasHTTPTemplate reports whether one of the URL templates expands to an
// http URL.
func hasHTTPTemplate(tmpls []string) bool {
	for _, t := range tmpls {
		u := varRE.ReplaceAllStringFunc(t, func(m string) string { return sampleVar(m[1 : len(m)-1]) })
		if strings.HasPrefix(u, "http://") {
			return true
		}
	}
	return false
}

// sampleVars expand URL templates during validation.
func sampleVar(name string) string {
	switch name {
	case "ca":
		return "sample-ca"
	case "ldap":
		return "ldap://ldap.example.gov.cn"
	case "ldap_base":
		return "dc=govtrust,dc=local"
	}
	return "http://pki.example.gov.cn"
}

func (p *Profile) validateURLs(bad func(string, ...any)) {
	check := func(what string, tmpls []string, schemes ...string) {
		for _, t := range tmpls {
			u := varRE.ReplaceAllStringFunc(t, func(m string) string { return sampleVar(m[1 : len(m)-1]) })
			if strings.ContainsAny(u, "{}") {
				bad("%s template %q has a malformed {variable}", what, t)
				continue
			}
			if err := lint.CheckURL(u); err != nil {
				bad("%s template %q: %v", what, t, err)
				continue
			}
			scheme, _, _ := strings.Cut(u, ":")
			ok := false
			for _, s := range schemes {
				ok = ok || s == scheme
			}
			if !ok {
				bad("%s template %q: scheme %s, want %s", what, t, scheme, strings.Join(schemes, " or "))
			}
		}
	}
	// Plain http and ldap only: an https CRL or OCSP URL needs revocation
	// data to fetch revocation data (RFC 5280 §4.2.1.13, RFC 6960 A.1).
	check("crl_distribution_points", p.CRLDP, "http", "ldap")
	check("aia.ca_issuers", p.AIA.CAIssuers, "http", "ldap")
	check("aia.ocsp", p.AIA.OCSP, "http")
}

func (p *Profile) validateIdentity(bad func(string, ...any)) {
	seen := map[string]lint.IdentityKind{}
	for _, r := range p.Identity {
		id, err := lint.IdentityOID(r.Type)
		if err != nil {
			bad("identity: %v", err)
			continue
		}
		if prev, ok := seen[id.String()]; ok {
			bad("identity %s and %s share the extension %s; list one", prev, r.Type, id)
		}
		seen[id.String()] = r.Type
	}
	if len(p.Identity) > 0 && p.Purpose == lint.PurposeCA {
		bad("identity extensions are for end-entity certificates")
	}
}

func (nc *NameConstraints) validate(bad func(string, ...any)) {
	for _, d := range append(append([]string(nil), nc.PermittedDNS...), nc.ExcludedDNS...) {
		if err := lint.ValidDNSName(strings.TrimPrefix(d, "."), false); err != nil {
			bad("name constraint: %v", err)
		}
	}
	for _, c := range append(append([]string(nil), nc.PermittedIP...), nc.ExcludedIP...) {
		if _, _, err := net.ParseCIDR(c); err != nil {
			bad("name constraint: %v", err)
		}
	}
	for _, e := range append(append([]string(nil), nc.PermittedEmail...), nc.ExcludedEmail...) {
		if e == "" || !isASCII(e) {
			bad("name constraint: email %q", e)
		}
	}
	for _, u := range append(append([]string(nil), nc.PermittedURI...), nc.ExcludedURI...) {
		if err := lint.ValidDNSName(strings.TrimPrefix(u, "."), false); err != nil {
			bad("name constraint: URI domain: %v", err)
		}
	}
}

// checkValue validates one subject value: no control or bidi characters, no
// surrounding white space, within max characters, PrintableString for C and
// SERIALNUMBER, and two capital letters for C.
func checkValue(a subjectAttr, v string, max int) error {
	if v == "" {
		return fmt.Errorf("%s is empty", a.name)
	}
	if r, why, bad := lint.BadRune(v); bad {
		return fmt.Errorf("%s contains a %s (U+%04X)", a.name, why, r)
	}
	if strings.TrimSpace(v) != v {
		return fmt.Errorf("%s has leading or trailing white space", a.name)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return fmt.Errorf("%s has %d characters, more than %d", a.name, n, max)
	}
	if a.printable && !lint.IsPrintableString(v) {
		return fmt.Errorf("%s %q must fit PrintableString (X.520)", a.name, v)
	}
	if a.name == "C" && (len(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z') {
		return fmt.Errorf("country %q is not two capital letters (ISO 3166-1)", v)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
