package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
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
//
// The key is blocked, and its other certificates swept (keysweep.go),
// after tx holds the audit chain's head (audit.Hold; the revocation has
// usually appended its record already): on PostgreSQL its row lock orders
// this transaction with every transaction that stores an issued
// certificate, which takes it before its own check of the blocked keys
// (insertIssued). At READ COMMITTED the two could otherwise each miss the
// other's uncommitted row (the sweep the new certificate, the store the
// new block) and both commit. On SQLite the single writer orders them.
func blockKey(ctx context.Context, tx *store.Tx, issuer, serial string, reason int, certDER []byte, now time.Time) error {
	cert, err := smx509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("block key of %s/%s: %w", issuer, serial, err)
	}
	if err := audit.Hold(ctx, tx); err != nil {
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

// reserveSerial records serial and its linted TBS unless spki (DER
// SubjectPublicKeyInfo) is the key of a certificate revoked for key
// compromise, or the issuer's own certificate is revoked (a process whose
// registry has not yet seen a revocation made by another, watch.go), which
// it refuses with ErrPolicy. The checks and the insert are one statement,
// in the transaction that reserves the serial (issueLinted), so every
// issuance path checks them without a statement (on PostgreSQL a round
// trip) of its own. A serial already taken is a unique violation. The
// signature comes after this transaction has committed: the store of the
// signed certificate checks again (insertIssued).
func reserveSerial(ctx context.Context, tx *store.Tx, issuer, serial, profile string, tbs []byte, now time.Time, spki []byte) error {
	sum := sha256.Sum256(spki)
	res, err := tx.Exec(ctx, `INSERT INTO ca_serials (issuer_id, serial, profile, tbs, created_at)
		SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM ca_blocked_keys WHERE spki_sha256 = ?)
		AND NOT EXISTS (SELECT 1 FROM ca_authorities WHERE id = ? AND status = ?)`,
		issuer, serial, profile, tbs, now.Format(timeFormat), sum[:], issuer, statusRevoked)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("record serial: %w", err)
	} else if n == 1 {
		return nil
	}
	return refusal(ctx, tx, "record serial", issuer, sum[:])
}

// refusal explains, with ErrPolicy, why an insert guarded by the checks of
// reserveSerial (issuer's certificate not revoked, the key of hash
// spkiSum not blocked) inserted nothing; what names the insert.
func refusal(ctx context.Context, tx *store.Tx, what, issuer string, spkiSum []byte) error {
	var status string
	if err := tx.QueryRow(ctx, "SELECT status FROM ca_authorities WHERE id = ?", issuer).Scan(&status); err == nil && status == statusRevoked {
		return fmt.Errorf("%w: CA %s is revoked: its certificate was revoked; it issues nothing more and only signs the CRLs and OCSP responses of the certificates it issued", ErrPolicy, issuer)
	}
	// Nothing inserted: the key is blocked. Name the certificate.
	var blockedIssuer, blockedSerial string
	err := tx.QueryRow(ctx, "SELECT issuer_id, serial FROM ca_blocked_keys WHERE spki_sha256 = ?", spkiSum).Scan(&blockedIssuer, &blockedSerial)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: no row inserted, and the key is not blocked", what)
	case err != nil:
		return fmt.Errorf("look up compromised keys: %w", err)
	}
	return fmt.Errorf("%w: the public key was reported compromised (certificate %s/%s revoked for key compromise) and is not certified again", ErrPolicy, blockedIssuer, blockedSerial)
}

