package profile

import (
	"crypto"
	"crypto/elliptic"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/ca/lint"
)

func TestBuiltinNames(t *testing.T) {
	got := make([]string, 0, len(Builtin()))
	for n := range Builtin() {
		got = append(got, n)
	}
	sort.Strings(got)
	want := append([]string(nil), BuiltinNames...)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("built-ins %v, want %v", got, want)
	}
	for _, n := range BuiltinNames {
		src, err := BuiltinYAML(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(src); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// TestBuiltinInternal: the profiles whose certificates the platform itself
// trusts (a delegated OCSP responder, a time-stamping unit, a node's
// listener, the seal maker) are internal, so the issue API refuses them;
// the subscriber profiles are not.
func TestBuiltinInternal(t *testing.T) {
	want := map[string]bool{"ocsp-signer": true, "tsa": true, "node-tls": true, "seal-maker": true}
	for name, p := range Builtin() {
		if p.Internal != want[name] {
			t.Errorf("%s: internal %v, want %v", name, p.Internal, want[name])
		}
	}
}

// csrFor builds a request a subscriber of profile p would send.
func csrFor(t *testing.T, p *Profile, key crypto.Signer) *smx509.CertificateRequest {
	tmpl := &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "张三"}}
	switch p.Purpose {
	case lint.PurposeTLSServer, lint.PurposeTLSPrivate:
		tmpl.Subject = pkix.Name{CommonName: "www.example.gov.cn"}
		tmpl.DNSNames = []string{"www.example.gov.cn", "example.gov.cn"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("218.85.152.99")}
	case lint.PurposeTLSClient:
		tmpl.Subject = pkix.Name{CommonName: "审批系统", OrganizationalUnit: []string{"信息中心"}}
		tmpl.EmailAddresses = []string{"ops@example.gov.cn"}
	case lint.PurposeOCSPSigner:
		tmpl.Subject = pkix.Name{CommonName: "govtrust OCSP responder"}
	case lint.PurposeTSA:
		tmpl.Subject = pkix.Name{CommonName: "govtrust 时间戳服务"}
	case lint.PurposeCA:
		tmpl.Subject = pkix.Name{CommonName: "govtrust 二级 CA"}
	case lint.PurposeSign:
		if p.SAN.Email.Max > 0 {
			tmpl.EmailAddresses = []string{"zhangsan@example.gov.cn"}
		}
	}
	return makeCSR(t, key, tmpl)
}

// TestBuiltinsIssueLintClean issues a certificate under every built-in
// profile from both test hierarchies where the profile allows the
// hierarchy's algorithm, and requires zero lint findings.
func TestBuiltinsIssueLintClean(t *testing.T) {
	sm2ca, ecca := cas(t)
	for _, name := range BuiltinNames {
		p := builtinProfile(t, name)
		issued := 0
		for _, ca := range []*testCA{sm2ca, ecca} {
			var key crypto.Signer
			for _, kt := range p.KeyTypes {
				switch {
				case kt == "sm2" && ca == sm2ca:
					key = newSM2(t)
				case kt == "ecdsa-p256" && ca == ecca:
					key = newEC(t, elliptic.P256())
				}
			}
			if key == nil {
				continue
			}
			t.Run(name+"/"+ca.name, func(t *testing.T) {
				in := input(ca, csrFor(t, p, key))
				if p.KeySource == "kmc" {
					in.PublicKey = newSM2(t).Public()
				}
				res, err := p.Apply(in)
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				cert := issue(t, ca, res)
				if cert.IsCA != (p.Purpose == lint.PurposeCA) {
					t.Errorf("IsCA %v", cert.IsCA)
				}
				if p.KeySource == "kmc" && !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(in.PublicKey) {
					t.Error("encryption certificate does not certify the KMC key")
				}
				if p.Purpose == lint.PurposeCA {
					// The new sub-CA can itself issue a leaf that lints clean.
					sub := &testCA{name: "sub", cert: cert, key: key}
					leafKey := newSM2(t)
					if ca == ecca {
						leafKey = newEC(t, elliptic.P256())
					}
					lp := builtinProfile(t, "server-tls")
					res, err := lp.Apply(input(sub, csrFor(t, lp, leafKey)))
					if err != nil {
						t.Fatal(err)
					}
					leaf := issue(t, sub, res)
					roots := smx509.NewCertPool()
					roots.AddCert(ca.cert)
					inter := smx509.NewCertPool()
					inter.AddCert(cert)
					if _, err := leaf.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "www.example.gov.cn", CurrentTime: testNow}); err != nil {
						t.Fatalf("chain through the sub-CA: %v", err)
					}
				}
			})
			issued++
		}
		if issued == 0 {
			t.Errorf("profile %s issued under neither test hierarchy", name)
		}
	}
}

