package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// addAccount creates an account offline, as the CLI would, and keeps its
// token under name.
func (tn *testNode) addAccount(name, org string, level policy.Level, roles ...policy.Role) {
	tn.t.Helper()
	ctx := audit.WithActor(context.Background(), "cli:test")
	az := tn.n.Env().Authz
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: org, Clearance: level, Roles: roles})
	if err != nil {
		tn.t.Fatalf("account %s: %v", name, err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatalf("token %s: %v", name, err)
	}
	tn.tokens[name] = tok
}

// issueECDSA issues a server-tls certificate from ecdsa-issuing as the
// bootstrap RA.
func (tn *testNode) issueECDSA(t *testing.T) *IssueResponse {
	t.Helper()
	status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn")), Profile: "server-tls"}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue: status %d: %s", status, raw)
	}
	return out
}

// revoke posts a revocation as role.
func (tn *testNode) revoke(ca, role, serial, reason string) (int, []byte) {
	tn.t.Helper()
	return tn.do("POST", "/api/v1/ca/"+ca+"/revocations", role, map[string]string{"serial": serial, "reason": reason}, nil)
}

const revokeRecords = "SELECT COUNT(*) FROM audit_log WHERE action = 'ca.certificate.revoke'"

// TestRevoke covers ACCEPTANCE.md C-12: only the owning organisation's RA
// (or a CA operator) revokes; every attempt leaves one audit record with
// its outcome; the revocation is durable, with its outbox event, before the
// 200.
func TestRevoke(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("ra-other", "other-dept", policy.Internal, policy.RoleRA)
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	leaf := tn.issueECDSA(t)
	caSerial := serialHex(tn.svc.cas["ecdsa-issuing"].cert.SerialNumber)

	for _, tc := range []struct {
		name, ca, role, serial, reason string
		want                           int
		outcome                        string
	}{
		{"anonymous", "ecdsa-issuing", "", leaf.Serial, "keyCompromise", http.StatusUnauthorized, audit.Denied},
		{"auditor", "ecdsa-issuing", "auditor", leaf.Serial, "keyCompromise", http.StatusForbidden, audit.Denied},
		{"RA of another organisation", "ecdsa-issuing", "ra-other", leaf.Serial, "keyCompromise", http.StatusForbidden, audit.Denied},
		{"RA on a CA certificate", "ecdsa-root", "ra", caSerial, "keyCompromise", http.StatusForbidden, audit.Denied},
		// A CA certificate is a row like any since CAs record the CA
		// certificates they sign; its key compromise is cACompromise.
		{"operator on a CA certificate, end-entity reason", "ecdsa-root", "operator", caSerial, "keyCompromise", http.StatusBadRequest, audit.Failure},
		{"operator on an unknown serial", "ecdsa-issuing", "operator", "01ff", "superseded", http.StatusNotFound, audit.Failure},
		{"certificateHold", "ecdsa-issuing", "ra", leaf.Serial, "certificateHold", http.StatusBadRequest, audit.Failure},
		{"cACompromise on an end entity", "ecdsa-issuing", "ra", leaf.Serial, "cACompromise", http.StatusBadRequest, audit.Failure},
		{"bad serial", "ecdsa-issuing", "operator", "xyz", "superseded", http.StatusBadRequest, audit.Failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tn.count(revokeRecords+" AND outcome = ?", tc.outcome)
			all := tn.count(revokeRecords)
			status, raw := tn.revoke(tc.ca, tc.role, tc.serial, tc.reason)
			if status != tc.want {
				t.Fatalf("status %d: %s; want %d", status, raw, tc.want)
			}
			if n := tn.count(revokeRecords+" AND outcome = ?", tc.outcome); n != before+1 {
				t.Errorf("%d %s records, want %d", n, tc.outcome, before+1)
			}
			if n := tn.count(revokeRecords); n != all+1 {
				t.Errorf("%d revoke records after one attempt, want %d", n, all+1)
			}
		})
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE status = 'revoked'"); n != 0 {
		t.Fatalf("%d revoked certificates after refused attempts", n)
	}

	var first RevokeResponse
	t.Run("owner RA", func(t *testing.T) {
		status, raw := tn.revoke("ecdsa-issuing", "ra", leaf.Serial, "keyCompromise")
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, raw)
		}
		if err := json.Unmarshal(raw, &first); err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339, first.RevokedAt)
		if first.Serial != leaf.Serial || first.Reason != "keyCompromise" || err != nil || time.Since(at) > time.Minute {
			t.Fatalf("answer %+v (%v)", first, err)
		}
		if n := tn.count(revokeRecords+" AND outcome = 'success' AND object = ?", "cert/ecdsa-issuing/"+leaf.Serial); n != 1 {
			t.Errorf("%d success records, want 1", n)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'revoked' AND serial = ?", leaf.Serial); n != 1 {
			t.Errorf("%d outbox events, want 1", n)
		}
		status, raw = tn.do("GET", "/api/v1/ca/ecdsa-issuing/certificates/"+leaf.Serial, "ra", nil, nil)
		var got CertificateResponse
		if status != http.StatusOK || json.Unmarshal(raw, &got) != nil {
			t.Fatalf("GET: %d %s", status, raw)
		}
		if got.Status != "revoked" || got.Reason != "keyCompromise" || got.RevokedAt != first.RevokedAt {
			t.Errorf("GET answered %+v", got)
		}
		if status, raw := tn.do("GET", "/api/v1/ca/ecdsa-issuing/certificates/"+leaf.Serial, "ra-other", nil, nil); status != http.StatusForbidden {
			t.Errorf("GET by another organisation's RA: %d %s, want 403", status, raw)
		}
	})

	t.Run("again", func(t *testing.T) {
		status, raw := tn.revoke("ecdsa-issuing", "ra", leaf.Serial, "keyCompromise")
		var again RevokeResponse
		if status != http.StatusOK || json.Unmarshal(raw, &again) != nil || !reflect.DeepEqual(again, first) {
			t.Fatalf("same reason again: %d %s; want 200 with %+v", status, raw, first)
		}
		if status, raw := tn.revoke("ecdsa-issuing", "ra", leaf.Serial, "superseded"); status != http.StatusConflict {
			t.Fatalf("other reason: %d %s; want 409", status, raw)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'revoked' AND serial = ?", leaf.Serial); n != 1 {
			t.Errorf("%d outbox events, want 1", n)
		}
	})

	t.Run("operator revokes any organisation's certificate", func(t *testing.T) {
		other := tn.issueECDSA(t)
		if status, raw := tn.revoke("ecdsa-issuing", "operator", other.Serial, ""); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, raw)
		}
		c, err := certBySerial(context.Background(), tn.db(), "ecdsa-issuing", other.Serial)
		if err != nil || c.status != "revoked" || c.reason != 0 || c.requesterOrg != authz.BootstrapDemoOrg {
			t.Fatalf("stored %+v, %v; want revoked, unspecified", c, err)
		}
	})
}

