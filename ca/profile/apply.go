package profile

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/ca/lint"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Input is everything Apply needs besides the profile.
type Input struct {
	// CSR is the parsed request (ParseCSR). Its signature is the proof of
	// possession of its key; for kmc profiles it proves the subscriber's
	// signing key while the certified key is PublicKey.
	CSR *smx509.CertificateRequest
	// PublicKey is the encryption key the KMC generated, for profiles with
	// key_source kmc; nil otherwise.
	PublicKey crypto.PublicKey
	// Record holds values the RA verified: subject attributes under the keys
	// the profile's record:KEY sources name, and identity numbers under
	// "id-card", "social-insurance", "org-code", "uscc", "tax".
	Record map[string]string
	// Now is the issuance time (an injected clock, never time.Now inside).
	Now time.Time
	// Issuer is the issuing CA's certificate.
	Issuer *smx509.Certificate
	// Chain holds the CA certificates above Issuer that are known, nearest
	// first. Their nameConstraints bind the new certificate as the
	// issuer's do (RFC 5280 §6.1.3); certificates without them may be
	// left out.
	Chain []*smx509.Certificate
	// CAID names the issuing CA in URL templates ({ca}).
	CAID string
	// Vars fill the other {name}s of URL templates, e.g. "base" =
	// "http://pki.example.gov.cn", "ldap" = "ldap://ldap.example.gov.cn".
	Vars map[string]string
	// RequestedValidity asks for a shorter validity; 0 means the profile's.
	RequestedValidity time.Duration
}

// Result is the template Apply built, with what it changed or dropped.
type Result struct {
	// Template is ready for smx509.CreateCertificate once the CA sets
	// SerialNumber; the key to pass is PublicKey.
	Template  *smx509.Certificate
	PublicKey crypto.PublicKey
	// Notes says what the profile changed or ignored in the request
	// (validity clamped, CSR extensions ignored, CN added to the SANs...),
	// for the audit record and the RA officer.
	Notes []string
	// Expect is what the lints should find, for lint.Precheck.
	Expect lint.Expect
}

var (
	oidExtSAN         = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtEKU         = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtPolicies    = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidExtOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	caIDRE            = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// extNames name the extensions CSRs ask for most, for the notes.
	extNames = map[string]string{
		"2.5.29.14": "subjectKeyIdentifier", "2.5.29.15": "keyUsage", "2.5.29.17": "subjectAltName",
		"2.5.29.19": "basicConstraints", "2.5.29.30": "nameConstraints", "2.5.29.31": "cRLDistributionPoints",
		"2.5.29.32": "certificatePolicies", "2.5.29.35": "authorityKeyIdentifier", "2.5.29.37": "extKeyUsage",
		"1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
	}
)

