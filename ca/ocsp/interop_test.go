package ocsp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"

	"github.com/govtrust/govtrust/internal/testenv"
)

// openssl runs OpenSSL in dir and returns its combined output.
func openssl(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.LookPath(t, "openssl"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// digestFlag is the openssl ocsp option that hashes the following -cert's
// CertID with h (it must come before -cert).
func digestFlag(h HashAlg) string {
	return map[HashAlg]string{SHA1: "-sha1", SHA256: "-sha256", SM3: "-sm3"}[h]
}

// TestOpenSSLRequests: requests made by openssl ocsp parse, name the right
// issuer and serial, and equal byte for byte what CreateRequest writes.
func TestOpenSSLRequests(t *testing.T) {
	for _, alg := range []string{"SM2", "ECDSA"} {
		p := pkiFor(t, alg)
		dir := t.TempDir()
		p.writeFiles(t, dir)
		for _, h := range []HashAlg{SHA1, SHA256, SM3} {
			for _, nonce := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/nonce=%v", alg, h, nonce), func(t *testing.T) {
					nonceFlag := "-no_nonce"
					if nonce {
						nonceFlag = "-nonce"
					}
					out, err := openssl(t, dir, "ocsp", "-issuer", "ca.pem", digestFlag(h), "-cert", "leaf.pem", "-reqout", "req.der", nonceFlag)
					if err != nil {
						t.Fatalf("openssl ocsp: %v\n%s", err, out)
					}
					der, err := os.ReadFile(filepath.Join(dir, "req.der"))
					if err != nil {
						t.Fatal(err)
					}
					r, err := ParseRequest(der)
					if err != nil {
						t.Fatalf("ParseRequest(OpenSSL request): %v", err)
					}
					if r.HashAlgorithm != h || r.SerialNumber.Cmp(p.leaf.SerialNumber) != 0 || !r.MatchesIssuer(p.ca) {
						t.Fatalf("read %v serial %x matches=%v", r.HashAlgorithm, r.SerialNumber, r.MatchesIssuer(p.ca))
					}
					if nonce {
						if len(r.Nonce) != 16 { // OpenSSL's default nonce length
							t.Fatalf("nonce %x, want 16 octets", r.Nonce)
						}
					} else if r.Nonce != nil {
						t.Fatalf("nonce %x in a -no_nonce request", r.Nonce)
					}
					ours, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: h, Nonce: r.Nonce})
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(ours, der) {
						t.Errorf("CreateRequest differs from OpenSSL:\n ours %x\n ossl %x", ours, der)
					}
				})
			}
		}
	}
}

var (
	rxResponseVerifyOK = regexp.MustCompile(`(?m)^Response verify OK$`)
	rxReason           = regexp.MustCompile(`(?m)^\s*Reason: keyCompromise$`)
)

// responseCases are the statuses the OpenSSL tests send.
var responseCases = []struct {
	name   string
	status Status
	reason int
}{
	{"good", Good, NoReason},
	{"revoked", Revoked, ReasonKeyCompromise},
	{"revoked without reason", Revoked, NoReason},
	{"unknown", Unknown, NoReason},
}

