package audit

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the audit log's schema.
var Migrations = store.EmbeddedMigrations("audit", migrations, "migrations")

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
	Denied  = "denied"
)

// Record is one audit record.
type Record struct {
	Seq       int64          `json:"seq"`
	Time      time.Time      `json:"time"`
	Node      string         `json:"node"`
	Actor     string         `json:"actor"`
	Action    string         `json:"action"`
	Object    string         `json:"object"`
	Outcome   string         `json:"outcome"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details,omitempty"`
	PrevHash  []byte         `json:"-"`
	Hash      []byte         `json:"-"`
}

// MarshalJSON adds the hashes in hex.
func (r Record) MarshalJSON() ([]byte, error) {
	type plain Record
	return json.Marshal(struct {
		plain
		Time     string `json:"time"`
		PrevHash string `json:"prev_hash"`
		Hash     string `json:"hash"`
	}{plain(r), r.Time.UTC().Format(time.RFC3339Nano), hex.EncodeToString(r.PrevHash), hex.EncodeToString(r.Hash)})
}

// ErrInvalid is returned for a record missing its actor, action or outcome.
var ErrInvalid = errors.New("audit: record needs actor, action and outcome")

// Log appends records for one node.
type Log struct {
	node  string
	clock clock.Clock
}

// New returns a Log writing records as node.
func New(node string, c clock.Clock) *Log {
	if c == nil {
		c = clock.New()
	}
	return &Log{node: node, clock: c}
}

