package store_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestConnectionLostPostgres ends the server sessions of the pool's
// connections, as a PostgreSQL restart or a network cut does, at each
// point of a transaction: a transaction that had not sent COMMIT runs again
// on a new connection and applies once; one whose COMMIT was sent is not
// run again and says ErrUnavailable; reads and batches carry on.
func TestConnectionLostPostgres(t *testing.T) {
	db := storetest.Postgres(t, beta)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A read transaction, which runs again on a lost connection.
	counter := func() int {
		t.Helper()
		var v int
		if err := db.Read(ctx, func(q store.Querier) error {
			return q.QueryRow(ctx, "SELECT v FROM beta_counter WHERE id = 1").Scan(&v)
		}); err != nil {
			t.Fatalf("read the counter: %v", err)
		}
		return v
	}
	increment := func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE beta_counter SET v = v + 1 WHERE id = 1")
		return err
	}
	// Fill the pool with several idle connections.
	warm := func() {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if err := db.Read(ctx, func(q store.Querier) error {
					_, err := q.Exec(ctx, "SELECT pg_sleep(0.05)")
					return err
				}); err != nil {
					t.Errorf("warm-up read: %v", err)
				}
			})
		}
		wg.Wait()
		if err := db.Tx(ctx, increment); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}

	t.Run("idle connections", func(t *testing.T) {
		warm()
		before, retries := counter(), db.TxRetries()
		if n := storetest.TerminateSessions(t, db); n < 2 {
			t.Fatalf("ended %d sessions, want the pool's (>= 2)", n)
		}
		if err := db.Tx(ctx, increment); err != nil {
			t.Fatalf("Tx after the sessions ended: %v", err)
		}
		if got := counter(); got != before+1 {
			t.Errorf("counter = %d, want %d (applied once)", got, before+1)
		}
		if db.TxRetries() == retries {
			t.Error("TxRetries unchanged: the transaction did not meet a dead connection (the test proves nothing)")
		}
		warm()
		storetest.TerminateSessions(t, db)
		if got := counter(); got != before+2 { // Read after the sessions ended
			t.Errorf("counter = %d, want %d", got, before+2)
		}
		// A single statement on the reader pool (ReadRow) runs again too.
		warm()
		retries = db.TxRetries()
		storetest.TerminateSessions(t, db)
		var v int
		if err := db.ReadRow(ctx, "SELECT v FROM beta_counter WHERE id = ?", 1).Scan(&v); err != nil || v != before+3 {
			t.Errorf("ReadRow after the sessions ended: %d, %v; want %d", v, err, before+3)
		}
		if db.TxRetries() == retries {
			t.Error("TxRetries unchanged: ReadRow did not meet a dead connection (the test proves nothing)")
		}
		if err := db.ReadRow(ctx, "SELECT v FROM beta_counter WHERE id = ?", -1).Scan(&v); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("ReadRow of no row: %v, want sql.ErrNoRows", err)
		}
	})

	t.Run("lost inside the transaction", func(t *testing.T) {
		before := counter()
		attempts := 0
		err := db.Tx(ctx, func(tx *store.Tx) error {
			attempts++
			if err := increment(tx); err != nil {
				return err
			}
			if attempts == 1 {
				storetest.TerminateSessions(t, db) // this transaction's own session too
			}
			_, err := tx.Exec(ctx, "UPDATE beta_counter SET v = v + 10 WHERE id = 1")
			return err
		})
		if err != nil {
			t.Fatalf("Tx: %v", err)
		}
		if attempts != 2 {
			t.Errorf("attempts = %d, want 2", attempts)
		}
		if got := counter(); got != before+11 {
			t.Errorf("counter = %d, want %d (the lost attempt rolled back, the second applied)", got, before+11)
		}
	})

	t.Run("lost after COMMIT was sent", func(t *testing.T) {
		before := counter()
		attempts := 0
		err := db.Tx(ctx, func(tx *store.Tx) error {
			attempts++
			tx.BeforeCommit(func(context.Context) error {
				storetest.TerminateSessions(t, db)
				return nil
			})
			return increment(tx)
		})
		if !errors.Is(err, store.ErrUnavailable) || !store.IsUnavailable(err) || !strings.Contains(err.Error(), "outcome unknown") {
			t.Fatalf("Tx error = %v, want ErrUnavailable with the commit outcome unknown", err)
		}
		if attempts != 1 {
			t.Errorf("attempts = %d, want 1 (a COMMIT that may have applied is never sent twice)", attempts)
		}
		// Here the server ended the session before it read the COMMIT.
		if got := counter(); got != before {
			t.Errorf("counter = %d, want %d", got, before)
		}
	})

	t.Run("batcher", func(t *testing.T) {
		warm()
		b := db.NewBatcher(0)
		defer b.Close()
		if err := b.Do(ctx, increment); err != nil {
			t.Fatal(err)
		}
		before := counter()
		storetest.TerminateSessions(t, db)
		errs := make(chan error, 8)
		for range 8 {
			go func() { errs <- b.Do(ctx, increment) }()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Errorf("Do after the sessions ended: %v", err)
			}
		}
		if got := counter(); got != before+8 {
			t.Errorf("counter = %d, want %d", got, before+8)
		}
		// A function that loses the connection is not blamed for it: the
		// batch runs again with it.
		before = counter()
		var once sync.Once
		if err := b.Do(ctx, func(tx *store.Tx) error {
			once.Do(func() { storetest.TerminateSessions(t, db) })
			return increment(tx)
		}); err != nil {
			t.Errorf("Do whose connection was lost: %v", err)
		}
		if got := counter(); got != before+1 {
			t.Errorf("counter = %d, want %d", got, before+1)
		}
	})
}

