package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

type fixture struct {
	db    *store.DB
	svc   *Service
	clock *clock.Fake
	ctx   context.Context
}

func newFixture(t testing.TB, db *store.DB) *fixture {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC))
	engine, err := policy.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(db, audit.New("n1", clk), NewIntegrityForTest([]byte("0123456789abcdef0123456789abcdef")), engine, clk)
	return &fixture{db: db, svc: svc, clock: clk, ctx: audit.WithActor(context.Background(), "test")}
}

func (f *fixture) account(t *testing.T, name, org string, clearance policy.Level, roles ...policy.Role) (*Account, string) {
	t.Helper()
	a, err := f.svc.CreateAccount(f.ctx, NewAccount{Name: name, Kind: KindPerson, Org: org, Clearance: clearance, Roles: roles})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	tok, _, err := f.svc.CreateToken(f.ctx, a.ID, name+"-token", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return a, tok
}

func (f *fixture) count(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(f.ctx, "SELECT COUNT(*) FROM audit_log WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var sets = []store.Migrations{Migrations, audit.Migrations}

// K-03: role sets that must not be held together are refused, at creation
// and at grant, and each refusal is audited.
func TestRoleExclusivity(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		for _, roles := range [][]policy.Role{
			{policy.RoleAuditor, policy.RoleCAOperator},
			{policy.RoleCAOperator, policy.RoleRA},
		} {
			_, err := f.svc.CreateAccount(f.ctx, NewAccount{Name: "x-" + string(roles[1]), Kind: KindPerson, Org: "o", Roles: roles})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("create with %v: %v", roles, err)
			}
		}
		op, _ := f.account(t, "operator", "o", policy.Internal, policy.RoleCAOperator)
		if err := f.svc.Grant(f.ctx, op.ID, policy.RoleRA); !errors.Is(err, ErrConflict) {
			t.Fatalf("grant ra to a CA operator: %v", err)
		}
		if n := f.count(t, "outcome = 'denied' AND action IN ('authz.account.create', 'authz.role.grant')"); n != 3 {
			t.Fatalf("%d refusals audited, want 3", n)
		}
		a, err := f.svc.Account(f.ctx, op.ID)
		if err != nil || len(a.Roles) != 1 {
			t.Fatalf("operator after refused grant: %+v %v", a, err)
		}
		if err := f.svc.Grant(f.ctx, op.ID, policy.RoleOfficial); err != nil {
			t.Fatalf("compatible grant: %v", err)
		}
	}, sets...)
}

