package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
)

// TestAccountOrgCLI: `govtrust account org set|list` keeps the organisation
// registry offline on the data directory: codes with a wrong check
// character are refused, a change replaces the values and is audited as the
// CLI user, and list prints what the CA binds certificates to.
func TestAccountOrgCLI(t *testing.T) {
	dir := t.TempDir()
	up(t, dir).stop(t)
	if out, code := govtrust(t, "account", "org", "set", "--data", dir, "demo", "--legal-name", "示范单位", "--uscc", "91350100M000100Y4X"); code == 0 ||
		!strings.Contains(out, "uscc: check character") {
		t.Fatalf("bad uscc accepted (%d):\n%s", code, out)
	}
	if out, code := govtrust(t, "account", "org", "set", "--data", dir, "demo", "--uscc", "91350100M000100Y43"); code == 0 || !strings.Contains(out, "legal-name") {
		t.Fatalf("no legal name accepted (%d):\n%s", code, out)
	}
	for _, name := range []string{"旧名称", "示范单位"} {
		if out, code := govtrust(t, "account", "org", "set", "--data", dir, "demo", "--legal-name", name, "--uscc", "91350100M000100Y43",
			"--org-code", "12345678-8"); code != 0 || !strings.Contains(out, "registered organisation demo: "+name) {
			t.Fatalf("org set = %d:\n%s", code, out)
		}
	}
	out, code := govtrust(t, "account", "org", "list", "--data", dir)
	if code != 0 || !strings.Contains(out, "示范单位") || !strings.Contains(out, "91350100M000100Y43") || strings.Contains(out, "旧名称") {
		t.Fatalf("org list = %d:\n%s", code, out)
	}
	var orgs []authz.Org
	if err := json.Unmarshal([]byte(stdoutOf(t, "account", "org", "list", "--data", dir, "--json")), &orgs); err != nil {
		t.Fatal(err)
	}
	if len(orgs) != 1 || orgs[0].ID != "demo" || orgs[0].OrgCode != "12345678-8" || !strings.HasPrefix(orgs[0].UpdatedBy, "cli:") {
		t.Fatalf("org list --json = %+v", orgs)
	}
}

// TestDualOrgBinding: a dual request (signing and encryption certificates)
// of a registration officer is bound to its organisation's registered
// values before the KMC generates a key: another organisation's O is
// refused (422) and nothing is escrowed; its own is issued.
func TestDualOrgBinding(t *testing.T) {
	kn, _ := startKMCNodeWith(t, func(k ca.KMC) ca.KMC { return k })
	ctx := audit.WithActor(context.Background(), "cli:test")
	if _, err := kn.n.Env().Authz.SetOrg(ctx, authz.Org{ID: authz.BootstrapDemoOrg, LegalName: "示范单位"}); err != nil {
		t.Fatal(err)
	}
	_, csr, _ := sm2Subscriber(t, t.TempDir(), "subscriber")
	st, raw := kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra", map[string]any{"csr": csr, "profile": "person-sign",
		"record": map[string]string{"CN": "张三", "O": "另一单位", "id-card": "11010519491231002X"}, "dual": true})
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "示范单位") {
		t.Fatalf("dual with another organisation's O: %d %s", st, raw)
	}
	if n := kn.count("SELECT COUNT(*) FROM kmc_escrow"); n != 0 {
		t.Fatalf("%d escrows for a refused request", n)
	}
	kn.dualIssue(csr, map[string]string{"CN": "张三", "O": "示范单位", "id-card": "11010519491231002X"})
}
