package ca

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/govtrust/govtrust/internal/store"
)

// The read API of the CA's transactional outbox (ca_outbox), for the
// directory publisher (issue #6). Every function takes the caller's
// transaction or read view, so that a consumer can mark events published in
// the same transaction as its own writes: an event is then consumed exactly
// once, whatever crashes in between.

// Outbox event kinds.
const (
	EventIssued       = "issued"
	EventRevoked      = "revoked"
	EventCRLPublished = "crl_published"
	EventCAAdded      = "ca_added"
)

// OutboxEvent is one row of ca_outbox.
type OutboxEvent struct {
	ID int64
	// Event is one of the Event* kinds.
	Event string
	// IssuerID is the issuing CA (for ca_added, the CA itself).
	IssuerID string
	// Serial is the certificate's serial in hex (for ca_added, the CA
	// certificate's); empty for crl_published.
	Serial string
	// CRLKind (full or delta) and CRLNumber are set for crl_published.
	CRLKind   string
	CRLNumber int64
	CreatedAt time.Time
}

// PendingOutbox returns up to limit events not yet marked published, in id
// order. An event committed late with a lower id (concurrent transactions)
// is still returned on a later call: consumers select on published_at, not
// on an id cursor.
func PendingOutbox(ctx context.Context, q store.Querier, limit int) ([]OutboxEvent, error) {
	rows, err := q.Query(ctx, `SELECT id, event, issuer_id, serial, COALESCE(crl_kind, ''), COALESCE(crl_number, 0), created_at
		FROM ca_outbox WHERE published_at IS NULL ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxEvent
	for rows.Next() {
		var e OutboxEvent
		var created string
		if err := rows.Scan(&e.ID, &e.Event, &e.IssuerID, &e.Serial, &e.CRLKind, &e.CRLNumber, &created); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		if e.CreatedAt, err = time.Parse(timeFormat, created); err != nil {
			return nil, fmt.Errorf("outbox event %d: bad time: %w", e.ID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// MarkOutboxPublished records that the events ids were consumed, at at.
// Only events not yet marked are changed; the count of those is returned,
// so a consumer racing another sees 0 for events the other took.
func MarkOutboxPublished(ctx context.Context, tx *store.Tx, ids []int64, at time.Time) (int64, error) {
	var n int64
	for _, id := range ids {
		res, err := tx.Exec(ctx, "UPDATE ca_outbox SET published_at = ? WHERE id = ? AND published_at IS NULL", at.UTC().Format(timeFormat), id)
		if err != nil {
			return n, fmt.Errorf("mark outbox event %d: %w", id, err)
		}
		c, err := res.RowsAffected()
		if err != nil {
			return n, fmt.Errorf("mark outbox event %d: %w", id, err)
		}
		n += c
	}
	return n, nil
}

// StoredCertificate is a certificate as the CA recorded it.
type StoredCertificate struct {
	IssuerID, Serial string
	DER              []byte
	// Status is good or revoked.
	Status  string
	Profile string
	// RequesterOrg is the organisation of the account that requested it
	// through the API; empty for the certificates the platform issues to
	// its own services.
	RequesterOrg string
}

// CertificateRecord returns the certificate issuer/serial, or ErrNotFound.
func CertificateRecord(ctx context.Context, q store.Querier, issuer, serial string) (*StoredCertificate, error) {
	c := &StoredCertificate{IssuerID: issuer, Serial: serial}
	err := q.QueryRow(ctx, "SELECT der, status, profile, requester_org FROM ca_certificates WHERE issuer_id = ? AND serial = ?", issuer, serial).
		Scan(&c.DER, &c.Status, &c.Profile, &c.RequesterOrg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: certificate %s/%s", ErrNotFound, issuer, serial)
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate %s/%s: %w", issuer, serial, err)
	}
	return c, nil
}

// AuthorityRecord is a CA as a directory publishes it: its certificate and
// its newest CRLs, the same bytes /pki/{ca}.crt, /pki/{ca}.crl and
// /pki/{ca}-delta.crl serve.
type AuthorityRecord struct {
	ID, Lineage, Status string
	Generation          int
	// Cert is the CA certificate (DER).
	Cert []byte
	// CRL is the newest full CRL and CRLNumber its number; nil before the
	// first one.
	CRL       []byte
	CRLNumber int64
	// DeltaCRL is the newest delta CRL, nil when there is none.
	DeltaCRL    []byte
	DeltaNumber int64
	// Cross holds the cross-certificates other CAs issued to this one
	// (cross.go), every one imported, in a stable order.
	Cross [][]byte
}

// AuthorityRecordOf returns the CA id, or ErrNotFound.
func AuthorityRecordOf(ctx context.Context, q store.Querier, id string) (*AuthorityRecord, error) {
	a := &AuthorityRecord{ID: id}
	err := q.QueryRow(ctx, "SELECT cert, lineage, status, generation FROM ca_authorities WHERE id = ?", id).
		Scan(&a.Cert, &a.Lineage, &a.Status, &a.Generation)
	if errors.Is(err, sql.ErrNoRows) {
		// An offline CA whose CRL the node imported (offlinecrl.go).
		return offlineAuthorityRecord(ctx, q, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", id, err)
	}
	for _, k := range []struct {
		kind   string
		der    *[]byte
		number *int64
	}{{kindFull, &a.CRL, &a.CRLNumber}, {kindDelta, &a.DeltaCRL, &a.DeltaNumber}} {
		err := q.QueryRow(ctx, "SELECT der, number FROM ca_crls WHERE issuer_id = ? AND kind = ? ORDER BY number DESC LIMIT 1", id, k.kind).
			Scan(k.der, k.number)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("read %s CRL of %s: %w", k.kind, id, err)
		}
	}
	rows, err := q.Query(ctx, "SELECT der FROM ca_cross_certificates WHERE ca_id = ? ORDER BY fingerprint", id)
	if err != nil {
		return nil, fmt.Errorf("read cross-certificates of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var der []byte
		if err := rows.Scan(&der); err != nil {
			return nil, fmt.Errorf("read cross-certificates of %s: %w", id, err)
		}
		a.Cross = append(a.Cross, der)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cross-certificates of %s: %w", id, err)
	}
	return a, nil
}