// Apply builds the certificate template for a request under the profile.
// It verifies the proof of possession, refuses weak and disallowed keys,
// takes the subject from the sources the profile names, keeps only the
// SANs the profile allows, ignores every other requested extension (never a
// CA bit, never a request-chosen critical extension), clamps the validity
// to the profile and to the issuer, and adds the profile's extensions. It
// does no I/O.
func (p *Profile) Apply(in Input) (*Result, error) {
	if in.CSR == nil {
		return nil, fmt.Errorf("%w: no request", ErrBadCSR)
	}
	if in.Issuer == nil || in.Now.IsZero() {
		return nil, errors.New("apply: issuer and time are required")
	}
	r := &Result{}
	note := func(format string, args ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, args...)) }

	// Proof of possession (RFC 2986 §3). smx509 verifies SM2 requests with
	// the GM/T 0009 default user ID.
	if err := in.CSR.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: proof of possession: %w (SM2 requests are verified with the default user ID 1234567812345678; OpenSSL 3 signs with an empty ID unless given -sigopt distid:1234567812345678)", ErrBadCSR, err)
	}
	if err := checkSPKI(in.CSR.RawSubjectPublicKeyInfo, in.CSR.PublicKey, nil); err != nil {
		return nil, fmt.Errorf("request key: %w", err)
	}
	pub, spki := in.CSR.PublicKey, in.CSR.RawSubjectPublicKeyInfo
	if p.KeySource == "kmc" {
		if in.PublicKey == nil {
			return nil, fmt.Errorf("%w: profile %s certifies the KMC-generated key, none given", ErrPolicy, p.Name)
		}
		var err error
		pub = in.PublicKey
		if spki, err = smx509.MarshalPKIXPublicKey(pub); err != nil {
			return nil, fmt.Errorf("%w: KMC key: %w", ErrKeyPolicy, err)
		}
	} else if in.PublicKey != nil {
		return nil, fmt.Errorf("%w: profile %s certifies the request's own key", ErrPolicy, p.Name)
	}
	if err := checkSPKI(spki, pub, p.KeyTypes); err != nil {
		return nil, err
	}
	if err := CheckKeyFamily(pub, in.Issuer); err != nil {
		return nil, err
	}
	if err := CheckIssuer(in.Issuer); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}

	sanReq, err := csrExtensions(in.CSR, note)
	if err != nil {
		return nil, err
	}
	rawSubject, subject, cn, err := p.buildSubject(in, note)
	if err != nil {
		return nil, err
	}
	if err := p.checkBRSubject(subject); err != nil {
		return nil, err
	}
	if sanReq, err = p.sanFromRecord(sanReq, in.Record); err != nil {
		return nil, err
	}
	sans, err := p.buildSAN(sanReq, cn, note)
	if err != nil {
		return nil, err
	}
	if len(subject.Names) == 0 && sans.count() == 0 {
		return nil, fmt.Errorf("%w: empty subject and no subjectAltName (RFC 5280 §4.1.2.6)", ErrPolicy)
	}
	if err := checkNameConstraints(in, rawSubject, sans); err != nil {
		return nil, err
	}
	nb, na, err := p.validity(in, note)
	if err != nil {
		return nil, err
	}
	crldp, err := expandAll(p.CRLDP, in)
	if err != nil {
		return nil, err
	}
	ocsp, err := expandAll(p.AIA.OCSP, in)
	if err != nil {
		return nil, err
	}
	issuers, err := expandAll(p.AIA.CAIssuers, in)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(spki)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyPolicy, err)
	}

	t := &smx509.Certificate{
		RawSubject:            rawSubject,
		Subject:               subject,
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              smx509.KeyUsage(p.keyUsageBits()),
		SubjectKeyId:          ski,
		AuthorityKeyId:        in.Issuer.SubjectKeyId,
		DNSNames:              sans.dns,
		IPAddresses:           sans.ip,
		EmailAddresses:        sans.email,
		URIs:                  sans.uri,
		CRLDistributionPoints: crldp,
		OCSPServer:            ocsp,
		IssuingCertificateURL: issuers,
	}
	ekus := p.extKeyUsageOIDs()
	if len(ekus) > 0 {
		if p.ExtKeyUsageCritical {
			// crypto/x509 writes EKU non-critical; RFC 3161 §2.3 wants the
			// TSA's critical, so it goes in as a ready-made extension.
			v, err := asn1.Marshal(ekus)
			if err != nil {
				return nil, fmt.Errorf("encode extKeyUsage: %w", err)
			}
			t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtEKU, Critical: true, Value: v})
		} else {
			t.UnknownExtKeyUsage = ekus
		}
	}
	if p.CA != nil {
		t.BasicConstraintsValid, t.IsCA = true, true
		t.MaxPathLen = -1
		if p.CA.PathLen != nil {
			t.MaxPathLen, t.MaxPathLenZero = *p.CA.PathLen, *p.CA.PathLen == 0
		}
		if nc := p.NameConstraints; nc != nil {
			if err := nc.apply(t); err != nil {
				return nil, err
			}
		}
	}
	var policies []asn1.ObjectIdentifier
	if len(p.Policies) > 0 {
		// Written by hand so the encoding does not depend on the
		// x509usepolicies GODEBUG setting.
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, s := range p.Policies {
				id, _ := parseOID(s)
				policies = append(policies, id)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(id) })
			}
		})
		v, err := b.Bytes()
		if err != nil {
			return nil, fmt.Errorf("encode certificatePolicies: %w", err)
		}
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtPolicies, Value: v})
	}
	var identities []asn1.ObjectIdentifier
	for _, rule := range p.Identity {
		v := in.Record[string(rule.Type)]
		if v == "" {
			if rule.Required {
				return nil, fmt.Errorf("%w: the registration record has no %s, which profile %s requires", ErrPolicy, rule.Type, p.Name)
			}
			continue
		}
		ext, err := lint.MarshalIdentity(rule.Type, v)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
		}
		identities = append(identities, ext.Id)
		t.ExtraExtensions = append(t.ExtraExtensions, ext)
	}
	if p.OCSPNoCheck {
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtOCSPNoCheck, Value: []byte{5, 0}})
	}

	r.Template, r.PublicKey = t, pub
	r.Expect = lint.Expect{
		Purpose:                p.Purpose,
		Now:                    in.Now,
		MaxValidity:            time.Duration(p.Validity),
		KeyUsage:               t.KeyUsage,
		ExtKeyUsage:            append([]asn1.ObjectIdentifier{}, ekus...),
		Policies:               append([]asn1.ObjectIdentifier{}, policies...),
		CRLDistributionPoints:  append([]string{}, crldp...),
		OCSPServers:            append([]string{}, ocsp...),
		IssuingCertificateURLs: append([]string{}, issuers...),
		IdentityExtensions:     identities,
	}
	if p.CA != nil {
		r.Expect.PathLen = p.CA.PathLen
	}
	return r, nil
}

