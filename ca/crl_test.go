package ca

import (
	"bytes"
	"errors"
	"math/big"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/ca/ocsp"
)

// fetchCRL gets /pki/{ca}.crl over plain HTTP and verifies it against the
// CA certificate with ca/crl.Verify and crl.Lint.
func (tn *testNode) fetchCRL(t *testing.T, ca string) ([]byte, *smx509.RevocationList) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+tn.n.Addresses().HTTP+"/pki/"+ca+".crl", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, der := tn.send(req)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("%s.crl: HTTP %d, type %q: %s", ca, resp.StatusCode, resp.Header.Get("Content-Type"), der)
	}
	issuer := tn.svc.cas[ca].cert
	rl, err := crl.Verify(der, issuer)
	if err != nil {
		t.Fatalf("%s.crl: %v", ca, err)
	}
	if err := crl.Lint(rl, issuer); err != nil {
		t.Errorf("%s.crl lint: %v", ca, err)
	}
	m := regexp.MustCompile(`max-age=(\d+)`).FindStringSubmatch(resp.Header.Get("Cache-Control"))
	if m == nil {
		t.Fatalf("Cache-Control %q has no max-age", resp.Header.Get("Cache-Control"))
	}
	if age, _ := strconv.Atoi(m[1]); age <= 0 || time.Duration(age)*time.Second > time.Until(rl.NextUpdate) {
		t.Errorf("max-age %d s, nextUpdate %v", age, rl.NextUpdate)
	}
	return der, rl
}

// TestCRL covers ACCEPTANCE.md C-01 and C-03 for the CA's full CRLs: every
// CA (roots too) has one from the start; each revocation publishes a new
// CRL, with a strictly greater number, listing the serial once with its
// revocation date and reason (omitted for unspecified); OpenSSL reads it.
func TestCRL(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()

	for _, sp := range hierarchies {
		_, rl := tn.fetchCRL(t, sp.id)
		if len(rl.RevokedCertificateEntries) != 0 || rl.Number.Sign() <= 0 {
			t.Errorf("%s: first CRL number %v with %d entries", sp.id, rl.Number, len(rl.RevokedCertificateEntries))
		}
		if d := rl.NextUpdate.Sub(rl.ThisUpdate); d != crlValidity {
			t.Errorf("%s: validity %v, want %v", sp.id, d, crlValidity)
		}
	}

	for _, ca := range []string{"ecdsa-issuing", "sm2-issuing"} {
		t.Run(ca, func(t *testing.T) {
			_, before := tn.fetchCRL(t, ca)
			var serials []string
			want := map[string]int{}
			// C-01 asks for every reason; SM2 keys come from OpenSSL and
			// cost more, so the SM2 CA gets two.
			reasons := []string{"keyCompromise", "unspecified"}
			if ca == "ecdsa-issuing" {
				reasons = append(reasons, "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn")
			}
			for _, reason := range reasons {
				var serial string
				if ca == "ecdsa-issuing" {
					serial = tn.issueECDSA(t).Serial
				} else {
					serial = tn.issueSM2(t, dir).Serial
				}
				if status, raw := tn.revoke(ca, "ra", serial, reason); status != http.StatusOK {
					t.Fatalf("revoke: %d %s", status, raw)
				}
				serials = append(serials, serial)
				want[serial] = reasonCodes[reason]
			}
			der, rl := tn.fetchCRL(t, ca)
			if rl.Number.Cmp(new(big.Int).Add(before.Number, big.NewInt(int64(len(reasons))))) != 0 {
				t.Errorf("CRL number %v after %d revocations, was %v", rl.Number, len(reasons), before.Number)
			}
			if len(rl.RevokedCertificateEntries) != len(serials) {
				t.Fatalf("%d entries, want %d", len(rl.RevokedCertificateEntries), len(serials))
			}
			for _, e := range rl.RevokedCertificateEntries {
				serial := serialHex(e.SerialNumber)
				code, ok := want[serial]
				if !ok {
					t.Errorf("unexpected entry %s", serial)
					continue
				}
				delete(want, serial)
				c, err := certBySerial(t.Context(), tn.db(), ca, serial)
				if err != nil {
					t.Fatal(err)
				}
				if !e.RevocationTime.Equal(c.revokedAt) || e.ReasonCode != code {
					t.Errorf("entry %s: %v reason %d; want %v reason %d", serial, e.RevocationTime, e.ReasonCode, c.revokedAt, code)
				}
			}
			p := writeFile(t, dir, ca+".crl", string(der))
			text := openssl(t, "crl", "-inform", "DER", "-in", p, "-noout", "-text")
			for _, s := range serials {
				if !strings.Contains(text, "Serial Number: "+strings.ToUpper(s)) {
					t.Errorf("openssl crl -text lacks serial %s:\n%s", s, text)
				}
			}
			if strings.Count(text, "Key Compromise") != 1 || !strings.Contains(text, "X509v3 CRL Number") {
				t.Errorf("openssl crl -text: want one Key Compromise reason and a CRL number:\n%s", text)
			}
			if ca == "sm2-issuing" {
				issuing := writeFile(t, dir, "sm2-issuing.pem", pemCert(tn.svc.cas[ca].cert.Raw))
				if out := sm2OpenSSLVerify(t, dir, rl.RawTBSRevocationList, rl.Signature, issuing); !strings.Contains(out, "Signature Verified Successfully") {
					t.Errorf("SM2 detached check: %s", out)
				}
			}
			if ca == "ecdsa-issuing" {
				issuing := writeFile(t, dir, "ec-issuing.pem", pemCert(tn.svc.cas[ca].cert.Raw))
				if out := openssl(t, "crl", "-inform", "DER", "-in", p, "-noout", "-CAfile", issuing); !strings.Contains(out, "verify OK") {
					t.Errorf("openssl crl verify: %s", out)
				}
			}
		})
	}

	t.Run("stored CRLs only go up", func(t *testing.T) {
		a := tn.svc.cas["ecdsa-root"]
		first, err := latestCRL(t.Context(), tn.db(), a.id)
		if err != nil {
			t.Fatal(err)
		}
		next, err := tn.svc.generateCRL(t.Context(), a)
		if err != nil || next.number != first.number+1 {
			t.Fatalf("generate: %+v, %v; want number %d", next, err, first.number+1)
		}
		// A counter moved back (a restored backup) must not publish a
		// number already used.
		if _, err := tn.db().Exec(t.Context(), "UPDATE ca_crl_numbers SET last = 0 WHERE issuer_id = ?", a.id); err != nil {
			t.Fatal(err)
		}
		if _, err := tn.svc.generateCRL(t.Context(), a); !errors.Is(err, crl.ErrNumberRegression) {
			t.Fatalf("generate after the counter went back: %v, want ErrNumberRegression", err)
		}
		got, err := latestCRL(t.Context(), tn.db(), a.id)
		if err != nil || !bytes.Equal(got.der, next.der) {
			t.Fatalf("served CRL changed after a refused generation (%v)", err)
		}
	})
}

