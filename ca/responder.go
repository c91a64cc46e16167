package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// Delegated OCSP responders (RFC 6960 §4.2.2.2).
//
// Every CA has a responder of its own: a key of the CA's algorithm (SM2 for
// the sm2-* CAs, ECDSA P-256 for the ecdsa-* ones), created through the key
// manager under the CA's key service, and a certificate the CA issues under
// the built-in ocsp-signer profile (id-kp-OCSPSigning, id-pkix-ocsp-nocheck,
// 90 days). The certificate is recorded in ca_certificates like any issued
// certificate (issuer the CA, profile ocsp-signer, requester "system"), with
// its audit record and outbox event, in the transaction that makes the
// responder active. The CA key then signs nothing but certificates and
// CRLs; a compromised responder key is a 90-day problem, not the CA's.
//
// Responders are numbered per CA (generation 1, 2, ...). A generation is
// made by the one process whose claim on (CA, generation) won the primary
// key of ca_ocsp_responders, so two processes on one PostgreSQL never both
// make one; the loser waits for the winner's row to become active and loads
// it. A claim left pending longer than responderClaimTimeout (a process that
// died mid-way) may be taken over. A responder is rolled over once two
// thirds of its certificate's life have passed (30 days before the end of a
// 90-day certificate, far more than the 24 h validity of any response it
// signed), and the new one signs from then on in every process: this one at
// once, the others at their next poll (ocspPollInterval).
//
// Until a CA has a delegated responder (creation failed at start, the key
// backend was down), its own key signs, which RFC 6960 §2.6 allows and
// ACCEPTANCE.md C-02 accepts; the responder loop keeps trying. The same
// holds when a rollover keeps failing until the responder's certificate
// would end before the nextUpdate of a response signed now (its last day):
// the CA key signs, and an error is logged every maintenance tick, until a
// successor is made (ocspSigner); no response's nextUpdate is after the end
// of the certificate it is verified with.

// responderClaimTimeout is how long a pending claim blocks other processes
// before they may take it over.
const responderClaimTimeout = 2 * time.Minute

// responderWait bounds how long Start waits for another process's pending
// responder before it goes on with the CA key signing.
const responderWait = 15 * time.Second

// responderKeyGrace is how long the key of a superseded responder is kept,
// so other processes finish with it before it is destroyed.
const responderKeyGrace = 10 * time.Minute

// errResponderPending reports that another process holds a fresh claim on
// the generation.
var errResponderPending = errors.New("ca: another process is creating this OCSP responder")

// responder is a delegated OCSP responder in memory.
type responder struct {
	generation int64
	keyURI     string
	cert       *smx509.Certificate
	signer     crypto.Signer
	created    time.Time
}

// covers reports whether r's certificate is valid from this to next, the
// validity of a response it would sign.
func (r *responder) covers(this, next time.Time) bool {
	return !this.Before(r.cert.NotBefore) && !next.After(r.cert.NotAfter)
}

// rollAt is when r is due for replacement: two thirds into its
// certificate's validity.
func (r *responder) rollAt() time.Time {
	life := r.cert.NotAfter.Sub(r.cert.NotBefore)
	return r.cert.NotBefore.Add(life * 2 / 3)
}

// responderRow is a row of ca_ocsp_responders.
type responderRow struct {
	generation int64
	state      string
	owner      string
	claimedAt  time.Time
	keyURI     string
	cert       []byte
	created    time.Time
	// revoked reports that the row's certificate is revoked in
	// ca_certificates (latestActiveResponder only).
	revoked bool
}

// latestResponderRow returns the row of the highest generation of issuer,
// or nil when there is none.
func latestResponderRow(ctx context.Context, q store.Querier, issuer string) (*responderRow, error) {
	r := &responderRow{}
	var claimed string
	var key, created sql.NullString
	err := q.QueryRow(ctx, `SELECT generation, state, owner, claimed_at, key_uri, cert, created_at FROM ca_ocsp_responders
		WHERE issuer_id = ? ORDER BY generation DESC LIMIT 1`, issuer).Scan(&r.generation, &r.state, &r.owner, &claimed, &key, &r.cert, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read OCSP responder of %s: %w", issuer, err)
	}
	r.keyURI = key.String
	if r.claimedAt, err = time.Parse(timeFormat, claimed); err == nil && created.Valid {
		r.created, err = time.Parse(timeFormat, created.String)
	}
	if err != nil {
		return nil, fmt.Errorf("OCSP responder %s/%d: bad time: %w", issuer, r.generation, err)
	}
	return r, nil
}

