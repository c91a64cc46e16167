package tsa

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// operators creates two CA operators and returns their tokens.
func (tn *testNode) operators() (string, string) {
	tn.t.Helper()
	ctx := audit.WithActor(context.Background(), "cli:test")
	az := tn.n.Env().Authz
	var toks []string
	for _, name := range []string{"op1", "op2"} {
		acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: authz.BootstrapOrg,
			Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleCAOperator}})
		if err != nil {
			tn.t.Fatal(err)
		}
		tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
		if err != nil {
			tn.t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	return toks[0], toks[1]
}

// api sends a JSON request to the HTTPS listener with token tok.
func (tn *testNode) api(method, path, tok string, body any) (int, []byte) {
	tn.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// revoke has CA operators revoke cert at its issuing CA caID (op2
// approving a CA certificate's revocation).
func (tn *testNode) revoke(caID string, cert *smx509.Certificate, reason, op1, op2 string) {
	tn.t.Helper()
	body := map[string]string{"serial": hex.EncodeToString(cert.SerialNumber.Bytes()), "reason": reason}
	path := "/api/v1/ca/" + caID + "/revocations"
	status, raw := tn.api("POST", path, op1, body)
	if status == http.StatusAccepted {
		var p struct{ Approval string }
		if err := json.Unmarshal(raw, &p); err != nil {
			tn.t.Fatal(err)
		}
		body["approval"] = p.Approval
		status, raw = tn.api("POST", path, op2, body)
	}
	if status != http.StatusOK {
		tn.t.Fatalf("revoke %s at %s: %d %s", cert.Subject.CommonName, caID, status, raw)
	}
}

// signerOf verifies a granted reply of profile and returns the TSA
// certificate that signed it; nil for a rejection, with its failure info.
func (tn *testNode) signerOf(profile string, body []byte) (*smx509.Certificate, tsp.FailureInfo) {
	tn.t.Helper()
	r, err := tsp.ParseResponse(body)
	if err != nil {
		tn.t.Fatalf("parse response: %v", err)
	}
	if r.Token == nil {
		return nil, failure(r)
	}
	tok, err := tsp.ParseToken(r.Token)
	if err != nil {
		tn.t.Fatal(err)
	}
	var inter []*smx509.Certificate
	for _, u := range tn.svc.units.Load().all[profile] {
		inter = append(inter, u.cert)
		for _, der := range u.chain {
			c, _ := smx509.ParseCertificate(der)
			inter = append(inter, c)
		}
	}
	c, err := tok.Verify(tsp.VerifyOptions{Roots: tn.roots(profile + "-root"), Intermediates: inter})
	if err != nil {
		tn.t.Fatalf("verify a granted token: %v", err)
	}
	return c, -1
}

// cn names a certificate in a message.
func cn(c *smx509.Certificate) string {
	if c == nil {
		return "none"
	}
	return c.Subject.CommonName
}

// failure is the one failure info bit of a rejection, -1 otherwise.
func failure(r *tsp.Response) tsp.FailureInfo {
	if len(r.Failures) != 1 {
		return -1
	}
	return r.Failures[0]
}

// waitGeneration waits until profile's active unit is generation gen.
func (tn *testNode) waitGeneration(profile string, gen int, within time.Duration) *unit {
	tn.t.Helper()
	deadline := time.Now().Add(within)
	for {
		u := tn.svc.units.Load().active[profile]
		if u.generation == gen {
			return u
		}
		if time.Now().After(deadline) {
			tn.t.Fatalf("%s unit still generation %d %s after the revocation, want %d", profile, u.generation, within, gen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stampReq(t *testing.T, h *tsp.HashAlg, data string) []byte {
	t.Helper()
	req, err := tsp.NewRequest(h, h.Sum([]byte(data)), big.NewInt(7), true).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestRevokedUnitStopsAtOnce: once a CA operator revokes the SM2 unit's
// certificate (keyCompromise), no reply to a request sent after the
// revocation was acknowledged carries a token of that unit, while clients
// stamp throughout; the unit is rolled over within moments (the CA's hook
// wakes the TSA) and tokens are granted again, signed by the new unit; the
// ECDSA profile is untouched.
func TestRevokedUnitStopsAtOnce(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	op1, op2 := tn.operators()
	u1 := tn.svc.units.Load().active["sm2"]
	req := stampReq(t, tsp.SM3, "revoked unit")

	type reply struct {
		sent   time.Time
		signer *smx509.Certificate
		fail   tsp.FailureInfo
	}
	var (
		mu      sync.Mutex
		replies []reply
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				sent := time.Now()
				resp, err := tn.c.Post("http://"+tn.n.Addresses().HTTP+"/tsa", QueryType, bytes.NewReader(req))
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r, err := tsp.ParseResponse(body)
				if err != nil {
					t.Errorf("parse response: %v", err)
					return
				}
				rep := reply{sent: sent}
				if r.Token != nil {
					tok, err := tsp.ParseToken(r.Token)
					if err != nil || len(tok.Certificates) == 0 {
						t.Errorf("token: %v, %d certificates", err, len(tok.Certificates))
						return
					}
					rep.signer = tok.Certificates[0]
				} else {
					rep.fail = failure(r)
				}
				mu.Lock()
				replies = append(replies, rep)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	tn.revoke("sm2-issuing", u1.cert, "keyCompromise", op1, op2)
	acked := time.Now()
	u2 := tn.waitGeneration("sm2", 2, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	var before, total, refused, byNew int
	for _, r := range replies {
		switch {
		case r.sent.Before(acked):
			before++
		case r.signer == nil:
			if r.fail != tsp.SystemFailure {
				t.Errorf("a request after the revocation got failure info %v, want systemFailure", r.fail)
			}
			refused++
		case bytes.Equal(r.signer.Raw, u1.cert.Raw):
			t.Errorf("a request sent %s after the revocation was acknowledged got a token of the revoked unit", r.sent.Sub(acked))
		default:
			if !bytes.Equal(r.signer.Raw, u2.cert.Raw) {
				t.Errorf("a token signed by %s", r.signer.Subject.CommonName)
			}
			byNew++
		}
		total++
	}
	t.Logf("%d replies before the acknowledgement, %d after: %d systemFailure, %d by the new unit", before, total-before, refused, byNew)
	if before == 0 || byNew == 0 {
		t.Fatalf("%d replies before the revocation, %d tokens by the new unit: the test did not exercise both", before, byNew)
	}
	c, _ := tn.signerOf("sm2", func() []byte { _, b := tn.stamp("/tsa", req); return b }())
	if c == nil || !bytes.Equal(c.Raw, u2.cert.Raw) {
		t.Fatal("after the rollover the token is not signed by the new unit")
	}
	if g := tn.svc.units.Load().active["ecdsa"].generation; g != 1 {
		t.Errorf("the ECDSA unit is generation %d, want 1", g)
	}
	if status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", ""); status != http.StatusOK {
		t.Errorf("readyz after the rollover: %d %s", status, body)
	}
}

// hookless hides the CA's in-process revocation hook from the TSA, as a
// TSA in another process than the revoking CA has none.
type hookless struct{ *caIssuer }

// caIssuer is what the TSA uses of the CA besides its hook.
type caIssuer = struct {
	Issuer
	revwatch.Reader
	caLister
}

func newHookless(i Issuer) *Service {
	return New(hookless{&caIssuer{Issuer: i, Reader: i.(revwatch.Reader), caLister: i.(caLister)}})
}

// TestRevokedUnitSeenFromDatabase: a revocation the TSA is not told of
// (made by another process) is found by its poll of the CA's records, and
// by the check at start when the node was down: the unit is rolled over
// and never signs again.
func TestRevokedUnitSeenFromDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNodeFull(t, dir, "", "", nil, func(i Issuer) *Service {
		s := newHookless(i)
		s.revPoll = 300 * time.Millisecond
		return s
	})
	op1, op2 := tn.operators()
	u1 := tn.svc.units.Load().active["ecdsa"]
	tn.revoke("ecdsa-issuing", u1.cert, "superseded", op1, op2)
	u2 := tn.waitGeneration("ecdsa", 2, 5*time.Second)
	req := stampReq(t, tsp.SHA256, "poll")
	if c, f := tn.signerOf("ecdsa", func() []byte { _, b := tn.stamp("/tsa/ecdsa", req); return b }()); c == nil || !bytes.Equal(c.Raw, u2.cert.Raw) {
		t.Fatalf("after the poll: signer %s, failure %v; want the new unit", cn(c), f)
	}

	// The node down when the revocation is made: the next start rolls the
	// unit over before its first token.
	tn.stop()
	tn = startNodeFull(t, dir, "", "", nil, func(i Issuer) *Service {
		s := newHookless(i)
		s.revPoll = time.Hour
		return s
	})
	s1 := tn.svc.units.Load().active["sm2"]
	tn.revoke("sm2-issuing", s1.cert, "keyCompromise", op1, op2)
	// Not told, not polled: this node's TSA still signs with it (the window
	// revPoll bounds; 5 s by default).
	req = stampReq(t, tsp.SM3, "restart")
	if c, _ := tn.signerOf("sm2", func() []byte { _, b := tn.stamp("/tsa", req); return b }()); c == nil || !bytes.Equal(c.Raw, s1.cert.Raw) {
		t.Fatal("the hookless TSA stopped before any check: the test does not show the check at start")
	}
	tn.stop()
	tn = startNode(t, dir, "")
	s2 := tn.svc.units.Load().active["sm2"]
	if s2.generation != s1.generation+1 {
		t.Fatalf("after a restart the sm2 unit is generation %d, want %d", s2.generation, s1.generation+1)
	}
	if c, _ := tn.signerOf("sm2", func() []byte { _, b := tn.stamp("/tsa", req); return b }()); c == nil || !bytes.Equal(c.Raw, s2.cert.Raw) {
		t.Fatal("the first token after the restart is not signed by the new unit")
	}
}

// TestRevokedIssuingCA: when two CA operators revoke the certificate of
// sm2-issuing (cACompromise), the SM2 unit, whose chain rests on it, stops
// at once: the CA refuses to issue its successor, so requests get
// systemFailure and /readyz says why, while the ECDSA profile goes on.
// Once the CA lineage is rolled over, the TSA's next scheduled check makes a
// unit under the new generation and tokens are granted again. The same
// with a TSA that is not told (another process's revocation), which finds
// the CA certificate's revocation in the CA's records at its poll.
func TestRevokedIssuingCA(t *testing.T) {
	t.Run("hook", func(t *testing.T) { testRevokedIssuingCA(t, 0, New) })
	t.Run("poll", func(t *testing.T) {
		testRevokedIssuingCA(t, 5*time.Second, func(i Issuer) *Service {
			s := newHookless(i)
			s.revPoll = 200 * time.Millisecond
			return s
		})
	})
}

// testRevokedIssuingCA runs TestRevokedIssuingCA with the TSA mk makes,
// which must have marked the unit within wait of the acknowledgement.
func testRevokedIssuingCA(t *testing.T, wait time.Duration, mk func(Issuer) *Service) {
	tn := startNodeFull(t, filepath.Join(t.TempDir(), "data"), "", "", nil, mk)
	op1, op2 := tn.operators()
	u1 := tn.svc.units.Load().active["sm2"]
	tn.revoke("sm2-root", u1.ca, "cACompromise", op1, op2)
	deadline := time.Now().Add(wait)
	for u1.revoked.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the unit is not marked %s after its CA's revocation", wait)
		}
		time.Sleep(20 * time.Millisecond)
	}

	req := stampReq(t, tsp.SM3, "ca revoked")
	if c, f := tn.signerOf("sm2", func() []byte { _, b := tn.stamp("/tsa", req); return b }()); c != nil || f != tsp.SystemFailure {
		t.Fatalf("after its CA's revocation: signer %s, failure %v; want systemFailure", cn(c), f)
	}
	status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", "")
	if status == http.StatusOK || !strings.Contains(string(body), "revoked") {
		t.Errorf("readyz: %d %s; want not ready, saying revoked", status, body)
	}
	ecReq := stampReq(t, tsp.SHA256, "ecdsa goes on")
	if c, _ := tn.signerOf("ecdsa", func() []byte { _, b := tn.stamp("/tsa/ecdsa", ecReq); return b }()); c == nil {
		t.Fatal("the ECDSA profile stopped too")
	}

	if status, raw := tn.api("POST", "/api/v1/ca/sm2-issuing/rollover", op1, map[string]string{}); status != http.StatusCreated {
		t.Fatalf("CA rollover: %d %s", status, raw)
	}
	if err := tn.svc.rollDue(context.Background()); err != nil {
		t.Fatalf("rollDue after the CA's rollover: %v", err)
	}
	u2 := tn.svc.units.Load().active["sm2"]
	if u2.generation != u1.generation+1 || bytes.Equal(u2.ca.Raw, u1.ca.Raw) {
		t.Fatalf("unit %d under %x after the CA's rollover", u2.generation, u2.ca.SerialNumber)
	}
	if c, _ := tn.signerOf("sm2", func() []byte { _, b := tn.stamp("/tsa", req); return b }()); c == nil || !bytes.Equal(c.Raw, u2.cert.Raw) {
		t.Fatal("no token from the new unit")
	}
	if status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", ""); status != http.StatusOK {
		t.Errorf("readyz after both rollovers: %d %s", status, body)
	}
}

// TestRevokedUnitTwoNodes: two nodes share a PostgreSQL database. The first
// revokes the SM2 unit both sign with and rolls it over at once (its hook);
// the second, told nothing, finds the revocation at its poll and takes the
// first node's successor over instead of making one of its own: one new
// unit certificate in all, and both nodes sign with it.
func TestRevokedUnitTwoNodes(t *testing.T) {
	url := storetest.PostgresURL(t)
	a := startNodeDB(t, filepath.Join(t.TempDir(), "a"), "", url)
	b := startNodeFull(t, filepath.Join(t.TempDir(), "b"), "", url, nil, func(i Issuer) *Service {
		s := newHookless(i)
		s.revPoll = 200 * time.Millisecond
		return s
	})
	op1, op2 := a.operators()
	u1 := a.svc.units.Load().active["sm2"]
	if g := b.svc.units.Load().active["sm2"].generation; g != u1.generation {
		t.Fatalf("the nodes start with units %d and %d", u1.generation, g)
	}
	ctx := context.Background()
	unitCerts := func() int {
		var n int
		if err := a.n.Env().DB.QueryRow(ctx, "SELECT COUNT(*) FROM ca_certificates WHERE profile = 'tsa'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := unitCerts()
	a.revoke("sm2-issuing", u1.cert, "keyCompromise", op1, op2)
	// The hook marks the unit before the acknowledgement; the loop rolls
	// it over at once, which may end just after it.
	if u := a.svc.units.Load().active["sm2"]; u.generation == u1.generation && u.revoked.Load() == nil {
		t.Fatal("the revoking node's unit is neither marked nor rolled over at the acknowledgement")
	}
	ua := a.waitGeneration("sm2", u1.generation+1, 5*time.Second)
	ub := b.waitGeneration("sm2", ua.generation, 5*time.Second)
	if !bytes.Equal(ub.cert.Raw, ua.cert.Raw) {
		t.Fatal("the second node signs with another unit of the same generation")
	}
	time.Sleep(time.Second) // five more polls
	if n := unitCerts() - before; n != 1 {
		t.Errorf("%d unit certificates issued after the revocation, want 1 (the second node made its own)", n)
	}
	req := stampReq(t, tsp.SM3, "two nodes")
	if c, _ := b.signerOf("sm2", func() []byte { _, body := b.stamp("/tsa", req); return body }()); c == nil || !bytes.Equal(c.Raw, ua.cert.Raw) {
		t.Fatalf("the second node's token is signed by %s, want the successor", cn(c))
	}
}

// countingLog counts the log records whose message contains substr.
type countingLog struct {
	slog.Handler
	substr string
	n      *atomic.Int64
}

func (h countingLog) Enabled(context.Context, slog.Level) bool { return true }

func (h countingLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.n.Add(1)
	}
	return nil
}

// TestRevokedCARolloverNotRetriedEachPoll: while the issuing CA's
// certificate is revoked the unit cannot be replaced; that is tried once
// when the unit is marked, then every tsa.ntp_interval (rollDue), not at
// every revocation poll (a key made and deleted, a refused request and an
// error logged each time).
func TestRevokedCARolloverNotRetriedEachPoll(t *testing.T) {
	for _, hook := range []bool{true, false} {
		t.Run(map[bool]string{true: "hook", false: "poll"}[hook], func(t *testing.T) {
			tn := startNodeFull(t, filepath.Join(t.TempDir(), "data"), "", "", nil, func(i Issuer) *Service {
				s := New(i)
				if !hook {
					s = newHookless(i)
				}
				s.revPoll = 100 * time.Millisecond
				return s
			})
			var failed atomic.Int64
			env := *tn.svc.env
			env.Logger = slog.New(countingLog{slog.DiscardHandler, "rollover of a revoked unit failed", &failed})
			tn.svc.env = &env
			op1, op2 := tn.operators()
			u1 := tn.svc.units.Load().active["sm2"]
			tn.revoke("sm2-root", u1.ca, "cACompromise", op1, op2)
			time.Sleep(2 * time.Second) // twenty polls
			if n := failed.Load(); n != 1 {
				t.Errorf("%d failed rollovers logged in twenty polls, want 1", n)
			}
			if u1.revoked.Load() == nil || tn.svc.units.Load().active["sm2"] != u1 {
				t.Error("the unit is not kept, marked, while no successor can be made")
			}
		})
	}
}

// TestReloadFailureKeepsChecking: a unit another node recorded whose key
// does not resolve here (one bad row) leaves its own profile's unit in
// place and is reported, but does not stop the revocation poll, nor the
// rollovers, of the other profile.
func TestReloadFailureKeepsChecking(t *testing.T) {
	tn := startNodeFull(t, filepath.Join(t.TempDir(), "data"), "", "", nil, func(i Issuer) *Service {
		s := newHookless(i)
		s.revPoll = 100 * time.Millisecond
		return s
	})
	op1, op2 := tn.operators()
	ctx := context.Background()
	db := tn.n.Env().DB
	s1 := tn.svc.units.Load().active["sm2"]
	if _, err := db.Exec(ctx, "UPDATE tsa_units SET status = 'retired' WHERE profile = 'sm2' AND status = 'active'"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO tsa_units (profile, generation, key_uri, cert, chain, status, created_at) VALUES ('sm2', ?, 'soft:tsa/not-here', ?, ?, 'active', ?)",
		s1.generation+1, s1.cert.Raw, []byte{}, time.Now().UTC().Format(timeFormat)); err != nil {
		t.Fatal(err)
	}
	e1 := tn.svc.units.Load().active["ecdsa"]
	tn.revoke("ecdsa-issuing", e1.cert, "keyCompromise", op1, op2)
	tn.waitGeneration("ecdsa", e1.generation+1, 3*time.Second)
	if u := tn.svc.units.Load().active["sm2"]; u != s1 {
		t.Errorf("the sm2 unit changed to %d, want %d kept", u.generation, s1.generation)
	}
	err := tn.svc.rollDue(ctx)
	if err == nil || !strings.Contains(err.Error(), "not-here") {
		t.Errorf("rollDue: %v, want the unresolvable unit reported", err)
	}
}

// racyIssuer is the CA; during, when set, runs once a unit certificate is
// issued and before the rollover that asked for it publishes the unit,
// and every later request is refused (so that no further rollover
// replaces a marked unit while the test looks at it).
type racyIssuer struct {
	Issuer
	revwatch.Notifier
	revwatch.Reader
	caLister
	during atomic.Pointer[func(der []byte, chain [][]byte)]
	refuse atomic.Bool
}

func (r *racyIssuer) IssueFor(ctx context.Context, caID, profile string, csr []byte, rec map[string]string, actor string) ([]byte, [][]byte, error) {
	if r.refuse.Load() {
		return nil, nil, errors.New("refused for the test")
	}
	der, chain, err := r.Issuer.IssueFor(ctx, caID, profile, csr, rec, actor)
	if f := r.during.Swap(nil); err == nil && f != nil {
		(*f)(der, chain)
		r.refuse.Store(true)
	}
	return der, chain, err
}

// TestRevocationDuringRollover: a revocation of the new unit's
// certificate, or of its issuing CA, acknowledged after the CA issued the
// certificate and before the rollover made the unit active (the hook then
// does not know the unit) still stops the unit before its first token:
// the rollover checks the CA's record before it publishes the unit.
func TestRevocationDuringRollover(t *testing.T) {
	for _, tc := range []struct {
		name string
		// revoke revokes the new certificate der or its CA (chain[0]).
		revoke func(tn *testNode, der []byte, chain [][]byte, op1, op2 string)
	}{
		{"unit", func(tn *testNode, der []byte, _ [][]byte, op1, op2 string) {
			c, err := smx509.ParseCertificate(der)
			if err != nil {
				t.Error(err)
				return
			}
			tn.revoke("sm2-issuing", c, "keyCompromise", op1, op2)
		}},
		{"issuing CA", func(tn *testNode, _ []byte, chain [][]byte, op1, op2 string) {
			c, err := smx509.ParseCertificate(chain[0])
			if err != nil {
				t.Error(err)
				return
			}
			tn.revoke("sm2-root", c, "cACompromise", op1, op2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ri *racyIssuer
			tn := startNodeFull(t, filepath.Join(t.TempDir(), "data"), "", "", nil, func(i Issuer) *Service {
				ri = &racyIssuer{Issuer: i, Notifier: i.(revwatch.Notifier), Reader: i.(revwatch.Reader), caLister: i.(caLister)}
				return New(ri)
			})
			op1, op2 := tn.operators()
			u1 := tn.svc.units.Load().active["sm2"]
			f := func(der []byte, chain [][]byte) { tc.revoke(tn, der, chain, op1, op2) } // acknowledged here
			ri.during.Store(&f)
			if _, err := tn.svc.Rollover(context.Background(), "sm2", "test"); err != nil {
				t.Fatal(err)
			}
			u2 := tn.svc.units.Load().active["sm2"]
			if u2.generation != u1.generation+1 {
				t.Fatalf("unit %d after the rollover, want %d", u2.generation, u1.generation+1)
			}
			if u2.revoked.Load() == nil {
				t.Error("the new unit is published unmarked although its chain was revoked before")
			}
			if tok, _, err := tn.svc.Stamp(context.Background(), "sm2", stampReq(t, tsp.SM3, "after the revocation")); err == nil {
				t.Fatalf("the new unit, whose chain was revoked and the revocation acknowledged during the rollover, granted a token (%d octets)", len(tok))
			}
			r, _ := tn.stamp("/tsa", stampReq(t, tsp.SM3, "over HTTP"))
			if f := failure(r); f != tsp.SystemFailure {
				t.Errorf("POST /tsa after the revocation: failure %v, want systemFailure", f)
			}
		})
	}
}

// TestRevokedRetiredUnitInFlight: a request that took the active unit
// just before a rollover is still being answered when that unit's
// certificate is revoked: the hook marks the retired unit too, and the
// request, which reads the mark once its token is recorded, gets no token.
func TestRevokedRetiredUnitInFlight(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	op1, op2 := tn.operators()
	ctx := context.Background()
	u1 := tn.svc.units.Load().active["sm2"]
	// A recorder whose loop is the test: the request waits, signed, for
	// its record.
	real := tn.svc.rec
	held := &recorder{reqs: make(chan *recordReq, 1), closed: make(chan struct{}), done: make(chan struct{})}
	tn.svc.rec = held
	type result struct {
		tok []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		tok, _, err := tn.svc.Stamp(ctx, "sm2", stampReq(t, tsp.SM3, "in flight"))
		res <- result{tok, err}
	}()
	q := <-held.reqs
	if q.row.generation != u1.generation {
		t.Fatalf("the request signs with unit %d, want %d", q.row.generation, u1.generation)
	}
	if _, err := tn.svc.Rollover(ctx, "sm2", "test"); err != nil {
		t.Fatal(err)
	}
	tn.revoke("sm2-issuing", u1.cert, "keyCompromise", op1, op2)
	if u1.revoked.Load() == nil {
		t.Error("the retired unit is not marked when the revocation is acknowledged")
	}
	q.err <- nil // recorded
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("Stamp did not return")
	}
	tn.svc.rec = real
	if r.err == nil {
		t.Fatalf("a request in flight on the retired unit returned a token (%d octets) after its revocation was acknowledged", len(r.tok))
	}
}
