package ca

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// reasonCodes are the CRLReason names (RFC 5280 §5.3.1) a revocation request
// may give. certificateHold is deliberately absent: a hold is reversible,
// which the platform does not offer (CA/B Forum BR §4.9.13 forbids
// suspension, ACCEPTANCE.md C-01 "never certificateHold"); removeFromCRL only
// exists in delta CRLs, and aACompromise concerns attribute authorities.
// cACompromise is for CA certificates only (see caReasons).
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// caReasons are the reasons a CA certificate is revoked with. The compromise
// of a CA's key is cACompromise, not keyCompromise (RFC 5280 §5.3.1), so
// that relying parties reading the ARL see which it was.
var caReasons = map[string]bool{
	"unspecified": true, "cACompromise": true, "affiliationChanged": true,
	"superseded": true, "cessationOfOperation": true, "privilegeWithdrawn": true,
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
	// Approval is the ID of the dual-control request that approves the
	// revocation of a CA certificate (see revokeCA); end-entity
	// revocations take none.
	Approval string `json:"approval,omitempty"`
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
		return fmt.Errorf("reason %q is not one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn", r.Reason)
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
	// Approval is the dual-control request under which a CA certificate
	// was revoked.
	Approval string `json:"approval,omitempty"`
	// AlsoRevoked lists, as "ca/serial", the other certificates revoked
	// with it: those of the same key, for keyCompromise (ca/keysweep.go),
	// and the encryption certificate of a dual pair's signing certificate
	// (revokePair).
	AlsoRevoked []string `json:"also_revoked,omitempty"`
	// NotRevoked lists, as "ca/serial", the other good unexpired
	// certificates of a key revoked for keyCompromise that were left
	// good: those the caller may not revoke itself, which a CA operator is
	// alerted to decide on, and CA certificates of the key, which are
	// revoked under dual control (ca/keysweep.go).
	NotRevoked []string `json:"not_revoked,omitempty"`

	// referred lists the unexpired certificates of the key outside the
	// caller's authority (keyScope), for the alert (referKey).
	referred []string
}

// revocationResource finds the certificate a revocation names, placed in the
// organisation of the account that requested it and owned by that account,
// so the policy lets an RA revoke only its own organisation's certificates
// and an account the certificates it requested (ACCEPTANCE.md C-12). The
// body is read here and put back for the handler. An unknown serial, a
// body that does not parse and a CA certificate all get no organisation
// and no owner: no RA may act on them (and none learns whether the serial
// exists), while a CA operator passes and the handler gives the precise
// answer. The serial is looked up in every generation of the {ca} lineage
// (findCert), as the handler does.
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
	if err != nil || s.lookup(caID) == nil {
		return res, nil
	}
	res.ID = caID + "/" + serial
	if _, c, err := s.findCert(r.Context(), caID, serial); err == nil {
		if !isCACert(c) {
			res.Org, res.Owner = c.requesterOrg, certOwner(c)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return res, err
	}
	return res, nil
}

// certOwner is the account that owns certificate c: the one that requested
// it through the API, whose id is stored as the requester with its
// organisation. Certificates the platform issued to itself (IssueFor, the
// node's TLS and OCSP certificates, CA certificates: no organisation) have
// no owner.
func certOwner(c *certRow) string {
	if c.requesterOrg == "" {
		return ""
	}
	return c.requester
}

// mayRevoke reports, for p, whether it may revoke certificate c itself: the
// decision the policy makes on the revocation route (revocationResource),
// for a certificate of the key of the one it revokes (keyScope).
func (s *Service) mayRevoke(p *authz.Principal) func(c *certRow) bool {
	return func(c *certRow) bool {
		res := policy.Resource{Type: "certificate", ID: c.issuer + "/" + c.serial}
		if !isCACert(c) {
			res.Org, res.Owner = c.requesterOrg, certOwner(c)
		}
		return s.env.Authz.Engine().Decide(policy.Request{Principal: p.Policy(), Action: "ca.certificate.revoke", Resource: res,
			Context: map[string]string{"via": p.Via}}).Allow
	}
}

