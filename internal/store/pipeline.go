package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Pending is a write transaction committed by [DB.TxPipelined] that may not
// be durable yet.
type Pending struct {
	db  *DB
	seq uint64 // 0: durable when committed
}

// Wait returns nil once the transaction is durable: on SQLite when an fsync
// of the WAL that began after its commit has succeeded. One fsync serves
// every transaction committed before it began, so concurrent waiters share
// it. After a failed fsync every Wait of the DB fails: the kernel may have
// dropped the pages it could not write and reported them once
// (PostgreSQL's "fsyncgate", which made it PANIC on such a failure), so no
// later fsync can vouch for them. A round that fails before any fsync
// (the WAL file could not be opened) fails only the Waits it was to serve;
// the pages are still the kernel's to write, and a later round may
// succeed. A failed fsync also makes the DB refuse every write (see
// DB.Tx), and once the DB refuses writes every Wait fails. Wait cannot be
// cancelled, as an fsync cannot.
func (p Pending) Wait() error {
	if p.seq == 0 {
		return nil
	}
	if err := p.db.writeFailure(); err != nil {
		return err
	}
	return p.db.wal.wait(p.seq, p.db.syncWAL)
}

// TxPipelined runs fn in a write transaction like [DB.Tx] and commits it,
// but returns before the commit is durable; [Pending.Wait] says when it is.
// On SQLite at synchronous FULL or EXTRA this transaction alone is
// committed at NORMAL: its frames are written to the WAL without the
// commit's fsync, the single writer connection is free for the next
// transaction at once, and Wait then fsyncs the WAL file. A commit
// followed by a successful Wait is as durable as a commit at FULL: in WAL
// mode NORMAL differs from FULL only by that fsync (SQLite still syncs the
// WAL before every checkpoint and its header when the WAL is restarted;
// https://sqlite.org/pragma.html#pragma_synchronous), so a checkpoint or a
// restart cannot overtake frames that are not yet synced. What a writer
// gains is that the next batch is inserted and committed while this one's
// fsync runs.
//
// The cost is that other transactions can read what fn wrote before it is
// durable, and after a crash it may be gone. Use TxPipelined only where
// that is harmless, and acknowledge nothing, nor let anything outside the
// database depend on the transaction, until Wait returns nil.
//
// On PostgreSQL, and on SQLite configured below FULL, TxPipelined is Tx and
// Wait returns nil at once.
func (db *DB) TxPipelined(ctx context.Context, fn func(tx *Tx) error) (Pending, error) {
	if db.driver != SQLite || sqliteSynchronous[db.synchronous] < sqliteSynchronous["FULL"] {
		return Pending{}, db.Tx(ctx, fn)
	}
	var p Pending
	err := db.retry(ctx, "transaction", func() error {
		conn, err := db.writer.Conn(ctx)
		if err != nil {
			return fmt.Errorf("store: writer connection: %w", err)
		}
		defer conn.Close()
		// The connection must not run another transaction at NORMAL. It
		// is set back to the configured level when this transaction ends,
		// even by a panic of fn; when that fails, or fn panicked (the
		// connection's state is then not worth trusting), database/sql is
		// told to close it: a new connection gets the level from its DSN.
		returned := false
		defer func() {
			if returned {
				_, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous="+db.synchronous)
				if err == nil {
					return
				}
			}
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}()
		// Both PRAGMAs go through the connection's statement cache
		// (sqlitecache.go); TestSQLitePragmaRepeated checks that a reused
		// one still takes effect.
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
			returned = true
			return fmt.Errorf("store: pipelined transaction: %w", err)
		}
		err = db.runTx(ctx, conn, nil, fn)
		returned = true
		if err == nil {
			p = Pending{db: db, seq: db.wal.committed()}
		}
		return err
	})
	return p, err
}

// WALSyncs reports how many fsyncs of the WAL Pending.Wait has made since
// Open; exported for tests and metrics.
func (db *DB) WALSyncs() uint64 { return db.wal.syncs.Load() }

// errNoFsync marks a sync round that failed before it could fsync; walSync
// does not hold it against later rounds.
var errNoFsync = errors.New("no fsync was made")

