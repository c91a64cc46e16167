package signature

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/tsa"
)

func ptr(s string) *string { return &s }

// testNode is a running node with the CA, the TSA and this service.
type testNode struct {
	t   testing.TB
	dir string
	n   *node.Node
	svc *Service
	ca  *ca.Service
	c   *http.Client
}

func startNode(t testing.TB) *testNode {
	t.Helper()
	return startNodeWith(t, nil, func(c *ca.Service, ts *tsa.Service) *Service { return New(c, c, ts) })
}

// startNodeWith is startNode with the node's clock (nil: the system's) and
// this service made by mk from the CA and the TSA.
func startNodeWith(t testing.TB, clk clock.Clock, mk func(*ca.Service, *tsa.Service) *Service) *testNode {
	t.Helper()
	dir := t.TempDir()
	c := ca.New()
	ts := tsa.New(c)
	svc := mk(c, ts)
	opts := node.Options{DataDir: dir, HTTP: ptr(testenv.FreeAddr(t)), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}, Clock: clk}
	n, err := node.Start(context.Background(), opts, c, ts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, ca: c,
		c: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 16}}}
	t.Cleanup(func() {
		if err := n.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return tn
}

func (tn *testNode) bootstrapToken(name string) string {
	tn.t.Helper()
	b, err := os.ReadFile(filepath.Join(tn.dir, "bootstrap", name+".token"))
	if err != nil {
		tn.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// account creates an account with roles and returns its id and token.
func (tn *testNode) account(name, kind string, roles ...policy.Role) (string, string) {
	tn.t.Helper()
	ctx := context.Background()
	az := tn.n.Env().Authz
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: kind, Org: "demo", Clearance: policy.Public, Roles: roles})
	if err != nil {
		tn.t.Fatal(err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatal(err)
	}
	return acc.ID, tok
}

// call sends JSON to the HTTPS API and decodes the answer into out.
func (tn *testNode) call(method, path, token string, body, out any) int {
	tn.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tn.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			tn.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		tn.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// newKey has the security administrator create a key for owner.
func (tn *testNode) newKey(owner, alg string) *Key {
	tn.t.Helper()
	var k Key
	if st := tn.call("POST", "/api/v1/signature/keys", tn.bootstrapToken("secadmin"),
		NewKey{Name: "app signer " + alg, Owner: owner, Algorithm: hsmAlg(alg), Record: map[string]string{"uscc": "91350100M000100Y43"}}, &k); st != 201 {
		tn.t.Fatalf("create key: %d", st)
	}
	return &k
}

func pemCert(t testing.TB, s string) *smx509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("not PEM")
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (tn *testNode) sign(keyID, token string, req SignRequest) []byte {
	tn.t.Helper()
	var resp SignResponse
	if st := tn.call("POST", "/api/v1/signature/keys/"+keyID+"/sign", token, req, &resp); st != 200 {
		tn.t.Fatalf("sign: %d", st)
	}
	return resp.Signature
}

func (tn *testNode) verify(token string, req VerifyRequest) *Report {
	tn.t.Helper()
	var rep Report
	if st := tn.call("POST", "/api/v1/signature/verify", token, req, &rep); st != 200 {
		tn.t.Fatalf("verify: %d", st)
	}
	return &rep
}

// failed returns the reasons of the failed checks of a report.
func failed(r *Report) []string {
	var out []string
	for _, c := range r.Checks {
		out = append(out, c.Name+":"+c.Reason)
	}
	for _, s := range r.Signers {
		for _, c := range s.Checks {
			if !c.Pass {
				out = append(out, c.Name+":"+c.Reason)
			}
		}
	}
	return out
}

func hasReason(r *Report, reason string) bool {
	for _, f := range failed(r) {
		if strings.HasSuffix(f, ":"+reason) {
			return true
		}
	}
	return false
}

func mustValid(t testing.TB, r *Report) {
	t.Helper()
	if !r.Valid {
		t.Fatalf("not valid: %v\n%s", failed(r), r.Summary)
	}
}

func hsmAlg(s string) hsm.Algorithm { return hsm.Algorithm(s) }

// token makes another bearer token for account id (one made before the
// node's clock was moved on has expired).
func (tn *testNode) token(id string) string {
	tn.t.Helper()
	tok, _, err := tn.n.Env().Authz.CreateToken(context.Background(), id, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatal(err)
	}
	return tok
}

// problem sends JSON to the HTTPS API and returns the status and, for an
// error, the problem+json answer (a test failure when it is not one).
func (tn *testNode) problem(method, path, token string, body any) (int, *httpx.Problem) {
	tn.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		tn.t.Fatal(err)
	}
	req, _ := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 300 {
		return resp.StatusCode, nil
	}
	var p httpx.Problem
	if ct := resp.Header.Get("Content-Type"); ct != httpx.ProblemContentType || json.Unmarshal(raw, &p) != nil {
		tn.t.Fatalf("%s %s: %d %s %s: not problem+json", method, path, resp.StatusCode, ct, raw)
	}
	return resp.StatusCode, &p
}

// revoke has CA operator opTok revoke the certificate of k at caID.
func (tn *testNode) revoke(k *Key, caID, reason, opTok string) {
	tn.t.Helper()
	cert := pemCert(tn.t, k.Certificate)
	if st := tn.call("POST", "/api/v1/ca/"+caID+"/revocations", opTok,
		map[string]string{"serial": cert.SerialNumber.Text(16), "reason": reason}, nil); st != http.StatusOK {
		tn.t.Fatalf("revoke the certificate of key %s: %d", k.ID, st)
	}
}