// findCert finds certificate serial among those issued by the lineage of
// CA id: the generation id first, then the lineage's other generations,
// newest first. Clients issue on the lineage id and the active generation
// signs (authorities.go), so a certificate is read and revoked on the id it
// was issued from whichever generation signed it; serials are 128 random
// bits, so two generations do not share one. It returns the generation that
// issued the certificate.
func (s *Service) findCert(ctx context.Context, id, serial string) (*authority, *certRow, error) {
	gens := s.registry().lineageOf(id)
	if len(gens) == 0 {
		return nil, nil, fmt.Errorf("%w: no CA %q", ErrNotFound, id)
	}
	for _, g := range gens {
		c, err := certBySerial(ctx, s.env.DB, g.id, serial)
		if err == nil {
			return g, c, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("%w: certificate %s/%s", ErrNotFound, id, serial)
}

// isCACert reports whether a stored certificate is a CA certificate: issued
// under the sub-ca profile, or carrying basicConstraints cA=TRUE (RFC 5280
// §4.2.1.9), whatever profile name it was stored with.
func isCACert(c *certRow) bool {
	if c.profile == "sub-ca" {
		return true
	}
	cert, err := smx509.ParseCertificate(c.der)
	return err == nil && cert.BasicConstraintsValid && cert.IsCA
}

// revoke handles POST /api/v1/ca/{ca}/revocations. The status change, its
// audit record and its outbox event commit in one transaction before the
// answer (ACCEPTANCE.md M-03); a new CRL is then made before the answer
// (its failure does not undo the revocation, see afterRevocation).
// Revoking a revoked certificate again with the same reason answers 200 with
// the stored revocation, so a client that lost the answer may retry; with
// another reason it is a conflict (409), except that a certificate revoked
// for a reason other than a compromise may be revoked again for
// keyCompromise (revokeRowAt). A CA certificate goes to revokeCA (dual
// control). {ca} may name any generation of the lineage that issued the
// certificate (findCert).
func (s *Service) revoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caID := r.PathValue("ca")
	if _, err := s.authority(caID); err != nil {
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
	a, c, err := s.findCert(ctx, caID, serial)
	if errors.Is(err, ErrNotFound) {
		for _, g := range s.registry().lineageOf(caID) {
			for _, sub := range s.authorities() {
				if sub.parent == g.id && !sub.external && serialHex(sub.cert.SerialNumber) == serial {
					// CAs made before their certificates were recorded as
					// issued have no row to revoke.
					return fmt.Errorf("%w: %s is the certificate of CA %s, which is not recorded among %s's issued certificates", ErrPolicy, serial, sub.id, g.id)
				}
			}
		}
	}
	if err != nil {
		return err
	}
	if isCACert(c) {
		return s.revokeCA(w, r, a, c, &req, p)
	}
	if req.Approval != "" {
		return fmt.Errorf("%w: approval applies to CA certificates only; %s is an end-entity certificate", ErrRequest, serial)
	}
	if req.reason() == "cACompromise" {
		return fmt.Errorf("%w: cACompromise is for CA certificates; an end entity's compromised key is keyCompromise (RFC 5280 §5.3.1)", ErrRequest)
	}
	var out *RevokeResponse
	var newly bool
	sc := keyScope{sweep: true, may: s.mayRevoke(p)}
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		var err error
		out, newly, err = s.revokeRowScoped(ctx, tx, a.id, serial, req.reason(), p.Actor(), nil, s.env.Clock.Now(), sc)
		return err
	})
	if err != nil {
		return err
	}
	if len(out.referred) > 0 {
		s.alertReferral(ctx, a.id, serial, p.Actor(), out)
	}
	s.ocspRevoked(ctx, a, serial)
	if newly || s.isStale(a.id) {
		s.afterRevocation(ctx, a)
	}
	s.afterSameKey(ctx, out.AlsoRevoked)
	return httpx.WriteJSON(w, http.StatusOK, out)
}

