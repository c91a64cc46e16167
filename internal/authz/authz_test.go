package authz

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

func TestTokens(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC))
		log := audit.New("n1", clk)
		toks := NewTokens(db, log, clk)

		admin, info, err := toks.Create(ctx, "system", "ops", []string{RoleSysAdmin}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ra, _, err := toks.Create(ctx, "system", "clerk", []string{RoleRA}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Only the hash is stored.
		var stored string
		if err := db.QueryRow(ctx, "SELECT token_hash FROM authz_tokens WHERE id = ?", info.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stored, admin) || stored == admin || len(stored) != 64 {
			t.Fatalf("token stored as %q", stored)
		}
		p, err := toks.Authenticate(ctx, admin)
		if err != nil || p.ID != info.ID || !p.Has(RoleSysAdmin) || p.Has(RoleAuditor) {
			t.Fatalf("Authenticate = %+v, %v", p, err)
		}

		h := toks.Require("metrics.read", []string{RoleSysAdmin, RoleAuditor}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if PrincipalFrom(r.Context()) == nil {
				t.Error("principal missing from context")
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		srv := httpx.Edge(h, httpx.EdgeOptions{Server: "test"})
		call := func(auth string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("GET", "/metrics", nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			return w
		}
		cases := []struct {
			name, auth string
			status     int
		}{
			{"no credential", "", 401},
			{"not bearer", "Basic " + admin, 401},
			{"unknown token", "Bearer gt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401},
			{"garbage", "Bearer x", 401},
			{"wrong role", "Bearer " + ra, 403},
			{"allowed", "Bearer " + admin, 204},
		}
		for _, c := range cases {
			w := call(c.auth)
			if w.Code != c.status {
				t.Errorf("%s: status %d, want %d", c.name, w.Code, c.status)
			}
			if c.status == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: no Bearer challenge", c.name)
			}
			if c.status >= 400 && w.Header().Get("Content-Type") != httpx.ProblemContentType {
				t.Errorf("%s: not a problem", c.name)
			}
		}
		// Each denial is audited.
		var buf bytes.Buffer
		if _, err := audit.Export(ctx, db, 0, &buf); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(buf.String(), `"outcome":"denied"`); n != 5 {
			t.Errorf("%d denials audited, want 5:\n%s", n, buf.String())
		}
		// Expiry.
		clk.Add(time.Hour)
		if _, err := toks.Authenticate(ctx, admin); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("expired token: %v", err)
		}
		if _, _, err := toks.Create(ctx, "system", "", nil, 0); err == nil {
			t.Fatal("token without name or roles created")
		}
	}, Migrations, audit.Migrations)
}