// CheckKeyFamily refuses a key of another family than its issuer's: SM2
// keys are certified by SM2 CAs with SM2-with-SM3 (GM/T 0015), other keys
// by CAs that are not SM2, and a hierarchy has one algorithm
// (ARCHITECTURE.md §2). Errors wrap ErrKeyPolicy.
func CheckKeyFamily(pub crypto.PublicKey, issuer *smx509.Certificate) error {
	fam, _ := keyFamily(pub)
	ifam, _ := keyFamily(issuer.PublicKey)
	if (fam == "sm2") != (ifam == "sm2") {
		return fmt.Errorf("%w: a %s key under a %s CA: SM2 keys are certified by SM2 CAs with SM2-with-SM3 (GM/T 0015), and a hierarchy has one algorithm (ARCHITECTURE.md §2)", ErrKeyPolicy, fam, ifam)
	}
	return nil
}

// CheckIssuer refuses an issuing CA certificate that Apply refuses
// whatever the request: one without subjectKeyIdentifier, which every
// certificate it issues names in its authorityKeyIdentifier (RFC 5280
// §4.2.1.1, §4.2.1.2).
func CheckIssuer(issuer *smx509.Certificate) error {
	if len(issuer.SubjectKeyId) == 0 {
		return errors.New("issuer certificate has no subjectKeyIdentifier (RFC 5280 §4.2.1.1 needs it for the AKI)")
	}
	return nil
}

// subjectKeyID is RFC 7093 §2 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey BIT STRING value (what crypto/x509 writes
// for CA certificates since Go 1.25).
func subjectKeyID(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq cryptobyte.String
	var bits []byte
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) || !seq.ReadASN1BitStringAsBytes(&bits) {
		return nil, errors.New("SubjectPublicKeyInfo is malformed")
	}
	h := sha256.Sum256(bits)
	return h[:20], nil
}

// sanRequest is the subjectAltName a request asked for.
type sanRequest struct {
	dns, email, uri []string
	ip              [][]byte
}