const validYAML = `name: custom
version: "3"
purpose: tls-client
validity: 365d
backdate: 30m
key_types: [sm2, ecdsa-p256]
key_usage: [digitalSignature]
ext_key_usage: [clientAuth]
subject:
  C:  {source: "fixed:CN", required: true}
  CN: {source: csr, required: true, max_len: 32}
san:
  email: {max: 1}
crl_distribution_points: ["{base}/crl/{ca}.crl"]
aia:
  ocsp: ["{base}/ocsp"]
`

func TestParseStrict(t *testing.T) {
	p, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatalf("valid profile: %v", err)
	}
	if time.Duration(p.Validity) != 365*24*time.Hour || time.Duration(p.Backdate) != 30*time.Minute {
		t.Errorf("durations %v %v", p.Validity, p.Backdate)
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key names its line", strings.Replace(validYAML, "backdate: 30m", "backdate: 30m\nvalidty: 10d", 1), "line 6"},
		{"unknown nested key", strings.Replace(validYAML, "max_len: 32", "max_len: 32, maxlen: 3", 1), "maxlen"},
		{"duplicate key", validYAML + "purpose: tsa\n", "already defined"},
		{"two documents", validYAML + "---\nname: x\n", "more than one YAML document"},
		{"bad duration", strings.Replace(validYAML, "365d", "a year", 1), "duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrProfile mentioning %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to string
		want     string
	}{
		{"name", "name: custom", "name: Custom_1", "name"},
		{"purpose", "purpose: tls-client", "purpose: web", "purpose"},
		{"validity", "validity: 365d", "validity: 20000d", "validity"},
		{"backdate", "backdate: 30m", "backdate: 2h", "backdate"},
		{"key type", "[sm2, ecdsa-p256]", "[sm2, rsa-1024]", "rsa-1024"},
		{"key usage name", "key_usage: [digitalSignature]", "key_usage: [signing]", "signing"},
		{"cert sign on leaf", "key_usage: [digitalSignature]", "key_usage: [digitalSignature, keyCertSign]", "CA profiles only"},
		{"eku missing for purpose", "ext_key_usage: [clientAuth]", "ext_key_usage: [emailProtection]", "clientAuth"},
		{"any eku", "ext_key_usage: [clientAuth]", "ext_key_usage: [clientAuth, 2.5.29.37.0]", "anyExtendedKeyUsage"},
		{"timestamping outside tsa", "ext_key_usage: [clientAuth]", "ext_key_usage: [clientAuth, timeStamping]", "tsa profiles only"},
		{"nocheck without ocsp", "validity: 365d", "validity: 365d\nocsp_no_check: true", "ocsp_no_check"},
		{"ocsp signing outside ocsp-signer", "ext_key_usage: [clientAuth]", "ext_key_usage: [clientAuth, OCSPSigning]\nocsp_no_check: true", "ocsp-signer profiles only"},
		{"ocsp signing without nocheck outside ocsp-signer", "ext_key_usage: [clientAuth]", "ext_key_usage: [clientAuth, OCSPSigning]", "ocsp-signer profiles only"},
		{"subject attribute", "CN: {source: csr", "EMAIL: {source: csr", "EMAIL"},
		{"subject source", `{source: "fixed:CN", required: true}`, `{source: "ldap:c"}`, "source"},
		{"fixed country", `"fixed:CN"`, `"fixed:cn"`, "two capital letters"},
		{"fixed bidi", `"fixed:CN"`, "\"fixed:C\u202eN\"", "bidirectional"},
		{"max_len above bound", "max_len: 32", "max_len: 65", "max_len"},
		{"url scheme", `"{base}/ocsp"`, `"https://ocsp.example.gov.cn"`, "scheme https"},
		{"url variable", `"{base}/crl/{ca}.crl"`, `"{base}/crl/{CA}.crl"`, "variable"},
		{"ca section on leaf", "validity: 365d", "validity: 365d\nca: {path_len: 0}", "ca section"},
		{"identity kind", "validity: 365d", "validity: 365d\nidentity: [{type: passport}]", "passport"},
		{"identity shared oid", "validity: 365d", "validity: 365d\nidentity: [{type: uscc}, {type: org-code}]", "share"},
		{"san min", "email: {max: 1}", "email: {max: 1}\n  min: 2", "san.min"},
		{"san source", "email: {max: 1}", "email: {max: 1, source: ldap}", "san.email.source"},
		{"san source empty key", "email: {max: 1}", `email: {max: 1, source: "record:"}`, "san.email.source"},
		{"san record source forbidden type", "email: {max: 1}", "email: {max: 1}\n  uri: {source: record}", "san.uri.source record with max 0"},
		{"kmc outside enc", "validity: 365d", "validity: 365d\nkey_source: kmc", "kmc"},
		// Key usage that contradicts a listed key type (every certificate
		// for it would fail the lints).
		{"sm2 sign and encrypt", "key_usage: [digitalSignature]", "key_usage: [digitalSignature, keyAgreement]", "SM2 end-entity key either signs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(validYAML, tc.from, tc.to, 1)
			if y == validYAML {
				t.Fatalf("replacement %q not found", tc.from)
			}
			_, err := Parse([]byte(y))
			if !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrProfile mentioning %q", err, tc.want)
			}
		})
	}
	// Purpose-specific rules on the built-ins' sources.
	for _, tc := range []struct{ profile, from, to, want string }{
		{"tsa", "ext_key_usage_critical: true", "ext_key_usage_critical: false", "critical"},
		{"ocsp-signer", "ocsp_no_check: true", "ocsp_no_check: false", "ocsp_no_check"},
		{"sub-ca", "key_usage: [digitalSignature, keyCertSign, cRLSign]", "key_usage: [digitalSignature, cRLSign]", "keyCertSign"},
		{"person-sign", "key_usage: [digitalSignature, nonRepudiation]", "key_usage: [digitalSignature, keyEncipherment]", "GM/T 0015"},
		{"person-enc", "key_usage: [keyEncipherment, dataEncipherment]", "key_usage: [digitalSignature, keyEncipherment]", "GM/T 0015"},
		{"server-tls", "cn_in_san: true", "cn_in_san: false", "cn_in_san"},
		{"server-tls", "ip: {max: 10}", "ip: {max: 10, internal: true}", "san.ip.internal"},
		{"server-tls", "dns: {max: 100}", "dns: {max: 100, internal: true}", "san.dns.internal"},
		{"client-tls", "email: {max: 1}", "email: {max: 1, internal: true}", "internal applies to dns and ip"},
		{"sub-ca", "CN: {source: csr, required: true}", "CN: {source: csr}", "requires a CN"},
		{"ocsp-signer", "internal: true", "internal: false", "needs internal: true"},
		{"tsa", "internal: true", "internal: false", "needs internal: true"},
		{"node-tls", "internal: true", "internal: false", "needs internal: true"},
		{"person-enc", "key_types: [sm2]", "key_types: [sm2, ecdsa-p256]", "EC key has no keyEncipherment"},
		{"client-tls", "key_usage: [digitalSignature]", "key_usage: [digitalSignature, keyAgreement]", "RSA key has no keyAgreement"},
		{"sub-ca", "key_types: [sm2, ecdsa-p256, ecdsa-p384]\nkey_usage: [digitalSignature, keyCertSign, cRLSign]",
			"key_types: [rsa-2048]\nkey_usage: [digitalSignature, keyEncipherment, keyCertSign, cRLSign]", "RSA CA key signs only"},
		{"sub-ca", "policies:", "ext_key_usage: [OCSPSigning]\nocsp_no_check: true\npolicies:", "ocsp-signer profiles only"},
		// The BR's server certificate shape (lints_br.go refuses the
		// certificates too, for SM2 as for the other key types).
		{"server-tls", `O:  {source: "record:O"}`, `O:  {source: forbidden}`, "with L or ST needs O"},
		{"server-tls", "CN: {source: csr}", "OU: {source: csr}\n  CN: {source: csr}", "has no OU"},
		{"server-tls", "  min: 1", "  email: {max: 1}\n  min: 1", "only dns and ip"},
		{"server-tls", "  min: 1", "  uri: {max: 1}\n  min: 1", "only dns and ip"},
		{"server-tls", "crl_distribution_points:\n  - \"{base}/pki/{ca}.crl\"\n", "", "crl_distribution_points URL"},
		{"server-tls", `ocsp: ["{base}/ocsp/{ca}"]`, `ocsp: []`, "aia.ocsp and aia.ca_issuers"},
		{"server-tls", `ca_issuers: ["{base}/pki/{ca}.crt"]`, `ca_issuers: ["{ldap}/cn={ca}"]`, "aia.ocsp and aia.ca_issuers"},
	} {
		t.Run(tc.profile+"/"+tc.want, func(t *testing.T) {
			src, _ := BuiltinYAML(tc.profile)
			y := strings.Replace(string(src), tc.from, tc.to, 1)
			if y == string(src) {
				t.Fatalf("replacement %q not found", tc.from)
			}
			_, err := Parse([]byte(y))
			if !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrProfile mentioning %q", err, tc.want)
			}
		})
	}
}