func (p *testPKI) responseFor(t *testing.T, h HashAlg, status Status, reason int, delegated bool, nonce []byte) []byte {
	t.Helper()
	now := time.Now()
	tmpl := p.baseTemplate(now)
	tmpl.HashAlgorithm, tmpl.Status, tmpl.Nonce = h, status, nonce
	if status == Revoked {
		tmpl.RevokedAt, tmpl.RevocationReason = now.Add(-2*time.Hour), reason
	}
	responder, key := p.signer, p.signerKey
	if !delegated {
		responder, key = p.ca, p.caKey
	}
	der, err := CreateResponse(p.ca, responder, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestOpenSSLVerifiesECDSAResponses: openssl ocsp verifies ECDSA responses
// (delegated signer and CA-signed) against the CA and reads the status.
func TestOpenSSLVerifiesECDSAResponses(t *testing.T) {
	p := pkiFor(t, "ECDSA")
	dir := t.TempDir()
	p.writeFiles(t, dir)
	for _, delegated := range []bool{true, false} {
		for _, h := range []HashAlg{SHA1, SHA256, SM3} {
			for _, c := range responseCases {
				t.Run(fmt.Sprintf("delegated=%v/%v/%s", delegated, h, c.name), func(t *testing.T) {
					writeFile(t, dir, "resp.der", p.responseFor(t, h, c.status, c.reason, delegated, nil))
					out, err := openssl(t, dir, "ocsp", "-respin", "resp.der", "-issuer", "ca.pem", digestFlag(h), "-cert", "leaf.pem",
						"-CAfile", "ca.pem", "-no_nonce")
					if err != nil {
						t.Fatalf("openssl ocsp: %v\n%s", err, out)
					}
					if !rxResponseVerifyOK.MatchString(out) {
						t.Errorf("no \"Response verify OK\":\n%s", out)
					}
					if !strings.Contains(out, "leaf.pem: "+c.status.String()+"\n") {
						t.Errorf("status %v not printed:\n%s", c.status, out)
					}
					if rxReason.MatchString(out) != (c.reason == ReasonKeyCompromise) {
						t.Errorf("reason shown wrongly (want %d):\n%s", c.reason, out)
					}
					if strings.Contains(out, "WARNING") {
						t.Errorf("OpenSSL warns:\n%s", out)
					}
				})
			}
		}
	}

	// Controls: the same command fails for a response it must not accept.
	other := pkiFor(t, "SM2")
	writePEM(t, filepath.Join(dir, "other-ca.pem"), "CERTIFICATE", other.ca.Raw)
	good := p.responseFor(t, SHA1, Good, NoReason, true, nil)
	r, err := ParseResponse(good, p.ca)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(r.TBSResponseData)
	tampered[len(tampered)-3] ^= 1 // inside nextUpdate
	for name, c := range map[string]struct {
		resp   []byte
		cafile string
	}{
		"untrusted CA":   {good, "other-ca.pem"},
		"tampered TBS":   {assemble(tampered, r.SignatureAlgorithmOID, nil, r.Signature, p.signer), "ca.pem"},
		"no signer sent": {assemble(r.TBSResponseData, r.SignatureAlgorithmOID, nil, r.Signature), "ca.pem"},
	} {
		t.Run("control/"+name, func(t *testing.T) {
			writeFile(t, dir, "bad.der", c.resp)
			out, _ := openssl(t, dir, "ocsp", "-respin", "bad.der", "-issuer", "ca.pem", "-cert", "leaf.pem", "-CAfile", c.cafile, "-no_nonce")
			if rxResponseVerifyOK.MatchString(out) || !strings.Contains(out, "Response Verify Failure") {
				t.Errorf("OpenSSL accepted it:\n%s", out)
			}
		})
	}
}

// TestOpenSSLNonce: a nonce from an OpenSSL request is echoed and OpenSSL's
// nonce check (OCSP_check_nonce) passes; without the echo or with another
// nonce it complains.
func TestOpenSSLNonce(t *testing.T) {
	p := pkiFor(t, "ECDSA")
	dir := t.TempDir()
	p.writeFiles(t, dir)
	out, err := openssl(t, dir, "ocsp", "-issuer", "ca.pem", "-cert", "leaf.pem", "-reqout", "req.der", "-nonce")
	if err != nil {
		t.Fatalf("openssl ocsp: %v\n%s", err, out)
	}
	der, _ := os.ReadFile(filepath.Join(dir, "req.der"))
	req, err := ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		nonce []byte
		want  string // in the output; "" = no nonce complaint
	}{
		{"echoed", req.Nonce, ""},
		{"absent", nil, "WARNING: no nonce in response"},
		{"other", bytes.Repeat([]byte{1}, 16), "Nonce Verify error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeFile(t, dir, "resp.der", p.responseFor(t, req.HashAlgorithm, Good, NoReason, true, c.nonce))
			// With -reqin (and no -cert) OpenSSL checks the response's nonce
			// against the request's.
			out, _ := openssl(t, dir, "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-CAfile", "ca.pem", "-resp_text")
			if !strings.Contains(out, "Cert Status: good") {
				t.Errorf("status not shown:\n%s", out)
			}
			if c.want == "" {
				if !rxResponseVerifyOK.MatchString(out) || strings.Contains(out, "nonce") || strings.Contains(out, "Nonce Verify") {
					t.Errorf("OpenSSL rejects the echoed nonce:\n%s", out)
				}
				if !strings.Contains(strings.ToUpper(out), "0410"+strings.ToUpper(hex.EncodeToString(req.Nonce))) {
					t.Errorf("nonce not shown:\n%s", out)
				}
			} else if !strings.Contains(out, c.want) {
				t.Errorf("want %q:\n%s", c.want, out)
			}
		})
	}
}

