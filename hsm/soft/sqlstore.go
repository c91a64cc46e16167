package soft

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrationsFS embed.FS

// Migrations creates the keystore's tables (hsm_soft_master, hsm_soft_keys).
var Migrations = store.EmbeddedMigrations("hsm_soft", migrationsFS, "migrations")

// sqlStore is Store on internal/store (SQLite or PostgreSQL).
type sqlStore struct{ db *store.DB }

// NewSQLStore returns a Store on db, which must have Migrations applied.
func NewSQLStore(db *store.DB) Store { return &sqlStore{db: db} }

// Timestamps are RFC 3339 UTC text with nanoseconds, identical on both drivers.
func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("hsm/soft: stored time %q: %w", s, err)
	}
	return t, nil
}

const masterCols = `kind, check_value, kdf_time, kdf_memory, kdf_threads, kdf_salt, sealed,
	share_set, threshold, shares, dev_key, created`

func (s *sqlStore) GetMaster(ctx context.Context) (*MasterRecord, error) {
	var (
		r                     MasterRecord
		kind, created         string
		kt, km, kp, thr, shrs int64
	)
	err := s.db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT `+masterCols+` FROM hsm_soft_master WHERE id = 1`).Scan(
			&kind, &r.Check, &kt, &km, &kp, &r.KDF.Salt, &r.Sealed,
			&r.ShareSet, &thr, &shrs, &r.DevKey, &created)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotInitialized
	}
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: read master-key record: %w", err)
	}
	if kt < 0 || kt > 1<<32-1 || km < 0 || km > 1<<32-1 || kp < 0 || kp > 255 || thr < 0 || thr > 255 || shrs < 0 || shrs > 255 {
		return nil, errors.New("hsm/soft: master-key record damaged: parameter out of range")
	}
	r.Kind = Kind(kind)
	r.KDF.Time, r.KDF.MemoryKiB, r.KDF.Threads = uint32(kt), uint32(km), uint8(kp)
	r.Threshold, r.Shares = int(thr), int(shrs)
	if r.Created, err = parseTime(created); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *sqlStore) PutMaster(ctx context.Context, r *MasterRecord) error {
	_, err := s.db.Exec(ctx, `INSERT INTO hsm_soft_master (id, `+masterCols+`)
		VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		string(r.Kind), r.Check, int64(r.KDF.Time), int64(r.KDF.MemoryKiB), int64(r.KDF.Threads),
		r.KDF.Salt, r.Sealed, r.ShareSet, int64(r.Threshold), int64(r.Shares), r.DevKey, fmtTime(r.Created))
	if store.IsUniqueViolation(err) {
		return ErrInitialized
	}
	if err != nil {
		return fmt.Errorf("hsm/soft: write master-key record: %w", err)
	}
	return nil
}

const keyCols = `uri, version, algorithm, key_usage, service, public_key, nonce, sealed, created`

func scanKey(sc interface{ Scan(...any) error }) (*KeyRecord, error) {
	var (
		r                   KeyRecord
		alg, usage, created string
	)
	if err := sc.Scan(&r.URI, &r.Version, &alg, &usage, &r.Service, &r.Public, &r.Nonce, &r.Sealed, &created); err != nil {
		return nil, err
	}
	r.Algorithm, r.Usage = hsm.Algorithm(alg), hsm.Usage(usage)
	var err error
	if r.Created, err = parseTime(created); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *sqlStore) PutKey(ctx context.Context, r *KeyRecord) error {
	_, err := s.db.Exec(ctx, `INSERT INTO hsm_soft_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.URI, r.Version, string(r.Algorithm), string(r.Usage), r.Service, r.Public, r.Nonce, r.Sealed, fmtTime(r.Created))
	if store.IsUniqueViolation(err) {
		return hsm.ErrExists
	}
	if err != nil {
		return fmt.Errorf("hsm/soft: write key record: %w", err)
	}
	return nil
}

func (s *sqlStore) GetKey(ctx context.Context, uri string) (*KeyRecord, error) {
	var r *KeyRecord
	err := s.db.Read(ctx, func(q store.Querier) error {
		var err error
		r, err = scanKey(q.QueryRow(ctx, `SELECT `+keyCols+` FROM hsm_soft_keys WHERE uri = ?`, uri))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, hsm.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: read key record: %w", err)
	}
	return r, nil
}

func (s *sqlStore) ListKeys(ctx context.Context, service string) ([]*KeyRecord, error) {
	var out []*KeyRecord
	err := s.db.Read(ctx, func(q store.Querier) error {
		out = out[:0] // Read may retry
		query, args := `SELECT `+keyCols+` FROM hsm_soft_keys ORDER BY uri`, []any(nil)
		if service != "" {
			query, args = `SELECT `+keyCols+` FROM hsm_soft_keys WHERE service = ? ORDER BY uri`, []any{service}
		}
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanKey(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: list key records: %w", err)
	}
	return out, nil
}

func (s *sqlStore) DeleteKey(ctx context.Context, uri string) error {
	res, err := s.db.Exec(ctx, `DELETE FROM hsm_soft_keys WHERE uri = ?`, uri)
	if err != nil {
		return fmt.Errorf("hsm/soft: delete key record: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("hsm/soft: delete key record: %w", err)
	}
	if n == 0 {
		return hsm.ErrNotFound
	}
	return nil
}

func (s *sqlStore) CountKeys(ctx context.Context) (int, error) {
	var n int64
	err := s.db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT COUNT(*) FROM hsm_soft_keys`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("hsm/soft: count key records: %w", err)
	}
	return int(n), nil
}