func newGuardedServer(t *testing.T, f *fixture) *httptest.Server {
	t.Helper()
	mux := f.svc.NewMux()
	mux.Handle("GET /metrics", Rule{Action: "metrics.read"}, func(w http.ResponseWriter, r *http.Request) error {
		if PrincipalFrom(r.Context()) == nil {
			t.Error("no principal in the handler")
		}
		return httpx.WriteJSON(w, 200, map[string]string{"ok": "yes"})
	})
	mux.Handle("POST /tokens", Rule{Action: "authz.token.create"}, func(w http.ResponseWriter, r *http.Request) error {
		p := PrincipalFrom(r.Context())
		_, _, err := f.svc.CreateToken(r.Context(), p.Account.ID, "made-by-handler", nil, time.Hour)
		if err != nil {
			return err
		}
		w.WriteHeader(201)
		return nil
	})
	mux.Handle("GET /healthz", Rule{Public: "liveness"}, func(w http.ResponseWriter, r *http.Request) error { return nil })
	srv := httptest.NewServer(httpx.Edge(mux, httpx.EdgeOptions{Server: "test"}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, c *http.Client, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != httpx.ProblemContentType {
		t.Errorf("%s %s: %d is not a problem", method, url, resp.StatusCode)
	}
	return resp.StatusCode
}

func TestGuardHTTP(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		_, sysTok := f.account(t, "sys", "platform", policy.Confidential, policy.RoleSysAdmin)
		secAcc, secTok := f.account(t, "sec", "platform", policy.Confidential, policy.RoleSecAdmin)
		_, audTok := f.account(t, "aud", "platform", policy.Confidential, policy.RoleAuditor)
		_, raTok := f.account(t, "clerk", "demo", policy.Internal, policy.RoleRA)
		srv := newGuardedServer(t, f)
		c := srv.Client()
		cases := []struct {
			name, method, path, token string
			want                      int
		}{
			{"public route", "GET", "/healthz", "", 200},
			{"no credential", "GET", "/metrics", "", 401},
			{"garbage token", "GET", "/metrics", "gt_nope", 401},
			{"sysadmin reads metrics", "GET", "/metrics", sysTok, 200},
			{"auditor reads metrics", "GET", "/metrics", audTok, 200},
			{"ra may not read metrics", "GET", "/metrics", raTok, 403},
			{"auditor may not create tokens", "POST", "/tokens", audTok, 403},
			{"secadmin creates tokens", "POST", "/tokens", secTok, 201},
		}
		for _, c2 := range cases {
			if got := call(t, c, c2.method, srv.URL+c2.path, c2.token); got != c2.want {
				t.Errorf("%s: %d, want %d", c2.name, got, c2.want)
			}
		}
		// Every decision is audited: allowed requests once each (the token
		// creation inside its own transaction, carrying the decision).
		if n := f.count(t, "outcome = 'denied'"); n != 4 {
			t.Errorf("%d denials audited, want 4", n)
		}
		if n := f.count(t, "action = 'metrics.read' AND outcome = 'success'"); n != 2 {
			t.Errorf("%d allowed metrics reads audited, want 2", n)
		}
		if n := f.count(t, "action = 'authz.token.create' AND details LIKE '%\"decision\":\"allow\"%'"); n != 1 {
			t.Errorf("the handler's record does not carry the decision (%d)", n)
		}

		// Revoked and expired tokens are refused.
		toks, _ := f.svc.Tokens(f.ctx, secAcc.ID)
		if err := f.svc.RevokeToken(f.ctx, toks[0].ID); err != nil {
			t.Fatal(err)
		}
		if got := call(t, c, "POST", srv.URL+"/tokens", secTok); got != 401 {
			t.Errorf("revoked token: %d", got)
		}
		f.clock.Add(2 * time.Hour)
		if got := call(t, c, "GET", srv.URL+"/metrics", sysTok); got != 401 {
			t.Errorf("expired token: %d", got)
		}
	}, sets...)
}

// TestBearerSchemeCaseInsensitive: the auth scheme name is
// case-insensitive (RFC 9110 §11.1) and followed by one or more spaces
// (§11.4): "bearer", "BEARER" and "Bearer  " carry the token as well as
// "Bearer "; another scheme, or a bare token, does not.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	db := storetest.SQLite(t, sets...)
	f := newFixture(t, db)
	_, tok := f.account(t, "sys", "platform", policy.Confidential, policy.RoleSysAdmin)
	srv := newGuardedServer(t, f)
	for _, c := range []struct {
		header string
		want   int
	}{
		{"Bearer " + tok, 200},
		{"bearer " + tok, 200},
		{"BEARER " + tok, 200},
		{"bEaReR " + tok, 200},
		{"Bearer   " + tok, 200},
		{"Basic " + tok, 401},
		{"Bearer" + tok, 401},
		{"Bearer", 401},
		{tok, 401},
		{"bearer gt_nope", 401},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		req.Header.Set("Authorization", c.header)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: %d, want %d", strings.Replace(c.header, tok, "TOKEN", 1), resp.StatusCode, c.want)
		}
	}
}

