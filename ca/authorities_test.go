package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestCACertificatesRecorded: the certificates of the built-in issuing CAs
// are rows of ca_certificates under their root (profile sub-ca, requester
// system); a data directory without them gets them at start, once.
func TestCACertificatesRecorded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	const q = "SELECT COUNT(*) FROM ca_certificates WHERE profile = 'sub-ca' AND requester = 'system' AND issuer_id = ? AND serial = ?"
	check := func(tn *testNode) {
		t.Helper()
		for _, id := range []string{"sm2-issuing", "ecdsa-issuing"} {
			a := tn.svc.lookup(id)
			if n := tn.count(q, a.parent, serialHex(a.cert.SerialNumber)); n != 1 {
				t.Errorf("%s: %d rows for its certificate, want 1", id, n)
			}
		}
	}
	check(tn)
	if _, err := tn.db().Exec(t.Context(), "DELETE FROM ca_certificates WHERE profile = 'sub-ca'"); err != nil {
		t.Fatal(err)
	}
	tn.stop()
	for range 2 {
		tn = startNode(t, dir)
		check(tn)
		tn.stop()
	}
}

// TestRolloverUnderLoad rolls ecdsa-issuing over while clients issue from
// it: no request fails, every certificate verifies under the generation
// whose chain came with it, issuance after the rollover is on the new
// generation, and both generations keep their certificate and CRL URLs.
func TestRolloverUnderLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	status, raw := tn.do("POST", "/api/v1/accounts", "secadmin", map[string]any{"name": "op-1", "kind": "person", "org": "platform", "roles": []string{"ca-operator"}}, nil)
	if status != http.StatusCreated {
		t.Fatalf("create operator: %d %s", status, raw)
	}
	status, raw = tn.do("POST", "/api/v1/tokens", "secadmin", map[string]any{"account": "op-1", "name": "desk", "ttl": "1h"}, nil)
	var tok struct{ Token string }
	if status != http.StatusCreated || json.Unmarshal(raw, &tok) != nil {
		t.Fatalf("operator token: %d %s", status, raw)
	}
	tn.tokens["operator"] = tok.Token
	if status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/rollover", "ra", map[string]any{}, nil); status != http.StatusForbidden {
		t.Fatalf("RA rollover: %d %s, want 403", status, raw)
	}
	if status, raw := tn.do("POST", "/api/v1/ca/ecdsa-root/rollover", "operator", map[string]any{}, nil); status != http.StatusUnprocessableEntity {
		t.Fatalf("root rollover: %d %s, want 422", status, raw)
	}

	const workers, each = 4, 12
	csrs := make([]string, workers*each)
	for i := range csrs {
		csrs[i] = csrPEM(goCSR(t, fmt.Sprintf("host-%d.example.gov.cn", i), fmt.Sprintf("host-%d.example.gov.cn", i)))
	}
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, len(csrs))
	issue := func(i int) {
		b, _ := json.Marshal(IssueRequest{CSR: csrs[i], Profile: "server-tls"})
		req, _ := http.NewRequest("POST", "https://"+tn.n.Addresses().HTTPS+"/api/v1/ca/ecdsa-issuing/certificates", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+tn.tokens["ra"])
		req.Header.Set("Content-Type", "application/json")
		resp, err := tn.c.Do(req)
		if err != nil {
			results[i].err = err
			return
		}
		defer resp.Body.Close()
		results[i].status = resp.StatusCode
		results[i].body, results[i].err = io.ReadAll(resp.Body)
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, workers)
	for w := range workers {
		wg.Go(func() {
			for k := range each {
				issue(w*each + k)
				if k == 1 {
					started <- struct{}{}
				}
			}
		})
	}
	for range workers {
		<-started // every worker has issued before the rollover starts
	}
	status, raw = tn.do("POST", "/api/v1/ca/ecdsa-issuing/rollover", "operator", map[string]any{}, nil)
	var rolled RolloverResponse
	if status != http.StatusCreated || json.Unmarshal(raw, &rolled) != nil {
		t.Fatalf("rollover: %d %s", status, raw)
	}
	if rolled.ID != "ecdsa-issuing-g2" || rolled.Previous != "ecdsa-issuing" || rolled.Generation != 2 {
		t.Fatalf("rollover answered %+v", rolled)
	}
	wg.Wait()

	gens := map[string]*smx509.Certificate{}
	for _, id := range []string{"ecdsa-issuing", "ecdsa-issuing-g2"} {
		gens[id] = tn.svc.lookup(id).cert
	}
	byGen := map[string]int{}
	for i, r := range results {
		if r.err != nil || r.status != http.StatusCreated {
			t.Fatalf("request %d: %v %d %s", i, r.err, r.status, r.body)
		}
		var out IssueResponse
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		issuer, err := smx509.ParseCertificate(pemDER(t, out.Chain[0]))
		if err != nil {
			t.Fatal(err)
		}
		gen := ""
		for id, c := range gens {
			if c.Equal(issuer) {
				gen = id
			}
		}
		if gen == "" {
			t.Fatalf("request %d: chain names an unknown CA %s", i, issuer.Subject)
		}
		if err := leaf.CheckSignatureFrom(issuer); err != nil {
			t.Fatalf("request %d: certificate does not verify under %s: %v", i, gen, err)
		}
		if want := "http://" + tn.svc.vars["base"][len("http://"):] + "/pki/" + gen + ".crt"; len(leaf.IssuingCertificateURL) != 1 || leaf.IssuingCertificateURL[0] != want {
			t.Fatalf("request %d: AIA %v, want %s", i, leaf.IssuingCertificateURL, want)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = ? AND serial = ?", gen, out.Serial); n != 1 {
			t.Fatalf("request %d: not recorded under %s", i, gen)
		}
		byGen[gen]++
	}
	t.Logf("issued per generation during the rollover: %v", byGen)
	if byGen["ecdsa-issuing"] < workers*2 {
		t.Errorf("%d certificates from the first generation, want at least %d", byGen["ecdsa-issuing"], workers*2)
	}
	// After the switch, issuance is on the new generation.
	st, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrs[0], Profile: "server-tls"}, "")
	if st != http.StatusCreated {
		t.Fatalf("issue after rollover: %d %s", st, raw)
	}
	if issuer, _ := smx509.ParseCertificate(pemDER(t, out.Chain[0])); !issuer.Equal(gens["ecdsa-issuing-g2"]) {
		t.Fatal("issuance after the rollover is not on the new generation")
	}
	// Both generations keep their certificate and CRL, each signed by its
	// own key; the old one is retired, the new one active.
	for id, c := range gens {
		resp, err := http.Get("http://" + tn.n.Addresses().HTTP + "/pki/" + id + ".crt")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(b, c.Raw) {
			t.Errorf("/pki/%s.crt does not serve that generation", id)
		}
		resp, err = http.Get("http://" + tn.n.Addresses().HTTP + "/pki/" + id + ".crl")
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		crl, err := smx509.ParseRevocationList(b)
		if err != nil {
			t.Fatalf("CRL of %s: %v", id, err)
		}
		if err := crl.CheckSignatureFrom(c); err != nil {
			t.Errorf("CRL of %s not signed by it: %v", id, err)
		}
	}
	status, raw = tn.do("GET", "/api/v1/ca", "ra", nil, nil)
	var list struct{ CAs []CAInfo }
	if status != http.StatusOK || json.Unmarshal(raw, &list) != nil {
		t.Fatalf("list: %d %s", status, raw)
	}
	want := map[string]string{"ecdsa-issuing": "retired", "ecdsa-issuing-g2": "active"}
	seen := 0
	for _, c := range list.CAs {
		if w, ok := want[c.ID]; ok {
			seen++
			if c.Status != w || c.Lineage != "ecdsa-issuing" {
				t.Errorf("%s: status %s lineage %s, want %s", c.ID, c.Status, c.Lineage, w)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("GET /api/v1/ca lists %d of the two generations: %s", seen, raw)
	}
	// A restart loads both generations and keeps issuing on the new one.
	tn.stop()
	tn = startNode(t, dir)
	if a, err := tn.svc.current("ecdsa-issuing"); err != nil || a.id != "ecdsa-issuing-g2" {
		t.Fatalf("after restart the lineage issues on %v (%v)", a, err)
	}
	if tn.svc.lookup("ecdsa-issuing").status != statusRetired {
		t.Fatal("after restart the first generation is not retired")
	}
}

// TestRolloverSeenByOtherProcess rolls a CA over in one process and checks
// that a second process on the same PostgreSQL issues from the new
// generation after its next registry poll, without a restart.
func TestRolloverSeenByOtherProcess(t *testing.T) {
	url := storetest.PostgresURL(t)
	set := func(o *node.Options) { o.DB = &url }
	a := startNodeWith(t, filepath.Join(t.TempDir(), "a"), set)
	b := startNodeWith(t, filepath.Join(t.TempDir(), "b"), set)
	rolled, err := a.svc.Rollover(t.Context(), "test", "ecdsa-issuing", "")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * registryPoll)
	for {
		cur, err := b.svc.current("ecdsa-issuing")
		if err != nil {
			t.Fatal(err)
		}
		if cur.id == rolled.authority.id {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other process still issues from %s, %s after the rollover to %s", cur.id, 4*registryPoll, rolled.authority.id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if old := b.svc.lookup("ecdsa-issuing"); old == nil || old.status != statusRetired {
		t.Errorf("the other process does not see the old generation retired: %+v", old)
	}
	b.tokens = a.tokens // the bootstrap tokens are written by the first process only
	status, out, raw := b.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "after.example.gov.cn", "after.example.gov.cn")), Profile: "server-tls"}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue on the other process: %d %s", status, raw)
	}
	cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(rolled.authority.cert); err != nil {
		t.Errorf("certificate from the other process not signed by the new generation: %v", err)
	}
}

