package profile

import (
	"bytes"
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"
)

// TestParseCSRFraming: a request is one PKCS #10 request, in DER or as one
// PEM CERTIFICATE REQUEST block with nothing but whitespace around it. A
// second block, trailing text or text before the block is refused
// (ErrBadCSR), not silently dropped: the certificate would otherwise be
// made from whichever block came first.
func TestParseCSRFraming(t *testing.T) {
	a := makeCSRDER(t, newEC(t, elliptic.P256()), &smx509.CertificateRequest{DNSNames: []string{"a.example.gov.cn"}})
	b := makeCSRDER(t, newEC(t, elliptic.P256()), &smx509.CertificateRequest{DNSNames: []string{"b.example.gov.cn"}})
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	pa, pb := pemOf("CERTIFICATE REQUEST", a), pemOf("CERTIFICATE REQUEST", b)
	for _, tc := range []struct {
		name string
		data []byte
		msg  string // "" accepts; else the ErrBadCSR text expected
	}{
		{"DER", a, ""},
		{"PEM", []byte(pa), ""},
		{"PEM NEW CERTIFICATE REQUEST", []byte(pemOf("NEW CERTIFICATE REQUEST", a)), ""},
		{"PEM in whitespace", []byte("\n\t  " + strings.Repeat(" ", 100) + pa + "\r\n\n  "), ""},
		{"PEM without final newline", []byte(strings.TrimSuffix(pa, "\n")), ""},
		{"two PEM blocks", []byte(pa + pb), "after the PEM CERTIFICATE REQUEST block"},
		{"trailing text", []byte(pa + "trailing junk"), "after the PEM CERTIFICATE REQUEST block"},
		{"trailing certificate", []byte(pa + pemOf("CERTIFICATE", b)), "after the PEM CERTIFICATE REQUEST block"},
		{"text before", []byte("subject=CN=a\n" + pa), "before the PEM block"},
		{"other block type", []byte(pemOf("CERTIFICATE", a)), "not a PEM CERTIFICATE REQUEST"},
		{"truncated PEM", []byte(pa[:len(pa)/2]), "not a PEM CERTIFICATE REQUEST"},
		{"DER with trailing bytes", append(append([]byte{}, a...), 0), "not a PKCS #10"},
		{"base64 without armour", []byte(strings.Join(strings.Split(pa, "\n")[1:len(strings.Split(pa, "\n"))-2], "")), "not a PKCS #10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR(tc.data)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				if !bytes.Equal(csr.Raw, a) {
					t.Fatalf("parsed another request than the one given")
				}
				return
			}
			if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseCSR: %v, want ErrBadCSR mentioning %q", err, tc.msg)
			}
		})
	}
}
