package directory_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/testenv"
)

// caSource is the wiring cmd/govtrust does (cmd/govtrust/directory.go),
// repeated here because a test cannot import package main.
type caSource struct{}

func (caSource) Pending(ctx context.Context, q store.Querier, limit int) ([]directory.Event, error) {
	evs, err := ca.PendingOutbox(ctx, q, limit)
	out := make([]directory.Event, len(evs))
	for i, e := range evs {
		out[i] = directory.Event{ID: e.ID, Kind: e.Event, Issuer: e.IssuerID, Serial: e.Serial}
	}
	return out, err
}

func (caSource) MarkPublished(ctx context.Context, tx *store.Tx, ids []int64, at time.Time) error {
	_, err := ca.MarkOutboxPublished(ctx, tx, ids, at)
	return err
}

func (caSource) Certificate(ctx context.Context, q store.Querier, issuer, serial string) (*directory.Certificate, error) {
	c, err := ca.CertificateRecord(ctx, q, issuer, serial)
	if errors.Is(err, ca.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &directory.Certificate{DER: c.DER, Revoked: c.Status == "revoked", RequesterOrg: c.RequesterOrg}, nil
}

func (caSource) Authority(ctx context.Context, q store.Querier, id string) (*directory.Authority, error) {
	a, err := ca.AuthorityRecordOf(ctx, q, id)
	if errors.Is(err, ca.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &directory.Authority{ID: a.ID, Cert: a.Cert, CRL: a.CRL, DeltaCRL: a.DeltaCRL, Cross: a.Cross}, nil
}

// testNode is a node with the CA and the directory, on real listeners.
type testNode struct {
	t      testing.TB
	dir    string
	n      *node.Node
	dirSvc *directory.Service
	tokens map[string]string
	c      *http.Client
	ldap   string // host:port
}

// startNode starts a node in dir with the directory section extra (YAML,
// indented under "directory:"). The LDAP port is fixed before start so the
// certificates' LDAP CRL distribution points name the real listener.
func startNode(t testing.TB, dir, extra, ldapAddr string) *testNode {
	t.Helper()
	return startNodeDB(t, dir, extra, ldapAddr, "")
}

// startNodeDB is startNode on the database dbURL ("" for DIR/govtrust.db).
func startNodeDB(t testing.TB, dir, extra, ldapAddr, dbURL string, set ...func(*node.Options)) *testNode {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(cfg, []byte("directory:\n  publish_interval: 100ms\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if ldapAddr == "" {
		ldapAddr = testenv.FreeAddr(t)
	}
	p := func(s string) *string { return &s }
	svc := directory.New(caSource{})
	// The HTTP port is fixed too: the CA writes listen.http into CRLDP URLs.
	opts := node.Options{DataDir: dir, ConfigFile: cfg, HTTP: p(testenv.FreeAddr(t)), HTTPS: p("127.0.0.1:0"), LDAP: p(ldapAddr),
		LogOutput: io.Discard, Environ: []string{}}
	if dbURL != "" {
		opts.DB = &dbURL
	}
	for _, f := range set {
		f(&opts)
	}
	n, err := node.Start(context.Background(), opts, ca.New(), svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, dirSvc: svc, tokens: map[string]string{}, ldap: n.Addresses().LDAP,
		c: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	for _, role := range []string{"sysadmin", "ra"} {
		tok, err := node.ReadBootstrapToken(dir, role)
		if err != nil {
			t.Fatalf("token %s: %v", role, err)
		}
		tn.tokens[role] = tok
	}
	t.Cleanup(tn.stop)
	// The registration officer of department gaj (orgYAML): the directory
	// files a certificate under a person only when an account of the
	// person's department requested it.
	tn.addAccountIn("ra-gaj", "gaj", policy.RoleRA)
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

func (tn *testNode) addAccount(name string, roles ...policy.Role) {
	tn.t.Helper()
	tn.addAccountIn(name, authz.BootstrapOrg, roles...)
}

// addAccountIn creates account name in organisation org with a token.
func (tn *testNode) addAccountIn(name, org string, roles ...policy.Role) {
	tn.t.Helper()
	ctx := audit.WithActor(context.Background(), "cli:test")
	az := tn.n.Env().Authz
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: org, Clearance: policy.Confidential, Roles: roles})
	if err != nil {
		tn.t.Fatalf("account %s: %v", name, err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatalf("token %s: %v", name, err)
	}
	tn.tokens[name] = tok
}

// do calls the HTTPS API with the token of role.
func (tn *testNode) do(method, path, role, contentType string, body []byte) (int, []byte) {
	tn.t.Helper()
	req, err := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, bytes.NewReader(body))
	if err != nil {
		tn.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+tn.tokens[role])
	}
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// public GETs a public object from the plain HTTP listener.
func (tn *testNode) public(path string) []byte {
	tn.t.Helper()
	resp, err := http.Get("http://" + tn.n.Addresses().HTTP + path)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tn.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

type issued struct {
	Serial      string `json:"serial"`
	Certificate string `json:"certificate"`
	der         []byte
}

// issuePerson issues a person-sign certificate (SM2, LDAP CRLDP) for
// mail from sm2-issuing as the registration officer of department gaj.
func (tn *testNode) issuePerson(cn, mail string) *issued {
	tn.t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		tn.t.Fatal(err)
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{EmailAddresses: []string{mail}}, key)
	if err != nil {
		tn.t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), "profile": "person-sign",
		"record": map[string]string{"CN": cn, "O": "测试局", "id-card": "11010519491231002X", "mail": mail},
	})
	status, raw := tn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra-gaj", "application/json", body)
	if status != http.StatusCreated {
		tn.t.Fatalf("issue: %d %s", status, raw)
	}
	var out issued
	if err := json.Unmarshal(raw, &out); err != nil {
		tn.t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(out.Certificate))
	out.der = b.Bytes
	return &out
}

func (tn *testNode) revoke(serial string) {
	tn.t.Helper()
	body, _ := json.Marshal(map[string]string{"serial": serial, "reason": "keyCompromise"})
	if status, raw := tn.do("POST", "/api/v1/ca/sm2-issuing/revocations", "ra-gaj", "application/json", body); status != http.StatusOK {
		tn.t.Fatalf("revoke: %d %s", status, raw)
	}
}

// ldapsearch runs ldapsearch -x -LLL against url with args; it fails the
// test on a non-zero exit unless allowFail.
func ldapsearch(t testing.TB, url string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.LookPath(t, "ldapsearch")
	cmd := exec.Command(bin, append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-H", url}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("ldapsearch %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), err
}

// fetchBinary fetches attr of the entry dn with `ldapsearch -t` (the value
// written raw to a file) and returns the file's bytes, nil if the entry or
// attribute is absent.
func fetchBinary(t testing.TB, url, dn, attr string) []byte {
	t.Helper()
	tmp := t.TempDir()
	if _, err := ldapsearch(t, url, "-b", dn, "-s", "base", "-t", "-T", tmp, "(objectClass=*)", attr); err != nil {
		if strings.Contains(err.Error(), "No such object") {
			return nil
		}
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(tmp, "ldapsearch-*"))
	if len(files) == 0 {
		return nil
	}
	if len(files) > 1 {
		t.Fatalf("%s %s: %d values, want one", dn, attr, len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond every 50 ms for up to limit; it returns how long
// it took, or fails the test with what the last check said.
func eventually(t testing.TB, limit time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, limit, err)
	return 0
}