// TestRevokedCASeenByOtherProcess: two processes on one PostgreSQL; the
// certificate of ecdsa-issuing is revoked through the first. The second
// refuses to issue from it at once (its serial reservation reads the CA's
// status) and shows it revoked after its next registry poll, without a
// restart.
func TestRevokedCASeenByOtherProcess(t *testing.T) {
	url := storetest.PostgresURL(t)
	set := func(o *node.Options) { o.DB = &url }
	a := startNodeWith(t, filepath.Join(t.TempDir(), "a"), set)
	b := startNodeWith(t, filepath.Join(t.TempDir(), "b"), set)
	a.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	a.addAccount("op2", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	b.tokens = a.tokens // the bootstrap tokens are written by the first process only
	sub := serialHex(a.svc.lookup("ecdsa-issuing").cert.SerialNumber)
	a.revokeCAByTwo(t, "ecdsa-root", sub, "cessationOfOperation")

	if cur, err := b.svc.current("ecdsa-issuing"); err == nil {
		// The poll has not run yet: the registry still names it, and the
		// database refuses.
		status, _, raw := b.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "b.example.gov.cn", "b.example.gov.cn")), Profile: "server-tls"}, "")
		if status != http.StatusUnprocessableEntity || !bytes.Contains(raw, []byte("revoked")) {
			t.Errorf("issue on the other process from %s before its poll: %d %.300s; want 422", cur.id, status, raw)
		}
	}
	deadline := time.Now().Add(4 * registryPoll)
	for {
		_, err := b.svc.current("ecdsa-issuing")
		if errors.Is(err, ErrPolicy) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other process still issues from ecdsa-issuing %s after its revocation (%v)", 4*registryPoll, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := b.caStatus(t, "ecdsa-issuing"); st != "revoked" {
		t.Errorf("the other process shows ecdsa-issuing %q, want revoked", st)
	}
	status, _, raw := b.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "b2.example.gov.cn", "b2.example.gov.cn")), Profile: "server-tls"}, "")
	if status != http.StatusUnprocessableEntity {
		t.Errorf("issue on the other process after its poll: %d %.300s; want 422", status, raw)
	}
}