// csrExtensions reads the extensionRequest of a CSR. Only subjectAltName is
// used; everything else (basicConstraints CA:TRUE, keyUsage keyCertSign, any
// critical extension) is dropped with a note, because the profile alone
// decides the certificate's extensions. A request that repeats an extension
// is malformed (RFC 5280 §4.2 applied to the request) and refused.
func csrExtensions(csr *smx509.CertificateRequest, note func(string, ...any)) (*sanRequest, error) {
	seen := map[string]bool{}
	san := &sanRequest{}
	for _, e := range csr.Extensions {
		k := e.Id.String()
		if seen[k] {
			return nil, fmt.Errorf("%w: extension %s requested twice", ErrBadCSR, k)
		}
		seen[k] = true
		if e.Id.Equal(oidExtSAN) {
			if err := san.parse(e.Value); err != nil {
				return nil, err
			}
			continue
		}
		name := extNames[k]
		if name == "" {
			name = k
		} else {
			name += " (" + k + ")"
		}
		crit := ""
		if e.Critical {
			crit = "critical "
		}
		note("requested %sextension %s ignored: the profile decides the extensions", crit, name)
	}
	return san, nil
}

func (s *sanRequest) parse(der []byte) error {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return fmt.Errorf("%w: subjectAltName is malformed", ErrBadCSR)
	}
	for !seq.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&v, &tag) || tag&0xc0 != 0x80 {
			return fmt.Errorf("%w: subjectAltName is malformed", ErrBadCSR)
		}
		switch tag & 0x1f {
		case 1:
			s.email = append(s.email, string(v))
		case 2:
			s.dns = append(s.dns, string(v))
		case 6:
			s.uri = append(s.uri, string(v))
		case 7:
			s.ip = append(s.ip, []byte(v))
		default:
			return fmt.Errorf("%w: subjectAltName GeneralName [%d] is not supported (only rfc822Name, dNSName, URI, iPAddress)", ErrPolicy, tag&0x1f)
		}
	}
	return nil
}

// buildSubject assembles the subject from the profile's sources and encodes
// it: PrintableString when the value fits its character set, UTF8String
// otherwise (RFC 5280 §4.1.2.4; Chinese names are UTF8String).
func (p *Profile) buildSubject(in Input, note func(string, ...any)) ([]byte, pkix.Name, string, error) {
	requested := map[string][]any{}
	for _, atv := range in.CSR.Subject.Names {
		requested[atv.Type.String()] = append(requested[atv.Type.String()], atv.Value)
	}
	var rdns pkix.RDNSequence
	var cn string
	used := map[string]bool{}
	for _, a := range subjectOrder {
		key := a.oid.String()
		reqVals := requested[key]
		rule, listed := p.Subject[a.name]
		if !listed {
			continue
		}
		used[key] = true
		src, arg, _ := strings.Cut(rule.Source, ":")
		var v string
		switch src {
		case "forbidden":
			if len(reqVals) > 0 {
				return nil, pkix.Name{}, "", fmt.Errorf("%w: subject %s is forbidden by profile %s", ErrPolicy, a.name, p.Name)
			}
			continue
		case "csr":
			if len(reqVals) > 1 {
				return nil, pkix.Name{}, "", fmt.Errorf("%w: subject %s requested %d times, the profile takes one", ErrPolicy, a.name, len(reqVals))
			}
			if len(reqVals) == 1 {
				s, ok := reqVals[0].(string)
				if !ok {
					return nil, pkix.Name{}, "", fmt.Errorf("%w: subject %s is not a string", ErrBadCSR, a.name)
				}
				v = s
			}
		case "fixed", "record":
			if src == "fixed" {
				v = arg
			} else {
				v = in.Record[arg]
			}
			for _, rv := range reqVals {
				switch s, _ := rv.(string); {
				case v == "":
					note("requested subject %s %q dropped: profile %s takes it from the %s only", a.name, s, p.Name, src)
				case s != v:
					note("requested subject %s %q replaced by the profile's %s value", a.name, s, src)
				}
			}
		}
		if v == "" {
			if rule.Required {
				return nil, pkix.Name{}, "", fmt.Errorf("%w: subject %s is required (source %s)", ErrPolicy, a.name, rule.Source)
			}
			continue
		}
		if a.name == "CN" && p.SAN.CNInSAN {
			if c := canonicalHostCN(v); c != v {
				note("CN %q written %q, byte for byte its subjectAltName entry (BR §7.1.4.3)", v, c)
				v = c
			}
		}
		max := rule.MaxLen
		if max == 0 {
			max = lint.AttributeMaxLen(a.oid)
		}
		if err := checkValue(a, v, max); err != nil {
			return nil, pkix.Name{}, "", fmt.Errorf("%w: subject %w", ErrPolicy, err)
		}
		tag := asn1.TagUTF8String
		if lint.IsPrintableString(v) {
			tag = asn1.TagPrintableString
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{
			Type:  a.oid,
			Value: asn1.RawValue{Tag: tag, Bytes: []byte(v)},
		}})
		if a.name == "CN" {
			cn = v
		}
	}
	for _, atv := range in.CSR.Subject.Names {
		if !used[atv.Type.String()] {
			note("requested subject attribute %s ignored: not in profile %s", lint.AttributeName(atv.Type), p.Name)
			used[atv.Type.String()] = true
		}
	}
	der, err := asn1.Marshal(rdns)
	if err != nil {
		return nil, pkix.Name{}, "", fmt.Errorf("encode subject: %w", err)
	}
	var name pkix.Name
	var parsed pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &parsed); err != nil {
		return nil, pkix.Name{}, "", fmt.Errorf("decode subject: %w", err)
	}
	name.FillFromRDNSequence(&parsed)
	return der, name, cn, nil
}

