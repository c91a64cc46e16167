package ca

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestFirstStartTogether: two processes loading the CAs at once from one
// empty PostgreSQL database end up with the same built-in CAs: the creation
// of the hierarchies is serialised, and the second reads what the first
// made instead of taking the first's new key for a tampered installation.
func TestFirstStartTogether(t *testing.T) {
	ctx := context.Background()
	for round := range 3 {
		dbc := storetest.PostgresConfig(t)
		sets := append(node.BaseMigrations(), New().Migrations()...)
		cfg := config.Defaults()
		svcs := make([]*Service, 2)
		for i := range svcs {
			// Each process has its own connections, audit log writer and
			// key manager on the shared database (opened one after the
			// other: the software keystore's own first run is not what is
			// tested here).
			db := storetest.OpenConfig(t, dbc, sets...)
			clk := clock.New()
			log := audit.New(fmt.Sprintf("p%d", i), clk)
			keys, err := node.OpenKeys(ctx, &cfg, node.KeysOptions{DB: db, Audit: log, Logger: slog.New(slog.DiscardHandler), Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = keys.Close() })
			svcs[i] = New()
			svcs[i].env = &node.Env{Config: &cfg, DB: db, Audit: log, Keys: keys, Clock: clk, Logger: slog.New(slog.DiscardHandler)}
			svcs[i].vars = urlVars(svcs[i].env)
		}
		regs := make([]*registry, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, s := range svcs {
			wg.Go(func() { regs[i], errs[i] = s.loadAll(audit.WithActor(ctx, "system")) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: process %d: %v", round, i, err)
			}
		}
		for _, id := range []string{"sm2-root", "sm2-issuing", "ecdsa-root", "ecdsa-issuing"} {
			a, b := regs[0].byID[id], regs[1].byID[id]
			if a == nil || b == nil || !bytes.Equal(a.cert.Raw, b.cert.Raw) {
				t.Fatalf("round %d: the processes run different %s", round, id)
			}
		}
	}
}