// TestUnavailableErrors checks IsUnavailable on real errors: a PostgreSQL
// server that cannot be reached (nothing listens on port 1) is unavailable;
// a refused row, a missing row and a caller's cancellation are not.
func TestUnavailableErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := store.Open(ctx, store.Config{URL: "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5"})
	if err == nil || !store.IsUnavailable(err) {
		t.Errorf("Open of a closed port: IsUnavailable(%v) = false", err)
	}
	for _, err := range []error{nil, sql.ErrNoRows, context.Canceled, errors.New("boom")} {
		if store.IsUnavailable(err) {
			t.Errorf("IsUnavailable(%v) = true", err)
		}
	}
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		_, err := db.Exec(ctx, "INSERT INTO alpha_items (name) VALUES (?)", "seed")
		if err == nil || store.IsUnavailable(err) {
			t.Errorf("unique violation: IsUnavailable(%v) = true", err)
		}
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		err = db.Tx(cctx, func(tx *store.Tx) error {
			_, err := tx.Exec(cctx, "SELECT 1")
			return err
		})
		if err == nil || store.IsUnavailable(err) {
			t.Errorf("cancelled context: IsUnavailable(%v) = true", err)
		}
	}, alpha)
}

// TestDiskFullSQLite fills the database (max_page_count, which SQLite
// answers with SQLITE_FULL as it does a full disk): the write fails at
// once with an unavailable error, is not retried, leaves nothing behind,
// and writes work again once there is room.
func TestDiskFullSQLite(t *testing.T) {
	db := storetest.SQLite(t, alpha)
	ctx := context.Background()
	var pages int
	if err := db.QueryRow(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// PRAGMA max_page_count is per connection; the writer pool has one.
	if _, err := db.Exec(ctx, "PRAGMA max_page_count = "+strconv.Itoa(pages)); err != nil {
		t.Fatal(err)
	}
	retries := db.TxRetries()
	big := strings.Repeat("x", 64<<10)
	insert := func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO alpha_items (name, note) VALUES (?, ?)", "big", big)
		return err
	}
	err := db.Tx(ctx, insert)
	if !store.IsUnavailable(err) {
		t.Fatalf("insert into a full database: IsUnavailable(%v) = false", err)
	}
	if db.TxRetries() != retries {
		t.Error("a full database was retried")
	}
	if _, err := db.Exec(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM alpha_items WHERE name = 'big'"); n != 0 {
		t.Errorf("%d rows of the failed insert", n)
	}
	if err := db.Tx(ctx, insert); err != nil {
		t.Fatalf("insert once there is room: %v", err)
	}
}
