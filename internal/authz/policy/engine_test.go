package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// platformIDs is every platform policy, in file order. The report and the
// admin documentation list these; a change to the platform policies changes
// this list on purpose.
var platformIDs = []string{
	"platform.clearance",
	"platform.auditor.read-only",
	"platform.audit.auditor-only",
	"platform.approve.requester-required",
	"platform.approve.self",
	"platform.authz.self-administration",
	"platform.sod.auditor",
	"platform.sod.admins",
	"platform.sod.officer-admin",
	"platform.sod.ca-ra",
	"platform.sod.key-recovery",
	"platform.sod.application",
	"platform.sod.public",
	"platform.sysadmin.node",
	"platform.sysadmin.monitor",
	"platform.sysadmin.directory",
	"platform.sysadmin.orgs",
	"platform.secadmin.authz",
	"platform.secadmin.hsm",
	"platform.secadmin.kms",
	"platform.auditor.audit",
	"platform.auditor.review",
	"platform.ca-operator.ca",
	"platform.ra.certificates",
	"platform.certificate.owner",
	"platform.ra.key-recovery",
	"platform.key-recovery.recover",
	"platform.seal-admin.org",
	"platform.official.org",
	"platform.application.own",
	"platform.application.kms",
	"platform.secadmin.signature-keys",
	"platform.signature.key-owner",
	"platform.application.services",
	"platform.application.issue",
	"platform.public.own",
	"platform.enterprise.seal-apply",
	"platform.any.verify",
	"platform.dual.recovery-request",
	"platform.dual.recovery-approve",
	"platform.dual.secadmin",
	"platform.dual.kms-destroy",
	"platform.dual.ca-operator",
	"platform.dual.seal-admin",
	"platform.dual.withdraw",
}

func TestPlatformPolicies(t *testing.T) {
	e := newEngine(t)
	infos := e.Policies()
	var ids []string
	for _, p := range infos {
		ids = append(ids, p.ID)
		if p.Origin != OriginPlatform || p.Source != "platform-v1.cedar" || p.Line <= 0 {
			t.Errorf("%s: origin %q source %q line %d", p.ID, p.Origin, p.Source, p.Line)
		}
		if p.Doc == "" {
			t.Errorf("%s: no comment above it", p.ID)
		}
		if !strings.HasPrefix(p.Text, `@id("`+p.ID+`")`) || !strings.HasSuffix(p.Text, ";") {
			t.Errorf("%s: text %q", p.ID, p.Text)
		}
		if !strings.HasPrefix(strings.SplitN(p.Text, "\n", 2)[1], p.Effect+" (") {
			t.Errorf("%s: effect %s, text %q", p.ID, p.Effect, p.Text)
		}
	}
	if !slices.Equal(ids, platformIDs) {
		t.Errorf("platform policy ids:\n got %q\nwant %q", ids, platformIDs)
	}
	v := e.Version()
	if !strings.HasPrefix(v, "platform-v1 sm3:") || len(v) != len("platform-v1 sm3:")+64 {
		t.Errorf("version %q", v)
	}
	// The policies list is a copy.
	infos[0].ID = "changed"
	if e.Policies()[0].ID != platformIDs[0] {
		t.Error("Policies returned the engine's own slice")
	}
}

const sitePolicies = `
// Citizens may read the public metrics dashboard at this site.
@id("site.citizen-metrics")
permit (principal, action == Govtrust::Action::"metrics.read", resource)
when { principal.roles.contains("citizen") };

// An attempt to let the auditor issue certificates: platform forbids win.
@id("site.auditor-issues")
permit (principal, action == Govtrust::Action::"ca.certificate.issue", resource)
when { principal.roles.contains("auditor") };

// Node configuration is frozen during the audit period.
@id("site.freeze")
forbid (principal, action == Govtrust::Action::"node.config.update", resource)
when { context has period && context.period == "audit" };

// Officials of the tax bureau may also sign for documents tagged shared.
@id("site.shared-docs")
permit (principal, action == Govtrust::Action::"signature.sign", resource)
when { principal.roles.contains("official") && resource.attrs has shared && resource.attrs.shared == "yes" };
`