// A role binding or token edited directly in the database is detected and
// refused, and the refusal audited.
func TestIntegrity(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		clerk, raTok := f.account(t, "clerk", "demo", policy.Internal, policy.RoleRA)
		srv := newGuardedServer(t, f)
		// Promote the clerk to sysadmin behind the platform's back.
		if _, err := db.Exec(f.ctx, "UPDATE authz_role_bindings SET role = 'sysadmin' WHERE account_id = ?", clerk.ID); err != nil {
			t.Fatal(err)
		}
		if got := call(t, srv.Client(), "GET", srv.URL+"/metrics", raTok); got != 403 {
			t.Fatalf("tampered binding honoured: %d", got)
		}
		a, err := f.svc.Account(f.ctx, clerk.ID)
		if err != nil || len(a.Roles) != 0 || len(a.Tampered) != 1 {
			t.Fatalf("account after tampering: %+v %v", a, err)
		}
		// Extend a token's life in the database.
		if _, err := db.Exec(f.ctx, "UPDATE authz_tokens SET expires_at = '2099-01-01T00:00:00Z' WHERE account_id = ?", clerk.ID); err != nil {
			t.Fatal(err)
		}
		if got := call(t, srv.Client(), "GET", srv.URL+"/metrics", raTok); got != 401 {
			t.Fatalf("tampered token accepted: %d", got)
		}
		// Raise an account's clearance.
		if _, err := db.Exec(f.ctx, "UPDATE authz_accounts SET clearance = 3 WHERE id = ?", clerk.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Account(f.ctx, clerk.ID); !errors.Is(err, ErrTampered) {
			t.Fatalf("tampered account: %v", err)
		}
		if n := f.count(t, "action = 'authz.integrity' AND outcome = 'failure'"); n < 2 {
			t.Fatalf("%d integrity alerts audited", n)
		}
	}, sets...)
}

// The integrity key lives wrapped by a key of the key manager and survives a
// restart.
func TestOpenIntegrity(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		km, err := soft.Open(ctx, soft.NewSQLStore(db), soft.Config{AllowDev: true})
		if err != nil {
			t.Fatal(err)
		}
		a, err := OpenIntegrity(ctx, db, km, "")
		if err != nil {
			t.Fatal(err)
		}
		b, err := OpenIntegrity(ctx, db, km, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.MAC("t", "x") != b.MAC("t", "x") || a.MAC("t", "x") == a.MAC("t", "y") || a.MAC("t", "ab", "c") == a.MAC("t", "a", "bc") {
			t.Fatal("integrity key not stable or MAC not injective")
		}
		var wrapped []byte
		if err := db.QueryRow(ctx, "SELECT value FROM authz_meta WHERE name = 'integrity_key'").Scan(&wrapped); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(wrapped), string(a.key)) {
			t.Fatal("integrity key stored in clear")
		}
	}, append(sets, soft.Migrations)...)
}

// testCA is a small ECDSA CA for client-certificate tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, serial int64, cn string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"测试局"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) crl(t *testing.T, number int64, revoked ...int64) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(der)
	return crl
}

