package seal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/signature/ses"
	"github.com/govtrust/govtrust/tsa"
)

// token makes another bearer token for account id (one made before the
// node's clock was moved on has expired).
func (tn *testNode) token(id string) string {
	tn.t.Helper()
	tok, _, err := tn.n.Env().Authz.CreateToken(context.Background(), id, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatal(err)
	}
	return tok
}

// operators creates two CA operators and returns their tokens.
func (tn *testNode) operators() (string, string) {
	tn.t.Helper()
	az := tn.n.Env().Authz
	var toks []string
	for _, name := range []string{"op1", "op2"} {
		acc, err := az.CreateAccount(context.Background(), authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: authz.BootstrapOrg,
			Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleCAOperator}})
		if err != nil {
			tn.t.Fatal(err)
		}
		toks = append(toks, tn.token(acc.ID))
	}
	return toks[0], toks[1]
}

// send sends JSON to the HTTPS API and returns the status, the body and
// its content type.
func (tn *testNode) send(method, path, token string, body any) (int, []byte, string) {
	tn.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header.Get("Content-Type")
}

// revoke has CA operators revoke cert at its issuing CA caID (op2
// approving a CA certificate's revocation).
func (tn *testNode) revoke(caID string, cert *smx509.Certificate, reason, op1, op2 string) {
	tn.t.Helper()
	body := map[string]string{"serial": hex.EncodeToString(cert.SerialNumber.Bytes()), "reason": reason}
	path := "/api/v1/ca/" + caID + "/revocations"
	status, raw, _ := tn.send("POST", path, op1, body)
	if status == http.StatusAccepted {
		var p struct{ Approval string }
		if err := json.Unmarshal(raw, &p); err != nil {
			tn.t.Fatal(err)
		}
		body["approval"] = p.Approval
		status, raw, _ = tn.send("POST", path, op2, body)
	}
	if status != http.StatusOK {
		tn.t.Fatalf("revoke %s at %s: %d %s", cert.Subject.CommonName, caID, status, raw)
	}
}

// admins are two seal administrators of org demo (applicant, approver).
type admins struct {
	tn     *testNode
	a1, a2 string
}

func (tn *testNode) admins() *admins {
	a1, _ := tn.account("seal-admin-1", policy.RoleSealAdmin)
	a2, _ := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, _ = tn.account("zhang", policy.RoleOfficial)
	return &admins{tn: tn, a1: a1, a2: a2}
}

// approved applies for a seal listing off, has it approved and returns the
// application's ID and the applicant's token.
func (ad *admins) approved(name string, off *softOfficial) (string, string) {
	tn := ad.tn
	tn.t.Helper()
	now := tn.n.Env().Clock.Now()
	tok1, tok2 := tn.token(ad.a1), tn.token(ad.a2)
	var a Application
	req := ApplyRequest{Name: name, Kind: "official", Generate: true, ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0),
		Holders: []Holder{{Account: "zhang", Certificate: pemOf(off.cert)}}}
	if st := tn.call("POST", "/api/v1/seal-applications", tok1, req, &a); st != 201 {
		tn.t.Fatalf("apply: %d", st)
	}
	if st := tn.call("POST", "/api/v1/seal-applications/"+a.ID+"/approve", tok2, ApproveRequest{}, nil); st != 200 {
		tn.t.Fatalf("approve: %d", st)
	}
	return a.ID, tok1
}

// make makes the approved application id: the seal on 201, otherwise the
// status with the problem+json answer (a test failure when it is not one).
func (tn *testNode) make(id, tok string) (*Record, int, *httpx.Problem) {
	tn.t.Helper()
	st, raw, ct := tn.send("POST", "/api/v1/seal-applications/"+id+"/make", tok, nil)
	if st == http.StatusCreated {
		var r Record
		if err := json.Unmarshal(raw, &r); err != nil {
			tn.t.Fatal(err)
		}
		return &r, st, nil
	}
	var p httpx.Problem
	if ct != httpx.ProblemContentType || json.Unmarshal(raw, &p) != nil {
		tn.t.Fatalf("make: %d %s %s: not problem+json", st, ct, raw)
	}
	return nil, st, &p
}

