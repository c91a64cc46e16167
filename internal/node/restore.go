package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// Restore describes a backup put in place by `govtrust restore`.
type Restore struct {
	// TakenAt is when the backup was taken (its manifest); zero when not
	// known.
	TakenAt time.Time
	// Source names the backup (its directory).
	Source string
	// DatabaseSM3 is the hex SM3 of the backup's database file, as its
	// manifest gave it and the restore checked it; empty for PostgreSQL.
	DatabaseSM3 string
	// AuditHeadSeq is the audit log's last sequence number in the backup.
	AuditHeadSeq int64
}

// MarkRestored records in a restored database that it was restored, and
// when: node_meta restored_at (which a starting node hands its services as
// Env.RestoredAt) and a node.restore audit record, in one transaction.
func MarkRestored(ctx context.Context, db *store.DB, log *audit.Log, nodeName string, now time.Time, r Restore) error {
	details := map[string]any{"source": r.Source, "backup_audit_head_seq": r.AuditHeadSeq}
	meta := map[string]string{"restored_at": now.UTC().Format(time.RFC3339Nano)}
	if !r.TakenAt.IsZero() {
		details["backup_taken_at"] = r.TakenAt.UTC().Format(time.RFC3339)
		meta["restored_backup_taken_at"] = r.TakenAt.UTC().Format(time.RFC3339)
	}
	if r.DatabaseSM3 != "" {
		details["database_sm3"] = r.DatabaseSM3
	}
	rec := audit.Record{Actor: "system", Action: "node.restore", Object: "node/" + nodeName, Outcome: audit.Success, Details: details}
	_, err := log.Do(ctx, db, rec, func(tx *store.Tx) error {
		for k, v := range meta {
			if _, err := tx.Exec(ctx, "INSERT INTO node_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", k, v); err != nil {
				return fmt.Errorf("node_meta %s: %w", k, err)
			}
		}
		return nil
	})
	return err
}

// RestoredAt reads node_meta restored_at: when the database was last put
// in place from a backup, or zero.
func RestoredAt(ctx context.Context, db *store.DB) (time.Time, error) {
	var v string
	err := db.QueryRow(ctx, "SELECT value FROM node_meta WHERE key = 'restored_at'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("node_meta restored_at: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("node_meta restored_at %q: %w", v, err)
	}
	return t, nil
}
