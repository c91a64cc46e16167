package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// maxSerialAttempts bounds retries after a serial collision (with 128
// random bits a second attempt is already astronomically unlikely).
const maxSerialAttempts = 3

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 128

// APIRoutes implements node.APIRouter.
func (s *Service) APIRoutes(m *authz.Mux) {
	// Issuance is a request on the CA, made for the caller's own
	// organisation: the resource is the CA within that organisation, so the
	// policy's org rules (platform.ra.certificates,
	// platform.application.issue) only ask that the caller has one. What
	// makes the certificate that organisation's is the handler's check of
	// its organisation values against the registry (orgbinding.go), which
	// needs the body and the profile: a finder sees neither.
	caRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "ca", ID: r.PathValue("ca"), Org: s.principalOrg(r)}, nil
	}
	// A certificate is read in the organisation of the account that
	// requested it, and by that account (its owner); an unknown one gets
	// neither, so no RA learns whether a serial exists elsewhere. The
	// serial is looked up in every generation of the {ca} lineage, as the
	// handler does (findCert).
	certRes := func(r *http.Request) (policy.Resource, error) {
		caID := r.PathValue("ca")
		res := policy.Resource{Type: "certificate", ID: caID + "/" + r.PathValue("serial")}
		serial, err := normalSerial(r.PathValue("serial"))
		if err != nil || s.lookup(caID) == nil {
			return res, nil
		}
		_, c, err := s.findCert(r.Context(), caID, serial)
		switch {
		case err == nil:
			res.Org, res.Owner = c.requesterOrg, certOwner(c)
		case !errors.Is(err, ErrNotFound):
			return res, err
		}
		return res, nil
	}
	listRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "ca", ID: "all", Org: s.principalOrg(r)}, nil
	}
	m.Handle("GET /api/v1/ca", authz.Rule{Action: "ca.certificate.read", Resource: listRes}, s.list)
	m.Handle("POST /api/v1/ca/{ca}/certificates", authz.Rule{Action: "ca.certificate.issue", Resource: caRes}, s.issue)
	m.Handle("GET /api/v1/ca/{ca}/certificates/{serial}", authz.Rule{Action: "ca.certificate.read", Resource: certRes}, s.get)
	m.Handle("POST /api/v1/ca/{ca}/revocations", authz.Rule{Action: "ca.certificate.revoke", Resource: s.revocationResource}, s.revoke)
	s.authorityRoutes(m)
	s.moreAPIRoutes(m)
}

// PublicRoutes implements node.PublicRouter.
func (s *Service) PublicRoutes(m *authz.Mux) {
	m.Handle("GET /pki/{file}", authz.Rule{Public: "CA certificate and CRL distribution (RFC 5280 §4.2.2.1 AIA caIssuers, §4.2.1.13 CRL DP)"}, s.caCert)
	m.Handle("POST /ocsp/{ca}", authz.Rule{Public: "RFC 6960 OCSP responder"}, s.ocspPOST)
	m.Handle("GET /ocsp/{ca}/{request...}", authz.Rule{Public: "RFC 6960 OCSP responder (GET, RFC 5019 §5)"}, s.ocspGET)
	// The base64 request may contain "//" (ACCEPTANCE.md C-08); path cleaning
	// must not merge it or redirect.
	m.OpaqueTail("/ocsp/", 1)
}

// principalOrg returns the organisation of the request's caller (the
// security middleware puts the principal in the context before it asks the
// resource finder).
func (s *Service) principalOrg(r *http.Request) string {
	if p := authz.PrincipalFrom(r.Context()); p != nil && p.Account != nil {
		return p.Account.Org
	}
	return ""
}

// IssueRequest is the body of POST /api/v1/ca/{ca}/certificates.
type IssueRequest struct {
	CSR     string `json:"csr"`
	Profile string `json:"profile"`
	// Record holds the values the RA verified (subject attributes such as
	// "CN", "O"; identity numbers such as "id-card"), for profiles whose
	// subject comes from the registration record (profile.Input.Record).
	Record map[string]string `json:"record,omitempty"`
	// Dual asks for a dual certificate (dual_cert.go): this signing
	// profile's certificate, the encryption certificate of EncProfile
	// (default <name>-enc) for a KMC-generated key, and that key enveloped.
	Dual       bool   `json:"dual,omitempty"`
	EncProfile string `json:"enc_profile,omitempty"`
	SKF        bool   `json:"skf_blob,omitempty"`
}