// canonicalHostCN writes a CN that names a host the way its subjectAltName
// entry is written: an IP address in its canonical text form (IPv4 dotted
// quad, also for an IPv4-mapped address; RFC 5952 for IPv6), a DNS name in
// lower case (buildSAN lower-cases dNSNames). BR §7.1.4.3 wants the CN
// byte for byte one of the SAN values, and zlint compares it so. Non-ASCII
// values are left for buildSAN to refuse as host names.
func canonicalHostCN(cn string) string {
	if ip := net.ParseIP(cn); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			return v4.String()
		}
		return ip.String()
	}
	if isASCII(cn) {
		return strings.ToLower(cn)
	}
	return cn
}

// checkBRSubject applies the subject rule of BR §7.1.2.7.4 (Organization
// Validated) to TLS server certificates: an organizationName needs a
// localityName or a stateOrProvinceName beside it, and a localityName or
// stateOrProvinceName needs an organizationName. zlint's BR lints refuse
// such a certificate; the profile refuses the request first, with a reason
// the RA can act on (complete the registration record).
func (p *Profile) checkBRSubject(n pkix.Name) error {
	if p.Purpose == lint.PurposeTLSServer && len(n.Organization) > 0 && len(n.Locality) == 0 && len(n.Province) == 0 {
		return fmt.Errorf("%w: a TLS server certificate naming an organisation needs its locality or province too (BR §7.1.2.7.4); the registration record has neither L nor ST", ErrPolicy)
	}
	if p.Purpose == lint.PurposeTLSServer && len(n.Organization) == 0 && (len(n.Locality) > 0 || len(n.Province) > 0) {
		return fmt.Errorf("%w: a TLS server certificate names a locality or province only beside an organisation (BR §7.1.2.7.4); the registration record has L or ST but no O", ErrPolicy)
	}
	return nil
}

type sanSet struct {
	dns, email []string
	ip         []net.IP
	uri        []*url.URL
}

func (s *sanSet) count() int { return len(s.dns) + len(s.email) + len(s.ip) + len(s.uri) }