// addSubCA records a subordinate CA certificate issued by parent, as the CA
// records the certificates of the CAs below it: a fresh key of the parent's
// algorithm, the built-in sub-ca profile, linted and signed by the parent's
// key, stored in ca_certificates. It returns the serial.
func (tn *testNode) addSubCA(t *testing.T, parent, cn string) string {
	t.Helper()
	a := tn.svc.cas[parent]
	var key crypto.Signer
	var err error
	if a.alg == hsm.SM2 {
		key, err = sm2.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	der, err := tn.svc.signSubCA(spec{id: "test-sub", parent: parent, alg: a.alg, cn: cn}, key, a, now)
	if err != nil {
		t.Fatalf("sub-CA certificate: %v", err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil || !cert.IsCA || cert.CheckSignatureFrom(a.cert) != nil {
		t.Fatalf("sub-CA certificate: %v", err)
	}
	row := &certRow{issuer: parent, serial: serialHex(cert.SerialNumber), subject: cert.Subject.String(), profile: "sub-ca",
		status: "good", requester: "system", notBefore: cert.NotBefore, notAfter: cert.NotAfter, created: now, der: der}
	if err := tn.db().Tx(context.Background(), func(tx *store.Tx) error { return insertCert(context.Background(), tx, row) }); err != nil {
		t.Fatal(err)
	}
	return row.serial
}

// audited counts the audit records of actor, action and outcome.
func (tn *testNode) audited(actor, action, outcome string) int {
	tn.t.Helper()
	return tn.count("SELECT COUNT(*) FROM audit_log WHERE actor = ? AND action = ? AND outcome = ?", actor, action, outcome)
}

func (tn *testNode) accountID(name string) string {
	tn.t.Helper()
	acc, err := tn.n.Env().Authz.AccountByName(context.Background(), name)
	if err != nil {
		tn.t.Fatal(err)
	}
	return acc.ID
}

// TestRevokeCACertificate is ACCEPTANCE.md C-12 on a CA certificate: nobody
// but a CA operator may ask; one CA operator alone revokes nothing; the
// revocation happens only once a second, distinct CA operator approves the
// exact revocation, and nobody approves twice or their own request. Each
// attempt is audited with its actor, reason and outcome.
func TestRevokeCACertificate(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addAccount("op2", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addAccount("citizen", "public", policy.Internal, policy.RoleCitizen)
	sub := tn.addSubCA(t, "ecdsa-root", "govtrust ECDSA Test Sub CA")
	status := func(serial string) *certRow {
		t.Helper()
		c, err := certBySerial(context.Background(), tn.db(), "ecdsa-root", serial)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	revokeWith := func(role, serial, reason, approval string) (int, []byte) {
		t.Helper()
		return tn.do("POST", "/api/v1/ca/ecdsa-root/revocations", role, map[string]string{"serial": serial, "reason": reason, "approval": approval}, nil)
	}

	for _, tc := range []struct {
		name, role, actor string
		want              int
	}{
		{"anonymous", "", "anonymous", http.StatusUnauthorized},
		{"another subscriber", "citizen", "account/citizen", http.StatusForbidden},
		{"RA staff", "ra", "account/ra", http.StatusForbidden},
		{"auditor", "auditor", "account/auditor", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tn.audited(tc.actor, "ca.certificate.revoke", audit.Denied)
			if status, raw := tn.revoke("ecdsa-root", tc.role, sub, "cACompromise"); status != tc.want {
				t.Fatalf("status %d: %s; want %d", status, raw, tc.want)
			}
			if n := tn.audited(tc.actor, "ca.certificate.revoke", audit.Denied); n != before+1 {
				t.Errorf("%d denied records for %s, want %d", n, tc.actor, before+1)
			}
		})
	}
	if st := status(sub).status; st != "good" {
		t.Fatalf("status %s after refused attempts", st)
	}
	if status, raw := tn.revoke("ecdsa-root", "op1", sub, "keyCompromise"); status != http.StatusBadRequest {
		t.Fatalf("keyCompromise on a CA certificate: %d %s; want 400", status, raw)
	}

	payload, err := RevocationPayload("ecdsa-root", sub, "cACompromise")
	if err != nil {
		t.Fatal(err)
	}
	hash := hex.EncodeToString(dual.Hash(payload))
	var pending PendingRevocation
	t.Run("one operator alone", func(t *testing.T) {
		st, raw := tn.revoke("ecdsa-root", "op1", sub, "cACompromise")
		if st != http.StatusAccepted || json.Unmarshal(raw, &pending) != nil {
			t.Fatalf("status %d: %s; want 202", st, raw)
		}
		if pending.Status != "pending" || pending.PayloadHash != hash || pending.Serial != sub || pending.Reason != "cACompromise" || pending.Required != 1 {
			t.Fatalf("pending %+v, want payload hash %s", pending, hash)
		}
		// Asking again finds the open request rather than making another.
		var again PendingRevocation
		if st, raw := tn.revoke("ecdsa-root", "op1", sub, "cACompromise"); st != http.StatusAccepted || json.Unmarshal(raw, &again) != nil || again.Approval != pending.Approval {
			t.Fatalf("again: %d %s", st, raw)
		}
		if n := tn.count("SELECT COUNT(*) FROM dual_requests WHERE kind = 'ca.authority.revoke'"); n != 1 {
			t.Errorf("%d dual-control requests, want 1", n)
		}
		// Executing without an approval is refused.
		if st, raw := revokeWith("op1", sub, "cACompromise", pending.Approval); st != http.StatusForbidden {
			t.Fatalf("execute unapproved: %d %s; want 403", st, raw)
		}
		if st := status(sub).status; st != "good" {
			t.Fatalf("status %s with one operator", st)
		}
		if n := tn.audited("account/op1", "ca.authority.revoke", audit.Success); n != 2 {
			t.Errorf("%d request records, want 2", n)
		}
		if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.authority.revoke' AND details LIKE ?", `%"reason":"cACompromise"%`); n != 2 {
			t.Errorf("request records lack the reason (%d)", n)
		}
		if n := tn.audited("account/op1", "dual.execute", audit.Denied); n != 1 {
			t.Errorf("%d refused executions audited, want 1", n)
		}
		if n := tn.audited(tn.accountID("op1"), "dual.create", audit.Success); n != 1 {
			t.Errorf("%d dual.create records, want 1", n)
		}
	})

	approve := func(role, h string) (int, []byte) {
		return tn.do("POST", "/api/v1/approvals/"+pending.Approval+"/approve", role, map[string]string{"payload_hash": h}, nil)
	}
	t.Run("approvals", func(t *testing.T) {
		if st, raw := approve("op1", hash); st != http.StatusForbidden {
			t.Fatalf("requester approves: %d %s; want 403", st, raw)
		}
		if st, raw := approve("ra", hash); st != http.StatusForbidden {
			t.Fatalf("RA approves: %d %s; want 403", st, raw)
		}
		wrong, _ := RevocationPayload("ecdsa-root", sub, "superseded")
		if st, raw := approve("op2", hex.EncodeToString(dual.Hash(wrong))); st != http.StatusConflict {
			t.Fatalf("another payload: %d %s; want 409", st, raw)
		}
		if st, raw := approve("op2", hash); st != http.StatusOK {
			t.Fatalf("second operator: %d %s", st, raw)
		}
		if st, raw := approve("op2", hash); st != http.StatusConflict {
			t.Fatalf("same operator twice: %d %s; want 409", st, raw)
		}
		if n := tn.audited(tn.accountID("op2"), "dual.approve", audit.Denied); n != 2 {
			t.Errorf("%d refused approvals by op2 audited, want 2", n)
		}
		// Approved is not revoked: the revocation runs when executed.
		if st := status(sub).status; st != "good" {
			t.Fatalf("status %s before execution", st)
		}
	})

	t.Run("executed after the second operator's approval", func(t *testing.T) {
		st, raw := revokeWith("op1", sub, "cACompromise", pending.Approval)
		var out RevokeResponse
		if st != http.StatusOK || json.Unmarshal(raw, &out) != nil || out.Reason != "cACompromise" || out.Approval != pending.Approval {
			t.Fatalf("execute: %d %s", st, raw)
		}
		c := status(sub)
		if c.status != "revoked" || c.reason != 2 {
			t.Fatalf("stored %s reason %d", c.status, c.reason)
		}
		if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE actor = 'account/op1' AND action = 'ca.certificate.revoke' AND outcome = 'success' AND object = ? AND details LIKE ?",
			"cert/ecdsa-root/"+sub, `%"approval":"`+pending.Approval+`"%`); n != 1 {
			t.Errorf("%d revocation records with the approval, want 1", n)
		}
		if n := tn.audited("account/op1", "dual.execute", audit.Success); n != 1 {
			t.Errorf("%d executions audited, want 1", n)
		}
		// A retry answers the stored revocation; the approval is spent.
		var again RevokeResponse
		if st, raw := revokeWith("op2", sub, "cACompromise", pending.Approval); st != http.StatusOK || json.Unmarshal(raw, &again) != nil || again.RevokedAt != out.RevokedAt {
			t.Fatalf("retry: %d %s", st, raw)
		}
		// It answers the approval the revocation was executed under, not
		// one the retry states.
		if st, raw := revokeWith("op2", sub, "cACompromise", "0123456789abcdef0123456789abcdef"); st != http.StatusOK ||
			json.Unmarshal(raw, &again) != nil || again.Approval != pending.Approval {
			t.Fatalf("retry with another approval: %d %s; want 200 with approval %s", st, raw, pending.Approval)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'revoked' AND serial = ?", sub); n != 1 {
			t.Errorf("%d outbox events, want 1", n)
		}
		// The root's CRL (its ARL) lists the sub-CA with cACompromise.
		crl, err := latestCRL(context.Background(), tn.db(), "ecdsa-root")
		if err != nil {
			t.Fatal(err)
		}
		rl, err := smx509.ParseRevocationList(crl.der)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range rl.RevokedCertificateEntries {
			if serialHex(e.SerialNumber) == sub {
				found = e.ReasonCode == 2
			}
		}
		if !found {
			t.Errorf("ARL %d does not list %s with cACompromise", crl.number, sub)
		}
	})

	t.Run("second operator approves and revokes in one request", func(t *testing.T) {
		sub2 := tn.addSubCA(t, "ecdsa-root", "govtrust ECDSA Test Sub CA 2")
		var p2 PendingRevocation
		if st, raw := tn.revoke("ecdsa-root", "op2", sub2, "cessationOfOperation"); st != http.StatusAccepted || json.Unmarshal(raw, &p2) != nil {
			t.Fatalf("request: %d %s", st, raw)
		}
		// The approver states the revocation: another reason approves nothing.
		if st, raw := revokeWith("op1", sub2, "superseded", p2.Approval); st != http.StatusConflict {
			t.Fatalf("other reason: %d %s; want 409", st, raw)
		}
		if st := status(sub2).status; st != "good" {
			t.Fatalf("status %s after a mismatched approval", st)
		}
		if st, raw := revokeWith("op1", sub2, "cessationOfOperation", p2.Approval); st != http.StatusOK {
			t.Fatalf("approve and execute: %d %s", st, raw)
		}
		if c := status(sub2); c.status != "revoked" || c.reason != 5 {
			t.Fatalf("stored %s reason %d", c.status, c.reason)
		}
	})
}

// revokeCAByTwo has two CA operators (op1 asks, op2 approves and executes)
// revoke CA certificate serial, issued by issuer, for reason; it returns
// the executed revocation.
func (tn *testNode) revokeCAByTwo(t *testing.T, issuer, serial, reason string) (*PendingRevocation, *RevokeResponse) {
	t.Helper()
	var p PendingRevocation
	st, raw := tn.revoke(issuer, "op1", serial, reason)
	if st != http.StatusAccepted || json.Unmarshal(raw, &p) != nil {
		t.Fatalf("request: %d %s; want 202", st, raw)
	}
	st, raw = tn.do("POST", "/api/v1/ca/"+issuer+"/revocations", "op2", map[string]string{"serial": serial, "reason": reason, "approval": p.Approval}, nil)
	var out RevokeResponse
	if st != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("approve and execute: %d %s; want 200", st, raw)
	}
	return &p, &out
}

// caStatus is the status GET /api/v1/ca shows for CA id.
func (tn *testNode) caStatus(t *testing.T, id string) string {
	t.Helper()
	st, raw := tn.do("GET", "/api/v1/ca", "ra", nil, nil)
	var out struct{ CAs []CAInfo }
	if st != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("GET /api/v1/ca: %d %s", st, raw)
	}
	for _, c := range out.CAs {
		if c.ID == id {
			return c.Status
		}
	}
	t.Fatalf("GET /api/v1/ca does not list %s: %s", id, raw)
	return ""
}

