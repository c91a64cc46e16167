package lint

import (
	"bytes"
	"encoding/asn1"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Severity ranks a finding. Only Error blocks issuance.
type Severity int

// Severities, lowest first.
const (
	Notice Severity = iota + 1
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Notice:
		return "notice"
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Finding is one violation found by one lint.
type Finding struct {
	Lint     string   // lint name, e.g. "e_ku_not_critical"
	Severity Severity // Error, Warning or Notice
	Source   string   // where the rule is written, e.g. "RFC 5280 §4.2.1.3"
	Detail   string   // what was found
}

func (f Finding) String() string {
	return fmt.Sprintf("%s %s (%s): %s", f.Severity, f.Lint, f.Source, f.Detail)
}

// Purpose is what a profile issues certificates for. It selects the lints
// that only make sense for one kind of certificate.
type Purpose string

// Purposes of the built-in profiles.
const (
	PurposeSign      Purpose = "sign"       // GM/T 0015 signing certificate (person, organisation, seal maker)
	PurposeEnc       Purpose = "enc"        // GM/T 0015 encryption certificate (KMC key)
	PurposeTLSServer Purpose = "tls-server" // TLS or TLCP server
	// PurposeTLSPrivate is a TLS server of the platform's own network (a
	// node's HTTPS listener): TLS server rules, but not the CA/B Forum BR,
	// which bind publicly trusted certificates only (BR §1.1) and forbid
	// the internal names and addresses such a server is reached by.
	PurposeTLSPrivate Purpose = "tls-server-private"
	PurposeTLSClient  Purpose = "tls-client"  // TLS client (mTLS)
	PurposeOCSPSigner Purpose = "ocsp-signer" // delegated OCSP responder (RFC 6960 §4.2.2.2)
	PurposeTSA        Purpose = "tsa"         // time-stamping unit (RFC 3161 §2.3)
	PurposeCodeSign   Purpose = "code-sign"   // code signing
	PurposeCA         Purpose = "ca"          // subordinate CA
)

// Expect is what the profile said the certificate must contain. Zero fields
// are not checked; Certificate lints with a zero Expect.
type Expect struct {
	Purpose Purpose
	// Now is the signing time; when set, notBefore must lie within 48 hours
	// of it (BR §7.1.2.7).
	Now time.Time
	// MaxValidity bounds notAfter − notBefore + 1 s (RFC 5280 §4.1.2.5
	// counts both ends).
	MaxValidity time.Duration
	// KeyUsage, when non-zero, is the exact key usage (smx509.KeyUsage bits).
	KeyUsage smx509.KeyUsage
	// ExtKeyUsage, when non-nil, is the exact set of EKU OIDs.
	ExtKeyUsage []asn1.ObjectIdentifier
	// PathLen is the pathLenConstraint a CA certificate must carry; nil
	// means none. Checked only for PurposeCA.
	PathLen *int
	// Policies, when non-nil, is the exact set of policy OIDs.
	Policies []asn1.ObjectIdentifier
	// CRLDistributionPoints, OCSPServers and IssuingCertificateURLs, when
	// non-nil, are the exact URLs.
	CRLDistributionPoints  []string
	OCSPServers            []string
	IssuingCertificateURLs []string
	// IdentityExtensions are GM/T 0015 identity extensions that must be present.
	IdentityExtensions []asn1.ObjectIdentifier
}

// Info describes one lint.
type Info struct {
	Name        string
	Severity    Severity
	Source      string
	Description string
}

// lint is one registered check. run returns one detail per violation.
type lint struct {
	Info
	keyOnly bool // also run by PublicKey
	run     func(c *ctx) []string
}

var registry []*lint

func register(name string, sev Severity, source, desc string, run func(c *ctx) []string) {
	registry = append(registry, &lint{Info: Info{name, sev, source, desc}, run: run})
}

func registerKey(name string, sev Severity, source, desc string, run func(c *ctx) []string) {
	registry = append(registry, &lint{Info: Info{name, sev, source, desc}, keyOnly: true, run: run})
}

// Lints lists every lint, sorted by name.
func Lints() []Info {
	out := make([]Info, len(registry))
	for i, l := range registry {
		out[i] = l.Info
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ctx is what the lints see of one certificate.
type ctx struct {
	der      []byte
	raw      *rawCert
	cert     *smx509.Certificate // nil when smx509 refused the DER
	parseErr error

	issuer     *smx509.Certificate // nil when self-signed
	selfSigned bool
	issuerKey  *spkiInfo // key of the issuer (the certificate's own when self-signed)
	exp        Expect

	key    *spkiInfo
	keyErr error

	subject    []rawAttr
	subjectErr error
	issuerDN   []rawAttr

	// Extension views; has* reports presence, *OK a parseable value.
	ku           int
	hasKU, kuOK  bool
	bc           basicConstraints
	hasBC, bcOK  bool
	eku          []asn1.ObjectIdentifier
	hasEKU       bool
	ekuOK        bool
	san          []generalName
	hasSAN       bool
	sanOK        bool
	isCA         bool
	crldp        []string
	aia          []accessDescription
	policies     []asn1.ObjectIdentifier
	hasPolicies  bool
	notBefore    time.Time
	notAfter     time.Time
	validityOK   bool
	malformedExt []string
}

// Certificate lints a certificate parsed from a DER signed with a throw-away
// key (so the signature is not checked) against the rules of RFC 5280,
// GM/T 0015 and the BR items govtrust adopts, without profile expectations.
// issuer is the real issuing CA certificate; nil means the certificate is
// self-signed.
func Certificate(cert, issuer *smx509.Certificate) []Finding {
	return Check(cert.Raw, issuer, Expect{})
}

// Check lints the DER of a certificate against the rules and against what
// the profile expects. It reads the DER itself, so faults the smx509 parser
// refuses (negative serials, duplicate extensions...) are reported by their
// own lint and by e_x509_parse.
func Check(der []byte, issuer *smx509.Certificate, exp Expect) []Finding {
	c, fatal := newCtx(der, issuer, exp)
	if fatal != nil {
		return []Finding{*fatal}
	}
	fs := append(c.runAll(false), c.runZlint()...)
	sortFindings(fs)
	return fs
}

// PublicKey lints a SubjectPublicKeyInfo alone with the key lints (sizes,
// curves, point validity, known-weak RSA moduli). It is what a CA runs on a
// CSR's key before anything else.
func PublicKey(spki []byte) []Finding {
	c := &ctx{raw: &rawCert{spki: spki}}
	c.key, c.keyErr = parseSPKI(spki)
	return c.runAll(true)
}

// Errors returns the findings of Error severity.
func Errors(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Severity == Error {
			out = append(out, f)
		}
	}
	return out
}

func newCtx(der []byte, issuer *smx509.Certificate, exp Expect) (*ctx, *Finding) {
	raw, err := parseRaw(der)
	if err != nil {
		return nil, &Finding{Lint: "e_x509_parse", Severity: Error, Source: "RFC 5280 §4.1",
			Detail: fmt.Sprintf("the DER is not a Certificate: %v", err)}
	}
	c := &ctx{der: der, raw: raw, exp: exp}
	c.cert, c.parseErr = smx509.ParseCertificate(der)
	if issuer == nil || (c.cert != nil && bytes.Equal(issuer.Raw, c.cert.Raw)) {
		c.selfSigned = true
	} else {
		c.issuer = issuer
	}
	c.key, c.keyErr = parseSPKI(raw.spki)
	if c.selfSigned {
		c.issuerKey = c.key
	} else {
		c.issuerKey, _ = parseSPKI(issuer.RawSubjectPublicKeyInfo)
	}
	c.subject, c.subjectErr = parseName(raw.subject)
	c.issuerDN, _ = parseName(raw.issuer)

	nb, ok1 := raw.notBefore.time()
	na, ok2 := raw.notAfter.time()
	c.notBefore, c.notAfter, c.validityOK = nb, na, ok1 && ok2

	if e, ok := raw.ext(oidExtKeyUsage); ok {
		c.hasKU = true
		c.ku, c.kuOK = parseKeyUsage(e.value)
		c.noteMalformed("keyUsage", c.kuOK)
	}
	if e, ok := raw.ext(oidExtBasicConstraints); ok {
		c.hasBC = true
		c.bc, c.bcOK = parseBasicConstraints(e.value)
		c.noteMalformed("basicConstraints", c.bcOK)
		c.isCA = c.bcOK && c.bc.ca
	}
	if e, ok := raw.ext(oidExtExtKeyUsage); ok {
		c.hasEKU = true
		c.eku, c.ekuOK = parseOIDSequence(e.value)
		c.ekuOK = c.ekuOK && len(c.eku) > 0
		c.noteMalformed("extKeyUsage", c.ekuOK)
	}
	if e, ok := raw.ext(oidExtSAN); ok {
		c.hasSAN = true
		var err error
		c.san, err = parseGeneralNames(e.value)
		c.sanOK = err == nil
		c.noteMalformed("subjectAltName", c.sanOK)
	}
	if e, ok := raw.ext(oidExtCRLDP); ok {
		var other, ok bool
		c.crldp, other, ok = parseCRLDP(e.value)
		c.noteMalformed("cRLDistributionPoints", ok)
		if ok && other {
			c.malformedExt = append(c.malformedExt, "cRLDistributionPoints: a point is not a fullName of URIs (govtrust writes only those)")
		}
	}
	if e, ok := raw.ext(oidExtAIA); ok {
		var ok bool
		c.aia, ok = parseAIA(e.value)
		c.noteMalformed("authorityInfoAccess", ok)
	}
	if e, ok := raw.ext(oidExtCertificatePolicies); ok {
		c.hasPolicies = true
		var ok bool
		c.policies, ok = parsePolicies(e.value)
		c.noteMalformed("certificatePolicies", ok && len(c.policies) > 0)
	}
	if e, ok := raw.ext(oidExtAKI); ok {
		_, ok := parseAKI(e.value)
		c.noteMalformed("authorityKeyIdentifier", ok)
	}
	if e, ok := raw.ext(oidExtSKI); ok {
		id, ok := parseSKI(e.value)
		c.noteMalformed("subjectKeyIdentifier", ok && len(id) > 0)
	}
	if e, ok := raw.ext(oidExtOCSPNoCheck); ok {
		c.noteMalformed("id-pkix-ocsp-nocheck (value must be NULL, RFC 6960 §4.2.2.2.1)", bytes.Equal(e.value, []byte{5, 0}))
	}
	return c, nil
}

func (c *ctx) noteMalformed(name string, ok bool) {
	if !ok {
		c.malformedExt = append(c.malformedExt, name+": value does not decode")
	}
}

func (c *ctx) runAll(keyOnly bool) []Finding {
	var out []Finding
	for _, l := range registry {
		if keyOnly && !l.keyOnly {
			continue
		}
		for _, d := range l.run(c) {
			out = append(out, Finding{Lint: l.Name, Severity: l.Severity, Source: l.Source, Detail: d})
		}
	}
	sortFindings(out)
	return out
}

// sortFindings orders findings by severity, most severe first, then by lint
// name.
func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Severity != fs[j].Severity {
			return fs[i].Severity > fs[j].Severity
		}
		return fs[i].Lint < fs[j].Lint
	})
}

