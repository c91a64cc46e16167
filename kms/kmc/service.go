package kmc

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// keyService owns the escrow key in the key manager: only the KMC unwraps
// escrowed keys (key separation from "kms", "ca" and the rest).
const keyService = "kmc"

// Errors; each wraps the httpx sentinel that gives its HTTP status.
var (
	ErrNotFound = fmt.Errorf("kmc: not found: %w", httpx.ErrNotFound)
	ErrConflict = fmt.Errorf("kmc: conflict: %w", httpx.ErrConflict)
	ErrRequest  = fmt.Errorf("kmc: invalid request: %w", httpx.ErrBadRequest)
	ErrPolicy   = fmt.Errorf("kmc: refused: %w", httpx.ErrPolicy)
	// ErrSigningKey refuses anything that would escrow or recover a signing
	// key: only the encryption keys of dual certificates are escrowed
	// (GM/T 0014; ACCEPTANCE.md D-03).
	ErrSigningKey = fmt.Errorf("kmc: signing keys are never escrowed or recovered (only the encryption key of a dual certificate is): %w", httpx.ErrPolicy)
)

// Audit actions.
const (
	ActionGenerate = "kmc.key.generate"
	ActionBind     = "kmc.key.bind"
	ActionAbandon  = "kmc.key.abandon"
	// ActionRevoke records the CA's notice that the escrow's encryption
	// certificate was revoked (GM/T 0014 RevokeKeyReq).
	ActionRevoke  = "kmc.key.revoke"
	ActionRecover = "kms.key.recover"
	// RecoverKind is the dual-control kind of a key recovery.
	RecoverKind = "kms.key.recover"
)

// Escrow statuses.
const (
	StatusPending = "pending" // generated, certificate not yet issued
	StatusActive  = "active"  // bound to its encryption certificate
	// StatusAbandoned: no certificate was issued for the key (the request
	// failed after ApplyKey); its wrapped key is wiped.
	StatusAbandoned = "abandoned"
	// StatusRevoked: bound to its encryption certificate, which the CA
	// revoked (GM/T 0014 RevokeKeyReq; revoked_at and revocation_reason
	// say when and why). The key stays recoverable, as an active one, so
	// that what was encrypted to it can still be read.
	StatusRevoked = "revoked"
)

// ErrNotStarted: the KMC has not started yet (the CA starts before it and
// tells it of revocations made then once it has).
var ErrNotStarted = fmt.Errorf("kmc: not started: %w", httpx.ErrUnavailable)

// Certificates is the KMC's view of the platform's certificate authorities
// (ARCHITECTURE.md §1: cmd/govtrust wires the CA in). Not-found errors
// wrap httpx.ErrNotFound.
type Certificates interface {
	// IssuedCertificate returns certificate serial of CA caID as the CA
	// recorded it.
	IssuedCertificate(ctx context.Context, caID, serial string) (*Certificate, error)
	// FindIssued returns the CA's record of the certificate der when a
	// platform CA issued exactly these bytes (its signature verifies under
	// that CA's certificate and the CA recorded them).
	FindIssued(ctx context.Context, der []byte) (*Certificate, error)
	// CertificatesForKey returns the certificates CA caID (any CA when
	// "") recorded between from and to that certify the public key spki.
	CertificatesForKey(ctx context.Context, caID string, spki []byte, from, to time.Time) ([]*Certificate, error)
	// CACertificates returns the certificate of every platform CA
	// generation (roots and issuing CAs, active, retired and revoked).
	CACertificates() []*smx509.Certificate
	// Revoked reports whether a platform CA revoked the certificate der,
	// and when and why (the RFC 5280 reason name); a zero time when the
	// CA's record says good; not found when no platform CA issued it (a
	// root, an offline CA's certificate): revwatch.Reader.
	Revoked(ctx context.Context, der []byte) (time.Time, string, error)
}

