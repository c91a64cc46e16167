package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func newEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// scope says which resources a grant covers in the matrix below.
type scope int

const (
	anyResource scope = iota // every resource
	sameOrg                  // resources of the principal's organisation
	ownResource              // resources the principal owns
)

type grant struct {
	policy string
	scope  scope
}

// grants is the expected permission matrix, written independently of the
// Cedar text: for each role and action, the permits that allow it. The
// matrix's requests carry context {requester: "requester-1", kind:
// "kms.key.recover"}, so dual-control grants for other kinds do not apply.
var grants = map[Role]map[string][]grant{
	RoleSysAdmin: {
		"node.config.read":      {{"platform.sysadmin.node", anyResource}},
		"node.config.update":    {{"platform.sysadmin.node", anyResource}},
		"metrics.read":          {{"platform.sysadmin.monitor", anyResource}},
		"audit.checkpoint.read": {{"platform.sysadmin.monitor", anyResource}},
		"directory.entry.read":  {{"platform.sysadmin.directory", anyResource}},
		"directory.entry.write": {{"platform.sysadmin.directory", anyResource}},
		"directory.import":      {{"platform.sysadmin.directory", anyResource}},
		"org.registry.set":      {{"platform.sysadmin.orgs", anyResource}},
		"org.registry.list":     {{"platform.sysadmin.orgs", anyResource}},
	},
	RoleSecAdmin: {
		"authz.token.create":    {{"platform.secadmin.authz", anyResource}},
		"authz.token.list":      {{"platform.secadmin.authz", anyResource}},
		"authz.token.revoke":    {{"platform.secadmin.authz", anyResource}},
		"authz.account.create":  {{"platform.secadmin.authz", anyResource}},
		"authz.account.disable": {{"platform.secadmin.authz", anyResource}},
		"authz.account.list":    {{"platform.secadmin.authz", anyResource}},
		"authz.cert.bind":       {{"platform.secadmin.authz", anyResource}},
		"authz.role.grant":      {{"platform.secadmin.authz", anyResource}},
		"authz.role.revoke":     {{"platform.secadmin.authz", anyResource}},
		"authz.policy.read":     {{"platform.secadmin.authz", anyResource}},
		"authz.policy.reload":   {{"platform.secadmin.authz", anyResource}},
		"hsm.key.create":        {{"platform.secadmin.hsm", anyResource}},
		"hsm.key.delete":        {{"platform.secadmin.hsm", anyResource}},
		"hsm.key.list":          {{"platform.secadmin.hsm", anyResource}},
		"kms.key.create":        {{"platform.secadmin.kms", anyResource}},
		"kms.key.read":          {{"platform.secadmin.kms", anyResource}},
		"kms.key.update":        {{"platform.secadmin.kms", anyResource}},
		"kms.key.destroy":       {{"platform.secadmin.kms", anyResource}},
		"kms.rotate":            {{"platform.secadmin.kms", anyResource}},
		"kms.rewrap":            {{"platform.secadmin.kms", anyResource}},
		"signature.key.create":  {{"platform.secadmin.signature-keys", anyResource}},
		"signature.key.read":    {{"platform.secadmin.signature-keys", anyResource}},
	},
	RoleAuditor: {
		"audit.read":            {{"platform.auditor.audit", anyResource}},
		"audit.export":          {{"platform.auditor.audit", anyResource}},
		"metrics.read":          {{"platform.auditor.review", anyResource}},
		"audit.checkpoint.read": {{"platform.auditor.review", anyResource}},
		"authz.policy.read":     {{"platform.auditor.review", anyResource}},
	},
	RoleCAOperator: {
		"ca.certificate.issue":  {{"platform.ca-operator.ca", anyResource}},
		"ca.certificate.revoke": {{"platform.ca-operator.ca", anyResource}},
		"ca.certificate.read":   {{"platform.ca-operator.ca", anyResource}},
		"ca.crl.generate":       {{"platform.ca-operator.ca", anyResource}},
		"ca.authority.rollover": {{"platform.ca-operator.ca", anyResource}},
		"ca.profile.read":       {{"platform.ca-operator.ca", anyResource}},
		"ca.authority.revoke":   {{"platform.ca-operator.ca", anyResource}},
		"ca.authority.cross":    {{"platform.ca-operator.ca", anyResource}},
	},
	RoleRA: {
		"ca.certificate.issue":  {{"platform.ra.certificates", sameOrg}},
		"ca.certificate.revoke": {{"platform.ra.certificates", sameOrg}},
		"ca.certificate.read":   {{"platform.ra.certificates", sameOrg}},
		"ca.profile.read":       {{"platform.ra.certificates", sameOrg}},
		"kms.key.recover":       {{"platform.ra.key-recovery", sameOrg}},
		"dual.request":          {{"platform.dual.recovery-request", sameOrg}},
	},
	RoleKeyRecovery: {
		"kms.key.recover": {{"platform.key-recovery.recover", anyResource}},
		"dual.read":       {{"platform.dual.recovery-approve", anyResource}},
		"dual.approve":    {{"platform.dual.recovery-approve", anyResource}},
		"dual.reject":     {{"platform.dual.recovery-approve", anyResource}},
	},
	RoleSealAdmin: {
		"seal.apply":      {{"platform.seal-admin.org", sameOrg}},
		"seal.approve":    {{"platform.seal-admin.org", sameOrg}},
		"seal.make":       {{"platform.seal-admin.org", sameOrg}},
		"seal.read":       {{"platform.seal-admin.org", sameOrg}},
		"seal.revoke":     {{"platform.seal-admin.org", sameOrg}},
		"seal.usage.read": {{"platform.seal-admin.org", sameOrg}},
	},
	RoleOfficial: {
		"seal.use":       {{"platform.official.org", sameOrg}},
		"seal.read":      {{"platform.official.org", sameOrg}},
		"signature.sign": {{"platform.official.org", sameOrg}},
	},
	RoleApplication: {
		"signature.sign":       {{"platform.application.own", ownResource}},
		"kms.encrypt":          {{"platform.application.own", ownResource}},
		"kms.decrypt":          {{"platform.application.own", ownResource}},
		"kms.key.read":         {{"platform.application.kms", ownResource}},
		"kms.rewrap":           {{"platform.application.kms", ownResource}},
		"signature.verify":     {{"platform.application.services", anyResource}},
		"tsa.timestamp":        {{"platform.application.services", anyResource}},
		"ca.certificate.issue": {{"platform.application.issue", sameOrg}},
	},
	RoleCitizen: {
		"ca.certificate.read": {{"platform.public.own", ownResource}},
		"signature.sign":      {{"platform.public.own", ownResource}},
	},
	RoleEnterpriseOperator: {
		"ca.certificate.read": {{"platform.public.own", ownResource}},
		"signature.sign":      {{"platform.public.own", ownResource}},
		"seal.apply":          {{"platform.enterprise.seal-apply", sameOrg}},
	},
}

