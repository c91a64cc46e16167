package store_test

import (
	"context"
	"testing"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestSQLiteStatementCache checks the cases where a reused prepared
// statement could go wrong: the same query again while its rows are still
// open, a statement reused after it failed, and a schema change after it
// was prepared.
func TestSQLiteStatementCache(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t, alpha)
	const ins = "INSERT INTO alpha_items (name, note) VALUES (?, ?)"
	err := db.Tx(ctx, func(tx *store.Tx) error {
		for _, n := range []string{"a", "b", "c"} {
			if _, err := tx.Exec(ctx, ins, n, "note-"+n); err != nil {
				return err
			}
		}
		// Same statement, failing, then succeeding again.
		if _, err := tx.Exec(ctx, ins, "a", "dup"); !store.IsUniqueViolation(err) {
			t.Errorf("duplicate insert: %v, want a unique violation", err)
		}
		_, err := tx.Exec(ctx, ins, "d", "note-d")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	const sel = "SELECT name, note FROM alpha_items WHERE name <> 'seed' AND name >= ? ORDER BY name"
	err = db.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, sel, "a")
		if err != nil {
			return err
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var name, note string
			if err := rows.Scan(&name, &note); err != nil {
				return err
			}
			// The same text while the outer rows are open, on the same
			// connection: it must not reset the outer statement.
			var inner string
			if err := q.QueryRow(ctx, sel, name).Scan(&inner, new(string)); err != nil {
				return err
			}
			if inner != name {
				t.Errorf("inner query for %q returned %q", name, inner)
			}
			got = append(got, name+"="+note)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		want := []string{"a=note-a", "b=note-b", "c=note-c", "d=note-d"}
		if len(got) != len(want) {
			t.Fatalf("rows = %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("row %d = %q, want %q", i, got[i], want[i])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A schema change after the statement was prepared: SQLite re-prepares.
	const star = "SELECT * FROM alpha_items WHERE name = ?"
	cols := func() int {
		var n int
		if err := db.Read(ctx, func(q store.Querier) error {
			rows, err := q.Query(ctx, star, "a")
			if err != nil {
				return err
			}
			defer rows.Close()
			c, err := rows.Columns()
			n = len(c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := cols()
	if _, err := db.Exec(ctx, "ALTER TABLE alpha_items ADD COLUMN later TEXT"); err != nil {
		t.Fatal(err)
	}
	for range 8 { // every reader connection
		if after := cols(); after != before+1 {
			t.Fatalf("columns after ALTER = %d, want %d", after, before+1)
		}
	}
}
