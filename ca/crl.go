package ca

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// crlValidity is the interval from thisUpdate to nextUpdate of a full CRL
// (BR §4.9.7: at most 7 days for end-entity CRLs; a day keeps it fresh).
const crlValidity = 24 * time.Hour

// crlTick is how often the CA looks for CRLs due for their scheduled
// replacement (crl.RefreshDue) or left stale by a failed generation.
const crlTick = 10 * time.Minute

// crlKeep is how many CRLs per CA stay in ca_crls (the newest is served;
// the others are kept for inspection).
const crlKeep = 10

// crlMaxAge caps the Cache-Control max-age of a served CRL, so that caches
// pick up the CRL made at once after a revocation within a minute
// (ACCEPTANCE.md C-01) even though the CRL itself is valid for a day.
const crlMaxAge = 60

// maxCRLAttempts bounds the retries when another generation took the
// number first.
const maxCRLAttempts = 3

// errCRLRace reports that another generation moved the CA's CRL counter
// between the read and the write.
var errCRLRace = errors.New("ca: CRL number taken by a concurrent generation")

// storedCRL is the newest row of ca_crls for a CA.
type storedCRL struct {
	number                 int64
	thisUpdate, nextUpdate time.Time
	der                    []byte
}

// latestCRL returns the newest stored CRL of issuer, or ErrNotFound.
func latestCRL(ctx context.Context, db *store.DB, issuer string) (*storedCRL, error) {
	c := &storedCRL{}
	var this, next string
	err := db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT number, this_update, next_update, der FROM ca_crls WHERE issuer_id = ? ORDER BY number DESC LIMIT 1", issuer).
			Scan(&c.number, &this, &next, &c.der)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no CRL for %s yet", ErrNotFound, issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("read CRL of %s: %w", issuer, err)
	}
	if c.thisUpdate, err = time.Parse(timeFormat, this); err == nil {
		c.nextUpdate, err = time.Parse(timeFormat, next)
	}
	if err != nil {
		return nil, fmt.Errorf("CRL %s/%d: bad time: %w", issuer, c.number, err)
	}
	return c, nil
}

// revokedQuery orders serials numerically, as crl.Build needs: stored
// serials are hex of their content octets without leading zero octets, so a
// shorter one is smaller, and equal lengths compare as bytes. PostgreSQL is
// told to compare bytes (COLLATE "C"), whatever the database collation.
func revokedQuery(d store.Driver) string {
	collate := ""
	if d == store.Postgres {
		collate = ` COLLATE "C"`
	}
	return `SELECT serial, revoked_at, revocation_reason FROM ca_certificates
		WHERE issuer_id = ? AND status = 'revoked' ORDER BY LENGTH(serial), serial` + collate
}