// everyone holds these grants whatever their role.
var everyone = map[string][]grant{
	"signature.verify":   {{"platform.any.verify", anyResource}},
	"signature.key.read": {{"platform.signature.key-owner", ownResource}},
	// The account that requested a certificate reads and revokes it.
	"ca.certificate.read":   {{"platform.certificate.owner", ownResource}},
	"ca.certificate.revoke": {{"platform.certificate.owner", ownResource}},
	"dual.reject":           {{"platform.dual.withdraw", ownResource}},
	"dual.read":             {{"platform.dual.withdraw", ownResource}},
}

// expectedClass is the catalogue as documented: every seeded action and its
// class.
var expectedClass = map[string]Class{
	"metrics.read": ClassRead, "node.config.read": ClassRead, "node.config.update": ClassAdmin,
	"audit.read": ClassAudit, "audit.export": ClassAudit, "audit.checkpoint.read": ClassRead,
	"authz.token.create": ClassAdmin, "authz.token.list": ClassRead, "authz.token.revoke": ClassAdmin,
	"authz.account.create": ClassAdmin, "authz.account.disable": ClassAdmin, "authz.cert.bind": ClassAdmin,
	"authz.account.list": ClassRead, "dual.read": ClassRead,
	"authz.role.grant": ClassAdmin, "authz.role.revoke": ClassAdmin,
	"authz.policy.read": ClassRead, "authz.policy.reload": ClassAdmin,
	"org.registry.set": ClassAdmin, "org.registry.list": ClassRead,
	"hsm.key.create": ClassKey, "hsm.key.delete": ClassKey, "hsm.key.list": ClassRead,
	"dual.request": ClassWrite, "dual.approve": ClassApprove, "dual.reject": ClassWrite,
	"ca.certificate.issue": ClassWrite, "ca.certificate.revoke": ClassWrite, "ca.certificate.read": ClassRead,
	"ca.crl.generate": ClassWrite, "ca.authority.rollover": ClassKey, "tsa.timestamp": ClassWrite,
	"directory.entry.read": ClassRead, "directory.entry.write": ClassWrite, "directory.import": ClassWrite,
	"ca.profile.read": ClassRead, "ca.authority.revoke": ClassWrite, "ca.authority.cross": ClassWrite,
	"kms.encrypt": ClassKey, "kms.decrypt": ClassKey, "kms.rotate": ClassKey, "kms.key.recover": ClassKey,
	"kms.key.create": ClassKey, "kms.key.read": ClassRead, "kms.key.update": ClassKey, "kms.key.destroy": ClassKey,
	"kms.rewrap": ClassKey,
	"seal.apply": ClassWrite, "seal.approve": ClassApprove, "seal.make": ClassWrite, "seal.use": ClassWrite,
	"seal.read": ClassRead, "seal.revoke": ClassWrite, "seal.usage.read": ClassRead,
	"signature.sign": ClassKey, "signature.verify": ClassRead,
	"signature.key.create": ClassKey, "signature.key.read": ClassRead,
}

