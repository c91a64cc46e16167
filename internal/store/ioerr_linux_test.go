package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestCommitIOErrorSQLite: a COMMIT that SQLite cannot write (a real
// SQLITE_IOERR_WRITE: the WAL may not grow past RLIMIT_FSIZE, which the
// kernel answers with EFBIG) makes the DB refuse every later write, the
// commit's own outcome is unknown (its frames may be in the file, and
// recovery would take them), readiness fails, and reads go on. Before,
// the next transaction committed after the frames that failed.
//
// RLIMIT_FSIZE is the process's: the test lowers it only around the one
// commit, and no test of this package runs in parallel with it.
func TestCommitIOErrorSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "io.db")
	db := storetest.OpenConfig(t, store.Config{URL: path}, alpha)
	insert := func(name, note string) func(tx *store.Tx) error {
		return func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name, note) VALUES (?, ?)", name, note)
			return err
		}
	}
	if err := db.Tx(ctx, insert("before", "")); err != nil {
		t.Fatal(err)
	}
	var largest int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
	}
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &saved); err != nil {
		t.Fatal(err)
	}
	low := saved
	low.Cur = uint64(largest + 8<<10)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_FSIZE: %v", err)
	}
	err := db.Tx(ctx, insert("big", strings.Repeat("x", 256<<10)))
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &saved); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("COMMIT past RLIMIT_FSIZE: %v, want ErrUnavailable with the outcome unknown", err)
	}
	if !strings.Contains(err.Error(), "disk I/O error") {
		t.Fatalf("COMMIT past RLIMIT_FSIZE: %v, want SQLite's disk I/O error (the test proves nothing)", err)
	}

	// The file could take it now; the DB must not.
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "refuses writes until the node is restarted") {
			t.Errorf("%s after an I/O error at COMMIT: %v, want ErrUnavailable saying the database refuses writes", what, err)
		}
	}
	refused("Tx", db.Tx(ctx, insert("after", "")))
	_, err = db.Exec(ctx, "INSERT INTO alpha_items (name) VALUES ('exec')")
	refused("Exec", err)
	refused("Ping (readiness)", db.Ping(ctx))
	if n := count(t, db, "SELECT count(*) FROM alpha_items WHERE name IN ('before', 'after', 'exec')"); n != 1 {
		t.Errorf("%d rows, want 1 (before)", n)
	}
	err = db.Read(ctx, func(q store.Querier) error {
		if n := count(t, q, "SELECT count(*) FROM alpha_items WHERE name = 'before'"); n != 1 {
			t.Errorf("Read: %d rows, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Errorf("Read after an I/O error at COMMIT: %v", err)
	}
}
