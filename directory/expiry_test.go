package directory_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
)

// TestSweepExpired: once a published certificate's notAfter has passed,
// the sweep removes its entry and its value from the holder, and leaves a
// still-valid certificate alone.
func TestSweepExpired(t *testing.T) {
	clk := clock.NewFake(time.Now())
	tn := startNodeDB(t, filepath.Join(t.TempDir(), "data"), "", "", "", func(o *node.Options) { o.Clock = clk })
	ctx := context.Background()
	c := tn.issuePerson("王五", "wangwu@example.gov.cn")
	norm := strings.ToLower(tn.dirSvc.CertDN("sm2-issuing", c.Serial))
	present := func() bool {
		var n int
		if err := tn.n.Env().DB.QueryRow(ctx, "SELECT COUNT(*) FROM dir_entries WHERE dn_norm = ?", norm).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for deadline := time.Now().Add(10 * time.Second); !present(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the certificate was never published")
		}
	}
	if n, err := tn.dirSvc.SweepExpired(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before expiry removed %d (%v), want 0", n, err)
	}
	cert, err := smx509.ParseCertificate(c.der)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(cert.NotAfter.Sub(clk.Now()) + time.Second)
	if n, err := tn.dirSvc.SweepExpired(ctx); err != nil || n < 1 {
		t.Fatalf("sweep after expiry removed %d (%v), want the certificate", n, err)
	}
	if present() {
		t.Error("the expired certificate's entry is still published")
	}
}
