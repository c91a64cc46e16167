package ceremony

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm3"
	"gopkg.in/yaml.v3"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/hsm"
)

// Kind is the kind of ceremony.
type Kind string

// Kinds of ceremony.
const (
	Root  Kind = "root"  // self-signed root
	Sub   Kind = "sub"   // subordinate CA: key and request, or certificate from a request
	Cross Kind = "cross" // an existing root certified by another root
)

// KeyMode says whether the ceremony makes its key.
type KeyMode string

// Key modes.
const (
	// CreateIfAbsent uses the key at the URI when it exists and makes it
	// otherwise (for a ceremony run again after an interruption).
	CreateIfAbsent KeyMode = "create-if-absent"
	// Create makes the key and fails if the URI already names one (the
	// default: a typing error in key.uri must not adopt another CA's key).
	Create KeyMode = "create"
	// Existing uses the key at the URI and fails if there is none.
	Existing KeyMode = "existing"
)

// File is a ceremony file.
type File struct {
	Kind Kind `yaml:"kind"`
	// CA is the id the CA gets in the platform (lowercase [a-z0-9-]+,
	// CONTRACT.md "Certificate authorities").
	CA        string        `yaml:"ca"`
	Subject   Subject       `yaml:"subject"`
	Algorithm hsm.Algorithm `yaml:"algorithm"`
	Key       Key           `yaml:"key"`
	Validity  Validity      `yaml:"validity"`
	// PathLength is the pathLenConstraint (RFC 5280 §4.2.1.9): 1 for a root
	// with issuing CAs below, 0 for an issuing CA.
	PathLength *int `yaml:"path_length"`
	// Policies are certificate policy OIDs (RFC 5280 §4.2.1.4), dotted.
	Policies []string `yaml:"certificate_policies"`
	// CRLURLs, CAIssuersURLs and OCSPURLs are written as they are into the
	// certificate's CRL distribution points (RFC 5280 §4.2.1.13) and
	// authority information access (§4.2.2.1).
	CRLURLs       []string `yaml:"crl_urls"`
	CAIssuersURLs []string `yaml:"ca_issuers_urls"`
	OCSPURLs      []string `yaml:"ocsp_urls"`
	// Issuer signs sub and cross certificates.
	Issuer *Issuer `yaml:"issuer"`
	// SubjectCertificate is, for a cross ceremony, the certificate of the
	// root whose subject and key are certified (a path relative to the
	// ceremony file); SubjectCertificateSHA256 pins it (required).
	SubjectCertificate       string `yaml:"subject_certificate"`
	SubjectCertificateSHA256 string `yaml:"subject_certificate_sha256"`
	// RequestSHA256 pins, in a sub ceremony, the request the signing step
	// signs: the first step prints it, and the file is reviewed again with
	// it before the second (required there).
	RequestSHA256 string `yaml:"request_sha256"`

	// SM3 is the SM3 hash of the file as read: what reviewers signed off.
	SM3 []byte `yaml:"-"`
	// Dir is the directory relative paths are resolved against.
	Dir string `yaml:"-"`
}

// Subject is the CA's distinguished name, encoded in the order C, ST, L, O,
// OU, CN; every attribute but C is a UTF8String, so Chinese names are
// encoded as RFC 5280 §4.1.2.4 asks (C is a PrintableString, X.520).
type Subject struct {
	C  string `yaml:"C"`
	ST string `yaml:"ST"`
	L  string `yaml:"L"`
	O  string `yaml:"O"`
	OU string `yaml:"OU"`
	CN string `yaml:"CN"`
}

// Key names the CA key in the key manager.
type Key struct {
	URI  string  `yaml:"uri"`
	Mode KeyMode `yaml:"mode"`
}

// Validity is the certificate's lifetime: not_before (RFC 3339, default
// the signing time) and either not_after (RFC 3339) or days.
type Validity struct {
	NotBefore string `yaml:"not_before"`
	NotAfter  string `yaml:"not_after"`
	Days      int    `yaml:"days"`
}

