package ca

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
)

// ocspPost sends a DER request to the public OCSP responder.
func (tn *testNode) ocspPost(ca, contentType string, body []byte) (*http.Response, []byte) {
	tn.t.Helper()
	req, err := http.NewRequest("POST", "http://"+tn.n.Addresses().HTTP+"/ocsp/"+ca, bytes.NewReader(body))
	if err != nil {
		tn.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return tn.send(req)
}

func (tn *testNode) ocspGet(ca, escaped string) (*http.Response, []byte) {
	tn.t.Helper()
	req, err := http.NewRequest("GET", "http://"+tn.n.Addresses().HTTP+"/ocsp/"+ca+"/"+escaped, nil)
	if err != nil {
		tn.t.Fatal(err)
	}
	return tn.send(req)
}

func (tn *testNode) send(req *http.Request) (*http.Response, []byte) {
	tn.t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// query asks the responder of ca about serial over POST and verifies the
// answer with ca/ocsp.ParseResponse against the CA certificate.
func (tn *testNode) query(t *testing.T, ca string, serial *big.Int, nonce []byte) *ocsp.Response {
	t.Helper()
	issuer := tn.svc.cas[ca].cert
	req, err := ocsp.CreateRequestForSerial(serial, issuer, &ocsp.RequestOptions{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	resp, raw := tn.ocspPost(ca, "application/ocsp-request", req)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r, err := ocsp.ParseResponse(raw, issuer)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	if r.SerialNumber.Cmp(serial) != 0 || !bytes.Equal(r.Nonce, nonce) {
		t.Fatalf("response for serial %x nonce %x, want %x and %x", r.SerialNumber, r.Nonce, serial, nonce)
	}
	if d := r.NextUpdate.Sub(r.ThisUpdate); d < 8*time.Hour || d > 4*24*time.Hour {
		t.Errorf("nextUpdate - thisUpdate = %v, want 8 h to 4 d (C-02)", d)
	}
	return r
}

// opensslOCSP runs `openssl ocsp` against the responder and returns its
// output.
func (tn *testNode) opensslOCSP(t *testing.T, ca string, args ...string) string {
	t.Helper()
	return openssl(t, append([]string{"ocsp", "-url", "http://" + tn.n.Addresses().HTTP + "/ocsp/" + ca, "-resp_text"}, args...)...)
}

// TestOCSP covers ACCEPTANCE.md C-02 and parts of C-08 and C-09: status
// before and after an API revocation, checked with OpenSSL (ECDSA) and with
// ca/ocsp (SM2, whose signature OpenSSL 3.0 checks with the wrong user ID);
// unknown serials; malformed requests; the GET form.
func TestOCSP(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()

	t.Run("C-02 ECDSA good then revoked, openssl ocsp", func(t *testing.T) {
		out := tn.issueECDSA(t)
		leaf := writeFile(t, dir, "ec-leaf.pem", out.Certificate)
		issuing := writeFile(t, dir, "ec-issuing.pem", out.Chain[0])
		root := writeFile(t, dir, "ec-root.pem", out.Chain[1])
		args := []string{"-issuer", issuing, "-cert", leaf, "-CAfile", root, "-verify_other", issuing}
		got := tn.opensslOCSP(t, "ecdsa-issuing", args...)
		if !strings.Contains(got, "Response verify OK") || !strings.Contains(got, leaf+": good") {
			t.Fatalf("before revocation:\n%s", got)
		}
		if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, "keyCompromise"); status != http.StatusOK {
			t.Fatalf("revoke: %d %s", status, raw)
		}
		got = tn.opensslOCSP(t, "ecdsa-issuing", args...)
		for _, want := range []string{"Response verify OK", leaf + ": revoked", "Reason: keyCompromise", "Revocation Time:", "Next Update:"} {
			if !strings.Contains(got, want) {
				t.Errorf("after revocation: no %q in\n%s", want, got)
			}
		}
	})

	var sm2Leaf *smx509.Certificate
	t.Run("C-02 SM2 good then revoked", func(t *testing.T) {
		key := filepath.Join(dir, "sm2.key")
		openssl(t, "genpkey", "-algorithm", "SM2", "-out", key)
		csr := filepath.Join(dir, "sm2.csr")
		openssl(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-utf8", "-subj", "/CN=张三/O=测试局", "-out", csr)
		status, out, raw := tn.issue("sm2-issuing", IssueRequest{CSR: readFile(t, csr), Profile: "person-sign", Record: personRecord}, "")
		if status != http.StatusCreated {
			t.Fatalf("issue: %d %s", status, raw)
		}
		leaf := writeFile(t, dir, "sm2-leaf.pem", out.Certificate)
		issuing := writeFile(t, dir, "sm2-issuing.pem", out.Chain[0])
		var err error
		if sm2Leaf, err = smx509.ParseCertificate(pemDER(t, out.Certificate)); err != nil {
			t.Fatal(err)
		}
		nonce := make([]byte, 16)
		rand.Read(nonce)
		if r := tn.query(t, "sm2-issuing", sm2Leaf.SerialNumber, nonce); r.Status != ocsp.Good || r.Certificate == nil {
			t.Fatalf("status %v (delegated %v), want good signed by the delegated responder", r.Status, r.Certificate != nil)
		}
		if got := tn.opensslOCSP(t, "sm2-issuing", "-issuer", issuing, "-cert", leaf, "-noverify"); !strings.Contains(got, leaf+": good") {
			t.Fatalf("openssl before revocation:\n%s", got)
		}
		if status, raw := tn.revoke("sm2-issuing", "ra", out.Serial, "affiliationChanged"); status != http.StatusOK {
			t.Fatalf("revoke: %d %s", status, raw)
		}
		r := tn.query(t, "sm2-issuing", sm2Leaf.SerialNumber, nil)
		c, err := certBySerial(t.Context(), tn.db(), "sm2-issuing", out.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonAffiliationChanged || !r.RevokedAt.Equal(c.revokedAt) {
			t.Fatalf("status %v reason %d at %v; want revoked, affiliationChanged, at %v", r.Status, r.RevocationReason, r.RevokedAt, c.revokedAt)
		}
		if r.Certificate == nil {
			t.Fatal("revoked response not signed by the delegated responder")
		}
		responderPEM := writeFile(t, dir, "sm2-responder.pem", pemCert(r.Certificate.Raw))
		if out := sm2OpenSSLVerify(t, dir, r.TBSResponseData, r.Signature, responderPEM); !strings.Contains(out, "Signature Verified Successfully") {
			t.Errorf("SM2 detached check of the OCSP response: %s", out)
		}
		got := tn.opensslOCSP(t, "sm2-issuing", "-issuer", issuing, "-cert", leaf, "-noverify")
		if !strings.Contains(got, leaf+": revoked") || !strings.Contains(got, "Reason: affiliationChanged") {
			t.Fatalf("openssl after revocation:\n%s", got)
		}
	})

	t.Run("unknown serial and the CA certificates", func(t *testing.T) {
		for _, tc := range []struct {
			ca     string
			serial *big.Int
			want   ocsp.Status
		}{
			{"ecdsa-issuing", new(big.Int).SetBytes([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}), ocsp.Unknown},
			{"sm2-issuing", big.NewInt(1), ocsp.Unknown},
			{"sm2-root", tn.svc.cas["sm2-issuing"].cert.SerialNumber, ocsp.Good},
			{"ecdsa-root", tn.svc.cas["ecdsa-issuing"].cert.SerialNumber, ocsp.Good},
		} {
			if r := tn.query(t, tc.ca, tc.serial, nil); r.Status != tc.want {
				t.Errorf("%s serial %x: %v, want %v", tc.ca, tc.serial, r.Status, tc.want)
			}
		}
	})

	t.Run("C-08 CertID hashes and nonce lengths", func(t *testing.T) {
		issuer := tn.svc.cas["sm2-issuing"].cert
		for _, h := range []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA256, ocsp.SM3} {
			for _, n := range []int{1, 16, 32} {
				nonce := make([]byte, n)
				rand.Read(nonce)
				der, err := ocsp.CreateRequest(sm2Leaf, issuer, &ocsp.RequestOptions{Hash: h, Nonce: nonce})
				if err != nil {
					t.Fatal(err)
				}
				_, raw := tn.ocspPost("sm2-issuing", "application/ocsp-request", der)
				r, err := ocsp.ParseResponseForCert(raw, sm2Leaf, issuer)
				if err != nil {
					t.Fatalf("hash %v nonce %d: %v", h, n, err)
				}
				if r.Status != ocsp.Revoked || r.HashAlgorithm != h || !bytes.Equal(r.Nonce, nonce) {
					t.Errorf("hash %v nonce %d: status %v, hash %v, nonce %x", h, n, r.Status, r.HashAlgorithm, r.Nonce)
				}
			}
		}
	})

	t.Run("C-09 malformed requests", func(t *testing.T) {
		good, err := ocsp.CreateRequest(sm2Leaf, tn.svc.cas["sm2-issuing"].cert, nil)
		if err != nil {
			t.Fatal(err)
		}
		malformed := ocsp.CreateErrorResponse(ocsp.MalformedRequest)
		for _, tc := range []struct {
			name, ct string
			body     []byte
		}{
			{"empty", "application/ocsp-request", nil},
			{"garbage", "application/ocsp-request", []byte("GET / HTTP/1.1\r\n")},
			{"truncated", "application/ocsp-request", good[:len(good)-1]},
			{"trailing bytes", "application/ocsp-request", append(append([]byte{}, good...), 0)},
			{"wrong content type", "application/json", good},
			{"too large", "application/ocsp-request", bytes.Repeat([]byte{0x30}, maxOCSPRequest+1)},
			{"nonce of 0 octets", "application/ocsp-request", mustRequest(t, sm2Leaf, tn.svc.cas["sm2-issuing"].cert, []byte{})},
			{"nonce of 33 octets", "application/ocsp-request", mustRequest(t, sm2Leaf, tn.svc.cas["sm2-issuing"].cert, make([]byte, 33))},
			{"nonce of 129 octets", "application/ocsp-request", mustRequest(t, sm2Leaf, tn.svc.cas["sm2-issuing"].cert, make([]byte, 129))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, raw := tn.ocspPost("sm2-issuing", tc.ct, tc.body)
				if resp.StatusCode != http.StatusOK || !bytes.Equal(raw, malformed) {
					t.Fatalf("HTTP %d, body %x; want 200 with malformedRequest", resp.StatusCode, raw)
				}
				var re *ocsp.ResponseError
				if _, err := ocsp.ParseResponse(raw, tn.svc.cas["sm2-issuing"].cert); !errors.As(err, &re) || re.Status != ocsp.MalformedRequest {
					t.Fatalf("ParseResponse: %v", err)
				}
			})
		}
		resp, raw := tn.ocspPost("ecdsa-issuing", "application/ocsp-request", good)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(raw, ocsp.CreateErrorResponse(ocsp.Unauthorized)) {
			t.Errorf("request for another CA: HTTP %d, body %x; want unauthorized", resp.StatusCode, raw)
		}
		if resp, raw := tn.ocspPost("nope", "application/ocsp-request", good); resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown CA: HTTP %d %s; want 404", resp.StatusCode, raw)
		}
	})

	t.Run("C-08 GET with '/' and '+' in the base64", func(t *testing.T) {
		issuer := tn.svc.cas["sm2-issuing"].cert
		// Only the nonce is random: the CertID before it is fixed, and in
		// about one run in a hundred its base64 holds a "//" (mostly in the
		// serial, which sits at the same base64 offset under every CertID
		// hash) that no nonce can remove. Then another certificate is issued
		// from the same CSR, with a new serial.
		var der []byte
		cert := sm2Leaf
	search:
		for attempt := 0; ; attempt++ {
			for _, h := range []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA256, ocsp.SM3} {
				for range 2000 {
					nonce := make([]byte, 16)
					rand.Read(nonce)
					d, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: h, Nonce: nonce})
					if err != nil {
						t.Fatal(err)
					}
					b64 := ocsp.EncodeGETPath(d)
					if strings.Contains(b64, "%2F") && strings.Contains(b64, "%2B") && !strings.Contains(b64, "%2F%2F") {
						der = d
						break search
					}
				}
			}
			if attempt == 4 {
				t.Fatal("no request with '/' and '+' (and no '//') in its base64 for five serials")
			}
			status, out, raw := tn.issue("sm2-issuing", IssueRequest{CSR: readFile(t, filepath.Join(dir, "sm2.csr")), Profile: "person-sign", Record: personRecord}, "")
			if status != http.StatusCreated {
				t.Fatalf("issue: %d %s", status, raw)
			}
			var err error
			if cert, err = smx509.ParseCertificate(pemDER(t, out.Certificate)); err != nil {
				t.Fatal(err)
			}
		}
		_, post := tn.ocspPost("sm2-issuing", "application/ocsp-request", der)
		want, err := ocsp.ParseResponse(post, issuer)
		if err != nil {
			t.Fatal(err)
		}
		escaped := ocsp.EncodeGETPath(der)
		raw := strings.NewReplacer("%2F", "/", "%2B", "+", "%3D", "=").Replace(escaped)
		for name, path := range map[string]string{"percent-encoded": escaped, "raw '/' and '+'": raw} {
			t.Run(name, func(t *testing.T) {
				sent := time.Now()
				resp, body := tn.ocspGet("sm2-issuing", path)
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
					t.Fatalf("HTTP %d, type %q: %x", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				got, err := ocsp.ParseResponse(body, issuer)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != want.Status || got.RevocationReason != want.RevocationReason || !bytes.Equal(got.Nonce, want.Nonce) {
					t.Fatalf("GET: %v/%d nonce %x; POST: %v/%d nonce %x", got.Status, got.RevocationReason, got.Nonce, want.Status, want.RevocationReason, want.Nonce)
				}
				m := regexp.MustCompile(`max-age=(\d+)`).FindStringSubmatch(resp.Header.Get("Cache-Control"))
				if m == nil {
					t.Fatalf("Cache-Control %q has no max-age", resp.Header.Get("Cache-Control"))
				}
				// The node computed max-age at some moment after sent: it is
				// at most nextUpdate - sent (whatever the load delayed the
				// answer by), in whole seconds.
				age, _ := strconv.Atoi(m[1])
				if until := got.NextUpdate.Sub(sent); age <= 0 || time.Duration(age)*time.Second > until+time.Second {
					t.Errorf("max-age %d s, nextUpdate %v after the request", age, until)
				}
			})
		}
		// A base64 with "//" (C-08): path cleaning must neither merge it nor
		// redirect (httpx.Mux.OpaqueTail).
		var dbl []byte
		for range 20000 {
			nonce := make([]byte, 16)
			rand.Read(nonce)
			d := mustRequest(t, sm2Leaf, issuer, nonce)
			if strings.Contains(ocsp.EncodeGETPath(d), "%2F%2F") {
				dbl = d
				break
			}
		}
		if dbl == nil {
			t.Fatal("no request with '//' in its base64")
		}
		_, postDbl := tn.ocspPost("sm2-issuing", "application/ocsp-request", dbl)
		wantDbl, err := ocsp.ParseResponse(postDbl, issuer)
		if err != nil {
			t.Fatal(err)
		}
		rawDbl := strings.NewReplacer("%2F", "/", "%2B", "+", "%3D", "=").Replace(ocsp.EncodeGETPath(dbl))
		resp, body := tn.ocspGet("sm2-issuing", rawDbl)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET with raw '//': HTTP %d (%s)", resp.StatusCode, resp.Header.Get("Location"))
		}
		gotDbl, err := ocsp.ParseResponse(body, issuer)
		if err != nil || gotDbl.Status != wantDbl.Status || !bytes.Equal(gotDbl.Nonce, wantDbl.Nonce) {
			t.Fatalf("GET with raw '//': %v %+v, want the POST answer", err, gotDbl)
		}

		resp, body = tn.ocspGet("sm2-issuing", "not%20base64!")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, ocsp.CreateErrorResponse(ocsp.MalformedRequest)) {
			t.Errorf("bad GET: HTTP %d, %x; want malformedRequest", resp.StatusCode, body)
		}
	})
}

