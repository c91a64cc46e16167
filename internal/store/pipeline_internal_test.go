package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeFsync is an fsync that signals entered when it starts and returns
// what the test sends on release.
func fakeFsync() (fsync func() error, entered chan struct{}, release chan error) {
	entered, release = make(chan struct{}), make(chan error)
	return func() error {
		entered <- struct{}{}
		return <-release
	}, entered, release
}

// TestWALSyncGroups: waiters that arrive while an fsync runs share the
// next one; a commit made during an fsync is not covered by it; after a
// failed fsync every wait fails.
func TestWALSyncGroups(t *testing.T) {
	var s walSync
	fsync, entered, release := fakeFsync()

	first := s.committed()
	done := make(chan error, 1)
	go func() { done <- s.wait(first, fsync) }()
	<-entered // fsync 1 runs, covering commit 1 only

	// Commits made during it, and their waiters.
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		seq := s.committed()
		wg.Go(func() { errs[i] = s.wait(seq, fsync) })
	}
	release <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-entered // one fsync for all five
	release <- nil
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("waiter %d: %v", i, err)
		}
	}
	if got := s.syncs.Load(); got != 2 {
		t.Errorf("%d fsyncs, want 2", got)
	}
	if err := s.wait(first, fsync); err != nil { // durable already: no fsync
		t.Fatal(err)
	}

	// A failure is for good.
	failed := errors.New("EIO")
	seq := s.committed()
	go func() { done <- s.wait(seq, fsync) }()
	<-entered
	release <- failed
	if err := <-done; !errors.Is(err, failed) {
		t.Fatalf("wait = %v, want %v", err, failed)
	}
	later := s.committed()
	if err := s.wait(later, fsync); !errors.Is(err, failed) {
		t.Errorf("wait after a failed fsync = %v, want %v without another fsync", err, failed)
	}
	if got := s.syncs.Load(); got != 3 {
		t.Errorf("%d fsyncs, want 3", got)
	}
}

// TestWALSyncNoFsync: a round that fails before its fsync (the WAL file
// could not be opened) fails the waits it covers, with its error, and no
// other: the next round syncs and succeeds.
func TestWALSyncNoFsync(t *testing.T) {
	var s walSync
	fsync, entered, release := fakeFsync()
	openFailed := fmt.Errorf("store: sync WAL: %w: %w", errNoFsync, errors.New("EMFILE"))

	first := s.committed()
	done := make(chan error, 1)
	go func() { done <- s.wait(first, fsync) }()
	<-entered // round 1 covers commit 1

	// A waiter that round 1 covers, queued behind it, and one it does not.
	covered := make(chan error, 1)
	go func() { covered <- s.wait(first, fsync) }()
	later := s.committed()
	after := make(chan error, 1)
	go func() { after <- s.wait(later, fsync) }()
	for s.waiting() < 2 {
		runtime.Gosched()
	}
	release <- openFailed
	if err := <-done; !errors.Is(err, errNoFsync) {
		t.Fatalf("runner of the failed round: %v, want %v", err, openFailed)
	}
	if err := <-covered; !errors.Is(err, errNoFsync) {
		t.Fatalf("waiter the failed round covered: %v, want %v", err, openFailed)
	}
	select { // the uncovered waiter runs round 2
	case <-entered:
	case err := <-after:
		t.Fatalf("waiter the failed round did not cover: %v without a round of its own", err)
	}
	release <- nil
	if err := <-after; err != nil {
		t.Fatalf("waiter of round 2: %v", err)
	}
	if err := s.wait(first, fsync); err != nil { // round 2 covered commit 1 too
		t.Fatalf("commit 1 after round 2: %v", err)
	}
	if got := s.syncs.Load(); got != 2 {
		t.Errorf("%d rounds, want 2", got)
	}
	if s.err != nil {
		t.Errorf("a failed open was held against later rounds: %v", s.err)
	}
}

