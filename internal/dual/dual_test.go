package dual

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

var t0 = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// marker is part of every test payload; it must never reach the audit log.
const marker = "PAYLOAD-MARKER-7f3a"

func payloadFor(s string) []byte {
	return []byte(`{"op":"kms.key.recover","key":"` + s + `","note":"` + marker + `"}`)
}

type env struct {
	ctx context.Context
	db  *store.DB
	clk *clock.Fake
	d   *Store
}

func setup(t *testing.T, db *store.DB) *env {
	t.Helper()
	e := &env{
		ctx: audit.WithActor(context.Background(), "operator"),
		db:  db,
		clk: clock.NewFake(t0),
	}
	e.d = New(db, audit.New("n1", e.clk), e.clk)
	// A stand-in for the guarded operation's own table: what it writes must
	// commit exactly when the approval is consumed.
	if _, err := db.Exec(e.ctx, "CREATE TABLE op_effects (request_id TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) create(t *testing.T, requester string, required int, payload []byte, ttl time.Duration) *Request {
	t.Helper()
	r, err := e.d.Create(e.ctx, NewRequest{
		Kind: "kms.key.recover", Requester: requester, Payload: payload, Required: required, TTL: ttl,
		ApproverRole: "secadmin", Summary: "recover the encryption key of a departed official",
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// operate runs the guarded operation for request id: it records one effect.
func (e *env) operate(id string, payload []byte) error {
	return e.d.Do(e.ctx, id, payload, func(tx *store.Tx) error {
		_, err := tx.Exec(e.ctx, "INSERT INTO op_effects (request_id) VALUES (?)", id)
		return err
	})
}

func (e *env) effects(t *testing.T, id string) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(e.ctx, "SELECT COUNT(*) FROM op_effects WHERE request_id = ?", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) get(t *testing.T, id string) *Request {
	t.Helper()
	r, err := e.d.Get(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// event is the part of an audit record the tests compare.
type event struct {
	Action, Actor, Outcome, Reason string
}

func (ev event) String() string {
	return fmt.Sprintf("%s/%s/%s/%s", ev.Action, ev.Actor, ev.Outcome, ev.Reason)
}

// trail returns the audit records about request id, in order, and their
// details.
func (e *env) trail(t *testing.T, id string) ([]event, []map[string]any) {
	t.Helper()
	var (
		evs     []event
		details []map[string]any
	)
	err := e.db.Read(e.ctx, func(q store.Querier) error {
		evs, details = nil, nil
		rows, err := q.Query(e.ctx, "SELECT action, actor, outcome, details FROM audit_log WHERE object = ? ORDER BY seq", "dual/"+id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ev event
			var d string
			if err := rows.Scan(&ev.Action, &ev.Actor, &ev.Outcome, &d); err != nil {
				return err
			}
			m := map[string]any{}
			if err := json.Unmarshal([]byte(d), &m); err != nil {
				return err
			}
			ev.Reason, _ = m["reason"].(string)
			evs, details = append(evs, ev), append(details, m)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs, details
}

func (e *env) wantTrail(t *testing.T, id string, want ...event) []map[string]any {
	t.Helper()
	got, details := e.trail(t, id)
	if !slices.Equal(got, want) {
		t.Errorf("audit trail of %s:\n got %v\nwant %v", id, got, want)
	}
	return details
}

// verifyAudit checks the whole chain and that no payload reached it.
func (e *env) verifyAudit(t *testing.T) {
	t.Helper()
	rep, err := audit.Verify(e.ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records == 0 {
		t.Errorf("audit chain: %d records, problems %v", rep.Records, rep.Problems)
	}
	var buf bytes.Buffer
	if _, err := audit.Export(e.ctx, e.db, 0, &buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), marker) {
		t.Error("a payload reached the audit log")
	}
}

func wantErr(t *testing.T, what string, err, sentinel error, status int) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: error %v, want %v", what, err, sentinel)
	}
	if got := httpx.StatusOf(err); got != status {
		t.Errorf("%s: HTTP status %d, want %d", what, got, status)
	}
}

var (
	created   = func(a string) event { return event{ActionCreate, a, audit.Success, ""} }
	approved  = func(a string) event { return event{ActionApprove, a, audit.Success, ""} }
	rejected  = func(a string) event { return event{ActionReject, a, audit.Success, ""} }
	executed  = func(a string) event { return event{ActionExecute, a, audit.Success, ""} }
	deniedTo  = func(action, a, reason string) event { return event{action, a, audit.Denied, reason} }
	operator  = "operator"
	errFailed = errors.New("operation failed")
)

// TestMakerChecker is ACCEPTANCE.md K-01: the requester approving their own
// request is refused; one approver where two are required is refused; two
// distinct approvers let the operation execute, once.
func TestMakerChecker(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := setup(t, db)
		payload := payloadFor("kms:enc/42")
		r := e.create(t, "alice", 2, payload, time.Hour)
		if r.Status != StatusPending || len(r.ID) != 32 || !bytes.Equal(r.PayloadHash, Hash(payload)) ||
			!r.Expires.Equal(t0.Add(time.Hour)) {
			t.Fatalf("created %+v", r)
		}

		// 1. The requester approves their own request.
		_, err := e.d.Approve(e.ctx, r.ID, "alice", Hash(payload), "")
		wantErr(t, "self-approval", err, ErrSelfApproval, http.StatusForbidden)

		// 2. One approver where two are required.
		got, err := e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), "checked the ticket")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != StatusPending || len(got.Approvals) != 1 || got.Approvals[0].Approver != "bob" ||
			got.Approvals[0].Comment != "checked the ticket" || !got.Approvals[0].At.Equal(t0) {
			t.Fatalf("after one approval: %+v", got)
		}
		wantErr(t, "execute with one of two approvals", e.operate(r.ID, payload), ErrNotApproved, http.StatusForbidden)
		if n := e.effects(t, r.ID); n != 0 {
			t.Fatalf("operation ran %d times without approval", n)
		}

		// 3. Two distinct approvers.
		e.clk.Add(time.Minute)
		got, err = e.d.Approve(e.ctx, r.ID, "carol", Hash(payload), "")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != StatusApproved || len(got.Approvals) != 2 {
			t.Fatalf("after two approvals: %+v", got)
		}
		// An operation that fails does not spend the approval.
		err = e.d.Do(e.ctx, r.ID, payload, func(tx *store.Tx) error {
			if _, err := tx.Exec(e.ctx, "INSERT INTO op_effects (request_id) VALUES (?)", r.ID); err != nil {
				return err
			}
			return errFailed
		})
		if !errors.Is(err, errFailed) {
			t.Fatalf("failing operation: %v", err)
		}
		if s := e.get(t, r.ID).Status; s != StatusApproved || e.effects(t, r.ID) != 0 {
			t.Fatalf("failed operation left status %s and %d effects", s, e.effects(t, r.ID))
		}
		// The third attempt executes, exactly once.
		e.clk.Add(time.Minute)
		if err := e.operate(r.ID, payload); err != nil {
			t.Fatalf("execute with two approvals: %v", err)
		}
		wantErr(t, "second execute", e.operate(r.ID, payload), ErrAlreadyExecuted, http.StatusConflict)
		if n := e.effects(t, r.ID); n != 1 {
			t.Fatalf("operation ran %d times", n)
		}
		final := e.get(t, r.ID)
		if final.Status != StatusExecuted || !final.Executed.Equal(t0.Add(2*time.Minute)) || final.ExecutedBy != operator {
			t.Fatalf("executed request: %+v", final)
		}
		_, err = e.d.Approve(e.ctx, r.ID, "dave", Hash(payload), "")
		wantErr(t, "approve after execution", err, ErrAlreadyExecuted, http.StatusConflict)

		details := e.wantTrail(t, r.ID,
			created("alice"),
			deniedTo(ActionApprove, "alice", "self-approval"),
			approved("bob"),
			deniedTo(ActionExecute, operator, "not-approved"),
			approved("carol"),
			executed(operator),
			deniedTo(ActionExecute, operator, "already-executed"),
			deniedTo(ActionApprove, "dave", "already-executed"),
		)
		for i, d := range details {
			if d["kind"] != "kms.key.recover" || d["payload_hash"] != hex.EncodeToString(Hash(payload)) {
				t.Errorf("audit record %d lacks kind or payload hash: %v", i, d)
			}
		}
		if len(details) == 8 {
			if a, _ := details[5]["approvers"].([]any); len(a) != 2 || a[0] != "bob" || a[1] != "carol" {
				t.Errorf("execute record names approvers %v", details[5]["approvers"])
			}
		}
		e.verifyAudit(t)
	}, Migrations, audit.Migrations)
}

// TestExcludedApprovers: an identity the request excludes (the holder of
// the key a recovery delivers) is refused as an approver, audited, left off
// the to-do list, and never counted, even by a decision row written by
// something else; the request still needs Required others.
func TestExcludedApprovers(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := setup(t, db)
		payload := payloadFor("kms:enc/43")
		r, err := e.d.Create(e.ctx, NewRequest{Kind: "kms.key.recover", Requester: "alice", Payload: payload, Required: 2, TTL: time.Hour,
			Summary: "to officer bob", Excluded: []string{"bob", "alice", "bob"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Excluded, []string{"bob"}) || !slices.Equal(e.get(t, r.ID).Excluded, []string{"bob"}) {
			t.Fatalf("excluded %v, stored %v", r.Excluded, e.get(t, r.ID).Excluded)
		}
		if got, err := e.d.List(e.ctx, Filter{Awaiting: "bob"}); err != nil || len(got) != 0 {
			t.Errorf("awaiting the excluded approver: %v, %v", got, err)
		}
		if got, err := e.d.List(e.ctx, Filter{Awaiting: "carol"}); err != nil || len(got) != 1 || !slices.Equal(got[0].Excluded, []string{"bob"}) {
			t.Errorf("awaiting another approver: %v, %v", got, err)
		}
		_, err = e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), "")
		wantErr(t, "excluded approver", err, ErrExcludedApprover, http.StatusForbidden)
		if _, err := e.d.Approve(e.ctx, r.ID, "carol", Hash(payload), ""); err != nil {
			t.Fatal(err)
		}
		// A decision row written around Approve still does not count.
		if _, err := db.Exec(e.ctx, "INSERT INTO dual_decisions (request_id, decision, actor, at, comment) VALUES (?, 'approve', 'bob', 1, '')", r.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(e.ctx, "UPDATE dual_requests SET status = 'approved' WHERE id = ?", r.ID); err != nil {
			t.Fatal(err)
		}
		got := e.get(t, r.ID)
		if !slices.Equal(got.Approvers(), []string{"carol"}) {
			t.Errorf("approvers that count: %v", got.Approvers())
		}
		wantErr(t, "execute with the excluded approver's row", e.operate(r.ID, payload), ErrNotApproved, http.StatusForbidden)
		if _, err := db.Exec(e.ctx, "UPDATE dual_requests SET status = 'pending' WHERE id = ?", r.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := e.d.Approve(e.ctx, r.ID, "dave", Hash(payload), ""); err != nil || got.Status != StatusApproved {
			t.Fatalf("second other approver: %v, %v", got, err)
		}
		if err := e.operate(r.ID, payload); err != nil {
			t.Fatal(err)
		}
		e.wantTrail(t, r.ID,
			created("alice"),
			deniedTo(ActionApprove, "bob", "excluded-approver"),
			approved("carol"),
			deniedTo(ActionExecute, operator, "not-approved"),
			approved("dave"),
			executed(operator),
		)
		if _, err := e.d.Create(e.ctx, NewRequest{Kind: "seal.make", Requester: "alice", Payload: payload, Required: 1, TTL: time.Hour,
			Excluded: []string{""}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("an empty excluded approver: %v", err)
		}
	}, Migrations, audit.Migrations)
}

func TestRefusals(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := setup(t, db)
		payload := payloadFor("kms:enc/7")
		other := payloadFor("kms:enc/8")

		t.Run("duplicate approver", func(t *testing.T) {
			r := e.create(t, "alice", 2, payload, time.Hour)
			if _, err := e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), ""); err != nil {
				t.Fatal(err)
			}
			_, err := e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), "again")
			wantErr(t, "duplicate", err, ErrDuplicateApprover, http.StatusConflict)
			if got := e.get(t, r.ID); len(got.Approvals) != 1 || got.Status != StatusPending {
				t.Fatalf("after duplicate: %+v", got)
			}
			e.wantTrail(t, r.ID, created("alice"), approved("bob"), deniedTo(ActionApprove, "bob", "duplicate-approver"))
		})

		t.Run("payload mismatch at approve", func(t *testing.T) {
			r := e.create(t, "alice", 1, payload, time.Hour)
			for _, h := range [][]byte{Hash(other), nil, Hash(payload)[:16]} {
				_, err := e.d.Approve(e.ctx, r.ID, "bob", h, "")
				wantErr(t, fmt.Sprintf("stated hash %x", h), err, ErrPayloadMismatch, http.StatusConflict)
			}
			if got := e.get(t, r.ID); len(got.Approvals) != 0 {
				t.Fatalf("mismatched approval counted: %+v", got)
			}
			mm := deniedTo(ActionApprove, "bob", "payload-mismatch")
			d := e.wantTrail(t, r.ID, created("alice"), mm, mm, mm)
			if len(d) == 4 && d[1]["stated_hash"] != hex.EncodeToString(Hash(other)) {
				t.Errorf("refusal records stated hash %v", d[1]["stated_hash"])
			}
		})

		t.Run("payload mismatch at execute", func(t *testing.T) {
			r := e.create(t, "alice", 2, payload, time.Hour)
			for _, a := range []string{"bob", "carol"} {
				if _, err := e.d.Approve(e.ctx, r.ID, a, Hash(payload), ""); err != nil {
					t.Fatal(err)
				}
			}
			wantErr(t, "execute other payload", e.operate(r.ID, other), ErrPayloadMismatch, http.StatusConflict)
			if s := e.get(t, r.ID).Status; s != StatusApproved || e.effects(t, r.ID) != 0 {
				t.Fatalf("mismatched execute changed status to %s", s)
			}
			if err := e.operate(r.ID, payload); err != nil {
				t.Fatalf("execute the approved payload: %v", err)
			}
			e.wantTrail(t, r.ID, created("alice"), approved("bob"), approved("carol"),
				deniedTo(ActionExecute, operator, "payload-mismatch"), executed(operator))
		})

		t.Run("execute in the caller's transaction", func(t *testing.T) {
			r := e.create(t, "alice", 1, payload, time.Hour)
			run := func() error {
				return e.d.AuditRefusal(e.ctx, e.db.Tx(e.ctx, func(tx *store.Tx) error {
					if err := e.d.Execute(e.ctx, tx, r.ID, payload); err != nil {
						return err
					}
					_, err := tx.Exec(e.ctx, "INSERT INTO op_effects (request_id) VALUES (?)", r.ID)
					return err
				}))
			}
			wantErr(t, "execute before approval", run(), ErrNotApproved, http.StatusForbidden)
			if _, err := e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), ""); err != nil {
				t.Fatal(err)
			}
			if err := run(); err != nil {
				t.Fatal(err)
			}
			if n := e.effects(t, r.ID); n != 1 {
				t.Fatalf("%d effects", n)
			}
			e.wantTrail(t, r.ID, created("alice"), deniedTo(ActionExecute, operator, "not-approved"),
				approved("bob"), executed(operator))
		})

		t.Run("expiry", func(t *testing.T) {
			r := e.create(t, "alice", 2, payload, time.Hour)
			if _, err := e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), ""); err != nil {
				t.Fatal(err)
			}
			e.clk.Add(59 * time.Minute)
			if _, err := e.d.Approve(e.ctx, r.ID, "carol", Hash(payload), ""); err != nil {
				t.Fatal(err)
			}
			e.clk.Add(time.Minute) // now == Expires: expired
			if s := e.get(t, r.ID).Status; s != StatusExpired {
				t.Fatalf("status at expiry %s", s)
			}
			wantErr(t, "execute", e.operate(r.ID, payload), ErrExpired, http.StatusConflict)
			_, err := e.d.Approve(e.ctx, r.ID, "dave", Hash(payload), "")
			wantErr(t, "approve", err, ErrExpired, http.StatusConflict)
			_, err = e.d.Reject(e.ctx, r.ID, "dave", "")
			wantErr(t, "reject", err, ErrExpired, http.StatusConflict)
			if n := e.effects(t, r.ID); n != 0 {
				t.Fatalf("expired request executed %d times", n)
			}
			e.wantTrail(t, r.ID, created("alice"), approved("bob"), approved("carol"),
				deniedTo(ActionExecute, operator, "expired"), deniedTo(ActionApprove, "dave", "expired"),
				deniedTo(ActionReject, "dave", "expired"))
			// A clock set back makes it live again only until the original
			// expiry, which was fixed at creation.
			e.clk.Add(-time.Nanosecond)
			if s := e.get(t, r.ID).Status; s != StatusApproved {
				t.Fatalf("status just before expiry %s", s)
			}
			e.clk.Add(time.Nanosecond)
		})

		t.Run("rejection closes", func(t *testing.T) {
			r := e.create(t, "alice", 2, payload, time.Hour)
			for _, a := range []string{"bob", "carol"} {
				if _, err := e.d.Approve(e.ctx, r.ID, a, Hash(payload), ""); err != nil {
					t.Fatal(err)
				}
			}
			// A veto after the quorum, before execution, still closes it.
			got, err := e.d.Reject(e.ctx, r.ID, "dave", "wrong key")
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != StatusRejected || len(got.Rejections) != 1 || got.Rejections[0].Approver != "dave" ||
				got.Rejections[0].Comment != "wrong key" {
				t.Fatalf("rejected: %+v", got)
			}
			_, err = e.d.Approve(e.ctx, r.ID, "erin", Hash(payload), "")
			wantErr(t, "approve after rejection", err, ErrClosed, http.StatusConflict)
			wantErr(t, "execute after rejection", e.operate(r.ID, payload), ErrClosed, http.StatusConflict)
			_, err = e.d.Reject(e.ctx, r.ID, "bob", "")
			wantErr(t, "reject twice", err, ErrClosed, http.StatusConflict)
			if n := e.effects(t, r.ID); n != 0 {
				t.Fatalf("rejected request executed %d times", n)
			}
			if got := e.get(t, r.ID); got.Status != StatusRejected || len(got.Approvals) != 2 || len(got.Rejections) != 1 {
				t.Fatalf("stored: %+v", got)
			}
			e.wantTrail(t, r.ID, created("alice"), approved("bob"), approved("carol"), rejected("dave"),
				deniedTo(ActionApprove, "erin", "closed"), deniedTo(ActionExecute, operator, "closed"),
				deniedTo(ActionReject, "bob", "closed"))
		})

		t.Run("requester withdraws", func(t *testing.T) {
			r := e.create(t, "alice", 1, payload, time.Hour)
			if _, err := e.d.Reject(e.ctx, r.ID, "alice", "no longer needed"); err != nil {
				t.Fatal(err)
			}
			d := e.wantTrail(t, r.ID, created("alice"), rejected("alice"))
			if len(d) == 2 && d[1]["withdrawn"] != true {
				t.Errorf("withdrawal not marked: %v", d[1])
			}
		})

		t.Run("not found", func(t *testing.T) {
			for _, id := range []string{strings.Repeat("0", 32), "", "../etc", strings.Repeat("A", 32)} {
				_, err := e.d.Approve(e.ctx, id, "bob", Hash(payload), "")
				wantErr(t, "approve "+id, err, ErrNotFound, http.StatusNotFound)
				_, err = e.d.Reject(e.ctx, id, "bob", "")
				wantErr(t, "reject "+id, err, ErrNotFound, http.StatusNotFound)
				_, err = e.d.Get(e.ctx, id)
				wantErr(t, "get "+id, err, ErrNotFound, http.StatusNotFound)
				wantErr(t, "execute "+id, e.operate(id, payload), ErrNotFound, http.StatusNotFound)
			}
		})

		e.verifyAudit(t)
	}, Migrations, audit.Migrations)
}

