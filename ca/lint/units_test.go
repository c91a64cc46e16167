package lint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func TestPublicKey(t *testing.T) {
	sk, _ := sm2.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	r2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	r1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	spki := func(pub crypto.PublicKey) []byte {
		der, err := smx509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	for _, tc := range []struct {
		name string
		der  []byte
		want string // "" for clean
	}{
		{"sm2", spki(sk.Public()), ""},
		{"p256", spki(p256.Public()), ""},
		{"p384", spki(p384.Public()), ""},
		{"rsa2048", spki(r2048.Public()), ""},
		{"p521", spki(p521.Public()), "e_ec_curve_not_allowed"},
		{"rsa1024", spki(r1024.Public()), "e_rsa_key_too_small"},
		{"p192", spkiDER(oidPublicKeyEC, oidParam(oidCurveP192), append([]byte{4}, make([]byte, 48)...)), "e_ec_curve_not_allowed"},
		{"garbage", []byte{1, 2, 3}, "e_spki_malformed"},
		// Refused for its size alone: the factoring lints, which would
		// find the factor 3, do not run on it (a 400,000-bit modulus fits
		// a 64 KiB request and cost them seconds).
		{"rsa8200", rsaSPKI(hugeModulus(t, 8200), 65537, true), "e_rsa_key_too_large"},
		{"rsa400000", rsaSPKI(hugeModulus(t, 400000), 65537, true), "e_rsa_key_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := PublicKey(tc.der)
			got := names2(fs, Error)
			if tc.want == "" && len(fs) != 0 {
				t.Fatalf("findings on a good key: %v", fs)
			}
			if tc.want != "" && strings.Join(got, ",") != tc.want {
				t.Fatalf("errors %v, want [%s]", got, tc.want)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		kind  IdentityKind
		value string
		ok    bool
	}{
		{IdentityIDCard, identityIDCard, true},
		{IdentityIDCard, identityBadCheck, false},
		{IdentityIDCard, "11010519491331002X", false}, // month 13
		{IdentityIDCard, "1101051949123100", false},
		{IdentityUSCC, identityUSCC, true},
		{IdentityUSCC, "91350100M000100Y44", false},
		{IdentityUSCC, "91350100M000100I43", false}, // I is not in the GB 32100 alphabet
		// The organisation code is characters 9–17 of the USCC above, so
		// its GB 11714 check digit is a cross-check of both algorithms.
		{IdentityOrgCode, "M000100Y-4", true},
		{IdentityOrgCode, "M000100Y4", true},
		{IdentityOrgCode, "M000100Y-5", false},
		{IdentityTax, "350100M000100Y4", true},
		{IdentityTax, "35010", false},
		{IdentitySocialInsurance, "A1234567", true},
		{IdentitySocialInsurance, "张三", false},
	} {
		t.Run(string(tc.kind)+"/"+tc.value, func(t *testing.T) {
			ext, err := MarshalIdentity(tc.kind, tc.value)
			if (err == nil) != tc.ok {
				t.Fatalf("MarshalIdentity: err %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				return
			}
			if ext.Critical {
				t.Error("identity extension marked critical")
			}
			kind, v, err := ParseIdentity(ext.Id, ext.Value)
			if err != nil || v != tc.value {
				t.Fatalf("ParseIdentity: %q, %v", v, err)
			}
			if tc.kind != IdentityOrgCode && kind != tc.kind {
				t.Errorf("kind %s, want %s", kind, tc.kind)
			}
		})
	}
	// The resident-ID CHOICE is read in both tagging styles.
	explicit, _ := MarshalIdentity(IdentityIDCard, identityIDCard)
	if explicit.Value[0] != 0xa0 || explicit.Value[2] != 0x13 {
		t.Errorf("IdentifyCode encoding % x, want EXPLICIT [0] PrintableString", explicit.Value)
	}
	implicit := append([]byte{0x80, byte(len(identityIDCard))}, identityIDCard...)
	if _, v, err := ParseIdentity(OIDIdentityCode, implicit); err != nil || v != identityIDCard {
		t.Errorf("IMPLICIT IdentifyCode: %q, %v", v, err)
	}
	if _, _, err := ParseIdentity(OIDIdentityCode, []byte{0xa3, 2, 0x13, 0}); err == nil {
		t.Error("IdentifyCode [3] accepted")
	}
}

func TestValidDNSName(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wildcard bool
		ok       bool
	}{
		{"www.example.gov.cn", false, true},
		{"xn--fiqs8s.example.cn", false, true},
		{"*.example.gov.cn", true, true},
		{"*.example.gov.cn", false, false},
		{"*.cn", true, false},
		{"a.*.example.gov.cn", true, false},
		{"w*.example.gov.cn", true, false},
		{"a_b.example.gov.cn", false, false},
		{"-a.example.gov.cn", false, false},
		{"a..example.gov.cn", false, false},
		{"example.gov.cn.", false, false},
		{"10.0.0.1", false, false},
		{"例子.cn", false, false},
		// "xn--" labels must be valid A-labels (zlint's
		// e_international_dns_name_not_unicode, which SM2 escaped).
		{"a.xn--55qx5d.cn", false, true},
		{"XN--55QX5D.cn", false, true},
		{"xn--1234.example.com", false, false},   // not Punycode
		{"xn--zz-.example.com", false, false},    // decodes to ASCII "zz"
		{"xn--a.example.com", false, false},      // decodes to U+0080
		{"xn--.example.com", false, false},       // empty
		{"xn--ab-m1t.example.com", false, false}, // a ZWJ outside its context (RFC 5892 CONTEXTJ)
		{strings.Repeat("a", 64) + ".cn", false, false},
	} {
		if err := ValidDNSName(tc.name, tc.wildcard); (err == nil) != tc.ok {
			t.Errorf("ValidDNSName(%q, %v) = %v, want ok %v", tc.name, tc.wildcard, err, tc.ok)
		}
	}
	for name, internal := range map[string]bool{"intranet": true, "a.local": true, "x.internal": true, "a.home.arpa": true, "www.example.gov.cn": false} {
		if IsInternalName(name) != internal {
			t.Errorf("IsInternalName(%q) = %v", name, !internal)
		}
	}
}

// TestValidMailbox: an rfc822Name is an RFC 5321 Mailbox with a Dot-string
// local part; control characters, quoting and address literals are not.
func TestValidMailbox(t *testing.T) {
	for _, ok := range []string{"a@example.gov.cn", "first.last+tag@example.gov.cn", "o'brien@EXAMPLE.gov.cn", "x!#$%&*/=?^_`{|}~-@a.example.cn",
		strings.Repeat("a", 64) + "@example.gov.cn"} {
		if err := ValidMailbox(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "no-at", "@example.gov.cn", "a@", "a\x1b@example.gov.cn", "a\x7f@example.gov.cn", "a\x01b@example.gov.cn",
		"a b@example.gov.cn", "\"a\"@example.gov.cn", ".a@example.gov.cn", "a.@example.gov.cn", "a..b@example.gov.cn", "a@b@example.gov.cn",
		"a@[218.85.152.99]", "a@example_x.gov.cn", "张@example.gov.cn", strings.Repeat("a", 65) + "@example.gov.cn",
		"a@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 61)} {
		if err := ValidMailbox(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"http://pki.example.gov.cn/crl/a.crl":                                                true,
		"ldap://ldap.example.gov.cn/cn=a,ou=crl,o=govtrust?certificateRevocationList;binary": true,
		"https://pki.example.gov.cn/a.crl":                                                   true,
		"ftp://pki.example.gov.cn/a.crl":                                                     false,
		"http:///a.crl":                                                                      false,
		"http://pki.example.gov.cn/a b.crl":                                                  false,
		"http://pki.example.gov.cn/中.crl":                                                    false,
		"http://user@pki.example.gov.cn/a.crl":                                               false,
		"/relative.crl":                                                                      false,
	} {
		if err := CheckURL(u); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok %v", u, err, ok)
		}
	}
}

func TestBadRune(t *testing.T) {
	for s, bad := range map[string]bool{
		"张三": false, "A&B Ltd.": false, "a\x00b": true, "a\u202eb": true, "a\u2067b": true,
		"a\x7fb": true, "a\u0085b": true, "\ufeffa": true, "a\xffb": true, "a\u200fb": true,
	} {
		if _, _, got := BadRune(s); got != bad {
			t.Errorf("BadRune(%q) = %v, want %v", s, got, bad)
		}
	}
}

func TestPrecheckSameTBS(t *testing.T) {
	pki(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCA := newTestCA(t, rk, "govtrust RSA test CA", testNow.Add(-time.Hour), testNow.Add(10*365*24*time.Hour))
	for _, tc := range []struct {
		name   string
		ca     *testCA
		key    crypto.Signer
		sigAlg smx509.SignatureAlgorithm
	}{
		{"sm2", sm2CA, sm2Leaf, smx509.SM2WithSM3},
		{"ecdsa", ecdsaCA, ecLeaf, smx509.ECDSAWithSHA256},
		{"rsa issuer", rsaCA, ecLeaf, smx509.SHA256WithRSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := goodTemplate(t, tc.key.Public())
			tmpl.AuthorityKeyId = tc.ca.cert.SubjectKeyId
			l, err := Precheck(tmpl, tc.ca.cert, tc.key.Public(), Expect{Purpose: PurposeSign, Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Findings) != 0 {
				t.Fatalf("findings: %v", l.Findings)
			}
			// The lint certificate is a whole certificate: the algorithm
			// CreateCertificate chose, inside and outside the TBS, and a
			// signature of the TBS by the throw-away key (Precheck makes it
			// without CreateCertificate's check, so check it here).
			lc, err := smx509.ParseCertificate(l.DER)
			if err != nil {
				t.Fatalf("lint certificate does not parse: %v", err)
			}
			if lc.SignatureAlgorithm != tc.sigAlg {
				t.Fatalf("lint certificate signed with %v, want %v", lc.SignatureAlgorithm, tc.sigAlg)
			}
			if !bytes.Equal(lc.RawTBSCertificate, l.TBS) {
				t.Fatal("Linted.TBS is not the lint certificate's TBS")
			}
			throwaway, err := throwawayKey(tc.ca.cert.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			standIn := *tc.ca.cert
			standIn.PublicKey = throwaway.Public()
			if err := lc.CheckSignatureFrom(&standIn); err != nil {
				t.Fatalf("lint certificate's signature: %v", err)
			}
			if err := lc.CheckSignatureFrom(tc.ca.cert); err == nil {
				t.Fatal("lint certificate verifies under the real CA key")
			}
			der, err := smx509.CreateCertificate(rand.Reader, tmpl, tc.ca.cert, tc.key.Public(), tc.ca.key)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.SameTBS(der); err != nil {
				t.Fatalf("SameTBS: %v", err)
			}
			cert, _ := smx509.ParseCertificate(der)
			if err := cert.CheckSignatureFrom(tc.ca.cert); err != nil {
				t.Fatalf("real signature: %v", err)
			}
			// A template changed after linting is caught.
			tmpl.NotAfter = tmpl.NotAfter.Add(-1e9)
			der2, err := smx509.CreateCertificate(rand.Reader, tmpl, tc.ca.cert, tc.key.Public(), tc.ca.key)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.SameTBS(der2); err == nil {
				t.Fatal("SameTBS accepted a different TBS")
			}
			tmpl.SerialNumber = nil
			if _, err := Precheck(tmpl, tc.ca.cert, tc.key.Public(), Expect{}); err == nil {
				t.Fatal("Precheck without serial accepted")
			}
		})
	}
}

func TestRSAWeaknessDetectors(t *testing.T) {
	// A real key is neither Fermat-close nor ROCA.
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if rsaFermatFactor(k.N) || rsaROCA(k.N) || rsaSmallFactor(k.N) != 0 {
		t.Fatal("a freshly generated RSA key was flagged")
	}
	// Primes 2^20 apart are found within the BR's 100 rounds.
	p, _ := rand.Prime(rand.Reader, 1024)
	q := new(big.Int).Add(p, big.NewInt(1<<20))
	for !q.ProbablyPrime(20) {
		q.Add(q, big.NewInt(2))
	}
	if !rsaFermatFactor(new(big.Int).Mul(p, q)) {
		t.Fatal("close primes not found")
	}
	if !rsaROCA(rocaModulus(t)) {
		t.Fatal("ROCA fingerprint not found")
	}
}

// BenchmarkPrecheckSM2 measures the whole pre-issuance lint of a person
// signing certificate under an SM2 CA: encoding, throw-away SM2 signature
// and the own lints (zlint does not run on SM2 certificates).
func BenchmarkPrecheckSM2(b *testing.B) {
	pki(b)
	tmpl := goodTemplate(b, sm2Leaf.Public())
	tmpl.AuthorityKeyId = sm2CA.cert.SubjectKeyId
	exp := Expect{Purpose: PurposeSign, Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		l, err := Precheck(tmpl, sm2CA.cert, sm2Leaf.Public(), exp)
		if err != nil || len(Errors(l.Findings)) != 0 {
			b.Fatalf("precheck: %v %v", err, l.Findings)
		}
	}
}
