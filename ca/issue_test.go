package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

// goCSR makes a P-256 request with crypto/x509.
func goCSR(t *testing.T, cn string, dns ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func csrPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

var personRecord = map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}

const issuedOK = "SELECT COUNT(*) FROM audit_log WHERE action = 'ca.certificate.issue' AND outcome = 'success'"

// TestIssue runs the issuance scenarios against one node with the CA
// service: real HTTPS API, real SQLite, real software keystore, OpenSSL as
// the relying party.
func TestIssue(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()

	t.Run("A-01 SM2 request from OpenSSL, person-sign", func(t *testing.T) {
		key := filepath.Join(dir, "sm2.key")
		openssl(t, "genpkey", "-algorithm", "SM2", "-out", key)
		csr := filepath.Join(dir, "sm2.csr")
		openssl(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678",
			"-utf8", "-subj", "/CN=张三/O=测试局", "-out", csr)
		status, out, raw := tn.issue("sm2-issuing", IssueRequest{CSR: readFile(t, csr), Profile: "person-sign", Record: personRecord}, "")
		if status != http.StatusCreated {
			t.Fatalf("status %d: %s", status, raw)
		}
		if len(out.Chain) != 2 {
			t.Fatalf("chain has %d certificates, want issuing and root", len(out.Chain))
		}
		leaf := writeFile(t, dir, "leaf.pem", out.Certificate)
		issuing := writeFile(t, dir, "issuing.pem", out.Chain[0])
		root := writeFile(t, dir, "root.pem", out.Chain[1])
		if got := openssl(t, "verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", issuing, leaf); !strings.Contains(got, ": OK") {
			t.Fatalf("openssl verify leaf: %s", got)
		}
		if got := openssl(t, "verify", "-vfyopt", "distid:1234567812345678", "-CAfile", root, issuing); !strings.Contains(got, ": OK") {
			t.Fatalf("openssl verify issuing: %s", got)
		}
		text := openssl(t, "x509", "-in", leaf, "-noout", "-text")
		for _, want := range []string{"SM2-with-SM3", "Version: 3 (0x2)"} {
			if !strings.Contains(text, want) {
				t.Errorf("openssl x509 -text lacks %q", want)
			}
		}
		if subj := openssl(t, "x509", "-in", leaf, "-noout", "-subject", "-nameopt", "utf8"); !strings.Contains(subj, "张三") {
			t.Errorf("subject %q lacks 张三", subj)
		}
		cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		if errs := lint.Errors(lint.Certificate(cert, tn.svc.cas["sm2-issuing"].cert)); len(errs) > 0 {
			t.Errorf("issued certificate has lint errors: %v", errs)
		}
		if cert.SerialNumber.Sign() <= 0 || len(cert.SerialNumber.Bytes()) > 20 {
			t.Errorf("serial %x: want positive, at most 20 octets", cert.SerialNumber)
		}
		if got := serialHex(cert.SerialNumber); got != out.Serial {
			t.Errorf("answered serial %s, certificate has %s", out.Serial, got)
		}
		status, body := tn.do("GET", "/api/v1/ca/sm2-issuing/certificates/"+strings.ToUpper(out.Serial), "ra", nil, nil)
		if status != http.StatusOK {
			t.Fatalf("GET certificate: %d %s", status, body)
		}
		var got CertificateResponse
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Certificate != out.Certificate || got.Status != "good" || got.Serial != out.Serial {
			t.Errorf("GET answered %+v, want the issued certificate, status good", got)
		}
		if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.certificate.issue' AND outcome = 'success' AND object = ?",
			"cert/sm2-issuing/"+out.Serial); n != 1 {
			t.Errorf("%d success audit records for the certificate, want 1", n)
		}
		// The audit record names the profile's version too: the name
		// alone does not say which rules made the certificate.
		var details string
		if err := tn.db().QueryRow(context.Background(), "SELECT details FROM audit_log WHERE action = 'ca.certificate.issue' AND object = ?",
			"cert/sm2-issuing/"+out.Serial).Scan(&details); err != nil {
			t.Fatal(err)
		}
		want := `"profile_version":"` + profile.Builtin()["person-sign"].Version + `"`
		if !strings.Contains(details, want) {
			t.Errorf("audit details %s lack %s", details, want)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'issued' AND issuer_id = 'sm2-issuing' AND serial = ?", out.Serial); n != 1 {
			t.Errorf("%d outbox events, want 1", n)
		}
	})

	t.Run("ECDSA request from Go, server-tls", func(t *testing.T) {
		// server-tls refuses internal names such as localhost (BR
		// §7.1.2.7.12), so the test uses a public-looking name.
		csr := csrPEM(goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn"))
		status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csr, Profile: "server-tls"}, "")
		if status != http.StatusCreated {
			t.Fatalf("status %d: %s", status, raw)
		}
		leaf := writeFile(t, dir, "ec-leaf.pem", out.Certificate)
		issuing := writeFile(t, dir, "ec-issuing.pem", out.Chain[0])
		root := writeFile(t, dir, "ec-root.pem", out.Chain[1])
		if got := openssl(t, "verify", "-CAfile", root, "-untrusted", issuing, leaf); !strings.Contains(got, ": OK") {
			t.Fatalf("openssl verify: %s", got)
		}
		cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		if errs := lint.Errors(lint.Certificate(cert, tn.svc.cas["ecdsa-issuing"].cert)); len(errs) > 0 {
			t.Errorf("issued certificate has lint errors: %v", errs)
		}
		if text := openssl(t, "x509", "-in", leaf, "-noout", "-text"); !strings.Contains(text, "ecdsa-with-SHA256") || !strings.Contains(text, "DNS:portal.example.gov.cn") {
			t.Errorf("openssl x509 -text: %s", text)
		}
	})

	t.Run("A-02 tampered request signature", func(t *testing.T) {
		der := goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn")
		der[len(der)-1] ^= 0x01 // last octet of the signature BIT STRING
		before, rows := tn.count(issuedOK), tn.count("SELECT COUNT(*) FROM ca_certificates")
		status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(der), Profile: "server-tls"}, "")
		if status < 400 || status >= 500 || !strings.Contains(string(raw), "proof of possession") {
			t.Fatalf("status %d: %s; want a 4xx problem about the proof of possession", status, raw)
		}
		if after := tn.count(issuedOK); after != before {
			t.Errorf("success issue records went from %d to %d", before, after)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_certificates"); n != rows {
			t.Errorf("ca_certificates went from %d to %d rows", rows, n)
		}
	})

	t.Run("A-04 weak keys refused", func(t *testing.T) {
		for _, tc := range []struct{ name, opt string }{
			{"rsa-1024", "RSA"},
			{"secp256k1", "EC"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				key := filepath.Join(dir, tc.name+".key")
				if tc.opt == "RSA" {
					openssl(t, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", key)
				} else {
					openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-out", key)
				}
				csr := filepath.Join(dir, tc.name+".csr")
				openssl(t, "req", "-new", "-key", key, "-subj", "/CN=portal.example.gov.cn", "-out", csr)
				before := tn.count(issuedOK)
				status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: readFile(t, csr), Profile: "server-tls"}, "")
				if status < 400 || status >= 500 || !strings.Contains(string(raw), "public key refused") {
					t.Fatalf("status %d: %s; want a 4xx key-policy problem", status, raw)
				}
				if after := tn.count(issuedOK); after != before {
					t.Errorf("success issue records went from %d to %d", before, after)
				}
			})
		}
	})

	t.Run("refusals", func(t *testing.T) {
		csr := csrPEM(goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn"))
		for _, tc := range []struct {
			name, ca, profile string
			want              int
		}{
			{"unknown CA", "nope", "server-tls", http.StatusNotFound},
			{"unknown profile", "ecdsa-issuing", "nope", http.StatusBadRequest},
			{"root issues no end-entity", "ecdsa-root", "server-tls", http.StatusUnprocessableEntity},
			{"issuing CA makes no sub-CA", "ecdsa-issuing", "sub-ca", http.StatusUnprocessableEntity},
			{"SM2 CA refuses ECDSA key", "sm2-issuing", "server-tls", http.StatusUnprocessableEntity},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, _, raw := tn.issue(tc.ca, IssueRequest{CSR: csr, Profile: tc.profile}, "")
				if status != tc.want {
					t.Fatalf("status %d: %s; want %d", status, raw, tc.want)
				}
			})
		}
	})

	t.Run("authz", func(t *testing.T) {
		csr := csrPEM(goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn"))
		for _, tc := range []struct {
			role string
			want int
		}{{"auditor", http.StatusForbidden}, {"", http.StatusUnauthorized}} {
			status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/certificates", tc.role, IssueRequest{CSR: csr, Profile: "server-tls"}, nil)
			if status != tc.want {
				t.Errorf("role %q: status %d: %s; want %d", tc.role, status, raw, tc.want)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		status, raw := tn.do("GET", "/api/v1/ca", "ra", nil, nil)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, raw)
		}
		var out struct{ CAs []CAInfo }
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range out.CAs {
			ids = append(ids, c.ID+"/"+c.Algorithm+"/"+c.Status)
		}
		want := "sm2-root/sm2/active sm2-issuing/sm2/active ecdsa-root/ecdsa-p256/active ecdsa-issuing/ecdsa-p256/active"
		if got := strings.Join(ids, " "); got != want {
			t.Errorf("CAs %q, want %q", got, want)
		}
	})

	t.Run("public CA certificate", func(t *testing.T) {
		resp, err := http.Get("http://" + tn.n.Addresses().HTTP + "/pki/sm2-root.crt")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-cert" {
			t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(der, tn.svc.cas["sm2-issuing"].chain[1]) || !cert.IsCA || cert.MaxPathLen != 1 {
			t.Errorf("served root differs from the chain's root or is not a CA with pathlen 1")
		}
		issuing := tn.svc.cas["sm2-issuing"].cert
		if !issuing.IsCA || issuing.MaxPathLen != 0 || !issuing.MaxPathLenZero {
			t.Errorf("sm2-issuing: want a CA with pathLenConstraint 0")
		}
		r2, err := http.Get("http://" + tn.n.Addresses().HTTP + "/pki/nope.crt")
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != http.StatusNotFound {
			t.Errorf("unknown CA: status %d, want 404", r2.StatusCode)
		}
	})
}

