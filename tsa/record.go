package tsa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/internal/store"
)

// Recording policy (issue #7: a database transaction per token would bound
// the TSA by the disk's fsync rate, RELIABILITY.md I3 forbids answering
// before the record is durable).
const (
	// recordMaxBatch bounds the tokens of one transaction.
	recordMaxBatch = 128
	// recordWindow is the longest a batch waits for more tokens after its
	// first one. It waits only when the TSA is busy: the previous batch
	// held more than one token, or other tokens are being signed
	// (recorder.signing) and are about to join. A lone request is
	// committed at once; a busy TSA trades up to this much latency for
	// fewer commits, each of which costs an fsync and most of the CPU of
	// recording (in effect PostgreSQL's commit_delay with
	// commit_siblings). 1 ms gave ~9 tokens a commit under load, 3 ms
	// ~45, 6 ms ~80 but left the core idle while all clients waited.
	recordWindow = 3 * time.Millisecond
	// maxChunk is the largest multi-row INSERT. A batch is cut into
	// INSERTs of powers of two rows (largest first): seven statements,
	// each prepared once per connection (internal/store's statement
	// cache), instead of one per batch size.
	maxChunk = 64
)

// errSerialTaken is what a token whose serial is already recorded gets; the
// caller draws a new serial and signs again (the token was never sent).
var errSerialTaken = errors.New("tsa: serial already recorded")

// errRecorderClosed is returned after Stop.
var errRecorderClosed = errors.New("tsa: recorder closed")

// tokenRow is one row of tsa_tokens.
type tokenRow struct {
	serial     string
	profile    string
	generation int
	policy     string
	hashAlg    string
	imprint    []byte
	genTime    string
	nonce      any // string or nil
	token      []byte
}

type recordReq struct {
	row tokenRow
	err chan error
}

// committedBatch is a batch whose transaction has ended: errs holds each
// row's outcome, durable says when the rows that have none are durable.
type committedBatch struct {
	batch   []*recordReq
	errs    []error
	durable store.Pending
}

// pipelineDepth bounds the batches committed but not yet answered; the
// loop waits when the answerer is that far behind (a slow disk).
const pipelineDepth = 4

// recorder is group commit for issued tokens, specialised for one table:
// a batch is one transaction of a few multi-row INSERTs (no savepoint and
// no statement per token, as the generic store.Batcher needs), committed
// once, after which every caller in it is answered. It collects the
// callers already waiting and, while tokens are being signed, those
// arriving within recordWindow of the first.
//
// Batches are pipelined (store.DB.TxPipelined): the loop commits a batch
// without waiting for its fsync and goes on to collect and commit the
// next, while the answerer waits for the batch to be durable and only
// then answers its callers. A token's row is visible to the look-up
// before it is durable; that is harmless, as nobody learns its serial
// before the token is returned, which is after. With the fsync inside the
// commit, the CPU stood idle while every request in flight waited for it.
type recorder struct {
	db   *store.DB
	reqs chan *recordReq
	// committed carries each committed batch from the loop to the
	// answerer.
	committed chan committedBatch

	// signing counts the tokens being made that have not yet reached
	// record (Service.Stamp holds one from parsing to recording).
	signing atomic.Int64

	batches, tokens atomic.Uint64

	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{} // closed when the answerer has answered the last batch

	// Used by the loop goroutine only.
	args   []any
	insert [maxChunk + 1]string
}

