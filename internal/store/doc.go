// Package store opens govtrust's SQL database and gives every service the same
// small set of helpers on top of database/sql: migrations per service, write
// transactions that retry on contention, read-only transactions, placeholder
// rebinding, error classification and a check of the durability settings.
//
// Two backends are supported (ARCHITECTURE.md §4):
//
//   - SQLite (modernc.org/sqlite, pure Go), the embedded default. The file is
//     opened twice: one writer *sql.DB with a single connection whose
//     transactions start with BEGIN IMMEDIATE, and a reader *sql.DB with
//     several query_only connections. WAL lets the readers run while the
//     writer commits; the single writer connection serialises writers inside
//     the process, and BEGIN IMMEDIATE makes a writer in another process wait
//     for busy_timeout and then fail with SQLITE_BUSY at BEGIN (which Tx
//     retries) instead of failing half way through a transaction.
//   - PostgreSQL (github.com/jackc/pgx/v5 through database/sql), for many
//     nodes. Reads and writes share one pool; Read uses READ ONLY
//     transactions.
//
// SQL is written once with '?' placeholders; on PostgreSQL they are rebound to
// $1..$n outside string literals, quoted identifiers, dollar-quoted strings and
// comments. PostgreSQL operators spelled with '?' (jsonb ?, ?|, ?&) cannot be
// used through this package; use the equivalent functions
// (jsonb_exists, jsonb_exists_any, jsonb_exists_all).
//
// Durability matters more than speed here: nothing may be acknowledged before
// it is durable (RELIABILITY.md, invariants I2-I4). SQLite runs in WAL mode with
// synchronous=FULL by default — with NORMAL a transaction committed in WAL mode
// "might roll back following a power loss or system crash" — and PostgreSQL
// must keep fsync and synchronous_commit on. [DB.CheckProduction] reports any
// setting that breaks this, so production mode can refuse to start.
// [DB.TxPipelined] moves a SQLite commit's fsync out of the writer's way
// for callers that can let a commit be read before it is durable; its
// [Pending.Wait] gives the durability of FULL back. A write of the SQLite
// file that does not reach the disk (a failed fsync of the WAL, SQLITE_IOERR
// at a commit) makes the DB refuse every later write until the node is
// restarted, as PostgreSQL stops after a failed fsync: see [DB.Tx].
//
// A caution for SQLite: the writer pool has exactly one connection, so inside a
// [DB.Tx] callback use only the *Tx it is given; calling db.Exec or starting
// another db.Tx from inside the callback waits for the connection the callback
// itself holds and never returns.
package store