// TestRevokedCAStopsIssuing: once two CA operators have revoked the
// certificate of ecdsa-issuing (cACompromise), the CA issues nothing more,
// through the API, IssueFor or the node's TLS certificate, with a policy
// error; GET /api/v1/ca shows it revoked, also after a restart; it still
// revokes what it issued and signs CRLs and OCSP responses for it; a retry
// of the revocation answers the approval it was executed under; and a
// rollover gives the lineage a new generation that issues.
func TestRevokedCAStopsIssuing(t *testing.T) {
	onBothStores(t, func(t *testing.T, tn *testNode) {
		ctx := t.Context()
		tn.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
		tn.addAccount("op2", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
		before := tn.issueECDSA(t)
		sub := serialHex(tn.svc.lookup("ecdsa-issuing").cert.SerialNumber)
		p, out := tn.revokeCAByTwo(t, "ecdsa-root", sub, "cACompromise")
		if out.Approval != p.Approval || out.Reason != "cACompromise" {
			t.Fatalf("revocation %+v", out)
		}
		if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.certificate.revoke' AND object = ? AND details LIKE ?",
			"cert/ecdsa-root/"+sub, `%"revoked_cas":["ecdsa-issuing"]%`); n != 1 {
			t.Errorf("%d revocation records naming the revoked CA, want 1", n)
		}

		refused := func(t *testing.T) {
			t.Helper()
			st, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "after.example.gov.cn", "after.example.gov.cn")), Profile: "server-tls"}, "")
			if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "revoked") {
				t.Errorf("issue from the revoked CA: %d %.300s; want 422 naming the revocation", st, raw)
			}
			if _, _, err := tn.svc.IssueFor(ctx, "ecdsa-issuing", "server-tls", goCSR(t, "svc.example.gov.cn", "svc.example.gov.cn"), nil, "service/test"); !errors.Is(err, ErrPolicy) {
				t.Errorf("IssueFor from the revoked CA: %v; want a policy error", err)
			}
			if _, err := tn.svc.TLSCertificate(ctx, &node.TLSRequest{DNSNames: []string{"localhost"}}); !errors.Is(err, ErrPolicy) {
				t.Errorf("node TLS certificate from the revoked CA: %v; want a policy error", err)
			}
			if st := tn.caStatus(t, "ecdsa-issuing"); st != "revoked" {
				t.Errorf("GET /api/v1/ca shows ecdsa-issuing %q, want revoked", st)
			}
		}
		refused(t)

		// A retry answers the stored revocation and its approval, not the
		// approval it states.
		st, raw := tn.do("POST", "/api/v1/ca/ecdsa-root/revocations", "op1",
			map[string]string{"serial": sub, "reason": "cACompromise", "approval": "0123456789abcdef0123456789abcdef"}, nil)
		var again RevokeResponse
		if st != http.StatusOK || json.Unmarshal(raw, &again) != nil || again.Approval != p.Approval || again.RevokedAt != out.RevokedAt {
			t.Errorf("retry with another approval: %d %s; want 200 with approval %s", st, raw, p.Approval)
		}

		// It still answers for what it issued: revocation, CRL, OCSP.
		if st, raw := tn.revoke("ecdsa-issuing", "ra", before.Serial, "keyCompromise"); st != http.StatusOK {
			t.Fatalf("revoke a certificate of the revoked CA: %d %s", st, raw)
		}
		a := tn.svc.lookup("ecdsa-issuing")
		c, err := latestCRL(ctx, tn.db(), a.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := serialsOf(t, c, a); !strings.Contains(got, before.Serial) {
			t.Errorf("CRL %d of the revoked CA lists %q, not %s", c.number, got, before.Serial)
		}
		n, _ := new(big.Int).SetString(before.Serial, 16)
		if st, _, reason, _, err := tn.svc.certStatus(ctx, a, n); err != nil || st != ocsp.Revoked || reason != reasonKeyCompromise {
			t.Errorf("OCSP status: %v reason %d, %v", st, reason, err)
		}

		// The status is in the database: a restart keeps refusing.
		dir, url := tn.dir, tn.n.Env().Config.Database.URL
		tn.stop()
		tn2 := startNodeWith(t, dir, func(o *node.Options) {
			if url != "" {
				o.DB = &url
			}
		})
		tn2.tokens = tn.tokens
		tn = tn2
		refused(t)

		// A rollover gives the lineage a new key, which issues.
		st, raw = tn.do("POST", "/api/v1/ca/ecdsa-issuing/rollover", "op1", map[string]string{}, nil)
		var rolled RolloverResponse
		if st != http.StatusCreated || json.Unmarshal(raw, &rolled) != nil || rolled.Previous != "ecdsa-issuing" {
			t.Fatalf("rollover of the revoked lineage: %d %s", st, raw)
		}
		after := tn.issueECDSA(t)
		if after.CA != rolled.ID {
			t.Errorf("issued by %q after the rollover, want %s", after.CA, rolled.ID)
		}
		if st := tn.caStatus(t, "ecdsa-issuing"); st != "revoked" {
			t.Errorf("after the rollover ecdsa-issuing shows %q, want revoked", st)
		}
	})
}

