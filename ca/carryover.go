package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// CarriedOver is what CarryOverCRL did with one CRL.
type CarriedOver struct {
	// CA is the platform CA that signed the CRL; Number its CRL number.
	CA     string   `json:"ca"`
	Number *big.Int `json:"number"`
	// Revoked are the serials revoked now, with the CRL's date and reason.
	Revoked []string `json:"revoked"`
	// Already counts entries the database had revoked with the same reason.
	Already int `json:"already"`
	// WithoutCertificate are serials the database had no certificate of
	// (issued after the backup was taken), now kept as revocations
	// without a certificate (profile carriedOverProfile): listed on the
	// CA's CRLs until the CA's own notAfter, answered revoked by OCSP.
	WithoutCertificate []string `json:"without_certificate"`
	// Skipped are entries not carried over, with why: revoked in the
	// database with another reason, or a reason the CA never gives.
	Skipped []string `json:"skipped"`
}

// CarryOverCRL applies to a database restored from a backup the
// revocations of a CRL that its CA published before the loss (fetched from
// the distribution point, the directory or a relying party's cache), so
// that what was revoked after the backup was taken is revoked again, at
// its original date and with its reason, before any node serves it.
//
// The CRL must verify with the certificate of a CA in the database.
// Each entry for a certificate the database holds as good is revoked as
// the API would (status, OCSP responses dropped, audit record naming the
// CRL, outbox event, key blocked for keyCompromise), each in its own
// transaction. An entry for a serial the database does not know, a
// certificate issued after the backup, becomes a revocation without a
// certificate (carriedOverRow), so that the CA's next CRLs list it again
// and OCSP answers revoked. Full CRLs and deltas alike can be given;
// entries with removeFromCRL or certificateHold are skipped.
func CarryOverCRL(ctx context.Context, db *store.DB, log *audit.Log, clk clock.Clock, der []byte) (*CarriedOver, error) {
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not a CRL: %w", ErrRequest, err)
	}
	issuer, caCert, err := crlIssuer(ctx, db, der, rl)
	if err != nil {
		return nil, err
	}
	s := New()
	s.env = &node.Env{DB: db, Audit: log, Clock: clk, Logger: slog.New(slog.DiscardHandler)}
	out := &CarriedOver{CA: issuer, Number: rl.Number, Revoked: []string{}, WithoutCertificate: []string{}, Skipped: []string{}}
	for _, e := range rl.RevokedCertificateEntries {
		serial := serialHex(e.SerialNumber)
		reason := reasonName(e.ReasonCode)
		if _, ok := reasonCodes[reason]; !ok {
			out.Skipped = append(out.Skipped, serial+": "+reason)
			continue
		}
		var newly, stub bool
		err := db.Tx(ctx, func(tx *store.Tx) error {
			extra := map[string]any{"carried_over_from_crl": rl.Number.String()}
			var err error
			_, newly, err = s.revokeRowAt(ctx, tx, issuer, serial, reason, "system", extra, e.RevocationTime)
			if stub = errors.Is(err, ErrNotFound); stub {
				err = s.carriedOverRow(ctx, tx, issuer, serial, reasonCodes[reason], e.RevocationTime, caCert.NotAfter, extra)
			}
			return err
		})
		switch {
		case err == nil && stub:
			out.WithoutCertificate = append(out.WithoutCertificate, serial)
		case errors.Is(err, ErrConflict):
			out.Skipped = append(out.Skipped, serial+": "+err.Error())
		case err != nil:
			return out, err
		case newly:
			out.Revoked = append(out.Revoked, serial)
		default:
			out.Already++
		}
	}
	return out, nil
}

// carriedOverProfile is the profile of a revocation without a certificate:
// a serial a published CRL listed that the database had no certificate of.
const carriedOverProfile = "carried-over-revocation"

// carriedOverRow stores a revocation without a certificate in tx: a
// ca_certificates row with status revoked, the CRL's date and reason, no
// DER, no subject, and the CA's own notAfter as its expiry (the
// certificate's is not known, and the CA never issues past its own, so the
// entry stays on CRLs at least as long as RFC 5280 §3.3 asks). The
// insertion sets its revocation sequence like any revocation (the
// database triggers), so the next delta lists it too. No outbox event: the
// directory has no certificate to withdraw. The key is not blocked for
// keyCompromise: it is not known.
func (s *Service) carriedOverRow(ctx context.Context, tx *store.Tx, issuer, serial string, code int, at, notAfter time.Time, extra map[string]any) error {
	at = at.UTC().Truncate(time.Second)
	if _, err := tx.Exec(ctx, `INSERT INTO ca_certificates
		(issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org, created_at, revoked_at, revocation_reason)
		VALUES (?, ?, '', ?, ?, ?, ?, 'revoked', 'system', '', ?, ?, ?)`,
		issuer, serial, carriedOverProfile, at.Format(timeFormat), notAfter.UTC().Format(timeFormat), []byte{},
		s.env.Clock.Now().UTC().Format(timeFormat), at.Format(timeFormat), code); err != nil {
		return fmt.Errorf("revocation without a certificate %s/%s: %w", issuer, serial, err)
	}
	if err := s.ocspRevokeTx(ctx, tx, issuer, serial); err != nil {
		return err
	}
	details := map[string]any{"reason": reasonName(code), "certificate": "not in the database (issued after the backup)"}
	for k, v := range extra {
		details[k] = v
	}
	_, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: "system", Action: "ca.certificate.revoke",
		Object: "cert/" + issuer + "/" + serial, Outcome: audit.Success, Details: details})
	return err
}

// CRLIssuer returns the id of the CA in db whose certificate signed the
// CRL der, or an error if none did: the check of a CRL before a restore
// carries it over (db may be the backup, opened with store.OpenSnapshot).
func CRLIssuer(ctx context.Context, db *store.DB, der []byte) (string, error) {
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return "", fmt.Errorf("%w: not a CRL: %w", ErrRequest, err)
	}
	id, _, err := crlIssuer(ctx, db, der, rl)
	return id, err
}

// crlIssuer returns the id and certificate of the CA in the database whose
// certificate signed the CRL der.
func crlIssuer(ctx context.Context, db *store.DB, der []byte, rl *smx509.RevocationList) (string, *smx509.Certificate, error) {
	rows, err := db.Query(ctx, "SELECT id, cert FROM ca_authorities ORDER BY id")
	if err != nil {
		return "", nil, fmt.Errorf("read CAs: %w", err)
	}
	type ca struct {
		id   string
		cert []byte
	}
	var cas []ca
	for rows.Next() {
		var c ca
		if err := rows.Scan(&c.id, &c.cert); err != nil {
			rows.Close()
			return "", nil, fmt.Errorf("read CAs: %w", err)
		}
		cas = append(cas, c)
	}
	if err := rows.Close(); err != nil {
		return "", nil, err
	}
	if err := rows.Err(); err != nil {
		return "", nil, fmt.Errorf("read CAs: %w", err)
	}
	for _, c := range cas {
		cert, err := smx509.ParseCertificate(c.cert)
		if err != nil || !bytes.Equal(cert.RawSubject, rl.RawIssuer) {
			continue
		}
		if _, err := crl.Verify(der, cert); err == nil {
			return c.id, cert, nil
		}
	}
	return "", nil, fmt.Errorf("%w: the CRL of %s (number %v) does not verify with any CA certificate in this database", ErrRequest, rl.Issuer, rl.Number)
}
