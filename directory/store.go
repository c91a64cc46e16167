package directory

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// Migrations are the directory's tables.
var Migrations = store.EmbeddedMigrations("directory", migrations, "migrations")

const timeFormat = time.RFC3339Nano

func encodeAttrs(a map[string][][]byte) ([]byte, error) { return json.Marshal(a) }

func decodeAttrs(b []byte) (map[string][][]byte, error) {
	var a map[string][][]byte
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if a == nil {
		a = map[string][][]byte{}
	}
	return a, nil
}

// loadAll reads every entry and the version they are at.
func loadAll(ctx context.Context, db *store.DB) ([]*Entry, int64, error) {
	var es []*Entry
	var version int64
	err := db.Read(ctx, func(q store.Querier) error {
		es = es[:0]
		if err := q.QueryRow(ctx, "SELECT version FROM dir_meta WHERE id = 1").Scan(&version); err != nil {
			return err
		}
		rows, err := q.Query(ctx, "SELECT dn_norm, dn, parent_norm, kind, attrs FROM dir_entries")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e := &Entry{}
			var raw []byte
			if err := rows.Scan(&e.norm, &e.DN, &e.parent, &e.Kind, &raw); err != nil {
				return err
			}
			if e.Attrs, err = decodeAttrs(raw); err != nil {
				return fmt.Errorf("entry %s: %w", e.DN, err)
			}
			es = append(es, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("directory: load entries: %w", err)
	}
	return es, version, nil
}

// readEntry returns the stored entry norm, or nil when there is none.
func readEntry(ctx context.Context, q store.Querier, norm string) (*Entry, error) {
	e := &Entry{}
	var raw []byte
	err := q.QueryRow(ctx, "SELECT dn_norm, dn, parent_norm, kind, attrs FROM dir_entries WHERE dn_norm = ?", norm).
		Scan(&e.norm, &e.DN, &e.parent, &e.Kind, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read entry %s: %w", norm, err)
	}
	if e.Attrs, err = decodeAttrs(raw); err != nil {
		return nil, fmt.Errorf("entry %s: %w", e.DN, err)
	}
	return e, nil
}

// batch collects the changes of one writing transaction; commit applies
// them to the in-memory tree once the transaction is durable.
type batch struct {
	tx      *store.Tx
	now     time.Time
	version int64
	upserts map[string]*Entry
	deletes map[string]bool
	order   []string
}

// begin starts a write in tx: it bumps dir_meta.version first, which locks
// that row until commit, so directory writers in every process run one at
// a time and dir_changes ids follow commit order (the external publishers'
// cursors rely on it).
func begin(ctx context.Context, tx *store.Tx, now time.Time) (*batch, error) {
	b := &batch{tx: tx, now: now, upserts: map[string]*Entry{}, deletes: map[string]bool{}}
	if _, err := tx.Exec(ctx, "UPDATE dir_meta SET version = version + 1 WHERE id = 1"); err != nil {
		return nil, fmt.Errorf("directory: lock: %w", err)
	}
	if err := tx.QueryRow(ctx, "SELECT version FROM dir_meta WHERE id = 1").Scan(&b.version); err != nil {
		return nil, fmt.Errorf("directory: lock: %w", err)
	}
	return b, nil
}

// get returns the entry norm as this batch sees it (its own writes first).
func (b *batch) get(ctx context.Context, norm string) (*Entry, error) {
	if b.deletes[norm] {
		return nil, nil
	}
	if e, ok := b.upserts[norm]; ok {
		return e.clone(), nil
	}
	return readEntry(ctx, b.tx, norm)
}

// put writes e (insert or replace) and logs the change.
func (b *batch) put(ctx context.Context, e *Entry) error {
	raw, err := encodeAttrs(e.Attrs)
	if err != nil {
		return err
	}
	res, err := b.tx.Exec(ctx, "UPDATE dir_entries SET dn = ?, parent_norm = ?, kind = ?, attrs = ?, updated_at = ? WHERE dn_norm = ?",
		e.DN, e.parent, e.Kind, raw, b.now.UTC().Format(timeFormat), e.norm)
	if err != nil {
		return fmt.Errorf("write entry %s: %w", e.DN, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("write entry %s: %w", e.DN, err)
	} else if n == 0 {
		if _, err := b.tx.Exec(ctx, "INSERT INTO dir_entries (dn_norm, dn, parent_norm, kind, attrs, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
			e.norm, e.DN, e.parent, e.Kind, raw, b.now.UTC().Format(timeFormat)); err != nil {
			return fmt.Errorf("write entry %s: %w", e.DN, err)
		}
	}
	delete(b.deletes, e.norm)
	b.upserts[e.norm] = e.clone()
	return b.logChange(ctx, e.norm)
}

// remove deletes the entry norm, if it exists, and logs the change.
func (b *batch) remove(ctx context.Context, norm string) error {
	res, err := b.tx.Exec(ctx, "DELETE FROM dir_entries WHERE dn_norm = ?", norm)
	if err != nil {
		return fmt.Errorf("delete entry %s: %w", norm, err)
	}
	if n, _ := res.RowsAffected(); n == 0 && b.upserts[norm] == nil {
		return nil
	}
	delete(b.upserts, norm)
	b.deletes[norm] = true
	return b.logChange(ctx, norm)
}

func (b *batch) logChange(ctx context.Context, norm string) error {
	b.order = append(b.order, norm)
	if _, err := b.tx.Exec(ctx, "INSERT INTO dir_changes (dn_norm, created_at) VALUES (?, ?)", norm, b.now.UTC().Format(timeFormat)); err != nil {
		return fmt.Errorf("log change of %s: %w", norm, err)
	}
	return nil
}

// hasChildren reports whether norm has entries below it.
func (b *batch) hasChildren(ctx context.Context, norm string) (bool, error) {
	for n := range b.upserts {
		if b.upserts[n].parent == norm {
			return true, nil
		}
	}
	// The transaction sees its own deletes, so rows it removed are gone.
	var one int
	err := b.tx.QueryRow(ctx, "SELECT 1 FROM dir_entries WHERE parent_norm = ? LIMIT 1", norm).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