// sanFromRecord puts the registration record's names in place of the
// request's for the SAN types whose source is the record: the RA verified
// those (a person's mailbox, say), the request's are the requester's word.
// A request that names something else of such a type is refused, naming
// the record key, so that nobody obtains a certificate for another's
// mailbox by asking for it; repeating the record's name is harmless.
func (p *Profile) sanFromRecord(req *sanRequest, record map[string]string) (*sanRequest, error) {
	out := *req
	differs := func(kind, asked, key, rec string) error {
		if rec == "" {
			return fmt.Errorf("%w: %s %q in the request: profile %s takes it from the registration record only, and the record has no %s", ErrPolicy, kind, asked, p.Name, key)
		}
		return fmt.Errorf("%w: %s %q in the request is not the registration record's %s %q (profile %s takes it from the record)", ErrPolicy, kind, asked, key, rec, p.Name)
	}
	if key, ok := p.SAN.Email.recordKey("email"); ok {
		rec := record[key]
		for _, e := range req.email {
			if err := checkEmail(e); err != nil {
				return nil, err
			}
			if !sameMailbox(e, rec) {
				return nil, differs("rfc822Name", e, key, rec)
			}
		}
		out.email = nil
		if rec != "" {
			out.email = []string{rec}
		}
	}
	if key, ok := p.SAN.DNS.recordKey("dns"); ok {
		rec := record[key]
		for _, d := range req.dns {
			if rec == "" || !strings.EqualFold(d, rec) {
				return nil, differs("dNSName", d, key, rec)
			}
		}
		out.dns = nil
		if rec != "" {
			out.dns = []string{rec}
		}
	}
	if key, ok := p.SAN.IP.recordKey("ip"); ok {
		rec := record[key]
		ip := net.ParseIP(rec)
		if rec != "" && ip == nil {
			return nil, fmt.Errorf("%w: the registration record's %s %q is not an IP address", ErrPolicy, key, rec)
		}
		for _, b := range req.ip {
			if ip == nil || !net.IP(b).Equal(ip) {
				return nil, differs("iPAddress", net.IP(b).String(), key, rec)
			}
		}
		out.ip = nil
		if ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			out.ip = [][]byte{ip}
		}
	}
	if key, ok := p.SAN.URI.recordKey("uri"); ok {
		rec := record[key]
		for _, u := range req.uri {
			if u != rec {
				return nil, differs("URI", u, key, rec)
			}
		}
		out.uri = nil
		if rec != "" {
			out.uri = []string{rec}
		}
	}
	return &out, nil
}

// sameMailbox compares two mailboxes: the local part exactly (RFC 5321
// §2.4 leaves its case to the receiving host), the domain without regard
// to case.
func sameMailbox(a, b string) bool {
	la, da, _ := strings.Cut(a, "@")
	lb, db, _ := strings.Cut(b, "@")
	return la == lb && strings.EqualFold(da, db)
}

