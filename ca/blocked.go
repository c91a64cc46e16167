package ca

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/store"
)

// CRLReason codes that compromise a key (RFC 5280 §5.3.1).
const (
	reasonKeyCompromise = 1
	reasonCACompromise  = 2
)

// blockKey records the public key of a certificate revoked for key
// compromise, in the revocation's transaction, so that no later request can
// have it certified again (CA/B Forum BR §6.1.1.3: "the CA SHALL reject a
// certificate request if ... the CA is aware of a demonstrated or proven
// method that exposes the Applicant's Private Key to compromise"). A key
// already blocked stays blocked by its first revocation.
func blockKey(ctx context.Context, tx *store.Tx, issuer, serial string, reason int, certDER []byte, now time.Time) error {
	cert, err := smx509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("block key of %s/%s: %w", issuer, serial, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	_, err = tx.Exec(ctx, `INSERT INTO ca_blocked_keys (spki_sha256, issuer_id, serial, reason, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (spki_sha256) DO NOTHING`, sum[:], issuer, serial, reason, now.UTC().Format(timeFormat))
	if err != nil {
		return fmt.Errorf("block key of %s/%s: %w", issuer, serial, err)
	}
	return nil
}

// checkKeyNotBlocked refuses a public key (DER SubjectPublicKeyInfo) whose
// certificate was revoked for key compromise. It runs in the transaction
// that reserves the serial (issueLinted), so every issuance path checks it
// without a read of its own.
func checkKeyNotBlocked(ctx context.Context, q store.Querier, spki []byte) error {
	sum := sha256.Sum256(spki)
	var issuer, serial string
	err := q.QueryRow(ctx, "SELECT issuer_id, serial FROM ca_blocked_keys WHERE spki_sha256 = ?", sum[:]).Scan(&issuer, &serial)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("look up compromised keys: %w", err)
	}
	return fmt.Errorf("%w: the public key was reported compromised (certificate %s/%s revoked for key compromise) and is not certified again", ErrPolicy, issuer, serial)
}