// latestActiveResponder is the active responder of the highest generation
// of issuer, or nil, with whether its certificate has been revoked.
func latestActiveResponder(ctx context.Context, q store.Querier, issuer string) (*responderRow, error) {
	r := &responderRow{state: "active"}
	var created, status string
	err := q.QueryRow(ctx, `SELECT r.generation, r.key_uri, r.cert, r.created_at, COALESCE(c.status, '') FROM ca_ocsp_responders r
		LEFT JOIN ca_certificates c ON c.issuer_id = r.issuer_id AND c.serial = r.serial
		WHERE r.issuer_id = ? AND r.state = 'active' ORDER BY r.generation DESC LIMIT 1`, issuer).Scan(&r.generation, &r.keyURI, &r.cert, &created, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read OCSP responder of %s: %w", issuer, err)
	}
	if r.created, err = time.Parse(timeFormat, created); err != nil {
		return nil, fmt.Errorf("OCSP responder %s/%d: bad time: %w", issuer, r.generation, err)
	}
	r.revoked = status == "revoked"
	return r, nil
}

// errResponderRevoked refuses a responder whose certificate is revoked.
var errResponderRevoked = errors.New("ca: the OCSP responder's certificate is revoked")

// openResponder resolves the signer of a stored responder and checks it
// against its certificate and the CA (RFC 6960 §4.2.2.2). A responder whose
// certificate is revoked is refused: its key may be the reason.
func (s *Service) openResponder(ctx context.Context, a *authority, row *responderRow) (*responder, error) {
	if row.revoked {
		return nil, fmt.Errorf("OCSP responder %s/%d: %w", a.id, row.generation, errResponderRevoked)
	}
	cert, err := smx509.ParseCertificate(row.cert)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder %s/%d: certificate: %w", a.id, row.generation, err)
	}
	if err := ocsp.CheckResponder(a.cert, cert); err != nil {
		return nil, fmt.Errorf("OCSP responder %s/%d: %w", a.id, row.generation, err)
	}
	if !ocsp.HasNoCheck(cert) {
		return nil, fmt.Errorf("OCSP responder %s/%d: certificate lacks id-pkix-ocsp-nocheck", a.id, row.generation)
	}
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: row.keyURI, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("OCSP responder %s/%d: signer %s: %w", a.id, row.generation, row.keyURI, err)
	}
	if !samePublicKey(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("OCSP responder %s/%d: key %s does not match its certificate", a.id, row.generation, row.keyURI)
	}
	return &responder{generation: row.generation, keyURI: row.keyURI, cert: cert, signer: signer, created: row.created}, nil
}

// ensureResponder returns the responder a should sign with now: the
// stored active one unless it is due for rollover, revoked, or there is
// none, in which case the next generation is made, or loaded when another
// process made it. cur is the responder in use, nil if none; it is returned
// as it is when nothing changed, and when its rollover fails (ocspSigner
// stops signing with it once its certificate cannot cover a response). When the newest responder is revoked and no
// successor can be had, it returns nil with the error: the CA key signs
// until one is made (RFC 6960 §2.6), never the revoked one.
func (s *Service) ensureResponder(ctx context.Context, a *authority, cur *responder) (*responder, error) {
	now := s.env.Clock.Now().UTC()
	var row *responderRow
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		var err error
		row, err = latestActiveResponder(ctx, q, a.id)
		return err
	})
	if err != nil {
		return cur, err
	}
	r := cur
	switch {
	case row != nil && row.revoked:
		// Due at once, whatever its age: a revoked responder (keyCompromise,
		// or any reason a CA operator had) signs nothing more, and with
		// id-pkix-ocsp-nocheck relying parties could not notice if it did.
		r = nil
	case row != nil && (cur == nil || cur.generation != row.generation):
		if r, err = s.openResponder(ctx, a, row); err != nil {
			return cur, err
		}
	}
	if r != nil && (now.Before(r.rollAt()) || now.Sub(r.created) < time.Hour) {
		// Not due; and never roll twice within an hour (a responder clamped
		// to the end of its CA's life would otherwise be due at once).
		return r, nil
	}
	next := int64(1)
	if row != nil {
		next = row.generation + 1
	}
	nr, err := s.makeResponder(ctx, a, next)
	if err != nil {
		return r, err
	}
	switch {
	case row != nil && row.revoked:
		s.env.Logger.Warn("OCSP responder rolled over: the previous one's certificate is revoked", "ca", a.id,
			"generation", nr.generation, "previous", row.generation, "not_after", nr.cert.NotAfter.UTC().Format(time.RFC3339))
	case r != nil:
		s.env.Logger.Info("OCSP responder rolled over", "ca", a.id, "generation", nr.generation, "previous", r.generation,
			"not_after", nr.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nr, nil
}

// makeResponder claims generation gen of a's responder and makes it, or
// loads it when another process made or is making it.
func (s *Service) makeResponder(ctx context.Context, a *authority, gen int64) (*responder, error) {
	owner, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	won, err := s.claimResponder(ctx, a, gen, owner)
	if err != nil {
		return nil, err
	}
	if !won {
		return s.awaitResponder(ctx, a, gen)
	}
	r, err := s.createResponder(ctx, a, gen, owner)
	if err != nil {
		// Free the claim at once, so that another process need not wait
		// for it to time out.
		if _, derr := s.env.DB.Exec(context.WithoutCancel(ctx), `DELETE FROM ca_ocsp_responders
			WHERE issuer_id = ? AND generation = ? AND owner = ? AND state = 'pending'`, a.id, gen, owner); derr != nil {
			err = errors.Join(err, fmt.Errorf("release claim: %w", derr))
		}
		return nil, err
	}
	return r, nil
}

// claimResponder inserts the pending claim on (a, gen), or takes over a
// claim left pending longer than responderClaimTimeout. It reports whether
// this process now owns the claim.
func (s *Service) claimResponder(ctx context.Context, a *authority, gen int64, owner string) (bool, error) {
	now := s.env.Clock.Now().UTC()
	won := false
	err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		won = false
		res, err := tx.Exec(ctx, `INSERT INTO ca_ocsp_responders (issuer_id, generation, state, owner, claimed_at)
			VALUES (?, ?, 'pending', ?, ?) ON CONFLICT (issuer_id, generation) DO NOTHING`, a.id, gen, owner, now.Format(timeFormat))
		if err != nil {
			return fmt.Errorf("claim OCSP responder %s/%d: %w", a.id, gen, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			won = true
			return nil
		}
		row, err := latestResponderRow(ctx, tx, a.id)
		if err != nil || row == nil || row.generation != gen || row.state != "pending" || now.Sub(row.claimedAt) < responderClaimTimeout {
			return err
		}
		res, err = tx.Exec(ctx, `UPDATE ca_ocsp_responders SET owner = ?, claimed_at = ?
			WHERE issuer_id = ? AND generation = ? AND owner = ? AND state = 'pending'`, owner, now.Format(timeFormat), a.id, gen, row.owner)
		if err != nil {
			return fmt.Errorf("take over OCSP responder claim %s/%d: %w", a.id, gen, err)
		}
		n, err := res.RowsAffected()
		won = err == nil && n == 1
		if won {
			s.env.Logger.Warn("took over a stale OCSP responder claim", "ca", a.id, "generation", gen, "claimed_at", row.claimedAt)
		}
		return nil
	})
	return won, err
}