// Append adds rec to the chain inside tx. The caller's change and the record
// commit together or not at all. It fills Seq, Time, Node and the hashes.
func (l *Log) Append(ctx context.Context, tx *store.Tx, rec Record) (Record, error) {
	if rec.Actor == "" || rec.Action == "" || rec.Outcome == "" {
		return rec, ErrInvalid
	}
	rec.Node = l.node
	rec.Time = l.clock.Now().UTC()
	if d := DecisionFrom(ctx); d != nil {
		m := make(map[string]any, len(rec.Details)+1)
		for k, v := range rec.Details {
			m[k] = v
		}
		m["authz"] = d.details()
		rec.Details = m
		if rec.RequestID == "" {
			rec.RequestID = requestID(ctx)
		}
		// Set even if the transaction later rolls back: the middleware then
		// sees an error status and records the failure itself.
		d.written.Store(true)
	}
	details, err := canonicalDetails(rec.Details)
	if err != nil {
		return rec, fmt.Errorf("audit: details: %w", err)
	}
	h, err := txHead(ctx, tx)
	if err != nil {
		return rec, err
	}
	rec.Seq = h.seq + 1
	rec.PrevHash = h.hash
	rec.Hash = chainHash(h.hash, canonical(rec, details))
	if _, err := tx.Exec(ctx, `INSERT INTO audit_log
		(seq, time, node, actor, action, object, outcome, request_id, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rec.Seq, rec.Time.Format(time.RFC3339Nano), rec.Node, rec.Actor, rec.Action, rec.Object,
		rec.Outcome, rec.RequestID, string(details), rec.PrevHash, rec.Hash); err != nil {
		return rec, fmt.Errorf("audit: append seq %d: %w", rec.Seq, err)
	}
	h.seq, h.hash = rec.Seq, rec.Hash
	return rec, nil
}

// head is the chain's head as a transaction sees it: read from audit_head
// at the transaction's first Append (on PostgreSQL with FOR UPDATE, which
// holds every other node's appenders until this transaction ends; on
// SQLite the transaction is the only writer), advanced in memory by each
// Append, and written back once, just before COMMIT. A batch of n
// issuances thus costs n INSERTs and two statements for the head, not 3n.
type head struct {
	read int64 // seq in audit_head when the transaction read it
	seq  int64
	hash []byte
}

type headKey struct{}

// txHead returns tx's head, reading it and registering its write-back on
// the transaction's first call.
func txHead(ctx context.Context, tx *store.Tx) (*head, error) {
	if h, ok := tx.Value(headKey{}).(*head); ok {
		return h, nil
	}
	q := "SELECT seq, hash FROM audit_head WHERE id = 1"
	if tx.Driver() == store.Postgres {
		q += " FOR UPDATE" // serialise appenders of every node into one chain
	}
	h := &head{}
	if err := tx.QueryRow(ctx, q).Scan(&h.seq, &h.hash); err != nil {
		return nil, fmt.Errorf("audit: read head: %w", err)
	}
	h.read = h.seq
	tx.SetValue(headKey{}, h)
	tx.BeforeCommit(func(ctx context.Context) error {
		if h.seq == h.read {
			return nil // nothing appended (every INSERT failed)
		}
		res, err := tx.Exec(ctx, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?", h.seq, h.hash, h.read)
		if err != nil {
			return fmt.Errorf("audit: advance head: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("audit: head moved under us at seq %d", h.read)
		}
		return nil
	})
	return h, nil
}

// Hold takes the chain's head in tx as the transaction's first Append
// does, without appending: on PostgreSQL its row lock, held until tx ends,
// orders tx before or after every other transaction that appends, so that
// what tx reads after Hold includes their writes or they see tx's. It is
// idempotent; Append after it uses the head it read.
func Hold(ctx context.Context, tx *store.Tx) error {
	_, err := txHead(ctx, tx)
	return err
}

// Do runs fn and appends rec in one transaction: if either fails, neither
// happens.
func (l *Log) Do(ctx context.Context, db *store.DB, rec Record, fn func(tx *store.Tx) error) (Record, error) {
	var out Record
	err := db.Tx(ctx, func(tx *store.Tx) error {
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		var err error
		out, err = l.Append(ctx, tx, rec)
		return err
	})
	return out, err
}

// Write appends rec in a transaction of its own.
func (l *Log) Write(ctx context.Context, db *store.DB, rec Record) (Record, error) {
	return l.Do(ctx, db, rec, nil)
}

// canonicalDetails encodes details as JSON with sorted keys (encoding/json
// sorts map keys), the exact bytes stored and hashed.
func canonicalDetails(d map[string]any) ([]byte, error) {
	if len(d) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(d)
}

// canonical is the byte string hashed for a record: a version tag, then each
// field as a uvarint length and its bytes, in a fixed order. Length prefixes
// keep two different records from sharing an encoding.
func canonical(r Record, details []byte) []byte {
	var b bytes.Buffer
	b.WriteString("govtrust-audit-v1")
	for _, f := range [][]byte{
		[]byte(strconv.FormatInt(r.Seq, 10)),
		[]byte(r.Time.UTC().Format(time.RFC3339Nano)),
		[]byte(r.Node), []byte(r.Actor), []byte(r.Action), []byte(r.Object),
		[]byte(r.Outcome), []byte(r.RequestID), details,
	} {
		b.Write(binary.AppendUvarint(nil, uint64(len(f))))
		b.Write(f)
	}
	return b.Bytes()
}

func chainHash(prev, canon []byte) []byte {
	h := sm3.New()
	h.Write(prev)
	h.Write(canon)
	return h.Sum(nil)
}

// row is a stored record as read back.
type row struct {
	rec     Record
	time    string
	details string
}

func scanRow(rows *sql.Rows) (*row, error) {
	var r row
	if err := rows.Scan(&r.rec.Seq, &r.time, &r.rec.Node, &r.rec.Actor, &r.rec.Action, &r.rec.Object,
		&r.rec.Outcome, &r.rec.RequestID, &r.details, &r.rec.PrevHash, &r.rec.Hash); err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, r.time)
	if err != nil {
		t = time.Time{} // an edited time that does not parse still fails the hash check
	}
	r.rec.Time = t
	if r.details != "" {
		_ = json.Unmarshal([]byte(r.details), &r.rec.Details)
	}
	return &r, nil
}

const selectRows = `SELECT seq, time, node, actor, action, object, outcome, request_id, details, prev_hash, hash
	FROM audit_log WHERE seq > ? ORDER BY seq`

// Problem is one integrity failure found by Verify.
type Problem struct {
	Seq  int64  `json:"seq"`
	Kind string `json:"kind"` // edited, deleted, broken-link, truncated, head
	Text string `json:"text"`
}

func (p Problem) String() string { return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Text) }

// Report is the result of Verify.
type Report struct {
	Records  int64     `json:"records"`
	LastSeq  int64     `json:"last_seq"`
	HeadSeq  int64     `json:"head_seq"`
	HeadHash string    `json:"head_hash"`
	Problems []Problem `json:"problems"`
}

// OK reports whether the chain verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify walks the whole chain and reports every integrity problem by sequence
// number. It reads in one read-only transaction so the chain and head it sees
// are consistent.
func Verify(ctx context.Context, db *store.DB) (*Report, error) {
	rep := &Report{}
	err := db.Read(ctx, func(q store.Querier) error {
		rep.Problems = nil
		var headHash []byte
		if err := q.QueryRow(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&rep.HeadSeq, &headHash); err != nil {
			return fmt.Errorf("audit: read head: %w", err)
		}
		rep.HeadHash = hex.EncodeToString(headHash)
		rows, err := q.Query(ctx, selectRows, 0)
		if err != nil {
			return fmt.Errorf("audit: read records: %w", err)
		}
		defer rows.Close()
		expect, prev := int64(1), make([]byte, 32)
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				return fmt.Errorf("audit: scan: %w", err)
			}
			rep.Records++
			seq := r.rec.Seq
			switch {
			case seq > expect:
				for s := expect; s < seq && s < expect+1000; s++ {
					rep.Problems = append(rep.Problems, Problem{s, "deleted", "record missing from the chain"})
				}
				if seq-expect > 1000 {
					rep.Problems = append(rep.Problems, Problem{expect + 1000, "deleted", fmt.Sprintf("and %d more missing up to seq %d", seq-expect-1000, seq-1)})
				}
			case !bytes.Equal(r.rec.PrevHash, prev):
				rep.Problems = append(rep.Problems, Problem{seq, "broken-link", fmt.Sprintf("prev_hash does not match the hash of seq %d (seq %d was rewritten, or this link was)", seq-1, seq-1)})
			}
			if got := chainHash(r.rec.PrevHash, canonical(r.rec, []byte(r.details))); !bytes.Equal(got, r.rec.Hash) {
				rep.Problems = append(rep.Problems, Problem{seq, "edited", "stored hash does not match the record's content"})
			}
			prev, expect, rep.LastSeq = r.rec.Hash, seq+1, seq
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: read records: %w", err)
		}
		switch {
		case rep.HeadSeq > rep.LastSeq:
			rep.Problems = append(rep.Problems, Problem{rep.LastSeq + 1, "truncated", fmt.Sprintf("records %d..%d are missing from the end of the chain", rep.LastSeq+1, rep.HeadSeq)})
		case rep.HeadSeq < rep.LastSeq:
			rep.Problems = append(rep.Problems, Problem{rep.HeadSeq, "head", fmt.Sprintf("head says seq %d but records go to %d", rep.HeadSeq, rep.LastSeq)})
		case !bytes.Equal(headHash, prev):
			rep.Problems = append(rep.Problems, Problem{rep.HeadSeq, "head", "head hash does not match the last record"})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// Export writes the records after seq `after` as JSON lines, in order.
func Export(ctx context.Context, db *store.DB, after int64, w io.Writer) (int64, error) {
	var n int64
	err := db.Read(ctx, func(q store.Querier) error {
		if n > 0 {
			// A retried read would send the lines already sent again.
			return fmt.Errorf("audit: export: read failed after %d lines were written; resume with after", n)
		}
		rows, err := q.Query(ctx, selectRows, after)
		if err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		defer rows.Close()
		enc := json.NewEncoder(w)
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				return fmt.Errorf("audit: export: %w", err)
			}
			if err := enc.Encode(r.rec); err != nil {
				return fmt.Errorf("audit: export: %w", err)
			}
			n++
		}
		return rows.Err()
	})
	return n, err
}

type actorKey struct{}

// WithActor returns ctx carrying the actor that lower layers record when
// they audit on a caller's behalf (the authenticated principal, or the
// operator of a CLI command).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor of ctx, or "system".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}

// Decision is the authorization decision behind a request. The security
// middleware puts it in the request's context; the first record the handler
// appends carries it (details "authz"), so an allowed, state-changing request
// costs one audit record written in the handler's own transaction. When the
// handler appends none, the middleware writes one itself (Written tells).
type Decision struct {
	Action   string
	Object   string
	Via      string
	Policies []string
	written  atomic.Bool
}

// Written reports whether a record carrying the decision was appended.
func (d *Decision) Written() bool { return d.written.Load() }

type decisionKey struct{}

// WithDecision returns ctx carrying d.
func WithDecision(ctx context.Context, d *Decision) context.Context {
	return context.WithValue(ctx, decisionKey{}, d)
}

// DecisionFrom returns the decision of ctx, or nil.
func DecisionFrom(ctx context.Context) *Decision {
	d, _ := ctx.Value(decisionKey{}).(*Decision)
	return d
}

func (d *Decision) details() map[string]any {
	return map[string]any{"action": d.Action, "object": d.Object, "decision": "allow", "policies": d.Policies, "via": d.Via}
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request ID that records appended
// under it default to.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
