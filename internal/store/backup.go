package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/govtrust/govtrust/internal/fsx"
)

// ErrBackupUnsupported is Backup's answer on PostgreSQL, whose backups are
// the server's own tools' work (pg_basebackup for a physical copy with
// point-in-time recovery, pg_dump for a logical one).
var ErrBackupUnsupported = errors.New("store: PostgreSQL is backed up with pg_basebackup or pg_dump, not by govtrust")

// Backup writes a consistent copy of a SQLite database to path, which must
// not exist, while the database stays in use: VACUUM INTO reads one
// snapshot (a read transaction, which in WAL mode blocks no writer) and
// writes a compacted database of it. The copy is synced to disk before
// Backup returns, and checked with PRAGMA integrity_check.
func (db *DB) Backup(ctx context.Context, path string) error {
	if db.driver != SQLite {
		return ErrBackupUnsupported
	}
	// Owner-only, as the database is: SQLite would create the file with
	// 0644 less umask, and VACUUM INTO accepts an empty file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	// A connection of its own: the readers are query_only, which VACUUM
	// INTO counts as writing, and the writer is the store's one connection
	// for commits, which a long copy must not hold.
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(5000)")
	conn, err := openCachedSQLite(db.path + "?" + v.Encode())
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("store: backup: %w", err)
	}
	defer conn.Close()
	// VACUUM INTO takes the file name as an SQL value; a bound parameter
	// keeps quotes in the path from mattering.
	if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := fsx.SyncPath(path); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := fsx.SyncPath(filepath.Dir(path)); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	return CheckSQLiteFile(ctx, path)
}

// OpenSnapshot opens a SQLite file that nothing writes, such as a backup,
// for reading only: SQLite is told the file is immutable, so it takes no
// locks and writes nothing, not even a -wal or -shm file, and the file's
// bytes (and its SM3) stay as they were. Writes through the DB fail.
func OpenSnapshot(ctx context.Context, path string) (*DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	v := url.Values{}
	v.Set("mode", "ro")
	v.Set("immutable", "1")
	v.Set("_time_format", "sqlite")
	pool, err := openCachedSQLite("file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &DB{driver: SQLite, writer: pool, reader: pool, path: path, synchronous: DefaultSynchronous}, nil
}

// CheckSQLiteFile runs PRAGMA integrity_check on the SQLite file at path,
// opened with OpenSnapshot: the check of a backup before it is trusted.
func CheckSQLiteFile(ctx context.Context, path string) error {
	db, err := OpenSnapshot(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.reader.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("store: integrity_check %s: %w", path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("store: integrity_check %s: %w", path, err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: integrity_check %s: %w", path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("store: integrity_check %s: %s", path, strings.Join(problems, "; "))
	}
	return nil
}
