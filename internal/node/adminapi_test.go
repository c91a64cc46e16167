package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/store"
)

type apiClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (a *apiClient) do(method, path, token string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if strings.Contains(resp.Header.Get("Content-Type"), "json") && !strings.Contains(resp.Header.Get("Content-Type"), "ndjson") {
		_ = json.Unmarshal(raw, &out)
	} else {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

func startAPI(t *testing.T) (*Node, *apiClient, map[string]string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	n, err := Start(context.Background(), testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	toks := map[string]string{}
	for _, r := range bootstrapRoles {
		toks[r], _ = ReadBootstrapToken(dir, r)
	}
	return n, &apiClient{t: t, base: "https://" + n.Addresses().HTTPS, c: insecureClient()}, toks
}

// Every route of a running node declares its action (known to the policy
// catalogue) or why it is public.
func TestEveryRouteDeclared(t *testing.T) {
	n, _, _ := startAPI(t)
	pub, api := n.Routes()
	if len(pub) < 2 || len(api) < 10 {
		t.Fatalf("too few routes: %d public, %d api", len(pub), len(api))
	}
	for _, r := range append(pub, api...) {
		if r.Public != "" {
			continue
		}
		if _, ok := policy.Lookup(r.Action); !ok {
			t.Errorf("%s: action %q not in the catalogue", r.Pattern, r.Action)
		}
	}
}

// Separation of the three administrators, and tokens through the API.
func TestAdminSeparation(t *testing.T) {
	_, api, tok := startAPI(t)
	cases := []struct {
		name, method, path, who string
		body                    any
		want                    int
	}{
		{"auditor exports the audit log", "GET", "/api/v1/audit/records", "auditor", nil, 200},
		{"auditor verifies the audit log", "GET", "/api/v1/audit/verify", "auditor", nil, 200},
		{"auditor cannot create accounts", "POST", "/api/v1/accounts", "auditor", map[string]any{"name": "x", "kind": "person", "org": "o", "roles": []string{"official"}}, 403},
		{"auditor cannot create tokens", "POST", "/api/v1/tokens", "auditor", map[string]any{"account": "auditor", "name": "t", "ttl": "1h"}, 403},
		{"sysadmin cannot read audit records", "GET", "/api/v1/audit/records", "sysadmin", nil, 403},
		{"sysadmin reads checkpoints", "GET", "/api/v1/audit/checkpoints", "sysadmin", nil, 200},
		{"sysadmin cannot grant roles", "POST", "/api/v1/accounts/x/roles", "sysadmin", map[string]any{"role": "auditor"}, 403},
		{"ra cannot list accounts", "GET", "/api/v1/accounts", "ra", nil, 403},
		{"secadmin lists accounts", "GET", "/api/v1/accounts", "secadmin", nil, 200},
		{"anonymous", "GET", "/api/v1/accounts", "", nil, 401},
		{"secadmin cannot create an administrator", "POST", "/api/v1/accounts", "secadmin", map[string]any{"name": "aud-2", "kind": "person", "org": "platform", "roles": []string{"auditor"}}, 403},
		{"secadmin cannot mint the auditor's token", "POST", "/api/v1/tokens", "secadmin", map[string]any{"account": "auditor", "name": "t", "ttl": "1h"}, 403},
		{"secadmin cannot mint the sysadmin's token", "POST", "/api/v1/tokens", "secadmin", map[string]any{"account": "sysadmin", "name": "t", "ttl": "1h"}, 403},
		{"secadmin mints its own token", "POST", "/api/v1/tokens", "secadmin", map[string]any{"account": "secadmin", "name": "t", "ttl": "1h"}, 201},
	}
	for _, c := range cases {
		if got, body := api.do(c.method, c.path, tok[c.who], c.body); got != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, got, body, c.want)
		}
	}
	// The secadmin creates an account, a token for it, and revokes it.
	code, acc := api.do("POST", "/api/v1/accounts", tok["secadmin"], map[string]any{"name": "clerk-2", "kind": "person", "org": "demo", "clearance": "内部", "roles": []string{"ra"}})
	if code != 201 {
		t.Fatalf("create account: %d %v", code, acc)
	}
	code, created := api.do("POST", "/api/v1/tokens", tok["secadmin"], map[string]any{"account": "clerk-2", "name": "desk", "ttl": "24h"})
	if code != 201 || created["token"] == nil {
		t.Fatalf("create token: %d %v", code, created)
	}
	clerk := created["token"].(string)
	if code, _ := api.do("GET", "/api/v1/accounts", clerk, nil); code != 403 {
		t.Fatalf("new ra token lists accounts: %d", code)
	}
	info := created["info"].(map[string]any)
	if code, _ := api.do("DELETE", "/api/v1/tokens/"+info["id"].(string), tok["secadmin"], nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ := api.do("GET", "/api/v1/accounts", clerk, nil); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	// Granting a role that conflicts with the account's is refused (K-03).
	id := acc["id"].(string)
	if code, body := api.do("POST", "/api/v1/accounts/"+id+"/roles", tok["secadmin"], map[string]any{"role": "ca-operator"}); code != 409 {
		t.Fatalf("ra + ca-operator: %d %v", code, body)
	}
	// The export is JSON lines and shows the refusal.
	code, exp := api.do("GET", "/api/v1/audit/records", tok["auditor"], nil)
	if code != 200 || !strings.Contains(exp["raw"].(string), `"action":"authz.role.grant","object":"account/`+id+`","outcome":"denied"`) {
		t.Fatalf("export: %d\n%v", code, exp["raw"])
	}
}

// K-01 over the API: the requester cannot approve, one approval of two does
// not execute, two distinct approvers do, and only once.
func TestDualControlK01(t *testing.T) {
	n, api, tok := startAPI(t)
	ctx := context.Background()
	// Two more security administrators to approve, made offline as
	// administrator accounts are (the API refuses to).
	var approvers []string
	cli := audit.WithActor(ctx, "cli:test")
	for _, name := range []string{"sec-2", "sec-3"} {
		acc, err := n.authz.CreateAccount(cli, authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: "platform", Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleSecAdmin}})
		if err != nil {
			t.Fatal(err)
		}
		secret, _, err := n.authz.CreateToken(cli, acc.ID, "t", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		approvers = append(approvers, secret)
	}
	requester, err := n.authz.AccountByName(ctx, "secadmin")
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"op":"hsm.key.delete","uri":"soft:old/key"}`)
	req, err := n.dual.Create(ctx, dual.NewRequest{Kind: "hsm.key.delete", Requester: requester.ID, Payload: payload, Required: 2, TTL: time.Hour, Summary: "delete an old key"})
	if err != nil {
		t.Fatal(err)
	}
	hash := map[string]any{"payload_hash": hex.EncodeToString(dual.Hash(payload))}
	path := "/api/v1/approvals/" + req.ID
	if code, body := api.do("POST", path+"/approve", tok["secadmin"], hash); code != 403 {
		t.Fatalf("self-approval: %d %v", code, body)
	}
	if code, body := api.do("POST", path+"/approve", approvers[0], hash); code != 200 || body["status"] != "pending" {
		t.Fatalf("first approval: %d %v", code, body)
	}
	exec := func() error {
		return n.dual.Do(ctx, req.ID, payload, func(tx *store.Tx) error { return nil })
	}
	if err := exec(); err == nil {
		t.Fatal("executed with one of two approvals")
	}
	if code, _ := api.do("POST", path+"/approve", approvers[0], hash); code != 409 {
		t.Fatalf("same approver twice: %d", code)
	}
	if code, body := api.do("POST", path+"/approve", approvers[1], map[string]any{"payload_hash": strings.Repeat("00", 32)}); code != 409 {
		t.Fatalf("approval of another payload: %d %v", code, body)
	}
	if code, body := api.do("POST", path+"/approve", approvers[1], hash); code != 200 || body["status"] != "approved" {
		t.Fatalf("second approval: %d %v", code, body)
	}
	if err := exec(); err != nil {
		t.Fatalf("execute: %v", err)
	}
	if err := exec(); err == nil {
		t.Fatal("executed twice")
	}
	if code, body := api.do("GET", path, approvers[0], nil); code != 200 || body["status"] != "executed" {
		t.Fatalf("read: %d %v", code, body)
	}
}