func TestCreateValidation(t *testing.T) {
	db := storetest.SQLite(t, Migrations, audit.Migrations)
	e := setup(t, db)
	good := NewRequest{Kind: "seal.make", Requester: "alice", Payload: []byte("x"), Required: 2, TTL: time.Hour}
	tests := []struct {
		name string
		edit func(*NewRequest)
	}{
		{"no kind", func(n *NewRequest) { n.Kind = "" }},
		{"kind with spaces", func(n *NewRequest) { n.Kind = "seal make" }},
		{"kind too long", func(n *NewRequest) { n.Kind = strings.Repeat("k", 65) }},
		{"no requester", func(n *NewRequest) { n.Requester = "" }},
		{"no payload", func(n *NewRequest) { n.Payload = nil }},
		{"payload too large", func(n *NewRequest) { n.Payload = make([]byte, maxPayloadLen+1) }},
		{"zero approvers", func(n *NewRequest) { n.Required = 0 }},
		{"too many approvers", func(n *NewRequest) { n.Required = MaxRequired + 1 }},
		{"no ttl", func(n *NewRequest) { n.TTL = 0 }},
		{"negative ttl", func(n *NewRequest) { n.TTL = -time.Hour }},
		{"summary too long", func(n *NewRequest) { n.Summary = strings.Repeat("s", maxTextLen+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := good
			tt.edit(&n)
			_, err := e.d.Create(e.ctx, n)
			wantErr(t, tt.name, err, ErrInvalid, http.StatusBadRequest)
		})
	}
	if _, err := e.d.Create(e.ctx, good); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	r := e.create(t, "alice", 1, []byte("p"), time.Hour)
	_, err := e.d.Approve(e.ctx, r.ID, "", Hash([]byte("p")), "")
	wantErr(t, "empty approver", err, ErrInvalid, http.StatusBadRequest)
	_, err = e.d.Reject(e.ctx, r.ID, "", "")
	wantErr(t, "empty rejecter", err, ErrInvalid, http.StatusBadRequest)
	var n int
	if err := db.QueryRow(e.ctx, "SELECT COUNT(*) FROM dual_requests").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d requests stored (%v), want 2", n, err)
	}
}