func mustRequest(t *testing.T, cert, issuer *smx509.Certificate, nonce []byte) []byte {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ask queries CA generation id (any generation of the registry) about
// serial over POST or GET and verifies the answer against its certificate.
func (tn *testNode) ask(t *testing.T, id string, serial *big.Int, opts *ocsp.RequestOptions, get bool) ([]byte, *ocsp.Response) {
	t.Helper()
	a := tn.svc.lookup(id)
	if a == nil {
		t.Fatalf("no CA %s", id)
	}
	req, err := ocsp.CreateRequestForSerial(serial, a.cert, opts)
	if err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	var raw []byte
	if get {
		resp, raw = tn.ocspGet(id, ocsp.EncodeGETPath(req))
	} else {
		resp, raw = tn.ocspPost(id, "application/ocsp-request", req)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	r, err := ocsp.ParseResponse(raw, a.cert)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	return raw, r
}

// TestOCSPNonPositiveSerial: a request for −N (or 0), where N is an issued
// serial, is answered "unknown" for the serial asked, by POST and GET,
// whether N's pre-signed "good" answer is absent, in memory or only in the
// table; nothing is stored for it.
func TestOCSPNonPositiveSerial(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	out := tn.issueECDSA(t)
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	const id = "ecdsa-issuing"
	check := func(t *testing.T) {
		for _, serial := range []*big.Int{new(big.Int).Neg(leaf.SerialNumber), big.NewInt(0), big.NewInt(-1)} {
			for _, get := range []bool{false, true} {
				_, r := tn.ask(t, id, serial, nil, get)
				if r.SerialNumber.Cmp(serial) != 0 || r.Status != ocsp.Unknown {
					t.Errorf("serial %d (GET %v): answer for %d, %v; want unknown for the serial asked", serial, get, r.SerialNumber, r.Status)
				}
			}
		}
	}
	t.Run("cold cache", check)
	if _, r := tn.ask(t, id, leaf.SerialNumber, nil, false); r.Status != ocsp.Good {
		t.Fatalf("issued serial: %v", r.Status)
	}
	t.Run("warm cache", check)
	tn.svc.ocspState().cache.flush(id)
	t.Run("stored response only", check)
	if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE issuer_id = ? AND serial <> ?", id, out.Serial); n != 0 {
		t.Errorf("%d stored responses besides the issued serial's", n)
	}
}