// issueSM2 issues a person-sign certificate from sm2-issuing for a key made
// by OpenSSL.
func (tn *testNode) issueSM2(t *testing.T, dir string) *IssueResponse {
	t.Helper()
	key := filepath.Join(dir, "sm2.key")
	openssl(t, "genpkey", "-algorithm", "SM2", "-out", key)
	csr := filepath.Join(dir, "sm2.csr")
	openssl(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-utf8", "-subj", "/CN=张三/O=测试局", "-out", csr)
	status, out, raw := tn.issue("sm2-issuing", IssueRequest{CSR: readFile(t, csr), Profile: "person-sign", Record: personRecord}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue: %d %s", status, raw)
	}
	return out
}

// sm2OpenSSLVerify is the detached SM2 check of ACCEPTANCE.md C-02/C-03
// (INTEROP.md §2): OpenSSL 3.0's crl and ocsp commands verify SM2 with an
// empty user ID, so the signed bytes and the signature, cut out by Go, are
// verified by `openssl pkeyutl` with SM3 and the default user ID.
func sm2OpenSSLVerify(t *testing.T, dir string, tbs, sig []byte, issuerFile string) string {
	t.Helper()
	tbsFile := writeFile(t, dir, "tbs.der", string(tbs))
	sigFile := writeFile(t, dir, "sig.der", string(sig))
	return openssl(t, "pkeyutl", "-verify", "-certin", "-inkey", issuerFile, "-rawin", "-digest", "sm3",
		"-pkeyopt", "distid:1234567812345678", "-in", tbsFile, "-sigfile", sigFile)
}

// TestRevocationSurvivesRestart: after a restart the revocation is in OCSP
// and on the CRL, and the CRL numbers go on from where they were (the
// counter row, not memory, gives them out).
func TestRevocationSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	out := tn.issueECDSA(t)
	if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	_, before := tn.fetchCRL(t, "ecdsa-issuing")
	tn.stop()

	tn = startNode(t, dir)
	cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if r := tn.query(t, "ecdsa-issuing", cert.SerialNumber, nil); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonSuperseded {
		t.Errorf("OCSP after restart: %v reason %d", r.Status, r.RevocationReason)
	}
	next, err := tn.svc.generateCRL(t.Context(), tn.svc.cas["ecdsa-issuing"])
	if err != nil {
		t.Fatal(err)
	}
	if next.number != before.Number.Int64()+1 {
		t.Errorf("CRL number %d after restart, last was %v", next.number, before.Number)
	}
	_, rl := tn.fetchCRL(t, "ecdsa-issuing")
	if len(rl.RevokedCertificateEntries) != 1 || serialHex(rl.RevokedCertificateEntries[0].SerialNumber) != out.Serial {
		t.Errorf("CRL after restart lists %d entries, want the revoked serial", len(rl.RevokedCertificateEntries))
	}
}