// TestDecideMatrix decides every role × every seeded action × resource in
// the same or another organisation × owned by the principal or not ×
// classified at or above the principal's clearance, and checks the decision
// and the policies that made it against the matrix above.
func TestDecideMatrix(t *testing.T) {
	e := newEngine(t)
	for _, role := range Roles {
		for action, class := range expectedClass {
			for _, sameOrgRes := range []bool{true, false} {
				for _, owned := range []bool{true, false} {
					for _, above := range []bool{false, true} {
						name := fmt.Sprintf("%s/%s/sameorg=%t/owned=%t/above=%t", role, action, sameOrgRes, owned, above)
						t.Run(name, func(t *testing.T) {
							p := Principal{ID: "p-" + string(role), Org: "dept-a", Roles: []Role{role}, Clearance: Internal}
							res := Resource{Type: "object", ID: "r1", Org: "dept-b", Owner: "someone-else", Level: Internal}
							if sameOrgRes {
								res.Org = p.Org
							}
							if owned {
								res.Owner = p.ID
							}
							if above {
								res.Level = Secret
							}
							req := Request{Principal: p, Action: action, Resource: res,
								Context: map[string]string{"requester": "requester-1", "kind": "kms.key.recover"}}

							var forbids []string
							if above {
								forbids = append(forbids, "platform.clearance")
							}
							if role == RoleAuditor && slices.Contains([]Class{ClassWrite, ClassAdmin, ClassKey, ClassApprove}, class) {
								forbids = append(forbids, "platform.auditor.read-only")
							}
							if class == ClassAudit && role != RoleAuditor {
								forbids = append(forbids, "platform.audit.auditor-only")
							}
							if class == ClassApprove && owned {
								forbids = append(forbids, "platform.approve.self")
							}
							var permits []string
							for _, g := range append(slices.Clone(grants[role][action]), everyone[action]...) {
								if g.scope == anyResource || (g.scope == sameOrg && sameOrgRes) || (g.scope == ownResource && owned) {
									permits = append(permits, g.policy)
								}
							}
							want := Decision{Allow: len(forbids) == 0 && len(permits) > 0}
							switch {
							case len(forbids) > 0:
								want.Policies = forbids
							case len(permits) > 0:
								want.Policies = permits
							}
							slices.Sort(want.Policies)
							want.Policies = slices.Compact(want.Policies)

							got := e.Decide(req)
							if got.Allow != want.Allow || !slices.Equal(got.Policies, want.Policies) {
								t.Fatalf("got allow=%t policies=%v (%s), want allow=%t policies=%v",
									got.Allow, got.Policies, got.Reason, want.Allow, want.Policies)
							}
							checkReason(t, req, got)
						})
					}
				}
			}
		}
	}
}

