package kmc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
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

// APIRoutes implements node.APIRouter.
func (s *Service) APIRoutes(m *authz.Mux) {
	// The escrow named by the path: its organisation decides who may ask
	// (an RA of that organisation) and who may carry out the recovery.
	escrowRes := func(r *http.Request) (policy.Resource, error) {
		ca, serial := r.PathValue("ca"), strings.ToLower(r.PathValue("serial"))
		res := policy.Resource{Type: "kmc-escrow", ID: ca + "/" + serial}
		var org string
		err := s.env.DB.ReadRow(r.Context(), `SELECT org FROM kmc_escrow WHERE ca = ? AND (enc_serial = ? OR sign_serial = ?)`, ca, serial, serial).Scan(&org)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return res, err
		}
		res.Org = org
		return res, nil
	}
	kindCtx := func(*http.Request, policy.Resource) map[string]string { return map[string]string{"kind": RecoverKind} }
	recoveryRes := func(r *http.Request) (policy.Resource, error) {
		res := policy.Resource{Type: "kmc-recovery", ID: r.PathValue("id")}
		var org, requester string
		err := s.env.DB.ReadRow(r.Context(), `SELECT e.org, r.requester FROM kmc_recoveries r JOIN kmc_escrow e ON e.id = r.escrow_id
			WHERE r.id = ?`, r.PathValue("id")).Scan(&org, &requester)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return res, err
		}
		res.Org, res.Owner = org, requester
		return res, nil
	}
	m.Handle("POST /api/v1/kmc/escrow/{ca}/{serial}/recoveries", authz.Rule{Action: "dual.request", Resource: escrowRes, Context: kindCtx}, s.requestRecovery)
	m.Handle("POST /api/v1/kmc/recoveries/{id}/execute", authz.Rule{Action: "kms.key.recover", Resource: recoveryRes}, s.executeRecovery)
}

// RecoveryRequest is the body of POST /api/v1/kmc/escrow/{ca}/{serial}/recoveries.
type RecoveryRequest struct {
	// RecipientCertificate (PEM, SM2) receives the recovered key, enveloped
	// to its public key.
	RecipientCertificate string `json:"recipient_certificate"`
	Reason               string `json:"reason"`
	CaseReference        string `json:"case_reference"`
}

// Validate implements httpx.Validator.
func (r *RecoveryRequest) Validate() error {
	switch {
	case strings.TrimSpace(r.RecipientCertificate) == "":
		return errors.New("recipient_certificate (PEM) is required")
	case strings.TrimSpace(r.Reason) == "" || len(r.Reason) > 1024:
		return errors.New("reason is required (at most 1024 bytes)")
	case strings.TrimSpace(r.CaseReference) == "" || len(r.CaseReference) > 256:
		return errors.New("case_reference is required (at most 256 bytes)")
	}
	return nil
}

// recoveryPayload is what the approvers approve, canonical (fixed field
// order, encoding/json).
type recoveryPayload struct {
	Kind          string `json:"kind"`
	Escrow        string `json:"escrow"`
	CA            string `json:"ca"`
	Serial        string `json:"serial"`
	Subject       string `json:"subject"`
	Requester     string `json:"requester"`
	Reason        string `json:"reason"`
	CaseReference string `json:"case_reference"`
	Recipient     string `json:"recipient"`        // subject of the recipient certificate
	RecipientCert []byte `json:"recipient_cert"`   // DER
	RecipientHash string `json:"recipient_sha256"` // for people comparing
}

// PendingRecovery is the 202 answer of a recovery request.
type PendingRecovery struct {
	Approval    string `json:"approval"`
	Status      string `json:"status"`
	PayloadHash string `json:"payload_hash"`
	Required    int    `json:"required"`
	Expires     string `json:"expires"`
	Summary     string `json:"summary"`
}

func parseRecipient(pemText string, now time.Time) (*smx509.Certificate, *ecdsa.PublicKey, error) {
	b, _ := pem.Decode([]byte(pemText))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%w: recipient_certificate is not a PEM certificate", ErrRequest)
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: recipient_certificate: %w", ErrRequest, err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != sm2.P256() {
		return nil, nil, fmt.Errorf("%w: the recipient certificate must certify an SM2 key (the key is delivered as an SM2EnvelopedKey)", ErrPolicy)
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, nil, fmt.Errorf("%w: the recipient certificate is not valid now", ErrPolicy)
	}
	return c, pub, nil
}