// buildSAN keeps the requested names the profile allows and refuses the
// rest: a request whose names cannot all be honoured gets an error, not a
// certificate that silently lacks some of them.
func (p *Profile) buildSAN(req *sanRequest, cn string, note func(string, ...any)) (*sanSet, error) {
	rules := p.SAN
	out := &sanSet{}
	seen := map[string]bool{}
	addDNS := func(raw string) error {
		d := strings.ToLower(raw)
		if d != raw {
			note("dNSName %q lower-cased", raw)
		}
		if err := lint.ValidDNSName(d, rules.DNS.Wildcard); err != nil {
			return fmt.Errorf("%w: %w", ErrPolicy, err)
		}
		if lint.IsInternalName(d) && !rules.DNS.Internal {
			return fmt.Errorf("%w: %q is an internal name (BR §7.1.2.7.12), not allowed by profile %s", ErrPolicy, d, p.Name)
		}
		if !seen["dns:"+d] {
			seen["dns:"+d] = true
			out.dns = append(out.dns, d)
		}
		return nil
	}
	addIP := func(b []byte) error {
		ip := net.IP(b)
		if len(b) != 4 && len(b) != 16 {
			return fmt.Errorf("%w: iPAddress of %d octets", ErrBadCSR, len(b))
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.Equal(net.IPv4bcast) {
			return fmt.Errorf("%w: iPAddress %s names no particular host", ErrPolicy, ip)
		}
		// A loopback address names the host the client runs on: only a
		// profile for the platform's own listeners (internal addresses
		// allowed, never a tls-server one, see Validate) certifies it.
		if ip.IsLoopback() && !rules.IP.Internal {
			return fmt.Errorf("%w: iPAddress %s is a loopback address, not allowed by profile %s", ErrPolicy, ip, p.Name)
		}
		if lint.IsReservedIP(ip) && !rules.IP.Internal {
			return fmt.Errorf("%w: iPAddress %s is a reserved (IANA special-purpose) address (BR §7.1.2.7.12), not allowed by profile %s", ErrPolicy, ip, p.Name)
		}
		if !seen["ip:"+ip.String()] {
			seen["ip:"+ip.String()] = true
			out.ip = append(out.ip, ip)
		}
		return nil
	}
	for _, d := range req.dns {
		if err := addDNS(d); err != nil {
			return nil, err
		}
	}
	for _, b := range req.ip {
		if err := addIP(b); err != nil {
			return nil, err
		}
	}
	for _, e := range req.email {
		if err := checkEmail(e); err != nil {
			return nil, err
		}
		if !seen["email:"+e] {
			seen["email:"+e] = true
			out.email = append(out.email, e)
		}
	}
	for _, s := range req.uri {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || !isASCII(s) || strings.ContainsAny(s, " \t\r\n\x00") {
			return nil, fmt.Errorf("%w: URI %q is not an absolute URI", ErrPolicy, s)
		}
		if !seen["uri:"+s] {
			seen["uri:"+s] = true
			out.uri = append(out.uri, u)
		}
	}
	if cn != "" && rules.CNInSAN {
		inSAN := seen["dns:"+strings.ToLower(cn)]
		if ip := net.ParseIP(cn); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			inSAN = seen["ip:"+ip.String()]
			if !inSAN {
				if rules.IP.Max == 0 {
					return nil, fmt.Errorf("%w: CN %q is an IP address and profile %s allows none", ErrPolicy, cn, p.Name)
				}
				if err := addIP(ip); err != nil {
					return nil, err
				}
				note("CN %q added to subjectAltName (BR §7.1.4.3)", cn)
			}
		} else if !inSAN {
			if rules.DNS.Max == 0 {
				return nil, fmt.Errorf("%w: CN %q must be one of the subjectAltName names", ErrPolicy, cn)
			}
			if err := addDNS(cn); err != nil {
				return nil, fmt.Errorf("CN must be a host name: %w", err)
			}
			note("CN %q added to subjectAltName (BR §7.1.4.3)", cn)
		}
	}
	for _, c := range []struct {
		name string
		n    int
		rule SANType
	}{{"dNSName", len(out.dns), rules.DNS}, {"iPAddress", len(out.ip), rules.IP}, {"rfc822Name", len(out.email), rules.Email}, {"URI", len(out.uri), rules.URI}} {
		if c.n > c.rule.Max {
			return nil, fmt.Errorf("%w: %d %s names, profile %s allows %d", ErrPolicy, c.n, c.name, p.Name, c.rule.Max)
		}
	}
	if out.count() < rules.Min {
		return nil, fmt.Errorf("%w: %d subjectAltName names, profile %s needs at least %d", ErrPolicy, out.count(), p.Name, rules.Min)
	}
	return out, nil
}

// checkNameConstraints refuses names outside the nameConstraints of the
// issuer or of a CA above it: every relying party that validates the path
// would reject the certificate (RFC 5280 §4.2.1.10, §6.1.3 (b), (c)). The
// subject is checked as a directoryName, the subjectAltName entries by
// type.
func checkNameConstraints(in Input, rawSubject []byte, sans *sanSet) error {
	names := lint.Names{Subject: rawSubject, DNS: sans.dns, IP: sans.ip, Email: sans.email}
	for _, u := range sans.uri {
		names.URI = append(names.URI, u.String())
	}
	for _, ca := range append([]*smx509.Certificate{in.Issuer}, in.Chain...) {
		v, err := lint.CheckNameConstraints(ca, names)
		if err != nil {
			return fmt.Errorf("%w: the issuing chain's %w", ErrPolicy, err)
		}
		if len(v) > 0 {
			return fmt.Errorf("%w: outside the name constraints of CA %q (RFC 5280 §4.2.1.10): %s", ErrPolicy, ca.Subject.String(), strings.Join(v, "; "))
		}
	}
	return nil
}