// checkReason checks that the reason names the deciding policies.
func checkReason(t *testing.T, req Request, d Decision) {
	t.Helper()
	switch {
	case d.Allow && !strings.HasPrefix(d.Reason, "permitted by polic"):
		t.Errorf("allow reason %q", d.Reason)
	case !d.Allow && len(d.Policies) > 0 && !strings.HasPrefix(d.Reason, "denied"):
		t.Errorf("deny reason %q", d.Reason)
	case !d.Allow && len(d.Policies) == 0 && !strings.HasPrefix(d.Reason, "no policy permits "+req.Action):
		t.Errorf("default-deny reason %q", d.Reason)
	}
	for _, p := range d.Policies {
		if !strings.Contains(d.Reason, p) {
			t.Errorf("reason %q does not name policy %s", d.Reason, p)
		}
	}
	if d.Version == "" {
		t.Error("decision has no policy set version")
	}
}

func TestCatalogueClasses(t *testing.T) {
	for name, class := range expectedClass {
		a, ok := Lookup(name)
		if !ok {
			t.Errorf("%s: not in the catalogue", name)
			continue
		}
		if a.Class != class {
			t.Errorf("%s: class %s, want %s", name, a.Class, class)
		}
	}
	for _, a := range seed {
		if _, ok := expectedClass[a.Name]; !ok {
			t.Errorf("seeded action %s has no expected class in this test", a.Name)
		}
	}
}

