package dual

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the schema of the dual-control store.
var Migrations = store.EmbeddedMigrations("dual", migrations, "migrations")

// Status is the state of a request.
type Status string

// Statuses. Expired is never stored: a pending or approved request whose
// expiry has passed reads as expired.
const (
	StatusPending  Status = "pending"  // waiting for approvals
	StatusApproved Status = "approved" // enough approvals; may be executed once
	StatusRejected Status = "rejected" // closed by a rejection
	StatusExpired  Status = "expired"  // not executed before its expiry
	StatusExecuted Status = "executed" // the operation ran; the approval is spent
)

// Limits on what a request may hold.
const (
	MaxRequired   = 16   // approvers a request may require
	MaxExcluded   = 16   // identities a request may exclude from approving
	maxKindLen    = 64   // "kms.key.recover"
	maxActorLen   = 256  // principal names
	maxTextLen    = 4096 // summaries, comments
	maxPayloadLen = 1 << 20
	defaultLimit  = 100
	maxLimit      = 1000
)

// Errors. Each wraps the httpx sentinel its HTTP status comes from.
var (
	ErrInvalid           = fmt.Errorf("invalid dual-control request: %w", httpx.ErrBadRequest)
	ErrNotFound          = fmt.Errorf("dual-control request not found: %w", httpx.ErrNotFound)
	ErrSelfApproval      = fmt.Errorf("the requester cannot approve their own request: %w", httpx.ErrForbidden)
	ErrExcludedApprover  = fmt.Errorf("this identity is excluded from approving this request: %w", httpx.ErrForbidden)
	ErrDuplicateApprover = fmt.Errorf("already approved by this approver: %w", httpx.ErrConflict)
	ErrExpired           = fmt.Errorf("dual-control request expired: %w", httpx.ErrConflict)
	ErrNotApproved       = fmt.Errorf("dual-control request lacks the required approvals: %w", httpx.ErrForbidden)
	ErrPayloadMismatch   = fmt.Errorf("payload does not match the request: %w", httpx.ErrConflict)
	ErrAlreadyExecuted   = fmt.Errorf("dual-control request already executed: %w", httpx.ErrConflict)
	ErrClosed            = fmt.Errorf("dual-control request was rejected: %w", httpx.ErrConflict)
)

// Audit actions.
const (
	ActionCreate  = "dual.create"
	ActionApprove = "dual.approve"
	ActionReject  = "dual.reject"
	ActionExecute = "dual.execute"
)

// NewRequest describes an operation that needs approval.
type NewRequest struct {
	// Kind names the operation: "kms.key.recover", "ca.key.ceremony",
	// "seal.make".
	Kind string
	// Requester is the authenticated principal asking for the operation; it
	// can never approve it.
	Requester string
	// Payload is the exact canonical bytes of the operation's request. Only
	// its SM3 hash is stored; Execute must be given the same bytes.
	Payload []byte
	// Required is the number of distinct approvers, 1..MaxRequired.
	Required int
	// TTL is how long the request may wait for approval and execution.
	TTL time.Duration
	// ApproverRole is the role approvers are expected to hold, for display;
	// role checks are the caller's (internal/authz).
	ApproverRole string
	// Summary is the human text shown to approvers.
	Summary string
	// Excluded are identities that may not approve besides the requester:
	// those with a stake in the operation, such as the holder of the key
	// a recovery would deliver (at most MaxExcluded).
	Excluded []string
}

// Request is a stored dual-control request.
type Request struct {
	ID           string     `json:"id"`
	Kind         string     `json:"kind"`
	Requester    string     `json:"requester"`
	Summary      string     `json:"summary"`
	ApproverRole string     `json:"approver_role,omitempty"`
	Excluded     []string   `json:"excluded,omitempty"` // may not approve, besides the requester
	PayloadHash  []byte     `json:"payload_hash"`       // SM3
	Required     int        `json:"required"`
	Approvals    []Approval `json:"approvals"`
	Rejections   []Approval `json:"rejections,omitempty"`
	Status       Status     `json:"status"`
	Created      time.Time  `json:"created"`
	Expires      time.Time  `json:"expires"`
	Executed     time.Time  `json:"executed,omitzero"`
	ExecutedBy   string     `json:"executed_by,omitempty"`
}