// afterSameKey does for each certificate revoked with another of its key
// (revokeSameKey) what the revocation of that one does once committed:
// the OCSP answers from memory dropped and re-signed, a new CRL.
func (s *Service) afterSameKey(ctx context.Context, refs []string) {
	cas := map[string]*authority{}
	for _, ref := range refs {
		id, serial, _ := strings.Cut(ref, "/")
		a, err := s.authority(id)
		if err != nil {
			continue
		}
		s.ocspRevoked(ctx, a, serial)
		cas[id] = a
	}
	for _, a := range cas {
		s.afterRevocation(ctx, a)
	}
}

// revokeRow revokes issuer a's certificate serial with reason in tx: the
// status, its audit record (details plus extra) and its outbox event. It
// returns the stored revocation and false when the certificate was already
// revoked with the same reason.
func (s *Service) revokeRow(ctx context.Context, tx *store.Tx, a *authority, serial, reason, actor string, extra map[string]any) (*RevokeResponse, bool, error) {
	return s.revokeRowAt(ctx, tx, a.id, serial, reason, actor, extra, s.env.Clock.Now())
}

// revokeRowAt is revokeRow with the revocation dated at (a revocation
// carried over from a CRL keeps its revocationDate).
func (s *Service) revokeRowAt(ctx context.Context, tx *store.Tx, issuer, serial, reason, actor string, extra map[string]any, at time.Time) (*RevokeResponse, bool, error) {
	return s.revokeRowOpts(ctx, tx, issuer, serial, reason, actor, extra, at, true)
}

// errCACertOfKey: revokeSameKey met a CA certificate of the key, which it
// leaves to dual control.
var errCACertOfKey = errors.New("a CA certificate of the key")

// errRowChanged: the certificate was revoked by another transaction after
// revokeRowOne read it (revokeRowOpts decides again once).
var errRowChanged = errors.New("certificate revoked meanwhile")

// revokeRowOpts is revokeRowAt; with sweep, a revocation for
// keyCompromise (also one asked again, or one whose reason becomes
// keyCompromise) revokes every other unexpired certificate of the key with
// it (revokeSameKey, which calls this without sweep and is refused CA
// certificates). The revoker's authority is not limited (the platform, a
// CA operator): revokeRowScoped limits it.
//
// The certificates of a dual pair (ca_dual_pairs) follow it (revokePair):
// revoking a signing certificate revokes its encryption certificate with
// it, with the same reason, and the KMC is told in tx of every revocation
// of an encryption certificate whose key it escrows.
func (s *Service) revokeRowOpts(ctx context.Context, tx *store.Tx, issuer, serial, reason, actor string, extra map[string]any, at time.Time, sweep bool) (*RevokeResponse, bool, error) {
	return s.revokeRowScoped(ctx, tx, issuer, serial, reason, actor, extra, at, keyScope{sweep: sweep})
}

// keyScope is what a revocation for keyCompromise does to the key beyond
// the certificate it names (see "A report within the reporter's authority"
// in keysweep.go).
type keyScope struct {
	// sweep revokes the other good unexpired certificates of the key
	// (revokeSameKey).
	sweep bool
	// may reports whether the revoker could revoke certificate c itself;
	// nil: any (the platform). Certificates of the key it may not revoke
	// are left, and keep the key from being blocked.
	may func(c *certRow) bool
	// keepKey leaves the key unblocked: the revocation that swept this
	// one left certificates of the key outside the revoker's authority.
	keepKey bool
}

// revokeRowScoped is revokeRowOpts within scope sc.
func (s *Service) revokeRowScoped(ctx context.Context, tx *store.Tx, issuer, serial, reason, actor string, extra map[string]any, at time.Time, sc keyScope) (*RevokeResponse, bool, error) {
	out, newly, err := s.revokeRowOne(ctx, tx, issuer, serial, reason, actor, extra, at, sc)
	if errors.Is(err, errRowChanged) {
		// Revoked by another transaction between the read and the update:
		// decided again on the row as it committed (the same revocation
		// again, a reason that becomes keyCompromise, or a conflict).
		out, newly, err = s.revokeRowOne(ctx, tx, issuer, serial, reason, actor, extra, at, sc)
		if errors.Is(err, errRowChanged) {
			err = fmt.Errorf("%w: certificate %s/%s changed while it was being revoked", ErrConflict, issuer, serial)
		}
	}
	if err != nil {
		return nil, false, err
	}
	if !newly {
		at = s.env.Clock.Now()
	}
	also, err := s.revokePair(ctx, tx, issuer, serial, actor, at)
	if err != nil {
		return nil, false, err
	}
	out.AlsoRevoked = append(out.AlsoRevoked, also...)
	return out, newly, nil
}