func (s *Service) requestRecovery(w http.ResponseWriter, r *http.Request) error {
	p := authz.PrincipalFrom(r.Context())
	ctx := audit.WithActor(r.Context(), p.Actor())
	var req RecoveryRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	ca, serial := r.PathValue("ca"), strings.ToLower(r.PathValue("serial"))
	e, err := s.findEscrow(ctx, ca, serial)
	if err != nil {
		if errors.Is(err, ErrSigningKey) {
			_, _ = s.env.Audit.Write(ctx, s.env.DB, audit.Record{Actor: p.Actor(), Action: ActionRecover, Object: "cert/" + ca + "/" + serial,
				Outcome: audit.Denied, RequestID: httpx.RequestID(ctx), Details: map[string]any{"reason": "signing key"}})
		}
		return err
	}
	now := s.env.Clock.Now()
	if err := s.recoverable(e, now); err != nil {
		return err
	}
	cert, _, err := parseRecipient(req.RecipientCertificate, now)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cert.Raw)
	pl := recoveryPayload{Kind: RecoverKind, Escrow: e.id, CA: ca, Serial: serial, Subject: e.subject, Requester: p.Account.ID,
		Reason: req.Reason, CaseReference: req.CaseReference, Recipient: cert.Subject.String(), RecipientCert: cert.Raw,
		RecipientHash: hex.EncodeToString(sum[:])}
	payload, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("recover the escrowed encryption key of %s (certificate %s/%s) for %s (certificate SHA-256 %s); reason: %s; case %s",
		e.subject, ca, serial, pl.Recipient, pl.RecipientHash, req.Reason, req.CaseReference)
	d, err := s.env.Dual.Create(ctx, dualRequest(p.Account.ID, payload, s.cfg.RecoveryApprovals, s.cfg.RecoveryTTL, summary))
	if err != nil {
		return err
	}
	if _, err := s.env.DB.Exec(ctx, `INSERT INTO kmc_recoveries (id, escrow_id, payload, requester, created_at) VALUES (?, ?, ?, ?, ?)`,
		d.ID, e.id, payload, p.Account.ID, fmtTime(now)); err != nil {
		return fmt.Errorf("kmc: record recovery %s: %w", d.ID, err)
	}
	w.Header().Set("Location", "/api/v1/approvals/"+d.ID)
	return httpx.WriteJSON(w, http.StatusAccepted, &PendingRecovery{Approval: d.ID, Status: string(d.Status),
		PayloadHash: hex.EncodeToString(d.PayloadHash), Required: d.Required, Expires: d.Expires.Format(time.RFC3339), Summary: summary})
}

// recoverable refuses keys not yet bound to a certificate or past retention.
func (s *Service) recoverable(e *escrow, now time.Time) error {
	if e.status != StatusActive {
		return fmt.Errorf("%w: escrow %s has no issued certificate", ErrPolicy, e.id)
	}
	if now.After(e.notAfter.Add(s.cfg.Retention)) {
		return fmt.Errorf("%w: the retention of certificate %s/%s ended at %s", ErrPolicy, e.ca, e.encSerial,
			e.notAfter.Add(s.cfg.Retention).Format(time.RFC3339))
	}
	return nil
}

// RecoveryResponse is the answer of a recovery carried out.
type RecoveryResponse struct {
	Approval string `json:"approval"`
	CA       string `json:"ca"`
	Serial   string `json:"serial"`
	// EnvelopedKey is the recovered private key as an SM2EnvelopedKey
	// (GM/T 0009 / GB/T 35276, DER, base64) to the recipient certificate.
	EnvelopedKey []byte `json:"enveloped_key"`
	Recipient    string `json:"recipient"`
}

func (s *Service) executeRecovery(w http.ResponseWriter, r *http.Request) error {
	p := authz.PrincipalFrom(r.Context())
	ctx := audit.WithActor(r.Context(), p.Actor())
	id := r.PathValue("id")
	var payload []byte
	var escrowID string
	err := s.env.DB.ReadRow(ctx, `SELECT payload, escrow_id FROM kmc_recoveries WHERE id = ?`, id).Scan(&payload, &escrowID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: recovery %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("kmc: recovery %s: %w", id, err)
	}
	var pl recoveryPayload
	if err := json.Unmarshal(payload, &pl); err != nil {
		return fmt.Errorf("kmc: recovery %s: %w", id, err)
	}
	now := s.env.Clock.Now()
	e, err := s.findEscrow(ctx, pl.CA, pl.Serial)
	if err != nil {
		return err
	}
	if err := s.recoverable(e, now); err != nil {
		return err
	}
	cert, err := smx509.ParseCertificate(pl.RecipientCert)
	if err != nil {
		return fmt.Errorf("kmc: recovery %s: %w", id, err)
	}
	recipient, _ := cert.PublicKey.(*ecdsa.PublicKey)
	var env []byte
	err = s.env.Dual.Do(ctx, id, payload, func(tx *store.Tx) error {
		k, err := s.unwrap(ctx, tx, e)
		if err != nil {
			return err
		}
		defer zero(k)
		spki, err := smx509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil || !bytes.Equal(spki, e.publicKey) {
			return errors.Join(err, fmt.Errorf("kmc: escrow %s: the unwrapped key does not match its public key", e.id))
		}
		if env, err = sm2.MarshalEnvelopedPrivateKey(rand.Reader, recipient, k); err != nil {
			return fmt.Errorf("kmc: envelope: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE kmc_recoveries SET executed_at = ? WHERE id = ?`, fmtTime(now), id); err != nil {
			return err
		}
		_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: p.Actor(), Action: ActionRecover, Object: "kmc-escrow/" + e.id,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"approval": id, "ca": pl.CA, "serial": pl.Serial, "subject": pl.Subject, "requester": pl.Requester,
				"reason": pl.Reason, "case_reference": pl.CaseReference, "recipient": pl.Recipient, "recipient_sha256": pl.RecipientHash}})
		return err
	})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpx.WriteJSON(w, http.StatusOK, &RecoveryResponse{Approval: id, CA: pl.CA, Serial: pl.Serial, EnvelopedKey: env, Recipient: pl.Recipient})
}
