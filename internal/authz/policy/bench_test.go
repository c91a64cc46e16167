package policy

import (
	"fmt"
	"testing"
)

// realistic is a registration officer issuing a certificate in their own
// organisation, as the authz middleware asks it: allowed after every platform
// forbid that applies to a write has been evaluated.
func realistic() Request {
	return Request{
		Principal: Principal{ID: "acct-7f3a", Org: "dept-tax", Roles: []Role{RoleRA}, Clearance: Internal},
		Action:    "ca.certificate.issue",
		Resource:  Resource{Type: "certificate", ID: "csr-0001", Org: "dept-tax", Owner: "citizen-42", Level: Internal},
		Context:   map[string]string{"via": "token"},
	}
}

func benchEngine(b *testing.B, req Request, allow bool) *Engine {
	e, err := New(nil)
	if err != nil {
		b.Fatal(err)
	}
	if d := e.Decide(req); d.Allow != allow {
		b.Fatalf("setup: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	return e
}

// BenchmarkDecide measures decisions on one goroutine against the platform
// policy set; the target is at least 100,000 decisions per second on one
// core. Run with -cpu 1.
func BenchmarkDecide(b *testing.B) {
	req := realistic()
	e := benchEngine(b, req, true)
	for b.Loop() {
		e.Decide(req)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkDecideDeny is the auditor trying a write: denied by a forbid.
func BenchmarkDecideDeny(b *testing.B) {
	req := realistic()
	req.Principal = Principal{ID: "aud-1", Org: "platform", Roles: []Role{RoleAuditor}, Clearance: Confidential}
	e := benchEngine(b, req, false)
	for b.Loop() {
		e.Decide(req)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkDecideColdPrincipal uses a different principal and resource every
// time (10,000 of each, more than the entity cache holds), so every decision
// builds its entities.
func BenchmarkDecideColdPrincipal(b *testing.B) {
	const n = 10000
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = realistic()
		reqs[i].Principal.ID = fmt.Sprintf("acct-%d", i)
		reqs[i].Resource.ID = fmt.Sprintf("csr-%d", i)
	}
	e := benchEngine(b, reqs[0], true)
	i := 0
	for b.Loop() {
		e.Decide(reqs[i%n])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkDecideParallel runs BenchmarkDecide's request on every core.
func BenchmarkDecideParallel(b *testing.B) {
	req := realistic()
	e := benchEngine(b, req, true)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Decide(req)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
