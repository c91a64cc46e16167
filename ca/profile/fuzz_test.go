package profile

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/ca/lint"
)

// FuzzApply feeds arbitrary bytes through ParseCSR and Apply under the
// profiles that take the most from the request. Besides not panicking, any
// request Apply accepts must yield a certificate with no lint error: the
// profile, not the request, decides what is signed.
func FuzzApply(f *testing.F) {
	sm2ca, ecca := cas(f)
	for _, tmpl := range []*smx509.CertificateRequest{
		{Subject: pkix.Name{CommonName: "www.example.gov.cn"}, DNSNames: []string{"www.example.gov.cn"}, IPAddresses: []net.IP{{192, 0, 2, 1}}},
		{Subject: pkix.Name{CommonName: "审批系统", OrganizationalUnit: []string{"R&D"}}, EmailAddresses: []string{"a@example.gov.cn"}},
		{Subject: pkix.Name{CommonName: "moc.\u202eknab"}},
	} {
		f.Add(makeCSRDER(f, newSM2(f), tmpl))
		f.Add(makeCSRDER(f, newEC(f, elliptic.P256()), tmpl))
	}
	f.Add(makeCSRDER(f, newRSA(f, 2048), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}}))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	profiles := []*Profile{builtinProfile(f, "server-tls"), builtinProfile(f, "client-tls"), builtinProfile(f, "person-sign")}

	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		for _, ca := range []*testCA{sm2ca, ecca} {
			for _, p := range profiles {
				res, err := p.Apply(input(ca, csr))
				if err != nil {
					continue
				}
				res.Template.SerialNumber = new(big.Int).SetBytes([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
				linted, err := lint.Precheck(res.Template, ca.cert, res.PublicKey, res.Expect)
				if err != nil {
					t.Fatalf("%s accepted a request it cannot sign: %v", p.Name, err)
				}
				if errs := lint.Errors(linted.Findings); len(errs) > 0 {
					t.Fatalf("%s accepted a request that lints with errors: %v", p.Name, errs)
				}
			}
		}
	})
}

// FuzzApplyNames signs requests whose names are fuzzed, so the search goes
// past the proof of possession: every subject and SAN Apply accepts must
// lint without error.
func FuzzApplyNames(f *testing.F) {
	sm2ca, _ := cas(f)
	key := newSM2(f)
	f.Add("www.example.gov.cn", "信息中心", "www.example.gov.cn", "a@example.gov.cn")
	f.Add("审批系统", "R&D", "*.example.gov.cn", "x")
	f.Add("a\u202eb", " x", "a_b.example.gov.cn", "@")
	profiles := []*Profile{builtinProfile(f, "server-tls"), builtinProfile(f, "client-tls")}
	f.Fuzz(func(t *testing.T, cn, ou, dns, email string) {
		tmpl := &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}}}
		if dns != "" {
			tmpl.DNSNames = []string{dns}
		}
		if email != "" {
			tmpl.EmailAddresses = []string{email}
		}
		der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			return // not encodable (invalid UTF-8...)
		}
		csr, err := ParseCSR(der)
		if err != nil {
			return
		}
		for _, p := range profiles {
			res, err := p.Apply(input(sm2ca, csr))
			if err != nil {
				continue
			}
			res.Template.SerialNumber = new(big.Int).SetBytes([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
			linted, err := lint.Precheck(res.Template, sm2ca.cert, res.PublicKey, res.Expect)
			if err != nil {
				t.Fatalf("%s accepted names it cannot sign (%q %q %q %q): %v", p.Name, cn, ou, dns, email, err)
			}
			if errs := lint.Errors(linted.Findings); len(errs) > 0 {
				t.Fatalf("%s accepted names that lint with errors (%q %q %q %q): %v", p.Name, cn, ou, dns, email, errs)
			}
		}
	})
}
