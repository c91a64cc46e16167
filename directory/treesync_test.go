package directory

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// dbService is a directory service on a fresh SQLite database, with its
// tree loaded and its skeleton written, and no publisher running.
func dbService(t *testing.T) *Service {
	t.Helper()
	db := storetest.SQLite(t, audit.Migrations, Migrations)
	clk := clock.NewFake(time.Now())
	cfg := config.Defaults()
	s := New(nil)
	s.env = &node.Env{Config: &cfg, DB: db, Audit: audit.New("test", clk), Clock: clk, Logger: slog.New(slog.DiscardHandler)}
	s.cfg = cfg.Directory
	s.baseDN = s.cfg.BaseDN
	s.base, _, _ = normalizeDN(s.baseDN)
	ctx := context.Background()
	if err := s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ensureSkeleton(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// commitOnly runs fn in a directory write transaction like write, and
// returns the committed batch without applying it to the tree: a writer
// that has committed and not yet reached its tree.
func commitOnly(t *testing.T, s *Service, fn func(b *batch) error) *batch {
	t.Helper()
	ctx := context.Background()
	var b *batch
	err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if b, err = begin(ctx, tx, s.env.Clock.Now()); err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return err
		}
		return indexHolders(ctx, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTreeTakesBatchesInCommitOrder: two writers of one process commit
// one after the other and reach the tree in the other order. The later
// batch (which removes an entry) finds the tree behind and reloads it; the
// earlier one (which wrote the entry) then changes nothing: the tree keeps
// the later version instead of serving the removed entry again. A batch
// whose predecessor the tree has not seen reloads it.
func TestTreeTakesBatchesInCommitOrder(t *testing.T) {
	s := dbService(t)
	ctx := context.Background()
	dn := "uid=01ab,cn=sm2-issuing,ou=ca," + s.baseDN
	norm, _, _ := normalizeDN(dn)
	put := func(b *batch) error {
		e, err := newEntry(dn, KindCertificate, "top", "pkiUser")
		if err != nil {
			return err
		}
		e.setStr("uid", "01ab")
		return b.put(ctx, e)
	}
	start := s.tree.version
	older := commitOnly(t, s, put)
	if err := s.write(ctx, audit.Record{}, func(b *batch) error { return b.remove(ctx, norm) }); err != nil {
		t.Fatal(err)
	}
	if s.tree.version != start+2 || s.tree.get(norm) != nil {
		t.Fatalf("after the later batch: tree at version %d (want %d), entry present %v", s.tree.version, start+2, s.tree.get(norm) != nil)
	}
	if err := s.toTree(ctx, older); err != nil {
		t.Fatal(err)
	}
	if s.tree.version != start+2 || s.tree.get(norm) != nil {
		t.Errorf("after the earlier batch reached the tree: version %d (want %d), removed entry served again: %v",
			s.tree.version, start+2, s.tree.get(norm) != nil)
	}

	// A batch that is not applied (another process's, as far as this tree
	// knows), then one of this process: the tree reloads and shows both.
	missed := commitOnly(t, s, put)
	if err := s.write(ctx, audit.Record{}, func(b *batch) error {
		e, err := newEntry("uid=01ac,cn=sm2-issuing,ou=ca,"+s.baseDN, KindCertificate, "top", "pkiUser")
		if err != nil {
			return err
		}
		return b.put(ctx, e)
	}); err != nil {
		t.Fatal(err)
	}
	if s.tree.version != missed.version+1 || s.tree.get(norm) == nil {
		t.Errorf("after a batch the tree had not seen: version %d (want %d), its entry present %v",
			s.tree.version, missed.version+1, s.tree.get(norm) != nil)
	}
}
