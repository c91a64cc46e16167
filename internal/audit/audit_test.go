package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

func appendN(t *testing.T, ctx context.Context, l *Log, db *store.DB, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if _, err := l.Write(ctx, db, Record{
			Actor: "ra-officer", Action: "ca.issue", Object: fmt.Sprintf("serial/%02x", i),
			Outcome: Success, RequestID: fmt.Sprintf("req-%d", i),
			Details: map[string]any{"profile": "person-sign", "subject": "CN=张三", "n": i},
		}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

func kinds(rep *Report) []string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, fmt.Sprintf("%d:%s", p.Seq, p.Kind))
	}
	return out
}

func TestChain(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := New("node-1", clock.NewFake(time.Date(2026, 11, 21, 8, 0, 0, 123456789, time.UTC)))
		appendN(t, ctx, l, db, 12)
		rep, err := Verify(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Records != 12 || rep.LastSeq != 12 || rep.HeadSeq != 12 {
			t.Fatalf("clean chain: %+v", rep)
		}

		// Each tampering is named by its sequence number.
		steps := []struct {
			name string
			sql  []string
			want []string
		}{
			{"edit a field", []string{"UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"}, []string{"3:edited"}},
			{"delete a row", []string{"DELETE FROM audit_log WHERE seq = 6"}, []string{"3:edited", "6:deleted"}},
			{"truncate the tail", []string{"DELETE FROM audit_log WHERE seq > 10"}, []string{"3:edited", "6:deleted", "11:truncated"}},
		}
		for _, st := range steps {
			for _, q := range st.sql {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
			}
			rep, err := Verify(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(kinds(rep), " "); got != strings.Join(st.want, " ") {
				t.Fatalf("after %s: problems %q, want %q", st.name, got, strings.Join(st.want, " "))
			}
		}
	}, Migrations)
}