// TestWALFsyncFailureStopsWrites: after the fsync of a pipelined commit's
// WAL failed, the DB refuses every write, a FULL transaction included,
// though its own fsync would succeed: SQLite's recovery stops at the first
// WAL frame that did not reach the disk and discards every commit after
// it. Readiness (Ping) fails, reads go on, and the operator is told once.
// (Before, only Pending.Wait failed; DB.Tx went on acknowledging commits
// that a crash would take back.)
func TestWALFsyncFailureStopsWrites(t *testing.T) {
	ctx := context.Background()
	var logged bytes.Buffer
	path := filepath.Join(t.TempDir(), "f.db")
	db, err := Open(ctx, Config{URL: path, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, "CREATE TABLE t (k TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	insert := func(k string) func(tx *Tx) error {
		return func(tx *Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO t (k) VALUES (?)", k)
			return err
		}
	}
	p, err := db.TxPipelined(ctx, insert("A"))
	if err != nil {
		t.Fatal(err)
	}
	// The fsync that was to make A durable fails (EIO from writeback).
	eio := errors.New("EIO")
	if err := db.wal.wait(p.seq, func() error { return eio }); !errors.Is(err, eio) {
		t.Fatalf("wait = %v, want %v", err, eio)
	}

	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refuses writes until the node is restarted") {
			t.Errorf("%s after a failed WAL fsync: %v, want ErrUnavailable saying the database refuses writes", what, err)
		}
	}
	retries := db.TxRetries()
	refused("Tx (FULL)", db.Tx(ctx, insert("B")))
	if db.TxRetries() != retries {
		t.Error("a refused transaction was retried")
	}
	_, err = db.TxPipelined(ctx, insert("C"))
	refused("TxPipelined", err)
	_, err = db.Exec(ctx, "INSERT INTO t (k) VALUES ('D')")
	refused("Exec", err)
	b := db.NewBatcher(0)
	refused("Batcher.Do", b.Do(ctx, insert("E")))
	b.Close()
	refused("Pending.Wait", p.Wait())
	refused("Ping (readiness)", db.Ping(ctx))
	var k string
	if err := db.QueryRow(ctx, "INSERT INTO t (k) VALUES ('F') RETURNING k").Scan(&k); err == nil {
		t.Error("QueryRow wrote after a failed WAL fsync")
	}

	// Reads go on: A was committed (not durable), nothing after it was.
	var keys []string
	err = db.Read(ctx, func(q Querier) error {
		rows, err := q.Query(ctx, "SELECT k FROM t ORDER BY k")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("Read after a failed WAL fsync: %v", err)
	}
	if strings.Join(keys, ",") != "A" {
		t.Errorf("rows %v, want [A]", keys)
	}
	var n int
	if err := db.ReadRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Errorf("ReadRow after a failed WAL fsync: %v", err)
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Errorf("QueryRow read after a failed WAL fsync: %v", err)
	}

	// Told once, at ERROR, to restart.
	db.fail(errors.New("a second failure"))
	if got := strings.Count(logged.String(), "level=ERROR"); got != 1 {
		t.Errorf("%d ERROR records, want 1:\n%s", got, logged.String())
	}
	if !strings.Contains(logged.String(), "restart the node") || !strings.Contains(logged.String(), "EIO") {
		t.Errorf("the log does not tell the operator what failed and to restart:\n%s", logged.String())
	}
}

// TestWALDescriptor: syncWAL keeps one descriptor of the -wal file, opened
// with the DB, and opens the new file when the path names another one (as
// after SQLite deleted the WAL with its last connection and a new
// connection created it again).
func TestWALDescriptor(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.db")
	db, err := Open(ctx, Config{URL: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	first := db.walFile
	if first == nil {
		t.Fatal("no descriptor of the -wal file after Open")
	}
	for range 3 {
		p, err := db.TxPipelined(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS t (v INTEGER)")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if db.walFile != first {
		t.Error("syncWAL opened the -wal file again while it was the same file")
	}

	// Another file at the path: a stand-in, since the pools keep their
	// connections and SQLite keeps the WAL while one is open.
	other := filepath.Join(t.TempDir(), "other.db")
	if err := os.WriteFile(other+"-wal", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	kept := db.path
	db.path = other
	defer func() { db.path = kept }()
	if err := db.syncWAL(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(other + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if db.walFile == first || !os.SameFile(fi, db.walInfo) {
		t.Error("syncWAL kept the descriptor of a file the path no longer names")
	}
	if _, err := first.Stat(); err == nil {
		t.Error("the replaced descriptor was not closed")
	}
	// No file at the path: that round fails alone (errNoFsync).
	if err := os.Remove(other + "-wal"); err != nil {
		t.Fatal(err)
	}
	if err := db.syncWAL(); !errors.Is(err, errNoFsync) {
		t.Errorf("syncWAL without a -wal file = %v, want errNoFsync", err)
	}
}