// syncWAL fsyncs the WAL file. fsync acts on the file, not on the
// descriptor, so it makes durable what SQLite's own descriptor wrote.
//
// The descriptor is kept open from one sync to the next, not opened for
// each: on Linux a failed writeback is reported once to each open file
// description that existed when it failed (errseq_t, since 4.13), and a
// descriptor opened after another one has been told sees nothing. A new
// descriptor per fsync could report success for pages the kernel dropped
// while another descriptor (SQLite's, a checkpoint's) learned of it. The
// one kept sees every failure after it was opened; what failed before, and
// was reported to SQLite, made its commit fail with SQLITE_IOERR, which
// makes the DB refuse writes (DB.fail) just as a failure here does. Closing
// a descriptor of the -wal file does not drop SQLite's POSIX locks: SQLite
// takes them on the database and -shm files, never on the -wal file.
//
// SQLite does not replace the -wal file while the database is open: after
// a checkpoint it writes the WAL again from its start, in the same file
// (journal_size_limit, not set here, and wal_checkpoint(TRUNCATE) truncate
// it, which keeps the file). It deletes the file when the last connection
// of any process closes, after checkpointing it into the database and
// syncing both (https://sqlite.org/wal.html); a connection opened later
// creates a new one. The pools keep their connections, but database/sql
// closes one that failed (TxPipelined closes the writer's when it cannot
// restore it), so each sync checks that the path still names the file
// held, and opens the new one if not. A commit made before the round began
// is then either in the file synced or was checkpointed and synced by
// SQLite before its WAL was deleted.
func (db *DB) syncWAL() error {
	// Held through the fsync, so that Close does not close the descriptor
	// under it.
	db.walMu.Lock()
	defer db.walMu.Unlock()
	f, err := db.walDescriptor()
	if err != nil {
		return fmt.Errorf("store: sync WAL: %w: %w", errNoFsync, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("store: sync WAL: %w", err)
	}
	return nil
}

// walDescriptor returns the kept descriptor of the -wal file, opened
// anew if there was none or the path now names another file. db.walMu is
// held.
func (db *DB) walDescriptor() (*os.File, error) {
	name := db.path + "-wal"
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if db.walFile != nil {
		if os.SameFile(fi, db.walInfo) {
			return db.walFile, nil
		}
		_ = db.walFile.Close() // replaced: its content was checkpointed
		db.walFile, db.walInfo = nil, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err = f.Stat(); err != nil {
		_ = f.Close()
		return nil, err
	}
	db.walFile, db.walInfo = f, fi
	return f, nil
}

// walSync is group fsync: commits are numbered, one waiter at a time runs
// an fsync that covers every commit numbered before it began, and the
// others wait for the round that covers them.
type walSync struct {
	mu     sync.Mutex
	last   uint64     // number of the latest commit
	synced uint64     // every commit up to this number is durable
	round  *syncRound // the running fsync; nil if none runs
	err    error      // the first failed fsync, for good
	parked int        // waiters blocked on the running round
	syncs  atomic.Uint64
	// onFail, when set, learns of a failed fsync before any waiter does
	// (DB.fail).
	onFail func(error)
}

// syncRound is one fsync and the commits it covers.
type syncRound struct {
	done chan struct{} // closed when the fsync has ended
	upTo uint64        // it covers the commits numbered up to this
	err  error         // a failure before the fsync (errNoFsync); set before done closes
}

// waiting reports the waiters blocked on the running round.
func (s *walSync) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked
}

// committed numbers a commit that has just returned.
func (s *walSync) committed() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last++
	return s.last
}

func (s *walSync) wait(seq uint64, fsync func() error) error {
	for {
		s.mu.Lock()
		switch {
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return err
		case s.synced >= seq:
			s.mu.Unlock()
			return nil
		case s.round != nil:
			r := s.round
			s.parked++
			s.mu.Unlock()
			<-r.done
			s.mu.Lock()
			s.parked--
			s.mu.Unlock()
			if r.err != nil && r.upTo >= seq {
				return r.err // the round meant for this commit failed
			}
			continue
		}
		r := &syncRound{done: make(chan struct{}), upTo: s.last}
		s.round = r
		s.mu.Unlock()

		err := fsync()
		s.syncs.Add(1)
		if err != nil && !errors.Is(err, errNoFsync) && s.onFail != nil {
			s.onFail(err)
		}

		s.mu.Lock()
		s.round = nil
		switch {
		case err == nil:
			s.synced = max(s.synced, r.upTo)
		case errors.Is(err, errNoFsync):
			r.err = err
		default:
			s.err = fmt.Errorf("%w (no write since is known to be durable)", err)
		}
		s.mu.Unlock()
		close(r.done)
		if r.err != nil {
			return r.err
		}
	}
}