// A row rewritten together with a recomputed hash still breaks the link to
// its successor.
func TestRewrittenRowBreaksLink(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := New("node-1", nil)
		appendN(t, ctx, l, db, 5)
		var rows []Record
		var buf bytes.Buffer
		if n, err := Export(ctx, db, 0, &buf); err != nil || n != 5 {
			t.Fatalf("export: %d, %v", n, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var r struct {
				Seq      int64
				PrevHash string `json:"prev_hash"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			rows = append(rows, Record{Seq: r.Seq})
		}
		if len(rows) != 5 {
			t.Fatalf("exported %d", len(rows))
		}
		// Recompute seq 2 as a forger would, with a new actor.
		err := db.Tx(ctx, func(tx *store.Tx) error {
			var r Record
			var tm, details string
			if err := tx.QueryRow(ctx, "SELECT seq, time, node, object, outcome, request_id, details, prev_hash FROM audit_log WHERE seq = 2").
				Scan(&r.Seq, &tm, &r.Node, &r.Object, &r.Outcome, &r.RequestID, &details, &r.PrevHash); err != nil {
				return err
			}
			r.Time, _ = time.Parse(time.RFC3339Nano, tm)
			r.Actor, r.Action = "mallory", "ca.issue"
			h := chainHash(r.PrevHash, canonical(r, []byte(details)))
			_, err := tx.Exec(ctx, "UPDATE audit_log SET actor = ?, hash = ? WHERE seq = 2", r.Actor, h)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(kinds(rep), " "); got != "3:broken-link" {
			t.Fatalf("problems %q, want 3:broken-link", got)
		}
	}, Migrations)
}

// An action whose audit record cannot be written does not happen, and an
// action that fails leaves no success record.
func TestAtomicWithAction(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := New("node-1", nil)
		if _, err := db.Exec(ctx, "CREATE TABLE widgets (id BIGINT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		count := func(table string) int {
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		insert := func(id int) func(tx *store.Tx) error {
			return func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO widgets (id) VALUES (?)", id)
				return err
			}
		}
		rec := Record{Actor: "sysadmin", Action: "widget.create", Outcome: Success}
		if _, err := l.Do(ctx, db, rec, insert(1)); err != nil {
			t.Fatal(err)
		}
		// The action fails: no record.
		boom := errors.New("boom")
		if _, err := l.Do(ctx, db, rec, func(tx *store.Tx) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Do = %v", err)
		}
		if count("audit_log") != 1 {
			t.Fatal("a failed action left an audit record")
		}
		// The audit store becomes unwritable: the action is rolled back.
		if _, err := db.Exec(ctx, "ALTER TABLE audit_log RENAME TO audit_log_gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Do(ctx, db, rec, insert(2)); err == nil {
			t.Fatal("Do succeeded without an audit log")
		}
		if n := count("widgets"); n != 1 {
			t.Fatalf("widgets = %d: the unaudited action was committed", n)
		}
		if _, err := db.Exec(ctx, "ALTER TABLE audit_log_gone RENAME TO audit_log"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Write(ctx, db, Record{Actor: "x"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("incomplete record: %v", err)
		}
		rep, err := Verify(ctx, db)
		if err != nil || !rep.OK() {
			t.Fatalf("verify: %+v %v", rep, err)
		}
	}, Migrations)
}

// Concurrent appenders (several nodes on PostgreSQL, several goroutines on
// SQLite) keep one unbroken chain.
func TestConcurrentAppends(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := 0; g < 4; g++ {
			l := New(fmt.Sprintf("node-%d", g), nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					if _, err := l.Write(ctx, db, Record{Actor: "a", Action: "x", Outcome: Success}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rep, err := Verify(ctx, db)
		if err != nil || !rep.OK() || rep.Records != 100 {
			t.Fatalf("verify: %+v %v", rep, err)
		}
	}, Migrations)
}

// TestAppendsInOneTransaction: appends sharing a transaction (a batch of
// issuances) chain onto one another and write the head once, at commit;
// a transaction that fails after appending leaves head and chain as they
// were; a batch item that fails is rerun without, the others' records
// chained.
func TestAppendsInOneTransaction(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := New("node-1", nil)
		// Count the writes of audit_head with a trigger.
		ddl := []string{
			"CREATE TABLE head_writes (seq BIGINT NOT NULL)",
			"CREATE TRIGGER count_head_writes AFTER UPDATE ON audit_head BEGIN INSERT INTO head_writes (seq) VALUES (NEW.seq); END",
		}
		if db.Driver() == store.Postgres {
			ddl[1] = `CREATE FUNCTION count_head_writes() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN INSERT INTO head_writes (seq) VALUES (NEW.seq); RETURN NEW; END $$`
			ddl = append(ddl, "CREATE TRIGGER count_head_writes AFTER UPDATE ON audit_head FOR EACH ROW EXECUTE FUNCTION count_head_writes()")
		}
		for _, q := range ddl {
			if _, err := db.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		headWrites := func() []int64 {
			t.Helper()
			rows, err := db.Query(ctx, "SELECT seq FROM head_writes ORDER BY seq")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []int64
			for rows.Next() {
				var s int64
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}
		verify := func(records int64) {
			t.Helper()
			rep, err := Verify(ctx, db)
			if err != nil || !rep.OK() || rep.Records != records || rep.HeadSeq != records {
				t.Fatalf("verify: %+v %v, want %d records", rep, err, records)
			}
		}
		rec := func(i int) Record {
			return Record{Actor: "ra", Action: "ca.issue", Object: fmt.Sprintf("serial/%d", i), Outcome: Success}
		}

		var got []Record
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			got = got[:0]
			for i := range 5 {
				r, err := l.Append(ctx, tx, rec(i))
				if err != nil {
					return err
				}
				got = append(got, r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i, r := range got {
			if r.Seq != int64(i+1) || (i > 0 && !bytes.Equal(r.PrevHash, got[i-1].Hash)) {
				t.Fatalf("record %d: seq %d, prev %x; want seq %d chained to %x", i, r.Seq, r.PrevHash, i+1, got[max(i-1, 0)].Hash)
			}
		}
		verify(5)
		if w := headWrites(); len(w) != 1 || w[0] != 5 {
			t.Fatalf("head writes = %v, want one, to seq 5", w)
		}

		// Appends then a failure: nothing stays, the head is not written.
		boom := errors.New("boom")
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			for i := range 3 {
				if _, err := l.Append(ctx, tx, rec(10+i)); err != nil {
					return err
				}
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("Tx = %v, want boom", err)
		}
		verify(5)
		if w := headWrites(); len(w) != 1 {
			t.Fatalf("head writes after a rolled-back transaction = %v, want the one before", w)
		}

		// A batch whose second item fails after appending: the batch runs
		// again without it, and the others' records chain from seq 6.
		b := db.NewBatcher(8)
		defer b.Close()
		release := make(chan struct{})
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-release
				errs[i] = b.Do(ctx, func(tx *store.Tx) error {
					if _, err := l.Append(ctx, tx, rec(20+i)); err != nil {
						return err
					}
					if i == 1 {
						return boom
					}
					return nil
				})
			}()
		}
		close(release)
		wg.Wait()
		for i, err := range errs {
			if (i == 1) != errors.Is(err, boom) || (i != 1 && err != nil) {
				t.Errorf("item %d: %v", i, err)
			}
		}
		verify(8)
		var objects []string
		rows, err := db.Query(ctx, "SELECT object FROM audit_log WHERE seq > 5 ORDER BY seq")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var o string
			if err := rows.Scan(&o); err != nil {
				t.Fatal(err)
			}
			objects = append(objects, o)
		}
		rows.Close()
		sort.Strings(objects)
		if got := strings.Join(objects, " "); got != "serial/20 serial/22 serial/23" {
			t.Errorf("records after the batch: %s, want serial/20, 22 and 23", got)
		}
		if w := headWrites(); w[len(w)-1] != 8 {
			t.Errorf("head writes = %v, want the last to seq 8", w)
		}
	}, Migrations)
}