// TestRevokedCAAbove: a CA below a revoked CA issues nothing either (no
// chain through the revoked certificate validates), nor is a CA below it
// rolled over.
func TestRevokedCAAbove(t *testing.T) {
	tn := startNode(t, t.TempDir())
	reg := newRegistry()
	for _, a := range tn.svc.authorities() {
		c := *a
		if c.id == "ecdsa-root" {
			c.status = statusRevoked
		}
		reg.add(&c)
	}
	tn.svc.reg.Store(reg)
	if _, err := tn.svc.current("ecdsa-issuing"); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "ecdsa-root") {
		t.Errorf("issuing CA below a revoked root: %v; want a policy error naming ecdsa-root", err)
	}
	if _, err := tn.svc.Rollover(t.Context(), "test", "ecdsa-issuing", ""); !errors.Is(err, ErrPolicy) {
		t.Errorf("rollover under a revoked root: %v; want a policy error", err)
	}
	if _, err := tn.svc.current("sm2-issuing"); err != nil {
		t.Errorf("the other hierarchy: %v", err)
	}
}

// addApplication creates an application account of org, as the CLI would,
// keeps its token under name and returns its id.
func (tn *testNode) addApplication(name, org string) string {
	tn.t.Helper()
	ctx := audit.WithActor(context.Background(), "cli:test")
	az := tn.n.Env().Authz
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: authz.KindApplication, Org: org,
		Clearance: policy.Internal, Roles: []policy.Role{policy.RoleApplication}})
	if err != nil {
		tn.t.Fatalf("account %s: %v", name, err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatalf("token %s: %v", name, err)
	}
	tn.tokens[name] = tok
	return acc.ID
}

