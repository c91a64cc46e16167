package ca

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/govtrust/govtrust/internal/store"
)

// Times are stored as RFC 3339 text in UTC on both backends, like the
// audit log.
const timeFormat = time.RFC3339Nano

// authorityRow is a row of ca_authorities.
type authorityRow struct {
	id, algorithm, keyURI, parent string
	cert                          []byte
	created                       time.Time
}

func loadAuthority(ctx context.Context, db *store.DB, id string) (*authorityRow, error) {
	r := &authorityRow{id: id}
	var created string
	err := db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT algorithm, key_uri, cert, parent, created_at FROM ca_authorities WHERE id = ?", id).
			Scan(&r.algorithm, &r.keyURI, &r.cert, &r.parent, &created)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: CA %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", id, err)
	}
	if r.created, err = time.Parse(timeFormat, created); err != nil {
		return nil, fmt.Errorf("load CA %s: created_at: %w", id, err)
	}
	return r, nil
}

func insertAuthority(ctx context.Context, tx *store.Tx, r authorityRow) error {
	_, err := tx.Exec(ctx, `INSERT INTO ca_authorities (id, algorithm, key_uri, cert, parent, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, r.id, r.algorithm, r.keyURI, r.cert, r.parent, r.created.UTC().Format(timeFormat))
	if err != nil {
		return fmt.Errorf("insert CA %s: %w", r.id, err)
	}
	return nil
}

// certRow is a row of ca_certificates.
type certRow struct {
	issuer, serial, subject, profile, status, requester string
	// requesterOrg is the organisation of the requesting account at
	// issuance; authorization on the certificate is decided in it.
	requesterOrg                 string
	notBefore, notAfter, created time.Time
	der                          []byte
	// revokedAt and reason are set when status is "revoked"; reason is a
	// CRLReason code (RFC 5280 §5.3.1).
	revokedAt time.Time
	reason    int
	// idempotencyKey is empty when the request had none (stored as NULL).
	idempotencyKey string
	requestHash    []byte
}

func insertCert(ctx context.Context, tx *store.Tx, r *certRow) error {
	var key, hash any
	if r.idempotencyKey != "" {
		key, hash = r.idempotencyKey, r.requestHash
	}
	_, err := tx.Exec(ctx, `INSERT INTO ca_certificates
		(issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org, idempotency_key, request_hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.issuer, r.serial, r.subject, r.profile, r.notBefore.UTC().Format(timeFormat), r.notAfter.UTC().Format(timeFormat),
		r.der, r.status, r.requester, r.requesterOrg, key, hash, r.created.UTC().Format(timeFormat))
	return err
}

func insertOutbox(ctx context.Context, tx *store.Tx, event, issuer, serial string, now time.Time) error {
	if _, err := tx.Exec(ctx, "INSERT INTO ca_outbox (event, issuer_id, serial, created_at) VALUES (?, ?, ?, ?)",
		event, issuer, serial, now.UTC().Format(timeFormat)); err != nil {
		return fmt.Errorf("outbox %s %s/%s: %w", event, issuer, serial, err)
	}
	return nil
}

const certColumns = `serial, subject, profile, not_before, not_after, der, status, requester, requester_org,
	COALESCE(idempotency_key, ''), request_hash, created_at, COALESCE(revoked_at, ''), COALESCE(revocation_reason, -1)`

func scanCert(issuer string, row *sql.Row) (*certRow, error) {
	r := &certRow{issuer: issuer}
	var nb, na, created, revoked string
	if err := row.Scan(&r.serial, &r.subject, &r.profile, &nb, &na, &r.der, &r.status, &r.requester, &r.requesterOrg,
		&r.idempotencyKey, &r.requestHash, &created, &revoked, &r.reason); err != nil {
		return nil, err
	}
	var err error
	if r.notBefore, err = time.Parse(timeFormat, nb); err == nil {
		if r.notAfter, err = time.Parse(timeFormat, na); err == nil {
			if r.created, err = time.Parse(timeFormat, created); err == nil && revoked != "" {
				r.revokedAt, err = time.Parse(timeFormat, revoked)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("certificate %s/%s: bad time: %w", issuer, r.serial, err)
	}
	return r, nil
}

// certBySerial returns the certificate issuer/serial, or ErrNotFound.
func certBySerial(ctx context.Context, db *store.DB, issuer, serial string) (*certRow, error) {
	return readCert(ctx, db, issuer, "serial = ?", serial)
}

// certByIdempotencyKey returns the certificate issued for key, or ErrNotFound.
func certByIdempotencyKey(ctx context.Context, db *store.DB, issuer, key string) (*certRow, error) {
	return readCert(ctx, db, issuer, "idempotency_key = ?", key)
}

func readCert(ctx context.Context, db *store.DB, issuer, where, arg string) (*certRow, error) {
	var r *certRow
	err := db.Read(ctx, func(q store.Querier) error {
		var err error
		r, err = scanCert(issuer, q.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND "+where, issuer, arg))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: certificate %s/%s", ErrNotFound, issuer, arg)
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate %s/%s: %w", issuer, arg, err)
	}
	return r, nil
}
