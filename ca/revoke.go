package ca

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// reasonCodes are the CRLReason names (RFC 5280 §5.3.1) a revocation request
// may give. certificateHold is deliberately absent: a hold is reversible,
// which the platform does not offer (CA/B Forum BR §4.9.13 forbids
// suspension, ACCEPTANCE.md C-01 "never certificateHold"); removeFromCRL only
// exists in delta CRLs, and cACompromise/aACompromise concern CA certificates,
// which this route does not revoke.
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// reasonName is the RFC 5280 name of a stored CRLReason code.
func reasonName(code int) string {
	for name, c := range reasonCodes {
		if c == code {
			return name
		}
	}
	return fmt.Sprintf("reason(%d)", code)
}

// maxRevokeBody bounds what the resource finder reads of a revocation body.
const maxRevokeBody = 4 << 10

// RevokeRequest is the body of POST /api/v1/ca/{ca}/revocations.
type RevokeRequest struct {
	Serial string `json:"serial"`
	// Reason is an RFC 5280 CRLReason name; empty means "unspecified".
	Reason string `json:"reason,omitempty"`
}

// Validate implements httpx.Validator.
func (r *RevokeRequest) Validate() error {
	if r.Serial == "" {
		return errors.New("serial is required")
	}
	if r.Reason == "certificateHold" {
		return errors.New("reason certificateHold is not offered: revocation is final (RFC 5280 §5.3.1; BR §4.9.13)")
	}
	if _, ok := reasonCodes[r.reason()]; !ok {
		return fmt.Errorf("reason %q is not one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn", r.Reason)
	}
	return nil
}

func (r *RevokeRequest) reason() string {
	if r.Reason == "" {
		return "unspecified"
	}
	return r.Reason
}

// RevokeResponse is the answer of a revocation.
type RevokeResponse struct {
	Serial    string `json:"serial"`
	RevokedAt string `json:"revoked_at"`
	Reason    string `json:"reason"`
}

// revocationResource finds the certificate a revocation names, placed in the
// organisation of the account that requested it, so the policy lets an RA
// revoke only its own organisation's certificates (ACCEPTANCE.md C-12). The
// body is read here and put back for the handler. An unknown serial, a
// body that does not parse and a CA certificate all get no organisation: no
// RA may act on them (and none learns whether the serial exists), while a
// CA operator passes and the handler gives the precise answer.
func (s *Service) revocationResource(r *http.Request) (policy.Resource, error) {
	caID := r.PathValue("ca")
	res := policy.Resource{Type: "certificate", ID: caID + "/?"}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRevokeBody+1))
	if err != nil {
		return res, fmt.Errorf("%w: read body: %w", ErrRequest, err)
	}
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	var req RevokeRequest
	if json.Unmarshal(body, &req) != nil {
		return res, nil
	}
	serial, err := normalSerial(req.Serial)
	if err != nil || s.cas[caID] == nil {
		return res, nil
	}
	res.ID = caID + "/" + serial
	if c, err := certBySerial(r.Context(), s.env.DB, caID, serial); err == nil {
		res.Org = c.requesterOrg
	} else if !errors.Is(err, ErrNotFound) {
		return res, err
	}
	return res, nil
}

// revoke handles POST /api/v1/ca/{ca}/revocations. The status change, its
// audit record and its outbox event commit in one transaction before the
// answer (ACCEPTANCE.md M-03); a new CRL is then made before the answer
// (its failure does not undo the revocation, see afterRevocation).
// Revoking a revoked certificate again with the same reason answers 200
// with the stored revocation, so a client that lost the answer may retry;
// with another reason it is a conflict (409): a reason is not changed after
// the fact here.
func (s *Service) revoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, err := s.authority(r.PathValue("ca"))
	if err != nil {
		return err
	}
	var req RevokeRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	serial, err := normalSerial(req.Serial)
	if err != nil {
		return err
	}
	p := authz.PrincipalFrom(ctx)
	if p == nil {
		return errors.New("revoke: no principal in context")
	}
	for _, sub := range s.cas {
		if sub.parent == a.id && serialHex(sub.cert.SerialNumber) == serial {
			// A CA certificate's revocation ends a whole hierarchy branch; it
			// will need dual control (ARCHITECTURE.md §5), not one request.
			return fmt.Errorf("%w: %s is the certificate of CA %s; revoking a CA certificate needs dual control, which is not offered yet", ErrPolicy, serial, sub.id)
		}
	}
	code := reasonCodes[req.reason()]
	var out *RevokeResponse
	var newly bool
	now := s.env.Clock.Now().UTC().Truncate(time.Second)
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		out, newly = nil, false
		c, err := scanCert(a.id, tx.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND serial = ?", a.id, serial))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: certificate %s/%s", ErrNotFound, a.id, serial)
		}
		if err != nil {
			return fmt.Errorf("read certificate %s/%s: %w", a.id, serial, err)
		}
		if c.status == "revoked" {
			if c.reason != code {
				return fmt.Errorf("%w: certificate %s was already revoked at %s with reason %s", ErrConflict, serial,
					c.revokedAt.Format(time.RFC3339), reasonName(c.reason))
			}
			out = &RevokeResponse{Serial: serial, RevokedAt: c.revokedAt.Format(time.RFC3339), Reason: reasonName(c.reason)}
			return nil
		}
		if c.status != "good" {
			return fmt.Errorf("%w: certificate %s has status %q", ErrConflict, serial, c.status)
		}
		if _, err := tx.Exec(ctx, `UPDATE ca_certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
			WHERE issuer_id = ? AND serial = ? AND status = 'good'`, now.Format(timeFormat), code, a.id, serial); err != nil {
			return fmt.Errorf("revoke %s/%s: %w", a.id, serial, err)
		}
		if err := s.ocspRevokeTx(ctx, tx, a.id, serial); err != nil {
			return err
		}
		if _, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: p.Actor(), Action: "ca.certificate.revoke",
			Object: "cert/" + a.id + "/" + serial, Outcome: audit.Success,
			Details: map[string]any{"reason": req.reason(), "subject": c.subject, "requester_org": c.requesterOrg}}); err != nil {
			return err
		}
		if err := insertOutbox(ctx, tx, "revoked", a.id, serial, now); err != nil {
			return err
		}
		out, newly = &RevokeResponse{Serial: serial, RevokedAt: now.Format(time.RFC3339), Reason: req.reason()}, true
		return nil
	})
	if err != nil {
		return err
	}
	s.ocspRevoked(ctx, a, serial)
	if newly || s.isStale(a.id) {
		s.afterRevocation(ctx, a)
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}
