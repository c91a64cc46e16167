package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// PostgreSQL SQLSTATE codes (PostgreSQL documentation, Appendix A).
const (
	pgUniqueViolation      = "23505"
	pgUndefinedObject      = "42704" // unrecognized configuration parameter, among others
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
	// Class 08, connection exception; 57P01 admin_shutdown, 57P02
	// crash_shutdown, 57P03 cannot_connect_now (starting up or shutting
	// down); 53300 too_many_connections.
	pgConnectionException = "08"
	pgAdminShutdown       = "57P01"
	pgCrashShutdown       = "57P02"
	pgCannotConnectNow    = "57P03"
	pgTooManyConnections  = "53300"
)

// ErrUnavailable marks an error of a database that cannot serve now, where
// trying again later may succeed: the server cannot be reached, the
// connection was lost, the disk is full. IsUnavailable recognises it and
// the driver errors that mean it.
var ErrUnavailable = errors.New("store: database unavailable")

// IsUnavailable reports whether err says the database cannot serve now
// rather than that the request was wrong: ErrUnavailable; a PostgreSQL
// connection that could not be made or was lost (SQLSTATE class 08,
// 57P01–57P03, 53300, pgx's connect errors, a closed socket); SQLite
// SQLITE_FULL (the disk or max_page_count is full) or SQLITE_IOERR. The
// HTTP edge answers such errors 503 with Retry-After.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || connectionLost(err) {
		return true
	}
	if code, ok := sqliteCode(err); ok {
		switch code & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR:
			return true
		}
	}
	return false
}

// connectionLost reports whether err comes from a PostgreSQL connection
// that could not be made, was closed by the server, or broke.
func connectionLost(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up; pgx ends the connection to stop the query
	}
	if code, ok := pgCode(err); ok {
		switch {
		case strings.HasPrefix(code, pgConnectionException),
			code == pgAdminShutdown, code == pgCrashShutdown,
			code == pgCannotConnectNow, code == pgTooManyConnections:
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		pgconn.SafeToRetry(err)
}

// errCommitUnknown marks a COMMIT whose outcome is unknown: it was sent
// and no answer came back (the connection was lost, or the caller's
// context ended while it waited), or SQLite failed to write or sync it.
// The transaction may or may not have committed. It is never run again (it
// could apply twice); the caller learns ErrUnavailable and, where it
// matters, finds out by reading (the CA's Idempotency-Key returns the
// stored certificate).
type errCommitUnknown struct {
	why string // "the connection was lost", ...
	err error
}

func (e *errCommitUnknown) Error() string {
	return "store: commit outcome unknown, " + e.why + ": " + e.err.Error()
}

func (e *errCommitUnknown) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// errWriteFailed is the error of every write to a DB after a write of its
// SQLite file did not reach the disk (DB.fail).
type errWriteFailed struct {
	path  string
	cause error
}

func (e *errWriteFailed) Error() string {
	return "store: the database refuses writes until the node is restarted: a write to " + e.path +
		" did not reach the disk (" + e.cause.Error() + "), so no later commit can be known to be durable"
}

func (e *errWriteFailed) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// rerunnable reports whether a transaction that failed with err can run
// again from the start: a retryable error (IsRetryable), or a lost
// connection before COMMIT was sent (the server rolls back a transaction
// whose connection ends). A commit of unknown outcome and a DB that
// refuses writes are not.
func rerunnable(err error) bool {
	var (
		cu *errCommitUnknown
		wf *errWriteFailed
	)
	if errors.As(err, &cu) || errors.As(err, &wf) {
		return false
	}
	return IsRetryable(err) || connectionLost(err)
}

// isIOErr reports whether err is SQLite's SQLITE_IOERR, with any extended
// code (SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC, ...).
func isIOErr(err error) bool {
	code, ok := sqliteCode(err)
	return ok && code&0xff == sqlite3.SQLITE_IOERR
}

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
