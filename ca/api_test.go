package ca

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

// TestProfilesAPI: GET /api/v1/ca/profiles describes every built-in profile
// to RAs and CA operators, and to nobody else.
func TestProfilesAPI(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addAccount("citizen", "public", policy.Internal, policy.RoleCitizen)
	for _, tc := range []struct {
		role string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"citizen", http.StatusForbidden},
		{"auditor", http.StatusForbidden},
		{"sysadmin", http.StatusForbidden},
		{"ra", http.StatusOK},
		{"operator", http.StatusOK},
	} {
		t.Run("as "+tc.role, func(t *testing.T) {
			status, raw := tn.do("GET", "/api/v1/ca/profiles", tc.role, nil, nil)
			if status != tc.want {
				t.Fatalf("status %d: %s; want %d", status, raw, tc.want)
			}
			if status != http.StatusOK {
				return
			}
			var out struct{ Profiles []ProfileInfo }
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatal(err)
			}
			byName := map[string]ProfileInfo{}
			for _, p := range out.Profiles {
				byName[p.Name] = p
			}
			if len(byName) != len(tn.svc.profiles) {
				t.Fatalf("%d profiles, want %d", len(byName), len(tn.svc.profiles))
			}
			sub, tls := byName["sub-ca"], byName["server-tls"]
			if !sub.CA || sub.PathLen == nil || *sub.PathLen != 0 || sub.Validity != "3650d" || sub.Version == "" {
				t.Errorf("sub-ca: %+v", sub)
			}
			if tls.CA || !contains(tls.ExtKeyUsage, "serverAuth") || !contains(tls.KeyUsage, "digitalSignature") || len(tls.KeyTypes) == 0 {
				t.Errorf("server-tls: %+v", tls)
			}
			if tls.Internal || !byName["ocsp-signer"].Internal || !byName["tsa"].Internal {
				t.Errorf("internal: server-tls %v, ocsp-signer %v, tsa %v; want false, true, true", tls.Internal, byName["ocsp-signer"].Internal, byName["tsa"].Internal)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestForceCRL: POST /api/v1/ca/{ca}/crls makes a new, higher-numbered CRL
// that /pki/{ca}.crl then serves; only CA operators may, and who asked is
// audited.
func TestForceCRL(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	before, err := latestCRL(context.Background(), tn.db(), "sm2-issuing")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role, actor string
		want        int
	}{
		{"", "anonymous", http.StatusUnauthorized},
		{"ra", "account/ra", http.StatusForbidden},
		{"auditor", "account/auditor", http.StatusForbidden},
		{"sysadmin", "account/sysadmin", http.StatusForbidden},
	} {
		t.Run("as "+tc.actor, func(t *testing.T) {
			if status, raw := tn.do("POST", "/api/v1/ca/sm2-issuing/crls", tc.role, nil, nil); status != tc.want {
				t.Fatalf("status %d: %s; want %d", status, raw, tc.want)
			}
			if n := tn.audited(tc.actor, "ca.crl.generate", audit.Denied); n != 1 {
				t.Errorf("%d denied records, want 1", n)
			}
		})
	}
	if status, raw := tn.do("POST", "/api/v1/ca/no-such-ca/crls", "operator", nil, nil); status != http.StatusNotFound {
		t.Fatalf("unknown CA: %d %s", status, raw)
	}
	status, raw := tn.do("POST", "/api/v1/ca/sm2-issuing/crls", "operator", nil, nil)
	var info CRLInfo
	if status != http.StatusCreated || json.Unmarshal(raw, &info) != nil {
		t.Fatalf("operator: %d %s", status, raw)
	}
	if info.Number <= before.number || info.CA != "sm2-issuing" || info.URL != "/pki/sm2-issuing.crl" {
		t.Fatalf("answer %+v after CRL %d", info, before.number)
	}
	this, err1 := time.Parse(time.RFC3339, info.ThisUpdate)
	next, err2 := time.Parse(time.RFC3339, info.NextUpdate)
	if err1 != nil || err2 != nil || !next.After(this) {
		t.Fatalf("times %q %q", info.ThisUpdate, info.NextUpdate)
	}
	resp, err := tn.c.Get("http://" + tn.n.Addresses().HTTP + "/pki/sm2-issuing.crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET CRL: %d %v", resp.StatusCode, err)
	}
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if rl.Number.Int64() != info.Number || rl.CheckSignatureFrom(tn.svc.cas["sm2-issuing"].cert) != nil {
		t.Fatalf("served CRL number %v, want %d (or bad signature)", rl.Number, info.Number)
	}
	if n := tn.audited("account/operator", "ca.crl.generate", audit.Success); n != 1 {
		t.Errorf("%d records naming the operator, want 1", n)
	}
}