// checkEmail accepts a Mailbox of RFC 5321 §4.1.2 (RFC 5280 §4.2.1.6):
// Dot-string local part, DNS domain (lint.ValidMailbox).
func checkEmail(e string) error {
	if err := lint.ValidMailbox(e); err != nil {
		return fmt.Errorf("%w: rfc822Name %q is not a mailbox: %w", ErrPolicy, e, err)
	}
	return nil
}

// validity computes notBefore and notAfter: notBefore = now − backdate
// (never before the issuer's notBefore), the period the shorter of the
// request and the profile, notAfter = notBefore + period − 1 s (RFC 5280
// §4.1.2.5 counts both ends), never past the issuer's notAfter. Times are
// whole seconds, as the DER encoding keeps them.
func (p *Profile) validity(in Input, note func(string, ...any)) (time.Time, time.Time, error) {
	now := in.Now.UTC().Truncate(time.Second)
	iss := in.Issuer
	if now.Before(iss.NotBefore) || !now.Before(iss.NotAfter) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: the issuing CA is not valid at %s (valid %s to %s)", ErrPolicy, now, iss.NotBefore.UTC(), iss.NotAfter.UTC())
	}
	period := time.Duration(p.Validity)
	switch req := in.RequestedValidity; {
	case req < 0:
		return time.Time{}, time.Time{}, fmt.Errorf("%w: negative validity requested", ErrPolicy)
	case req > period:
		note("requested validity %s clamped to the profile maximum %s", req, period)
	case req > 0:
		period = req.Truncate(time.Second)
		if period < time.Second {
			period = time.Second
		}
	}
	nb := now.Add(-time.Duration(p.Backdate))
	if nb.Before(iss.NotBefore) {
		nb = iss.NotBefore.UTC()
		note("notBefore moved to the issuer's notBefore %s", nb)
	}
	na := nb.Add(period - time.Second)
	if na.After(iss.NotAfter) {
		na = iss.NotAfter.UTC()
		note("notAfter clamped to the issuer's notAfter %s", na)
	}
	if !na.After(now) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: validity %s does not outlast the %s backdate", ErrPolicy, period, time.Duration(p.Backdate))
	}
	return nb, na, nil
}

// expand fills a URL template.
func expand(t string, in Input) (string, error) {
	var err error
	u := varRE.ReplaceAllStringFunc(t, func(m string) string {
		name := m[1 : len(m)-1]
		if name == "ca" {
			if !caIDRE.MatchString(in.CAID) {
				err = fmt.Errorf("%w: CA id %q is not a URL-safe name", ErrProfile, in.CAID)
			}
			return in.CAID
		}
		v, ok := in.Vars[name]
		if !ok || v == "" {
			err = fmt.Errorf("%w: URL template %q needs {%s}, not set", ErrProfile, t, name)
		}
		return v
	})
	if err != nil {
		return "", err
	}
	if err := lint.CheckURL(u); err != nil {
		return "", fmt.Errorf("%w: %w", ErrProfile, err)
	}
	return u, nil
}

func expandAll(ts []string, in Input) ([]string, error) {
	var out []string
	for _, t := range ts {
		u, err := expand(t, in)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func (nc *NameConstraints) apply(t *smx509.Certificate) error {
	t.PermittedDNSDomainsCritical = true // RFC 5280 §4.2.1.10: MUST be critical
	t.PermittedDNSDomains, t.ExcludedDNSDomains = nc.PermittedDNS, nc.ExcludedDNS
	t.PermittedEmailAddresses, t.ExcludedEmailAddresses = nc.PermittedEmail, nc.ExcludedEmail
	t.PermittedURIDomains, t.ExcludedURIDomains = nc.PermittedURI, nc.ExcludedURI
	for _, c := range nc.PermittedIP {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrProfile, err)
		}
		t.PermittedIPRanges = append(t.PermittedIPRanges, n)
	}
	for _, c := range nc.ExcludedIP {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrProfile, err)
		}
		t.ExcludedIPRanges = append(t.ExcludedIPRanges, n)
	}
	return nil
}
