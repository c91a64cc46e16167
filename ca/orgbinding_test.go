package ca

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
)

// Two departments of the registry (valid GB 32100 / GB 11714 check
// characters).
const (
	orgA, nameA, usccA, orgCodeA = "dept-a", "甲市公安局", "91350100M000100Y43", "12345678-8"
	orgB, nameB, usccB           = "dept-b", "乙市财政局", "91110000MA01ABCD1M"
)

// setOrg registers an organisation through the API as the system
// administrator.
func (tn *testNode) setOrg(id string, body map[string]string) {
	tn.t.Helper()
	if st, raw := tn.do("PUT", "/api/v1/orgs/"+id, "sysadmin", body, nil); st != http.StatusOK {
		tn.t.Fatalf("PUT /api/v1/orgs/%s: %d %s", id, st, raw)
	}
}

// issueAs posts an org-sign (or other) request as the account of token name.
func (tn *testNode) issueAs(name, caID, prof string, rec map[string]string) (int, string) {
	tn.t.Helper()
	st, raw := tn.do("POST", "/api/v1/ca/"+caID+"/certificates", name,
		IssueRequest{CSR: csrPEM(goCSR(tn.t, "x")), Profile: prof, Record: rec}, nil)
	return st, string(raw)
}

func issuedSubject(t *testing.T, body string) *smx509.Certificate {
	t.Helper()
	var out IssueResponse
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	c, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOrgBinding: a registration officer or an application account of
// department A obtains only certificates that carry A's registered legal
// name and codes; department B's O or uscc (valid codes both) is refused
// with 422 naming the field and the registered value; a CA operator is not
// bound. The registry is the system administrator's (PUT/GET /api/v1/orgs),
// audited, and refuses malformed codes.
func TestOrgBinding(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.setOrg(orgA, map[string]string{"legal_name": nameA, "uscc": usccA, "org_code": orgCodeA})
	tn.setOrg(orgB, map[string]string{"legal_name": nameB, "uscc": usccB})
	tn.addAccount("ra-a", orgA, policy.Internal, policy.RoleRA)
	tn.addApplication("app-a", orgA)
	tn.addAccount("op", authz.BootstrapOrg, policy.Internal, policy.RoleCAOperator)

	rec := func(o, uscc string) map[string]string {
		return map[string]string{"CN": "签章服务", "O": o, "uscc": uscc}
	}
	refused := []struct {
		name, prof string
		rec        map[string]string
		want       []string
	}{
		{"B's name and code", "org-sign", rec(nameB, usccB), []string{"subject O", nameB, nameA, "organisation registry"}},
		{"A's name, B's code", "org-sign", rec(nameA, usccB), []string{"uscc", usccB, usccA, "organisation registry"}},
		{"B's name, A's code", "org-sign", rec(nameB, usccA), []string{"subject O", nameA}},
		{"person of B", "person-sign", map[string]string{"CN": "张三", "O": nameB, "id-card": "11010519491231002X"}, []string{"subject O", nameA}},
		{"unregistered tax number", "org-sign", map[string]string{"CN": "x", "O": nameA, "uscc": usccA, "tax": usccB}, []string{"no tax"}},
	}
	for _, who := range []string{"ra-a", "app-a"} {
		for _, tc := range refused {
			t.Run(who+"/"+tc.name, func(t *testing.T) {
				st, body := tn.issueAs(who, "ecdsa-issuing", tc.prof, tc.rec)
				if st != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422: %s", st, body)
				}
				for _, w := range tc.want {
					if !strings.Contains(body, w) {
						t.Errorf("problem %s does not say %q", body, w)
					}
				}
			})
		}
		t.Run(who+"/own values", func(t *testing.T) {
			st, body := tn.issueAs(who, "ecdsa-issuing", "org-sign", rec(nameA, usccA))
			if st != http.StatusCreated {
				t.Fatalf("status %d, want 201: %s", st, body)
			}
			if c := issuedSubject(t, body); len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != nameA {
				t.Errorf("O = %v, want [%s]", c.Subject.Organization, nameA)
			}
			// A person certificate without O carries nothing about an
			// organisation.
			st, body = tn.issueAs(who, "ecdsa-issuing", "person-sign", map[string]string{"CN": "李四", "id-card": "11010519491231002X"})
			if st != http.StatusCreated {
				t.Fatalf("person without O: status %d: %s", st, body)
			}
		})
	}
	t.Run("ca operator is not bound", func(t *testing.T) {
		if st, body := tn.issueAs("op", "ecdsa-issuing", "org-sign", rec(nameB, usccB)); st != http.StatusCreated {
			t.Fatalf("status %d, want 201: %s", st, body)
		}
	})

	t.Run("registry API", func(t *testing.T) {
		for _, tc := range []struct {
			role string
			body map[string]string
			want int
		}{
			{"ra", map[string]string{"legal_name": "x"}, http.StatusForbidden},
			{"secadmin", map[string]string{"legal_name": "x"}, http.StatusForbidden},
			{"sysadmin", map[string]string{"legal_name": nameB, "uscc": "91110000MA01ABCD1A"}, http.StatusBadRequest},
			{"sysadmin", map[string]string{"legal_name": nameB, "org_code": "12345678-9"}, http.StatusBadRequest},
			{"sysadmin", map[string]string{"legal_name": ""}, http.StatusBadRequest},
		} {
			if st, raw := tn.do("PUT", "/api/v1/orgs/"+orgB, tc.role, tc.body, nil); st != tc.want {
				t.Errorf("%s PUT %v: %d, want %d: %s", tc.role, tc.body, st, tc.want, raw)
			}
		}
		st, raw := tn.do("GET", "/api/v1/orgs", "sysadmin", nil, nil)
		if st != http.StatusOK {
			t.Fatalf("GET /api/v1/orgs: %d %s", st, raw)
		}
		var list struct {
			Orgs []authz.Org `json:"orgs"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Orgs) != 2 || list.Orgs[0].ID != orgA || list.Orgs[0].LegalName != nameA || list.Orgs[0].OrgCode != orgCodeA ||
			list.Orgs[1].USCC != usccB || list.Orgs[0].UpdatedBy != "account/sysadmin" {
			t.Errorf("orgs = %+v", list.Orgs)
		}
		if st, _ := tn.do("GET", "/api/v1/orgs", "ra", nil, nil); st != http.StatusForbidden {
			t.Errorf("ra GET /api/v1/orgs: %d, want 403", st)
		}
		if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'org.registry.set' AND object = 'org/" + orgA + "' AND outcome = 'success'"); n != 1 {
			t.Errorf("%d org.registry.set audit records for %s, want 1", n, orgA)
		}
	})

	t.Run("re-registration changes the binding", func(t *testing.T) {
		tn.setOrg(orgA, map[string]string{"legal_name": nameA + "（新）", "uscc": usccA})
		if st, body := tn.issueAs("ra-a", "ecdsa-issuing", "org-sign", rec(nameA, usccA)); st != http.StatusUnprocessableEntity {
			t.Fatalf("old name after a change: status %d, want 422: %s", st, body)
		}
		if st, body := tn.issueAs("ra-a", "ecdsa-issuing", "org-sign", rec(nameA+"（新）", usccA)); st != http.StatusCreated {
			t.Fatalf("new name: status %d, want 201: %s", st, body)
		}
	})

	t.Run("tampered registry row", func(t *testing.T) {
		if _, err := tn.db().Exec(context.Background(), "UPDATE authz_orgs SET legal_name = ? WHERE id = ?", nameB, orgA); err != nil {
			t.Fatal(err)
		}
		st, body := tn.issueAs("ra-a", "ecdsa-issuing", "org-sign", rec(nameB, usccA))
		if st != http.StatusServiceUnavailable || !strings.Contains(body, "integrity") {
			t.Fatalf("tampered registry row: status %d, want 503: %s", st, body)
		}
		if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'authz.integrity' AND object = 'org/" + orgA + "'"); n == 0 {
			t.Error("the tampered registry row was not audited")
		}
	})
}

// TestOrgBindingUnregistered: in dev mode an unregistered organisation's
// officer is still served (the bootstrap RA of "demo", as `govtrust up`
// makes it), with one warning per organisation; in production mode the
// request is refused with 422 saying how a system administrator registers
// the organisation, and served once it is registered, with its values only.
func TestOrgBindingUnregistered(t *testing.T) {
	rec := map[string]string{"CN": "签章服务", "O": nameA, "uscc": usccA}
	t.Run("dev", func(t *testing.T) {
		dir := t.TempDir()
		var logs syncBuffer
		tn := startNodeOpts(t, node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
			LogOutput: &logs, Environ: []string{}})
		for range 2 {
			if st, body := tn.issueAs("ra", "ecdsa-issuing", "org-sign", rec); st != http.StatusCreated {
				t.Fatalf("status %d, want 201: %s", st, body)
			}
		}
		if n := strings.Count(logs.String(), "organisation not registered"); n != 1 {
			t.Errorf("%d warnings about the unregistered organisation, want 1:\n%s", n, logs.String())
		}
	})
	t.Run("production", func(t *testing.T) {
		t.Setenv("GT_TEST_MASTER_PASSPHRASE", "correct horse battery staple")
		opts := node.Options{DataDir: t.TempDir(), HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""), Mode: ptr("production"),
			LogOutput: io.Discard, Environ: []string{"GOVTRUST_HSM_SOFT_UNLOCK=passphrase", "GOVTRUST_HSM_SOFT_PASSPHRASE=env:GT_TEST_MASTER_PASSPHRASE",
				"GOVTRUST_CA_PUBLIC_URL=http://pki.example.gov.cn", "GOVTRUST_CA_PUBLIC_LDAP_URL=ldap://ldap.example.gov.cn"}}
		tn := startNodeOpts(t, opts)
		st, body := tn.issueAs("ra", "ecdsa-issuing", "org-sign", rec)
		if st != http.StatusUnprocessableEntity || !strings.Contains(body, "govtrust account org set "+authz.BootstrapDemoOrg) ||
			!strings.Contains(body, "/api/v1/orgs/"+authz.BootstrapDemoOrg) {
			t.Fatalf("unregistered in production: status %d: %s", st, body)
		}
		tn.setOrg(authz.BootstrapDemoOrg, map[string]string{"legal_name": nameA, "uscc": usccA})
		if st, body := tn.issueAs("ra", "ecdsa-issuing", "org-sign", rec); st != http.StatusCreated {
			t.Fatalf("registered: status %d, want 201: %s", st, body)
		}
		if st, body := tn.issueAs("ra", "ecdsa-issuing", "org-sign", map[string]string{"CN": "x", "O": nameB, "uscc": usccB}); st != http.StatusUnprocessableEntity {
			t.Fatalf("other organisation's values: status %d, want 422: %s", st, body)
		}
	})
}

// TestOrgRegistryOffline: the registry written offline, as `govtrust
// account org set` does, is what the CA binds to, and its change is audited
// under the CLI actor.
func TestOrgRegistryOffline(t *testing.T) {
	tn := startNode(t, t.TempDir())
	az := tn.n.Env().Authz
	ctx := audit.WithActor(context.Background(), "cli:test")
	if _, err := az.SetOrg(ctx, authz.Org{ID: authz.BootstrapDemoOrg, LegalName: nameB, USCC: usccB}); err != nil {
		t.Fatal(err)
	}
	if st, body := tn.issueAs("ra", "ecdsa-issuing", "org-sign", map[string]string{"CN": "x", "O": nameA, "uscc": usccA}); st != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", st, body)
	}
	if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'org.registry.set' AND actor = 'cli:test'"); n != 1 {
		t.Errorf("%d audit records, want 1", n)
	}
}