// TestSeparation is ACCEPTANCE.md's "Separation" row and K-01's refusals,
// as decisions: the auditor changes nothing, the system administrator reads
// no audit details, nobody approves their own request.
func TestSeparation(t *testing.T) {
	e := newEngine(t)
	auditor := Principal{ID: "aud", Org: "platform", Roles: []Role{RoleAuditor}, Clearance: Confidential}
	sysadmin := Principal{ID: "sys", Org: "platform", Roles: []Role{RoleSysAdmin}, Clearance: Confidential}
	secadmin := Principal{ID: "sec", Org: "platform", Roles: []Role{RoleSecAdmin}, Clearance: Confidential}
	kro := Principal{ID: "kro", Org: "platform", Roles: []Role{RoleKeyRecovery}, Clearance: Confidential}
	seal := Principal{ID: "seal", Org: "dept-a", Roles: []Role{RoleSealAdmin}, Clearance: Internal}
	platformRes := Resource{Type: "platform", ID: "node", Org: "platform"}

	t.Run("auditor changes nothing", func(t *testing.T) {
		for _, a := range All() {
			if a.Class == ClassRead || a.Class == ClassAudit {
				continue
			}
			d := e.Decide(Request{Principal: auditor, Action: a.Name,
				Resource: Resource{Type: "object", ID: "x", Org: "platform", Owner: "aud"},
				Context:  map[string]string{"requester": "other", "kind": a.Name}})
			if d.Allow || !slices.Contains(d.Policies, "platform.auditor.read-only") {
				t.Errorf("%s (%s): %+v", a.Name, a.Class, d)
			}
		}
	})
	t.Run("auditor reads the audit log", func(t *testing.T) {
		for _, act := range []string{"audit.read", "audit.export", "audit.checkpoint.read", "metrics.read"} {
			if d := e.Decide(Request{Principal: auditor, Action: act, Resource: platformRes}); !d.Allow {
				t.Errorf("%s: %+v", act, d)
			}
		}
	})
	t.Run("sysadmin reads no audit details", func(t *testing.T) {
		for _, act := range []string{"audit.read", "audit.export"} {
			d := e.Decide(Request{Principal: sysadmin, Action: act, Resource: platformRes})
			if d.Allow || !slices.Equal(d.Policies, []string{"platform.audit.auditor-only"}) {
				t.Errorf("%s: %+v", act, d)
			}
		}
		for _, act := range []string{"audit.checkpoint.read", "metrics.read", "node.config.update"} {
			if d := e.Decide(Request{Principal: sysadmin, Action: act, Resource: platformRes}); !d.Allow {
				t.Errorf("%s: %+v", act, d)
			}
		}
	})
	t.Run("secadmin reads no audit details", func(t *testing.T) {
		d := e.Decide(Request{Principal: secadmin, Action: "audit.read", Resource: platformRes})
		if d.Allow || !slices.Equal(d.Policies, []string{"platform.audit.auditor-only"}) {
			t.Errorf("%+v", d)
		}
	})
	t.Run("self-approval refused", func(t *testing.T) {
		dualReq := Resource{Type: "dual-request", ID: "d1", Org: "dept-a", Owner: "ra-1", Level: Internal}
		cases := []struct {
			name    string
			p       Principal
			action  string
			res     Resource
			ctx     map[string]string
			allow   bool
			polices []string
		}{
			{"other approves", kro, "dual.approve", dualReq,
				map[string]string{"requester": "ra-1", "kind": "kms.key.recover"}, true, []string{"platform.dual.recovery-approve"}},
			{"requester approves", kro, "dual.approve", Resource{Type: "dual-request", ID: "d2", Owner: "kro"},
				map[string]string{"requester": "kro", "kind": "kms.key.recover"}, false, []string{"platform.approve.self"}},
			{"requester approves, owner unset", kro, "dual.approve", Resource{Type: "dual-request", ID: "d2"},
				map[string]string{"requester": "kro", "kind": "kms.key.recover"}, false, []string{"platform.approve.self"}},
			{"requester unnamed", kro, "dual.approve", Resource{Type: "dual-request", ID: "d3"},
				map[string]string{"kind": "kms.key.recover"}, false, []string{"platform.approve.requester-required"}},
			{"requester empty", kro, "dual.approve", Resource{Type: "dual-request", ID: "d3"},
				map[string]string{"requester": "", "kind": "kms.key.recover"}, false, []string{"platform.approve.requester-required"}},
			{"seal admin approves own application", seal, "seal.approve",
				Resource{Type: "seal-application", ID: "s1", Org: "dept-a", Owner: "seal"},
				map[string]string{"requester": "seal"}, false, []string{"platform.approve.self"}},
			{"seal admin approves another's", seal, "seal.approve",
				Resource{Type: "seal-application", ID: "s1", Org: "dept-a", Owner: "clerk"},
				map[string]string{"requester": "clerk"}, true, []string{"platform.seal-admin.org"}},
			{"requester withdraws", Principal{ID: "ra-1", Org: "dept-a", Roles: []Role{RoleRA}, Clearance: Internal}, "dual.reject", dualReq,
				map[string]string{"requester": "ra-1", "kind": "kms.key.recover"}, true, []string{"platform.dual.withdraw"}},
			{"secadmin checks an HSM operation", secadmin, "dual.approve",
				Resource{Type: "dual-request", ID: "d4", Owner: "sec-2"},
				map[string]string{"requester": "sec-2", "kind": "hsm.key.delete"}, true, []string{"platform.dual.secadmin"}},
			{"secadmin cannot check key recovery", secadmin, "dual.approve",
				Resource{Type: "dual-request", ID: "d5", Owner: "ra-1"},
				map[string]string{"requester": "ra-1", "kind": "kms.key.recover"}, false, nil},
			{"ca operator checks a ceremony", Principal{ID: "cao", Roles: []Role{RoleCAOperator}}, "dual.approve",
				Resource{Type: "dual-request", ID: "d6", Owner: "cao-2"},
				map[string]string{"requester": "cao-2", "kind": "ca.key.ceremony"}, true, []string{"platform.dual.ca-operator"}},
			{"secadmin grants to self", secadmin, "authz.role.grant", Resource{Type: "account", ID: "sec"},
				nil, false, []string{"platform.authz.self-administration"}},
			{"secadmin grants to another", secadmin, "authz.role.grant", Resource{Type: "account", ID: "ra-1"},
				nil, true, []string{"platform.secadmin.authz"}},
			{"secadmin disables self", secadmin, "authz.account.disable", Resource{Type: "account", ID: "sec"},
				nil, false, []string{"platform.authz.self-administration"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				req := Request{Principal: c.p, Action: c.action, Resource: c.res, Context: c.ctx}
				d := e.Decide(req)
				if d.Allow != c.allow || !slices.Equal(d.Policies, c.polices) {
					t.Fatalf("got %+v, want allow=%t policies=%v", d, c.allow, c.polices)
				}
				checkReason(t, req, d)
			})
		}
	})
}

