package directory_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestTwoPublishers: two directory services on one database (as two nodes
// would be) consume the CA's outbox while certificates are issued and
// revoked concurrently; every event is applied once: the two together
// consumed exactly the outbox, and each certificate entry changed once
// (twice when revoked: added, then removed).
func TestTwoPublishers(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			url := ""
			if backend == "postgres" {
				url = storetest.PostgresURL(t)
			}
			tn := startNodeDB(t, filepath.Join(dir, "a"), "", "", url)
			ctx := context.Background()
			envA := tn.n.Env()
			sc, err := node.StoreConfig(envA.Config, filepath.Join(dir, "a"))
			if err != nil {
				t.Fatal(err)
			}
			dbB, err := store.Open(ctx, sc)
			if err != nil {
				t.Fatal(err)
			}
			defer dbB.Close()
			envB := *envA
			envB.DB, envB.Audit = dbB, audit.New("node-b", envA.Clock)
			svcB := directory.New(caSource{})
			if err := svcB.Start(ctx, &envB); err != nil {
				t.Fatal(err)
			}
			defer svcB.Stop(ctx)

			var mu sync.Mutex
			var certs []*issued
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 6 {
						c := tn.issuePerson(fmt.Sprintf("用户%d-%d", w, i), fmt.Sprintf("u%d.%d@example.gov.cn", w, i))
						if i%3 == 0 {
							tn.revoke(c.Serial)
						}
						mu.Lock()
						certs = append(certs, c)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			count := func(q string, args ...any) int {
				var n int
				if err := envA.DB.QueryRow(ctx, q, args...).Scan(&n); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				return n
			}
			eventually(t, 30*time.Second, "outbox drained", func() error {
				if n := count("SELECT COUNT(*) FROM ca_outbox WHERE published_at IS NULL"); n > 0 {
					return fmt.Errorf("%d events pending", n)
				}
				return nil
			})
			total := count("SELECT COUNT(*) FROM ca_outbox")
			a, b := tn.dirSvc.Published.Load(), svcB.Published.Load()
			t.Logf("%d events: publisher A took %d, B took %d", total, a, b)
			if int(a+b) != total {
				t.Errorf("publishers consumed %d+%d events, the outbox has %d", a, b, total)
			}
			for _, c := range certs {
				norm := strings.ToLower(tn.dirSvc.CertDN("sm2-issuing", c.Serial))
				n := count("SELECT COUNT(*) FROM dir_changes WHERE dn_norm = ?", norm)
				present := count("SELECT COUNT(*) FROM dir_entries WHERE dn_norm = ?", norm) == 1
				revoked := count("SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = 'sm2-issuing' AND serial = ? AND status = 'revoked'", c.Serial) == 1
				// A revoked certificate was added and removed (2 changes),
				// or, when its issuance was consumed after the revocation,
				// never added (0); any other count is an event applied twice.
				if ok := (!revoked && n == 1 && present) || (revoked && (n == 0 || n == 2) && !present); !ok {
					t.Errorf("certificate %s (revoked %v): %d changes, entry present %v", c.Serial, revoked, n, present)
				}
			}
		})
	}
}
