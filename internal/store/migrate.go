package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// Migrations is one service's migration set. FS must contain the directories
// "sqlite" and "postgres", each holding goose SQL migrations (00001_init.sql,
// ...). The service's applied versions are kept in the table goose_<Service>,
// so services migrate independently of one another.
type Migrations struct {
	Service string
	FS      fs.FS
}

// EmbeddedMigrations returns the migration set of service kept in the
// directory dir of an embedded file system (with its sqlite/ and postgres/
// subdirectories). It panics if dir is missing: that is a build mistake,
// caught by any test that migrates.
func EmbeddedMigrations(service string, f fs.FS, dir string) Migrations {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(fmt.Sprintf("store: migrations of %s: %v", service, err))
	}
	return Migrations{Service: service, FS: sub}
}

// serviceName keeps goose_<service> a plain SQL identifier.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// migrateLockID is the PostgreSQL advisory lock key that serialises Migrate
// across processes ("govtrust" in ASCII).
const migrateLockID int64 = 0x676f767472757374

// Migrate applies every pending migration of each set, in order. Applied
// migrations are never run again, so calling Migrate at every start is the
// intended use. Each migration runs in its own transaction together with its
// version record (unless it says -- +goose NO TRANSACTION).
//
// Concurrent Migrate calls are serialised: on PostgreSQL with a transaction-level
// advisory lock, on SQLite with an exclusive lock on the file <db>.migrate-lock,
// so two processes starting together never apply a migration twice.
func (db *DB) Migrate(ctx context.Context, sets ...Migrations) error {
	for _, s := range sets {
		if !serviceName.MatchString(s.Service) {
			return fmt.Errorf("store: migrations: invalid service name %q (want lowercase letters, digits, '_')", s.Service)
		}
		if s.FS == nil {
			return fmt.Errorf("store: migrations for %s: nil FS", s.Service)
		}
	}
	db.migrateMu.Lock()
	defer db.migrateMu.Unlock()

	unlock, err := db.lockMigrations(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	for _, s := range sets {
		if err := db.migrateOne(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) migrateOne(ctx context.Context, s Migrations) error {
	dir, dialect := "sqlite", database.DialectSQLite3 // goose calls SQLite "sqlite3"
	if db.driver == Postgres {
		dir, dialect = "postgres", database.DialectPostgres
	}
	sub, err := fs.Sub(s.FS, dir)
	if err != nil {
		return fmt.Errorf("store: migrations for %s: %w", s.Service, err)
	}
	versions, err := database.NewStore(dialect, "goose_"+s.Service)
	if err != nil {
		return fmt.Errorf("store: migrations for %s: %w", s.Service, err)
	}
	p, err := goose.NewProvider(goose.DialectCustom, db.writer, sub,
		goose.WithStore(versions),
		// Only this set's SQL files: Go migrations registered globally by some
		// other package must not leak into every service.
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("store: migrations for %s (%s/): %w", s.Service, dir, err)
	}
	// p.Close is not called: it would close db.writer.
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", s.Service, err)
	}
	if db.logger != nil {
		for _, r := range results {
			db.logger.LogAttrs(ctx, slog.LevelInfo, "migration applied",
				slog.String("service", s.Service),
				slog.Int64("version", r.Source.Version),
				slog.String("file", r.Source.Path),
				slog.Duration("duration", r.Duration))
		}
	}
	return nil
}

// lockMigrations takes the cross-process migration lock and returns its
// release function.
func (db *DB) lockMigrations(ctx context.Context) (func(), error) {
	if db.driver == SQLite {
		return lockFile(ctx, db.path+".migrate-lock")
	}
	// A transaction-level lock is released by the server when the transaction
	// ends or the session dies, so a crashed process cannot leave it held and
	// a failed unlock cannot leak it into a pooled connection.
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: migration lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockID); err != nil {
		return nil, errors.Join(fmt.Errorf("store: migration lock: %w", err), rollback(tx))
	}
	return func() { _ = tx.Rollback() }, nil
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("store: rollback: %w", err)
	}
	return nil
}