// TestRolePairs checks every pair of roles held by one account: CheckRoles
// refuses exactly the conflicting pairs, naming a rule, and the engine denies
// such an account even an action every account may do, naming every rule
// the pair breaks.
func TestRolePairs(t *testing.T) {
	// The conflicts as documented in CheckRoles, written out pair by pair.
	conflicts := map[[2]Role][]string{}
	add := func(rule string, as, bs []Role) {
		for _, a := range as {
			for _, b := range bs {
				if a == b {
					continue
				}
				k := [2]Role{a, b}
				if slices.Index(Roles, a) > slices.Index(Roles, b) {
					k = [2]Role{b, a}
				}
				if !slices.Contains(conflicts[k], rule) {
					conflicts[k] = append(conflicts[k], rule)
				}
			}
		}
	}
	add("platform.sod.auditor", []Role{RoleAuditor}, Roles)
	add("platform.sod.admins", []Role{RoleSysAdmin}, []Role{RoleSecAdmin})
	add("platform.sod.officer-admin", []Role{RoleSysAdmin, RoleSecAdmin}, []Role{RoleCAOperator, RoleRA, RoleKeyRecovery})
	add("platform.sod.ca-ra", []Role{RoleCAOperator}, []Role{RoleRA})
	add("platform.sod.key-recovery", []Role{RoleKeyRecovery}, []Role{RoleRA, RoleCAOperator})
	add("platform.sod.application", []Role{RoleApplication}, Roles)
	add("platform.sod.public", []Role{RoleCitizen, RoleEnterpriseOperator},
		[]Role{RoleSysAdmin, RoleSecAdmin, RoleAuditor, RoleCAOperator, RoleRA, RoleKeyRecovery, RoleSealAdmin, RoleOfficial, RoleApplication})

	e := newEngine(t)
	n := 0
	for i, a := range Roles {
		for _, b := range Roles[i+1:] {
			n++
			t.Run(string(a)+"+"+string(b), func(t *testing.T) {
				rules := conflicts[[2]Role{a, b}]
				slices.Sort(rules)
				for _, roles := range [][]Role{{a, b}, {b, a}, {a, b, a}} {
					err := CheckRoles(roles)
					if len(rules) == 0 {
						if err != nil {
							t.Fatalf("CheckRoles(%v) = %v, want nil", roles, err)
						}
						continue
					}
					var rc *RoleConflictError
					if !errors.As(err, &rc) || !errors.Is(err, ErrRoleConflict) {
						t.Fatalf("CheckRoles(%v) = %v, want a RoleConflictError", roles, err)
					}
					if !slices.Contains(rules, rc.Rule) || !strings.Contains(err.Error(), rc.Rule) || rc.Source == "" {
						t.Fatalf("CheckRoles(%v) names rule %q (%v), want one of %v", roles, rc.Rule, err, rules)
					}
				}
				p := Principal{ID: "x", Org: "dept-a", Roles: []Role{a, b}, Clearance: Confidential}
				d := e.Decide(Request{Principal: p, Action: "signature.verify", Resource: Resource{Type: "document", ID: "d"}})
				if len(rules) == 0 {
					if !d.Allow {
						t.Fatalf("compatible roles denied: %+v", d)
					}
					return
				}
				if d.Allow || !slices.Equal(d.Policies, rules) {
					t.Fatalf("got %+v, want denied by %v", d, rules)
				}
			})
		}
	}
	if n != len(Roles)*(len(Roles)-1)/2 {
		t.Fatalf("checked %d pairs", n)
	}
}

func TestCheckRoles(t *testing.T) {
	cases := []struct {
		roles []Role
		err   error
	}{
		{nil, nil},
		{[]Role{}, nil},
		{[]Role{RoleRA}, nil},
		{[]Role{RoleRA, RoleRA}, nil},
		{[]Role{RoleAuditor, RoleAuditor}, nil},
		{[]Role{RoleCitizen, RoleEnterpriseOperator}, nil},
		{[]Role{RoleRA, RoleOfficial, RoleSealAdmin}, nil},
		{[]Role{RoleAuditor, RoleCAOperator}, ErrRoleConflict}, // K-03
		{[]Role{RoleCAOperator, RoleRA}, ErrRoleConflict},      // K-03
		{[]Role{RoleSysAdmin, RoleSecAdmin, RoleAuditor}, ErrRoleConflict},
		{[]Role{"root"}, ErrUnknownRole},
		{[]Role{""}, ErrUnknownRole},
		{[]Role{RoleRA, "RA"}, ErrUnknownRole},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.roles), func(t *testing.T) {
			err := CheckRoles(c.roles)
			if c.err == nil && err != nil || c.err != nil && !errors.Is(err, c.err) {
				t.Fatalf("CheckRoles(%q) = %v, want %v", c.roles, err, c.err)
			}
		})
	}
}

