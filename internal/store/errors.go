package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// PostgreSQL SQLSTATE codes (PostgreSQL documentation, Appendix A).
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

// IsUniqueViolation reports whether err is a unique or primary-key constraint
// violation: SQLite SQLITE_CONSTRAINT_UNIQUE or SQLITE_CONSTRAINT_PRIMARYKEY,
// PostgreSQL 23505.
func IsUniqueViolation(err error) bool {
	if code, ok := sqliteCode(err); ok {
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	if code, ok := pgCode(err); ok {
		return code == pgUniqueViolation
	}
	return false
}

// IsRetryable reports whether the transaction that failed with err can be
// run again from the start: SQLite BUSY or LOCKED (any extended code),
// PostgreSQL serialization_failure (40001) or deadlock_detected (40P01). Such
// a transaction was rolled back by the database, so a retry cannot apply it
// twice.
func IsRetryable(err error) bool {
	if code, ok := sqliteCode(err); ok {
		switch code & 0xff { // primary result code (https://sqlite.org/rescode.html)
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	if code, ok := pgCode(err); ok {
		return code == pgSerializationFailure || code == pgDeadlockDetected
	}
	return false
}

func sqliteCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

func pgCode(err error) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, true
	}
	return "", false
}
