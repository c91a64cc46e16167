package ca

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/store"
)

// A key compromised is compromised in every certificate that carries it:
// when a certificate is revoked for keyCompromise, every other unexpired
// end-entity certificate of the same public key, under any issuing CA of
// the platform, is revoked with it, in the same transaction (CA/B Forum BR
// §4.9.1.1: the CA revokes "each Certificate" whose key is known
// compromised; Boulder's bad-key-revoker does the same from its
// keyHashToSerial table). ca_certificates.spki_sha256 (migration 00011)
// finds them; it is the hash ca_blocked_keys keeps, which already refuses
// new certificates for the key.

// errNoSPKI: the DER is not a certificate whose SubjectPublicKeyInfo can be
// found.
var errNoSPKI = errors.New("no SubjectPublicKeyInfo")

// spkiOf returns the DER SubjectPublicKeyInfo of a DER certificate,
// without parsing the rest of it (RFC 5280 §4.1: it follows the optional
// version, the serial, the signature algorithm, the issuer, the validity
// and the subject).
func spkiOf(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipASN1(cbasn1.INTEGER) || !tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) {
		return nil, errNoSPKI
	}
	var spki cryptobyte.String
	if !tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, errNoSPKI
	}
	return spki, nil
}

// keyHash is the SHA-256 of a certificate's SubjectPublicKeyInfo, or nil
// for a row without a certificate (a revocation carried over from a CRL).
func keyHash(der []byte) ([]byte, error) {
	if len(der) == 0 {
		return nil, nil
	}
	spki, err := spkiOf(der)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	return sum[:], nil
}

// fillKeyHashes fills spki_sha256 for the rows recorded before migration
// 00011, a batch a transaction; it runs once at start, and finds nothing
// to do after. A row whose DER cannot be read gets an empty hash, so that
// it is not read again (no key of it could be found anyway).
func (s *Service) fillKeyHashes(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			n = 0
			rows, err := tx.Query(ctx, `SELECT issuer_id, serial, der FROM ca_certificates
				WHERE spki_sha256 IS NULL AND LENGTH(der) > 0 LIMIT 500`)
			if err != nil {
				return err
			}
			type row struct {
				issuer, serial string
				hash           []byte
			}
			var todo []row
			for rows.Next() {
				var r row
				var der []byte
				if err := rows.Scan(&r.issuer, &r.serial, &der); err != nil {
					rows.Close()
					return err
				}
				if r.hash, err = keyHash(der); err != nil {
					r.hash = []byte{}
				}
				todo = append(todo, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range todo {
				if _, err := tx.Exec(ctx, "UPDATE ca_certificates SET spki_sha256 = ? WHERE issuer_id = ? AND serial = ?", r.hash, r.issuer, r.serial); err != nil {
					return err
				}
			}
			n = len(todo)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("ca: key hashes of earlier certificates: %w", err)
		}
		total += n
		if n == 0 {
			return total, nil
		}
	}
}

// revokeSameKey revokes for keyCompromise, in tx, every good unexpired
// end-entity certificate other than issuer/serial whose key is that of
// certDER, and returns them as "ca/serial". CA certificates of the key,
// which the platform never issues for an end entity's key, are left to
// the dual control their revocation needs, and logged.
func (s *Service) revokeSameKey(ctx context.Context, tx *store.Tx, issuer, serial string, certDER []byte, actor string, now time.Time) ([]string, error) {
	hash, err := keyHash(certDER)
	if err != nil || hash == nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT issuer_id, serial FROM ca_certificates
		WHERE spki_sha256 = ? AND status = 'good' AND not_after > ?`, hash, now.UTC().Format(timeFormat))
	if err != nil {
		return nil, fmt.Errorf("certificates of the compromised key: %w", err)
	}
	type ref struct{ issuer, serial string }
	var found []ref
	for rows.Next() {
		var r ref
		if err := rows.Scan(&r.issuer, &r.serial); err != nil {
			rows.Close()
			return nil, err
		}
		if r.issuer != issuer || r.serial != serial {
			found = append(found, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range found {
		res, newly, err := s.revokeRowOpts(ctx, tx, r.issuer, r.serial, "keyCompromise", actor,
			map[string]any{"key_compromised_in": "cert/" + issuer + "/" + serial}, now, false)
		if errors.Is(err, errCACertOfKey) {
			s.env.Logger.Warn("a CA certificate carries a key revoked for keyCompromise; revoke it under dual control",
				"ca", r.issuer, "serial", r.serial, "compromised_in", issuer+"/"+serial)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("revoke %s/%s, of the same key: %w", r.issuer, r.serial, err)
		}
		if newly {
			out = append(out, r.issuer+"/"+r.serial)
		}
		// The encryption certificate of a pair whose signing
		// certificate this is (revokePair).
		out = append(out, res.AlsoRevoked...)
	}
	return out, nil
}

// sweepBlockedKeys revokes, at start, the good unexpired certificates of
// every key blocked for compromise that are still good: those of a key
// revoked for keyCompromise before this sweep existed, or whose hashes were
// filled only now, or carried over by a restore. Each is revoked in a
// transaction of its own, as the revocation of its key would have.
func (s *Service) sweepBlockedKeys(ctx context.Context) (int, error) {
	type ref struct{ issuer, serial, byIssuer, bySerial string }
	var found []ref
	err := s.env.DB.Read(ctx, func(tx store.Querier) error {
		found = found[:0]
		rows, err := tx.Query(ctx, `SELECT c.issuer_id, c.serial, b.issuer_id, b.serial
			FROM ca_certificates c JOIN ca_blocked_keys b ON c.spki_sha256 = b.spki_sha256
			WHERE c.status = 'good' AND c.not_after > ? AND b.reason = ?`,
			s.env.Clock.Now().UTC().Format(timeFormat), reasonKeyCompromise)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.issuer, &r.serial, &r.byIssuer, &r.bySerial); err != nil {
				return err
			}
			found = append(found, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("ca: certificates of blocked keys: %w", err)
	}
	n := 0
	for _, r := range found {
		var newly bool
		err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			var err error
			_, newly, err = s.revokeRowOpts(ctx, tx, r.issuer, r.serial, "keyCompromise", "system",
				map[string]any{"key_compromised_in": "cert/" + r.byIssuer + "/" + r.bySerial}, s.env.Clock.Now(), false)
			return err
		})
		switch {
		case errors.Is(err, errCACertOfKey):
			s.env.Logger.Warn("a CA certificate carries a key revoked for keyCompromise; revoke it under dual control",
				"ca", r.issuer, "serial", r.serial, "compromised_in", r.byIssuer+"/"+r.bySerial)
		case err != nil:
			return n, fmt.Errorf("ca: revoke %s/%s, of a compromised key: %w", r.issuer, r.serial, err)
		case newly:
			n++
			// Start's first CRLs are then made anew, not only when due.
			s.setStale(r.issuer, true)
		}
	}
	return n, nil
}
