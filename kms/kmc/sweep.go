package kmc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// Pending escrows (the queries name status 'pending' literally, so that
// the partial index kmc_escrow_pending serves them). The CA asks for a key (ApplyKey), issues the two
// certificates and binds the escrow to them within a couple of minutes; it
// abandons the escrow itself when the request fails on the way. An escrow
// still pending PendingMaxAge after it was generated was left by a request
// that ended abnormally (the process stopped, the KMC could not be
// reached): the sweep asks the CA for a certificate of the escrowed public
// key issued in that time, binds the escrow to it when there is one (its
// key stays recoverable, even if the CA revoked it), and abandons the
// escrow (wiping its wrapped key, audited) when there is none.
const (
	PendingMaxAge = time.Hour
	// sweepInterval is how often the sweep runs (and once at start).
	sweepInterval = 10 * time.Minute
	// sweepBatch is how many escrows the sweep reads at a time; it reads
	// on until it has seen every escrow due.
	sweepBatch = 100
	// sweepAlertAge: an escrow the sweep still cannot settle once pending
	// this long raises an alert at every round (an error log line
	// "ALERT: ..."); until then each failure is a warning, tried again
	// next round. It is never abandoned for a failure: the certificate of
	// its key may exist, and abandoning wipes the key.
	sweepAlertAge = 24 * time.Hour
	// sweepErrors bounds the failures the sweep's error spells out.
	sweepErrors = 5
)

