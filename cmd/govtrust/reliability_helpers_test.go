package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
)

// Helpers of the crash and concurrency tests (reliability_test.go):
// counts for CI and for `make soak`, an API client that tells a refused
// connection (nothing sent) from a lost answer (maybe done), CSRs, the
// independent checks (openssl ocsp, CRLs, SQLite integrity, the audit
// export).

// soakEnv selects the full acceptance counts (make soak).
const soakEnv = "GTTEST_SOAK"

// soak reports whether the full counts of ACCEPTANCE.md run.
func soak() bool { return os.Getenv(soakEnv) == "1" }

// scale returns ci in an ordinary run and full under GTTEST_SOAK=1.
func scale(ci, full int) int {
	if soak() {
		return full
	}
	return ci
}

// writeNodeConfig writes DIR/govtrust.yaml before the first start; the node
// then uses it instead of writing the defaults. Options not named keep
// their defaults.
func writeNodeConfig(t *testing.T, dir, yaml string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "govtrust.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// quietConfig keeps the node's per-request log lines out of the test's
// memory: warnings and errors still show in a failure's output.
const quietConfig = "log:\n  level: warn\n"

// kill9 sends SIGKILL and waits for the process to be gone. The stale
// addresses.json is removed, so the next up cannot mistake it for the new
// process's.
func (p *proc) kill9(t *testing.T, dir string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-p.waited:
	case <-time.After(10 * time.Second):
		t.Fatal("process still there 10 s after SIGKILL")
	}
	if err := os.Remove(filepath.Join(dir, "run", "addresses.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// readToken returns a bootstrap token of a data directory.
func readToken(t *testing.T, dir, role string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap", role+".token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// apiClient calls the HTTPS API with a bearer token, trusting exactly the
// nodes' bootstrap TLS certificates.
type apiClient struct {
	hc    *http.Client
	token string
}

func newAPIClient(t *testing.T, token string, dataDirs ...string) *apiClient {
	t.Helper()
	pool := x509.NewCertPool()
	for _, d := range dataDirs {
		b, err := os.ReadFile(filepath.Join(d, "bootstrap", "tls-chain.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("no certificate in %s/bootstrap/tls-chain.pem", d)
		}
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &apiClient{hc: &http.Client{Timeout: 60 * time.Second, Transport: tr}, token: token}
}

// post sends one JSON POST and returns the status and the whole body. A
// non-nil error means no whole answer arrived; refused(err) tells whether
// the request certainly never reached the server.
func (c *apiClient) post(url string, body []byte, hdr map[string]string) (int, []byte, error) {
	status, _, raw, err := c.postFull(url, body, hdr)
	return status, raw, err
}

// postFull is post that also returns the answer's headers.
func (c *apiClient) postFull(url string, body []byte, hdr map[string]string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	// Without GetBody the transport never resends the request on a new
	// connection after a reused one broke. It would for a request with an
	// Idempotency-Key (net/http treats those as replayable), and a resend
	// that then meets a refused dial would hide that the first one reached
	// the server: a lost answer would be counted as "never sent".
	req.GetBody = nil
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, nil, err
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// get sends one GET to the API.
func (c *apiClient) get(url string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// refused reports whether a request failed because the connection was
// refused: the node was down and the request was never sent.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// csrPEM makes a PKCS #10 request for host, signed by key (ECDSA or SM2).
func csrPEM(key crypto.Signer, host string) (string, error) {
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		return "", fmt.Errorf("CSR for %s: %w", host, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// issueBody is the JSON of an issuance under the server-tls profile.
func issueBody(key crypto.Signer, host string) ([]byte, error) {
	csr, err := csrPEM(key, host)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ca.IssueRequest{CSR: csr, Profile: "server-tls"})
}

// decodeIssued parses an issuance answer and checks that the certificate
// carries the serial the answer names.
func decodeIssued(raw []byte) (serial string, der []byte, err error) {
	var out ca.IssueResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", nil, fmt.Errorf("issuance answer %q: %w", raw, err)
	}
	b, _ := pem.Decode([]byte(out.Certificate))
	if b == nil {
		return "", nil, fmt.Errorf("issuance answer for %s: no PEM certificate", out.Serial)
	}
	cert, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("issuance answer for %s: %w", out.Serial, err)
	}
	if got := serialOf(cert.SerialNumber); got != out.Serial {
		return "", nil, fmt.Errorf("answer names serial %s, certificate carries %s", out.Serial, got)
	}
	return out.Serial, b.Bytes, nil
}

// serialOf is the API's form of a serial: lowercase hex of the content
// octets.
func serialOf(n *big.Int) string { return fmt.Sprintf("%x", n.Bytes()) }

// caFiles fetches a CA's certificate and its root's from the public
// listener and writes them as PEM files for openssl.
type caFiles struct {
	issuer, root *smx509.Certificate
	issuerPEM    string // file
	rootPEM      string // file
}

func fetchCA(t *testing.T, httpAddr, id, rootID, dir string) *caFiles {
	t.Helper()
	get := func(id string) (*smx509.Certificate, string) {
		der := httpGet(t, "http://"+httpAddr+"/pki/"+id+".crt")
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s.crt: %v", id, err)
		}
		path := filepath.Join(dir, id+".pem")
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return c, path
	}
	f := &caFiles{}
	f.issuer, f.issuerPEM = get(id)
	f.root, f.rootPEM = get(rootID)
	return f
}

// httpGet fetches a public object and fails the test on anything but 200.
func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// ocspResult is what `openssl ocsp` said about one certificate.
type ocspResult struct {
	status   string // good, revoked, unknown
	reason   int    // for revoked: the CRLReason code, -1 when absent
	verified bool   // "Response verify OK"
	out      string
}

var (
	rxOCSPStatus = regexp.MustCompile(`(?m): (good|revoked|unknown)\s*$`)
	// -resp_text prints the code too, which also names the reasons
	// OpenSSL 3.0 has no name for (privilegeWithdrawn is "(UNKNOWN)").
	rxOCSPReason = regexp.MustCompile(`(?m)^\s*Revocation Reason: .*\(0x([0-9a-fA-F]+)\)\s*$`)
)

// opensslOCSP asks the node's responder about the certificate in leafPEM
// with `openssl ocsp` (RFC 6960 POST), verifying the answer against the CA
// files unless noverify (OpenSSL 3.0 checks SM2 OCSP signatures with the
// wrong user ID, RELIABILITY.md §1.11).
func opensslOCSP(opensslBin, httpAddr, caID string, f *caFiles, leafPEM string, noverify bool) (*ocspResult, error) {
	args := []string{"ocsp", "-url", "http://" + httpAddr + "/ocsp/" + caID, "-issuer", f.issuerPEM, "-cert", leafPEM, "-resp_text"}
	if noverify {
		args = append(args, "-noverify")
	} else {
		args = append(args, "-CAfile", f.rootPEM, "-verify_other", f.issuerPEM)
	}
	out, err := exec.Command(opensslBin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("openssl ocsp %s: %w\n%s", leafPEM, err, out)
	}
	r := &ocspResult{out: string(out), verified: strings.Contains(string(out), "Response verify OK")}
	if m := rxOCSPStatus.FindStringSubmatch(r.out); m != nil {
		r.status = m[1]
	}
	r.reason = -1
	if m := rxOCSPReason.FindStringSubmatch(r.out); m != nil {
		code, err := strconv.ParseInt(m[1], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("openssl ocsp %s: reason %q", leafPEM, m[1])
		}
		r.reason = int(code)
	}
	return r, nil
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns the
// errors, in no particular order.
func parallel(n, workers int, fn func(i int) error) []error {
	var mu sync.Mutex
	var errs []error
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// reportErrors fails t with up to 20 of errs and their count.
func reportErrors(t *testing.T, what string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if i == 20 {
			t.Errorf("%s: ... %d errors in all", what, len(errs))
			break
		}
		t.Errorf("%s: %v", what, err)
	}
}

// crlEntries fetches /pki/{ca}.crl, checks its signature by the CA, and
// returns its number and its entries (serial → CRLReason code; -1 when the
// entry has no reasonCode, RFC 5280 §5.3.1).
func crlEntries(t *testing.T, httpAddr, caID string, issuer *smx509.Certificate) (*big.Int, map[string]int, []byte) {
	t.Helper()
	der := httpGet(t, "http://"+httpAddr+"/pki/"+caID+".crl")
	crl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("%s.crl: %v", caID, err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("%s.crl: signature: %v", caID, err)
	}
	out := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		s := serialOf(e.SerialNumber)
		if _, dup := out[s]; dup {
			t.Errorf("%s.crl lists %s twice", caID, s)
		}
		out[s] = -1
		if e.ReasonCode != 0 {
			out[s] = e.ReasonCode
		}
	}
	return crl.Number, out, der
}

// opensslVerifyCRL has OpenSSL check an ECDSA CRL's signature with the CA
// chain (OpenSSL 3.0 cannot check SM2 CRLs signed with the GM/T 0009 ID).
func opensslVerifyCRL(t *testing.T, opensslBin string, der []byte, f *caFiles, dir string) {
	t.Helper()
	path := filepath.Join(dir, "crl.der")
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "crl-chain.pem")
	var chain []byte
	for _, p := range []string{f.issuerPEM, f.rootPEM} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, b...)
	}
	if err := os.WriteFile(bundle, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(opensslBin, "crl", "-inform", "DER", "-in", path, "-CAfile", bundle, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Errorf("openssl crl -verify: %v\n%s", err, out)
	}
}

// reasonCodes maps the API's reason names to RFC 5280 CRLReason codes.
var reasonCodes = map[string]int{"keyCompromise": 1, "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5, "privilegeWithdrawn": 9}

// reasonNames is reasonCodes the other way round.
var reasonNames = func() map[int]string {
	m := map[int]string{}
	for name, code := range reasonCodes {
		m[code] = name
	}
	return m
}()

// sqliteIntegrity runs PRAGMA integrity_check on a stopped (or killed)
// node's database, opened read-only.
func sqliteIntegrity(t *testing.T, dir string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "govtrust.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0] != "ok" {
		t.Errorf("PRAGMA integrity_check = %q, want ok", lines)
	}
}

// auditEvents runs `govtrust audit export` and counts the successful events
// per action and object.
func auditEvents(t *testing.T, args ...string) map[[2]string]int {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"audit", "export"}, args...)...).Output()
	if err != nil {
		t.Fatalf("audit export: %v", err)
	}
	events := map[[2]string]int{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r struct{ Action, Object, Outcome string }
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("audit export: %v", err)
		}
		if r.Outcome == "success" {
			events[[2]string{r.Action, r.Object}]++
		}
	}
	return events
}

// auditVerify requires `govtrust audit verify` to pass.
func auditVerify(t *testing.T, args ...string) string {
	t.Helper()
	out, code := govtrust(t, append([]string{"audit", "verify"}, args...)...)
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Errorf("audit verify = %d\n%s", code, out)
	}
	return out
}