// Certificate is a certificate as the CA recorded it.
type Certificate struct {
	CA, Serial string
	DER        []byte
	// Status is "good" or "revoked".
	Status string
	// Requester is the account that asked for it; Created when it was
	// recorded.
	Requester string
	Created   time.Time
	// RevokedAt and Reason (an RFC 5280 CRLReason name) are set when
	// Status is "revoked".
	RevokedAt time.Time
	Reason    string
}

// Service is the key management centre.
type Service struct {
	env   *node.Env
	cfg   config.KMCConfig
	certs Certificates
	// stop ends the sweep loop, done is closed when it has.
	stop context.CancelFunc
	done chan struct{}
}

// UseCertificates wires the platform's CA in. Without it the KMC generates
// and escrows keys, but refuses recoveries (it cannot check certificates)
// and does not sweep pending escrows.
func (s *Service) UseCertificates(c Certificates) { s.certs = c }

var (
	_ node.Service   = (*Service)(nil)
	_ node.Migrator  = (*Service)(nil)
	_ node.APIRouter = (*Service)(nil)
)

// New returns the KMC.
func New() *Service { return &Service{} }

// Name implements node.Service.
func (s *Service) Name() string { return "kmc" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations {
	return []store.Migrations{store.EmbeddedMigrations("kmc", migrations, "migrations")}
}

// Start makes sure the escrow key exists.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	s.env = env
	s.cfg = config.Defaults().KMC
	if env.Config != nil {
		s.cfg = env.Config.KMC
	}
	ctx = audit.WithActor(ctx, "system")
	_, err := env.Keys.Wrap(ctx, &hsm.WrapRequest{URI: s.cfg.EscrowKey, Service: keyService, Data: []byte{0}})
	if errors.Is(err, hsm.ErrNotFound) {
		alg := hsm.SM4
		if strings.HasPrefix(s.cfg.EscrowKey, "pkcs11:") {
			alg = hsm.AES256 // PKCS#11 has no standard SM4 (GM-STANDARDS.md §8)
		}
		_, err = env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: s.cfg.EscrowKey, Algorithm: alg, Usage: hsm.UsageWrap, Service: keyService})
	}
	if err != nil {
		return fmt.Errorf("kmc: escrow key %s: %w", s.cfg.EscrowKey, err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop, s.done = cancel, make(chan struct{})
	go s.sweepLoop(loopCtx)
	return nil
}

// Ready implements node.Service: the escrow key wraps.
func (s *Service) Ready(ctx context.Context) error {
	if s.env == nil {
		return errors.New("kmc: not started")
	}
	if _, err := s.env.Keys.Wrap(ctx, &hsm.WrapRequest{URI: s.cfg.EscrowKey, Service: keyService, Data: []byte{0}}); err != nil {
		return fmt.Errorf("kmc: escrow key %s: %w", s.cfg.EscrowKey, err)
	}
	return nil
}

// Stop implements node.Service: it ends the sweep loop and waits for it.
func (s *Service) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kmc: stop sweep: %w", ctx.Err())
	}
}

const timeFormat = time.RFC3339Nano

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// nullString is NULL for "", else s.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ApplyKeyRequest is the CA's request for an encryption key pair
// (GM/T 0014 ApplyKeyReq, GM-STANDARDS.md §2.3).
type ApplyKeyRequest struct {
	// SigningPublicKey is the holder's signing public key
	// (SubjectPublicKeyInfo DER, SM2): the envelope is sealed to it.
	SigningPublicKey []byte
	// Subject, Org, Requester and CA are recorded with the escrow: who the
	// key is for, in which organisation, who asked, on which CA.
	Subject, Org, Requester, CA string
	// SKF asks for the SKF ENVELOPEDKEYBLOB form as well.
	SKF bool
}

// ApplyKeyResponse is the KMC's answer (GM/T 0014 RetKeyRespond).
type ApplyKeyResponse struct {
	EscrowID string
	// PublicKey is the encryption public key (SubjectPublicKeyInfo DER).
	PublicKey []byte
	// EnvelopedKey is the SM2EnvelopedKey (GM/T 0009 / GB/T 35276) to the
	// signing public key.
	EnvelopedKey []byte
	// SKFBlob is the ENVELOPEDKEYBLOB form, when asked for.
	SKFBlob []byte
}

