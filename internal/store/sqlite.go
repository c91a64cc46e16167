package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// sqliteSynchronous maps the accepted PRAGMA synchronous names to their
// numeric values, which is what PRAGMA synchronous reads back
// (https://sqlite.org/pragma.html#pragma_synchronous).
var sqliteSynchronous = map[string]int{"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}

func openSQLite(ctx context.Context, cfg Config) (*DB, error) {
	path := strings.TrimPrefix(cfg.URL, "sqlite:")
	switch {
	case path == "":
		return nil, errors.New("store: empty sqlite path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		// The reader pool opens the file separately, so an in-memory
		// database or a URI with its own parameters cannot work.
		return nil, fmt.Errorf("store: sqlite path %q: need a plain file path", path)
	case strings.ContainsAny(path, "?#"):
		return nil, fmt.Errorf("store: sqlite path %q must not contain '?' or '#'", path)
	}

	level := strings.ToUpper(cfg.Synchronous)
	if level == "" {
		level = DefaultSynchronous
	}
	if _, ok := sqliteSynchronous[level]; !ok {
		return nil, fmt.Errorf("store: sqlite synchronous %q: want FULL, EXTRA, NORMAL or OFF", cfg.Synchronous)
	}
	busy := cfg.BusyTimeout
	switch {
	case busy == 0:
		busy = DefaultBusyTimeout
	case busy < 0:
		return nil, fmt.Errorf("store: negative sqlite busy timeout %s", busy)
	}
	readers := cfg.Readers
	switch {
	case readers == 0:
		readers = DefaultReaders
	case readers < 0:
		return nil, fmt.Errorf("store: negative sqlite reader count %d", readers)
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create sqlite directory: %w", err)
	}
	// Create the file owner-only before SQLite does (it would use 0644 less
	// umask); SQLite gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("store: create sqlite file: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("store: create sqlite file: %w", err)
	}

	// _pragma parameters are run by the driver on every new connection, so a
	// connection the pool re-opens gets the same settings as the first one.
	common := url.Values{}
	common.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	common.Add("_pragma", "foreign_keys(1)")
	common.Add("_pragma", "synchronous("+level+")")
	// A page cache of 16 MiB per connection (SQLite's default is 2 MiB) and
	// reads through a memory map of up to 256 MiB: without them every
	// issuance re-read B-tree pages with a system call each.
	common.Add("_pragma", "cache_size(-16384)")
	common.Add("_pragma", "mmap_size(268435456)")
	// Write time.Time in SQLite's own format ("2006-01-02 15:04:05.999999999-07:00")
	// rather than Go's String() form, so stored times sort and parse.
	common.Set("_time_format", "sqlite")

	w := cloneValues(common)
	w.Add("_pragma", "journal_mode(WAL)")
	// BEGIN IMMEDIATE takes the write lock at the start of the transaction, so
	// contention surfaces at BEGIN (retryable) and never as a failed upgrade
	// from a read lock in the middle of fn.
	w.Set("_txlock", "immediate")
	writer, err := openCachedSQLite(path + "?" + w.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite writer: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// The writer's first connection creates the file and switches it to WAL
	// before any reader opens it.
	if err := writer.PingContext(ctx); err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}

	r := cloneValues(common)
	r.Set("_query_only", "1") // applied last by the driver, after the other pragmas
	reader, err := openCachedSQLite(path + "?" + r.Encode())
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("store: open sqlite reader: %w", err)
	}
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)
	reader.SetConnMaxLifetime(0)
	reader.SetConnMaxIdleTime(0)
	if err := reader.PingContext(ctx); err != nil {
		_ = reader.Close()
		_ = writer.Close()
		return nil, fmt.Errorf("store: open sqlite reader %s: %w", path, err)
	}
	db := &DB{driver: SQLite, writer: writer, reader: reader, path: path, synchronous: level}
	db.wal.onFail = db.fail
	// TxPipelined's descriptor of the -wal file, opened now so that it sees
	// every failed writeback from here on (syncWAL). SQLite created the
	// file when the writer switched to WAL; were it missing, the first
	// sync opens it.
	db.walMu.Lock()
	_, _ = db.walDescriptor()
	db.walMu.Unlock()
	return db, nil
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}
