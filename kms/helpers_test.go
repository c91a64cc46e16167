package kms

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
)

func ptr(s string) *string { return &s }

// syncBuffer collects the node's logs, to scan them for key material.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// testNode is a running node with the key service and tokens by name.
type testNode struct {
	t      testing.TB
	dir    string
	n      *node.Node
	svc    *Service
	clock  *clock.Fake
	logs   *syncBuffer
	tokens map[string]string
	ids    map[string]string
	c      *http.Client
	// responses collects every answer body, to scan for key material.
	responses [][]byte
}

func startNode(t testing.TB, db *string, environ ...string) *testNode {
	t.Helper()
	dir := t.TempDir()
	svc := New()
	clk := clock.NewFake(time.Now())
	logs := &syncBuffer{}
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""), DB: db,
		LogOutput: logs, Environ: append([]string{}, environ...), Clock: clk}
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, clock: clk, logs: logs, tokens: map[string]string{}, ids: map[string]string{},
		c: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	t.Cleanup(func() {
		if err := n.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	tok, err := node.ReadBootstrapToken(dir, "secadmin")
	if err != nil {
		t.Fatal(err)
	}
	tn.tokens["secadmin"] = tok
	return tn
}

// account makes an account with roles and a token for it, offline (the API
// does not create administrators).
func (tn *testNode) account(name, org string, roles ...policy.Role) {
	tn.t.Helper()
	ctx := context.Background()
	az := tn.n.Env().Authz
	kind := authz.KindPerson
	if len(roles) == 1 && roles[0] == policy.RoleApplication {
		kind = authz.KindApplication
	}
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: kind, Org: org, Roles: roles})
	if err != nil {
		tn.t.Fatal(err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.tokens[name], tn.ids[name] = tok, acc.ID
}

// do calls the API as who with a JSON body (or raw bytes with a content
// type in hdr) and returns the status and the answer.
func (tn *testNode) do(method, path, who string, body any, hdr map[string]string) (int, []byte, http.Header) {
	tn.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, rd)
	if err != nil {
		tn.t.Fatal(err)
	}
	if _, raw := body.([]byte); body != nil && !raw {
		req.Header.Set("Content-Type", "application/json")
	}
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+tn.tokens[who])
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
	tn.responses = append(tn.responses, raw)
	return resp.StatusCode, raw, resp.Header
}

// must calls do and decodes a 2xx answer into out.
func (tn *testNode) must(method, path, who string, body, out any) {
	tn.t.Helper()
	st, raw, _ := tn.do(method, path, who, body, nil)
	if st/100 != 2 {
		tn.t.Fatalf("%s %s as %s: %d %s", method, path, who, st, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			tn.t.Fatalf("decode %s: %v", raw, err)
		}
	}
}
