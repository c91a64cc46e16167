package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Querier runs SQL written with '?' placeholders; on PostgreSQL they are
// rebound to $1..$n. *Tx and *DB implement it.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
	Driver() Driver
}

var (
	_ Querier = (*Tx)(nil)
	_ Querier = (*DB)(nil)
)

// Tx is one database transaction, handed to the callbacks of DB.Tx and DB.Read.
// It is valid only during the callback and the hooks it registers
// (BeforeCommit).
type Tx struct {
	tx     *sql.Tx
	driver Driver
	// beforeCommit runs, in order, after the callback returned nil and
	// before COMMIT (BeforeCommit).
	beforeCommit []func(ctx context.Context) error
	values       map[any]any
}

// BeforeCommit registers fn to run in the transaction once the callback
// has returned nil, just before COMMIT, after the functions registered
// before it. An error from fn rolls the transaction back and is returned
// as the callback's would be (a retryable one runs the whole transaction
// again, with a new Tx). It lets a package that writes the same row many
// times in one transaction (the audit chain's head) write it once.
func (t *Tx) BeforeCommit(fn func(ctx context.Context) error) {
	t.beforeCommit = append(t.beforeCommit, fn)
}

// Value returns what SetValue stored under key in this transaction, or
// nil. Keys are compared like context keys: use an unexported type.
func (t *Tx) Value(key any) any { return t.values[key] }

// SetValue keeps v under key for the rest of this transaction (one
// attempt: a retried transaction starts with none). It is state a package
// derives from what it read or wrote in the transaction, valid as long as
// the transaction is.
func (t *Tx) SetValue(key, v any) {
	if t.values == nil {
		t.values = make(map[any]any)
	}
	t.values[key] = v
}

// Driver reports the backend, for the rare statement that must differ.
func (t *Tx) Driver() Driver { return t.driver }

// Exec runs a statement in the transaction.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.bind(query), args...)
}

// Query runs a query in the transaction.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.bind(query), args...)
}

// QueryRow runs a query expected to return at most one row.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.bind(query), args...)
}

func (t *Tx) bind(query string) string {
	if t.driver == Postgres {
		return rebind(query)
	}
	return query
}

func (db *DB) bind(query string) string {
	if db.driver == Postgres {
		return rebind(query)
	}
	return query
}

// Exec runs one statement on the writer outside a transaction (it commits on
// its own). On SQLite do not call it from inside a Tx callback. Like Tx it
// refuses to run, and SQLITE_IOERR makes the DB refuse writes, once a
// write has failed to reach the disk.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := db.writeFailure(); err != nil {
		return nil, err
	}
	res, err := db.writer.ExecContext(ctx, db.bind(query), args...)
	if err != nil && db.driver == SQLite && isIOErr(err) {
		db.fail(err)
		return nil, &errCommitUnknown{why: "the write failed", err: db.writeFailure()}
	}
	if err == nil {
		if ferr := db.writeFailure(); ferr != nil {
			return nil, &errCommitUnknown{why: "the database stopped taking writes as it ran", err: ferr}
		}
	}
	return res, err
}

// Query runs one query on the writer outside a transaction, so it sees
// everything committed so far. Close the rows promptly: on SQLite they hold
// the only writer connection. On a DB that refuses writes (see Tx) it runs
// on the reader pool, whose SQLite connections are query_only.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.pool().QueryContext(ctx, db.bind(query), args...)
}

// QueryRow runs one statement that returns at most one row on the writer
// (INSERT ... RETURNING works), outside a transaction. On a DB that
// refuses writes (see Tx) it runs on the reader pool, where a read works
// and a write fails.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.pool().QueryRowContext(ctx, db.bind(query), args...)
}

// pool is the writer, or the reader once the DB refuses writes.
func (db *DB) pool() *sql.DB {
	if db.failed.Load() != nil {
		return db.reader
	}
	return db.writer
}

// ReadRow runs one read-only statement that returns at most one row on the
// reader pool, outside a transaction: it sees everything committed before
// it starts and, unlike QueryRow, never waits for the writer (on SQLite the
// only writer connection, which a transaction holds through its commit and
// fsync). The statement runs when Scan is called, and runs again as Read
// does on a lost connection or a busy database: it only reads.
func (db *DB) ReadRow(ctx context.Context, query string, args ...any) *Row {
	return &Row{db: db, ctx: ctx, query: db.bind(query), args: args}
}

// Row is ReadRow's result.
type Row struct {
	db    *DB
	ctx   context.Context
	query string
	args  []any
}

// Scan runs the statement and copies the row's columns into dest, like
// sql.Row.Scan: sql.ErrNoRows when there is no row.
func (r *Row) Scan(dest ...any) error {
	return r.db.retry(r.ctx, "read", func() error {
		return r.db.reader.QueryRowContext(r.ctx, r.query, r.args...).Scan(dest...)
	})
}

// Retry policy for Tx and Read: bounded attempts with exponential, jittered
// back-off, so that contending writers spread out instead of colliding again.
const (
	maxAttempts = 10
	baseBackoff = 5 * time.Millisecond
	maxBackoff  = 500 * time.Millisecond
)