// TestRevokeByOwner is ACCEPTANCE.md C-12's owner case: the application
// account that requested a certificate for itself reads and revokes it;
// another application account of the same organisation does neither; a
// certificate the platform issued to a service (IssueFor) has no owner,
// whatever its requester.
func TestRevokeByOwner(t *testing.T) {
	tn := startNode(t, t.TempDir())
	id := tn.addApplication("app1", authz.BootstrapDemoOrg)
	tn.addApplication("app2", authz.BootstrapDemoOrg)
	st, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/certificates", "app1",
		IssueRequest{CSR: csrPEM(goCSR(t, "app.example.gov.cn", "app.example.gov.cn")), Profile: "server-tls"}, nil)
	var own IssueResponse
	if st != http.StatusCreated || json.Unmarshal(raw, &own) != nil {
		t.Fatalf("owner issues: %d %s", st, raw)
	}
	get := func(role, serial string) int {
		st, _ := tn.do("GET", "/api/v1/ca/ecdsa-issuing/certificates/"+serial, role, nil, nil)
		return st
	}
	if st := get("app1", own.Serial); st != http.StatusOK {
		t.Errorf("owner reads its certificate: %d, want 200", st)
	}
	if st := get("app2", own.Serial); st != http.StatusForbidden {
		t.Errorf("another application reads it: %d, want 403", st)
	}
	if st, raw := tn.revoke("ecdsa-issuing", "app2", own.Serial, "keyCompromise"); st != http.StatusForbidden {
		t.Errorf("another application revokes it: %d %s, want 403", st, raw)
	}
	st, raw = tn.revoke("ecdsa-issuing", "app1", own.Serial, "keyCompromise")
	var out RevokeResponse
	if st != http.StatusOK || json.Unmarshal(raw, &out) != nil || out.Reason != "keyCompromise" {
		t.Fatalf("owner revokes its certificate: %d %s, want 200", st, raw)
	}
	if n := tn.count(revokeRecords+" AND actor = 'account/app1' AND outcome = 'success' AND object = ?", "cert/ecdsa-issuing/"+own.Serial); n != 1 {
		t.Errorf("%d success records by the owner, want 1", n)
	}

	// A service's certificate, even one whose requester string is the
	// account's id, belongs to no account.
	der, _, err := tn.svc.IssueFor(t.Context(), "ecdsa-issuing", "server-tls", goCSR(t, "svc.example.gov.cn", "svc.example.gov.cn"), nil, id)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	svc := serialHex(cert.SerialNumber)
	if st := get("app1", svc); st != http.StatusForbidden {
		t.Errorf("account reads a service's certificate: %d, want 403", st)
	}
	if st, raw := tn.revoke("ecdsa-issuing", "app1", svc, "keyCompromise"); st != http.StatusForbidden {
		t.Errorf("account revokes a service's certificate: %d %s, want 403", st, raw)
	}
}

