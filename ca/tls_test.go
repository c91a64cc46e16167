package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/testenv"
)

// startNodeClock is startNode with an injected clock.
func startNodeClock(t *testing.T, dir string, clk clock.Clock) *testNode {
	t.Helper()
	svc := New()
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}, Clock: clk}
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, tokens: map[string]string{}}
	t.Cleanup(func() { tn.stop() })
	return tn
}

// rootPool reads DIR/bootstrap/tls-ca.pem, the trust anchor clients use.
func rootPool(t *testing.T, dir string) (*x509.CertPool, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("tls-ca.pem: no certificate")
	}
	return pool, b
}

// verifyingClient verifies the HTTPS listener against roots at the time
// now gives (the node's clock), as a client with that clock would.
func verifyingClient(roots *x509.CertPool, now func() time.Time) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Time: now, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 1}}
}

// getServed makes one verified request and returns the served chain and
// whether the connection was reused.
func getServed(t *testing.T, c *http.Client, url string) ([]*x509.Certificate, bool) {
	t.Helper()
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET %s: %d, TLS %v", url, resp.StatusCode, resp.TLS != nil)
	}
	return resp.TLS.PeerCertificates, reused
}

func tlsKeyCount(t *testing.T, tn *testNode) int {
	t.Helper()
	keys, err := tn.n.Env().Keys.ListKeys(context.Background(), &hsm.ListKeysRequest{Service: tlsKeyService})
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestNodeTLS: the HTTPS listener serves a certificate issued by
// ecdsa-issuing with the node-tls profile, with the chain up to ecdsa-root,
// which DIR/bootstrap/tls-ca.pem holds; Go's crypto/x509 and OpenSSL verify
// it against that file; tls-chain.pem is the served chain; the certificate
// is recorded, audited and lint-clean; the key is in the key manager, not
// in a file.
func TestNodeTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	addr := tn.n.Addresses().HTTPS
	roots, caPEM := rootPool(t, dir)

	root, issuing := tn.svc.cas["ecdsa-root"], tn.svc.cas["ecdsa-issuing"]
	if b, _ := pem.Decode(caPEM); b == nil || !bytes.Equal(b.Bytes, root.cert.Raw) {
		t.Fatal("tls-ca.pem is not the ecdsa-root certificate")
	}
	chain, _ := getServed(t, verifyingClient(roots, nil), "https://"+addr+"/healthz")
	if len(chain) != 3 || !bytes.Equal(chain[1].Raw, issuing.cert.Raw) || !bytes.Equal(chain[2].Raw, root.cert.Raw) {
		t.Fatalf("served chain of %d certificates is not leaf, ecdsa-issuing, ecdsa-root", len(chain))
	}
	leaf := chain[0]
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("leaf does not name %s: %v", name, err)
		}
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.IsCA {
		t.Errorf("leaf EKU %v, CA %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v > 30*24*time.Hour+time.Hour {
		t.Errorf("validity %s exceeds the node-tls profile", v)
	}
	sleaf, err := smx509.ParseCertificate(leaf.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if errs := lint.Errors(lint.Check(sleaf.Raw, issuing.cert, lint.Expect{Purpose: lint.PurposeTLSPrivate})); len(errs) > 0 {
		t.Errorf("lint errors: %v", errs)
	}

	chainPEM, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk [][]byte
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		onDisk = append(onDisk, b.Bytes)
	}
	if len(onDisk) != 3 || !bytes.Equal(onDisk[0], leaf.Raw) || !bytes.Equal(onDisk[2], root.cert.Raw) {
		t.Errorf("tls-chain.pem holds %d certificates, not the served chain", len(onDisk))
	}
	if _, err := os.Stat(filepath.Join(dir, "bootstrap", "tls.key")); !os.IsNotExist(err) {
		t.Errorf("tls.key still on disk (%v): the key is in the key manager", err)
	}
	if n := tlsKeyCount(t, tn); n != 1 {
		t.Errorf("%d TLS keys in the key manager, want 1", n)
	}

	serial := serialHex(leaf.SerialNumber)
	c, err := certBySerial(context.Background(), tn.db(), "ecdsa-issuing", serial)
	if err != nil {
		t.Fatal(err)
	}
	if c.profile != nodeTLSProfile || c.status != "good" || !strings.HasPrefix(c.requester, "node/") {
		t.Errorf("recorded as profile %s, status %s, requester %s", c.profile, c.status, c.requester)
	}
	if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.certificate.issue' AND object = ?", "cert/ecdsa-issuing/"+serial); n != 1 {
		t.Errorf("%d audit records of the issuance, want 1", n)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_serials WHERE issuer_id = 'ecdsa-issuing' AND serial = ? AND profile = ?", serial, nodeTLSProfile); n != 1 {
		t.Errorf("serial not recorded before signing (%d rows)", n)
	}

	t.Run("openssl s_client", func(t *testing.T) {
		bin := testenv.LookPath(t, "openssl")
		cmd := exec.Command(bin, "s_client", "-connect", addr, "-CAfile", filepath.Join(dir, "bootstrap", "tls-ca.pem"),
			"-verify_return_error", "-verify_ip", "127.0.0.1", "-showcerts")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl s_client: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Verify return code: 0 (ok)") || !strings.Contains(string(out), " 2 s:") {
			t.Fatalf("openssl did not verify a three-certificate chain:\n%s", out)
		}
	})
}