// TestIdempotency: the same request with the same Idempotency-Key makes
// one certificate, also across a restart; a different request with the key
// is a conflict (ACCEPTANCE.md B-03). The CA hierarchy survives the restart
// unchanged.
func TestIdempotency(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	req := IssueRequest{CSR: csrPEM(goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn")), Profile: "server-tls"}
	const key = "order-4711"
	var serial string
	for i := range 5 {
		status, out, raw := tn.issue("ecdsa-issuing", req, key)
		want := http.StatusOK
		if i == 0 {
			want = http.StatusCreated
			serial = out.Serial
		}
		if status != want {
			t.Fatalf("attempt %d: status %d: %s; want %d", i, status, raw, want)
		}
		if out.Serial != serial {
			t.Fatalf("attempt %d: serial %s, want %s", i, out.Serial, serial)
		}
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE idempotency_key = ?", key); n != 1 {
		t.Fatalf("%d certificates for the key, want 1", n)
	}
	other := IssueRequest{CSR: csrPEM(goCSR(t, "www.example.gov.cn", "www.example.gov.cn")), Profile: "server-tls"}
	if status, _, raw := tn.issue("ecdsa-issuing", other, key); status != http.StatusConflict {
		t.Fatalf("different request, same key: status %d: %s; want 409", status, raw)
	}
	roots := map[string][]byte{}
	for id, a := range tn.svc.cas {
		roots[id] = a.cert.Raw
	}

	tn.stop()
	tn = startNode(t, dir)
	status, out, raw := tn.issue("ecdsa-issuing", req, key)
	if status != http.StatusOK || out.Serial != serial {
		t.Fatalf("after restart: status %d: %s; want 200 with serial %s", status, raw, serial)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE idempotency_key = ?", key); n != 1 {
		t.Fatalf("after restart: %d certificates for the key, want 1", n)
	}
	for id, a := range tn.svc.cas {
		if !bytes.Equal(roots[id], a.cert.Raw) {
			t.Errorf("CA %s changed across the restart", id)
		}
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_authorities"); n != 4 {
		t.Errorf("%d CAs, want 4", n)
	}
	if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.authority.create'"); n != 4 {
		t.Errorf("%d CA creation records, want 4", n)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInternalProfilesRefused: the profiles whose certificates the platform
// itself trusts (a delegated OCSP responder with ocsp-nocheck, a
// time-stamping unit, the seal maker, a node's listener with localhost) are
// refused through the API to every caller, with a policy problem and
// nothing stored; the platform's services still obtain them through
// IssueFor.
func TestInternalProfilesRefused(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(tmpl *smx509.CertificateRequest) []byte {
		der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	for _, tc := range []struct {
		profile string
		csr     []byte
		record  map[string]string
	}{
		{"ocsp-signer", mk(&smx509.CertificateRequest{Subject: pkix.Name{CommonName: "responder"}}), nil},
		{"tsa", mk(&smx509.CertificateRequest{Subject: pkix.Name{CommonName: "time-stamping unit"}}), nil},
		{"seal-maker", mk(&smx509.CertificateRequest{}), map[string]string{"CN": "maker", "O": "测试局"}},
		{"node-tls", mk(&smx509.CertificateRequest{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}), nil},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			before := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE profile = ?", tc.profile)
			status, hdr, raw := tn.doFull("POST", "/api/v1/ca/ecdsa-issuing/certificates", "ra",
				IssueRequest{CSR: csrPEM(tc.csr), Profile: tc.profile, Record: tc.record}, nil)
			if status != http.StatusUnprocessableEntity || hdr.Get("Content-Type") != "application/problem+json" ||
				!strings.Contains(string(raw), "platform's own services") {
				t.Fatalf("status %d %q: %.300s; want 422 problem+json naming the platform's own services", status, hdr.Get("Content-Type"), raw)
			}
			if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE profile = ?", tc.profile); n != before {
				t.Errorf("%d %s certificates stored, want %d", n, tc.profile, before)
			}
			der, chain, err := tn.svc.IssueFor(context.Background(), "ecdsa-issuing", tc.profile, tc.csr, tc.record, "service/test")
			if err != nil {
				t.Fatalf("IssueFor: %v", err)
			}
			if len(der) == 0 || len(chain) != 2 {
				t.Errorf("IssueFor answered %d octets and a chain of %d", len(der), len(chain))
			}
		})
	}
}

// TestIssueCSRFraming: the csr field is one PEM CERTIFICATE REQUEST block.
// Two blocks, trailing text or text before the block get 400 problem+json
// and nothing is issued (before, the first block was certified and the rest
// ignored).
func TestIssueCSRFraming(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	a := csrPEM(goCSR(t, "a.example.gov.cn", "a.example.gov.cn"))
	b := csrPEM(goCSR(t, "b.example.gov.cn", "b.example.gov.cn"))
	for _, tc := range []struct{ name, csr, msg string }{
		{"two blocks", a + b, "after the PEM CERTIFICATE REQUEST block"},
		{"two blocks and junk", a + b + "trailing junk", "after the PEM CERTIFICATE REQUEST block"},
		{"trailing junk", a + "trailing junk", "after the PEM CERTIFICATE REQUEST block"},
		{"text before", "my request:\n" + a, "before the PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tn.count("SELECT COUNT(*) FROM ca_certificates")
			status, hdr, raw := tn.doFull("POST", "/api/v1/ca/ecdsa-issuing/certificates", "ra",
				IssueRequest{CSR: tc.csr, Profile: "server-tls"}, nil)
			if status != http.StatusBadRequest || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(raw), tc.msg) {
				t.Fatalf("status %d %q: %.300s; want 400 problem+json saying %q", status, hdr.Get("Content-Type"), raw, tc.msg)
			}
			if n := tn.count("SELECT COUNT(*) FROM ca_certificates"); n != before {
				t.Errorf("%d certificates stored, want %d", n, before)
			}
		})
	}
	if status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: "\n  " + a + "\n\n", Profile: "server-tls"}, ""); status != http.StatusCreated {
		t.Fatalf("one block in whitespace: %d %s", status, raw)
	}
}