// checkKeyHolder refuses (ErrPolicy, 422) a request of p for public key
// pub when the key is in a good unexpired certificate requested for
// another organisation than p's, or by the platform for its own services
// (no organisation). A CSR is not secret: its proof of possession proves
// that the key's holder signed it once, not that the caller is that
// holder, so an account of another organisation that saw it could
// otherwise have the key certified to itself and then report it
// compromised (revoke.go keeps such a report within the reporter's
// authority as well). A key is certified to one holder: the accounts of
// one organisation share its keys, CA operators may certify a key to
// several (say, after a subscriber moved), and the platform's own
// issuance (IssueFor, IssueForApplication, the node's and the OCSP
// responders' certificates, the KMC's encryption keys of a dual pair)
// makes its keys itself and does not come here. A certificate revoked,
// for whatever reason, no longer holds its key. The refusal names neither
// the certificate nor its organisation, which the caller may not read;
// the log does.
//
// The check is a read before the serial is reserved: two first requests
// for one key from two organisations at the same moment may both pass.
func (s *Service) checkKeyHolder(ctx context.Context, p *authz.Principal, pub crypto.PublicKey) error {
	if p.Has(policy.RoleCAOperator) {
		return nil
	}
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: public key: %w", ErrRequest, err)
	}
	sum := sha256.Sum256(spki)
	// Two ranges of the index (spki_sha256, requester_org)
	// (ca_certificates_spki_org), below and above the requester's
	// organisation, so that the rows looked at are the other holders'
	// (the platform's own, requester_org '', sort first), not the
	// certificates this organisation has of the key, however many.
	now := s.env.Clock.Now().UTC().Format(timeFormat)
	var issuer, serial, org string
	err = s.env.DB.ReadRow(ctx, `SELECT issuer_id, serial, requester_org FROM ca_certificates
			WHERE spki_sha256 = ? AND requester_org < ? AND status = 'good' AND not_after > ?
		UNION ALL
		SELECT issuer_id, serial, requester_org FROM ca_certificates
			WHERE spki_sha256 = ? AND requester_org > ? AND status = 'good' AND not_after > ?
		UNION ALL
		SELECT issuer_id, serial, requester_org FROM ca_certificates
			WHERE spki_sha256 = ? AND requester_org = '' AND ? = '' AND status = 'good' AND not_after > ?
		LIMIT 1`, sum[:], p.Account.Org, now, sum[:], p.Account.Org, now, sum[:], p.Account.Org, now).Scan(&issuer, &serial, &org)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("ca: certificates of the request's key: %w", err)
	}
	if org == "" {
		org = "(the platform's own)"
	}
	s.env.Logger.Warn("ca: request for a key certified to another organisation refused", "request_id", httpx.RequestID(ctx),
		"account", p.Account.Name, "org", p.Account.Org, "certificate", issuer+"/"+serial, "certificate_org", org)
	return fmt.Errorf("%w: the request's public key is certified to another organisation; a key is certified to one holder: make a new key pair for this request (a CA operator may certify a key to more than one)", ErrPolicy)
}

// checkNotEscrowed refuses (ErrPolicy, 422) to certify pub as the
// request's own key (a profile with key_source csr, the signing key of a
// dual request) when it is an encryption key the KMC generated: its
// private key was delivered enveloped to the holder of a dual pair, and
// the KMC escrows it, so key recovery officers can recover it. A signing
// key is its holder's alone and never escrowed (GM/T 0014; ACCEPTANCE.md
// D-03): a signing certificate for such a key would carry signatures that
// others could make, and the next dual pair's envelope, sealed to the
// signing key, would be opened by recovering the first pair's key. Both
// records are asked: the CA's (a certificate of the key under a profile
// whose key the KMC makes, or the encryption certificate of a dual pair,
// by the indexed key hash) and the KMC's (its escrows, by public key),
// which also knows keys of requests that ended before their certificate
// was stored. The KMC makes SM2 keys only (GM/T 0015), so other keys are
// not looked up. The refusal names neither the certificate nor the escrow
// (a CSR is not secret); the log does. The platform's own issuance
// (IssueFor, IssueForApplication) certifies keys its services made, and
// does not come here: it runs while the node starts, before the KMC has.
func (s *Service) checkNotEscrowed(ctx context.Context, pub crypto.PublicKey) error {
	if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != sm2.P256() {
		return nil
	}
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: public key: %w", ErrRequest, err)
	}
	sum := sha256.Sum256(spki)
	// By (spki_sha256, profile) (index ca_certificates_spki_profile): the
	// rows looked at are this key's under the KMC's profiles, however many
	// other certificates the key has. The encryption certificate of a dual
	// pair is one of them (issueDual requires a key_source kmc profile),
	// and the KMC's escrows below know its key whatever its profile is
	// called now.
	var issuer, serial, escrow string
	err = sql.ErrNoRows
	if names := s.kmcProfiles(); len(names) > 0 {
		q := "SELECT issuer_id, serial FROM ca_certificates WHERE spki_sha256 = ? AND profile IN (?" + strings.Repeat(", ?", len(names)-1) + ") LIMIT 1"
		args := []any{sum[:]}
		for _, name := range names {
			args = append(args, name)
		}
		err = s.env.DB.ReadRow(ctx, q, args...).Scan(&issuer, &serial)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if s.kmc == nil {
			return nil
		}
		if escrow, err = s.kmc.EscrowedKey(ctx, spki); err != nil {
			return fmt.Errorf("ca: key management centre: %w", err)
		}
		if escrow == "" {
			return nil
		}
	case err != nil:
		return fmt.Errorf("ca: certificates of the request's key: %w", err)
	}
	s.env.Logger.Warn("ca: request to certify a KMC-escrowed encryption key as the requester's own refused", "request_id", httpx.RequestID(ctx),
		"certificate", issuer+"/"+serial, "escrow", escrow)
	return fmt.Errorf("%w: the request's public key is an encryption key that the key management centre generated and escrows; a signing key is its holder's own and never escrowed (GM/T 0014): make a new key pair for this request", ErrPolicy)
}

// kmcProfiles are the names of the profiles that certify KMC-generated
// keys (key_source kmc).
func (s *Service) kmcProfiles() []string {
	var out []string
	for name, p := range s.profiles {
		if p.KeySource == "kmc" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
