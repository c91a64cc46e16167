package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// DefaultBatchSize bounds how many callers share one transaction.
const DefaultBatchSize = 64

// ErrBatcherClosed is returned by Batcher.Do after Close.
var ErrBatcherClosed = errors.New("store: batcher closed")

// Batcher is group commit: it runs the functions given to Do by concurrent
// callers in shared read-write transactions, so that N writes cost one
// commit (one fsync on SQLite, one WAL flush on PostgreSQL) instead of N.
// A caller waiting in Do while a transaction commits is put in the next one,
// so batches form by themselves under load and a lone caller pays no delay.
// Before a batch closes, the batcher yields the processor so that callers
// ready to run reach Do first (see loop).
//
// A function that fails is rolled back alone (the batch runs again without
// it) and Do returns its error to its caller only; the others commit. A
// retryable error (IsRetryable) or a lost connection in any function, a
// failed BEGIN or a COMMIT refused as retryable runs the whole batch again
// as DB.Tx does, so like a DB.Tx callback a function must not keep state
// across attempts; a connection lost at COMMIT is answered to every caller
// as ErrUnavailable with the outcome unknown, never run again. The functions
// share the transaction's Tx.BeforeCommit hooks (the audit head, the CA's
// outbox), which run once after the last of them: a hook's error belongs
// to no one function and is returned to every caller of the batch. Do returns nil
// only once the function's writes are committed and durable.
//
// The same rules as for DB.Tx callbacks hold: on SQLite a function must not
// start another transaction (DB.Tx, DB.Exec, another Batcher), the single
// writer connection being held by the batch.
type Batcher struct {
	db   *DB
	max  int
	reqs chan *batchReq

	batches, items atomic.Uint64

	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
}

type batchReq struct {
	ctx context.Context
	fn  func(tx *Tx) error
	err chan error
}

// NewBatcher starts a batcher on db whose transactions take at most max
// functions (DefaultBatchSize when max <= 0). Close it when done.
func (db *DB) NewBatcher(max int) *Batcher {
	if max <= 0 {
		max = DefaultBatchSize
	}
	b := &Batcher{db: db, max: max, reqs: make(chan *batchReq), closed: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

// Do runs fn in the next batch transaction and returns once that
// transaction has committed (nil, or fn's own error when fn failed and was
// rolled back alone) or failed as a whole. A ctx that ends before fn runs
// makes Do return ctx's error without running fn; once fn has run, Do waits
// for the transaction's outcome whatever ctx does, so nil always means
// committed and an error always means fn's writes are not.
func (b *Batcher) Do(ctx context.Context, fn func(tx *Tx) error) error {
	r := &batchReq{ctx: ctx, fn: fn, err: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("store: batch: %w", ctx.Err())
	case <-b.closed:
		return ErrBatcherClosed
	}
	return <-r.err
}

// Stats reports how many batches the batcher ran (one transaction each,
// not counting the reruns after a failed function) and how many functions
// they carried.
func (b *Batcher) Stats() (batches, items uint64) { return b.batches.Load(), b.items.Load() }

// Close stops the batcher after the batch in progress; later Do calls
// return ErrBatcherClosed.
func (b *Batcher) Close() {
	b.closeOnce.Do(func() { close(b.closed) })
	<-b.done
}

func (b *Batcher) loop() {
	defer close(b.done)
	batch := make([]*batchReq, 0, b.max)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.closed:
			return
		}
		// Let the goroutines that are ready to run go first, then take
		// whoever is waiting in Do; again while that brings someone. With
		// one P (GOMAXPROCS 1: a one-CPU container, or bench/ca's split
		// node) the first caller's send hands the P to this goroutine at
		// once, while the other handlers, runnable, have not reached Do
		// yet: without the yield the CA's batches held 1.007 functions on
		// average and every issuance paid two fsyncs of its own (bench/ca,
		// 2026-11-21). A lone caller pays one Gosched, no timer.
		for len(batch) < b.max {
			runtime.Gosched()
			if !b.take(&batch) {
				break
			}
		}
		b.run(batch)
		clear(batch)
	}
}

// take appends the callers waiting in Do to batch, up to b.max, without
// waiting for more, and reports whether there were any.
func (b *Batcher) take(batch *[]*batchReq) bool {
	n := len(*batch)
	for len(*batch) < b.max {
		select {
		case r := <-b.reqs:
			*batch = append(*batch, r)
		default:
			return len(*batch) > n
		}
	}
	return len(*batch) > n
}

// errItemFailed aborts a batch attempt in which a function failed: the
// transaction is rolled back and run again without that function.
var errItemFailed = errors.New("store: batch item failed")

// run executes one batch and answers every caller in it.
//
// A function that fails is not isolated with a savepoint (two more round
// trips per function on PostgreSQL, where every statement is one): its
// error aborts the attempt, the transaction rolls back, and the batch runs
// again without it. Failures are rare (a unique violation, a refused
// write), so the common case pays nothing for them.
func (b *Batcher) run(batch []*batchReq) {
	b.batches.Add(1)
	b.items.Add(uint64(len(batch)))
	failed := make([]error, len(batch))
	// The transaction belongs to no single caller: one caller giving up
	// must not roll back the others' work.
	ctx := context.WithoutCancel(batch[0].ctx)
	var err error
	for {
		err = b.db.Tx(ctx, func(tx *Tx) error {
			for i, r := range batch {
				if failed[i] != nil {
					continue
				}
				if cerr := r.ctx.Err(); cerr != nil {
					failed[i] = fmt.Errorf("store: batch: %w", cerr)
					continue
				}
				ferr := r.fn(tx)
				switch {
				case ferr == nil:
				case rerunnable(ferr):
					// Not this function's fault (a conflict, a lost
					// connection): the whole batch again (DB.Tx retries).
					return ferr
				default:
					failed[i] = ferr
					return errItemFailed
				}
			}
			return nil
		})
		if !errors.Is(err, errItemFailed) {
			break
		}
	}
	for i, r := range batch {
		switch {
		case failed[i] != nil:
			r.err <- failed[i]
		default:
			r.err <- err // nil: committed
		}
	}
}
