package kmc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
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
		if errors.Is(err, sql.ErrNoRows) {
			// An encryption certificate whose escrow is still pending
			// (requestRecovery binds it).
			_, org, _, _, _, err = s.pendingOf(r.Context(), ca, serial)
			if errors.Is(err, ErrNotFound) {
				err = nil
			}
		}
		if err != nil {
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
	// to its public key. It must be a signing certificate a platform CA
	// issued and has not revoked, and either the subscriber's own (user
	// recovery) or bound to a key recovery officer's account (judicial
	// recovery): see checkRecipient.
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

// Recovery modes (GM/T 0034-2014 §12.4 user and §12.5 judicial key
// recovery), decided by the recipient certificate.
const (
	// ModeUser delivers the key to the subscriber's own signing
	// certificate (GM/T 0014 RestoreKeyReq.userPubKey).
	ModeUser = "user"
	// ModeJudicial delivers it to a key recovery officer's certificate,
	// for a judicial or official request.
	ModeJudicial = "judicial"
)

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
	// Mode is ModeUser or ModeJudicial; RecipientCA and RecipientSerial
	// name the recipient certificate on the platform CA that issued it,
	// RecipientIssuer is its issuer's name; Officer is the key recovery
	// officer's account name in a judicial recovery.
	Mode            string `json:"mode,omitempty"`
	RecipientCA     string `json:"recipient_ca,omitempty"`
	RecipientSerial string `json:"recipient_serial,omitempty"`
	RecipientIssuer string `json:"recipient_issuer,omitempty"`
	Officer         string `json:"officer,omitempty"`
	// RecipientByRequester is set in a user recovery when the recipient
	// certificate was issued at the request of the recovery's requester.
	RecipientByRequester bool `json:"recipient_by_requester,omitempty"`
}

// PendingRecovery is the 202 answer of a recovery request.
type PendingRecovery struct {
	Approval    string `json:"approval"`
	Status      string `json:"status"`
	PayloadHash string `json:"payload_hash"`
	Required    int    `json:"required"`
	Expires     string `json:"expires"`
	Summary     string `json:"summary"`
	// Mode, RecipientCA, RecipientSerial and RecipientStatus say to whom
	// the key would go.
	Mode            string `json:"mode"`
	RecipientCA     string `json:"recipient_ca"`
	RecipientSerial string `json:"recipient_serial"`
	RecipientStatus string `json:"recipient_status"`
	// RecipientByRequester says, in a user recovery, that the recipient
	// certificate was issued at the request of the recovery's requester
	// (the summary says so first): the approvers then check that it
	// certifies the subscriber's own key.
	RecipientByRequester bool `json:"recipient_by_requester,omitempty"`
}

// parseRecipientPEM reads the recipient certificate of a request.
func parseRecipientPEM(pemText string) ([]byte, error) {
	b, _ := pem.Decode([]byte(pemText))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: recipient_certificate is not a PEM certificate", ErrRequest)
	}
	if _, err := smx509.ParseCertificate(b.Bytes); err != nil {
		return nil, fmt.Errorf("%w: recipient_certificate: %w", ErrRequest, err)
	}
	return b.Bytes, nil
}

// recipient is a recipient certificate checked by checkRecipient.
type recipient struct {
	cert    *smx509.Certificate
	pub     *ecdsa.PublicKey
	issued  *Certificate
	mode    string
	officer string
	// account is the ID of the account the certificate is bound to, ""
	// when none: the holder of the key once delivered, who may not approve.
	account string
}

// oidIdentityArc is the arc of the GM/T 0015 subject-identity extensions
// (resident ID, social insurance, business registration, organisation
// code, tax number: 1.2.156.10260.4.1.x).
var oidIdentityArc = asn1.ObjectIdentifier{1, 2, 156, 10260, 4}

