package policy

import (
	"strings"
	"testing"
)

// FuzzDecide feeds arbitrary requests to the engine: it must answer every
// one without falling back on its panic recovery, deny unknown actions, and
// justify every allow with a permit of the loaded set.
func FuzzDecide(f *testing.F) {
	f.Add("ra-1", "dept-a", "ra", 1, "ca.certificate.issue", "certificate", "c1", "dept-a", "", 1, "requester", "x")
	f.Add("", "", "", 0, "", "", "", "", "", 0, "", "")
	f.Add("a", "b", "auditor\x00sysadmin", 3, "audit.read", "platform", "node", "", "a", 0, "kind", "hsm.*")
	f.Add("kro", "", "key-recovery-officer", 3, "dual.approve", "dual-request", "d", "", "kro", 0, "requester", "kro")
	f.Add("x", "y", "citizen", -5, "class:write", "Govtrust::Resource", "\"", "", "", 99, "", "")
	f.Add("\xff\xfe", "组织", "official", 2, "seal.use", "seal", "印章/1", "组织", "", 2, "\xff", "\x00")
	e, err := New(nil)
	if err != nil {
		f.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range e.Policies() {
		if p.Effect == "permit" {
			ids[p.ID] = true
		}
	}
	f.Fuzz(func(t *testing.T, pid, porg, roles string, clearance int, action, rtype, rid, rorg, owner string, level int, ck, cv string) {
		var rs []Role
		for r := range strings.SplitSeq(roles, ",") {
			rs = append(rs, Role(r))
		}
		req := Request{
			Principal: Principal{ID: pid, Org: porg, Roles: rs, Clearance: Level(clearance)},
			Action:    action,
			Resource:  Resource{Type: rtype, ID: rid, Org: rorg, Owner: owner, Level: Level(level), Attrs: map[string]string{ck: cv}},
			Context:   map[string]string{ck: cv},
		}
		d := e.Decide(req)
		if strings.HasPrefix(d.Reason, "internal error") {
			t.Fatalf("recovered from a panic: %s", d.Reason)
		}
		if _, ok := Lookup(action); !ok && d.Allow {
			t.Fatalf("unknown action %q allowed", action)
		}
		if d.Allow {
			if len(d.Policies) == 0 {
				t.Fatal("allow without a policy")
			}
			for _, p := range d.Policies {
				if !ids[p] {
					t.Fatalf("allowed by %q, not a permit", p)
				}
			}
			if !Level(level).Valid() || !Level(clearance).Valid() || level > clearance {
				t.Fatalf("allowed at level %d with clearance %d", level, clearance)
			}
		}
		if d.Reason == "" || d.Version == "" {
			t.Fatalf("decision without reason or version: %+v", d)
		}
	})
}
