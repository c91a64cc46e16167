package authz

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// The token cache serves a token seen before only while nothing that
// decides what it authenticates as has changed, whoever changed it: the
// service itself, another service on the same database (the offline CLI,
// another node), or SQL by hand.
func TestTokenCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		// Another process on the same database: its own Service, its own cache.
		other := New(db, audit.New("n2", f.clock), NewIntegrityForTest([]byte("0123456789abcdef0123456789abcdef")), f.svc.engine, f.clock)
		auth := func(tok string) (*Principal, error) {
			t.Helper()
			return f.svc.AuthenticateBearer(f.ctx, tok)
		}
		mustAuth := func(tok string) *Principal {
			t.Helper()
			p, err := auth(tok)
			if err != nil {
				t.Fatalf("authenticate: %v", err)
			}
			return p
		}
		refused := func(what, tok string) {
			t.Helper()
			if p, err := auth(tok); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("%s: authenticated as %+v (%v)", what, p, err)
			}
		}
		hits := func() uint64 {
			h, _ := f.svc.tokens.stats()
			return h
		}

		acc, tok := f.account(t, "clerk", "demo", policy.Internal, policy.RoleRA, policy.RoleOfficial)
		p1 := mustAuth(tok)
		if hits() != 0 {
			t.Fatal("first look-up served from the cache")
		}
		p2 := mustAuth(tok)
		if hits() != 1 {
			t.Fatalf("second look-up not served from the cache (hits %d)", hits())
		}
		if p2.Account.ID != acc.ID || !slices.Equal(p2.Roles, p1.Roles) || p2.Via != p1.Via || len(p2.Roles) != 2 {
			t.Fatalf("cached principal %+v, first %+v", p2, p1)
		}
		// What a caller does to its principal does not reach the cache.
		p2.Roles[0], p2.Account.Roles, p2.Account.Name = "nobody", nil, "changed"
		if p3 := mustAuth(tok); !slices.Equal(p3.Roles, p1.Roles) || p3.Account.Name != "clerk" || len(p3.Account.Roles) != 2 {
			t.Fatalf("cache changed through a returned principal: %+v", p3)
		}

		// A role revoked through the API: the next request has one role.
		if err := f.svc.Revoke(f.ctx, acc.ID, policy.RoleOfficial); err != nil {
			t.Fatal(err)
		}
		if p := mustAuth(tok); !slices.Equal(p.Roles, []policy.Role{policy.RoleRA}) {
			t.Fatalf("roles after revoking official: %v", p.Roles)
		}
		// A role granted by another process: the next request has it.
		if err := other.Grant(f.ctx, acc.ID, policy.RoleOfficial); err != nil {
			t.Fatal(err)
		}
		before := hits()
		if p := mustAuth(tok); len(p.Roles) != 2 || hits() != before {
			t.Fatalf("first request after a grant elsewhere: roles %v, hits %d→%d", p.Roles, before, hits())
		}
		if p := mustAuth(tok); len(p.Roles) != 2 || hits() != before+1 {
			t.Fatalf("second request after a grant elsewhere: roles %v, hits %d→%d", p.Roles, before, hits())
		}
		// cached authenticates tok twice and fails unless the second was
		// served from the cache, so that what follows tests a cached token.
		cached := func(tok string) {
			t.Helper()
			mustAuth(tok)
			before := hits()
			mustAuth(tok)
			if hits() != before+1 {
				t.Fatal("token not served from the cache")
			}
		}

		// A token revoked by another process (govtrust token revoke on the
		// data directory, another node) is refused at once.
		_, tok2 := f.account(t, "clerk2", "demo", policy.Internal, policy.RoleRA)
		cached(tok2)
		toks, err := other.Tokens(f.ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range toks {
			if tk.Name == "clerk2-token" {
				if err := other.RevokeToken(f.ctx, tk.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		refused("token revoked by another process", tok2)
		mustAuth(tok) // the other token is unaffected

		// An account disabled by another process.
		other2Acc, tok3 := f.account(t, "official", "demo", policy.Internal, policy.RoleOfficial)
		cached(tok3)
		if err := other.Disable(f.ctx, other2Acc.ID); err != nil {
			t.Fatal(err)
		}
		refused("account disabled by another process", tok3)

		// A row edited by hand after the token was cached: the edit is seen
		// and its MAC fails, with an alert.
		cached(tok)
		alerts := f.count(t, "action = 'authz.integrity' AND outcome = 'failure'")
		if _, err := db.Exec(f.ctx, "UPDATE authz_tokens SET expires_at = '2099-01-01T00:00:00Z' WHERE account_id = ?", acc.ID); err != nil {
			t.Fatal(err)
		}
		refused("token edited in the database", tok)
		if n := f.count(t, "action = 'authz.integrity' AND outcome = 'failure'"); n != alerts+1 {
			t.Fatalf("integrity alerts %d → %d", alerts, n)
		}

		// An expired token is refused although it is in the cache.
		acc4, _ := f.account(t, "short", "platform", policy.Internal, policy.RoleAuditor)
		tok4, _, err := f.svc.CreateToken(f.ctx, acc4.ID, "short-lived", nil, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		cached(tok4)
		f.clock.Add(2 * time.Minute)
		refused("expired cached token", tok4)

		// Role bindings that fail their MAC: the principal is not kept, so
		// every request alerts again.
		acc5, tok5 := f.account(t, "tampered", "demo", policy.Internal, policy.RoleRA)
		if _, err := db.Exec(f.ctx, "UPDATE authz_role_bindings SET role = 'sysadmin' WHERE account_id = ?", acc5.ID); err != nil {
			t.Fatal(err)
		}
		alerts = f.count(t, "action = 'authz.integrity' AND outcome = 'failure'")
		before = hits()
		for range 2 {
			if p := mustAuth(tok5); len(p.Roles) != 0 {
				t.Fatalf("tampered binding honoured: %v", p.Roles)
			}
		}
		if hits() != before {
			t.Fatal("a principal with tampered role bindings was served from the cache")
		}
		if n := f.count(t, "action = 'authz.integrity' AND outcome = 'failure'"); n != alerts+2 {
			t.Fatalf("integrity alerts %d → %d, want one a request", alerts, n)
		}
	}, sets...)
}

// Every kind of write to the tables a token's principal is made from gives
// authz_epoch a new value, on each driver.
func TestAuthzEpochTriggers(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		last, err := f.svc.epoch(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		advances := func(what, query string, args ...any) {
			t.Helper()
			if _, err := db.Exec(f.ctx, query, args...); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			n, err := f.svc.epoch(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == last {
				t.Fatalf("%s: epoch still %d", what, n)
			}
			last = n
		}
		advances("account insert", "INSERT INTO authz_accounts (id, name, kind, org, clearance, created_at, mac) VALUES ('a1', 'n1', 'person', 'o', 0, 't', 'm')")
		advances("account update", "UPDATE authz_accounts SET org = 'p' WHERE id = 'a1'")
		advances("binding insert", "INSERT INTO authz_role_bindings (account_id, role, granted_by, granted_at, mac) VALUES ('a1', 'ra', 'x', 't', 'm')")
		advances("binding update", "UPDATE authz_role_bindings SET granted_by = 'y' WHERE account_id = 'a1'")
		advances("binding delete", "DELETE FROM authz_role_bindings WHERE account_id = 'a1'")
		advances("token insert", "INSERT INTO authz_tokens (id, account_id, name, token_hash, scopes, created_at, expires_at, mac) VALUES ('t1', 'a1', 'n', 'h', '', 't', 't', 'm')")
		advances("token update", "UPDATE authz_tokens SET revoked_at = 'now' WHERE id = 't1'")
		advances("token delete", "DELETE FROM authz_tokens WHERE id = 't1'")
		advances("account delete", "DELETE FROM authz_accounts WHERE id = 'a1'")
		advances("meta insert", "INSERT INTO authz_meta (name, value) VALUES ('k', ?)", []byte{1})
		advances("meta update", "UPDATE authz_meta SET value = ? WHERE name = 'k'", []byte{2})
		advances("meta delete", "DELETE FROM authz_meta WHERE name = 'k'")
	}, sets...)
}