// revokeRowOne is revokeRowScoped but for the dual pairs.
func (s *Service) revokeRowOne(ctx context.Context, tx *store.Tx, issuer, serial, reason, actor string, extra map[string]any, at time.Time, sc keyScope) (*RevokeResponse, bool, error) {
	code := reasonCodes[reason]
	now := at.UTC().Truncate(time.Second)
	c, err := scanCert(issuer, tx.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND serial = ?", issuer, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, fmt.Errorf("%w: certificate %s/%s", ErrNotFound, issuer, serial)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read certificate %s/%s: %w", issuer, serial, err)
	}
	if !sc.sweep && isCACert(c) {
		return nil, false, errCACertOfKey
	}
	// The key is blocked unless certificates of it lie outside the
	// revoker's authority (keysweep.go).
	block := !sc.keepKey
	var outside []*certRow
	if sc.sweep && sc.may != nil && code == reasonKeyCompromise {
		if outside, err = s.outsideAuthority(ctx, tx, c, sc.may); err != nil {
			return nil, false, err
		}
		block = block && len(outside) == 0
	}
	withSameKey := func(out *RevokeResponse, newly bool, err error) (*RevokeResponse, bool, error) {
		if err != nil || !sc.sweep || code != reasonKeyCompromise {
			return out, newly, err
		}
		later := s.env.Clock.Now().UTC().Truncate(time.Second)
		also, left, err := s.revokeSameKey(ctx, tx, issuer, serial, c.der, actor, later, sc.may, !block)
		if err != nil {
			return nil, false, err
		}
		out.AlsoRevoked, out.NotRevoked = also, left
		if len(outside) > 0 {
			if out.referred, err = s.referKey(ctx, tx, c, actor, outside, left); err != nil {
				return nil, false, err
			}
		}
		return out, newly, nil
	}
	if c.status == "revoked" {
		if c.reason == code {
			// Asked again: the other certificates of a key revoked for
			// keyCompromise before they were revoked with it are now, and
			// the key is blocked if an earlier report within a narrower
			// authority left it unblocked.
			if code == reasonKeyCompromise && sc.sweep && block && len(c.der) > 0 {
				if err := blockKey(ctx, tx, issuer, serial, code, c.der, now); err != nil {
					return nil, false, err
				}
			}
			return withSameKey(&RevokeResponse{Serial: serial, RevokedAt: c.revokedAt.Format(time.RFC3339), Reason: reasonName(c.reason)}, false, nil)
		}
		if code == reasonKeyCompromise && !compromiseReasons[c.reason] && !isCACert(c) {
			return withSameKey(s.toKeyCompromise(ctx, tx, issuer, c, actor, extra, now, block))
		}
		return nil, false, fmt.Errorf("%w: certificate %s was already revoked at %s with reason %s; only a revocation for another reason than a compromise may become keyCompromise",
			ErrConflict, serial, c.revokedAt.Format(time.RFC3339), reasonName(c.reason))
	}
	if c.status != "good" {
		return nil, false, fmt.Errorf("%w: certificate %s has status %q", ErrConflict, serial, c.status)
	}
	res, err := tx.Exec(ctx, `UPDATE ca_certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
		WHERE issuer_id = ? AND serial = ? AND status = 'good'`, now.Format(timeFormat), code, issuer, serial)
	if err != nil {
		return nil, false, fmt.Errorf("revoke %s/%s: %w", issuer, serial, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, false, fmt.Errorf("revoke %s/%s: %w", issuer, serial, err)
	} else if n != 1 {
		// On PostgreSQL (READ COMMITTED) the update waited for another
		// transaction that revoked the row after it was read, and found it
		// no longer good: nothing was written here, so no audit record, no
		// event and no "newly".
		return nil, false, errRowChanged
	}
	if err := s.ocspRevokeTx(ctx, tx, issuer, serial); err != nil {
		return nil, false, err
	}
	details := map[string]any{"reason": reason, "subject": c.subject, "requester_org": c.requesterOrg}
	for k, v := range extra {
		details[k] = v
	}
	if isCACert(c) {
		ids, err := markRevokedCAs(ctx, tx, issuer, serial)
		if err != nil {
			return nil, false, err
		}
		if len(ids) > 0 {
			details["revoked_cas"] = ids
		}
	}
	if _, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: actor, Action: "ca.certificate.revoke",
		Object: "cert/" + issuer + "/" + serial, Outcome: audit.Success, Details: details}); err != nil {
		return nil, false, err
	}
	insertOutbox(tx, "revoked", issuer, serial, now)
	if (code == reasonKeyCompromise || code == reasonCACompromise) && block {
		if err := blockKey(ctx, tx, issuer, serial, code, c.der, now); err != nil {
			return nil, false, err
		}
	}
	return withSameKey(&RevokeResponse{Serial: serial, RevokedAt: now.Format(time.RFC3339), Reason: reason}, true, nil)
}