// TestSODPoliciesMatchRules keeps the Go rules and the Cedar forbids in step.
func TestSODPoliciesMatchRules(t *testing.T) {
	e := newEngine(t)
	forbids := map[string]bool{}
	for _, p := range e.Policies() {
		if strings.HasPrefix(p.ID, "platform.sod.") {
			if p.Effect != "forbid" {
				t.Errorf("%s is a %s", p.ID, p.Effect)
			}
			forbids[p.ID] = true
		}
	}
	for _, r := range sodRules {
		if !forbids[r.id] {
			t.Errorf("rule %s has no platform forbid", r.id)
		}
		delete(forbids, r.id)
	}
	for id := range forbids {
		t.Errorf("forbid %s has no CheckRoles rule", id)
	}
}

func TestDecideInvalid(t *testing.T) {
	e := newEngine(t)
	ok := Request{Principal: Principal{ID: "sys", Roles: []Role{RoleSysAdmin}}, Action: "metrics.read",
		Resource: Resource{Type: "platform", ID: "node"}}
	if d := e.Decide(ok); !d.Allow {
		t.Fatalf("baseline: %+v", d)
	}
	cases := []struct {
		name   string
		mutate func(*Request)
		reason string
	}{
		{"unknown action", func(r *Request) { r.Action = "metrics.delete" }, `unknown action "metrics.delete"`},
		{"empty action", func(r *Request) { r.Action = "" }, `unknown action ""`},
		{"group as action", func(r *Request) { r.Action = "class:read" }, `unknown action "class:read"`},
		{"no principal id", func(r *Request) { r.Principal.ID = "" }, "principal has no id"},
		{"negative clearance", func(r *Request) { r.Principal.Clearance = -1 }, "principal clearance -1"},
		{"clearance too high", func(r *Request) { r.Principal.Clearance = 4 }, "principal clearance 4"},
		{"no resource type", func(r *Request) { r.Resource.Type = "" }, "resource has no type"},
		{"bad resource level", func(r *Request) { r.Resource.Level = 9 }, "resource level 9"},
		{"unknown role", func(r *Request) { r.Principal.Roles = []Role{"SYSADMIN"} }, "no policy permits metrics.read"},
		{"no roles", func(r *Request) { r.Principal.Roles = nil }, "no policy permits metrics.read"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ok
			c.mutate(&r)
			d := e.Decide(r)
			if d.Allow || len(d.Policies) != 0 || !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("got %+v, want a deny with reason containing %q", d, c.reason)
			}
		})
	}
	var zero Engine
	if d := zero.Decide(ok); d.Allow {
		t.Fatalf("zero engine allowed: %+v", d)
	}
}

// TestDecideCaches checks that cached principal entities do not leak between
// principals that share an id but differ in clearance, organisation or roles.
func TestDecideCaches(t *testing.T) {
	e := newEngine(t)
	res := Resource{Type: "certificate", ID: "c", Org: "dept-a", Level: Internal}
	ra := Principal{ID: "u", Org: "dept-a", Roles: []Role{RoleRA}, Clearance: Internal}
	for i := range 3 {
		if d := e.Decide(Request{Principal: ra, Action: "ca.certificate.issue", Resource: res}); !d.Allow {
			t.Fatalf("round %d: %+v", i, d)
		}
		low := ra
		low.Clearance = Public
		if d := e.Decide(Request{Principal: low, Action: "ca.certificate.issue", Resource: res}); d.Allow {
			t.Fatalf("round %d: same id, lower clearance allowed: %+v", i, d)
		}
		moved := ra
		moved.Org = "dept-b"
		if d := e.Decide(Request{Principal: moved, Action: "ca.certificate.issue", Resource: res}); d.Allow {
			t.Fatalf("round %d: same id, other org allowed: %+v", i, d)
		}
		both := ra
		both.Roles = []Role{RoleRA, RoleCAOperator}
		if d := e.Decide(Request{Principal: both, Action: "ca.certificate.issue", Resource: res}); d.Allow {
			t.Fatalf("round %d: same id, conflicting roles allowed: %+v", i, d)
		}
	}
	// Fill the caches past their bound: decisions stay right.
	for i := range maxCached + 10 {
		p := Principal{ID: fmt.Sprintf("u%d", i), Org: "dept-a", Roles: []Role{RoleRA}, Clearance: Internal}
		if d := e.Decide(Request{Principal: p, Action: "ca.certificate.issue", Resource: res,
			Context: map[string]string{"n": fmt.Sprint(i)}}); !d.Allow {
			t.Fatalf("principal %d: %+v", i, d)
		}
	}
}