// asn1parseLine matches "  26:d=3  hl=4 l= 731 prim: OCTET STRING ...".
var asn1parseLine = regexp.MustCompile(`^\s*(\d+):d=(\d+)\s+hl=\s*\d+\s+l=\s*\d+\s+(?:prim|cons):\s*(.*?)\s*(?:\[HEX DUMP\].*|:.*)?$`)

type asn1Item struct {
	off, depth int
	typ        string
}

func parseASN1Lines(t *testing.T, out string) []asn1Item {
	t.Helper()
	var items []asn1Item
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m := asn1parseLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected asn1parse line %q", l)
		}
		off, _ := strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[2])
		items = append(items, asn1Item{off, d, strings.TrimSpace(m[3])})
	}
	return items
}

// sm2DetachedCheck is ACCEPTANCE.md's "SM2 detached check" for an OCSP
// response: openssl asn1parse -strparse drills into ResponseBytes.response
// and writes out tbsResponseData and the signature, and openssl pkeyutl
// verifies them with SM3 and distid:1234567812345678. It returns the
// pkeyutl output, the tbsResponseData OpenSSL extracted, and pkeyutl's error.
func sm2DetachedCheck(t *testing.T, dir, resp, pubFile string) (string, []byte, error) {
	t.Helper()
	out, err := openssl(t, dir, "asn1parse", "-inform", "DER", "-in", resp)
	if err != nil {
		t.Fatalf("asn1parse: %v\n%s", err, out)
	}
	basic := -1
	for _, it := range parseASN1Lines(t, out) {
		if it.depth == 3 && it.typ == "OCTET STRING" { // ResponseBytes.response
			basic = it.off
		}
	}
	if basic < 0 {
		t.Fatalf("no ResponseBytes.response in:\n%s", out)
	}
	bs := strconv.Itoa(basic)
	out, err = openssl(t, dir, "asn1parse", "-inform", "DER", "-in", resp, "-strparse", bs)
	if err != nil {
		t.Fatalf("asn1parse -strparse: %v\n%s", err, out)
	}
	tbs, sig := -1, -1
	for _, it := range parseASN1Lines(t, out) {
		if it.depth == 1 && tbs < 0 {
			tbs = it.off
		}
		if it.depth == 1 && it.typ == "BIT STRING" {
			sig = it.off
		}
	}
	for name, off := range map[string]int{"tbs.der": tbs, "sig.der": sig} {
		if o, err := openssl(t, dir, "asn1parse", "-inform", "DER", "-in", resp, "-strparse", bs, "-strparse", strconv.Itoa(off), "-out", name, "-noout"); err != nil {
			t.Fatalf("asn1parse -out %s: %v\n%s", name, err, o)
		}
	}
	extracted, err := os.ReadFile(filepath.Join(dir, "tbs.der"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = openssl(t, dir, "pkeyutl", "-verify", "-pubin", "-inkey", pubFile, "-rawin", "-digest", "sm3",
		"-pkeyopt", "distid:1234567812345678", "-in", "tbs.der", "-sigfile", "sig.der")
	return out, extracted, err
}

// TestOpenSSLSM2Responses: OpenSSL prints the status of SM2 responses
// (-noverify, since it verifies SM2 OCSP signatures with the empty ID,
// INTEROP.md / RELIABILITY.md §1.11) and their signatures pass the SM2
// detached check.
func TestOpenSSLSM2Responses(t *testing.T) {
	p := pkiFor(t, "SM2")
	dir := t.TempDir()
	p.writeFiles(t, dir)
	caPub, err := smx509.MarshalPKIXPublicKey(p.caKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pub"), "PUBLIC KEY", caPub)
	for _, delegated := range []bool{true, false} {
		for _, h := range []HashAlg{SHA1, SHA256, SM3} {
			for _, c := range responseCases {
				t.Run(fmt.Sprintf("delegated=%v/%v/%s", delegated, h, c.name), func(t *testing.T) {
					der := p.responseFor(t, h, c.status, c.reason, delegated, []byte("0123456789abcdef"))
					writeFile(t, dir, "resp.der", der)
					out, err := openssl(t, dir, "ocsp", "-respin", "resp.der", "-issuer", "ca.pem", digestFlag(h), "-cert", "leaf.pem",
						"-noverify", "-no_nonce", "-resp_text")
					if err != nil {
						t.Fatalf("openssl ocsp: %v\n%s", err, out)
					}
					for _, want := range []string{"Cert Status: " + c.status.String(), "leaf.pem: " + c.status.String() + "\n", "Hash Algorithm: " + strings.ToLower(strings.ReplaceAll(h.String(), "-", ""))} {
						if !strings.Contains(out, want) {
							t.Errorf("no %q in:\n%s", want, out)
						}
					}
					if rxReason.MatchString(out) != (c.reason == ReasonKeyCompromise) {
						t.Errorf("reason shown wrongly (want %d):\n%s", c.reason, out)
					}

					// The detached check does not depend on the CertID hash:
					// run it for the SM3 responses (every status) only, to keep
					// the number of OpenSSL processes down.
					if h != SM3 {
						return
					}
					pub, wrong := "signer.pub", "ca.pub"
					if !delegated {
						pub, wrong = wrong, pub
					}
					out, tbs, err := sm2DetachedCheck(t, dir, "resp.der", pub)
					if err != nil || !strings.Contains(out, "Signature Verified Successfully") {
						t.Fatalf("SM2 detached check: %v\n%s", err, out)
					}
					r, err := ParseResponse(der, p.ca)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(tbs, r.TBSResponseData) {
						t.Error("OpenSSL and ParseResponse disagree on tbsResponseData")
					}
					// Control (once per responder): the other key does not verify it.
					if c.status != Good {
						return
					}
					if out, _, err := sm2DetachedCheck(t, dir, "resp.der", wrong); err == nil || !strings.Contains(out, "Signature Verification Failure") {
						t.Errorf("detached check passed with the wrong key:\n%s", out)
					}
				})
			}
		}
	}
}

// TestTjfocCrossCheck checks SM2 response signatures with tjfoc/gmsm, an
// independent SM2 implementation, both ways: tjfoc verifies what
// CreateResponse signed, and ParseResponse verifies a TBS tjfoc signed.
func TestTjfocCrossCheck(t *testing.T) {
	p := pkiFor(t, "SM2")
	for _, delegated := range []bool{true, false} {
		t.Run(fmt.Sprintf("delegated=%v", delegated), func(t *testing.T) {
			der := p.responseFor(t, SM3, Revoked, ReasonKeyCompromise, delegated, nil)
			r, err := ParseResponse(der, p.ca)
			if err != nil {
				t.Fatal(err)
			}
			key := p.signerKey.(*sm2.PrivateKey)
			if !delegated {
				key = p.caKey.(*sm2.PrivateKey)
			}
			tjPriv := &tjsm2.PrivateKey{
				PublicKey: tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: key.X, Y: key.Y},
				D:         key.D,
			}
			if !tjPriv.PublicKey.Verify(r.TBSResponseData, r.Signature) {
				t.Error("tjfoc/gmsm rejects the response signature")
			}
			tampered := bytes.Clone(r.TBSResponseData)
			tampered[len(tampered)-4] ^= 1
			if tjPriv.PublicKey.Verify(tampered, r.Signature) {
				t.Error("tjfoc/gmsm accepts a tampered tbsResponseData")
			}

			// tjfoc signs (default user ID) -> ParseResponse verifies.
			sig, err := tjPriv.Sign(rand.Reader, r.TBSResponseData, nil)
			if err != nil {
				t.Fatal(err)
			}
			var certs []*smx509.Certificate
			if delegated {
				certs = append(certs, p.signer)
			}
			if _, err := ParseResponse(assemble(r.TBSResponseData, OIDSM2WithSM3, nil, sig, certs...), p.ca); err != nil {
				t.Errorf("ParseResponse rejects a tjfoc signature: %v", err)
			}
			if _, err := ParseResponse(assemble(tampered, OIDSM2WithSM3, nil, sig, certs...), p.ca); err == nil {
				t.Error("ParseResponse accepts a tjfoc signature over other bytes")
			}
		})
	}
}
