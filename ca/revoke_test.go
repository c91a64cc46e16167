package ca

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
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
		{"operator on a CA certificate", "ecdsa-root", "operator", caSerial, "keyCompromise", http.StatusUnprocessableEntity, audit.Failure},
		{"operator on an unknown serial", "ecdsa-issuing", "operator", "01ff", "superseded", http.StatusNotFound, audit.Failure},
		{"certificateHold", "ecdsa-issuing", "ra", leaf.Serial, "certificateHold", http.StatusBadRequest, audit.Failure},
		{"unknown reason", "ecdsa-issuing", "ra", leaf.Serial, "cACompromise", http.StatusBadRequest, audit.Failure},
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
		if status != http.StatusOK || json.Unmarshal(raw, &again) != nil || again != first {
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