// awaitResponder waits up to responderWait for generation gen of a's
// responder, which another process claimed, to become active.
func (s *Service) awaitResponder(ctx context.Context, a *authority, gen int64) (*responder, error) {
	deadline := time.Now().Add(responderWait)
	for {
		var row *responderRow
		err := s.env.DB.Read(ctx, func(q store.Querier) error {
			var err error
			row, err = latestActiveResponder(ctx, q, a.id)
			return err
		})
		if err != nil {
			return nil, err
		}
		if row != nil && row.generation >= gen {
			return s.openResponder(ctx, a, row)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w (%s generation %d)", errResponderPending, a.id, gen)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// responderAlg is the key algorithm of a's responders: the CA's own
// family, so relying parties need nothing new (SM2 under SM2 hierarchies,
// P-256 under ECDSA ones).
func responderAlg(a *authority) hsm.Algorithm {
	if a.alg == hsm.SM2 {
		return hsm.SM2
	}
	return hsm.ECDSAP256
}

// createResponder makes the key and certificate of generation gen of a's
// responder under the claim owner holds, and records both.
func (s *Service) createResponder(ctx context.Context, a *authority, gen int64, owner string) (_ *responder, err error) {
	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	uri := fmt.Sprintf("soft:ca/ocsp/%s/g%d-%s", a.id, gen, suffix)
	if _, err := s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: responderAlg(a), Usage: hsm.UsageSign, Service: keyService}); err != nil {
		return nil, fmt.Errorf("create OCSP responder key %s: %w", uri, err)
	}
	recorded := false
	defer func() {
		if !recorded {
			// The key never signed anything that was kept.
			if derr := s.env.Keys.DeleteKey(context.WithoutCancel(ctx), &hsm.DeleteKeyRequest{URI: uri, Service: keyService}); derr != nil {
				err = errors.Join(err, fmt.Errorf("delete unused key %s: %w", uri, derr))
			}
		}
	}()
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("signer %s: %w", uri, err)
	}
	csrDER, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{
		Subject: caName(fmt.Sprintf("govtrust OCSP Responder %s %d", a.id, gen))}, signer)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder request: %w", err)
	}
	csr, err := smx509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder request: %w", err)
	}
	p := s.profiles["ocsp-signer"]
	if p == nil {
		return nil, errors.New("built-in profile ocsp-signer missing")
	}
	now := s.env.Clock.Now().UTC()
	res, err := p.Apply(profile.Input{CSR: csr, Record: map[string]string{"O": "govtrust"}, Now: now, Issuer: a.cert, CAID: a.id, Vars: s.vars})
	if err != nil {
		return nil, fmt.Errorf("ocsp-signer profile: %w", err)
	}
	var der []byte
	var cert *smx509.Certificate
	for attempt := 1; ; attempt++ {
		if der, err = signLinted(res, a); err != nil {
			return nil, fmt.Errorf("issue OCSP responder certificate: %w", err)
		}
		if cert, err = smx509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("parse OCSP responder certificate: %w", err)
		}
		won, err := s.recordResponder(ctx, a, gen, owner, uri, cert, res.Notes, now)
		if err == nil {
			if !won {
				// Another process took the claim over (this one stalled past
				// responderClaimTimeout). The certificate is recorded, as every
				// issued one must be; its key is destroyed unused.
				s.env.Logger.Warn("OCSP responder claim lost; using the other process's responder", "ca", a.id, "generation", gen)
				return s.awaitResponder(ctx, a, gen)
			}
			recorded = true
			break
		}
		if !store.IsUniqueViolation(err) || attempt >= maxSerialAttempts {
			return nil, fmt.Errorf("record OCSP responder %s/%d: %w", a.id, gen, err)
		}
		s.env.Logger.Warn("serial collision, retrying with a new serial", "ca", a.id, "serial", serialHex(cert.SerialNumber))
	}
	s.env.Logger.Info("OCSP responder created", "ca", a.id, "generation", gen, "key", uri, "serial", serialHex(cert.SerialNumber),
		"not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	return &responder{generation: gen, keyURI: uri, cert: cert, signer: signer, created: now}, nil
}

