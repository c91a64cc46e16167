package store

import (
	"errors"
	"fmt"
	"runtime"
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
