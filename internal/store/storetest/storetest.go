// Package storetest runs store conformance tests against every backend: a
// fresh SQLite file, and a fresh PostgreSQL database on the server named by
// $GTTEST_POSTGRES_URL (an admin URL, as scripts/with-postgres.sh exports).
// Without that variable the PostgreSQL half is skipped locally and fails under
// CI (testenv.Missing).
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/testenv"
)

// EnvPostgres names the variable holding the admin URL of the test server.
const EnvPostgres = "GTTEST_POSTGRES_URL"

// Run runs fn as the subtests "sqlite" and "postgres", each on a fresh,
// migrated database that is closed (and, for PostgreSQL, dropped) when the
// subtest ends.
func Run(t *testing.T, fn func(t *testing.T, db *store.DB), sets ...store.Migrations) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t, sets...)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t, sets...)) })
}

// configs remembers how each database handed out here was opened, for Reopen.
var configs sync.Map // *store.DB -> store.Config

// SQLite opens a migrated SQLite database in a fresh file under t.TempDir().
func SQLite(t testing.TB, sets ...store.Migrations) *store.DB {
	t.Helper()
	return OpenConfig(t, store.Config{URL: filepath.Join(t.TempDir(), "govtrust.db")}, sets...)
}

// Postgres opens a migrated, freshly created PostgreSQL database.
func Postgres(t testing.TB, sets ...store.Migrations) *store.DB {
	t.Helper()
	return OpenConfig(t, PostgresConfig(t), sets...)
}

// PostgresURL creates a fresh empty database and returns its URL (for tests
// that start processes). The database is dropped when t ends. If the admin
// URL carries a password, so does the returned URL; store.Open refuses such a
// URL, so split it with PostgresConfig instead.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := testenv.Env(t, EnvPostgres, "PostgreSQL admin URL (scripts/with-postgres.sh)")
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("storetest: $%s is not a URL", EnvPostgres) // the URL may hold a password
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "gttest_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adminExec(ctx, t, admin, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE (PostgreSQL 13+) ends sessions a failed test left open.
		adminExec(ctx, t, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u.Path = "/" + name
	return u.String()
}

// PostgresConfig creates a fresh empty database like PostgresURL and returns
// a store.Config for it, with any password moved from the URL to
// Config.Password as store.Open requires.
func PostgresConfig(t testing.TB) store.Config {
	t.Helper()
	u, err := url.Parse(PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := store.Config{}
	if pw, ok := u.User.Password(); ok {
		cfg.Password = pw
		u.User = url.User(u.User.Username())
	}
	cfg.URL = u.String()
	return cfg
}

// OpenConfig opens cfg, applies sets and closes the database when t ends.
func OpenConfig(t testing.TB, cfg store.Config, sets ...store.Migrations) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("storetest: open: %v", err)
	}
	t.Cleanup(func() {
		configs.Delete(db)
		if err := db.Close(); err != nil {
			t.Errorf("storetest: close: %v", err)
		}
	})
	configs.Store(db, cfg)
	if len(sets) > 0 {
		if err := db.Migrate(ctx, sets...); err != nil {
			t.Fatalf("storetest: migrate: %v", err)
		}
	}
	return db
}

// Reopen opens a second, independent handle on the database behind db (as
// another process would) with the same Config, and applies sets.
func Reopen(t testing.TB, db *store.DB, sets ...store.Migrations) *store.DB {
	t.Helper()
	cfg, ok := configs.Load(db)
	if !ok {
		t.Fatal("storetest: Reopen: database was not opened by storetest")
	}
	return OpenConfig(t, cfg.(store.Config), sets...)
}

// TerminateSessions ends every PostgreSQL session connected to db's
// database (pg_terminate_backend from an admin connection), as a server
// restart or a network cut does to the pooled connections, and returns
// how many it ended.
func TerminateSessions(t testing.TB, db *store.DB) int {
	t.Helper()
	cfg, ok := configs.Load(db)
	if !ok {
		t.Fatal("storetest: TerminateSessions: database was not opened by storetest")
	}
	return TerminateURLSessions(t, cfg.(store.Config).URL)
}

// TerminateURLSessions is TerminateSessions for the database of a URL from
// PostgresURL (one that other processes, or a node under test, use).
func TerminateURLSessions(t testing.TB, dbURL string) int {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal("storetest: TerminateURLSessions: not a URL") // the URL may hold a password
	}
	name := strings.TrimPrefix(u.Path, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", testenv.Env(t, EnvPostgres, "PostgreSQL admin URL (scripts/with-postgres.sh)"))
	if err != nil {
		t.Fatalf("storetest: open admin connection: %v", err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRowContext(ctx, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name).Scan(&n); err != nil {
		t.Fatalf("storetest: terminate sessions of %s: %v", name, err)
	}
	return n
}

func adminExec(ctx context.Context, t testing.TB, adminURL, stmt string) {
	t.Helper()
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatalf("storetest: open admin connection: %v", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("storetest: %s: %v", stmt, err)
	}
}