// Validate implements httpx.Validator.
func (r *IssueRequest) Validate() error {
	switch {
	case strings.TrimSpace(r.CSR) == "":
		return errors.New("csr is required")
	case r.Profile == "":
		return errors.New("profile is required")
	}
	return nil
}

// IssueResponse is the answer of a successful issuance.
type IssueResponse struct {
	Serial      string   `json:"serial"`
	Certificate string   `json:"certificate"`
	Chain       []string `json:"chain"`
	// CA is the generation that signed (the lineage's active one, see
	// authorities.go): its CRL and OCSP responder answer for the
	// certificate, which may also be read and revoked on the lineage id.
	CA string `json:"ca"`
}

// hash is what makes two requests with one Idempotency-Key the same request:
// the requester, the profile, the CSR and the record.
func (r *IssueRequest) hash(requester string) []byte {
	h := sha256.New()
	field := func(s string) {
		_ = binary.Write(h, binary.BigEndian, uint32(len(s)))
		h.Write([]byte(s))
	}
	field(requester)
	field(r.Profile)
	field(strings.TrimSpace(r.CSR))
	keys := make([]string, 0, len(r.Record))
	for k := range r.Record {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field(k)
		field(r.Record[k])
	}
	return h.Sum(nil)
}

// pemCert is der in PEM, or "" for a revocation without a certificate
// (carriedOverRow).
func pemCert(der []byte) string {
	if len(der) == 0 {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func (s *Service) response(a *authority, serial string, der []byte) *IssueResponse {
	out := &IssueResponse{Serial: serial, Certificate: pemCert(der), CA: a.id}
	for _, c := range a.chain {
		out.Chain = append(out.Chain, pemCert(c))
	}
	return out
}

func (s *Service) authority(id string) (*authority, error) {
	a := s.lookup(id)
	if a == nil {
		return nil, fmt.Errorf("%w: no CA %q", ErrNotFound, id)
	}
	return a, nil
}

// replay answers a request that repeats an Idempotency-Key: the stored
// certificate for the same request, with the chain of the generation that
// issued it (a rollover may have come between), a conflict for a
// different one.
func (s *Service) replay(w http.ResponseWriter, c *certRow, hash []byte) error {
	if !bytes.Equal(c.requestHash, hash) {
		return fmt.Errorf("%w: Idempotency-Key already used for a different request", ErrConflict)
	}
	a, err := s.authority(c.issuer)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return httpx.WriteJSON(w, http.StatusOK, s.response(a, c.serial, c.der))
}

// profileError maps the profile's errors to the CA's.
func profileError(err error) error {
	switch {
	case errors.Is(err, profile.ErrBadCSR):
		return fmt.Errorf("%w: %w", ErrRequest, err)
	case errors.Is(err, profile.ErrKeyPolicy), errors.Is(err, profile.ErrPolicy):
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return err
}

func (s *Service) issue(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, err := s.current(r.PathValue("ca"))
	if err != nil {
		return err
	}
	var req IssueRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	p := authz.PrincipalFrom(ctx)
	if p == nil {
		return errors.New("issue: no principal in context")
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if len(idemKey) > maxIdempotencyKey || strings.ContainsFunc(idemKey, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return fmt.Errorf("%w: Idempotency-Key must be at most %d printable ASCII characters", ErrRequest, maxIdempotencyKey)
	}
	if req.Dual && idemKey != "" {
		return fmt.Errorf("%w: Idempotency-Key is not supported with dual", ErrRequest)
	}
	hash := req.hash(p.Account.ID)
	if idemKey != "" {
		// The key is the requester's own, and names one request across
		// the lineage's generations.
		c, err := certByIdempotencyKey(ctx, s.env.DB, a.lineage, p.Account.ID, idemKey)
		if err == nil {
			return s.replay(w, c, hash)
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	prof := s.profiles[req.Profile]
	if prof == nil {
		return fmt.Errorf("%w: unknown profile %q", ErrRequest, req.Profile)
	}
	if a.parent == "" {
		return fmt.Errorf("%w: %s is a root CA; end-entity certificates come from an issuing CA", ErrPolicy, a.id)
	}
	if prof.CA != nil {
		return fmt.Errorf("%w: profile %s makes CA certificates, which issuing CAs (pathLenConstraint 0) may not issue", ErrPolicy, prof.Name)
	}
	if prof.Internal {
		// The platform trusts what these certificates sign or serve (OCSP
		// answers, time stamps, seals, its own listeners): only its
		// services obtain them, through IssueFor.
		return fmt.Errorf("%w: profile %s is for the platform's own services and is not issued through the API", ErrPolicy, prof.Name)
	}
	csr, err := profile.ParseCSR([]byte(req.CSR))
	if err != nil {
		return profileError(err)
	}
	if err := s.checkKeyHolder(ctx, p, csr.PublicKey); err != nil {
		return err
	}
	// Every API profile certifies the request's own key (a dual request's
	// signing key included): never one the KMC escrows.
	if err := s.checkNotEscrowed(ctx, csr.PublicKey); err != nil {
		return err
	}
	if req.Dual {
		return s.issueDual(w, r, a, prof, csr, &req, p)
	}
	parents, err := constrainingParents(a)
	if err != nil {
		return err
	}
	res, err := prof.Apply(profile.Input{CSR: csr, Record: req.Record, Now: s.env.Clock.Now().UTC(), Issuer: a.cert, Chain: parents, CAID: a.id, Vars: s.vars})
	if err != nil {
		return profileError(err)
	}
	if err := s.checkOrgBinding(ctx, p, prof, req.Record, res.Template); err != nil {
		return err
	}
	var row *certRow
	record := func(ctx context.Context, tx *store.Tx, serial string, der []byte, cert *smx509.Certificate) error {
		row = &certRow{issuer: a.id, serial: serial, subject: cert.Subject.String(), profile: prof.Name, status: "good",
			requester: p.Account.ID, requesterOrg: p.Account.Org, notBefore: cert.NotBefore, notAfter: cert.NotAfter,
			created: s.env.Clock.Now().UTC(), der: der, idempotencyKey: idemKey, requestHash: hash}
		return s.record(ctx, tx, p.Actor(), row, res.Notes)
	}
	der, _, err := s.issueLinted(ctx, a, issuance{res: res, profile: prof.Name, record: record})
	switch {
	case err == nil:
		return httpx.WriteJSON(w, http.StatusCreated, s.response(a, row.serial, der))
	case store.IsUniqueViolation(err) && idemKey != "":
		// A concurrent request with the same Idempotency-Key stored first.
		if c, lerr := certByIdempotencyKey(ctx, s.env.DB, a.lineage, p.Account.ID, idemKey); lerr == nil {
			return s.replay(w, c, hash)
		}
	}
	return fmt.Errorf("issue on %s: %w", a.id, err) // 500: nothing was stored
}

// oidNameConstraints is the DER of the nameConstraints OID (2.5.29.30),
// tag and length included.
var oidNameConstraints = []byte{0x06, 0x03, 0x55, 0x1d, 0x1e}

// constrainingParents returns the certificates above a in its chain that
// may carry nameConstraints, parsed, for profile.Input.Chain: those
// constraints bind what a issues (RFC 5280 §6.1.3). Built-in hierarchies
// have none, so the usual answer is nil without parsing anything.
func constrainingParents(a *authority) ([]*smx509.Certificate, error) {
	var out []*smx509.Certificate
	for _, der := range a.chain[min(1, len(a.chain)):] {
		if !bytes.Contains(der, oidNameConstraints) {
			continue
		}
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("ca %s: chain certificate: %w", a.id, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// record stores an issued certificate, its audit record and its outbox
// event in tx (one batch transaction of the CA's batcher). A key blocked
// or the CA revoked since the serial was reserved refuses it (ErrPolicy,
// insertIssued): the batch commits without it.
func (s *Service) record(ctx context.Context, tx *store.Tx, actor string, c *certRow, notes []string) error {
	if err := insertIssued(ctx, tx, c); err != nil {
		if errors.Is(err, ErrPolicy) {
			s.env.Logger.Warn("ca: a signed certificate was not stored: refused since its serial was reserved", "ca", c.issuer,
				"serial", c.serial, "profile", c.profile, "request_id", httpx.RequestID(ctx), "error", err)
		}
		return err
	}
	details := map[string]any{"profile": c.profile, "subject": c.subject, "not_after": c.notAfter.Format(timeFormat)}
	// The version says which rules made the certificate: a profile's
	// name stays while its rules change (server-tls is at "2").
	if p := s.profiles[c.profile]; p != nil {
		details["profile_version"] = p.Version
	}
	if len(notes) > 0 {
		details["notes"] = notes
	}
	if _, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: actor, Action: "ca.certificate.issue",
		Object: "cert/" + c.issuer + "/" + c.serial, Outcome: audit.Success, Details: details}); err != nil {
		return err
	}
	insertOutbox(tx, "issued", c.issuer, c.serial, c.created)
	return nil
}

// CertificateResponse is the answer of GET .../certificates/{serial}.
type CertificateResponse struct {
	// CA is the generation that issued the certificate.
	CA          string `json:"ca,omitempty"`
	Serial      string `json:"serial"`
	Certificate string `json:"certificate"`
	Status      string `json:"status"`
	Profile     string `json:"profile"`
	Subject     string `json:"subject"`
	NotBefore   string `json:"not_before"`
	NotAfter    string `json:"not_after"`
	// RevokedAt and Reason are set for a revoked certificate.
	RevokedAt string `json:"revoked_at,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// normalSerial parses a hex serial as given by a client (any case, optional
// colons) into the stored form.
func normalSerial(s string) (string, error) {
	h := strings.ReplaceAll(strings.ToLower(s), ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 || len(h) > 40 {
		return "", fmt.Errorf("%w: serial must be a positive hex integer of at most 20 octets", ErrRequest)
	}
	return serialHex(n), nil
}

// get handles GET /api/v1/ca/{ca}/certificates/{serial}; {ca} may name
// any generation of the lineage that issued the certificate (findCert).
func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authority(r.PathValue("ca")); err != nil {
		return err
	}
	serial, err := normalSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	a, c, err := s.findCert(r.Context(), r.PathValue("ca"), serial)
	if err != nil {
		return err
	}
	out := &CertificateResponse{CA: a.id, Serial: c.serial, Certificate: pemCert(c.der), Status: c.status,
		Profile: c.profile, Subject: c.subject, NotBefore: c.notBefore.Format(timeFormat), NotAfter: c.notAfter.Format(timeFormat)}
	if c.status == "revoked" {
		out.RevokedAt, out.Reason = c.revokedAt.Format(time.RFC3339), reasonName(c.reason)
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}

// CAInfo describes a CA in GET /api/v1/ca.
type CAInfo struct {
	ID        string `json:"id"`
	Algorithm string `json:"algorithm"`
	Subject   string `json:"subject"`
	Parent    string `json:"parent,omitempty"`
	NotAfter  string `json:"not_after"`
	// Status is active (issues), retired (replaced by a rollover), revoked
	// (its certificate was revoked: it issues nothing more) or expired;
	// the last three still sign CRLs and OCSP responses for what they
	// issued.
	Status string `json:"status"`
	// Lineage is the CA id clients issue from; Generation counts its
	// rollovers (authorities.go).
	Lineage    string `json:"lineage"`
	Generation int    `json:"generation"`
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	out := make([]CAInfo, 0, len(s.authorities()))
	for _, a := range s.authorities() {
		status := a.status
		if status != statusRevoked && s.env.Clock.Now().After(a.cert.NotAfter) {
			status = "expired"
		}
		out = append(out, CAInfo{ID: a.id, Algorithm: string(a.alg), Subject: a.cert.Subject.String(), Parent: a.parent,
			NotAfter: a.cert.NotAfter.UTC().Format(timeFormat), Status: status, Lineage: a.lineage, Generation: a.generation})
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"cas": out})
}

// caCert serves /pki/{ca}.crt, the DER certificate (RFC 5280 §4.2.2.1:
// caIssuers over HTTP is a single DER certificate, application/pkix-cert),
// and /pki/{ca}.crl, the CRL (ServeMux cannot route both by suffix).
func (s *Service) caCert(w http.ResponseWriter, r *http.Request) error {
	if id, ok := strings.CutSuffix(r.PathValue("file"), ".crl"); ok {
		return s.serveCRLFile(w, r, id)
	}
	if id, ok := strings.CutSuffix(r.PathValue("file"), "-cross.p7c"); ok {
		return s.serveCross(w, r, id)
	}
	id, ok := strings.CutSuffix(r.PathValue("file"), ".crt")
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, r.PathValue("file"))
	}
	a, err := s.authority(id)
	if errors.Is(err, ErrNotFound) {
		return s.serveOfflineCert(w, r, id)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err = w.Write(a.cert.Raw)
	return err
}

// keyID is the subjectKeyIdentifier of a CA key, RFC 7093 §2 method 1 (the
// method the profiles use for the keys they certify; ceremony.KeyID).
func keyID(spki []byte) ([]byte, error) { return ceremony.KeyID(spki) }
