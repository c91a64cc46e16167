package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Setting is one live durability setting and whether it is safe for
// production. Why says what a safe value is and where to set it.
type Setting struct {
	Name, Value string
	Safe        bool
	Why         string
}

// ErrUnsafe is wrapped by the error CheckProduction returns.
var ErrUnsafe = errors.New("unsafe for production")

// Durability reads the live durability settings: on SQLite PRAGMA
// synchronous and journal_mode of the writer connection, on PostgreSQL
// synchronous_commit, fsync and full_page_writes as a session sees them (so
// ALTER DATABASE/ROLE ... SET overrides count) and data_sync_retry.
func (db *DB) Durability(ctx context.Context) ([]Setting, error) {
	if db.driver == SQLite {
		return db.sqliteDurability(ctx)
	}
	return db.postgresDurability(ctx)
}

func (db *DB) sqliteDurability(ctx context.Context) ([]Setting, error) {
	// Both pragmas are per connection for synchronous and per file for WAL;
	// the writer connection is the one whose commits must be durable.
	var syncNum int
	if err := db.writer.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncNum); err != nil {
		return nil, fmt.Errorf("store: read sqlite synchronous: %w", err)
	}
	syncName := fmt.Sprintf("unknown(%d)", syncNum)
	for name, n := range sqliteSynchronous {
		if n == syncNum {
			syncName = name
		}
	}
	var journal string
	if err := db.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return nil, fmt.Errorf("store: read sqlite journal_mode: %w", err)
	}
	journal = strings.ToUpper(journal)
	return []Setting{
		{
			// https://sqlite.org/pragma.html#pragma_synchronous: in WAL mode
			// with NORMAL "a transaction committed ... might roll back
			// following a power loss or system crash" (RELIABILITY.md §1.9).
			Name: "synchronous", Value: syncName,
			Safe: syncNum >= sqliteSynchronous["FULL"],
			Why:  "need FULL or EXTRA: database.sqlite_synchronous",
		},
		{
			Name: "journal_mode", Value: journal,
			Safe: journal == "WAL",
			Why:  "need WAL, which govtrust sets on open; the file system or another tool refused or changed it",
		},
	}, nil
}

func (db *DB) postgresDurability(ctx context.Context) ([]Setting, error) {
	values := map[string]string{}
	for _, name := range []string{"synchronous_commit", "fsync", "full_page_writes", "data_sync_retry"} {
		var v string
		// SHOW takes no parameters; name is one of the constants above.
		err := db.writer.QueryRowContext(ctx, "SHOW "+name).Scan(&v)
		if code, ok := pgCode(err); ok && code == pgUndefinedObject && name == "data_sync_retry" {
			v = "" // a server older than the setting: it retries
		} else if err != nil {
			return nil, fmt.Errorf("store: show postgres %s: %w", name, err)
		}
		values[name] = v
	}
	return postgresSettings(values), nil
}

// postgresSettings judges the values SHOW gave (data_sync_retry is empty
// on a server that lacks it).
func postgresSettings(v map[string]string) []Setting {
	dsr := v["data_sync_retry"]
	if dsr == "" {
		dsr = "absent"
	}
	return []Setting{
		{
			// PostgreSQL §30.4 "Asynchronous Commit": with off, recently
			// acknowledged transactions can be lost after a crash. local,
			// remote_write, on and remote_apply all flush the local WAL first.
			Name: "synchronous_commit", Value: v["synchronous_commit"],
			Safe: v["synchronous_commit"] != "off",
			Why:  "need on (or remote_apply with a synchronous standby): ALTER SYSTEM/DATABASE/ROLE ... SET synchronous_commit = on",
		},
		{
			Name: "fsync", Value: v["fsync"],
			Safe: v["fsync"] == "on",
			Why:  "need on: fsync=off risks an unrecoverable, corrupt cluster after a crash (postgresql.conf)",
		},
		{
			Name: "full_page_writes", Value: v["full_page_writes"],
			Safe: v["full_page_writes"] == "on",
			Why:  "need on: torn pages after a crash cannot be repaired without it (postgresql.conf)",
		},
		{
			// With on, a failed fsync of a data file is retried, but the
			// kernel may have dropped the pages and a retry then succeeds
			// on what is left, losing committed data without a word
			// ("fsyncgate"); off PANICs and replays the WAL. The setting
			// came with PostgreSQL 12 (and 9.4.21, 9.5.16, 9.6.12, 10.7,
			// 11.2); an older server always retries.
			Name: "data_sync_retry", Value: dsr,
			Safe: dsr == "off",
			Why:  "need off, so that a failed fsync stops the server and WAL replay repairs the data: postgresql.conf, server start; a server without the setting retries and must be upgraded",
		},
	}
}

// CheckProduction returns an error naming every unsafe durability setting,
// for example
//
//	unsafe for production: sqlite synchronous=NORMAL (need FULL or EXTRA: database.sqlite_synchronous)
//
// and nil when all are safe. The error wraps ErrUnsafe.
func (db *DB) CheckProduction(ctx context.Context) error {
	settings, err := db.Durability(ctx)
	if err != nil {
		return err
	}
	var bad []string
	for _, s := range settings {
		if !s.Safe {
			bad = append(bad, fmt.Sprintf("%s %s=%s (%s)", db.driver, s.Name, s.Value, s.Why))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnsafe, strings.Join(bad, "; "))
}
