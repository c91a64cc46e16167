package ca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

// TestRolloverRefusals: a rollover's ordinary mistakes are the client's
// (a key_uri that names a key already, a stale registry's generation id, a
// key backend the node does not have, a key name the backend refuses), and a rollover whose client goes
// away once its key is made leaves no key that would block the next one.
func TestRolloverRefusals(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	ctx := t.Context()
	// Another process on a database this one has not re-read made -g2 (and
	// its key) first.
	if _, err := tn.n.Env().Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:ca/ecdsa-issuing-g2", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: keyService}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, uri string
		want      int
		why       string
	}{
		{"another root's key", "soft:ca/ecdsa-root", http.StatusConflict, "exists"},
		{"another issuing CA's key", "soft:ca/sm2-issuing", http.StatusConflict, "exists"},
		{"stale registry", "", http.StatusConflict, "exists"},
		{"no such backend", "pkcs11:token=nowhere;object=k", http.StatusBadRequest, "no key backend"},
		// Names the software keystore refuses.
		{"upper-case key name", "soft:UPPER", http.StatusBadRequest, "key_uri soft:UPPER"},
		{"key name climbing out", "soft:../../etc", http.StatusBadRequest, "key_uri soft:../../etc"},
		{"key name like an option", "soft:-x", http.StatusBadRequest, "key_uri soft:-x"},
	} {
		body := map[string]any{}
		if c.uri != "" {
			body["key_uri"] = c.uri
		}
		status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/rollover", "operator", body, nil)
		if status != c.want || !strings.Contains(string(raw), c.why) {
			t.Errorf("%s: HTTP %d, want %d with %q: %s", c.name, status, c.want, c.why, raw)
		}
	}
	for _, id := range []string{"ecdsa-root", "sm2-issuing"} {
		if a := tn.svc.lookup(id); a == nil || a.status != statusActive {
			t.Fatalf("%s changed: %+v", id, a)
		}
		if _, err := tn.n.Env().Keys.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/" + id, Service: keyService}); err != nil {
			t.Fatalf("key of %s: %v", id, err)
		}
	}
	if cur, err := tn.svc.current("ecdsa-issuing"); err != nil || cur.id != "ecdsa-issuing" {
		t.Fatalf("current generation %v, %v", cur, err)
	}

	// The client goes away once the new key exists: the rollover fails and
	// its key is deleted all the same.
	for i := range 20 {
		uri := fmt.Sprintf("soft:ca/gone-%d", i)
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			defer cancel()
			for rctx.Err() == nil {
				if _, err := tn.n.Env().Keys.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri}); err == nil {
					return
				}
			}
		}()
		_, err := tn.svc.Rollover(rctx, "test", "ecdsa-issuing", uri)
		cancel()
		if err == nil {
			continue // done before the cancellation
		}
		if _, err := tn.n.Env().Keys.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri}); !errors.Is(err, hsm.ErrNotFound) {
			t.Fatalf("after a rollover its client left (%v), key %s: %v", rctx.Err(), uri, err)
		}
		return
	}
	t.Skip("every rollover completed before its client went away")
}
