package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestBackupWhileWriting: a backup taken while writers commit is one
// consistent snapshot (every transaction all in or all out, and every
// transaction committed before Backup started in it), passes
// integrity_check, opens as a database of its own, and refuses to overwrite
// a file.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.SQLite(t)
	if _, err := db.Exec(ctx, "CREATE TABLE pairs (id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var committed atomic.Int64
	insert := func(i int64) error {
		// Two rows per transaction: a snapshot that split one would hold
		// an odd count.
		return db.Tx(ctx, func(tx *store.Tx) error {
			for k := range int64(2) {
				if _, err := tx.Exec(ctx, "INSERT INTO pairs (id, a, b) VALUES (?, ?, ?)", 2*i+k, i, k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for i := range int64(500) {
		if err := insert(i); err != nil {
			t.Fatal(err)
		}
		committed.Store(i + 1)
	}
	before := committed.Load()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := before; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := insert(i); err != nil {
				t.Error(err)
				return
			}
			committed.Store(i + 1)
		}
	})
	backup := filepath.Join(dir, "backup.db")
	err := db.Backup(ctx, backup)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sum := fileSum(t, backup)
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v, want 0600", err, st.Mode().Perm())
	}
	if err := store.CheckSQLiteFile(ctx, backup); err != nil {
		t.Fatal(err)
	}
	copyDB, err := store.OpenSnapshot(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	defer copyDB.Close()
	var rows, txs int64
	if err := copyDB.QueryRow(ctx, "SELECT COUNT(*), COUNT(DISTINCT a) FROM pairs").Scan(&rows, &txs); err != nil {
		t.Fatal(err)
	}
	if rows != 2*txs || txs < before || txs > committed.Load() {
		t.Errorf("backup holds %d rows of %d transactions; %d were committed before it began, %d by its end", rows, txs, before, committed.Load())
	}
	t.Logf("backup: %d transactions (%d before, %d by the end)", txs, before, committed.Load())
	// A snapshot is only read: a write fails, and the file stays as it
	// was, with no -wal or -shm beside it.
	if _, err := copyDB.Exec(ctx, "INSERT INTO pairs (id, a, b) VALUES (-1, -1, 0)"); err == nil {
		t.Error("a write through OpenSnapshot succeeded")
	}
	if got := fileSum(t, backup); got != sum {
		t.Error("reading the backup changed its bytes")
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(backup + suffix); err == nil {
			t.Errorf("reading the backup left %s%s", backup, suffix)
		}
	}
	if err := db.Backup(ctx, backup); err == nil {
		t.Error("a second backup over the first: no error")
	}
	if err := store.CheckSQLiteFile(ctx, backup); err != nil {
		t.Errorf("the first backup after a refused second: %v", err)
	}
}

// TestBackupCorruptCopy: integrity_check finds a damaged page.
func TestBackupCorruptCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.SQLite(t)
	if _, err := db.Exec(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "CREATE INDEX t_v ON t (v)"); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, err := db.Exec(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", i, filepath.Join("value", string(rune('a'+i%26)), "x")); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(dir, "backup.db")
	if err := db.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the middle of the file: B-tree pages of the table and
	// its index, past the header and the schema page.
	for i := len(b) / 2; i < len(b)/2+4096 && i < len(b); i++ {
		b[i] = 0x5a
	}
	if err := os.WriteFile(backup, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckSQLiteFile(ctx, backup); err == nil {
		t.Error("integrity_check passed a file with a page overwritten")
	}
}

// TestBackupPostgres: PostgreSQL backups are the server's tools' work.
func TestBackupPostgres(t *testing.T) {
	db := storetest.Postgres(t)
	if err := db.Backup(context.Background(), filepath.Join(t.TempDir(), "x.db")); !errors.Is(err, store.ErrBackupUnsupported) {
		t.Errorf("Backup on PostgreSQL: %v, want ErrBackupUnsupported", err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