// TLS client certificates: bound and valid → allowed; revoked → 401;
// unbound → 401; without a CRL for the issuer → 401 (fail closed).
func TestClientCertificates(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		ca := newTestCA(t)
		roots := x509.NewCertPool()
		roots.AddCert(ca.cert)
		crls := NewCRLChecker(nil)
		f.svc.SetCertAuth(&CertAuth{Roots: roots, Revocation: crls})
		sys, _ := f.account(t, "sys", "platform", policy.Confidential, policy.RoleSysAdmin)
		good, revoked, unbound := ca.issue(t, 10, "ops-1"), ca.issue(t, 11, "ops-2"), ca.issue(t, 12, "stranger")
		for _, c := range []tls.Certificate{good, revoked} {
			if err := f.svc.BindCertificate(f.ctx, sys.ID, c.Leaf); err != nil {
				t.Fatal(err)
			}
		}
		mux := f.svc.NewMux()
		mux.Handle("GET /metrics", Rule{Action: "metrics.read"}, func(w http.ResponseWriter, r *http.Request) error {
			if !strings.HasPrefix(PrincipalFrom(r.Context()).Via, "cert/") {
				t.Error("principal not from the certificate")
			}
			return nil
		})
		srv := httptest.NewUnstartedServer(httpx.Edge(mux, httpx.EdgeOptions{}))
		srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: roots}
		srv.StartTLS()
		defer srv.Close()
		client := func(c tls.Certificate) *http.Client {
			tr := srv.Client().Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.Certificates = []tls.Certificate{c}
			return &http.Client{Transport: tr}
		}
		if got := call(t, client(good), "GET", srv.URL+"/metrics", ""); got != 401 {
			t.Fatalf("no CRL loaded must fail closed: %d", got)
		}
		crls.Add(ca.crl(t, 1, 11))
		for name, tc := range map[string]struct {
			cert tls.Certificate
			want int
		}{"bound": {good, 200}, "revoked": {revoked, 401}, "unbound": {unbound, 401}} {
			if got := call(t, client(tc.cert), "GET", srv.URL+"/metrics", ""); got != tc.want {
				t.Errorf("%s certificate: %d, want %d", name, got, tc.want)
			}
		}
		// An older CRL does not replace a newer one.
		crls.Add(ca.crl(t, 0))
		if got := call(t, client(revoked), "GET", srv.URL+"/metrics", ""); got != 401 {
			t.Errorf("older CRL un-revoked a certificate: %d", got)
		}
	}, sets...)
}