// compromiseReasons are the CRLReasons that already say the key is
// compromised.
var compromiseReasons = map[int]bool{reasonKeyCompromise: true, reasonCACompromise: true}

// toKeyCompromise changes the reason of end-entity certificate c, revoked
// for another reason than a compromise, to keyCompromise, in tx: the
// compromise of a key is often learnt after its certificate was revoked as
// superseded or unspecified, and relying parties that check the reason
// (and the CA's own blocked keys) must then see it (Mozilla Root Store
// Policy §6.1.1 asks CAs to update the reason so). The revocation keeps its
// date; it takes a new revocation sequence, so the next full CRL and the
// delta on an older base list it with the new reason; the stored OCSP
// responses are dropped, the key is blocked (with block), and the change is
// audited. Every other change of reason is refused (revokeRowAt).
func (s *Service) toKeyCompromise(ctx context.Context, tx *store.Tx, issuer string, c *certRow, actor string, extra map[string]any, now time.Time, block bool) (*RevokeResponse, bool, error) {
	// The counter row is taken as the revocation triggers take it
	// (migrations 00003): sequence order stays commit order.
	if _, err := tx.Exec(ctx, `INSERT INTO ca_revocation_counters (issuer_id, last) VALUES (?, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET last = ca_revocation_counters.last + 1`, issuer); err != nil {
		return nil, false, fmt.Errorf("revocation sequence of %s: %w", issuer, err)
	}
	res, err := tx.Exec(ctx, `UPDATE ca_certificates SET revocation_reason = ?,
		revocation_seq = (SELECT last FROM ca_revocation_counters WHERE issuer_id = ?)
		WHERE issuer_id = ? AND serial = ? AND status = 'revoked' AND revocation_reason = ?`,
		reasonKeyCompromise, issuer, issuer, c.serial, c.reason)
	if err != nil {
		return nil, false, fmt.Errorf("change the revocation reason of %s/%s: %w", issuer, c.serial, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, false, fmt.Errorf("%w: the revocation of %s/%s changed meanwhile", ErrConflict, issuer, c.serial)
	}
	if err := s.ocspRevokeTx(ctx, tx, issuer, c.serial); err != nil {
		return nil, false, err
	}
	details := map[string]any{"reason": "keyCompromise", "previous_reason": reasonName(c.reason),
		"revoked_at": c.revokedAt.Format(time.RFC3339), "subject": c.subject, "requester_org": c.requesterOrg}
	for k, v := range extra {
		details[k] = v
	}
	if _, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: actor, Action: "ca.certificate.revoke",
		Object: "cert/" + issuer + "/" + c.serial, Outcome: audit.Success, Details: details}); err != nil {
		return nil, false, err
	}
	if len(c.der) > 0 && block { // a revocation without a certificate has no key to block
		if err := blockKey(ctx, tx, issuer, c.serial, reasonKeyCompromise, c.der, now); err != nil {
			return nil, false, err
		}
	}
	return &RevokeResponse{Serial: c.serial, RevokedAt: c.revokedAt.Format(time.RFC3339), Reason: "keyCompromise"}, true, nil
}