func TestSitePolicies(t *testing.T) {
	site := fstest.MapFS{
		"local.cedar": {Data: []byte(sitePolicies)},
		"README.txt":  {Data: []byte("not a policy")},
	}
	e, err := New(site)
	if err != nil {
		t.Fatal(err)
	}
	if v := e.Version(); !strings.HasPrefix(v, "platform-v1 site:local.cedar sm3:") {
		t.Errorf("version %q", v)
	}
	citizen := Principal{ID: "c1", Roles: []Role{RoleCitizen}}
	auditor := Principal{ID: "a1", Org: "dept-a", Roles: []Role{RoleAuditor}, Clearance: Confidential}
	sys := Principal{ID: "s1", Roles: []Role{RoleSysAdmin}}
	official := Principal{ID: "o1", Org: "dept-a", Roles: []Role{RoleOfficial}, Clearance: Internal}
	node := Resource{Type: "platform", ID: "node"}
	cases := []struct {
		name     string
		req      Request
		allow    bool
		policies []string
	}{
		{"site permit adds", Request{Principal: citizen, Action: "metrics.read", Resource: node},
			true, []string{"site.citizen-metrics"}},
		{"site permit cannot override a platform forbid",
			Request{Principal: auditor, Action: "ca.certificate.issue", Resource: Resource{Type: "certificate", ID: "c", Org: "dept-a"}},
			false, []string{"platform.auditor.read-only"}},
		{"site forbid narrows", Request{Principal: sys, Action: "node.config.update", Resource: node,
			Context: map[string]string{"period": "audit"}}, false, []string{"site.freeze"}},
		{"site forbid not triggered", Request{Principal: sys, Action: "node.config.update", Resource: node},
			true, []string{"platform.sysadmin.node"}},
		{"resource attributes", Request{Principal: official, Action: "signature.sign",
			Resource: Resource{Type: "key", ID: "k", Org: "dept-b", Attrs: map[string]string{"shared": "yes"}}},
			true, []string{"site.shared-docs"}},
		{"resource attributes absent", Request{Principal: official, Action: "signature.sign",
			Resource: Resource{Type: "key", ID: "k", Org: "dept-b"}}, false, nil},
		{"both permit", Request{Principal: official, Action: "signature.sign",
			Resource: Resource{Type: "key", ID: "k", Org: "dept-a", Attrs: map[string]string{"shared": "yes"}}},
			true, []string{"platform.official.org", "site.shared-docs"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.Decide(c.req)
			if d.Allow != c.allow || !slices.Equal(d.Policies, c.policies) {
				t.Fatalf("got %+v, want allow=%t policies=%v", d, c.allow, c.policies)
			}
			checkReason(t, c.req, d)
		})
	}
	var site0 []PolicyInfo
	for _, p := range e.Policies() {
		if p.Origin == OriginSite {
			site0 = append(site0, p)
		}
	}
	if len(site0) != 4 || site0[0].ID != "site.citizen-metrics" || site0[0].Source != "local.cedar" ||
		site0[0].Doc != "Citizens may read the public metrics dashboard at this site." {
		t.Errorf("site policies: %+v", site0)
	}
}