// sameSubscriber reports whether c names the holder of the encryption
// certificate enc: the same subject and every GM/T 0015 identity
// extension of enc with the same value (two people of one name and
// organisation differ by their ID numbers).
func sameSubscriber(enc, c *smx509.Certificate) bool {
	if enc.Subject.String() != c.Subject.String() {
		return false
	}
	for _, e := range enc.Extensions {
		if len(e.Id) < len(oidIdentityArc) || !e.Id[:len(oidIdentityArc)].Equal(oidIdentityArc) {
			continue
		}
		found := false
		for _, f := range c.Extensions {
			if f.Id.Equal(e.Id) && bytes.Equal(f.Value, e.Value) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// checkRecipient decides whether the key certified by enc may be delivered
// to the certificate der now (GM/T 0014 RestoreKeyReq delivers only to the
// subscriber's signing key; GM/T 0034 §12.5 judicial recovery to the
// officer's). The certificate must certify an SM2 signing key
// (digitalSignature, not a CA), be valid now, have been issued by a
// platform CA (signature and the CA's record) and not be revoked (the
// CA's record, read now); and it must be the subscriber's (ModeUser:
// sameSubscriber) or bound to the account of an enabled key recovery
// officer (ModeJudicial: internal/authz certificate bindings, which name
// the exact certificate by its SHA-256, not its issuer and subject).
// Refusals are ErrPolicy and say why.
func (s *Service) checkRecipient(ctx context.Context, enc *smx509.Certificate, der []byte, now time.Time) (*recipient, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient certificate: %w", ErrRequest, err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	switch {
	case !ok || pub.Curve != sm2.P256():
		return nil, fmt.Errorf("%w: the recipient certificate must certify an SM2 key (the key is delivered as an SM2EnvelopedKey)", ErrPolicy)
	case now.Before(c.NotBefore) || now.After(c.NotAfter):
		return nil, fmt.Errorf("%w: the recipient certificate is not valid now (%s to %s)", ErrPolicy,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	case c.IsCA || c.KeyUsage&smx509.KeyUsageDigitalSignature == 0:
		return nil, fmt.Errorf("%w: the recipient certificate must be a signing certificate (digitalSignature): the key is enveloped to the holder's signing key (GM/T 0014 RestoreKeyReq)", ErrPolicy)
	}
	issued, err := s.certs.FindIssued(ctx, der)
	if errors.Is(err, httpx.ErrNotFound) {
		return nil, fmt.Errorf("%w: the recipient certificate (issuer %s, serial %x) was not issued by a platform CA; the key is delivered only to a certificate the platform issued",
			ErrPolicy, c.Issuer, c.SerialNumber)
	}
	if err != nil {
		return nil, fmt.Errorf("kmc: recipient certificate: %w", err)
	}
	if issued.Status != "good" {
		return nil, fmt.Errorf("%w: the recipient certificate %s/%s is %s", ErrPolicy, issued.CA, issued.Serial, issued.Status)
	}
	if err := s.issuersNotRevoked(ctx, c, issued); err != nil {
		return nil, err
	}
	r := &recipient{cert: c, pub: pub, issued: issued}
	// The account bound to exactly this certificate (its SHA-256), if any:
	// a certificate with the same names is not the officer's.
	acc, err := s.env.Authz.CertificateAccount(ctx, der)
	unpinned := false
	switch {
	case errors.Is(err, authz.ErrUnpinnedBinding):
		acc, unpinned = nil, true
	case errors.Is(err, authz.ErrNotFound):
		acc = nil
	case err != nil:
		return nil, fmt.Errorf("kmc: recipient certificate's account: %w", err)
	}
	if acc != nil {
		r.account = acc.ID
	}
	if sameSubscriber(enc, c) {
		r.mode = ModeUser
		return r, nil
	}
	switch {
	case unpinned:
		return nil, fmt.Errorf("%w: the recipient certificate %s/%s (%s) is not the subscriber's, and its issuer and subject are bound to an account only by a binding made before certificate bindings named their certificate, which no longer counts: a security administrator must bind the officer's certificate again (govtrust account bind-cert ACCOUNT CERT.pem)",
			ErrPolicy, issued.CA, issued.Serial, c.Subject)
	case acc == nil:
	case acc.Disabled || !slices.Contains(acc.Roles, policy.RoleKeyRecovery):
		return nil, fmt.Errorf("%w: the recipient certificate %s/%s is bound to account %s, which is not an enabled key recovery officer",
			ErrPolicy, issued.CA, issued.Serial, acc.Name)
	default:
		r.mode, r.officer = ModeJudicial, acc.Name
		return r, nil
	}
	return nil, fmt.Errorf("%w: the recipient certificate %s/%s (%s) is neither the subscriber's (subject %s and the same identity numbers) nor bound to a key recovery officer's account (a binding names one certificate: another with the same names is not bound)",
		ErrPolicy, issued.CA, issued.Serial, c.Subject, enc.Subject)
}

// issuersAbove returns the platform CA certificates above c: those whose
// key signed it (every generation and cross-certificate of that key), then
// those above them, to the roots.
func (s *Service) issuersAbove(c *smx509.Certificate) []*smx509.Certificate {
	cas := s.certs.CACertificates()
	var out []*smx509.Certificate
	level := []*smx509.Certificate{c}
	for depth := 0; len(level) > 0 && depth < 16; depth++ {
		var next []*smx509.Certificate
		for _, x := range level {
			for _, ca := range cas {
				if bytes.Equal(ca.Raw, x.Raw) || !bytes.Equal(ca.RawSubject, x.RawIssuer) || x.CheckSignatureFrom(ca) != nil ||
					slices.ContainsFunc(out, func(o *smx509.Certificate) bool { return bytes.Equal(o.Raw, ca.Raw) }) {
					continue
				}
				out = append(out, ca)
				next = append(next, ca)
			}
		}
		level = next
	}
	return out
}

// issuersNotRevoked refuses a recipient certificate c (issued is the CA's
// record of it) when the certificate of a platform CA above it, its
// issuing CA or one above that, is revoked (the CA's record, read now): a
// relying party would reject c, and so does the KMC. Certificates no
// platform CA issued (the roots, an offline CA's) have no record here.
// Fails closed: a record that cannot be read is httpx.ErrUnavailable.
func (s *Service) issuersNotRevoked(ctx context.Context, c *smx509.Certificate, issued *Certificate) error {
	for _, ca := range s.issuersAbove(c) {
		at, reason, err := s.certs.Revoked(ctx, ca.Raw)
		if errors.Is(err, httpx.ErrNotFound) {
			continue
		}
		if err != nil {
			s.env.Logger.Warn("kmc: could not read the revocation status of a CA certificate above a recipient certificate",
				"ca_subject", ca.Subject.String(), "error", err)
			return fmt.Errorf("kmc: the revocation status of the CA certificates above the recipient certificate cannot be read now: %w", httpx.ErrUnavailable)
		}
		if !at.IsZero() {
			return fmt.Errorf("%w: the recipient certificate %s/%s was issued under the CA certificate %s (serial %x), which was revoked (%s) at %s: a relying party rejects it",
				ErrPolicy, issued.CA, issued.Serial, ca.Subject, ca.SerialNumber, reason, at.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// encCertificate loads the encryption certificate of escrow e from the CA
// and requires it to certify the escrowed public key (bound to the
// wrapped key by the wrapping's associated data): the escrow row's ca and
// serial are not integrity-protected, the CA's certificate and the
// wrapped key are.
func (s *Service) encCertificate(ctx context.Context, e *escrow) (*smx509.Certificate, error) {
	c, err := s.certs.IssuedCertificate(ctx, e.ca, e.encSerial)
	if errors.Is(err, httpx.ErrNotFound) {
		return nil, fmt.Errorf("%w: escrow %s names certificate %s/%s, which the CA does not have", ErrConflict, e.id, e.ca, e.encSerial)
	}
	if err != nil {
		return nil, fmt.Errorf("kmc: encryption certificate %s/%s: %w", e.ca, e.encSerial, err)
	}
	cert, err := smx509.ParseCertificate(c.DER)
	if err != nil {
		return nil, fmt.Errorf("kmc: encryption certificate %s/%s: %w", e.ca, e.encSerial, err)
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, e.publicKey) {
		s.env.Logger.Error("kmc: an escrow names a certificate of another key; the escrow record may have been altered",
			"escrow", e.id, "ca", e.ca, "enc_serial", e.encSerial)
		return nil, fmt.Errorf("%w: escrow %s does not hold the key of certificate %s/%s (the public keys differ)", ErrConflict, e.id, e.ca, e.encSerial)
	}
	return cert, nil
}

// denied audits a refused recovery step.
func (s *Service) denied(ctx context.Context, object string, err error, details map[string]any) {
	d := map[string]any{"reason": err.Error()}
	maps.Copy(d, details)
	if _, aerr := s.env.Audit.Write(ctx, s.env.DB, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionRecover, Object: object,
		Outcome: audit.Denied, RequestID: httpx.RequestID(ctx), Details: d}); aerr != nil {
		s.env.Logger.Error("kmc: audit of a refused recovery failed", "error", aerr)
	}
}

func (s *Service) requestRecovery(w http.ResponseWriter, r *http.Request) error {
	p := authz.PrincipalFrom(r.Context())
	ctx := audit.WithActor(r.Context(), p.Actor())
	if s.certs == nil {
		return fmt.Errorf("kmc: no certificate authority is wired in to check certificates: %w", httpx.ErrUnavailable)
	}
	var req RecoveryRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	ca, serial := r.PathValue("ca"), strings.ToLower(r.PathValue("serial"))
	e, err := s.findEscrow(ctx, ca, serial)
	if errors.Is(err, ErrNotFound) {
		// The CA issued the certificate but its escrow was never bound.
		if err = s.lateBind(ctx, ca, serial); err == nil {
			e, err = s.findEscrow(ctx, ca, serial)
		}
	}
	if err != nil {
		if errors.Is(err, ErrSigningKey) {
			s.denied(ctx, "cert/"+ca+"/"+serial, errors.New("signing key"), nil)
		}
		return err
	}
	now := s.env.Clock.Now()
	if err := s.recoverable(e, now); err != nil {
		return err
	}
	der, err := parseRecipientPEM(req.RecipientCertificate)
	if err != nil {
		return err
	}
	enc, err := s.encCertificate(ctx, e)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			s.denied(ctx, "kmc-escrow/"+e.id, err, nil)
		}
		return err
	}
	rc, err := s.checkRecipient(ctx, enc, der, now)
	if err != nil {
		if errors.Is(err, ErrPolicy) {
			sum := sha256.Sum256(der)
			s.denied(ctx, "kmc-escrow/"+e.id, err, map[string]any{"ca": ca, "serial": serial, "recipient_sha256": hex.EncodeToString(sum[:])})
		}
		return err
	}
	sum := sha256.Sum256(der)
	pl := recoveryPayload{Kind: RecoverKind, Escrow: e.id, CA: ca, Serial: serial, Subject: enc.Subject.String(), Requester: p.Account.ID,
		Reason: req.Reason, CaseReference: req.CaseReference, Recipient: rc.cert.Subject.String(), RecipientCert: der,
		RecipientHash: hex.EncodeToString(sum[:]), Mode: rc.mode, RecipientCA: rc.issued.CA, RecipientSerial: rc.issued.Serial,
		RecipientIssuer: rc.cert.Issuer.String(), Officer: rc.officer,
		RecipientByRequester: rc.mode == ModeUser && rc.issued.Requester == p.Account.ID}
	payload, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	pubSum := sha256.Sum256(e.publicKey)
	requestedBy := "account " + rc.issued.Requester
	if acc, err := s.env.Authz.Account(ctx, rc.issued.Requester); err == nil {
		requestedBy = acc.Name
	}
	var to string
	if rc.mode == ModeUser {
		to = "user key recovery (GM/T 0034 §12.4), to the subscriber's own signing certificate"
		if rc.account != "" {
			name := "account " + rc.account
			if acc, err := s.env.Authz.Account(ctx, rc.account); err == nil {
				name = acc.Name
			}
			to += ", bound to account " + name + ", which may not approve it"
		}
	} else {
		to = "judicial key recovery (GM/T 0034 §12.5), to the certificate of key recovery officer " + rc.officer + ", who may not approve it"
	}
	keyStatus := "not revoked"
	if e.status == StatusRevoked {
		keyStatus = fmt.Sprintf("REVOKED at %s (%s)", e.revokedAt, e.reason)
	}
	summary := fmt.Sprintf("%s: recover the escrowed encryption key of %s (certificate %s/%s, %s; public key SHA-256 %x) for %s: certificate %s/%s issued by %s, status %s, valid until %s, issued %s at the request of %s (certificate SHA-256 %s); reason: %s; case %s",
		to, pl.Subject, ca, serial, keyStatus, pubSum, pl.Recipient, rc.issued.CA, rc.issued.Serial, pl.RecipientIssuer, rc.issued.Status,
		rc.cert.NotAfter.UTC().Format(time.RFC3339), rc.issued.Created.UTC().Format(time.RFC3339), requestedBy,
		pl.RecipientHash, req.Reason, req.CaseReference)
	if pl.RecipientByRequester {
		// The requester could have had a certificate with the subscriber's
		// names and numbers issued for a key of its own: say so first.
		summary = fmt.Sprintf("ATTENTION: the recipient certificate was issued on %s at the request of %s, who asks for this recovery: approve only if the subscriber confirms it certifies their own new key. ",
			rc.issued.Created.UTC().Format(time.RFC3339), requestedBy) + summary
	}
	var excluded []string
	if rc.account != "" {
		// The holder of the key once delivered does not check the delivery.
		excluded = append(excluded, rc.account)
	}
	d, err := s.env.Dual.Create(ctx, dualRequest(p.Account.ID, payload, s.cfg.RecoveryApprovals, s.cfg.RecoveryTTL, summary, excluded...))
	if err != nil {
		return err
	}
	if _, err := s.env.DB.Exec(ctx, `INSERT INTO kmc_recoveries (id, escrow_id, payload, requester, created_at) VALUES (?, ?, ?, ?, ?)`,
		d.ID, e.id, payload, p.Account.ID, fmtTime(now)); err != nil {
		return fmt.Errorf("kmc: record recovery %s: %w", d.ID, err)
	}
	w.Header().Set("Location", "/api/v1/approvals/"+d.ID)
	return httpx.WriteJSON(w, http.StatusAccepted, &PendingRecovery{Approval: d.ID, Status: string(d.Status),
		PayloadHash: hex.EncodeToString(d.PayloadHash), Required: d.Required, Expires: d.Expires.Format(time.RFC3339), Summary: summary,
		Mode: rc.mode, RecipientCA: rc.issued.CA, RecipientSerial: rc.issued.Serial, RecipientStatus: rc.issued.Status,
		RecipientByRequester: pl.RecipientByRequester})
}

// approvedByOthers refuses recovery id when it has its approvals only by
// counting the account the recipient certificate is bound to now: the
// request excludes the account bound when it was asked, but the binding
// may have changed since, or the request predate the exclusion.
func (s *Service) approvedByOthers(ctx context.Context, id string, rc *recipient) error {
	if rc.account == "" {
		return nil
	}
	d, err := s.env.Dual.Get(ctx, id)
	if err != nil {
		return err
	}
	approvers := d.Approvers()
	if !slices.Contains(approvers, rc.account) {
		return nil
	}
	others := len(approvers) - 1
	if others >= d.Required {
		return nil
	}
	who := "account " + rc.account
	if acc, err := s.env.Authz.Account(ctx, rc.account); err == nil {
		who = acc.Name
	}
	return fmt.Errorf("%w: %s, to whose certificate the key would be delivered, approved this recovery and does not count: it needs %d approvals by others, and has %d",
		ErrPolicy, who, d.Required, others)
}

// recoverable refuses keys not yet bound to a certificate or past retention.
func (s *Service) recoverable(e *escrow, now time.Time) error {
	if e.status != StatusActive && e.status != StatusRevoked {
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

// executeRecovery carries out an approved recovery. Everything checked
// when it was asked is checked again now, since the approvals may have
// taken days: the escrow and its retention, the encryption certificate's
// key, and the recipient certificate (still issued, not revoked, valid,
// and still the subscriber's or a key recovery officer's).
func (s *Service) executeRecovery(w http.ResponseWriter, r *http.Request) error {
	p := authz.PrincipalFrom(r.Context())
	ctx := audit.WithActor(r.Context(), p.Actor())
	if s.certs == nil {
		return fmt.Errorf("kmc: no certificate authority is wired in to check certificates: %w", httpx.ErrUnavailable)
	}
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
	if e.id != pl.Escrow {
		err := fmt.Errorf("%w: certificate %s/%s is now bound to escrow %s, not to %s which was approved", ErrConflict, pl.CA, pl.Serial, e.id, pl.Escrow)
		s.denied(ctx, "kmc-escrow/"+pl.Escrow, err, map[string]any{"approval": id})
		return err
	}
	if err := s.recoverable(e, now); err != nil {
		return err
	}
	enc, err := s.encCertificate(ctx, e)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			s.denied(ctx, "kmc-escrow/"+e.id, err, map[string]any{"approval": id})
		}
		return err
	}
	rc, err := s.checkRecipient(ctx, enc, pl.RecipientCert, now)
	if err == nil && pl.Mode != "" && (rc.mode != pl.Mode || rc.issued.CA != pl.RecipientCA || rc.issued.Serial != pl.RecipientSerial) {
		err = fmt.Errorf("%w: the recipient certificate is no longer what was approved (%s recovery to %s/%s)", ErrPolicy, pl.Mode, pl.RecipientCA, pl.RecipientSerial)
	}
	if err == nil {
		err = s.approvedByOthers(ctx, id, rc)
	}
	if err != nil {
		if errors.Is(err, ErrPolicy) {
			err = fmt.Errorf("%w (checked again at execution)", err)
			s.denied(ctx, "kmc-escrow/"+e.id, err, map[string]any{"approval": id, "recipient_sha256": pl.RecipientHash})
		}
		return err
	}
	var env []byte
	err = s.env.Dual.Do(ctx, id, payload, func(tx *store.Tx) error {
		k, err := s.unwrap(ctx, tx, e)
		if err != nil {
			return err
		}
		defer zero(k)
		spki, err := smx509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil || !bytes.Equal(spki, e.publicKey) || !bytes.Equal(spki, enc.RawSubjectPublicKeyInfo) {
			return errors.Join(err, fmt.Errorf("kmc: escrow %s: the unwrapped key does not match its certificate's public key", e.id))
		}
		if env, err = sm2.MarshalEnvelopedPrivateKey(rand.Reader, rc.pub, k); err != nil {
			return fmt.Errorf("kmc: envelope: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE kmc_recoveries SET executed_at = ? WHERE id = ?`, fmtTime(now), id); err != nil {
			return err
		}
		_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: p.Actor(), Action: ActionRecover, Object: "kmc-escrow/" + e.id,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"approval": id, "ca": pl.CA, "serial": pl.Serial, "subject": pl.Subject, "requester": pl.Requester,
				"reason": pl.Reason, "case_reference": pl.CaseReference, "recipient": pl.Recipient, "recipient_sha256": pl.RecipientHash,
				"mode": rc.mode, "recipient_ca": rc.issued.CA, "recipient_serial": rc.issued.Serial, "officer": rc.officer,
				"recipient_by_requester": pl.RecipientByRequester}})
		return err
	})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpx.WriteJSON(w, http.StatusOK, &RecoveryResponse{Approval: id, CA: pl.CA, Serial: pl.Serial, EnvelopedKey: env, Recipient: pl.Recipient})
}