// Approval is one approver's (or rejecter's) decision.
type Approval struct {
	Approver string    `json:"approver"`
	At       time.Time `json:"at"`
	Comment  string    `json:"comment,omitempty"`
}

// approvers counts the distinct approvers other than the requester and the
// excluded identities. They are left out again here, though Approve never
// records them, so a row written by anything else still cannot make a
// request approved.
func (r *Request) approvers() []string {
	var out []string
	for _, a := range r.Approvals {
		if a.Approver != r.Requester && !containsString(r.Excluded, a.Approver) && !containsString(out, a.Approver) {
			out = append(out, a.Approver)
		}
	}
	return out
}

// Approvers returns the distinct approvers that count: neither the
// requester nor an excluded identity.
func (r *Request) Approvers() []string { return r.approvers() }

func (r *Request) approvedBy(who string) bool {
	for _, a := range r.Approvals {
		if a.Approver == who {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Hash returns the SM3 hash that identifies payload, the value approvers
// state in Approve.
func Hash(payload []byte) []byte {
	h := sm3.Sum(payload)
	return h[:]
}

// Store keeps dual-control requests.
type Store struct {
	db    *store.DB
	log   *audit.Log
	clock clock.Clock
}

// New returns the store over db (migrated with Migrations and
// audit.Migrations); log receives every change and refusal; clk decides
// expiry (nil means the system clock).
func New(db *store.DB, log *audit.Log, clk clock.Clock) *Store {
	if clk == nil {
		clk = clock.New()
	}
	return &Store{db: db, log: log, clock: clk}
}

// refusal is a refused attempt: the error returned to the caller and the
// audit record that must be written for it once the transaction that found
// it has rolled back.
type refusal struct {
	err     error
	rec     audit.Record
	audited atomic.Bool
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// refuse builds the refusal of action on r by actor for the given reason.
func refuse(ctx context.Context, r *Request, action, actor, reason string, sentinel error, extra map[string]any) *refusal {
	details := map[string]any{
		"kind":         r.Kind,
		"payload_hash": hex.EncodeToString(r.PayloadHash),
		"reason":       reason,
	}
	for k, v := range extra {
		details[k] = v
	}
	return &refusal{
		err: fmt.Errorf("dual: %s %s: %w", strings.TrimPrefix(action, "dual."), r.ID, sentinel),
		rec: audit.Record{
			Actor: actor, Action: action, Object: object(r.ID), Outcome: audit.Denied,
			RequestID: httpx.RequestID(ctx), Details: details,
		},
	}
}

// AuditRefusal records the refusal carried by err, if any and not recorded
// yet, in the audit log in a transaction of its own, and returns err (joined
// with any failure to record it). Approve, Reject and Do call it themselves.
// A caller of Execute must call it with the error of its transaction after
// that transaction has ended — not inside it: on SQLite the store has one
// writer connection, and the caller's rolled-back transaction would take the
// record with it.
//
//	err := db.Tx(ctx, func(tx *store.Tx) error {
//		if err := d.Execute(ctx, tx, id, payload); err != nil {
//			return err
//		}
//		return recoverKey(ctx, tx, payload)
//	})
//	return d.AuditRefusal(ctx, err)
func (s *Store) AuditRefusal(ctx context.Context, err error) error {
	var r *refusal
	if !errors.As(err, &r) || r.audited.Swap(true) {
		return err
	}
	if _, aerr := s.log.Write(ctx, s.db, r.rec); aerr != nil {
		return errors.Join(err, fmt.Errorf("dual: audit refusal: %w", aerr))
	}
	return err
}

func object(id string) string { return "dual/" + id }

// newID returns 16 random bytes in hex.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dual: request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// validID reports whether id can name a request, so that malformed IDs are
// not found without touching the database.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

func validKind(k string) bool {
	if k == "" || len(k) > maxKindLen {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validActor(a string) bool { return a != "" && len(a) <= maxActorLen }

// Validate reports what is wrong with n, wrapping ErrInvalid.
func (n *NewRequest) Validate() error {
	var bad []string
	if !validKind(n.Kind) {
		bad = append(bad, "kind must be 1-64 of [a-z0-9._-]")
	}
	if !validActor(n.Requester) {
		bad = append(bad, "requester is required")
	}
	if len(n.Payload) == 0 || len(n.Payload) > maxPayloadLen {
		bad = append(bad, "payload must be 1 byte to 1 MiB")
	}
	if n.Required < 1 || n.Required > MaxRequired {
		bad = append(bad, fmt.Sprintf("required must be 1-%d", MaxRequired))
	}
	if n.TTL <= 0 {
		bad = append(bad, "ttl must be positive")
	}
	if len(n.ApproverRole) > maxActorLen {
		bad = append(bad, "approver role too long")
	}
	if len(n.Summary) > maxTextLen {
		bad = append(bad, "summary too long")
	}
	if len(n.Excluded) > MaxExcluded {
		bad = append(bad, fmt.Sprintf("at most %d excluded approvers", MaxExcluded))
	}
	for _, x := range n.Excluded {
		if !validActor(x) {
			bad = append(bad, "an excluded approver is empty or too long")
			break
		}
	}
	if bad != nil {
		return fmt.Errorf("dual: %s: %w", strings.Join(bad, "; "), ErrInvalid)
	}
	return nil
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Create records a request and audits it as its requester.
func (s *Store) Create(ctx context.Context, n NewRequest) (*Request, error) {
	return s.CreateWith(ctx, n, nil)
}

// CreateWith is Create that also runs also, when not nil, in the
// transaction that records the request (the caller's own audit record of
// why it asked): if either fails, neither is recorded.
func (s *Store) CreateWith(ctx context.Context, n NewRequest, also func(tx *store.Tx, r *Request) error) (*Request, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	now := s.clock.Now().UTC()
	r := &Request{
		ID: id, Kind: n.Kind, Requester: n.Requester, Summary: n.Summary, ApproverRole: n.ApproverRole,
		PayloadHash: Hash(n.Payload), Required: n.Required, Status: StatusPending,
		Created: now, Expires: now.Add(n.TTL),
	}
	for _, x := range n.Excluded {
		if x != n.Requester && !containsString(r.Excluded, x) {
			r.Excluded = append(r.Excluded, x)
		}
	}
	_, err = s.log.Do(ctx, s.db, audit.Record{
		Actor: n.Requester, Action: ActionCreate, Object: object(id), Outcome: audit.Success,
		RequestID: httpx.RequestID(ctx),
		Details: map[string]any{
			"kind": r.Kind, "payload_hash": hex.EncodeToString(r.PayloadHash), "required": r.Required,
			"approver_role": r.ApproverRole, "expires": r.Expires.Format(time.RFC3339Nano), "excluded": r.Excluded,
		},
	}, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO dual_requests
			(id, kind, requester, summary, approver_role, payload_hash, required, status, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Kind, r.Requester, r.Summary, r.ApproverRole, r.PayloadHash, r.Required,
			string(StatusPending), nanos(r.Created), nanos(r.Expires))
		if err != nil {
			return err
		}
		for _, x := range r.Excluded {
			if _, err := tx.Exec(ctx, "INSERT INTO dual_excluded (request_id, actor) VALUES (?, ?)", r.ID, x); err != nil {
				return err
			}
		}
		if also == nil {
			return nil
		}
		return also(tx, r)
	})
	if err != nil {
		return nil, fmt.Errorf("dual: create %s request: %w", n.Kind, err)
	}
	return r, nil
}

// Approve records approver's approval of the request id. payloadHash is the
// SM3 hash of the payload the approver was shown (Hash): it must equal the
// request's, so an approval always binds to the exact request. It is refused,
// and the refusal audited, when the approver is the requester or excluded
// (NewRequest.Excluded), has already
// approved, states another hash, or the request is expired, rejected or
// executed. Approvals beyond Required are recorded too. It returns the
// request as it stands after the approval.
func (s *Store) Approve(ctx context.Context, id, approver string, payloadHash []byte, comment string) (*Request, error) {
	if !validActor(approver) || len(comment) > maxTextLen {
		return nil, fmt.Errorf("dual: approve %s: approver required, comment at most %d bytes: %w", id, maxTextLen, ErrInvalid)
	}
	var out *Request
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		r, err := s.load(ctx, tx, id, true)
		if err != nil {
			return fmt.Errorf("dual: approve %s: %w", id, err)
		}
		if ref := closedRefusal(ctx, r, ActionApprove, approver); ref != nil {
			return ref
		}
		switch {
		case approver == r.Requester:
			return refuse(ctx, r, ActionApprove, approver, "self-approval", ErrSelfApproval, nil)
		case containsString(r.Excluded, approver):
			return refuse(ctx, r, ActionApprove, approver, "excluded-approver", ErrExcludedApprover, nil)
		case !bytes.Equal(payloadHash, r.PayloadHash):
			return refuse(ctx, r, ActionApprove, approver, "payload-mismatch", ErrPayloadMismatch,
				map[string]any{"stated_hash": hex.EncodeToString(payloadHash)})
		case r.approvedBy(approver):
			return refuse(ctx, r, ActionApprove, approver, "duplicate-approver", ErrDuplicateApprover, nil)
		}
		now := s.clock.Now().UTC()
		if _, err := tx.Exec(ctx, `INSERT INTO dual_decisions (request_id, decision, actor, at, comment)
			VALUES (?, 'approve', ?, ?, ?)`, r.ID, approver, nanos(now), comment); err != nil {
			if store.IsUniqueViolation(err) {
				// Only reachable if the row lock above did not serialise us;
				// the key still counts the approver once.
				return refuse(ctx, r, ActionApprove, approver, "duplicate-approver", ErrDuplicateApprover, nil)
			}
			return fmt.Errorf("dual: approve %s: %w", id, err)
		}
		r.Approvals = append(r.Approvals, Approval{Approver: approver, At: now, Comment: comment})
		n := len(r.approvers())
		if r.Status == StatusPending && n >= r.Required {
			res, err := tx.Exec(ctx, "UPDATE dual_requests SET status = 'approved' WHERE id = ? AND status = 'pending'", r.ID)
			if err != nil {
				return fmt.Errorf("dual: approve %s: %w", id, err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return fmt.Errorf("dual: approve %s: request changed under the row lock (%d rows, %v)", id, k, err)
			}
			r.Status = StatusApproved
		}
		if _, err := s.log.Append(ctx, tx, audit.Record{
			Actor: approver, Action: ActionApprove, Object: object(r.ID), Outcome: audit.Success,
			RequestID: httpx.RequestID(ctx),
			Details: map[string]any{
				"kind": r.Kind, "payload_hash": hex.EncodeToString(r.PayloadHash),
				"approvals": n, "required": r.Required, "status": string(r.Status), "comment": comment,
			},
		}); err != nil {
			return fmt.Errorf("dual: approve %s: %w", id, err)
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, s.AuditRefusal(ctx, err)
	}
	return out, nil
}

// Reject closes the request id for good: one rejection, by an approver or by
// the requester withdrawing it, ends it, even after it was approved as long as
// it has not been executed. It is refused (and audited) on an expired,
// already rejected or executed request.
func (s *Store) Reject(ctx context.Context, id, approver string, comment string) (*Request, error) {
	if !validActor(approver) || len(comment) > maxTextLen {
		return nil, fmt.Errorf("dual: reject %s: rejecter required, comment at most %d bytes: %w", id, maxTextLen, ErrInvalid)
	}
	var out *Request
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		r, err := s.load(ctx, tx, id, true)
		if err != nil {
			return fmt.Errorf("dual: reject %s: %w", id, err)
		}
		if ref := closedRefusal(ctx, r, ActionReject, approver); ref != nil {
			return ref
		}
		now := s.clock.Now().UTC()
		if _, err := tx.Exec(ctx, `INSERT INTO dual_decisions (request_id, decision, actor, at, comment)
			VALUES (?, 'reject', ?, ?, ?)`, r.ID, approver, nanos(now), comment); err != nil {
			return fmt.Errorf("dual: reject %s: %w", id, err)
		}
		res, err := tx.Exec(ctx, "UPDATE dual_requests SET status = 'rejected' WHERE id = ? AND status IN ('pending', 'approved')", r.ID)
		if err != nil {
			return fmt.Errorf("dual: reject %s: %w", id, err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			return fmt.Errorf("dual: reject %s: request changed under the row lock (%d rows, %v)", id, k, err)
		}
		r.Rejections = append(r.Rejections, Approval{Approver: approver, At: now, Comment: comment})
		r.Status = StatusRejected
		if _, err := s.log.Append(ctx, tx, audit.Record{
			Actor: approver, Action: ActionReject, Object: object(r.ID), Outcome: audit.Success,
			RequestID: httpx.RequestID(ctx),
			Details: map[string]any{
				"kind": r.Kind, "payload_hash": hex.EncodeToString(r.PayloadHash),
				"withdrawn": approver == r.Requester, "comment": comment,
			},
		}); err != nil {
			return fmt.Errorf("dual: reject %s: %w", id, err)
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, s.AuditRefusal(ctx, err)
	}
	return out, nil
}

// closedRefusal refuses any action on a request that can no longer change:
// executed, rejected or expired.
func closedRefusal(ctx context.Context, r *Request, action, actor string) *refusal {
	switch r.Status {
	case StatusExecuted:
		return refuse(ctx, r, action, actor, "already-executed", ErrAlreadyExecuted, nil)
	case StatusRejected:
		return refuse(ctx, r, action, actor, "closed", ErrClosed, nil)
	case StatusExpired:
		return refuse(ctx, r, action, actor, "expired", ErrExpired,
			map[string]any{"expires": r.Expires.Format(time.RFC3339Nano)})
	}
	return nil
}

// Execute consumes the approval of request id for the operation about to run
// in tx, the operation's own transaction. Call it just before acting, with
// the exact payload acted on. It checks that SM3(payload) is the request's
// hash, that at least Required distinct approvers other than the requester
// and the excluded identities approved, that the request has not expired and has not been executed or
// rejected, and marks it executed (audited in tx, actor audit.ActorFrom(ctx)).
// The approval is therefore single-use: of two concurrent Executes exactly one
// succeeds, and if tx rolls back the approval is not spent.
//
// On refusal nothing is written to tx; pass the error of the transaction to
// AuditRefusal once it has ended, or use Do, which does both. Call Execute
// before the operation appends its own audit records: it locks the request
// row and then the audit head, the order Approve and Reject use.
func (s *Store) Execute(ctx context.Context, tx *store.Tx, id string, payload []byte) error {
	actor := audit.ActorFrom(ctx)
	r, err := s.load(ctx, tx, id, false)
	if err != nil {
		return fmt.Errorf("dual: execute %s: %w", id, err)
	}
	if ref := closedRefusal(ctx, r, ActionExecute, actor); ref != nil {
		return ref
	}
	got := Hash(payload)
	if !bytes.Equal(got, r.PayloadHash) {
		return refuse(ctx, r, ActionExecute, actor, "payload-mismatch", ErrPayloadMismatch,
			map[string]any{"stated_hash": hex.EncodeToString(got)})
	}
	approvers := r.approvers()
	if r.Status != StatusApproved || len(approvers) < r.Required {
		return refuse(ctx, r, ActionExecute, actor, "not-approved", ErrNotApproved,
			map[string]any{"approvals": len(approvers), "required": r.Required})
	}
	now := s.clock.Now().UTC()
	if !now.Before(r.Expires) { // the clock moved past the expiry since load read it
		return refuse(ctx, r, ActionExecute, actor, "expired", ErrExpired,
			map[string]any{"expires": r.Expires.Format(time.RFC3339Nano)})
	}
	// The conditional UPDATE is the single-use guard: a concurrent Execute
	// that committed first leaves no 'approved' row to update (on PostgreSQL
	// the WHERE clause is re-evaluated after the winner's lock is released).
	res, err := tx.Exec(ctx, `UPDATE dual_requests SET status = 'executed', executed_at = ?, executed_by = ?
		WHERE id = ? AND status = 'approved' AND expires_at > ?`, nanos(now), actor, r.ID, nanos(now))
	if err != nil {
		return fmt.Errorf("dual: execute %s: %w", id, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("dual: execute %s: %w", id, err)
	}
	if k != 1 {
		return refuse(ctx, r, ActionExecute, actor, "already-executed", ErrAlreadyExecuted, nil)
	}
	if _, err := s.log.Append(ctx, tx, audit.Record{
		Actor: actor, Action: ActionExecute, Object: object(r.ID), Outcome: audit.Success,
		RequestID: httpx.RequestID(ctx),
		Details: map[string]any{
			"kind": r.Kind, "payload_hash": hex.EncodeToString(r.PayloadHash),
			"requester": r.Requester, "approvers": approvers, "required": r.Required,
		},
	}); err != nil {
		return fmt.Errorf("dual: execute %s: %w", id, err)
	}
	return nil
}

// Do runs the operation fn in one transaction with Execute: the approval is
// spent if and only if fn succeeds. A refusal by Execute is audited after the
// transaction has rolled back; fn is not called then. Errors from fn are
// returned as they are (the operation audits its own failures).
func (s *Store) Do(ctx context.Context, id string, payload []byte, fn func(tx *store.Tx) error) error {
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		if err := s.Execute(ctx, tx, id, payload); err != nil {
			return err
		}
		if fn == nil {
			return nil
		}
		return fn(tx)
	})
	return s.AuditRefusal(ctx, err)
}

const selectRequest = `SELECT id, kind, requester, summary, approver_role, payload_hash, required, status,
	created_at, expires_at, executed_at, executed_by FROM dual_requests`

type scanner interface{ Scan(dest ...any) error }

func scanRequest(row scanner, now time.Time) (*Request, error) {
	var (
		r                          Request
		status                     string
		created, expires, executed int64
	)
	if err := row.Scan(&r.ID, &r.Kind, &r.Requester, &r.Summary, &r.ApproverRole, &r.PayloadHash, &r.Required,
		&status, &created, &expires, &executed, &r.ExecutedBy); err != nil {
		return nil, err
	}
	r.Status = Status(status)
	r.Created, r.Expires, r.Executed = fromNanos(created), fromNanos(expires), fromNanos(executed)
	if (r.Status == StatusPending || r.Status == StatusApproved) && !now.Before(r.Expires) {
		r.Status = StatusExpired
	}
	return &r, nil
}

// load reads request id with its decisions. lock takes the row lock on
// PostgreSQL (SQLite's single writer already serialises writers), so that
// concurrent approvals of one request run one after the other and each sees
// the approvals committed before it.
func (s *Store) load(ctx context.Context, q store.Querier, id string, lock bool) (*Request, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	query := selectRequest + " WHERE id = ?"
	if lock && q.Driver() == store.Postgres {
		query += " FOR UPDATE"
	}
	r, err := scanRequest(q.QueryRow(ctx, query, id), s.clock.Now())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if err := loadDecisions(ctx, q, []*Request{r}); err != nil {
		return nil, err
	}
	return r, nil
}

// loadDecisions fills the approvals, rejections and excluded approvers of
// rs.
func loadDecisions(ctx context.Context, q store.Querier, rs []*Request) error {
	if len(rs) == 0 {
		return nil
	}
	byID := make(map[string]*Request, len(rs))
	args := make([]any, len(rs))
	for i, r := range rs {
		byID[r.ID] = r
		args[i] = r.ID
	}
	rows, err := q.Query(ctx, `SELECT request_id, decision, actor, at, comment FROM dual_decisions
		WHERE request_id IN (?`+strings.Repeat(", ?", len(rs)-1)+`) ORDER BY at, actor`, args...)
	if err != nil {
		return fmt.Errorf("read decisions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			rid, decision string
			a             Approval
			at            int64
		)
		if err := rows.Scan(&rid, &decision, &a.Approver, &at, &a.Comment); err != nil {
			return fmt.Errorf("read decisions: %w", err)
		}
		a.At = fromNanos(at)
		r := byID[rid]
		if decision == "approve" {
			r.Approvals = append(r.Approvals, a)
		} else {
			r.Rejections = append(r.Rejections, a)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read decisions: %w", err)
	}
	rows.Close()
	rows, err = q.Query(ctx, `SELECT request_id, actor FROM dual_excluded
		WHERE request_id IN (?`+strings.Repeat(", ?", len(rs)-1)+`) ORDER BY actor`, args...)
	if err != nil {
		return fmt.Errorf("read excluded approvers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rid, actor string
		if err := rows.Scan(&rid, &actor); err != nil {
			return fmt.Errorf("read excluded approvers: %w", err)
		}
		byID[rid].Excluded = append(byID[rid].Excluded, actor)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read excluded approvers: %w", err)
	}
	return nil
}

// Get returns request id.
func (s *Store) Get(ctx context.Context, id string) (*Request, error) {
	var r *Request
	err := s.db.Read(ctx, func(q store.Querier) error {
		var err error
		r, err = s.load(ctx, q, id, false)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dual: get %s: %w", id, err)
	}
	return r, nil
}

// Filter selects requests for List. Zero fields match everything.
type Filter struct {
	Kind      string
	Requester string
	Status    Status
	// Awaiting selects the pending, unexpired requests that this identity
	// may still approve: not its own, not excluded and not yet approved by
	// it (a to-do list; role checks remain the caller's).
	Awaiting string
	// Limit caps the result (default 100, at most 1000); newest first.
	Limit int
}

// List returns the requests matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]*Request, error) {
	now := s.clock.Now()
	var (
		where []string
		args  []any
	)
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if f.Requester != "" {
		where, args = append(where, "requester = ?"), append(args, f.Requester)
	}
	switch f.Status {
	case "":
	case StatusPending, StatusApproved:
		where, args = append(where, "status = ? AND expires_at > ?"), append(args, string(f.Status), nanos(now))
	case StatusExpired:
		where, args = append(where, "status IN ('pending', 'approved') AND expires_at <= ?"), append(args, nanos(now))
	case StatusRejected, StatusExecuted:
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	default:
		return nil, fmt.Errorf("dual: list: unknown status %q: %w", f.Status, ErrInvalid)
	}
	if f.Awaiting != "" {
		where = append(where, `status = 'pending' AND expires_at > ? AND requester <> ?
			AND NOT EXISTS (SELECT 1 FROM dual_decisions d WHERE d.request_id = dual_requests.id AND d.decision = 'approve' AND d.actor = ?)
			AND NOT EXISTS (SELECT 1 FROM dual_excluded x WHERE x.request_id = dual_requests.id AND x.actor = ?)`)
		args = append(args, nanos(now), f.Awaiting, f.Awaiting, f.Awaiting)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	query := selectRequest
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id LIMIT ?"
	args = append(args, limit)

	var out []*Request
	err := s.db.Read(ctx, func(q store.Querier) error {
		out = nil
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRequest(rows, now)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		return loadDecisions(ctx, q, out)
	})
	if err != nil {
		return nil, fmt.Errorf("dual: list: %w", err)
	}
	return out, nil
}