// sm2Public parses an SM2 SubjectPublicKeyInfo.
func sm2Public(spki []byte) (*ecdsa.PublicKey, error) {
	pub, err := smx509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrRequest, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != sm2.P256() {
		return nil, fmt.Errorf("%w: the holder's key must be SM2: dual certificates and their envelopes are SM2 (GM/T 0015, GM/T 0009)", ErrPolicy)
	}
	return ec, nil
}

func newID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// escrowAAD binds a wrapped private key to its escrow record and public key.
func escrowAAD(id string, spki []byte) []byte {
	h := sha256.Sum256(spki)
	return fmt.Appendf(nil, "govtrust/kmc/v1|%s|%x", id, h)
}

// ApplyKey generates an SM2 encryption key pair, escrows the private key
// wrapped under the escrow key, and returns the public key and the private
// key enveloped to the holder's signing key. The escrow is recorded (and
// audited) before anything is returned.
func (s *Service) ApplyKey(ctx context.Context, req *ApplyKeyRequest) (*ApplyKeyResponse, error) {
	signPub, err := sm2Public(req.SigningPublicKey)
	if err != nil {
		return nil, err
	}
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kmc: generate: %w", err)
	}
	defer zero(key)
	spki, err := smx509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kmc: public key: %w", err)
	}
	id, err := newID()
	if err != nil {
		return nil, fmt.Errorf("kmc: escrow id: %w", err)
	}
	d := key.D.FillBytes(make([]byte, 32))
	wrapped, err := s.env.Keys.Wrap(ctx, &hsm.WrapRequest{URI: s.cfg.EscrowKey, Service: keyService, Data: d, AAD: escrowAAD(id, spki)})
	clear(d)
	if err != nil {
		return nil, fmt.Errorf("kmc: escrow: %w", err)
	}
	out := &ApplyKeyResponse{EscrowID: id, PublicKey: spki}
	if out.EnvelopedKey, err = sm2.MarshalEnvelopedPrivateKey(rand.Reader, signPub, key); err != nil {
		return nil, fmt.Errorf("kmc: envelope: %w", err)
	}
	if req.SKF {
		if out.SKFBlob, err = MarshalSKFEnvelopedKey(signPub, key); err != nil {
			return nil, err
		}
	}
	pubHash := sha256.Sum256(spki)
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO kmc_escrow (id, algorithm, public_key, wrapped, escrow_key, sign_public_key, subject, org,
			requester, ca, status, created_at) VALUES (?, 'sm2', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, spki, wrapped, s.cfg.EscrowKey, req.SigningPublicKey, req.Subject, req.Org, req.Requester, nullString(req.CA), StatusPending,
			fmtTime(s.env.Clock.Now())); err != nil {
			return err
		}
		_, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionGenerate, Object: "kmc-escrow/" + id,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"subject": req.Subject, "org": req.Org, "ca": req.CA, "requester": req.Requester,
				"public_key_sha256": hex.EncodeToString(pubHash[:]), "escrow_key": s.cfg.EscrowKey, "skf": req.SKF}})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kmc: record escrow: %w", err)
	}
	return out, nil
}

// Bind records the certificates issued for an escrowed key (the encryption
// certificate and its signing twin), which makes the key recoverable by
// the encryption certificate's serial until retention after notAfter.
// Binding an escrow again to the same certificates succeeds (a caller that
// lost the answer tries again); to others, or an abandoned escrow, is a
// conflict.
func (s *Service) Bind(ctx context.Context, escrowID, ca, encSerial, signSerial string, notAfter time.Time) error {
	return s.bind(ctx, escrowID, ca, encSerial, signSerial, notAfter, nil, nil)
}