// migrationsBefore is the authz migration set without the files from
// version v on: a database as an older release left it.
func migrationsBefore(t *testing.T, v string) store.Migrations {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(Migrations.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Base(p) >= v {
			return err
		}
		b, err := fs.ReadFile(Migrations.FS, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return store.Migrations{Service: Migrations.Service, FS: m}
}

// A certificate binding names one certificate (its SHA-256), not its issuer
// and subject: another certificate with the same names (one a registration
// officer had issued for a key of its own) neither logs in nor is the
// account's certificate. A binding made before (issuer and subject only,
// carried over by the migration) no longer counts and says so; binding
// the certificate again replaces it. A renewal is bound beside the old
// certificate; a binding edited to name another certificate is refused.
func TestCertBindingNamesCertificate(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		ca := newTestCA(t)
		good, twin, legacy, renewed := ca.issue(t, 10, "ops-1"), ca.issue(t, 11, "ops-1"), ca.issue(t, 12, "ops-old"), ca.issue(t, 13, "ops-1")
		// A binding of the older release, by issuer and subject.
		sys, _ := f.account(t, "sys", "platform", policy.Confidential, policy.RoleSysAdmin)
		issuer, subject, created := legacy.Leaf.Issuer.String(), legacy.Leaf.Subject.String(), "2026-01-01T00:00:00Z"
		if _, err := db.Exec(f.ctx, "INSERT INTO authz_cert_bindings (issuer, subject, account_id, created_at, mac) VALUES (?, ?, ?, ?, ?)",
			issuer, subject, sys.ID, created, f.svc.mac.MAC("authz_cert_bindings", issuer, subject, sys.ID, created)); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(f.ctx, Migrations); err != nil {
			t.Fatal(err)
		}
		if n, err := f.svc.UnpinnedCertBindings(f.ctx); err != nil || n != 1 {
			t.Fatalf("unpinned bindings: %d, %v; want 1", n, err)
		}

		roots := x509.NewCertPool()
		roots.AddCert(ca.cert)
		crls := NewCRLChecker(nil)
		crls.Add(ca.crl(t, 1))
		f.svc.SetCertAuth(&CertAuth{Roots: roots, Revocation: crls})
		if err := f.svc.BindCertificate(f.ctx, sys.ID, good.Leaf); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.BindCertificate(f.ctx, sys.ID, good.Leaf); !errors.Is(err, ErrConflict) {
			t.Errorf("the same certificate bound twice: %v", err)
		}
		if err := f.svc.BindCertificate(f.ctx, sys.ID, &x509.Certificate{Issuer: good.Leaf.Issuer, Subject: good.Leaf.Subject}); !errors.Is(err, ErrInvalid) {
			t.Errorf("a binding without the certificate's DER: %v", err)
		}
		mux := f.svc.NewMux()
		mux.Handle("GET /metrics", Rule{Action: "metrics.read"}, func(w http.ResponseWriter, r *http.Request) error { return nil })
		srv := httptest.NewUnstartedServer(httpx.Edge(mux, httpx.EdgeOptions{}))
		srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: roots}
		srv.StartTLS()
		defer srv.Close()
		login := func(c tls.Certificate) (int, string) {
			t.Helper()
			tr := srv.Client().Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.Certificates = []tls.Certificate{c}
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		account := func(c tls.Certificate) (*Account, error) { return f.svc.CertificateAccount(f.ctx, c.Certificate[0]) }

		if st, body := login(good); st != 200 {
			t.Fatalf("the bound certificate: %d %s", st, body)
		}
		if a, err := account(good); err != nil || a.ID != sys.ID {
			t.Fatalf("account of the bound certificate: %v, %v", a, err)
		}
		// Same issuer and subject, another key.
		if st, body := login(twin); st != 401 {
			t.Errorf("a certificate with the bound certificate's names: %d %s", st, body)
		}
		if a, err := account(twin); !errors.Is(err, ErrNotFound) {
			t.Errorf("account of a certificate with the bound certificate's names: %v, %v", a, err)
		}
		// The binding of the older release.
		if st, body := login(legacy); st != 401 || !strings.Contains(body, "bind the certificate again") {
			t.Errorf("a certificate bound by issuer and subject only: %d %s", st, body)
		}
		if _, err := account(legacy); !errors.Is(err, ErrUnpinnedBinding) || !errors.Is(err, ErrNotFound) {
			t.Errorf("account of a certificate bound by issuer and subject only: %v", err)
		}
		if err := f.svc.BindCertificate(f.ctx, sys.ID, legacy.Leaf); err != nil {
			t.Fatal(err)
		}
		if n, err := f.svc.UnpinnedCertBindings(f.ctx); err != nil || n != 0 {
			t.Errorf("unpinned bindings after binding again: %d, %v", n, err)
		}
		if st, body := login(legacy); st != 200 {
			t.Errorf("bound again: %d %s", st, body)
		}
		// A renewal with the same names is bound beside the old one.
		if err := f.svc.BindCertificate(f.ctx, sys.ID, renewed.Leaf); err != nil {
			t.Fatalf("renewed certificate: %v", err)
		}
		for _, c := range []tls.Certificate{good, renewed} {
			if st, body := login(c); st != 200 {
				t.Errorf("certificate %x: %d %s", c.Leaf.SerialNumber, st, body)
			}
		}
		// A binding edited to name the twin.
		if _, err := db.Exec(f.ctx, "UPDATE authz_cert_bindings SET cert_sha256 = ? WHERE cert_sha256 = ?",
			CertFingerprint(twin.Certificate[0]), CertFingerprint(good.Certificate[0])); err != nil {
			t.Fatal(err)
		}
		if st, body := login(twin); st != 401 {
			t.Errorf("a binding edited to name another certificate: %d %s", st, body)
		}
		if _, err := account(twin); !errors.Is(err, ErrTampered) {
			t.Errorf("account through an edited binding: %v", err)
		}
		if n := f.count(t, "action = 'authz.integrity'"); n < 2 {
			t.Errorf("%d integrity alerts, want 2", n)
		}
		if n := f.count(t, "action = 'authz.cert.bind' AND details LIKE ?", "%"+CertFingerprint(renewed.Certificate[0])+"%"); n != 1 {
			t.Errorf("%d bind records naming the certificate's SHA-256", n)
		}
	}, migrationsBefore(t, "00005"), audit.Migrations)
}

