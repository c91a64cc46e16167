package profile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/internal/testenv"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testenv.LookPath(t, "openssl")
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func mustOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, err := openssl(t, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestOpenSSLWeakCurves: requests OpenSSL makes on curves Go does not
// implement are refused as key-policy errors naming the curve.
func TestOpenSSLWeakCurves(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ curve, want string }{
		{"prime192v1", "P-192"},
		{"secp256k1", "secp256k1"},
	} {
		t.Run(tc.curve, func(t *testing.T) {
			csr := filepath.Join(dir, tc.curve+".csr")
			mustOpenSSL(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:"+tc.curve, "-nodes",
				"-keyout", filepath.Join(dir, tc.curve+".key"), "-subj", "/CN=weak", "-outform", "DER", "-out", csr)
			der, err := os.ReadFile(csr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseCSR(der)
			if !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseCSR: %v, want ErrKeyPolicy naming %s", err, tc.want)
			}
		})
	}
	t.Run("rsa-1024", func(t *testing.T) {
		csr := filepath.Join(dir, "rsa1024.csr")
		mustOpenSSL(t, "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", filepath.Join(dir, "rsa1024.key"),
			"-subj", "/CN=weak", "-out", csr)
		pemData, _ := os.ReadFile(csr)
		if _, err := ParseCSR(pemData); !errors.Is(err, ErrKeyPolicy) {
			t.Fatalf("ParseCSR: %v", err)
		}
	})
}

// TestOpenSSLSM2RoundTrip: an SM2 request made by OpenSSL with the default
// user ID is accepted, the certificate issued under org-sign with Chinese
// names verifies in OpenSSL, prints its names in UTF-8 and encodes them as
// UTF8String; a request signed without the ID fails the proof
// of possession.
func TestOpenSSLSM2RoundTrip(t *testing.T) {
	sm2ca, _ := cas(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "sm2.key")
	mustOpenSSL(t, "genpkey", "-algorithm", "SM2", "-out", key)
	csrPath := filepath.Join(dir, "sm2.csr")
	mustOpenSSL(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678",
		"-utf8", "-subj", "/CN=某某/O=冒名", "-out", csrPath)
	pemData, err := os.ReadFile(csrPath)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(pemData)
	if err != nil {
		t.Fatal(err)
	}
	in := input(sm2ca, csr)
	in.Record["CN"] = "某某市人民政府办公室"
	res, err := builtinProfile(t, "org-sign").Apply(in)
	if err != nil {
		t.Fatal(err)
	}
	cert := issue(t, sm2ca, res)
	caPEM := writePEM(t, dir, "ca.pem", "CERTIFICATE", sm2ca.cert.Raw)
	leafPEM := writePEM(t, dir, "leaf.pem", "CERTIFICATE", cert.Raw)

	if out := mustOpenSSL(t, "verify", "-vfyopt", "distid:1234567812345678", "-CAfile", caPEM, leafPEM); !strings.Contains(out, "leaf.pem: OK") {
		t.Fatalf("openssl verify: %s", out)
	}
	subject := mustOpenSSL(t, "x509", "-in", leafPEM, "-noout", "-subject", "-nameopt", "utf8,sep_comma_plus_space")
	for _, want := range []string{"C=CN", "O=某某市人民政府", "OU=信息中心", "CN=某某市人民政府办公室"} {
		if !strings.Contains(strings.ReplaceAll(subject, " = ", "="), want) {
			t.Errorf("openssl subject %q lacks %q", subject, want)
		}
	}
	parsed := mustOpenSSL(t, "asn1parse", "-in", leafPEM)
	for _, re := range []string{
		`PRINTABLESTRING\s+:CN\n`,
		`UTF8STRING\s+:某某市人民政府\n`,
		`UTF8STRING\s+:某某市人民政府办公室\n`,
		`UTF8STRING\s+:福建省\n`,
	} {
		if !regexp.MustCompile(re).MatchString(parsed) {
			t.Errorf("asn1parse output lacks %s", re)
		}
	}
	text := mustOpenSSL(t, "x509", "-in", leafPEM, "-noout", "-text")
	for _, want := range []string{"Signature Algorithm: SM2-with-SM3", "X509v3 Key Usage: critical", "Digital Signature, Non Repudiation",
		"1.2.156.10260.4.1.4", "URI:ldap://ldap.example.gov.cn/cn=root-2026,ou=ca,dc=govtrust,dc=local?certificateRevocationList;binary"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q", want)
		}
	}

	t.Run("without distid", func(t *testing.T) {
		p := filepath.Join(dir, "noid.csr")
		mustOpenSSL(t, "req", "-new", "-key", key, "-sm3", "-subj", "/CN=x", "-out", p)
		data, _ := os.ReadFile(p)
		csr, err := ParseCSR(data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := builtinProfile(t, "org-sign").Apply(input(sm2ca, csr)); !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "distid") {
			t.Fatalf("err %v, want a proof-of-possession failure explaining distid", err)
		}
	})
}

// TestOpenSSLStringTypesAndTimes shows with asn1parse that a '&' sent in a
// PrintableString comes out as UTF8String, and that a notAfter in
// 2050 is a GeneralizedTime while 2049 stays UTCTime.
func TestOpenSSLStringTypesAndTimes(t *testing.T) {
	dir := t.TempDir()
	key := newSM2(t)
	ca := makeCA(t, "long CA", newSM2(t), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2070, 1, 1, 0, 0, 0, 0, time.UTC))
	csr := makeCSR(t, key, &smx509.CertificateRequest{RawSubject: rawName(
		nameAttr{oidOU, cbasn1.PrintableString, "R&D"},
		nameAttr{oidCN, cbasn1.PrintableString, "app"},
	)})
	in := input(ca, csr)
	in.Now = time.Date(2049, 6, 1, 0, 0, 0, 0, time.UTC)
	res, err := builtinProfile(t, "client-tls").Apply(in)
	if err != nil {
		t.Fatal(err)
	}
	cert := issue(t, ca, res)
	leaf := writePEM(t, dir, "leaf.pem", "CERTIFICATE", cert.Raw)
	parsed := mustOpenSSL(t, "asn1parse", "-in", leaf)
	for _, re := range []string{`UTF8STRING\s+:R&D\n`, `PRINTABLESTRING\s+:app\n`, `UTCTIME\s+:490531230000Z\n`, `GENERALIZEDTIME\s+:20510531225959Z\n`} {
		if !regexp.MustCompile(re).MatchString(parsed) {
			t.Errorf("asn1parse output lacks %s:\n%s", re, parsed)
		}
	}
}