// TestNodeTLSRenewal moves a fake clock past two thirds of the node
// certificate's validity: the renewal swaps the served certificate without
// restarting the listener (an open keep-alive connection keeps working with
// the certificate it was made with; a new connection gets the new serial),
// tls-chain.pem follows, and keys older than the replaced one are deleted.
func TestNodeTLSRenewal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	clk := clock.NewFake(time.Now())
	tn := startNodeClock(t, dir, clk)
	ctx := context.Background()
	url := "https://" + tn.n.Addresses().HTTPS + "/healthz"
	roots, _ := rootPool(t, dir)

	old := verifyingClient(roots, clk.Now)
	chain, _ := getServed(t, old, url)
	first := chain[0].SerialNumber

	// Not due yet: nothing changes.
	clk.Add(19 * 24 * time.Hour)
	if err := tn.n.RefreshTLS(ctx); err != nil {
		t.Fatal(err)
	}
	if chain, _ := getServed(t, verifyingClient(roots, clk.Now), url); chain[0].SerialNumber.Cmp(first) != 0 {
		t.Fatal("renewed before two thirds of the validity")
	}

	serve := func() *big.Int {
		t.Helper()
		clk.Add(2 * 24 * time.Hour)
		if err := tn.n.RefreshTLS(ctx); err != nil {
			t.Fatal(err)
		}
		chain, _ := getServed(t, verifyingClient(roots, clk.Now), url)
		return chain[0].SerialNumber
	}
	second := serve()
	if second.Cmp(first) == 0 {
		t.Fatal("a new connection still gets the first certificate after renewal")
	}
	chain, reused := getServed(t, old, url)
	if !reused || chain[0].SerialNumber.Cmp(first) != 0 {
		t.Errorf("the open connection: reused %v, serial %x (want the first, %x)", reused, chain[0].SerialNumber, first)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := pem.Decode(b); p == nil {
		t.Fatal("tls-chain.pem: no certificate")
	} else if c, err := x509.ParseCertificate(p.Bytes); err != nil || c.SerialNumber.Cmp(second) != 0 {
		t.Errorf("tls-chain.pem does not start with the renewed certificate (%v)", err)
	}
	if n := tlsKeyCount(t, tn); n != 2 {
		t.Errorf("%d TLS keys after one renewal, want 2 (new and replaced)", n)
	}

	clk.Add(19 * 24 * time.Hour)
	third := serve()
	if third.Cmp(second) == 0 {
		t.Fatal("second renewal did not happen")
	}
	if n := tlsKeyCount(t, tn); n != 2 {
		t.Errorf("%d TLS keys after two renewals, want 2: the first must be deleted", n)
	}

	// A certificate left to expire (no renewal ran) makes the node not ready.
	clk.Add(31 * 24 * time.Hour)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + tn.n.Addresses().HTTP + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := readyz(); status != http.StatusServiceUnavailable || !strings.Contains(body, "expired") {
		t.Errorf("readyz %d %s with an expired HTTPS certificate", status, body)
	}
	if err := tn.n.RefreshTLS(ctx); err != nil {
		t.Fatal(err)
	}
	if status, body := readyz(); status != http.StatusOK {
		t.Errorf("readyz %d %s after the renewal", status, body)
	}
}

// TestNodeTLSRestart: a restart serves the stored certificate while it is
// good, and a new one when two thirds of its validity passed while the
// node was down.
func TestNodeTLSRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	clk := clock.NewFake(time.Now())
	serving := func() *x509.Certificate {
		t.Helper()
		roots, _ := rootPool(t, dir)
		tn := startNodeClock(t, dir, clk)
		defer tn.stop()
		chain, _ := getServed(t, verifyingClient(roots, clk.Now), "https://"+tn.n.Addresses().HTTPS+"/healthz")
		return chain[0]
	}
	chainFile := func() []byte {
		b, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-chain.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tn := startNodeClock(t, dir, clk)
	tn.stop()
	chain1 := chainFile()
	first := serving()
	if !bytes.Equal(chainFile(), chain1) {
		t.Error("tls-chain.pem changed across a restart that reused the certificate")
	}
	again := serving()
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("restart issued %x instead of reusing %x", again.SerialNumber, first.SerialNumber)
	}
	clk.Add(21 * 24 * time.Hour)
	if renewed := serving(); renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("restart after two thirds of the validity kept the old certificate")
	}
}

// TestNodeTLSRevokedCA: when ecdsa-issuing is revoked the CA can issue no
// replacement; the node keeps serving its certificate but /readyz reports
// https-certificate, naming the revoked CA, until a new generation of
// ecdsa-issuing issues one.
func TestNodeTLSRevokedCA(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	ctx := t.Context()
	tn.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addAccount("op2", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + tn.n.Addresses().HTTP + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := readyz(); status != http.StatusOK {
		t.Fatalf("readyz %d %s before the revocation", status, body)
	}
	sub := serialHex(tn.svc.lookup("ecdsa-issuing").cert.SerialNumber)
	tn.revokeCAByTwo(t, "ecdsa-root", sub, "cACompromise")
	if err := tn.n.RefreshTLS(ctx); err == nil {
		t.Fatal("RefreshTLS succeeded although ecdsa-issuing is revoked")
	}
	status, body := readyz()
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "https-certificate") || !strings.Contains(body, "revoked") {
		t.Fatalf("readyz %d %s while serving a certificate of a revoked CA; want 503 naming https-certificate and the revocation", status, body)
	}

	if _, err := tn.svc.Rollover(ctx, "test", "ecdsa-issuing", ""); err != nil {
		t.Fatal(err)
	}
	if err := tn.n.RefreshTLS(ctx); err != nil {
		t.Fatal(err)
	}
	if status, body := readyz(); status != http.StatusOK {
		t.Errorf("readyz %d %s after a new generation issued the HTTPS certificate", status, body)
	}
}