func TestReload(t *testing.T) {
	good := fstest.MapFS{"a.cedar": {Data: []byte(sitePolicies)}}
	e, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	citizenMetrics := Request{Principal: Principal{ID: "c1", Roles: []Role{RoleCitizen}}, Action: "metrics.read",
		Resource: Resource{Type: "platform", ID: "node"}}
	if d := e.Decide(citizenMetrics); !d.Allow {
		t.Fatalf("before: %+v", d)
	}
	before := e.Version()

	bad := []struct {
		name  string
		files fstest.MapFS
		err   string
	}{
		{"syntax error", fstest.MapFS{"a.cedar": {Data: []byte(`@id("site.x") permit (principal, action, resource`)}}, "a.cedar"},
		{"no id", fstest.MapFS{"a.cedar": {Data: []byte(`permit (principal, action, resource);`)}}, "no @id"},
		{"platform id", fstest.MapFS{"a.cedar": {Data: []byte(`@id("platform.clearance") permit (principal, action, resource);`)}}, `must start with "site."`},
		{"bad id", fstest.MapFS{"a.cedar": {Data: []byte(`@id("site.X Y") permit (principal, action, resource);`)}}, "is not lowercase"},
		{"duplicate id across files", fstest.MapFS{
			"a.cedar": {Data: []byte(`@id("site.x") permit (principal, action == Govtrust::Action::"metrics.read", resource);`)},
			"b.cedar": {Data: []byte(`@id("site.x") forbid (principal, action, resource) when { false };`)},
		}, `"site.x" already used in a.cedar`},
		{"unknown action", fstest.MapFS{"a.cedar": {Data: []byte(
			`@id("site.x") permit (principal, action == Govtrust::Action::"metrics.reed", resource);`)}}, "unknown action or group"},
		{"unknown group", fstest.MapFS{"a.cedar": {Data: []byte(
			`@id("site.x") permit (principal, action in Govtrust::Action::"class:delete", resource);`)}}, "unknown action or group"},
		{"unknown service", fstest.MapFS{"a.cedar": {Data: []byte(
			`@id("site.x") permit (principal, action in [Govtrust::Action::"service:mail"], resource);`)}}, "unknown action or group"},
		{"unknown action in condition", fstest.MapFS{"a.cedar": {Data: []byte(
			`@id("site.x") permit (principal, action, resource) when { action == Govtrust::Action::"ca.cert.issue" };`)}}, "unknown action or group"},
		{"wrong action type", fstest.MapFS{"a.cedar": {Data: []byte(
			`@id("site.x") permit (principal, action == Action::"metrics.read", resource);`)}}, "is not of type Govtrust::Action"},
		{"unreadable", fstest.MapFS{"a.cedar": {Mode: fs.ModeDir}}, "a.cedar"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			err := e.Reload(c.files)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Reload: %v, want an error containing %q", err, c.err)
			}
			if _, err := New(c.files); err == nil {
				t.Fatal("New accepted it")
			}
			if v := e.Version(); v != before {
				t.Fatalf("version changed to %q", v)
			}
			if d := e.Decide(citizenMetrics); !d.Allow || d.Policies[0] != "site.citizen-metrics" {
				t.Fatalf("old site policies not in force: %+v", d)
			}
		})
	}

	t.Run("remove", func(t *testing.T) {
		if err := e.Reload(nil); err != nil {
			t.Fatal(err)
		}
		if d := e.Decide(citizenMetrics); d.Allow {
			t.Fatalf("site policy still in force: %+v", d)
		}
		if v := e.Version(); strings.Contains(v, "site:") || v == before {
			t.Fatalf("version %q", v)
		}
	})
	t.Run("from a directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "site.cedar"), []byte(sitePolicies), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		if d := e.Decide(citizenMetrics); !d.Allow {
			t.Fatalf("%+v", d)
		}
		if err := os.WriteFile(filepath.Join(dir, "site.cedar"), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		v := e.Version()
		if err := e.Reload(os.DirFS(dir)); err == nil {
			t.Fatal("garbage accepted")
		}
		if e.Version() != v {
			t.Fatal("version changed after a failed reload")
		}
	})
}

// TestForbidErrorDenies: Cedar skips a policy whose evaluation fails; for a
// forbid that would let the request through, so the engine denies.
func TestForbidErrorDenies(t *testing.T) {
	site := fstest.MapFS{"x.cedar": {Data: []byte(`
@id("site.embargo")
forbid (principal, action == Govtrust::Action::"metrics.read", resource)
when { resource.attrs.embargo == "yes" };
`)}}
	e, err := New(site)
	if err != nil {
		t.Fatal(err)
	}
	sys := Principal{ID: "s", Roles: []Role{RoleSysAdmin}}
	d := e.Decide(Request{Principal: sys, Action: "metrics.read", Resource: Resource{Type: "platform", ID: "node"}})
	if d.Allow || !slices.Equal(d.Policies, []string{"site.embargo"}) || !strings.Contains(d.Reason, "site.embargo") {
		t.Fatalf("failing forbid: %+v", d)
	}
	d = e.Decide(Request{Principal: sys, Action: "metrics.read",
		Resource: Resource{Type: "platform", ID: "node", Attrs: map[string]string{"embargo": "no"}}})
	if !d.Allow {
		t.Fatalf("evaluable forbid, not matching: %+v", d)
	}
	d = e.Decide(Request{Principal: sys, Action: "metrics.read",
		Resource: Resource{Type: "platform", ID: "node", Attrs: map[string]string{"embargo": "yes"}}})
	if d.Allow || !slices.Equal(d.Policies, []string{"site.embargo"}) {
		t.Fatalf("matching forbid: %+v", d)
	}
}

