package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Driver names a database backend.
type Driver string

// The supported backends.
const (
	SQLite   Driver = "sqlite"
	Postgres Driver = "postgres"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultSynchronous = "FULL"
	DefaultBusyTimeout = 5 * time.Second
	DefaultReaders     = 4
	DefaultMaxConns    = 16
)

// Config says which database to open and how.
type Config struct {
	// URL selects the backend: "postgres://..." or "postgresql://..." opens
	// PostgreSQL; anything else is a SQLite file path (an optional "sqlite:"
	// prefix is stripped).
	URL string
	// Password is the PostgreSQL password, resolved by the caller from a
	// secret reference; optional. It is never logged and never appears in
	// errors.
	Password string
	// Synchronous is SQLite's PRAGMA synchronous: "FULL" (default when
	// empty), "EXTRA", "NORMAL" or "OFF".
	Synchronous string
	// BusyTimeout is SQLite's busy_timeout; default 5s.
	BusyTimeout time.Duration
	// Readers is the number of SQLite reader connections; default 4.
	Readers int
	// MaxConns is the PostgreSQL pool size; default 16, at least 2 (Migrate
	// holds one connection for its lock while goose uses another).
	MaxConns int
	// Logger receives one event per applied migration, and an ERROR when
	// the DB stops taking writes (DB.Tx); nil means no logging.
	Logger *slog.Logger
}

// DB is an open database: a writer pool and a reader pool (the same pool on
// PostgreSQL). It is safe for concurrent use.
type DB struct {
	driver Driver
	writer *sql.DB
	reader *sql.DB
	path   string // SQLite file; empty on PostgreSQL
	logger *slog.Logger

	// synchronous is SQLite's configured PRAGMA synchronous (a key of
	// sqliteSynchronous); wal is TxPipelined's group sync of the WAL.
	synchronous string
	wal         walSync
	// walMu guards walFile, TxPipelined's descriptor of the -wal file
	// (syncWAL), and walInfo, what it was when opened.
	walMu   sync.Mutex
	walFile *os.File
	walInfo os.FileInfo

	// failed is set, for good, when a write of the SQLite file did not
	// reach the disk (fail); every write is then refused.
	failed atomic.Pointer[errWriteFailed]

	migrateMu sync.Mutex
	retries   atomic.Uint64
}

// Open opens the database cfg names and checks that it answers. It does not
// migrate; call Migrate with each service's migration set.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.URL == "" {
		return nil, errors.New("store: empty database url")
	}
	var (
		db  *DB
		err error
	)
	if IsPostgresURL(cfg.URL) {
		db, err = openPostgres(ctx, cfg)
	} else {
		db, err = openSQLite(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	db.logger = cfg.Logger
	return db, nil
}

// IsPostgresURL reports whether u names a PostgreSQL database (Open's
// choice of backend); anything else is a SQLite path.
func IsPostgresURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// Driver reports the backend.
func (db *DB) Driver() Driver { return db.driver }

// Writer returns the underlying *sql.DB used for writes. Tests and tools use
// it to inspect or tamper with the database; services use Tx.
func (db *DB) Writer() *sql.DB { return db.writer }

// TxRetries reports how many times Tx and Read have retried a transaction
// after a retryable error since Open; exported for metrics.
func (db *DB) TxRetries() uint64 { return db.retries.Load() }

// Close closes both pools.
func (db *DB) Close() error {
	err := db.writer.Close()
	if db.reader != db.writer {
		err = errors.Join(err, db.reader.Close())
	}
	db.walMu.Lock()
	if db.walFile != nil {
		err = errors.Join(err, db.walFile.Close())
		db.walFile = nil
	}
	db.walMu.Unlock()
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping checks that the writer and reader pools reach the database, and
// that the DB still takes writes (see DB.Tx): the node's /readyz asks it.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.writeFailure(); err != nil {
		return err
	}
	if err := db.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping %s writer: %w", db.driver, err)
	}
	if db.reader != db.writer {
		if err := db.reader.PingContext(ctx); err != nil {
			return fmt.Errorf("store: ping %s reader: %w", db.driver, err)
		}
	}
	return nil
}

// fail makes the DB refuse every write from now on, after a write of its
// SQLite file failed to reach the disk: an fsync of the WAL that failed
// (Pending.Wait), or SQLITE_IOERR at a commit. It logs that once.
//
// Continuing would lose acknowledged commits. The kernel may have dropped
// the pages it could not write, and a later fsync does not report them
// again (PostgreSQL's "fsyncgate"; PostgreSQL PANICs since, see
// data_sync_retry). SQLite chains the checksums of the WAL's frames, so
// crash recovery stops at the first frame that did not reach the disk and
// discards every commit after it, those at FULL whose own fsync succeeded
// included. A SQLite commit that failed with IOERR may also come back: its
// frames can be in the file, and recovery takes every frame whose
// checksum holds. Only a restart, whose recovery reads what the disk
// holds, says which commits are durable.
func (db *DB) fail(cause error) {
	e := &errWriteFailed{path: db.path, cause: cause}
	if !db.failed.CompareAndSwap(nil, e) {
		return
	}
	if db.logger != nil {
		db.logger.LogAttrs(context.Background(), slog.LevelError,
			"store: a write did not reach the disk; the database refuses writes until the node is restarted",
			slog.String("path", db.path), slog.String("error", cause.Error()),
			slog.String("action", "check the disk and the kernel log, then restart the node, "+
				"best by restarting the host: SQLite's recovery then decides which commits are durable, "+
				"and Linux may keep pages it failed to write in its cache as if they were written"))
	}
}

// writeFailure returns the error of a DB that refuses writes (fail), or
// nil.
func (db *DB) writeFailure() error {
	if e := db.failed.Load(); e != nil {
		return e
	}
	return nil
}