func newRecorder(db *store.DB) *recorder {
	r := &recorder{db: db, reqs: make(chan *recordReq, recordMaxBatch), committed: make(chan committedBatch, pipelineDepth),
		closed: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	go r.answer()
	return r
}

// insertSQL is the INSERT of n rows; duplicates of a serial are skipped
// rather than failing the whole batch, and found by recordBatch.
func insertSQL(n int) string {
	return "INSERT INTO tsa_tokens (serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token) VALUES " +
		store.ValuesRows(n, 9) + " ON CONFLICT (serial) DO NOTHING"
}

// record stores row and returns once it is committed (nil), or with
// errSerialTaken, or with the reason it is not recorded. As with
// store.Batcher, a ctx that ends while the batch commits does not cut the
// wait short: nil always means durable. A caller that holds one of
// r.signing (see startSigning) gives it back once its row is queued. A row
// queued as the recorder closes, after the loop's last look at the queue,
// is not recorded and gets errRecorderClosed once the recorder is done.
func (r *recorder) record(ctx context.Context, row tokenRow, held *bool) error {
	release := func() {
		if held != nil && *held {
			*held = false
			r.signing.Add(-1)
		}
	}
	defer release()
	req := &recordReq{row: row, err: make(chan error, 1)}
	select {
	case <-r.closed:
		return errRecorderClosed
	default:
	}
	select {
	case r.reqs <- req:
		release()
	case <-ctx.Done():
		return fmt.Errorf("tsa: record: %w", ctx.Err())
	case <-r.closed:
		return errRecorderClosed
	}
	// Every request the loop takes is answered before done is closed (the
	// loop's drain, or the answerer for a batch, each before it ends), so
	// an answer is never lost to done: it is read first.
	select {
	case err := <-req.err:
		return err
	case <-r.done:
		select {
		case err := <-req.err:
			return err
		default:
			return errRecorderClosed
		}
	}
}

// startSigning tells the recorder a token is being made and will be
// recorded soon; *held is true until record (or the caller's deferred
// stopSigning) gives it back.
func (r *recorder) startSigning(held *bool) {
	r.signing.Add(1)
	*held = true
}

// stopSigning gives back what startSigning took, if record did not.
func (r *recorder) stopSigning(held *bool) {
	if *held {
		*held = false
		r.signing.Add(-1)
	}
}

// stats reports the transactions committed or tried and the tokens they
// carried.
func (r *recorder) stats() (batches, tokens uint64) { return r.batches.Load(), r.tokens.Load() }

// close stops the recorder after the batch in progress, once every
// committed batch is answered; requests already queued are answered with
// errRecorderClosed (record: those queued too late for the loop's drain
// too).
func (r *recorder) close() {
	r.closeOnce.Do(func() { close(r.closed) })
	<-r.done
}

func (r *recorder) loop() {
	defer close(r.committed)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	busy := false
	for {
		// A new slice each time: the answerer holds the last ones.
		batch := make([]*recordReq, 0, recordMaxBatch)
		select {
		case q := <-r.reqs:
			batch = append(batch, q)
		case <-r.closed:
			r.drain()
			return
		}
		// Take whoever is already waiting.
	fill:
		for len(batch) < recordMaxBatch {
			select {
			case q := <-r.reqs:
				batch = append(batch, q)
			default:
				break fill
			}
		}
		if len(batch) < recordMaxBatch && (busy || r.signing.Load() > 0) {
			timer.Reset(recordWindow)
		wait:
			for len(batch) < recordMaxBatch {
				select {
				case q := <-r.reqs:
					batch = append(batch, q)
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
		}
		busy = len(batch) > 1
		errs, durable := r.commit(batch)
		r.committed <- committedBatch{batch: batch, errs: errs, durable: durable}
	}
}

// answer answers each committed batch's callers once it is durable.
func (r *recorder) answer() {
	defer close(r.done)
	for c := range r.committed {
		err := c.durable.Wait()
		for i, q := range c.batch {
			if c.errs[i] == nil && err != nil {
				c.errs[i] = fmt.Errorf("tsa: record: %w", err)
			}
			q.err <- c.errs[i]
		}
	}
}

func (r *recorder) drain() {
	for {
		select {
		case q := <-r.reqs:
			q.err <- errRecorderClosed
		default:
			return
		}
	}
}

// commit records the batch in one transaction and returns each row's
// outcome, valid once the transaction is durable.
func (r *recorder) commit(batch []*recordReq) ([]error, store.Pending) {
	r.batches.Add(1)
	r.tokens.Add(uint64(len(batch)))
	errs := make([]error, len(batch))
	// The transaction belongs to no caller: one giving up must not roll
	// back the others' tokens.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	durable, err := r.db.TxPipelined(ctx, func(tx *store.Tx) error {
		clear(errs) // DB.Tx may run this again after a retryable error
		inserted := int64(0)
		for rest := batch; len(rest) > 0; {
			n := store.ChunkRows(len(rest), maxChunk)
			if r.insert[n] == "" {
				r.insert[n] = insertSQL(n)
			}
			r.args = r.args[:0]
			for _, q := range rest[:n] {
				w := &q.row
				r.args = append(r.args, w.serial, w.profile, w.generation, w.policy, w.hashAlg, w.imprint, w.genTime, w.nonce, w.token)
			}
			res, err := tx.Exec(ctx, r.insert[n], r.args...)
			clear(r.args)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			inserted += k
			rest = rest[n:]
		}
		if inserted == int64(len(batch)) {
			return nil
		}
		// A serial was recorded before, or twice in this batch (80
		// random bits in the same millisecond: never expected). The rows that hold another
		// token than the caller's lost.
		for i, q := range batch {
			var tok []byte
			if err := tx.QueryRow(ctx, "SELECT token FROM tsa_tokens WHERE serial = ?", q.row.serial).Scan(&tok); err != nil {
				return fmt.Errorf("tsa: check serial %s: %w", q.row.serial, err)
			}
			if !bytes.Equal(tok, q.row.token) {
				errs[i] = errSerialTaken
			}
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs, durable
}