func (s *Service) sweepLoop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		if _, _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.env.Logger.Error("kmc: sweep of pending escrows failed; trying again later", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pendingEscrow is an escrow the sweep settles.
type pendingEscrow struct {
	id, ca         string
	spki, signSPKI []byte
	created        time.Time
}

// pendingAfter returns up to sweepBatch escrows pending since before
// cutoff that come after (created, id) in (created_at, id) order.
func (s *Service) pendingAfter(ctx context.Context, cutoff time.Time, after *pendingEscrow) ([]pendingEscrow, error) {
	q := `SELECT id, ca, public_key, sign_public_key, created_at FROM kmc_escrow WHERE status = 'pending' AND created_at < ?`
	args := []any{fmtTime(cutoff)}
	if after != nil {
		c := fmtTime(after.created)
		q += " AND (created_at > ? OR (created_at = ? AND id > ?))"
		args = append(args, c, c, after.id)
	}
	var list []pendingEscrow
	err := s.env.DB.Read(ctx, func(q2 store.Querier) error {
		list = nil
		rows, err := q2.Query(ctx, q+" ORDER BY created_at, id LIMIT ?", append(args, sweepBatch)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p pendingEscrow
			var ca sql.NullString
			var created string
			if err := rows.Scan(&p.id, &ca, &p.spki, &p.signSPKI, &created); err != nil {
				return err
			}
			p.ca = ca.String
			if p.created, err = time.Parse(timeFormat, created); err != nil {
				return fmt.Errorf("escrow %s: created_at: %w", p.id, err)
			}
			list = append(list, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("kmc: pending escrows: %w", err)
	}
	return list, nil
}

// Sweep settles the escrows pending for longer than PendingMaxAge (see
// above) and returns how many it bound and abandoned. It does nothing
// without the CA wired in (UseCertificates). An escrow it cannot settle
// (the CA's records of its key cannot be read, the binding fails) is left
// pending for the next round, logged, and counted in the error; the sweep
// goes on with the others, so that no number of such escrows keeps it
// from the rest.
func (s *Service) Sweep(ctx context.Context) (bound, abandoned int, err error) {
	if s.certs == nil {
		return 0, 0, nil
	}
	ctx = audit.WithActor(ctx, "system")
	now := s.env.Clock.Now()
	cutoff := now.Add(-PendingMaxAge)
	var errs []error
	failed := 0
	fail := func(p *pendingEscrow, err error) {
		failed++
		if len(errs) < sweepErrors {
			errs = append(errs, err)
		}
		if age := now.Sub(p.created); age >= sweepAlertAge {
			s.env.Logger.Error("ALERT: kmc: a pending escrow cannot be settled; its key is kept until an operator sees to it", "escrow", p.id,
				"ca", p.ca, "pending_for", age.Round(time.Minute).String(), "error", err)
		} else {
			s.env.Logger.Warn("kmc: a pending escrow could not be settled; trying again next round", "escrow", p.id, "ca", p.ca, "error", err)
		}
	}
	var after *pendingEscrow
	for {
		list, err := s.pendingAfter(ctx, cutoff, after)
		if err != nil {
			return bound, abandoned, errors.Join(append([]error{err}, errs...)...)
		}
		for i := range list {
			if err := ctx.Err(); err != nil {
				return bound, abandoned, fmt.Errorf("kmc: sweep: %w", err)
			}
			p := &list[i]
			// The CA issues within minutes of ApplyKey; a minute before
			// covers a clock that stepped back.
			from, to := p.created.Add(-time.Minute), p.created.Add(PendingMaxAge)
			certs, err := s.certs.CertificatesForKey(ctx, p.ca, p.spki, from, to)
			if err != nil {
				fail(p, fmt.Errorf("escrow %s: %w", p.id, err))
				continue
			}
			if len(certs) == 0 {
				if err := s.Abandon(ctx, p.id, fmt.Sprintf("no certificate was issued for the key within %s of its generation", PendingMaxAge)); err != nil {
					fail(p, err)
					continue
				}
				abandoned++
				continue
			}
			err = s.bindFound(ctx, p.id, p.signSPKI, from, certs[0], "sweep")
			if err != nil && !errors.Is(err, ErrConflict) {
				fail(p, err)
				continue
			}
			if err == nil {
				bound++
			}
		}
		if len(list) < sweepBatch {
			break
		}
		after = &list[len(list)-1]
	}
	if failed > 0 {
		return bound, abandoned, fmt.Errorf("kmc: %d pending escrows could not be settled: %w", failed, errors.Join(errs...))
	}
	return bound, abandoned, nil
}

// bindFound binds pending escrow id to enc, the certificate of its public
// key found by asking the CA (how says who asked), and to the signing twin:
// the certificate of the holder's signing key signSPKI the same CA
// recorded last between from and enc.
func (s *Service) bindFound(ctx context.Context, id string, signSPKI []byte, from time.Time, enc *Certificate, how string) error {
	na, err := notAfterOf(enc.DER)
	if err != nil {
		return fmt.Errorf("escrow %s: certificate %s/%s: %w", id, enc.CA, enc.Serial, err)
	}
	var signSerial string
	if twins, err := s.certs.CertificatesForKey(ctx, enc.CA, signSPKI, from, enc.Created); err == nil {
		var twin *Certificate
		for _, t := range twins {
			if !t.Created.After(enc.Created) && (twin == nil || t.Created.After(twin.Created)) {
				twin = t
			}
		}
		if twin != nil {
			signSerial = twin.Serial
		}
	}
	err = s.bind(ctx, id, enc.CA, enc.Serial, signSerial, na, enc, map[string]any{"bound_by": how + ": the CA's certificate of the escrowed public key",
		"certificate_status": enc.Status})
	if err == nil {
		s.env.Logger.Warn("kmc: a pending escrow was bound to the certificate of its key", "by", how, "escrow", id, "ca", enc.CA,
			"enc_serial", enc.Serial, "status", enc.Status)
	}
	return err
}

// pendingOf returns the pending escrow (id, organisation, signing key and
// creation) of the public key that certificate serial of ca certifies, and
// that certificate; ErrNotFound when the CA has no such certificate or no
// escrow of its key is pending. It lets a recovery name an encryption
// certificate whose binding was lost (the CA's request ended abnormally)
// before the sweep binds it.
func (s *Service) pendingOf(ctx context.Context, ca, serial string) (id, org string, signSPKI []byte, created time.Time, enc *Certificate, err error) {
	notFound := fmt.Errorf("%w: no escrowed key for certificate %s on %s", ErrNotFound, serial, ca)
	if s.certs == nil {
		return "", "", nil, time.Time{}, nil, notFound
	}
	enc, err = s.certs.IssuedCertificate(ctx, ca, serial)
	if errors.Is(err, httpx.ErrNotFound) || errors.Is(err, httpx.ErrBadRequest) {
		return "", "", nil, time.Time{}, nil, notFound
	}
	if err != nil {
		return "", "", nil, time.Time{}, nil, err
	}
	cert, err := smx509.ParseCertificate(enc.DER)
	if err != nil {
		return "", "", nil, time.Time{}, nil, fmt.Errorf("kmc: certificate %s/%s: %w", ca, serial, err)
	}
	var createdAt string
	err = s.env.DB.ReadRow(ctx, `SELECT id, org, sign_public_key, created_at FROM kmc_escrow WHERE status = 'pending' AND public_key = ?`,
		cert.RawSubjectPublicKeyInfo).Scan(&id, &org, &signSPKI, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil, time.Time{}, nil, notFound
	}
	if err != nil {
		return "", "", nil, time.Time{}, nil, fmt.Errorf("kmc: pending escrow of %s/%s: %w", ca, serial, err)
	}
	if created, err = time.Parse(timeFormat, createdAt); err != nil {
		return "", "", nil, time.Time{}, nil, fmt.Errorf("kmc: escrow %s: created_at: %w", id, err)
	}
	return id, org, signSPKI, created, enc, nil
}

// EscrowedKey returns the id of an escrow of public key spki
// (SubjectPublicKeyInfo DER), whatever its status, or "" when the KMC never
// generated that key. The CA asks before it certifies a request's own key:
// a key the KMC generated was delivered to its holder for encryption and
// stays recoverable by key recovery officers, so it is never certified as
// a signing key (GM/T 0014; ACCEPTANCE.md D-03).
func (s *Service) EscrowedKey(ctx context.Context, spki []byte) (string, error) {
	if s.env == nil {
		return "", ErrNotStarted
	}
	var id string
	err := s.env.DB.ReadRow(ctx, "SELECT id FROM kmc_escrow WHERE public_key = ? LIMIT 1", spki).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("kmc: escrows of a public key: %w", err)
	}
	return id, nil
}

// lateBind binds the pending escrow of the key of certificate serial of ca
// (pendingOf); ErrNotFound when there is none.
func (s *Service) lateBind(ctx context.Context, ca, serial string) error {
	id, _, signSPKI, created, enc, err := s.pendingOf(ctx, ca, serial)
	if err != nil {
		return err
	}
	return s.bindFound(ctx, id, signSPKI, created.Add(-time.Minute), enc, "recovery request")
}

// notAfterOf returns the notAfter of certificate der.
func notAfterOf(der []byte) (time.Time, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}