// bind binds pending escrow escrowID. The escrow becomes revoked rather
// than active when the CA has already revoked the encryption certificate:
// rev says so when the certificate was read from the CA (the sweep, a
// recovery request), and RevokeKey may have recorded the revocation on the
// pending escrow before (a revocation that overtook the binding).
func (s *Service) bind(ctx context.Context, escrowID, ca, encSerial, signSerial string, notAfter time.Time, rev *Certificate, extra map[string]any) error {
	var revokedAt, reason any
	if rev != nil && rev.Status == "revoked" {
		revokedAt, reason = fmtTime(rev.RevokedAt), rev.Reason
	}
	return s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE kmc_escrow SET ca = ?, enc_serial = ?, sign_serial = ?, not_after = ?,
			revoked_at = COALESCE(revoked_at, ?), revocation_reason = COALESCE(revocation_reason, ?),
			status = CASE WHEN COALESCE(revoked_at, ?) IS NULL THEN 'active' ELSE 'revoked' END
			WHERE id = ? AND status = ?`, ca, encSerial, nullString(signSerial), fmtTime(notAfter), revokedAt, reason, revokedAt,
			escrowID, StatusPending)
		if err != nil {
			return fmt.Errorf("kmc: bind %s: %w", escrowID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("kmc: bind %s: %w", escrowID, err)
		}
		if n != 1 {
			var status string
			var caCol, enc, sign sql.NullString
			err := tx.QueryRow(ctx, `SELECT status, ca, enc_serial, sign_serial FROM kmc_escrow WHERE id = ?`, escrowID).Scan(&status, &caCol, &enc, &sign)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("%w: escrow %s", ErrNotFound, escrowID)
			case err != nil:
				return fmt.Errorf("kmc: bind %s: %w", escrowID, err)
			case (status == StatusActive || status == StatusRevoked) && caCol.String == ca && enc.String == encSerial && sign.String == signSerial:
				return nil
			}
			return fmt.Errorf("%w: escrow %s is %s (certificate %s/%s), not pending", ErrConflict, escrowID, status, caCol.String, enc.String)
		}
		var status string
		var at, why sql.NullString
		if err := tx.QueryRow(ctx, `SELECT status, revoked_at, revocation_reason FROM kmc_escrow WHERE id = ?`, escrowID).Scan(&status, &at, &why); err != nil {
			return fmt.Errorf("kmc: bind %s: %w", escrowID, err)
		}
		details := map[string]any{"ca": ca, "enc_serial": encSerial, "sign_serial": signSerial, "not_after": fmtTime(notAfter), "status": status}
		maps.Copy(details, extra)
		if _, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionBind, Object: "kmc-escrow/" + escrowID,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: details}); err != nil {
			return err
		}
		if status != StatusRevoked {
			return nil
		}
		_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionRevoke, Object: "kmc-escrow/" + escrowID,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"ca": ca, "enc_serial": encSerial, "reason": why.String, "revoked_at": at.String,
				"note": "the encryption certificate was revoked before the escrow was bound to it"}})
		return err
	})
}

// KeyRevocation is the CA's notice that it revoked an encryption
// certificate (GM/T 0014 RevokeKeyReq, GM-STANDARDS.md §2.2/§2.3).
type KeyRevocation struct {
	CA, EncSerial string
	// PublicKey is the certificate's SubjectPublicKeyInfo (DER): it finds
	// an escrow not yet bound to the certificate.
	PublicKey []byte
	RevokedAt time.Time
	// Reason is the RFC 5280 CRLReason name.
	Reason string
	// Actor is who revoked, for the audit record.
	Actor string
}

// RevokeKey records, in the CA's transaction tx, that the encryption
// certificate of an escrow was revoked: the escrow becomes revoked, with
// the date and reason, and the change is audited (kmc.key.revoke), so the
// revocation and the KMC's record of it commit together. A change of
// reason (to keyCompromise) updates the reason and keeps the date; the
// same notice again changes nothing. An escrow not yet bound to the
// certificate (its binding was lost, or is still on its way) gets the
// revocation recorded and becomes revoked when it is bound. A certificate
// of no escrow is nothing to record. The key stays recoverable.
func (s *Service) RevokeKey(ctx context.Context, tx *store.Tx, r *KeyRevocation) error {
	if s.env == nil {
		return ErrNotStarted
	}
	var id, status string
	var prev sql.NullString
	err := tx.QueryRow(ctx, `SELECT id, status, revocation_reason FROM kmc_escrow WHERE ca = ? AND enc_serial = ?`, r.CA, r.EncSerial).
		Scan(&id, &status, &prev)
	if errors.Is(err, sql.ErrNoRows) && len(r.PublicKey) > 0 {
		err = tx.QueryRow(ctx, `SELECT id, status, revocation_reason FROM kmc_escrow WHERE status = 'pending' AND public_key = ?`, r.PublicKey).
			Scan(&id, &status, &prev)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kmc: escrow of %s/%s: %w", r.CA, r.EncSerial, err)
	}
	if prev.Valid && prev.String == r.Reason {
		return nil
	}
	newStatus := StatusRevoked
	if status == StatusPending {
		newStatus = StatusPending // bind makes it revoked
	}
	if _, err := tx.Exec(ctx, `UPDATE kmc_escrow SET status = ?, revoked_at = COALESCE(revoked_at, ?), revocation_reason = ? WHERE id = ?`,
		newStatus, fmtTime(r.RevokedAt), r.Reason, id); err != nil {
		return fmt.Errorf("kmc: revoke escrow %s: %w", id, err)
	}
	details := map[string]any{"ca": r.CA, "enc_serial": r.EncSerial, "reason": r.Reason, "revoked_at": fmtTime(r.RevokedAt),
		"status": newStatus, "key": "kept: recoverable until the retention ends"}
	if prev.Valid {
		details["previous_reason"] = prev.String
	}
	actor := r.Actor
	if actor == "" {
		actor = audit.ActorFrom(ctx)
	}
	_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: actor, Action: ActionRevoke, Object: "kmc-escrow/" + id,
		Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: details})
	return err
}

// Binding is an escrow bound to its certificates.
type Binding struct {
	EscrowID, CA, EncSerial, SignSerial string
}

// Bindings returns, read in q, every escrow bound to an encryption and a
// signing certificate. It needs no start: the CA reads them at its own
// start to record the pairs it issued before it kept them itself.
func (s *Service) Bindings(ctx context.Context, q store.Querier) ([]Binding, error) {
	rows, err := q.Query(ctx, `SELECT id, ca, enc_serial, sign_serial FROM kmc_escrow
		WHERE status IN ('active', 'revoked') AND enc_serial IS NOT NULL AND sign_serial IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("kmc: bindings: %w", err)
	}
	defer rows.Close()
	var out []Binding
	for rows.Next() {
		var b Binding
		if err := rows.Scan(&b.EscrowID, &b.CA, &b.EncSerial, &b.SignSerial); err != nil {
			return nil, fmt.Errorf("kmc: bindings: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("kmc: bindings: %w", err)
	}
	return out, nil
}

// Abandon marks a pending escrow abandoned and wipes its wrapped key: no
// certificate was issued for it (the CA's request failed after ApplyKey, or
// the sweep found none). Abandoning an abandoned escrow again succeeds; an
// escrow bound to a certificate is never abandoned (a conflict).
func (s *Service) Abandon(ctx context.Context, escrowID, reason string) error {
	return s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE kmc_escrow SET status = ?, wrapped = NULL WHERE id = ? AND status = ?`,
			StatusAbandoned, escrowID, StatusPending)
		if err != nil {
			return fmt.Errorf("kmc: abandon %s: %w", escrowID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("kmc: abandon %s: %w", escrowID, err)
		}
		if n != 1 {
			var status string
			err := tx.QueryRow(ctx, `SELECT status FROM kmc_escrow WHERE id = ?`, escrowID).Scan(&status)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("%w: escrow %s", ErrNotFound, escrowID)
			case err != nil:
				return fmt.Errorf("kmc: abandon %s: %w", escrowID, err)
			case status == StatusAbandoned:
				return nil
			}
			return fmt.Errorf("%w: escrow %s is %s; only a pending escrow is abandoned", ErrConflict, escrowID, status)
		}
		_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionAbandon, Object: "kmc-escrow/" + escrowID,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: map[string]any{"reason": reason, "wrapped_key": "wiped"}})
		return err
	})
}

// escrow is a stored escrow record (without its wrapped key).
type escrow struct {
	id, subject, org, requester, status string
	ca, encSerial, signSerial           string
	publicKey                           []byte
	notAfter                            time.Time
	// revokedAt and reason are set when the CA revoked the encryption
	// certificate (status revoked).
	revokedAt, reason string
}

// findEscrow finds the escrow of certificate serial on ca. A signing
// certificate's serial gives ErrSigningKey: it has no escrow, by design.
func (s *Service) findEscrow(ctx context.Context, ca, serial string) (*escrow, error) {
	var e escrow
	var notAfter sql.NullString
	var encSerial, signSerial, caCol, revokedAt, reason sql.NullString
	err := s.env.DB.ReadRow(ctx, `SELECT id, subject, org, requester, status, ca, enc_serial, sign_serial, public_key, not_after,
		revoked_at, revocation_reason FROM kmc_escrow WHERE ca = ? AND (enc_serial = ? OR sign_serial = ?)`, ca, serial, serial).
		Scan(&e.id, &e.subject, &e.org, &e.requester, &e.status, &caCol, &encSerial, &signSerial, &e.publicKey, &notAfter, &revokedAt, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no escrowed key for certificate %s on %s", ErrNotFound, serial, ca)
	}
	if err != nil {
		return nil, fmt.Errorf("kmc: escrow of %s/%s: %w", ca, serial, err)
	}
	e.ca, e.encSerial, e.signSerial = caCol.String, encSerial.String, signSerial.String
	e.revokedAt, e.reason = revokedAt.String, reason.String
	if notAfter.Valid {
		e.notAfter, _ = time.Parse(timeFormat, notAfter.String)
	}
	if e.signSerial == serial {
		return &e, fmt.Errorf("%w: certificate %s on %s is the signing certificate; its key never left the holder (the encryption certificate is %s)",
			ErrSigningKey, serial, ca, e.encSerial)
	}
	return &e, nil
}

// unwrap returns the escrowed private key of e.
func (s *Service) unwrap(ctx context.Context, tx *store.Tx, e *escrow) (*sm2.PrivateKey, error) {
	var wrapped []byte
	var keyURI string
	if err := tx.QueryRow(ctx, `SELECT wrapped, escrow_key FROM kmc_escrow WHERE id = ?`, e.id).Scan(&wrapped, &keyURI); err != nil {
		return nil, fmt.Errorf("kmc: escrow %s: %w", e.id, err)
	}
	if wrapped == nil {
		return nil, fmt.Errorf("%w: escrow %s was purged after its retention", ErrPolicy, e.id)
	}
	d, err := s.env.Keys.Unwrap(ctx, &hsm.WrapRequest{URI: keyURI, Service: keyService, Data: wrapped, AAD: escrowAAD(e.id, e.publicKey)})
	if err != nil {
		return nil, fmt.Errorf("kmc: unwrap escrow %s: %w", e.id, err)
	}
	defer clear(d)
	k, err := sm2.NewPrivateKey(d)
	if err != nil {
		return nil, fmt.Errorf("kmc: escrow %s: %w", e.id, err)
	}
	return k, nil
}

// zero clears a private scalar (best effort, as hsm/soft does).
func zero(k *sm2.PrivateKey) {
	if k != nil && k.D != nil {
		k.D.SetInt64(0)
	}
}

// dualRequest is the dual-control request of a key recovery; excluded
// may not approve it (the account of the recipient certificate).
func dualRequest(requester string, payload []byte, required int, ttl time.Duration, summary string, excluded ...string) dual.NewRequest {
	return dual.NewRequest{Kind: RecoverKind, Requester: requester, Payload: payload, Required: required, TTL: ttl,
		ApproverRole: string(policy.RoleKeyRecovery), Summary: summary, Excluded: excluded}
}