// TestRevokeReasonToKeyCompromise: a certificate revoked as superseded is
// revoked again for keyCompromise: same revocation date, the new reason on
// the next full CRL, on the delta over the base that listed it as
// superseded and in OCSP, the key blocked, the change audited. Every other
// change of reason stays a conflict.
func TestRevokeReasonToKeyCompromise(t *testing.T) {
	onBothStores(t, func(t *testing.T, tn *testNode) {
		ctx := t.Context()
		a := tn.svc.lookup("ecdsa-issuing")
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{"k.example.gov.cn"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		st, leaf, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(csr), Profile: "server-tls"}, "")
		if st != http.StatusCreated {
			t.Fatalf("issue: %d %s", st, raw)
		}
		var first RevokeResponse
		if st, raw := tn.revoke(a.id, "ra", leaf.Serial, "superseded"); st != http.StatusOK || json.Unmarshal(raw, &first) != nil {
			t.Fatalf("superseded: %d %s", st, raw)
		}
		// The delta base lists it as superseded.
		if _, err := tn.svc.generateBase(ctx, a); err != nil {
			t.Fatal(err)
		}
		reasonOn := func(c *storedCRL) int {
			t.Helper()
			rl, err := smx509.ParseRevocationList(c.der)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range rl.RevokedCertificateEntries {
				if serialHex(e.SerialNumber) == leaf.Serial {
					return e.ReasonCode
				}
			}
			return -1
		}
		for _, reason := range []string{"affiliationChanged", "unspecified", "cACompromise"} {
			if st, raw := tn.revoke(a.id, "ra", leaf.Serial, reason); st == http.StatusOK {
				t.Errorf("superseded → %s: %d %s; want refused", reason, st, raw)
			}
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_blocked_keys"); n != 0 {
			t.Fatalf("%d blocked keys before the compromise", n)
		}

		st, raw = tn.revoke(a.id, "ra", leaf.Serial, "keyCompromise")
		var kc RevokeResponse
		if st != http.StatusOK || json.Unmarshal(raw, &kc) != nil || kc.Reason != "keyCompromise" || kc.RevokedAt != first.RevokedAt {
			t.Fatalf("superseded → keyCompromise: %d %s; want 200 dated %s", st, raw, first.RevokedAt)
		}
		c, err := certBySerial(ctx, tn.db(), a.id, leaf.Serial)
		if err != nil || c.reason != reasonKeyCompromise || c.revokedAt.Format(time.RFC3339) != first.RevokedAt {
			t.Fatalf("stored %+v %v", c, err)
		}
		if n := tn.count(revokeRecords+" AND object = ? AND details LIKE ?", "cert/"+a.id+"/"+leaf.Serial, `%"previous_reason":"superseded"%`); n != 1 {
			t.Errorf("%d records of the change of reason, want 1", n)
		}
		// The answer waited for the new full CRL and a delta.
		full, err := latestCRL(ctx, tn.db(), a.id)
		if err != nil {
			t.Fatal(err)
		}
		if r := reasonOn(full); r != reasonKeyCompromise {
			t.Errorf("full CRL %d gives reason %d, want keyCompromise", full.number, r)
		}
		delta, err := tn.svc.generateDelta(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if r := reasonOn(delta); r != reasonKeyCompromise {
			t.Errorf("delta CRL %d on base %d gives reason %d, want keyCompromise", delta.number, delta.base, r)
		}
		n, _ := new(big.Int).SetString(leaf.Serial, 16)
		if st, at, reason, _, err := tn.svc.certStatus(ctx, a, n); err != nil || st != ocsp.Revoked || reason != reasonKeyCompromise ||
			at.UTC().Format(time.RFC3339) != first.RevokedAt {
			t.Errorf("OCSP: %v at %v reason %d, %v", st, at, reason, err)
		}
		if st, _, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(csr), Profile: "server-tls"}, ""); st != http.StatusUnprocessableEntity {
			t.Errorf("the compromised key certified again: %d %s", st, raw)
		}
		// The same again is a retry; back is a conflict.
		if st, raw := tn.revoke(a.id, "ra", leaf.Serial, "keyCompromise"); st != http.StatusOK {
			t.Errorf("keyCompromise again: %d %s", st, raw)
		}
		if st, raw := tn.revoke(a.id, "ra", leaf.Serial, "superseded"); st != http.StatusConflict {
			t.Errorf("keyCompromise → superseded: %d %s; want 409", st, raw)
		}
		if n := tn.count(revokeRecords+" AND object = ? AND outcome = 'success'", "cert/"+a.id+"/"+leaf.Serial); n != 2 {
			t.Errorf("%d successful revocation records, want 2", n)
		}
	})
}