// markRevokedCAs marks revoked, in tx, every CA generation whose own
// certificate is issuer/serial (see "Revoked CAs" in authorities.go), and
// returns their ids. The registries of the processes on the database pick
// the status up (syncRegistry).
func markRevokedCAs(ctx context.Context, tx *store.Tx, issuer, serial string) ([]string, error) {
	rows, err := loadAuthorities(ctx, tx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range rows {
		if r.parent != issuer || len(r.chain) > 0 || r.status == statusRevoked {
			continue
		}
		cert, err := smx509.ParseCertificate(r.cert)
		if err != nil {
			return nil, fmt.Errorf("CA %s: certificate: %w", r.id, err)
		}
		if serialHex(cert.SerialNumber) != serial {
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE ca_authorities SET status = ? WHERE id = ?", statusRevoked, r.id); err != nil {
			return nil, fmt.Errorf("mark CA %s revoked: %w", r.id, err)
		}
		ids = append(ids, r.id)
	}
	return ids, nil
}

// publishRevokedCAs makes this process's registry show the CA generations
// a revocation of a CA certificate has just marked revoked, before the
// revocation is answered (other processes see them at their next poll,
// watch.go; until then the serial reservation refuses their issuance,
// reserveSerial). A failure is logged: the poll retries.
func (s *Service) publishRevokedCAs(ctx context.Context) {
	if err := s.syncRegistry(ctx); err != nil {
		s.env.Logger.Error("ca: a revoked CA generation is not yet shown; the registry poll retries", "err", err)
	}
}

// Dual control of CA certificate revocation.
//
// Revoking a CA certificate ends a branch of the hierarchy, so one person
// cannot do it (see internal/dual's package comment: NIAP CA PP v2.1
// FDP_CER_EXT.3; EJBCA's approval of revocations). It goes in two steps on
// the same route:
//
//  1. A CA operator posts {serial, reason}. Nothing is revoked: a
//     dual-control request of kind caRevokeKind is created, whose payload is
//     RevocationPayload (the CA, the serial and the reason), and the answer
//     is 202 with its ID and payload hash (PendingRevocation). Posting the
//     same revocation again answers the open request instead of a second.
//  2. Another CA operator posts {serial, reason, approval}. Stating the
//     serial and reason themselves, they approve exactly that payload
//     (dual.Store.Approve with its SM3), and the revocation runs at once
//     under dual.Store.Do: the approval is spent in the transaction that
//     revokes, or not at all. The approval may also be given beforehand
//     through POST /api/v1/approvals/{id}/approve; then any CA operator,
//     the requester included, executes by posting with the approval.
//
// The requester can never approve (dual refuses it and the platform policy
// forbids it), nor can one approver count twice. Every step is audited:
// ca.authority.revoke (the request, with its reason), dual.create,
// dual.approve, dual.execute (or their refusals), and ca.certificate.revoke
// with the reason and the approval when it is done.

// caRevokeKind is the dual-control kind of a CA certificate revocation;
// the platform policy lets CA operators request and approve "ca.*" kinds.
const caRevokeKind = "ca.authority.revoke"

// caRevokeAction is the policy action of revoking a CA certificate (CA
// operators only; the route's own action, ca.certificate.revoke, is also
// granted to RAs).
const caRevokeAction = "ca.authority.revoke"

// caRevokeTTL is how long a CA certificate revocation waits for approval.
const caRevokeTTL = 24 * time.Hour

// RevocationPayload is the canonical payload of a CA certificate revocation
// under dual control: what approvers approve, by its SM3 (dual.Hash). The
// serial is normalised as the API stores it; reason "" is "unspecified".
func RevocationPayload(caID, serial, reason string) ([]byte, error) {
	n, err := normalSerial(serial)
	if err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "unspecified"
	}
	// A struct, not a map: the field order, and so the bytes, are fixed.
	return json.Marshal(struct {
		Kind   string `json:"kind"`
		CA     string `json:"ca"`
		Serial string `json:"serial"`
		Reason string `json:"reason"`
	}{caRevokeKind, caID, n, reason})
}

