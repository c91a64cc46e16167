package lint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	zl "github.com/zmap/zlint/v3/lint"
)

// serverTemplate is a TLS server leaf as the server-tls profile makes it,
// with the given validity.
func serverTemplate(t testing.TB, ca *testCA, pub crypto.PublicKey, validity time.Duration) *smx509.Certificate {
	tmpl := goodTemplate(t, pub)
	tmpl.Subject = pkix.Name{Country: []string{"CN"}, Province: []string{"福建省"}, Organization: []string{"某某市人民政府"}, CommonName: "www.example.gov.cn"}
	tmpl.DNSNames = []string{"www.example.gov.cn"}
	tmpl.KeyUsage = smx509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}
	tmpl.NotAfter = tmpl.NotBefore.Add(validity - time.Second)
	tmpl.AuthorityKeyId = ca.cert.SubjectKeyId
	return tmpl
}

func findingsNamed(fs []Finding, name string) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Lint == name {
			out = append(out, f)
		}
	}
	return out
}

// TestZlint: zlint runs in Precheck and Check on ECDSA certificates, its
// errors refuse issuance and its warnings are warnings; it does not run on
// SM2 certificates (zcrypto cannot parse them); the BR lints run on TLS
// server certificates only; the exclusions and the GM/T 0015 waiver hold.
func TestZlint(t *testing.T) {
	pki(t)
	const brValidity = ZlintPrefix + "e_server_cert_valid_time_longer_than_200_days"

	t.Run("BR error refuses an ECDSA TLS server certificate", func(t *testing.T) {
		tmpl := serverTemplate(t, ecdsaCA, ecLeaf.Public(), 365*24*time.Hour)
		l, err := Precheck(tmpl, ecdsaCA.cert, ecLeaf.Public(), Expect{Purpose: PurposeTLSServer, Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		got := findingsNamed(Errors(l.Findings), brValidity)
		if len(got) != 1 || got[0].Source == "" || got[0].Detail == "" {
			t.Fatalf("want one %s error with source and detail; findings %v", brValidity, l.Findings)
		}
		// Without a profile (a re-lint of an issued certificate) the
		// serverAuth EKU selects the BR lints all the same.
		if got := findingsNamed(Check(l.DER, ecdsaCA.cert, Expect{}), brValidity); len(got) != 1 {
			t.Fatalf("re-lint without purpose lacks %s", brValidity)
		}
	})

	t.Run("zlint warnings are warnings", func(t *testing.T) {
		tmpl := serverTemplate(t, ecdsaCA, ecLeaf.Public(), 90*24*time.Hour)
		l, err := Precheck(tmpl, ecdsaCA.cert, ecLeaf.Public(), Expect{Purpose: PurposeTLSServer, Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		if errs := Errors(l.Findings); len(errs) != 0 {
			t.Fatalf("errors on a BR-shaped 90-day certificate: %v", errs)
		}
		for _, n := range []string{"w_subject_common_name_included", "w_ext_subject_key_identifier_not_recommended_subscriber"} {
			got := findingsNamed(l.Findings, ZlintPrefix+n)
			if len(got) != 1 || got[0].Severity != Warning {
				t.Errorf("want warning %s; findings %v", n, l.Findings)
			}
		}
		// certificatePolicies are absent, yet the excluded BR policy lints
		// do not fire.
		for n := range ZlintExclusions(PurposeTLSServer) {
			if got := findingsNamed(l.Findings, ZlintPrefix+n); len(got) != 0 {
				t.Errorf("excluded lint %s fired: %v", n, got)
			}
		}
	})

	t.Run("BR lints do not run outside TLS server certificates", func(t *testing.T) {
		tmpl := serverTemplate(t, ecdsaCA, ecLeaf.Public(), 365*24*time.Hour)
		tmpl.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
		l, err := Precheck(tmpl, ecdsaCA.cert, ecLeaf.Public(), Expect{Purpose: PurposeTLSClient, Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Findings) != 0 {
			t.Errorf("findings: %v", l.Findings)
		}
	})

	t.Run("SM2 certificates are not given to zlint", func(t *testing.T) {
		tmpl := serverTemplate(t, sm2CA, sm2Leaf.Public(), 365*24*time.Hour)
		l, err := Precheck(tmpl, sm2CA.cert, sm2Leaf.Public(), Expect{Purpose: PurposeTLSServer, Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Findings {
			if strings.HasPrefix(f.Lint, ZlintPrefix) {
				t.Errorf("zlint finding on an SM2 certificate: %v", f)
			}
		}
		// The own lints still see what zlint would: the e_ lint of the
		// profile's maximum, here given as the BR's 200 days.
		fs := Check(l.DER, sm2CA.cert, Expect{Purpose: PurposeTLSServer, MaxValidity: 200 * 24 * time.Hour})
		if got := findingsNamed(fs, "e_profile_validity_too_long"); len(got) != 1 {
			t.Errorf("own lints: %v", fs)
		}
	})

	t.Run("GM/T 0015 signing shape waives the KU/EKU table", func(t *testing.T) {
		const kueku = ZlintPrefix + zlintKUEKU
		// digitalSignature+nonRepudiation with clientAuth: waived.
		if got := findingsNamed(Check(ecLeafDER, ecdsaCA.cert, Expect{Purpose: PurposeSign}), kueku); len(got) != 0 {
			t.Errorf("GM/T 0015 signing certificate: %v", got)
		}
		// digitalSignature+keyEncipherment with clientAuth: not the shape,
		// zlint's verdict stands.
		tmpl := goodTemplate(t, ecLeaf.Public())
		tmpl.KeyUsage = smx509.KeyUsageDigitalSignature | smx509.KeyUsageKeyEncipherment | smx509.KeyUsageContentCommitment
		tmpl.AuthorityKeyId = ecdsaCA.cert.SubjectKeyId
		l, err := Precheck(tmpl, ecdsaCA.cert, ecLeaf.Public(), Expect{})
		if err != nil {
			t.Fatal(err)
		}
		if got := findingsNamed(Errors(l.Findings), kueku); len(got) != 1 {
			t.Errorf("want %s; findings %v", kueku, l.Findings)
		}
	})

	t.Run("zcrypto parse failure is an error", func(t *testing.T) {
		r, err := parseRaw(ecLeafDER)
		if err != nil {
			t.Fatal(err)
		}
		// id-ecPublicKey with implicitCurve (NULL) parameters.
		r.spki = spkiDER(oidPublicKeyEC, []byte{5, 0}, append([]byte{4}, make([]byte, 64)...))
		if got := findingsNamed(Check(r.encode(), ecdsaCA.cert, Expect{}), ZlintPrefix+"e_parse"); len(got) != 1 || got[0].Severity != Error {
			t.Fatalf("want %se_parse error, got %v", ZlintPrefix, got)
		}
	})

	t.Run("sources and exclusions", func(t *testing.T) {
		if s := ZlintSources(PurposeTLSServer); !slices.Contains(s, string(zl.CABFBaselineRequirements)) || !slices.Contains(s, string(zl.RFC5280)) {
			t.Errorf("tls-server sources %v", s)
		}
		for _, p := range []Purpose{PurposeSign, PurposeEnc, PurposeTLSClient, PurposeOCSPSigner, PurposeTSA, PurposeCodeSign, PurposeCA, ""} {
			s := ZlintSources(p)
			if slices.Contains(s, string(zl.CABFBaselineRequirements)) || !slices.Contains(s, string(zl.RFC5280)) {
				t.Errorf("%q sources %v", p, s)
			}
			// A lint renamed or dropped by a zlint upgrade must not turn an
			// exclusion into a silent no-op.
			for n, why := range ZlintExclusions(p) {
				if zl.GlobalRegistry().CertificateLints().ByName(n) == nil || why == "" {
					t.Errorf("exclusion %s is not a zlint certificate lint or has no reason", n)
				}
			}
			if _, err := zlintFor(p); err != nil {
				t.Errorf("registry %q: %v", p, err)
			}
		}
	})
}

// BenchmarkPrecheckECDSA measures the whole pre-issuance lint of a TLS
// server certificate under an ECDSA P-256 CA: throw-away signature, own
// lints and zlint (RFC, Community and BR sources). BenchmarkZlintOnly and
// BenchmarkOwnLintsOnly split it.
func BenchmarkPrecheckECDSA(b *testing.B) {
	pki(b)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := serverTemplate(b, ecdsaCA, key.Public(), 90*24*time.Hour)
	exp := Expect{Purpose: PurposeTLSServer, Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		l, err := Precheck(tmpl, ecdsaCA.cert, key.Public(), exp)
		if err != nil || len(Errors(l.Findings)) != 0 {
			b.Fatalf("precheck: %v %v", err, l.Findings)
		}
	}
}

// BenchmarkZlintOnly measures zlint's share: zcrypto parse and the lints of
// the tls-server registry on one certificate.
func BenchmarkZlintOnly(b *testing.B) {
	pki(b)
	tmpl := serverTemplate(b, ecdsaCA, ecLeaf.Public(), 90*24*time.Hour)
	l, err := Precheck(tmpl, ecdsaCA.cert, ecLeaf.Public(), Expect{Purpose: PurposeTLSServer, Now: testNow})
	if err != nil {
		b.Fatal(err)
	}
	c, fatal := newCtx(l.DER, ecdsaCA.cert, Expect{Purpose: PurposeTLSServer, Now: testNow})
	if fatal != nil {
		b.Fatal(fatal)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.runZlint()
	}
}

// BenchmarkOwnLintsOnly measures govtrust's own lints on the same
// certificate, for comparison.
func BenchmarkOwnLintsOnly(b *testing.B) {
	pki(b)
	tmpl := serverTemplate(b, ecdsaCA, ecLeaf.Public(), 90*24*time.Hour)
	l, err := Precheck(tmpl, ecdsaCA.cert, ecLeaf.Public(), Expect{Purpose: PurposeTLSServer, Now: testNow})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, fatal := newCtx(l.DER, ecdsaCA.cert, Expect{Purpose: PurposeTLSServer, Now: testNow})
		if fatal != nil {
			b.Fatal(fatal)
		}
		_ = c.runAll(false)
	}
}
