package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestOrgRegistry: the organisation registry on SQLite and PostgreSQL
// (migration 00003): set, replace, list by id, unregistered ErrNotFound,
// codes with a wrong check character refused, each change audited with the
// values before it, and a row edited in the database refused and alerted.
func TestOrgRegistry(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		if _, err := f.svc.Org(f.ctx, "gaj"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unregistered: %v", err)
		}
		if orgs, err := f.svc.Orgs(f.ctx); err != nil || len(orgs) != 0 {
			t.Fatalf("empty registry: %v %v", orgs, err)
		}
		for _, bad := range []Org{
			{ID: "gaj", LegalName: ""},
			{ID: "gaj", LegalName: " 公安局"},
			{ID: "", LegalName: "公安局"},
			{ID: "gaj", LegalName: "公安局", USCC: "91350100M000100Y44"},
			{ID: "gaj", LegalName: "公安局", USCC: "91350100M000100Y4"},
			{ID: "gaj", LegalName: "公安局", OrgCode: "12345678-9"},
			{ID: "gaj", LegalName: "公安局", Tax: "abc"},
		} {
			if _, err := f.svc.SetOrg(f.ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("SetOrg(%+v) = %v, want ErrInvalid", bad, err)
			}
		}
		if _, err := f.svc.SetOrg(f.ctx, Org{ID: "gaj", LegalName: "某市公安局", USCC: "91350100M000100Y43"}); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(1)
		if _, err := f.svc.SetOrg(f.ctx, Org{ID: "gaj", LegalName: "某市公安局", OrgCode: "12345678-8", Tax: "91350100M000100Y43"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SetOrg(f.ctx, Org{ID: "czj", LegalName: "某市财政局", USCC: "91110000MA01ABCD1M"}); err != nil {
			t.Fatal(err)
		}
		o, err := f.svc.Org(f.ctx, "gaj")
		if err != nil || o.LegalName != "某市公安局" || o.USCC != "" || o.OrgCode != "12345678-8" || o.UpdatedBy != "test" {
			t.Fatalf("gaj after replace: %+v %v", o, err)
		}
		if v, ok := o.Code("org-code"); !ok || v != "12345678-8" {
			t.Errorf("Code(org-code) = %q %t", v, ok)
		}
		if _, ok := o.Code("id-card"); ok {
			t.Error("id-card is not an organisation's code")
		}
		orgs, err := f.svc.Orgs(f.ctx)
		if err != nil || len(orgs) != 2 || orgs[0].ID != "czj" || orgs[1].ID != "gaj" {
			t.Fatalf("Orgs = %+v %v", orgs, err)
		}
		if n := f.count(t, "action = 'org.registry.set' AND object = 'org/gaj' AND outcome = 'success'"); n != 2 {
			t.Fatalf("%d audit records, want 2", n)
		}
		if n := f.count(t, "action = 'org.registry.set' AND object = 'org/gaj' AND details LIKE ?", "%previous%91350100M000100Y43%"); n != 1 {
			t.Errorf("the replacement's audit record does not keep the previous uscc (%d)", n)
		}
		if _, err := db.Exec(f.ctx, "UPDATE authz_orgs SET uscc = ? WHERE id = 'czj'", "91350100M000100Y43"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Org(f.ctx, "czj"); !errors.Is(err, ErrTampered) {
			t.Fatalf("tampered row: %v", err)
		}
		if _, err := f.svc.Orgs(f.ctx); err == nil || !strings.Contains(err.Error(), "czj") {
			t.Fatalf("list with a tampered row: %v", err)
		}
		if n := f.count(t, "action = 'authz.integrity' AND object = 'org/czj'"); n != 1 {
			t.Errorf("%d integrity alerts for the tampered row", n)
		}
		// A system administrator re-registers it.
		if _, err := f.svc.SetOrg(f.ctx, Org{ID: "czj", LegalName: "某市财政局", USCC: "91110000MA01ABCD1M"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Org(f.ctx, "czj"); err != nil {
			t.Fatal(err)
		}
	}, sets...)
}

// TestOrgOfCache: OrgOf serves an organisation read under the epoch the
// request authenticated under without a query, and a registry write by
// another process on the same database (its own Service) is seen by the
// next request (migration 00004's triggers change the epoch): a new value,
// a registration of an organisation that had none.
func TestOrgOfCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		other := New(db, audit.New("n2", f.clock), NewIntegrityForTest([]byte("0123456789abcdef0123456789abcdef")), f.svc.engine, f.clock)
		_, tok := f.account(t, "ra-gaj", "gaj", policy.Internal, policy.RoleRA)
		request := func() (*Org, error) {
			t.Helper()
			p, err := f.svc.AuthenticateBearer(f.ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			return f.svc.OrgOf(f.ctx, p)
		}
		if _, err := request(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unregistered: %v", err)
		}
		if _, err := request(); !errors.Is(err, ErrNotFound) || f.svc.orgs.hits != 1 {
			t.Fatalf("unregistered again: %v, %d hits (want 1)", err, f.svc.orgs.hits)
		}
		if _, err := other.SetOrg(f.ctx, Org{ID: "gaj", LegalName: "某市公安局"}); err != nil {
			t.Fatal(err)
		}
		if o, err := request(); err != nil || o.LegalName != "某市公安局" {
			t.Fatalf("after another process registered it: %+v %v", o, err)
		}
		if _, err := other.SetOrg(f.ctx, Org{ID: "gaj", LegalName: "某市公安局（新）"}); err != nil {
			t.Fatal(err)
		}
		hits := f.svc.orgs.hits
		if o, err := request(); err != nil || o.LegalName != "某市公安局（新）" || f.svc.orgs.hits != hits {
			t.Fatalf("after another process changed it: %+v %v (served from memory: %t)", o, err, f.svc.orgs.hits != hits)
		}
		if o, err := request(); err != nil || o.LegalName != "某市公安局（新）" || f.svc.orgs.hits != hits+1 {
			t.Fatalf("unchanged: %+v %v, %d hits", o, err, f.svc.orgs.hits-hits)
		}
	}, sets...)
}