// TestRequestAuditedWithChange: the record of a CA operator's request to
// revoke a CA certificate commits with the dual-control request, and the
// record of who forced a CRL with the CRL: when the record cannot be
// written (here a trigger refuses it), the change is not made either.
func TestRequestAuditedWithChange(t *testing.T) {
	tn := startNode(t, t.TempDir())
	ctx := t.Context()
	tn.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	sub := tn.addSubCA(t, "ecdsa-root", "govtrust ECDSA Test Sub CA")
	exec := func(q string) {
		t.Helper()
		if err := tn.db().Tx(ctx, func(tx *store.Tx) error { _, err := tx.Exec(ctx, q); return err }); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	exec(`CREATE TRIGGER refuse_request_record BEFORE INSERT ON audit_log
		WHEN NEW.action = 'ca.authority.revoke' AND NEW.details LIKE '%approval requested%'
		BEGIN SELECT RAISE(ABORT, 'audit record refused'); END`)
	if st, raw := tn.revoke("ecdsa-root", "op1", sub, "cACompromise"); st != http.StatusInternalServerError {
		t.Errorf("request without its record: %d %s; want 500", st, raw)
	}
	if n := tn.count("SELECT COUNT(*) FROM dual_requests WHERE kind = 'ca.authority.revoke'"); n != 0 {
		t.Errorf("%d dual-control requests made without their record, want 0", n)
	}
	exec("DROP TRIGGER refuse_request_record")
	if st, raw := tn.revoke("ecdsa-root", "op1", sub, "cACompromise"); st != http.StatusAccepted {
		t.Errorf("request: %d %s; want 202", st, raw)
	}

	crls := "SELECT COUNT(*) FROM ca_crls WHERE issuer_id = 'ecdsa-issuing'"
	before := tn.count(crls)
	exec(`CREATE TRIGGER refuse_forced_record BEFORE INSERT ON audit_log
		WHEN NEW.action = 'ca.crl.generate' AND NEW.actor = 'account/op1'
		BEGIN SELECT RAISE(ABORT, 'audit record refused'); END`)
	if st, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/crls", "op1", nil, nil); st != http.StatusInternalServerError {
		t.Errorf("forced CRL without its record: %d %s; want 500", st, raw)
	}
	if n := tn.count(crls); n != before {
		t.Errorf("%d CRLs stored without the record of who forced them", n-before)
	}
	exec("DROP TRIGGER refuse_forced_record")
	if st, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/crls", "op1", nil, nil); st != http.StatusCreated {
		t.Errorf("forced CRL: %d %s; want 201", st, raw)
	}
	if n := tn.audited("account/op1", "ca.crl.generate", audit.Success); n != 1 {
		t.Errorf("%d records of the forced CRL by op1, want 1", n)
	}
}