// Issuer is the CA that signs a sub or cross certificate.
type Issuer struct {
	// Certificate is the issuer's certificate (PEM or DER), relative to the
	// ceremony file; CertificateSHA256, when given, pins it.
	Certificate       string `yaml:"certificate"`
	CertificateSHA256 string `yaml:"certificate_sha256"`
	KeyURI            string `yaml:"key_uri"`
}

// Pins are SHA-256 fingerprints of the DER of a file the ceremony reads,
// written as `openssl x509 -fingerprint -sha256` prints them (colon-separated
// hex, any case) or as plain hex (`openssl dgst -sha256` of the DER).
var pinRE = regexp.MustCompile(`^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$`)

// CheckPin refuses der unless its SHA-256 is pin; field names the pin in
// the message.
func CheckPin(field, pin string, der []byte) error {
	if pin == "" {
		return fmt.Errorf("%s is required: the SHA-256 fingerprint of the file the ceremony reads", field)
	}
	got := Fingerprint(der)
	if !strings.EqualFold(strings.ReplaceAll(pin, ":", ""), strings.ReplaceAll(got, ":", "")) {
		return fmt.Errorf("%s: the file read has SHA-256 %s, not the reviewed %s; refusing", field, got, pin)
	}
	return nil
}

// CheckSM3 refuses to run a ceremony file other than the reviewed one:
// reviewed is the hex SM3 hash the reviewers signed off (`openssl dgst -sm3`).
func (f *File) CheckSM3(reviewed string) error {
	reviewed = strings.TrimSpace(reviewed)
	if reviewed == "" {
		return errors.New("the reviewed SM3 hash of the ceremony file is required (openssl dgst -sm3 FILE)")
	}
	if !strings.EqualFold(reviewed, f.SM3Hex()) {
		return fmt.Errorf("the ceremony file's SM3 hash is %s, not the reviewed %s: this is not the file that was reviewed; refusing", f.SM3Hex(), reviewed)
	}
	return nil
}

// idRE is the CA id syntax of CONTRACT.md.
var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidID reports whether id is a valid CA id.
func ValidID(id string) bool { return idRE.MatchString(id) }

// maxFile bounds a ceremony file.
const maxFile = 1 << 20

// Load reads, decodes and validates a ceremony file.
func Load(path string) (*File, error) {
	f, err := load(path, Parse)
	if err != nil {
		return nil, err
	}
	f.Dir = filepath.Dir(path)
	return f, nil
}

// load reads the ceremony file at path and parses it with parse.
func load[T any](path string, parse func([]byte) (*T, error)) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ceremony file: %w", err)
	}
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("ceremony file %s: %w", path, err)
	}
	return f, nil
}

