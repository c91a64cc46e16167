package store_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestBatcher runs concurrent writers through one batcher: every write that
// Do acknowledged is committed, a failing function is rolled back alone
// (its own error, the others' rows kept), and transactions are shared.
func TestBatcher(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		b := db.NewBatcher(0)
		defer b.Close()
		const writers, each = 8, 40
		errBoom := errors.New("boom")
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]error{}
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					name := fmt.Sprintf("b%d-%d", w, i)
					err := b.Do(ctx, func(tx *store.Tx) error {
						if _, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", name); err != nil {
							return err
						}
						switch {
						case i%10 == 3:
							return errBoom // after its insert: must be undone
						case i%10 == 7:
							// A unique violation inside the batch: on
							// PostgreSQL it aborts the transaction unless
							// rolled back to the savepoint.
							_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES ('seed')")
							return err
						}
						return nil
					})
					mu.Lock()
					got[name] = err
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		want := 0
		for name, err := range got {
			var i int
			fmt.Sscanf(name[len(name)-1:], "%d", &i)
			switch i {
			case 3:
				if !errors.Is(err, errBoom) {
					t.Errorf("%s: err = %v, want boom", name, err)
				}
			case 7:
				if !store.IsUniqueViolation(err) {
					t.Errorf("%s: err = %v, want a unique violation", name, err)
				}
			default:
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				want++
			}
			n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name = ?", name)
			if (err == nil) != (n == 1) {
				t.Errorf("%s: err = %v but %d rows", name, err, n)
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name LIKE 'b%'"); n != want {
			t.Errorf("rows = %d, want %d", n, want)
		}
		batches, items := b.Stats()
		if items != writers*each {
			t.Errorf("items = %d, want %d", items, writers*each)
		}
		if batches >= items {
			t.Errorf("%d transactions for %d concurrent writes: nothing was batched", batches, items)
		}
		t.Logf("%d writes in %d transactions", items, batches)
	}, alpha)
}

func TestBatcherContextAndClose(t *testing.T) {
	db := storetest.SQLite(t, alpha)
	b := db.NewBatcher(4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := b.Do(ctx, func(tx *store.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Do with a cancelled context = %v, want context.Canceled", err)
	}
	if ran {
		t.Error("fn ran although its context had ended")
	}
	if err := b.Do(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Exec(context.Background(), "INSERT INTO alpha_items (name) VALUES ('lone')")
		return err
	}); err != nil {
		t.Fatalf("lone Do: %v", err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name = 'lone'"); n != 1 {
		t.Errorf("lone row count = %d", n)
	}
	b.Close()
	if err := b.Do(context.Background(), func(tx *store.Tx) error { return nil }); !errors.Is(err, store.ErrBatcherClosed) {
		t.Errorf("Do after Close = %v, want ErrBatcherClosed", err)
	}
}

// TestBatcherOneP checks that batches form with a single P: the first
// caller's send wakes the batcher before the other runnable callers have
// reached Do, so without the batcher's yield every batch held one function.
func TestBatcherOneP(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		b := db.NewBatcher(0)
		defer b.Close()
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		const writers, each = 16, 10
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				<-start
				for i := range each {
					errs <- b.Do(ctx, func(tx *store.Tx) error {
						_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", fmt.Sprintf("p%d-%d", w, i))
						return err
					})
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name LIKE 'p%'"); n != writers*each {
			t.Fatalf("rows = %d, want %d", n, writers*each)
		}
		batches, items := b.Stats()
		if items != writers*each {
			t.Fatalf("items = %d, want %d", items, writers*each)
		}
		// With the yield the 16 callers share one batch per round: 10 or
		// 11 transactions in 60 runs (race detector or not, SQLite and
		// PostgreSQL). Without it: 160 transactions, and 16 to 26 under
		// the race detector, which shuffles the run queue.
		if items < 12*batches {
			t.Errorf("%d writes in %d transactions with one P: %.1f per transaction, want at least 12", items, batches, float64(items)/float64(batches))
		}
		t.Logf("%d writes in %d transactions with one P", items, batches)
	}, alpha)
}

// TestBatcherBeforeCommit: the functions of a batch share its Tx's hooks,
// which run once after the last function; a hook's error fails the whole
// batch, every caller getting it and no write kept.
func TestBatcherBeforeCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		b := db.NewBatcher(0)
		defer b.Close()
		type key struct{}
		type shared struct{ names []string }
		run := func(prefix string, fail error) []error {
			release := make(chan struct{})
			errs := make([]error, 4)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Go(func() {
					<-release
					name := fmt.Sprintf("%s-%d", prefix, i)
					errs[i] = b.Do(ctx, func(tx *store.Tx) error {
						q, ok := tx.Value(key{}).(*shared)
						if !ok {
							q = &shared{}
							tx.SetValue(key{}, q)
							tx.BeforeCommit(func(ctx context.Context) error {
								for _, n := range q.names {
									if _, err := tx.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", n); err != nil {
										return err
									}
								}
								return fail
							})
						}
						q.names = append(q.names, name)
						return nil
					})
				})
			}
			close(release)
			wg.Wait()
			return errs
		}
		for i, err := range run("kept", nil) {
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name LIKE 'kept-%'"); n != 4 {
			t.Errorf("%d rows written by the hooks, want 4", n)
		}
		boom := errors.New("boom")
		for i, err := range run("lost", boom) {
			if !errors.Is(err, boom) {
				t.Errorf("caller %d: %v, want the hook's error", i, err)
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name LIKE 'lost-%'"); n != 0 {
			t.Errorf("%d rows kept from batches whose hook failed, want 0", n)
		}
	}, alpha)
}
