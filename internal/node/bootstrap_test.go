package node

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestTwoNodesFirstStartPostgres: two nodes started at once for the first
// time on one empty PostgreSQL database (two CA processes are a supported
// deployment, ACCEPTANCE.md B-02) both start, and the installation is
// initialised once: one node.initialize record, one initialized_at, the
// four bootstrap accounts with one bootstrap token each, written to the
// data directory of the node that initialised; the tokens work on both
// nodes.
func TestTwoNodesFirstStartPostgres(t *testing.T) {
	ctx := context.Background()
	environ := productionKeystore(t)
	for round := range 3 {
		url := storetest.PostgresURL(t)
		dirs := [2]string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
		var nodes [2]*Node
		var errs [2]error
		var wg sync.WaitGroup
		for i := range dirs {
			o := testOptions(dirs[i])
			o.DB = &url
			o.Environ = append([]string{fmt.Sprintf("GOVTRUST_NODE_NAME=first-%d-%c", round, 'a'+i)}, environ...)
			wg.Go(func() { nodes[i], errs[i] = Start(ctx, o) })
		}
		wg.Wait()
		for i, n := range nodes {
			if n != nil {
				t.Cleanup(func() { n.Shutdown(context.Background()) })
			}
			if errs[i] != nil {
				t.Fatalf("round %d: node %c: %v", round, 'a'+i, errs[i])
			}
		}
		db := nodes[0].Env().DB
		count := func(q string, args ...any) int {
			t.Helper()
			var c int
			if err := db.QueryRow(ctx, q, args...).Scan(&c); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return c
		}
		if c := count("SELECT COUNT(*) FROM audit_log WHERE action = 'node.initialize'"); c != 1 {
			t.Errorf("round %d: %d node.initialize records, want 1", round, c)
		}
		if c := count("SELECT COUNT(*) FROM node_meta WHERE key = 'initialized_at'"); c != 1 {
			t.Errorf("round %d: %d initialized_at rows, want 1", round, c)
		}
		for _, role := range bootstrapRoles {
			if c := count("SELECT COUNT(*) FROM authz_tokens t JOIN authz_accounts a ON a.id = t.account_id WHERE a.name = ?", role); c != 1 {
				t.Errorf("round %d: %d tokens of bootstrap account %s, want 1", round, c, role)
			}
		}
		if c := count("SELECT COUNT(*) FROM authz_accounts"); c != len(authz.BootstrapAccounts) {
			t.Errorf("round %d: %d accounts, want %d", round, c, len(authz.BootstrapAccounts))
		}
		// The node that initialised has the token files; each token is
		// accepted by both nodes.
		var tokenDir string
		for _, d := range dirs {
			if _, err := ReadBootstrapToken(d, "auditor"); err == nil {
				if tokenDir != "" {
					t.Errorf("round %d: both nodes wrote bootstrap tokens", round)
				}
				tokenDir = d
			}
		}
		if tokenDir == "" {
			t.Fatalf("round %d: no node wrote the bootstrap tokens", round)
		}
		tok, _ := ReadBootstrapToken(tokenDir, "auditor")
		for i, n := range nodes {
			if code, body := get(t, insecureClient(), "https://"+n.Addresses().HTTPS+"/api/v1/audit/checkpoints", tok); code != 200 {
				t.Errorf("round %d: node %c refuses the auditor's bootstrap token: %d %s", round, 'a'+i, code, body)
			}
		}
		for _, n := range nodes {
			n.Shutdown(ctx)
		}
	}
}