func TestList(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := setup(t, db)
		p := []byte("p")
		mk := func(kind, requester string, ttl time.Duration) *Request {
			e.clk.Add(time.Second) // distinct creation times: newest first is well defined
			r, err := e.d.Create(e.ctx, NewRequest{Kind: kind, Requester: requester, Payload: p, Required: 1, TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a := mk("seal.make", "alice", time.Hour)       // pending
		b := mk("ca.key.ceremony", "alice", time.Hour) // approved by bob
		c := mk("seal.make", "bob", time.Hour)         // bob's own
		d := mk("seal.make", "carol", 10*time.Second)  // expires
		x := mk("kms.key.recover", "carol", time.Hour) // rejected
		if _, err := e.d.Approve(e.ctx, b.ID, "bob", Hash(p), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.d.Reject(e.ctx, x.ID, "dave", ""); err != nil {
			t.Fatal(err)
		}
		e.clk.Add(10 * time.Second)

		ids := func(rs []*Request) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		tests := []struct {
			name string
			f    Filter
			want []*Request
		}{
			{"all", Filter{}, []*Request{x, d, c, b, a}},
			{"kind", Filter{Kind: "seal.make"}, []*Request{d, c, a}},
			{"requester", Filter{Requester: "alice"}, []*Request{b, a}},
			{"pending", Filter{Status: StatusPending}, []*Request{c, a}},
			{"approved", Filter{Status: StatusApproved}, []*Request{b}},
			{"expired", Filter{Status: StatusExpired}, []*Request{d}},
			{"rejected", Filter{Status: StatusRejected}, []*Request{x}},
			{"awaiting bob", Filter{Awaiting: "bob"}, []*Request{a}},
			{"awaiting erin", Filter{Awaiting: "erin"}, []*Request{c, a}},
			{"limit", Filter{Limit: 2}, []*Request{x, d}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := e.d.List(e.ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(got), ids(tt.want)) {
					t.Errorf("got %v, want %v", ids(got), ids(tt.want))
				}
			})
		}
		all, err := e.d.List(e.ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			switch r.ID {
			case b.ID:
				if r.Status != StatusApproved || len(r.Approvals) != 1 || r.Approvals[0].Approver != "bob" {
					t.Errorf("listed b: %+v", r)
				}
			case x.ID:
				if r.Status != StatusRejected || len(r.Rejections) != 1 {
					t.Errorf("listed x: %+v", r)
				}
			case d.ID:
				if r.Status != StatusExpired {
					t.Errorf("listed d: %+v", r)
				}
			}
		}
		if _, err := e.d.List(e.ctx, Filter{Status: "bogus"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown status: %v", err)
		}
	}, Migrations, audit.Migrations)
}

// TestConcurrency checks the two races the store must win: approvals arriving
// together each count exactly once, and of executions arriving together
// exactly one runs.
func TestConcurrency(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := setup(t, db)
		payload := payloadFor("kms:enc/99")
		const n = 8

		parallel := func(f func(i int) error) []error {
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					errs[i] = f(i)
				})
			}
			close(start)
			wg.Wait()
			return errs
		}

		t.Run("distinct approvers", func(t *testing.T) {
			r := e.create(t, "alice", n, payload, time.Hour)
			errs := parallel(func(i int) error {
				_, err := e.d.Approve(e.ctx, r.ID, fmt.Sprintf("approver-%d", i), Hash(payload), "")
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Errorf("approver-%d: %v", i, err)
				}
			}
			got := e.get(t, r.ID)
			if len(got.Approvals) != n || got.Status != StatusApproved {
				t.Fatalf("%d approvals, status %s; want %d, approved", len(got.Approvals), got.Status, n)
			}
			// Each approval saw every one committed before it: the counts the
			// audit records carry are exactly 1..n.
			evs, details := e.trail(t, r.ID)
			var counts []int
			for i, ev := range evs {
				if ev.Action == ActionApprove && ev.Outcome == audit.Success {
					c, _ := details[i]["approvals"].(float64)
					counts = append(counts, int(c))
				}
			}
			slices.Sort(counts)
			if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(counts, want) {
				t.Errorf("approval counts %v, want %v", counts, want)
			}
		})

		t.Run("one approver racing itself", func(t *testing.T) {
			r := e.create(t, "alice", 2, payload, time.Hour)
			errs := parallel(func(int) error {
				_, err := e.d.Approve(e.ctx, r.ID, "bob", Hash(payload), "")
				return err
			})
			ok, dup := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrDuplicateApprover):
					dup++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			if ok != 1 || dup != n-1 {
				t.Errorf("%d approvals accepted and %d refused as duplicates; want 1 and %d", ok, dup, n-1)
			}
			if got := e.get(t, r.ID); len(got.Approvals) != 1 || got.Status != StatusPending {
				t.Errorf("stored %+v", got)
			}
		})

		t.Run("executions", func(t *testing.T) {
			r := e.create(t, "alice", 2, payload, time.Hour)
			for _, a := range []string{"bob", "carol"} {
				if _, err := e.d.Approve(e.ctx, r.ID, a, Hash(payload), ""); err != nil {
					t.Fatal(err)
				}
			}
			errs := parallel(func(int) error { return e.operate(r.ID, payload) })
			won, lost := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case errors.Is(err, ErrAlreadyExecuted):
					lost++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			if won != 1 || lost != n-1 {
				t.Errorf("%d executions won and %d lost; want 1 and %d", won, lost, n-1)
			}
			if c := e.effects(t, r.ID); c != 1 {
				t.Errorf("operation ran %d times", c)
			}
			evs, _ := e.trail(t, r.ID)
			var ex, denied int
			for _, ev := range evs {
				switch ev {
				case executed(operator):
					ex++
				case deniedTo(ActionExecute, operator, "already-executed"):
					denied++
				}
			}
			if ex != 1 || denied != n-1 {
				t.Errorf("audit: %d executions, %d refusals; want 1 and %d", ex, denied, n-1)
			}
		})

		e.verifyAudit(t)
	}, Migrations, audit.Migrations)
}
