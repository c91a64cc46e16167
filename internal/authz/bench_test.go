package authz

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// benchAccount returns a fixture on SQLite (synchronous=FULL) with the
// account acc and a token for it.
func benchAccount(b *testing.B, acc NewAccount) (*fixture, string) {
	f := newFixture(b, storetest.SQLite(b, Migrations, audit.Migrations))
	a, err := f.svc.CreateAccount(f.ctx, acc)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := f.svc.CreateToken(f.ctx, a.ID, "bench", nil, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return f, tok
}

// BenchmarkMiddleware measures what the security middleware adds to a
// request on SQLite (synchronous=FULL): token look-up and MAC checks, the
// policy decision and the audit record, against the same handler unguarded.
// Report the difference of the two ns/op as the overhead.
func BenchmarkMiddleware(b *testing.B) {
	f, tok := benchAccount(b, NewAccount{Name: "sys", Kind: KindPerson, Org: "platform", Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleSysAdmin}})
	h := func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(204); return nil }
	guarded := f.svc.NewMux()
	guarded.Handle("GET /metrics", Rule{Action: "metrics.read"}, h)
	open := f.svc.NewMux()
	open.Handle("GET /metrics", Rule{Public: "benchmark baseline"}, h)
	for name, mux := range map[string]*Mux{"guarded": guarded, "unguarded": open} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				r := httptest.NewRequest("GET", "/metrics", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, r)
				if w.Code != 204 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// BenchmarkAuthenticateToken measures a bearer token's authentication on
// SQLite: served from the token cache (one read of authz_epoch) and with
// the cache emptied before each request (the read transaction with the
// token, account and role-binding queries and their MAC checks).
func BenchmarkAuthenticateToken(b *testing.B) {
	f, tok := benchAccount(b, NewAccount{Name: "ra", Kind: KindPerson, Org: "demo", Clearance: policy.Internal, Roles: []policy.Role{policy.RoleRA}})
	for _, cached := range []bool{true, false} {
		name := map[bool]string{true: "cached", false: "uncached"}[cached]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !cached {
					f.svc.tokens.mu.Lock()
					f.svc.tokens.entries = nil
					f.svc.tokens.mu.Unlock()
				}
				if _, err := f.svc.AuthenticateBearer(f.ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