// TestLineageAfterRollover: after a rollover, a certificate issued on the
// lineage id (signed by the new generation) is read and revoked on that
// id, by the RA of its organisation and by a CA operator, and the issue
// answer names the generation that signed; an unknown serial stays 404.
func TestLineageAfterRollover(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	old := tn.issueECDSA(t)
	if old.CA != "ecdsa-issuing" {
		t.Errorf("issue answer names %q, want ecdsa-issuing", old.CA)
	}
	rolled, err := tn.svc.Rollover(t.Context(), "test", "ecdsa-issuing", "")
	if err != nil {
		t.Fatal(err)
	}
	leaf := tn.issueECDSA(t)
	if leaf.CA != rolled.id {
		t.Errorf("issue answer names %q, want the new generation %s", leaf.CA, rolled.id)
	}
	for _, tc := range []struct{ on, serial, want string }{
		{"ecdsa-issuing", leaf.Serial, rolled.id}, // the lineage id, newer generation
		{rolled.id, leaf.Serial, rolled.id},
		{rolled.id, old.Serial, "ecdsa-issuing"}, // a newer generation's id, older one
	} {
		st, raw := tn.do("GET", "/api/v1/ca/"+tc.on+"/certificates/"+tc.serial, "ra", nil, nil)
		var got CertificateResponse
		if st != http.StatusOK || json.Unmarshal(raw, &got) != nil || got.CA != tc.want || got.Serial != tc.serial {
			t.Errorf("RA GET %s on %s: %d %s; want 200 from %s", tc.serial, tc.on, st, raw, tc.want)
		}
	}
	if st, raw := tn.do("GET", "/api/v1/ca/ecdsa-issuing/certificates/01ff", "operator", nil, nil); st != http.StatusNotFound {
		t.Errorf("operator GET of an unknown serial: %d %s; want 404", st, raw)
	}
	if st, raw := tn.revoke("ecdsa-issuing", "ra", leaf.Serial, "keyCompromise"); st != http.StatusOK {
		t.Fatalf("RA revokes on the lineage id: %d %s", st, raw)
	}
	if c, err := certBySerial(t.Context(), tn.db(), rolled.id, leaf.Serial); err != nil || c.status != "revoked" {
		t.Fatalf("stored under %s: %+v %v", rolled.id, c, err)
	}
	crl, err := latestCRL(t.Context(), tn.db(), rolled.id)
	if err != nil {
		t.Fatal(err)
	}
	if got := serialsOf(t, crl, rolled.authority); !strings.Contains(got, leaf.Serial) {
		t.Errorf("CRL of %s lists %q, not %s", rolled.id, got, leaf.Serial)
	}
	second := tn.issueECDSA(t)
	if st, raw := tn.revoke("ecdsa-issuing", "operator", second.Serial, "superseded"); st != http.StatusOK {
		t.Errorf("operator revokes on the lineage id: %d %s", st, raw)
	}
	if st, raw := tn.revoke("ecdsa-issuing", "operator", "01ff", "superseded"); st != http.StatusNotFound {
		t.Errorf("operator revokes an unknown serial: %d %s; want 404", st, raw)
	}
}
