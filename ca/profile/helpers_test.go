package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/ca/lint"
)

// testNow is the injected issuance time of the tests.
var testNow = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

type testCA struct {
	name string
	cert *smx509.Certificate
	key  crypto.Signer
}

func makeCA(t testing.TB, name string, key crypto.Signer, nb, na time.Time) *testCA {
	t.Helper()
	tmpl := &smx509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(append([]byte{0x01}, randBytes(t, 16)...)),
		Subject:               pkix.Name{Country: []string{"CN"}, Organization: []string{"govtrust 测试"}, CommonName: name},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign | smx509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{name: name, cert: cert, key: key}
}

var (
	casOnce        sync.Once
	sm2CA, ecdsaCA *testCA
)

func cas(t testing.TB) (*testCA, *testCA) {
	casOnce.Do(func() {
		sk, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sm2CA = makeCA(t, "govtrust SM2 test root", sk, testNow.AddDate(-1, 0, 0), testNow.AddDate(15, 0, 0))
		ecdsaCA = makeCA(t, "govtrust ECDSA test root", ek, testNow.AddDate(-1, 0, 0), testNow.AddDate(15, 0, 0))
	})
	if sm2CA == nil {
		t.Fatal("test CAs not made")
	}
	return sm2CA, ecdsaCA
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newSM2(t testing.TB) crypto.Signer {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEC(t testing.TB, c elliptic.Curve) crypto.Signer {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRSA(t testing.TB, bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCSR signs a request; SM2 keys sign with the default user ID.
func makeCSR(t testing.TB, key crypto.Signer, tmpl *smx509.CertificateRequest) *smx509.CertificateRequest {
	t.Helper()
	der := makeCSRDER(t, key, tmpl)
	csr, err := ParseCSR(der)
	if err != nil {
		t.Fatalf("ParseCSR: %v", err)
	}
	return csr
}

func makeCSRDER(t testing.TB, key crypto.Signer, tmpl *smx509.CertificateRequest) []byte {
	t.Helper()
	der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}

// record is a registration record as an RA would hold it.
func record() map[string]string {
	return map[string]string{
		"CN": "张三", "O": "某某市人民政府", "OU": "信息中心", "ST": "福建省", "L": "福州市",
		"mail": "zhangsan@example.gov.cn", "id-card": "11010519491231002X", "uscc": "91350100M000100Y43", "tax": "350100M000100Y4",
		"social-insurance": "A1234567",
	}
}

var testVars = map[string]string{"base": "http://pki.example.gov.cn", "ldap": "ldap://ldap.example.gov.cn", "ldap_base": "dc=govtrust,dc=local"}

func input(ca *testCA, csr *smx509.CertificateRequest) Input {
	return Input{CSR: csr, Record: record(), Now: testNow, Issuer: ca.cert, CAID: "root-2026", Vars: testVars}
}

func builtinProfile(t testing.TB, name string) *Profile {
	p, ok := Builtin()[name]
	if !ok {
		t.Fatalf("no built-in profile %s", name)
	}
	return p
}

// justifiedWarnings are the only lint warnings a built-in profile may
// produce, by purpose, each with why it is accepted (the same list, with
// the same reasons, as the A-07 sweep in package ca).
var justifiedWarnings = map[lint.Purpose]map[string]string{
	lint.PurposeTLSServer: {
		// ACCEPTANCE A-10 and RFC 5280 §4.2.1.2 want a subjectKeyIdentifier
		// in every certificate; BR v2 §7.1.2.7.6 merely does not recommend it.
		"zlint/w_ext_subject_key_identifier_not_recommended_subscriber": "A-10 requires SKI in every certificate",
		// The request chose a CN; the profile keeps it only when it is one
		// of the SANs (BR §7.1.2.7.4 allows it; older clients read it).
		"zlint/w_subject_common_name_included": "CN requested and equal to a SAN (BR §7.1.4.3 MAY)",
	},
}

// unjustified returns the findings that are neither justified warnings of
// the purpose nor nothing at all.
func unjustified(fs []lint.Finding, p lint.Purpose) []lint.Finding {
	var out []lint.Finding
	for _, f := range fs {
		if _, ok := justifiedWarnings[p][f.Lint]; ok && f.Severity == lint.Warning {
			continue
		}
		out = append(out, f)
	}
	return out
}

// issue runs the whole pre-issuance path the CA will run: serial, lint
// with a throw-away key, real signature, TBS equality, lint of the result.
// It fails the test on any lint finding, warnings included, except the
// justified warnings.
func issue(t testing.TB, ca *testCA, res *Result) *smx509.Certificate {
	t.Helper()
	res.Template.SerialNumber = new(big.Int).SetBytes(append([]byte{0x01}, randBytes(t, 17)...))
	linted, err := lint.Precheck(res.Template, ca.cert, res.PublicKey, res.Expect)
	if err != nil {
		t.Fatalf("precheck: %v", err)
	}
	if fs := unjustified(linted.Findings, res.Expect.Purpose); len(fs) != 0 {
		t.Fatalf("lint findings: %v", fs)
	}
	der, err := smx509.CreateCertificate(rand.Reader, res.Template, ca.cert, res.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if err := linted.SameTBS(der); err != nil {
		t.Fatal(err)
	}
	if fs := unjustified(lint.Check(der, ca.cert, res.Expect), res.Expect.Purpose); len(fs) != 0 {
		t.Fatalf("lint of the signed certificate: %v", fs)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(ca.cert); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return cert
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func hasNote(r *Result, sub string) bool {
	for _, n := range r.Notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}
