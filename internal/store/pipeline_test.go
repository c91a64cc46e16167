package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// writerSynchronous reads PRAGMA synchronous on the writer connection.
func writerSynchronous(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.Writer().QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSQLitePragmaRepeated: TxPipelined sets PRAGMA synchronous on the
// writer twice a transaction, through the connection's statement cache;
// SQLite carries out some PRAGMAs when it prepares them, so check that a
// reused statement still takes effect, and that a reused read sees it.
func TestSQLitePragmaRepeated(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	conn, err := db.Writer().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, level := range []string{"NORMAL", "FULL", "NORMAL", "EXTRA", "FULL"} {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous="+level); err != nil {
			t.Fatal(err)
		}
		var got int
		if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"NORMAL": 1, "FULL": 2, "EXTRA": 3}[level]; got != want {
			t.Errorf("step %d: PRAGMA synchronous=%s then read %d, want %d", i, level, got, want)
		}
	}
}

// TestTxPipelinedSQLite: the transaction is committed and visible when
// TxPipelined returns, its frames are already in the WAL file (so the
// fsync Wait makes covers them), Wait syncs, and the writer connection is
// back at the configured level for the next transaction.
func TestTxPipelinedSQLite(t *testing.T) {
	ctx := context.Background()
	for _, level := range []string{"FULL", "EXTRA"} {
		t.Run(level, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			db := storetest.OpenConfig(t, store.Config{URL: path, Synchronous: level}, alpha)
			want := writerSynchronous(t, db)
			before := walSize(t, path)
			p, err := db.TxPipelined(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", "pipelined")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if after := walSize(t, path); after <= before {
				t.Errorf("WAL is %d bytes after the commit, %d before: the frames are not written", after, before)
			}
			if got := writerSynchronous(t, db); got != want {
				t.Errorf("writer synchronous after TxPipelined = %d, want %d", got, want)
			}
			err = db.Read(ctx, func(q store.Querier) error {
				if n := count(t, q, "SELECT count(*) FROM alpha_items WHERE name = 'pipelined'"); n != 1 {
					t.Errorf("%d rows visible after commit, want 1", n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			syncs := db.WALSyncs()
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			if err := p.Wait(); err != nil { // already durable: no second fsync
				t.Fatal(err)
			}
			if got := db.WALSyncs() - syncs; got != 1 {
				t.Errorf("Wait made %d fsyncs, want 1", got)
			}
			// A failing transaction commits nothing and leaves the level.
			_, err = db.TxPipelined(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", "pipelined")
				return err
			})
			if !store.IsUniqueViolation(err) {
				t.Errorf("duplicate: %v, want a unique violation", err)
			}
			if got := writerSynchronous(t, db); got != want {
				t.Errorf("writer synchronous after a failed TxPipelined = %d, want %d", got, want)
			}
		})
	}
}

// TestTxPipelinedPanic: a panic in the callback goes on to the caller,
// and the writer connection does not stay at NORMAL: the next transaction
// commits at the configured level. (Before, the connection went back to
// the pool at NORMAL and every later DB.Tx committed without its fsync.)
func TestTxPipelinedPanic(t *testing.T) {
	ctx := context.Background()
	for _, level := range []string{"FULL", "EXTRA"} {
		t.Run(level, func(t *testing.T) {
			db := storetest.OpenConfig(t, store.Config{URL: filepath.Join(t.TempDir(), "p.db"), Synchronous: level}, alpha)
			want := writerSynchronous(t, db)
			var got any
			func() {
				defer func() { got = recover() }()
				_, _ = db.TxPipelined(ctx, func(tx *store.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", "panicked"); err != nil {
						return err
					}
					panic("boom")
				})
			}()
			if got != "boom" {
				t.Fatalf("recovered %v, want the callback's panic", got)
			}
			if s := writerSynchronous(t, db); s != want {
				t.Errorf("writer synchronous after a panicking TxPipelined = %d, want %d", s, want)
			}
			if n := count(t, db, "SELECT count(*) FROM alpha_items WHERE name = 'panicked'"); n != 0 {
				t.Errorf("%d rows of the panicked transaction", n)
			}
			p, err := db.TxPipelined(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", "after")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func walSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestTxPipelinedGroupSync: concurrent writers each wait for their own
// commit; the fsyncs are shared, and every row is there.
func TestTxPipelinedGroupSync(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t, alpha)
	const writers, each = 8, 25
	for _, err := range concurrently(writers, each, func(w, i int) error {
		p, err := db.TxPipelined(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", fmt.Sprintf("p%d-%d", w, i))
			return err
		})
		if err != nil {
			return err
		}
		return p.Wait()
	}) {
		t.Fatal(err)
	}
	err := db.Read(ctx, func(q store.Querier) error {
		if n := count(t, q, "SELECT count(*) FROM alpha_items WHERE name <> 'seed'"); n != writers*each {
			t.Errorf("%d rows, want %d", n, writers*each)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := db.WALSyncs(); s == 0 || s > writers*each {
		t.Errorf("%d fsyncs for %d commits", s, writers*each)
	}
	t.Logf("%d commits, %d fsyncs", writers*each, db.WALSyncs())
}

// TestTxPipelinedElsewhere: on PostgreSQL, and on SQLite below FULL, it is
// Tx; Wait has nothing to do.
func TestTxPipelinedElsewhere(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, db *store.DB) {
		p, err := db.TxPipelined(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", "plain")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		if db.WALSyncs() != 0 {
			t.Errorf("%d WAL fsyncs, want none", db.WALSyncs())
		}
		if n := count(t, db, "SELECT count(*) FROM alpha_items WHERE name = 'plain'"); n != 1 {
			t.Errorf("%d rows, want 1", n)
		}
	}
	t.Run("postgres", func(t *testing.T) { check(t, storetest.Postgres(t, alpha)) })
	t.Run("sqlite-normal", func(t *testing.T) {
		db := storetest.OpenConfig(t, store.Config{URL: filepath.Join(t.TempDir(), "n.db"), Synchronous: "NORMAL"}, alpha)
		check(t, db)
		if got := writerSynchronous(t, db); got != 1 {
			t.Errorf("writer synchronous = %d, want 1 (NORMAL, as configured)", got)
		}
	})
}