// PendingRevocation is the 202 answer to a CA certificate revocation that
// waits for a second CA operator.
type PendingRevocation struct {
	Serial string `json:"serial"`
	Reason string `json:"reason"`
	// Status is the dual-control request's: "pending" or "approved".
	Status string `json:"status"`
	// Approval is the dual-control request's ID
	// (GET /api/v1/approvals/{id}).
	Approval string `json:"approval"`
	// PayloadHash is the hex SM3 of RevocationPayload, the value approvers
	// state.
	PayloadHash string `json:"payload_hash"`
	Required    int    `json:"required"`
	Expires     string `json:"expires"`
}

// revokeCA handles the revocation of CA certificate c (see above).
func (s *Service) revokeCA(w http.ResponseWriter, r *http.Request, a *authority, c *certRow, req *RevokeRequest, p *authz.Principal) error {
	ctx := audit.WithActor(r.Context(), p.Actor())
	reason := req.reason()
	if !caReasons[reason] {
		return fmt.Errorf("%w: reason %s is not used for CA certificates; a CA key compromise is cACompromise (RFC 5280 §5.3.1)", ErrRequest, reason)
	}
	// The route lets an RA revoke in its organisation; a CA certificate is
	// for CA operators only, which the policy decides (and audits if not).
	res := policy.Resource{Type: "ca-certificate", ID: a.id + "/" + c.serial}
	if _, err := s.env.Authz.Authorize(ctx, p, caRevokeAction, res, "reason", reason); err != nil {
		return err
	}
	if c.status == "revoked" {
		if c.reason != reasonCodes[reason] {
			return fmt.Errorf("%w: certificate %s was already revoked at %s with reason %s", ErrConflict, c.serial,
				c.revokedAt.Format(time.RFC3339), reasonName(c.reason))
		}
		// The stored revocation, with the approval it was executed under
		// (not whatever the retry states).
		approval, err := s.storedApproval(ctx, a, c)
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, http.StatusOK, &RevokeResponse{Serial: c.serial, RevokedAt: c.revokedAt.Format(time.RFC3339),
			Reason: reasonName(c.reason), Approval: approval})
	}
	payload, err := RevocationPayload(a.id, c.serial, reason)
	if err != nil {
		return err
	}
	if req.Approval == "" {
		return s.requestCARevocation(ctx, w, a, c, reason, payload, p)
	}
	d, err := s.env.Dual.Get(ctx, req.Approval)
	if err != nil {
		return err
	}
	if d.Kind != caRevokeKind {
		return fmt.Errorf("%w: approval %s is a %s request, not a CA certificate revocation", ErrConflict, d.ID, d.Kind)
	}
	if d.Status == dual.StatusPending && d.Requester != p.Account.ID {
		if err := s.approve(ctx, d, p, payload); err != nil {
			return err
		}
	}
	var out *RevokeResponse
	var newly bool
	err = s.env.Dual.Do(ctx, d.ID, payload, func(tx *store.Tx) error {
		var err error
		out, newly, err = s.revokeRow(ctx, tx, a, c.serial, reason, p.Actor(),
			map[string]any{"ca_certificate": true, "approval": d.ID, "requester": d.Requester})
		return err
	})
	if err != nil {
		return err
	}
	out.Approval = d.ID
	if newly {
		s.publishRevokedCAs(ctx)
	}
	s.ocspRevoked(ctx, a, out.Serial)
	if newly || s.isStale(a.id) {
		s.afterRevocation(ctx, a)
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}

