package directory

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestSearchTimeLimit: a subtree search whose time limit has passed stops
// with the context's error (the server answers timeLimitExceeded), while
// the same search within its limit returns every entry.
func TestSearchTimeLimit(t *testing.T) {
	var es []*Entry
	base, err := newEntry("ou=departments,dc=govtrust,dc=local", KindDepartment, "top", "organizationalUnit")
	if err != nil {
		t.Fatal(err)
	}
	es = append(es, base)
	for i := range 5000 {
		e, err := newEntry(fmt.Sprintf("uid=p%d,ou=departments,dc=govtrust,dc=local", i), KindPerson, "top", "inetOrgPerson")
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	tr := newTree()
	tr.reset(es, 1)
	f, err := compileFilter("(objectClass=*)")
	if err != nil {
		t.Fatal(err)
	}
	all := func(string) bool { return true }
	got, err := tr.search(context.Background(), base.norm, scopeSub, f, all, len(es)+1)
	if err != nil || len(got) != len(es) {
		t.Fatalf("search within its limit: %d entries, %v; want %d", len(got), err, len(es))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.search(ctx, base.norm, scopeSub, f, all, len(es)+1); !errors.Is(err, context.Canceled) {
		t.Fatalf("search past its limit: %v, want the context's error", err)
	}
}

// TestSearchStopsAtSizeLimit: a search walks the tree only until it has
// the entries it was asked for, on the subtree walk and on the index
// alike, instead of collecting every match and cutting afterwards. The
// context is cancelled so that a walk that went on would report it at its
// 1024th step.
func TestSearchStopsAtSizeLimit(t *testing.T) {
	base, err := newEntry("ou=departments,dc=govtrust,dc=local", KindDepartment, "top", "organizationalUnit")
	if err != nil {
		t.Fatal(err)
	}
	es := []*Entry{base}
	for i := range 5000 {
		e, err := newEntry(fmt.Sprintf("uid=p%d,ou=departments,dc=govtrust,dc=local", i), KindPerson, "top", "inetOrgPerson")
		if err != nil {
			t.Fatal(err)
		}
		e.setStr("cn", "same")
		es = append(es, e)
	}
	tr := newTree()
	tr.reset(es, 1)
	all := func(string) bool { return true }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, filter := range []string{"(objectClass=*)", "(cn=same)"} {
		f, err := compileFilter(filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, scope := range []int{scopeOne, scopeSub} {
			got, err := tr.search(ctx, base.norm, scope, f, all, 3)
			if err != nil || len(got) != 3 {
				t.Errorf("%s scope %d, at most 3: %d entries, %v; want 3 and the walk stopped there", filter, scope, len(got), err)
			}
		}
	}
}