// Tx runs fn in a read-write transaction and commits it. When fn, BEGIN or
// COMMIT fails with a retryable error (IsRetryable: SQLite BUSY/LOCKED,
// PostgreSQL 40001/40P01), or the PostgreSQL connection is lost or cannot be
// made before COMMIT is sent (the server rolls such a transaction back), the
// whole fn runs again, on another connection, up to 10 attempts with
// jittered back-off (about 1.2 s in all), stopping early when ctx is done.
// fn must therefore not keep state across attempts. A connection lost at
// COMMIT is not retried, even when the driver says nothing was sent: the
// transaction may have committed, and the error is ErrUnavailable ("commit
// outcome unknown"). Any other error from fn rolls the transaction back and
// is returned as is; IsUnavailable tells the errors of a database that
// cannot serve now.
//
// On SQLite, once a write of the file has failed to reach the disk (an
// fsync of the WAL in Pending.Wait failed, or a COMMIT failed with
// SQLITE_IOERR), Tx, TxPipelined, Exec and every Batcher refuse to write,
// for good, with an ErrUnavailable that says so, and Ping fails: no later
// commit could be known to be durable (see DB.fail). Reads go on. The
// node must be restarted.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	return db.retry(ctx, "transaction", func() error {
		return db.runTx(ctx, db.writer, nil, fn)
	})
}

// Read runs fn in a read-only transaction on the reader pool (SQLite's
// query_only connections; on PostgreSQL a READ ONLY transaction). It sees a
// consistent snapshot of committed data and is retried like Tx.
func (db *DB) Read(ctx context.Context, fn func(q Querier) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.driver == Postgres {
		// READ COMMITTED would give each statement a fresh snapshot; a read
		// of several statements (a chain and its head) must see one state.
		opts.Isolation = sql.LevelRepeatableRead
	}
	return db.retry(ctx, "read transaction", func() error {
		return db.runTx(ctx, db.reader, opts, func(tx *Tx) error { return fn(tx) })
	})
}

func (db *DB) retry(ctx context.Context, what string, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !rerunnable(err) {
			return err
		}
		if n == maxAttempts {
			return fmt.Errorf("store: %s still failing after %d attempts: %w", what, n, err)
		}
		db.retries.Add(1)
		// Full jitter over an exponentially growing window.
		window := min(baseBackoff<<(n-1), maxBackoff)
		t := time.NewTimer(window/2 + rand.N(window/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store: %s abandoned after %d attempts: %w", what, n, errors.Join(ctx.Err(), err))
		case <-t.C:
		}
	}
}

// beginner is *sql.DB (Tx, Read) or *sql.Conn (TxPipelined).
type beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func (db *DB) runTx(ctx context.Context, pool beginner, opts *sql.TxOptions, fn func(tx *Tx) error) (err error) {
	write := opts == nil || !opts.ReadOnly
	if write {
		if err := db.writeFailure(); err != nil {
			return err
		}
	}
	stx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			// fn panicked: roll back and let the panic continue.
			_ = stx.Rollback()
		}
	}()
	tx := &Tx{tx: stx, driver: db.driver}
	err = fn(tx)
	// A hook may register another; it runs too.
	for i := 0; err == nil && i < len(tx.beforeCommit); i++ {
		err = tx.beforeCommit[i](ctx)
	}
	if err != nil {
		done = true
		if rerr := stx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("store: rollback: %w", rerr))
		}
		return err
	}
	done = true
	if err := stx.Commit(); err != nil {
		if !write {
			return fmt.Errorf("store: commit: %w", err)
		}
		switch {
		case db.driver == SQLite && isIOErr(err):
			// SQLite may have written the frames it could not sync:
			// recovery would take them (see DB.fail).
			db.fail(err)
			return &errCommitUnknown{why: "the write failed", err: db.writeFailure()}
		case connectionLost(err):
			// A lost connection at COMMIT leaves the outcome unknown,
			// whatever the driver says: pgx reports a connection that
			// broke while it waited for the COMMIT's answer as "conn
			// closed", an error it calls safe to retry, though the server
			// may have committed (TestCommitAnswerLostPostgres).
			return &errCommitUnknown{why: "the connection was lost", err: err}
		case db.driver == Postgres:
			if _, answered := pgCode(err); !answered {
				// No answer from the server (no SQLSTATE): the COMMIT may
				// have been sent and applied while pgx gave up, as it does
				// when ctx ends (TestCommitContextEndsPostgres). Only a
				// read-only transaction, which changes nothing, may run
				// again after such an error.
				return &errCommitUnknown{why: "no answer from the server", err: err}
			}
		}
		return fmt.Errorf("store: commit: %w", err)
	}
	if write {
		if ferr := db.writeFailure(); ferr != nil {
			// Committed while another write failed: it follows frames that
			// may be lost, and cannot be acknowledged.
			return &errCommitUnknown{why: "the database stopped taking writes as it committed", err: ferr}
		}
	}
	return nil
}