// storedApproval returns the dual-control request under which revoked CA
// certificate c was revoked: the executed request for its revocation
// payload, or "" when there is none (a revocation carried over from a CRL).
func (s *Service) storedApproval(ctx context.Context, a *authority, c *certRow) (string, error) {
	payload, err := RevocationPayload(a.id, c.serial, reasonName(c.reason))
	if err != nil {
		return "", err
	}
	hash := dual.Hash(payload)
	done, err := s.env.Dual.List(ctx, dual.Filter{Kind: caRevokeKind, Status: dual.StatusExecuted, Limit: 1000})
	if err != nil {
		return "", err
	}
	for _, d := range done {
		if bytes.Equal(d.PayloadHash, hash) {
			return d.ID, nil
		}
	}
	return "", nil
}

// requestCARevocation opens (or finds the open) dual-control request for a
// CA certificate revocation and answers 202.
func (s *Service) requestCARevocation(ctx context.Context, w http.ResponseWriter, a *authority, c *certRow, reason string, payload []byte, p *authz.Principal) error {
	hash := dual.Hash(payload)
	var d *dual.Request
	for _, st := range []dual.Status{dual.StatusPending, dual.StatusApproved} {
		open, err := s.env.Dual.List(ctx, dual.Filter{Kind: caRevokeKind, Status: st})
		if err != nil {
			return err
		}
		for _, o := range open {
			if bytes.Equal(o.PayloadHash, hash) {
				d = o
				break
			}
		}
		if d != nil {
			break
		}
	}
	rec := func(d *dual.Request) audit.Record {
		return audit.Record{Actor: p.Actor(), Action: caRevokeAction,
			Object: "cert/" + a.id + "/" + c.serial, Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"stage": "approval requested", "reason": reason, "subject": c.subject,
				"approval": d.ID, "payload_hash": hex.EncodeToString(d.PayloadHash)}}
	}
	if d == nil {
		// The request and the record of why it was made commit together.
		var err error
		d, err = s.env.Dual.CreateWith(ctx, dual.NewRequest{Kind: caRevokeKind, Requester: p.Account.ID, Payload: payload,
			Required: 1, TTL: caRevokeTTL, ApproverRole: string(policy.RoleCAOperator),
			Summary: fmt.Sprintf("revoke the CA certificate %s/%s (%s) with reason %s", a.id, c.serial, c.subject, reason)},
			func(tx *store.Tx, d *dual.Request) error {
				_, err := s.env.Audit.Append(ctx, tx, rec(d))
				return err
			})
		if err != nil {
			return err
		}
	} else if _, err := s.env.Audit.Write(ctx, s.env.DB, rec(d)); err != nil {
		// Asked again: nothing changes but the record of the asking.
		return err
	}
	w.Header().Set("Location", "/api/v1/approvals/"+d.ID)
	return httpx.WriteJSON(w, http.StatusAccepted, &PendingRevocation{Serial: c.serial, Reason: reason, Status: string(d.Status),
		Approval: d.ID, PayloadHash: hex.EncodeToString(d.PayloadHash), Required: d.Required, Expires: d.Expires.Format(time.RFC3339)})
}

// approve records p's approval of d for payload, after the policy decision
// the approvals route would make (dual.approve with the requester and the
// kind in the context: CA operators approve "ca.*" kinds, nobody their own).
func (s *Service) approve(ctx context.Context, d *dual.Request, p *authz.Principal, payload []byte) error {
	res := policy.Resource{Type: "dual-request", ID: d.ID, Owner: d.Requester}
	dec := s.env.Authz.Engine().Decide(policy.Request{Principal: p.Policy(), Action: "dual.approve", Resource: res,
		Context: map[string]string{"via": p.Via, "requester": d.Requester, "kind": d.Kind}})
	if !dec.Allow {
		_, _ = s.env.Audit.Write(context.WithoutCancel(ctx), s.env.DB, audit.Record{Actor: p.Actor(), Action: "dual.approve",
			Object: "dual/" + d.ID, Outcome: audit.Denied, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"reason": dec.Reason, "policies": dec.Policies}})
		return fmt.Errorf("%w: %s", authz.ErrForbidden, dec.Reason)
	}
	_, err := s.env.Dual.Approve(ctx, d.ID, p.Account.ID, dual.Hash(payload), "approved with the revocation request")
	return err
}