// recordResponder stores the responder certificate in ca_certificates (with
// its audit record and outbox event, as issuance does) and makes the
// claimed row active, in one transaction. It reports false when the claim
// was taken over meanwhile; the certificate is recorded all the same.
func (s *Service) recordResponder(ctx context.Context, a *authority, gen int64, owner, uri string, cert *smx509.Certificate, notes []string, now time.Time) (bool, error) {
	serial := serialHex(cert.SerialNumber)
	row := &certRow{issuer: a.id, serial: serial, subject: cert.Subject.String(), profile: "ocsp-signer", status: "good",
		requester: "system", notBefore: cert.NotBefore, notAfter: cert.NotAfter, created: now, der: cert.Raw}
	won := false
	err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		won = false
		if err := insertCert(ctx, tx, row); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `UPDATE ca_ocsp_responders SET state = 'active', key_uri = ?, serial = ?, cert = ?, not_after = ?, created_at = ?
			WHERE issuer_id = ? AND generation = ? AND owner = ? AND state = 'pending'`,
			uri, serial, cert.Raw, cert.NotAfter.UTC().Format(timeFormat), now.Format(timeFormat), a.id, gen, owner)
		if err != nil {
			return fmt.Errorf("activate OCSP responder: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("activate OCSP responder: %w", err)
		}
		won = n == 1
		details := map[string]any{"profile": "ocsp-signer", "subject": row.subject, "not_after": row.notAfter.Format(timeFormat),
			"ocsp_responder_generation": gen, "key_uri": uri, "active": won}
		if len(notes) > 0 {
			details["notes"] = notes
		}
		if _, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: "system", Action: "ca.certificate.issue",
			Object: "cert/" + a.id + "/" + serial, Outcome: audit.Success, Details: details}); err != nil {
			return err
		}
		insertOutbox(tx, "issued", a.id, serial, now)
		return nil
	})
	return won, err
}

// retireResponders destroys the keys of a's responders older than cur once
// cur has been in use for responderKeyGrace; the rows stay, as 'retired'.
func (s *Service) retireResponders(ctx context.Context, a *authority, cur *responder) error {
	if cur == nil || s.env.Clock.Now().Sub(cur.created) < responderKeyGrace {
		return nil
	}
	var uris []string
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, `SELECT key_uri FROM ca_ocsp_responders WHERE issuer_id = ? AND generation < ? AND state = 'active'`, a.id, cur.generation)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				return err
			}
			uris = append(uris, u)
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("list old OCSP responders of %s: %w", a.id, err)
	}
	var errs []error
	for _, u := range uris {
		if err := s.env.Keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: u, Service: keyService}); err != nil && !errors.Is(err, hsm.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete superseded OCSP responder key %s: %w", u, err))
			continue
		}
		if _, err := s.env.DB.Exec(ctx, "UPDATE ca_ocsp_responders SET state = 'retired' WHERE issuer_id = ? AND key_uri = ?", a.id, u); err != nil {
			errs = append(errs, fmt.Errorf("retire OCSP responder %s: %w", u, err))
		}
	}
	return errors.Join(errs...)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