// hasEKU reports whether the EKU extension lists id.
func (c *ctx) hasEKUOID(id asn1.ObjectIdentifier) bool {
	return c.ekuOK && oidIn(id, c.eku...)
}

// leaf reports whether the certificate is not a CA certificate.
func (c *ctx) leaf() bool { return !c.isCA }

func one(format string, args ...any) []string { return []string{fmt.Sprintf(format, args...)} }

// time decodes a UTCTime or GeneralizedTime leniently (the format lints say
// what is wrong with it).
func (t rawTime) time() (time.Time, bool) {
	s := string(t.content)
	var layouts []string
	switch t.tag {
	case 0x17: // UTCTime
		layouts = []string{"060102150405Z0700", "0601021504Z0700"}
	case 0x18: // GeneralizedTime
		layouts = []string{"20060102150405Z0700", "20060102150405.999999999Z0700", "200601021504Z0700", "20060102150405"}
	default:
		return time.Time{}, false
	}
	for _, l := range layouts {
		if v, err := time.Parse(l, s); err == nil {
			if t.tag == 0x17 && v.Year() >= 2050 {
				v = v.AddDate(-100, 0, 0) // RFC 5280 §4.1.2.5.1: YY ≥ 50 is 19YY
			}
			return v.UTC(), true
		}
	}
	return time.Time{}, false
}

func itoa(n int) string { return strconv.Itoa(n) }

func strconvQuote(s string) string { return strconv.Quote(s) }

func strconvQuoteRune(r rune) string { return fmt.Sprintf("U+%04X", r) }