// TestConstrainingParents: the issue paths hand Apply the CAs above the
// issuer that carry nameConstraints (an imported CA under a constrained
// offline root), so their constraints bind what it issues; unconstrained
// ones are not parsed.
func TestConstrainingParents(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(cn string, permitted ...string) []byte {
		tmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			BasicConstraintsValid: true, IsCA: true, KeyUsage: smx509.KeyUsageCertSign, PermittedDNSDomains: permitted, PermittedDNSDomainsCritical: len(permitted) > 0}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	own, constrained, root := mk("issuing", "example.gov.cn"), mk("constrained", "gov.cn"), mk("root")
	got, err := constrainingParents(&authority{id: "x", chain: [][]byte{own, constrained, root}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Subject.CommonName != "constrained" {
		t.Fatalf("got %d certificates, want the constrained parent only", len(got))
	}
	if got, err := constrainingParents(&authority{id: "x", chain: [][]byte{own, root}}); err != nil || got != nil {
		t.Fatalf("%v, %v; want none", got, err)
	}
}

// TestIdempotencyScope: an Idempotency-Key is the requester's own, so
// another organisation's request with the same key neither blocks nor
// learns of the first (no 409); and it names one request across a
// rollover, so a retry after it answers the certificate the previous
// generation issued, with that generation's chain, instead of issuing a
// second one.
func TestIdempotencyScope(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("ra-b", "org-b", policy.Confidential, policy.RoleRA)
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	reqA := IssueRequest{CSR: csrPEM(goCSR(t, "a.example.gov.cn", "a.example.gov.cn")), Profile: "server-tls"}
	reqB := IssueRequest{CSR: csrPEM(goCSR(t, "b.example.gov.cn", "b.example.gov.cn")), Profile: "server-tls"}
	hdr := map[string]string{"Idempotency-Key": "order-1"}
	if status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/certificates", "ra-b", reqB, hdr); status != http.StatusCreated {
		t.Fatalf("org B: %d %s", status, raw)
	}
	status, out, raw := tn.issue("ecdsa-issuing", reqA, "order-1")
	if status != http.StatusCreated {
		t.Fatalf("org A with the key org B used: %d %s; want 201", status, raw)
	}
	if status, again, raw := tn.issue("ecdsa-issuing", reqA, "order-1"); status != http.StatusOK || again.Serial != out.Serial {
		t.Fatalf("org A again: %d %s; want 200 with %s", status, raw, out.Serial)
	}

	status, first, raw := tn.issue("ecdsa-issuing", reqA, "order-2")
	if status != http.StatusCreated {
		t.Fatalf("order-2: %d %s", status, raw)
	}
	if status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/rollover", "operator", map[string]any{}, nil); status != http.StatusCreated {
		t.Fatalf("rollover: %d %s", status, raw)
	}
	status, retry, raw := tn.issue("ecdsa-issuing", reqA, "order-2")
	if status != http.StatusOK || retry.Serial != first.Serial || retry.Chain[0] != first.Chain[0] {
		t.Fatalf("retry after the rollover: %d %.300s; want 200 with %s and the first generation's chain", status, raw, first.Serial)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE idempotency_key = 'order-2'"); n != 1 {
		t.Errorf("%d certificates for order-2, want 1", n)
	}
	// A new request under the key after the rollover is still a conflict.
	if status, _, raw := tn.issue("ecdsa-issuing", reqB, "order-2"); status != http.StatusConflict {
		t.Errorf("different request, same key, after the rollover: %d %s; want 409", status, raw)
	}
}
