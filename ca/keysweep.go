package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/httpx"
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
//
// A report within the reporter's authority. Who reports a key compromised
// need not hold the key: a CSR is not secret, and before issuance refused a
// key certified to another organisation (checkKeyHolder) an account could
// have a key it never held certified to itself from a CSR it saw, then
// revoke that certificate for keyCompromise. Boulder revokes key-wide only
// on a request signed by the key itself or an administrator's. So a
// revoker that is not the platform (keyScope.may) revokes with the
// certificate it names only the other certificates of the key it could
// revoke itself (the route's policy decision: its own, its organisation's
// as a registration officer, any as a CA operator), and the key is blocked
// only when no good unexpired certificate of the key lies outside that
// authority. Otherwise the certificates outside are left as they are,
// listed in the answer (not_revoked) and referred to a CA operator: an
// audit record (ca.key.compromise.referred, in the revocation's
// transaction), an error log line "ALERT: ..." and the metric
// govtrust_ca_key_compromise_referrals_total. A CA operator's
// keyCompromise revocation of any certificate of the key, one already
// revoked included, then revokes them all and blocks the key.

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

// keyCerts returns, read in tx, the unexpired certificates of the key of
// c other than c, of the given status ("" for any).
func keyCerts(ctx context.Context, tx *store.Tx, c *certRow, status string, now time.Time) ([]*certRow, error) {
	hash, err := keyHash(c.der)
	if err != nil || hash == nil {
		return nil, err
	}
	q, args := "SELECT issuer_id, serial FROM ca_certificates WHERE spki_sha256 = ? AND not_after > ?", []any{hash, now.UTC().Format(timeFormat)}
	if status != "" {
		q, args = q+" AND status = ?", append(args, status)
	}
	rows, err := tx.Query(ctx, q+" ORDER BY issuer_id, serial", args...)
	if err != nil {
		return nil, fmt.Errorf("certificates of the key of %s/%s: %w", c.issuer, c.serial, err)
	}
	type ref struct{ issuer, serial string }
	var found []ref
	for rows.Next() {
		var r ref
		if err := rows.Scan(&r.issuer, &r.serial); err != nil {
			rows.Close()
			return nil, err
		}
		if r.issuer != c.issuer || r.serial != c.serial {
			found = append(found, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*certRow, 0, len(found))
	for _, r := range found {
		o, err := scanCert(r.issuer, tx.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND serial = ?", r.issuer, r.serial))
		if err != nil {
			return nil, fmt.Errorf("read certificate %s/%s: %w", r.issuer, r.serial, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// outsideAuthority returns the good unexpired certificates of the key of c
// that a revoker limited by may could not revoke itself (see "A report
// within the reporter's authority" above). A revoked certificate no longer
// holds its key (checkKeyHolder reads it so too): it neither keeps the key
// from being blocked nor is referred.
func (s *Service) outsideAuthority(ctx context.Context, tx *store.Tx, c *certRow, may func(*certRow) bool) ([]*certRow, error) {
	all, err := keyCerts(ctx, tx, c, "good", s.env.Clock.Now())
	if err != nil {
		return nil, err
	}
	var out []*certRow
	for _, o := range all {
		if !may(o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// revokeSameKey revokes for keyCompromise, in tx, every good unexpired
// end-entity certificate other than issuer/serial whose key is that of
// certDER and that may (nil: any) allows, and returns them as "ca/serial";
// with keepKey none of them blocks the key. It also returns the good
// unexpired certificates of the key it left: those may refuses, and CA
// certificates of the key, which the platform never issues for an end
// entity's key, left to the dual control their revocation needs (and
// logged).
func (s *Service) revokeSameKey(ctx context.Context, tx *store.Tx, issuer, serial string, certDER []byte, actor string, now time.Time,
	may func(*certRow) bool, keepKey bool) (also, left []string, err error) {
	found, err := keyCerts(ctx, tx, &certRow{issuer: issuer, serial: serial, der: certDER}, "good", now)
	if err != nil {
		return nil, nil, fmt.Errorf("certificates of the compromised key: %w", err)
	}
	for _, r := range found {
		ref := r.issuer + "/" + r.serial
		if may != nil && !may(r) {
			left = append(left, ref)
			continue
		}
		res, newly, err := s.revokeRowScoped(ctx, tx, r.issuer, r.serial, "keyCompromise", actor,
			map[string]any{"key_compromised_in": "cert/" + issuer + "/" + serial}, now, keyScope{keepKey: keepKey})
		if errors.Is(err, errCACertOfKey) {
			s.env.Logger.Warn("a CA certificate carries a key revoked for keyCompromise; revoke it under dual control",
				"ca", r.issuer, "serial", r.serial, "compromised_in", issuer+"/"+serial)
			left = append(left, ref)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("revoke %s, of the same key: %w", ref, err)
		}
		if newly {
			also = append(also, ref)
		}
		// The encryption certificate of a pair whose signing
		// certificate this is (revokePair).
		also = append(also, res.AlsoRevoked...)
	}
	return also, left, nil
}

// referralAction is the audit action of a keyCompromise report left to a
// CA operator.
const referralAction = "ca.key.compromise.referred"

// referKey records in tx, for a CA operator, that actor revoked c for
// keyCompromise while the certificates outside of the key lie outside its
// authority; left are those of them left good (also not_revoked). It
// returns the certificates outside, described for the alert.
func (s *Service) referKey(ctx context.Context, tx *store.Tx, c *certRow, actor string, outside []*certRow, left []string) ([]string, error) {
	described := make([]string, 0, len(outside))
	certs := make([]map[string]any, 0, len(outside))
	for _, o := range outside {
		org := o.requesterOrg
		if org == "" {
			org = "(platform)"
		}
		described = append(described, fmt.Sprintf("%s/%s (org %s, %s)", o.issuer, o.serial, org, describeStatus(o)))
		certs = append(certs, map[string]any{"certificate": o.issuer + "/" + o.serial, "requester_org": o.requesterOrg,
			"status": describeStatus(o), "subject": o.subject})
	}
	hash, _ := keyHash(c.der)
	_, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: actor, Action: referralAction,
		Object: "cert/" + c.issuer + "/" + c.serial, Outcome: audit.Success, Details: map[string]any{
			"reason": "keyCompromise", "requester_org": c.requesterOrg, "key_sha256": hex.EncodeToString(hash),
			"outside_authority": certs, "not_revoked": left, "key_blocked": false,
			"action": "a CA operator decides: revoking any certificate of the key for keyCompromise revokes them all and blocks the key",
		}})
	if err != nil {
		return nil, err
	}
	return described, nil
}

// describeStatus is a certificate's status, with the reason of a revocation.
func describeStatus(c *certRow) string {
	if c.status == "revoked" {
		return "revoked " + reasonName(c.reason)
	}
	return c.status
}

// alertReferral raises the alert for a keyCompromise report left to a CA
// operator (referKey), once its transaction committed.
func (s *Service) alertReferral(ctx context.Context, issuer, serial, actor string, out *RevokeResponse) {
	s.keyReferrals().WithLabelValues(issuer).Inc()
	s.env.Logger.Error("ALERT: a key certified to other holders was reported compromised; a CA operator must decide on its other certificates",
		"ca", issuer, "serial", serial, "actor", actor, "request_id", httpx.RequestID(ctx),
		"outside_authority", strings.Join(out.referred, ", "), "not_revoked", strings.Join(out.NotRevoked, ", "),
		"key_blocked", false, "audit_action", referralAction)
}

// keyAlerts holds the referral metric, made on first use.
type keyAlerts struct {
	once      sync.Once
	referrals *prometheus.CounterVec
}

// keyReferrals is the counter of keyCompromise reports left to a CA
// operator, by the CA of the certificate reported.
func (s *Service) keyReferrals() *prometheus.CounterVec {
	s.keyAlerts.once.Do(func() {
		s.keyAlerts.referrals = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "govtrust_ca_key_compromise_referrals_total",
			Help: "keyCompromise revocations whose key is certified outside the reporter's authority: the other certificates were left good and the key unblocked; each needs a CA operator.",
		}, []string{"ca"})
	})
	return s.keyAlerts.referrals
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