// TestBRLocalityWithoutOrg: a tls-server certificate may name a locality or
// province only beside an organisation (BR §7.1.2.7.4). zlint refuses such
// an ECDSA certificate, but cannot parse SM2 ones; the profile refuses the
// request for every key type, with a reason the RA can act on, and the own
// lints refuse the certificate (lints_br.go).
func TestBRLocalityWithoutOrg(t *testing.T) {
	p := builtinProfile(t, "server-tls")
	sm2CA, ecCA := cas(t)
	for _, c := range []struct {
		ca  *testCA
		key crypto.Signer
	}{{sm2CA, newSM2(t)}, {ecCA, newEC(t, elliptic.P256())}} {
		t.Run(c.ca.name, func(t *testing.T) {
			csr := makeCSR(t, c.key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "www.example.gov.cn"}, DNSNames: []string{"www.example.gov.cn"}})
			in := input(c.ca, csr)
			in.Record = map[string]string{"ST": "福建省", "L": "福州市"}
			if _, err := p.Apply(in); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "L or ST but no O") {
				t.Fatalf("err %v, want a policy refusal (L or ST without O)", err)
			}
			in.Record = map[string]string{}
			res, err := p.Apply(in)
			if err != nil {
				t.Fatalf("without ST and L: %v", err)
			}
			// The lints see the same fault on a certificate made without
			// the profile's check.
			res.Template.RawSubject = nil
			res.Template.Subject.Province = []string{"福建省"}
			res.Template.Subject.Locality = []string{"福州市"}
			res.Template.SerialNumber = new(big.Int).SetBytes(append([]byte{0x01}, randBytes(t, 17)...))
			linted, err := lint.Precheck(res.Template, c.ca.cert, res.PublicKey, res.Expect)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range lint.Errors(linted.Findings) {
				found = found || f.Lint == "e_br_tls_locality_without_org"
			}
			if !found {
				t.Fatalf("e_br_tls_locality_without_org did not fire: %v", linted.Findings)
			}
		})
	}
}