// mustMake makes a seal listing off and returns it.
func (ad *admins) mustMake(name string, off *softOfficial) *Record {
	ad.tn.t.Helper()
	id, tok := ad.approved(name, off)
	r, st, p := ad.tn.make(id, tok)
	if r == nil {
		ad.tn.t.Fatalf("make %s: %d %+v", name, st, p)
	}
	return r
}

// makerOf is the maker certificate a seal carries.
func makerOf(t testing.TB, r *Record) *smx509.Certificate {
	t.Helper()
	s, err := ses.ParseSeal(r.DER)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.MakerCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// useSeal verifies a use of seal r by off at the node's time (signed in
// memory, without a time-stamp).
func (tn *testNode) useSeal(r *Record, off *softOfficial) *Report {
	tn.t.Helper()
	data := []byte("通知 " + r.ID)
	sig, err := ses.Sign(ses.NewTBS(r.DER, tn.n.Env().Clock.Now(), ses.SM3(data), "file:notice"), off.cert, off.key)
	if err != nil {
		tn.t.Fatal(err)
	}
	return tn.svc.Verify(context.Background(), VerifyRequest{Format: FormatSES, Document: data, Signature: sig.Raw})
}

// waitGeneration waits until the active maker is generation gen.
func (tn *testNode) waitGeneration(gen int, within time.Duration) *maker {
	tn.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := tn.svc.maker.Load(); m != nil && m.generation == gen {
			return m
		}
		if time.Now().After(deadline) {
			g := 0
			if m := tn.svc.maker.Load(); m != nil {
				g = m.generation
			}
			tn.t.Fatalf("the seal maker is generation %d after %s, want %d", g, within, gen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readyz returns the seal service's check in the node's readiness answer
// ("ok" when ready).
func (tn *testNode) readyz() string {
	tn.t.Helper()
	resp, err := tn.c.Get("http://" + tn.n.Addresses().HTTP + "/readyz")
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Checks map[string]string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		tn.t.Fatal(err)
	}
	return r.Checks["seal"]
}

// freshCRLs has a CA operator publish new CRLs of the SM2 CAs, so that
// certificates verify at the node's time once its clock was moved on (the
// CA's own schedule runs on the real clock).
func (tn *testNode) freshCRLs(op string) {
	tn.t.Helper()
	for _, id := range []string{"sm2-root", "sm2-issuing"} {
		if st, raw, _ := tn.send("POST", "/api/v1/ca/"+id+"/crls", op, nil); st != http.StatusCreated {
			tn.t.Fatalf("CRL of %s: %d %s", id, st, raw)
		}
	}
}

func sameKey(a, b *smx509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// TestMakerRenewedBeforeExpiry: once two thirds of the seal maker
// certificate's validity have passed, the maker is renewed with a new key
// and certificate, seals made from then on carry the new one, and a seal
// made by the old maker still verifies (its certificate is retired, not
// revoked). The node's clock is moved on; seals are made throughout.
func TestMakerRenewedBeforeExpiry(t *testing.T) {
	clk := clock.NewFake(time.Now())
	tn := startNodeFull(t, t.TempDir(), "", clk, func(c *ca.Service, ts *tsa.Service) *Service {
		s := New(c, c, ts)
		s.revPoll = 100 * time.Millisecond
		return s
	})
	ad := tn.admins()
	first := makerOf(t, ad.mustMake("福州市数据管理局", tn.softOfficial("张三")))
	if got := first.NotAfter.Sub(first.NotBefore); got < 1000*24*time.Hour {
		t.Fatalf("the maker certificate is valid for %s; the test expects the seal-maker profile's 1095 days", got)
	}

	// A year on: not due; a seal for an official certified then.
	clk.Set(first.NotBefore.Add(400 * 24 * time.Hour))
	off := tn.softOfficial("李四")
	old := ad.mustMake("福州市财政局", off)
	if !sameKey(makerOf(t, old), first) {
		t.Fatal("the maker was renewed a year into its three-year certificate")
	}

	// Past two thirds of the maker's validity, before its end.
	clk.Set(renewAt(first).Add(time.Hour))
	r := ad.mustMake("福州市教育局", off)
	if mk := makerOf(t, r); sameKey(mk, first) {
		// Make saw the maker due and woke the loop; this seal may still be
		// the old maker's, the next is the new one's.
		tn.waitGeneration(2, 5*time.Second)
		r = ad.mustMake("福州市卫生健康委员会", off)
	}
	renewed := makerOf(t, r)
	now := clk.Now()
	op, _ := tn.operators()
	tn.freshCRLs(op)
	switch {
	case sameKey(renewed, first) || renewed.Equal(first):
		t.Fatal("past two thirds of its validity the seal maker was not renewed: seals are still made with its key")
	case now.Before(renewed.NotBefore) || !renewed.NotAfter.After(first.NotAfter):
		t.Fatalf("the new maker certificate is valid %s to %s at %s", renewed.NotBefore, renewed.NotAfter, now)
	case renewed.Subject.String() != first.Subject.String():
		t.Fatalf("the new maker is %s, was %s", renewed.Subject, first.Subject)
	}
	mustValid(t, tn.useSeal(r, off))
	mustValid(t, tn.useSeal(old, off)) // the old maker's seal
	if r := tn.readyz(); r != "ok" {
		t.Errorf("readyz: seal %q", r)
	}

	// The registry of makers: generation 1 retired with why, 2 active.
	type row struct {
		gen         int
		status, why string
	}
	var rows []row
	err := tn.n.Env().DB.Read(context.Background(), func(q store.Querier) error {
		rs, err := q.Query(context.Background(), `SELECT generation, status, retired_why FROM seal_maker ORDER BY generation`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.gen, &r.status, &r.why); err != nil {
				return err
			}
			rows = append(rows, r)
		}
		return rs.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].status != "retired" || !strings.Contains(rows[0].why, "two thirds") || rows[1].status != "active" {
		t.Fatalf("seal_maker rows %+v", rows)
	}
}

// TestMakerRevokedStopsAtOnce: once a CA operator revokes the seal maker's
// certificate, no seal is made with it (the CA's hook stops it before the
// revocation is acknowledged); the maker is renewed at once, without
// waiting for a poll, and the next seal carries the new certificate, which
// verifies.
func TestMakerRevokedStopsAtOnce(t *testing.T) {
	tn := startNodeFull(t, t.TempDir(), "", nil, func(c *ca.Service, ts *tsa.Service) *Service {
		s := New(c, c, ts)
		s.revPoll = time.Hour // the hook alone
		return s
	})
	op1, op2 := tn.operators()
	ad := tn.admins()
	off := tn.softOfficial("张三")
	first := makerOf(t, ad.mustMake("福州市数据管理局", off))
	id, tok := ad.approved("福州市财政局", off)

	tn.revoke("sm2-issuing", first, "keyCompromise", op1, op2)
	if m := tn.svc.maker.Load(); m.generation == 1 && m.revoked.Load() == nil {
		t.Fatal("the revocation was acknowledged before the seal maker was stopped")
	}
	r, st, p := tn.make(id, tok)
	switch {
	case r != nil && sameKey(makerOf(t, r), first):
		t.Fatal("a seal was made with the revoked maker certificate after the revocation was acknowledged")
	case r == nil && (st != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "revoked")):
		t.Fatalf("make after the revocation: %d %+v; want 503 saying revoked, or a seal by a new maker", st, p)
	}
	m := tn.waitGeneration(2, 5*time.Second)
	if r == nil {
		if r, st, p = tn.make(id, tok); r == nil {
			t.Fatalf("make after the renewal: %d %+v", st, p)
		}
	}
	if mk := makerOf(t, r); sameKey(mk, first) || !bytes.Equal(mk.Raw, m.cert) {
		t.Fatalf("the seal is made by %x, want the new maker %x", mk.SerialNumber, m.parsed.SerialNumber)
	}
	mustValid(t, tn.useSeal(r, off))
	if r := tn.readyz(); r != "ok" {
		t.Errorf("readyz after the renewal: seal %q", r)
	}
}

// TestMakerIssuingCARevoked: when the certificate of the maker's issuing
// CA is revoked, no seal is made (503 problem+json saying why, /readyz not
// ready): the CA cannot issue a new maker certificate. Once the CA lineage
// is rolled over, the next poll renews the maker under the new generation
// and seals are made again.
func TestMakerIssuingCARevoked(t *testing.T) {
	tn := startNodeFull(t, t.TempDir(), "", nil, func(c *ca.Service, ts *tsa.Service) *Service {
		s := New(c, c, ts)
		s.revPoll = 200 * time.Millisecond
		return s
	})
	op1, op2 := tn.operators()
	ad := tn.admins()
	off := tn.softOfficial("张三")
	first := makerOf(t, ad.mustMake("福州市数据管理局", off))
	issuing := tn.svc.maker.Load().chain[0]
	caCert, err := smx509.ParseCertificate(issuing)
	if err != nil {
		t.Fatal(err)
	}
	id, tok := ad.approved("福州市财政局", off)

	tn.revoke("sm2-root", caCert, "cACompromise", op1, op2)
	r, st, p := tn.make(id, tok)
	if r != nil || st != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "revoked") {
		t.Fatalf("make after the issuing CA's revocation: %d %+v; want 503 saying revoked", st, p)
	}
	time.Sleep(500 * time.Millisecond) // a few polls, each failing to renew
	if r, st, p = tn.make(id, tok); r != nil || st != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "renewal failed") {
		t.Fatalf("make while the CA cannot renew the maker: %d %+v; want 503 saying why", st, p)
	}
	if r := tn.readyz(); !strings.Contains(r, "revoked") {
		t.Errorf("readyz: seal %q; want not ready, saying revoked", r)
	}

	if st, raw, _ := tn.send("POST", "/api/v1/ca/sm2-issuing/rollover", op1, map[string]string{}); st != http.StatusCreated {
		t.Fatalf("CA rollover: %d %s", st, raw)
	}
	m := tn.waitGeneration(2, 5*time.Second)
	if r, st, p = tn.make(id, tok); r == nil {
		t.Fatalf("make after the CA's rollover: %d %+v", st, p)
	}
	mk := makerOf(t, r)
	if sameKey(mk, first) || !bytes.Equal(mk.Raw, m.cert) || bytes.Equal(m.chain[0], issuing) {
		t.Fatal("the seal is not made by a new maker under the new CA generation")
	}
	// The official's certificate fell with its CA: a seal for one
	// certified under the new generation verifies.
	off2 := tn.softOfficial("李四")
	mustValid(t, tn.useSeal(ad.mustMake("福州市教育局", off2), off2))
	if r := tn.readyz(); r != "ok" {
		t.Errorf("readyz after the renewal: seal %q", r)
	}
}

// hookless hides the CA's in-process revocation hook from the seal
// service, as one in another process than the revoking CA has none.
type hookless struct {
	Issuer
	revwatch.Reader
}

// TestMakerRevokedElsewhere: a revocation the service is not told of
// (made by another process) is found by its poll of the CA's records, and
// by the check at start when the node was down: the maker is renewed
// before the next seal.
func TestMakerRevokedElsewhere(t *testing.T) {
	dir, addr := t.TempDir(), ""
	start := func(poll time.Duration, hook bool) *testNode {
		tn := startNodeFull(t, dir, addr, nil, func(c *ca.Service, ts *tsa.Service) *Service {
			s := New(c, c, ts)
			if !hook {
				s = New(hookless{c, c}, c, ts)
			}
			s.revPoll = poll
			return s
		})
		addr = tn.n.Addresses().HTTP
		return tn
	}
	tn := start(300*time.Millisecond, false)
	op1, op2 := tn.operators()
	ad := tn.admins()
	off := tn.softOfficial("张三")
	first := makerOf(t, ad.mustMake("福州市数据管理局", off))
	tn.revoke("sm2-issuing", first, "superseded", op1, op2)
	m2 := tn.waitGeneration(2, 5*time.Second) // the poll, no seal made meanwhile

	// The node down when the revocation is made: the next start renews the
	// maker before its first seal.
	tn.stop()
	tn = start(time.Hour, false)
	ad.tn = tn
	if g := tn.svc.maker.Load().generation; g != 2 {
		t.Fatalf("after a restart the maker is generation %d, want 2", g)
	}
	tn.revoke("sm2-issuing", m2.parsed, "keyCompromise", op1, op2)
	if tn.svc.maker.Load().revoked.Load() != nil {
		t.Fatal("the hookless service was told of the revocation: the test does not show the check at start")
	}
	tn.stop()
	tn = start(time.Hour, true)
	ad.tn = tn
	if m := tn.svc.maker.Load(); m == nil || m.generation != 3 {
		t.Fatalf("after a restart the maker is %+v, want generation 3", m)
	}
	r := ad.mustMake("福州市财政局", off)
	if mk := makerOf(t, r); !bytes.Equal(mk.Raw, tn.svc.maker.Load().cert) {
		t.Fatal("the first seal after the restart is not made by the new maker")
	}
	mustValid(t, tn.useSeal(r, off))
}

// TestMakerStore reads and writes the maker registry on SQLite and
// PostgreSQL (the same migrations in both dialects): generations of one
// lineage, one active, a second generation with the same number refused.
func TestMakerStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ins := func(uri string, gen int, status string) error {
			return db.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO seal_maker (key_uri, cert, chain, created_at, base, generation, status) VALUES (?, ?, ?, ?, ?, ?, ?)`,
					uri, []byte{0x30, 0}, []byte{}, "t", "soft:seal/maker", gen, status)
				return err
			})
		}
		if err := ins("soft:seal/maker", 1, "retired"); err != nil {
			t.Fatal(err)
		}
		if err := ins("soft:seal/maker-g2-01", 2, "active"); err != nil {
			t.Fatal(err)
		}
		if err := ins("soft:seal/maker-g2-02", 2, "active"); !store.IsUniqueViolation(err) {
			t.Fatalf("a second generation 2: %v", err)
		}
		var uri string
		var gen int
		err := db.Read(ctx, func(q store.Querier) error {
			return q.QueryRow(ctx, `SELECT key_uri, generation FROM seal_maker WHERE base = ? AND status = 'active' ORDER BY generation DESC LIMIT 1`, "soft:seal/maker").Scan(&uri, &gen)
		})
		if err != nil || uri != "soft:seal/maker-g2-01" || gen != 2 {
			t.Fatalf("active maker %q %d %v", uri, gen, err)
		}
	}, (&Service{}).Migrations()...)
}

func TestNextKeyURI(t *testing.T) {
	for base, want := range map[string]string{
		"soft:seal/maker":                       "soft:seal/maker-g3-",
		"pkcs11:token=seal;object=maker;id=%01": "pkcs11:object=maker-g3-",
		"pkcs11:token=seal;id=%01":              "pkcs11:object=seal-maker-g3-",
	} {
		got, err := nextKeyURI(base, 3)
		if err != nil || !strings.HasPrefix(got, want) || strings.Contains(got, "id=") {
			t.Errorf("nextKeyURI(%s) = %q, %v; want %s…", base, got, err, want)
		}
		if strings.HasPrefix(base, "pkcs11:") && !strings.HasSuffix(got, ";token=seal") {
			t.Errorf("nextKeyURI(%s) = %q: the token is lost", base, got)
		}
	}
	a, _ := nextKeyURI("soft:seal/maker", 2)
	b, _ := nextKeyURI("soft:seal/maker", 2)
	if a == b {
		t.Error("two renewals to the same generation name the same key")
	}
}