// revokedEntries yields the revoked certificates of issuer in serial order
// from q; crl.Build ranges over it three times in one read transaction.
func revokedEntries(ctx context.Context, q store.Querier, issuer string) iter.Seq2[crl.Entry, error] {
	return func(yield func(crl.Entry, error) bool) {
		rows, err := q.Query(ctx, revokedQuery(q.Driver()), issuer)
		if err != nil {
			yield(crl.Entry{}, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var serial, at string
			var reason int
			if err := rows.Scan(&serial, &at, &reason); err != nil {
				yield(crl.Entry{}, err)
				return
			}
			n, ok := new(big.Int).SetString(serial, 16)
			t, err := time.Parse(timeFormat, at)
			if !ok || err != nil {
				yield(crl.Entry{}, fmt.Errorf("revoked certificate %s/%s: bad serial or time", issuer, serial))
				return
			}
			if !yield(crl.Entry{Serial: n, RevokedAt: t, Reason: reason}, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(crl.Entry{}, err)
		}
	}
}

// generateCRL builds, signs and stores a new full CRL for a: the revoked
// certificates read in one repeatable-read transaction (db.Read), the
// number one more than the counter read there; the counter moves, guarded
// by its old value, in the transaction that stores the CRL. A concurrent
// generation that took the number first makes this one start again, so the
// CRL made after a revocation always includes it.
//
// Every revoked certificate stays on the CRL for now.
// TODO(ca): drop expired entries by crl.Retain once they appeared on one
// CRL after expiry (RFC 5280 §3.3).
func (s *Service) generateCRL(ctx context.Context, a *authority) (*storedCRL, error) {
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	for attempt := 1; ; attempt++ {
		c, err := s.generateCRLOnce(ctx, a)
		if !errors.Is(err, errCRLRace) || attempt >= maxCRLAttempts {
			return c, err
		}
	}
}

func (s *Service) generateCRLOnce(ctx context.Context, a *authority) (*storedCRL, error) {
	now := s.env.Clock.Now().UTC().Truncate(time.Second)
	var buf bytes.Buffer
	var prev int64
	var havePrev bool
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		buf.Reset()
		err := q.QueryRow(ctx, "SELECT last FROM ca_crl_numbers WHERE issuer_id = ?", a.id).Scan(&prev)
		havePrev = err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("CRL counter: %w", err)
		}
		var count int64
		if err := q.QueryRow(ctx, "SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = ? AND status = 'revoked'", a.id).Scan(&count); err != nil {
			return fmt.Errorf("count revoked: %w", err)
		}
		t := crl.Template{Issuer: a.cert, Number: big.NewInt(prev + 1), ThisUpdate: now, NextUpdate: now.Add(crlValidity)}
		return crl.Build(ctx, &buf, t, revokedEntries(ctx, q, a.id), count, a.signer)
	})
	if err != nil {
		return nil, fmt.Errorf("build CRL of %s: %w", a.id, err)
	}
	c := &storedCRL{number: prev + 1, thisUpdate: now, nextUpdate: now.Add(crlValidity), der: buf.Bytes()}
	rec := audit.Record{Actor: "system", Action: "ca.crl.generate", Object: "crl/" + a.id + "/" + strconv.FormatInt(c.number, 10),
		Outcome: audit.Success, Details: map[string]any{"this_update": now.Format(time.RFC3339), "next_update": c.nextUpdate.Format(time.RFC3339), "size": len(c.der)}}
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRow(ctx, "SELECT MAX(number) FROM ca_crls WHERE issuer_id = ?", a.id).Scan(&last); err != nil {
			return fmt.Errorf("last CRL number: %w", err)
		}
		var prevStored *big.Int
		if last.Valid {
			prevStored = big.NewInt(last.Int64)
		}
		if err := crl.CheckNumber(prevStored, big.NewInt(c.number)); err != nil {
			return err
		}
		var res sql.Result
		var err error
		if havePrev {
			res, err = tx.Exec(ctx, "UPDATE ca_crl_numbers SET last = ? WHERE issuer_id = ? AND last = ?", c.number, a.id, prev)
		} else {
			res, err = tx.Exec(ctx, "INSERT INTO ca_crl_numbers (issuer_id, last) VALUES (?, ?) ON CONFLICT (issuer_id) DO NOTHING", a.id, c.number)
		}
		if err != nil {
			return fmt.Errorf("CRL counter: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errCRLRace
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ca_crls (issuer_id, number, this_update, next_update, der, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, a.id, c.number, now.Format(timeFormat), c.nextUpdate.Format(timeFormat), c.der, now.Format(timeFormat)); err != nil {
			return fmt.Errorf("store CRL: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM ca_crls WHERE issuer_id = ? AND number <= ?", a.id, c.number-crlKeep); err != nil {
			return fmt.Errorf("prune CRLs: %w", err)
		}
		_, err = s.env.Audit.Append(ctx, tx, rec)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store CRL of %s: %w", a.id, err)
	}
	return c, nil
}

// refreshCRLs makes a CRL for every CA that has none, whose CRL is due for
// replacement (crl.RefreshDue), or whose last generation failed.
func (s *Service) refreshCRLs(ctx context.Context) error {
	var errs []error
	for _, a := range s.authorities() {
		c, err := latestCRL(ctx, s.env.DB, a.id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if err == nil && !s.isStale(a.id) && !crl.RefreshDue(c.thisUpdate, c.nextUpdate, s.env.Clock.Now()) {
			continue
		}
		if _, err := s.generateCRL(ctx, a); err != nil {
			s.setStale(a.id, true)
			errs = append(errs, err)
			continue
		}
		s.setStale(a.id, false)
	}
	return errors.Join(errs...)
}

func (s *Service) isStale(id string) bool {
	s.staleMu.Lock()
	defer s.staleMu.Unlock()
	return s.stale[id]
}

func (s *Service) setStale(id string, v bool) {
	s.staleMu.Lock()
	defer s.staleMu.Unlock()
	s.stale[id] = v
}

// afterRevocation makes a new CRL for a once a revocation has committed. A
// failure is logged and leaves the CA stale for the next tick (or the next
// revocation) to retry; the revocation itself stands, and OCSP, which reads
// the database, already answers revoked.
// TODO(ca): coalesce bursts of revocations into one generation.
func (s *Service) afterRevocation(ctx context.Context, a *authority) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := s.generateCRL(ctx, a); err != nil {
		s.setStale(a.id, true)
		s.env.Logger.Error("CRL after revocation failed; the next tick retries", "ca", a.id, "err", err)
		return
	}
	s.setStale(a.id, false)
}

// crlLoop refreshes the CRLs every crlTick until ctx ends.
func (s *Service) crlLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(crlTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.refreshCRLs(ctx); err != nil {
				s.env.Logger.Error("CRL refresh failed", "err", err)
			}
		}
	}
}

// serveCRL serves /pki/{ca}.crl: the newest stored full CRL (RFC 5280
// §4.2.1.13 over HTTP: DER, application/pkix-crl).
func (s *Service) serveCRL(w http.ResponseWriter, r *http.Request, id string) error {
	a, err := s.authority(id)
	if err != nil {
		return err
	}
	c, err := latestCRL(r.Context(), s.env.DB, a.id)
	if err != nil {
		return err
	}
	maxAge := int(c.nextUpdate.Sub(s.env.Clock.Now()) / time.Second)
	maxAge = max(0, min(maxAge, crlMaxAge))
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(maxAge)+", no-transform")
	w.Header().Set("Last-Modified", c.thisUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Length", strconv.Itoa(len(c.der)))
	_, err = w.Write(c.der)
	return err
}