// decode decodes data, one YAML document of at most maxFile bytes whose
// keys are all fields of T, into out, and returns the SM3 hash of data
// that the ceremony's operators reviewed.
func decode[T any](data []byte, out *T) ([]byte, error) {
	if len(data) > maxFile {
		return nil, fmt.Errorf("larger than %d bytes", maxFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("more than one YAML document")
	}
	sum := sm3.Sum(data)
	return sum[:], nil
}

// Parse decodes and validates a ceremony file; unknown keys are errors.
func Parse(data []byte) (*File, error) {
	var f File
	var err error
	if f.SM3, err = decode(data, &f); err != nil {
		return nil, err
	}
	if f.Key.Mode == "" {
		f.Key.Mode = Create
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// SM3Hex is the hex SM3 hash of the file.
func (f *File) SM3Hex() string { return hex.EncodeToString(f.SM3) }

// Path resolves a path of the file against its directory.
func (f *File) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || f.Dir == "" {
		return p
	}
	return filepath.Join(f.Dir, p)
}

// Validate checks the file and says every problem it finds.
func (f *File) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch f.Kind {
	case Root, Sub, Cross:
	case "":
		bad("kind is required (root, sub or cross)")
	default:
		bad("kind %q: want root, sub or cross", f.Kind)
	}
	if !ValidID(f.CA) {
		bad("ca %q: want a lowercase id of letters, digits and '-' (at most 63)", f.CA)
	}
	switch f.Algorithm {
	case hsm.SM2, hsm.ECDSAP256:
	default:
		bad("algorithm %q: want sm2 or ecdsa-p256", f.Algorithm)
	}
	if f.Kind != Cross || f.Subject != (Subject{}) {
		if err := f.Subject.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if f.Key.URI == "" {
		if f.Kind != Cross {
			bad("key.uri is required")
		}
	} else if _, err := hsm.ParseURI(f.Key.URI); err != nil {
		bad("key.uri: %w", err)
	}
	switch f.Key.Mode {
	case CreateIfAbsent, Create, Existing:
	default:
		bad("key.mode %q: want create-if-absent, create or existing", f.Key.Mode)
	}
	if f.Kind == Cross && f.Key.URI != "" {
		bad("key: a cross ceremony certifies the key of subject_certificate; give no key")
	}
	if _, _, err := f.Validity.bounds(time.Now()); err != nil {
		errs = append(errs, err)
	}
	if f.PathLength == nil {
		bad("path_length is required (1 for a root over issuing CAs, 0 for an issuing CA)")
	} else if *f.PathLength < 0 || *f.PathLength > 8 {
		bad("path_length %d: want 0 to 8", *f.PathLength)
	}
	seenPolicy := map[string]bool{}
	for _, p := range f.Policies {
		oid, err := parseOID(p)
		switch {
		case err != nil:
			bad("certificate_policies: %w", err)
		case seenPolicy[oid.String()]:
			// RFC 5280 §4.2.1.4: a policy OID appears at most once.
			bad("certificate_policies: %s is listed twice", p)
		}
		seenPolicy[oid.String()] = true
	}
	for name, urls := range map[string][]string{"crl_urls": f.CRLURLs, "ca_issuers_urls": f.CAIssuersURLs, "ocsp_urls": f.OCSPURLs} {
		for _, u := range urls {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "ldap://") {
				bad("%s: %q: want an http:// or ldap:// URL (RFC 5280 §4.2.1.13: relying parties fetch them without TLS)", name, u)
			}
		}
	}
	for name, pin := range map[string]string{"subject_certificate_sha256": f.SubjectCertificateSHA256, "request_sha256": f.RequestSHA256} {
		if pin != "" && !pinRE.MatchString(pin) {
			bad("%s %q: want a SHA-256 fingerprint (64 hex digits, colons allowed)", name, pin)
		}
	}
	if f.Issuer != nil && f.Issuer.CertificateSHA256 != "" && !pinRE.MatchString(f.Issuer.CertificateSHA256) {
		bad("issuer.certificate_sha256 %q: want a SHA-256 fingerprint (64 hex digits, colons allowed)", f.Issuer.CertificateSHA256)
	}
	if f.Kind != Sub && f.RequestSHA256 != "" {
		bad("request_sha256 is only for sub ceremonies")
	}
	if f.Kind != Cross && f.SubjectCertificateSHA256 != "" {
		bad("subject_certificate_sha256 is only for cross ceremonies")
	}
	if f.Kind == Cross && f.SubjectCertificateSHA256 == "" {
		bad("subject_certificate_sha256 is required for a cross ceremony: the fingerprint of the root it certifies")
	}
	switch f.Kind {
	case Root:
		if f.Issuer != nil {
			bad("issuer: a root signs itself; remove the issuer section")
		}
		if f.SubjectCertificate != "" {
			bad("subject_certificate is only for cross ceremonies")
		}
	case Sub, Cross:
		if f.Issuer == nil || f.Issuer.Certificate == "" || f.Issuer.KeyURI == "" {
			bad("issuer.certificate and issuer.key_uri are required for a %s ceremony", f.Kind)
		} else if _, err := hsm.ParseURI(f.Issuer.KeyURI); err != nil {
			bad("issuer.key_uri: %w", err)
		}
		if f.Kind == Cross && f.SubjectCertificate == "" {
			bad("subject_certificate is required for a cross ceremony")
		}
		if f.Kind == Sub && f.SubjectCertificate != "" {
			bad("subject_certificate is only for cross ceremonies")
		}
		if f.Kind == Sub && f.Issuer != nil && f.Issuer.KeyURI != "" && f.Issuer.KeyURI == f.Key.URI {
			bad("key.uri is issuer.key_uri: a sub-CA has a key of its own, never its issuer's")
		}
	}
	return errors.Join(errs...)
}

// countryRE is an ISO 3166-1 alpha-2 code as X.520 countryName takes it: two
// capital ASCII letters (a PrintableString).
var countryRE = regexp.MustCompile(`^[A-Z]{2}$`)

// validate checks the subject as the certificate lint will, so that a
// subject the lint refuses stops the ceremony before its key is made.
func (s Subject) validate() error {
	var errs []error
	if s.CN == "" {
		errs = append(errs, errors.New("subject.CN is required"))
	}
	if s.C != "" && !countryRE.MatchString(s.C) {
		errs = append(errs, fmt.Errorf("subject.C %q: want a two-letter upper-case country code (ISO 3166), such as CN", s.C))
	}
	for _, a := range []struct {
		name string
		oid  asn1.ObjectIdentifier
		v    string
	}{{"ST", oidST, s.ST}, {"L", oidL, s.L}, {"O", oidO, s.O}, {"OU", oidOU, s.OU}, {"CN", oidCN, s.CN}} {
		if a.v == "" {
			continue
		}
		// The UTF8String attributes: RFC 5280 Appendix A upper bounds
		// (ub-common-name 64, ub-state-name 128...), no control characters
		// or bidirectional overrides (RFC 5280 §7.1).
		if r, why, bad := lint.BadRune(a.v); bad {
			errs = append(errs, fmt.Errorf("subject.%s: %s U+%04X", a.name, why, r))
		} else if n, limit := utf8.RuneCountInString(a.v), lint.AttributeMaxLen(a.oid); limit > 0 && n > limit {
			errs = append(errs, fmt.Errorf("subject.%s: %d characters, at most %d (RFC 5280 Appendix A)", a.name, n, limit))
		}
	}
	return errors.Join(errs...)
}

// Attribute OIDs of X.520.
var (
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidST = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidL  = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// DER is the subject's Name as DER: one attribute per RDN.
func (s Subject) DER() ([]byte, error) {
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	var rdns [][]atv
	add := func(oid asn1.ObjectIdentifier, tag int, v string) {
		if v != "" {
			rdns = append(rdns, []atv{{oid, asn1.RawValue{Tag: tag, Bytes: []byte(v)}}})
		}
	}
	add(oidC, asn1.TagPrintableString, s.C)
	add(oidST, asn1.TagUTF8String, s.ST)
	add(oidL, asn1.TagUTF8String, s.L)
	add(oidO, asn1.TagUTF8String, s.O)
	add(oidOU, asn1.TagUTF8String, s.OU)
	add(oidCN, asn1.TagUTF8String, s.CN)
	// An RDN is a SET: marshal each as a set of one.
	type rdn = []atv
	out := make([]asn1.RawValue, 0, len(rdns))
	for _, r := range rdns {
		b, err := asn1.MarshalWithParams(rdn(r), "set")
		if err != nil {
			return nil, fmt.Errorf("subject: %w", err)
		}
		out = append(out, asn1.RawValue{FullBytes: b})
	}
	der, err := asn1.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	return der, nil
}

// bounds returns notBefore and notAfter for a signing at now.
func (v Validity) bounds(now time.Time) (time.Time, time.Time, error) {
	nb := now.UTC().Truncate(time.Second)
	if v.NotBefore != "" {
		t, err := time.Parse(time.RFC3339, v.NotBefore)
		if err != nil {
			return nb, nb, fmt.Errorf("validity.not_before: %w", err)
		}
		nb = t.UTC()
	}
	var na time.Time
	switch {
	case v.NotAfter != "" && v.Days != 0:
		return nb, nb, errors.New("validity: give not_after or days, not both")
	case v.NotAfter != "":
		t, err := time.Parse(time.RFC3339, v.NotAfter)
		if err != nil {
			return nb, nb, fmt.Errorf("validity.not_after: %w", err)
		}
		na = t.UTC()
	case v.Days > 0 && v.Days <= 30*366:
		na = nb.AddDate(0, 0, v.Days)
	default:
		return nb, nb, errors.New("validity: give not_after (RFC 3339) or days (1 to 10980)")
	}
	if !na.After(nb) {
		return nb, nb, errors.New("validity: not_after is not after not_before")
	}
	return nb, na, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("%q is not a valid OID", s)
	}
	return oid, nil
}
