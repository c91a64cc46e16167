package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/testenv"
)

func ptr(s string) *string { return &s }

// testNode is a running node with the CA service and its bootstrap tokens.
type testNode struct {
	t      *testing.T
	dir    string
	n      *node.Node
	svc    *Service
	tokens map[string]string
	c      *http.Client
}

func startNode(t *testing.T, dir string) *testNode {
	t.Helper()
	return startNodeEnv(t, dir)
}

// startNodeEnv starts a node whose configuration has the GOVTRUST_*
// settings of environ.
func startNodeEnv(t *testing.T, dir string, environ ...string) *testNode {
	t.Helper()
	return startNodeOpts(t, node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: append([]string{}, environ...)})
}

// startNodeOpts starts a node with the CA service and opts.
func startNodeOpts(t *testing.T, opts node.Options) *testNode {
	t.Helper()
	dir := opts.DataDir
	svc := New()
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, tokens: map[string]string{},
		c: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	for _, role := range []string{"sysadmin", "secadmin", "auditor", "ra"} {
		tok, err := node.ReadBootstrapToken(dir, role)
		if err != nil {
			t.Fatalf("token %s: %v", role, err)
		}
		tn.tokens[role] = tok
	}
	t.Cleanup(func() { tn.stop() })
	return tn
}

func (tn *testNode) stop() {
	if tn.n != nil {
		if err := tn.n.Shutdown(context.Background()); err != nil {
			tn.t.Errorf("shutdown: %v", err)
		}
		tn.n = nil
	}
}

func (tn *testNode) db() *store.DB { return tn.n.Env().DB }

// do calls the HTTPS API; it returns the status and the body.
func (tn *testNode) do(method, path, role string, body any, hdr map[string]string) (int, []byte) {
	tn.t.Helper()
	status, _, raw := tn.doFull(method, path, role, body, hdr)
	return status, raw
}

// doFull is do that also returns the answer's headers.
func (tn *testNode) doFull(method, path, role string, body any, hdr map[string]string) (int, http.Header, []byte) {
	tn.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, rd)
	if err != nil {
		tn.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+tn.tokens[role])
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// issue posts an issuance request and decodes a success.
func (tn *testNode) issue(ca string, req IssueRequest, idemKey string) (int, *IssueResponse, []byte) {
	tn.t.Helper()
	var hdr map[string]string
	if idemKey != "" {
		hdr = map[string]string{"Idempotency-Key": idemKey}
	}
	status, raw := tn.do("POST", "/api/v1/ca/"+ca+"/certificates", "ra", req, hdr)
	if status != http.StatusCreated && status != http.StatusOK {
		return status, nil, raw
	}
	var out IssueResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		tn.t.Fatalf("decode %s: %v", raw, err)
	}
	return status, &out, raw
}

func (tn *testNode) count(query string, args ...any) int {
	tn.t.Helper()
	var n int
	if err := tn.db().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		tn.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.LookPath(t, "openssl")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemDER(t *testing.T, s string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM in %q", s)
	}
	return b.Bytes
}