// TestConcurrentReload decides from many goroutines while the site policies
// are swapped back and forth: every decision is one of the two sets' answers
// (run with -race).
func TestConcurrentReload(t *testing.T) {
	with := fstest.MapFS{"a.cedar": {Data: []byte(sitePolicies)}}
	e, err := New(with)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Principal: Principal{ID: "c1", Roles: []Role{RoleCitizen}}, Action: "metrics.read",
		Resource: Resource{Type: "platform", ID: "node"}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := e.Decide(req)
				if d.Allow && !slices.Equal(d.Policies, []string{"site.citizen-metrics"}) ||
					!d.Allow && len(d.Policies) != 0 {
					errs <- d.Reason
					return
				}
			}
		})
	}
	for i := range 200 {
		fsys := with
		if i%2 == 1 {
			fsys = nil
		}
		if err := e.Reload(fsys); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for r := range errs {
		t.Error(r)
	}
}

// TestLateRegistration: an action registered after the engine was built is
// decided (by scanning the policies) and the class rules apply to it at once.
func TestLateRegistration(t *testing.T) {
	e := newEngine(t)
	// Registration is process-wide: tolerate a second run (-count 2).
	if err := Register(Action{Name: "ztest.widget.delete", Class: ClassWrite, Description: "test only"}); err != nil && !errors.Is(err, ErrDuplicateAction) {
		t.Fatal(err)
	}
	aud := Principal{ID: "a", Roles: []Role{RoleAuditor}}
	d := e.Decide(Request{Principal: aud, Action: "ztest.widget.delete", Resource: Resource{Type: "widget", ID: "w"}})
	if d.Allow || !slices.Equal(d.Policies, []string{"platform.auditor.read-only"}) {
		t.Fatalf("%+v", d)
	}
	sys := Principal{ID: "s", Roles: []Role{RoleSysAdmin}}
	if d := e.Decide(Request{Principal: sys, Action: "ztest.widget.delete", Resource: Resource{Type: "widget", ID: "w"}}); d.Allow || len(d.Policies) != 0 {
		t.Fatalf("%+v", d)
	}
	// A site policy may now name it and its service group.
	site := fstest.MapFS{"w.cedar": {Data: []byte(`@id("site.widgets")
permit (principal, action in Govtrust::Action::"service:ztest", resource) when { principal.roles.contains("sysadmin") };`)}}
	if err := e.Reload(site); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(Request{Principal: sys, Action: "ztest.widget.delete", Resource: Resource{Type: "widget", ID: "w"}}); !d.Allow {
		t.Fatalf("%+v", d)
	}
}

func TestRegister(t *testing.T) {
	cases := []struct {
		a   Action
		err string
	}{
		{Action{Name: "metrics.read", Class: ClassRead, Description: "again"}, "already registered"},
		{Action{Name: "metrics", Class: ClassRead, Description: "x"}, "is not <service>.<verb>"},
		{Action{Name: "Metrics.Read", Class: ClassRead, Description: "x"}, "is not <service>.<verb>"},
		{Action{Name: "class:read.x", Class: ClassRead, Description: "x"}, "is not <service>.<verb>"},
		{Action{Name: "ztest.a..b", Class: ClassRead, Description: "x"}, "is not <service>.<verb>"},
		{Action{Name: "ztest.reg", Class: "delete", Description: "x"}, "unknown class"},
		{Action{Name: "ztest.reg", Class: ClassRead, Description: " "}, "no description"},
	}
	for _, c := range cases {
		t.Run(c.a.Name, func(t *testing.T) {
			err := Register(c.a)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Register(%+v) = %v, want %q", c.a, err, c.err)
			}
		})
	}
	if err := Register(Action{Name: "metrics.read", Class: ClassRead, Description: "again"}); !errors.Is(err, ErrDuplicateAction) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := Register(Action{Name: "ztest.reg.ok", Class: ClassKey, Description: "test only"}); err != nil && !errors.Is(err, ErrDuplicateAction) {
		t.Fatal(err)
	}
	a, ok := Lookup("ztest.reg.ok")
	if !ok || a.Class != ClassKey || a.Service() != "ztest" {
		t.Fatalf("Lookup: %+v %t", a, ok)
	}
	all := All()
	if !slices.IsSortedFunc(all, func(a, b Action) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("All is not sorted")
	}
	for _, s := range seed {
		if !slices.Contains(all, s) {
			t.Errorf("All lacks %s", s.Name)
		}
	}
	if _, ok := Lookup("nope.nope"); ok {
		t.Error("Lookup found an unknown action")
	}
}
