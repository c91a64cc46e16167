package ca

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// TestHierarchyLints lints the four CA certificates made on first start:
// no error-level finding (RFC 5280, GM/T 0015 lints of ca/lint).
func TestHierarchyLints(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	for _, sp := range hierarchies {
		t.Run(sp.id, func(t *testing.T) {
			a := tn.svc.cas[sp.id]
			issuer := a.cert
			if sp.parent != "" {
				issuer = tn.svc.cas[sp.parent].cert
			}
			for _, f := range lint.Certificate(a.cert, issuer) {
				t.Logf("finding: %s", f)
			}
			if errs := lint.Errors(lint.Certificate(a.cert, issuer)); len(errs) > 0 {
				t.Errorf("lint errors: %v", errs)
			}
		})
	}
}

// TestKeyWithoutRow: a CA key that exists without its ca_authorities row
// stops the start instead of a second key being made for the CA.
func TestKeyWithoutRow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	tn.stop()
	db, err := store.Open(context.Background(), store.Config{URL: filepath.Join(dir, "govtrust.db")})
	if err != nil {
		t.Fatal(err)
	}
	// ca_certificates and ca_serials hold the node's HTTPS certificate (tls.go)
	// and the OCSP responder's.
	for _, table := range []string{"ca_crls", "ca_crl_numbers", "ca_ocsp_responses", "ca_ocsp_epochs", "ca_ocsp_responders", "ca_serials", "ca_certificates"} {
		if _, err := db.Exec(context.Background(), "DELETE FROM "+table+" WHERE issuer_id = 'ecdsa-issuing'"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(context.Background(), "DELETE FROM ca_authorities WHERE id = 'ecdsa-issuing'"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}}
	n, err := node.Start(context.Background(), opts, New())
	if err == nil {
		n.Shutdown(context.Background())
		t.Fatal("node started with a CA key but no CA row")
	}
	if !strings.Contains(err.Error(), "soft:ca/ecdsa-issuing exists but no CA is recorded") || !errors.Is(err, hsm.ErrExists) {
		t.Fatalf("error %v: want the refusal to make a second key", err)
	}
}