func TestBusWrapper(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		_, sysTok := f.account(t, "sys", "platform", policy.Confidential, policy.RoleSysAdmin)
		_, raTok := f.account(t, "clerk", "demo", policy.Internal, policy.RoleRA)
		called := 0
		h := f.svc.Bus("metrics.read", nil, func(ctx context.Context, m *Message) error {
			if PrincipalFrom(ctx) == nil {
				t.Error("no principal")
			}
			called++
			return nil
		})
		msg := func(tok string) *Message {
			m := &Message{Subject: "xchg.demo.test", Header: map[string][]string{}}
			if tok != "" {
				m.Header["Authorization"] = []string{"Bearer " + tok}
			}
			return m
		}
		if err := h(f.ctx, msg("")); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("no token: %v", err)
		}
		if err := h(f.ctx, msg(raTok)); !errors.Is(err, ErrForbidden) {
			t.Fatalf("wrong role: %v", err)
		}
		if err := h(f.ctx, msg(sysTok)); err != nil || called != 1 {
			t.Fatalf("allowed: %v, called %d", err, called)
		}
		if n := f.count(t, "details LIKE '%xchg.demo.test%'"); n != 3 {
			t.Fatalf("bus decisions not audited (%d)", n)
		}
	}, sets...)
}

func TestMuxRequiresDeclarations(t *testing.T) {
	f := &fixture{svc: &Service{}}
	for name, rule := range map[string]Rule{
		"nothing":        {},
		"unknown action": {Action: "ca.frobnicate"},
		"both":           {Action: "metrics.read", Public: "why not"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered without panic", name)
				}
			}()
			f.svc.NewMux().Handle("GET /x", rule, func(http.ResponseWriter, *http.Request) error { return nil })
		}()
	}
	m := f.svc.NewMux()
	m.Handle("GET /a", Rule{Public: "public by design"}, func(http.ResponseWriter, *http.Request) error { return nil })
	m.Handle("GET /b", Rule{Action: "metrics.read"}, func(http.ResponseWriter, *http.Request) error { return nil })
	if r := m.Routes(); len(r) != 2 || r[0].Public == "" || r[1].Action != "metrics.read" {
		t.Fatalf("routes %+v", r)
	}
	_ = fmt.Sprint()
}

// A guarded handler that panics, or fails after its answer started, is
// audited as a failure, and a started answer is not followed by a problem.
func TestGuardFailuresAudited(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		_, sysTok := f.account(t, "sys", "platform", policy.Confidential, policy.RoleSysAdmin)
		mux := f.svc.NewMux()
		mux.Handle("GET /boom", Rule{Action: "metrics.read"}, func(w http.ResponseWriter, r *http.Request) error {
			panic("boom")
		})
		mux.Handle("GET /partial", Rule{Action: "node.config.read"}, func(w http.ResponseWriter, r *http.Request) error {
			_, _ = w.Write([]byte(`{"partial":1}`))
			return errors.New("database went away mid-stream")
		})
		srv := httptest.NewServer(httpx.Edge(mux, httpx.EdgeOptions{}))
		defer srv.Close()
		if got := call(t, srv.Client(), "GET", srv.URL+"/boom", sysTok); got != 500 {
			t.Fatalf("panic: %d", got)
		}
		req, _ := http.NewRequest("GET", srv.URL+"/partial", nil)
		req.Header.Set("Authorization", "Bearer "+sysTok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != `{"partial":1}` {
			t.Fatalf("a problem was appended to a started answer: %q", body)
		}
		for _, action := range []string{"metrics.read", "node.config.read"} {
			if n := f.count(t, "action = ? AND outcome = 'failure'", action); n != 1 {
				t.Errorf("%s: %d failure records, want 1", action, n)
			}
			if n := f.count(t, "action = ? AND outcome = 'success'", action); n != 0 {
				t.Errorf("%s: %d success records, want 0", action, n)
			}
		}
	}, sets...)
}
