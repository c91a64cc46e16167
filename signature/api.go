package signature

import (
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/signature/cms"
)

// APIRoutes implements node.APIRouter.
func (s *Service) APIRoutes(m *authz.Mux) {
	// A key is a resource owned by its application account, in its
	// organisation; an unknown key is nobody's, so the policy refuses it
	// before anyone learns whether it exists.
	keyRes := func(id string, r *http.Request) (policy.Resource, error) {
		res := policy.Resource{Type: "signature-key", ID: id, Level: policy.Public}
		k, err := s.key(r.Context(), id)
		switch {
		case err == nil:
			res.Org, res.Owner = k.Org, k.Owner
		case !errors.Is(err, ErrNotFound):
			return res, err
		}
		return res, nil
	}
	m.Handle("POST /api/v1/signature/keys", authz.Rule{Action: "signature.key.create", Resource: func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "signature-key", ID: "new", Level: policy.Public}, nil
	}}, s.createKey)
	m.Handle("GET /api/v1/signature/keys/{id}", authz.Rule{Action: "signature.key.read", Resource: func(r *http.Request) (policy.Resource, error) {
		return keyRes(r.PathValue("id"), r)
	}}, s.getKey)
	m.Handle("POST /api/v1/signature/keys/{id}/sign", authz.Rule{Action: "signature.sign", Resource: func(r *http.Request) (policy.Resource, error) {
		return keyRes(r.PathValue("id"), r)
	}}, s.sign)
	m.Handle("POST /api/v1/signature/verify", authz.Rule{Action: "signature.verify"}, s.verify)
}

func (s *Service) createKey(w http.ResponseWriter, r *http.Request) error {
	var req NewKey
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	p := authz.PrincipalFrom(r.Context())
	k, err := s.CreateKey(r.Context(), req, p.Actor())
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusCreated, k)
}

func (s *Service) getKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.key(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, k)
}

// SignRequest asks for a signature with a key the caller owns.
type SignRequest struct {
	// Mode is "cms" (default) or "raw".
	Mode string `json:"mode,omitempty"`
	// Data (base64) is signed, or Digest (base64) made with Hash in
	// hash-only mode. For raw SM2 the digest is e = SM3(Z‖M) (GM/T 0009 §8).
	Data   []byte `json:"data,omitempty"`
	Digest []byte `json:"digest,omitempty"`
	Hash   string `json:"hash,omitempty"` // sm3, sha256, sha384, sha512
	// Detached leaves the content out of the CMS.
	Detached bool `json:"detached,omitempty"`
	// Family is "rfc5652" (default) or "gmt0010".
	Family string `json:"family,omitempty"`
	// SM2OID is the SignerInfo signature algorithm for SM2:
	// 1.2.156.10197.1.301.1 (default) or 1.2.156.10197.1.501.
	SM2OID string `json:"sm2_oid,omitempty"`
	// UID is the SM2 user ID (default 1234567812345678).
	UID string `json:"uid,omitempty"`
	// Timestamp adds an RFC 3161 signature time-stamp; LTV adds the
	// long-term validation data and an archive time-stamp.
	Timestamp bool `json:"timestamp,omitempty"`
	LTV       bool `json:"ltv,omitempty"`
}

// Validate implements httpx.Validator.
func (q *SignRequest) Validate() error {
	switch {
	case q.Mode != "" && q.Mode != ModeCMS && q.Mode != ModeRaw:
		return fmt.Errorf("mode: %q is not cms or raw", q.Mode)
	case (q.Data == nil) == (q.Digest == nil):
		return errors.New("exactly one of data and digest")
	case q.Digest != nil && q.Hash == "":
		return errors.New("hash: required with digest")
	case q.Hash != "" && cms.HashByName(q.Hash) == nil:
		return fmt.Errorf("hash: %q is not sm3, sha256, sha384 or sha512", q.Hash)
	case q.Family != "" && q.Family != "rfc5652" && q.Family != "gmt0010":
		return fmt.Errorf("family: %q is not rfc5652 or gmt0010", q.Family)
	case q.SM2OID != "" && q.SM2OID != cms.OIDSM2Sign.String() && q.SM2OID != cms.OIDSM2WithSM3.String():
		return fmt.Errorf("sm2_oid: %q is not an SM2 signature OID", q.SM2OID)
	case q.LTV && q.Data == nil:
		return errors.New("ltv: the archive time-stamp covers the content; send data, not a digest")
	case q.Digest != nil && len(q.Digest) != cms.HashByName(q.Hash).Size:
		return fmt.Errorf("digest: %d bytes is not a %s digest", len(q.Digest), q.Hash)
	}
	return nil
}

func parseOID(s string) asn1.ObjectIdentifier {
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(s, ".") {
		n, _ := strconv.Atoi(p)
		oid = append(oid, n)
	}
	return oid
}

// Options turns the request into signing options.
func (q *SignRequest) Options() *Options {
	o := &Options{Mode: q.Mode, Data: q.Data, Digest: q.Digest, Detached: q.Detached, Timestamp: q.Timestamp, LTV: q.LTV}
	if o.Mode == "" {
		o.Mode = ModeCMS
	}
	if q.Hash != "" {
		o.Hash = cms.HashByName(q.Hash)
	}
	if q.Family == "gmt0010" {
		o.Family = cms.GMT0010
	}
	if q.SM2OID != "" {
		o.SM2OID = parseOID(q.SM2OID)
	}
	if q.UID != "" {
		o.UID = []byte(q.UID)
	}
	return o
}

// SignResponse is a signature made.
type SignResponse struct {
	// Signature is the DER CMS ContentInfo, or the raw signature (base64).
	Signature   []byte   `json:"signature"`
	Format      string   `json:"format"`
	Certificate string   `json:"certificate"`
	Chain       []string `json:"chain"`
}

func (s *Service) sign(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req SignRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	h, err := s.held(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	p := authz.PrincipalFrom(ctx)
	// Defence in depth behind the policy: the key's owner only.
	if h.key.Disabled || p == nil || p.Account.ID != h.key.Owner {
		return fmt.Errorf("%w: key %s is not the caller's to use", ErrPolicy, h.key.ID)
	}
	// A relying party would reject a signature under a certificate that
	// has expired or was revoked: none is made.
	if err := s.usable(ctx, h); err != nil {
		return err
	}
	o := req.Options()
	if o.Mode == ModeRaw && o.Hash == nil && o.Data != nil {
		o.Hash = cms.DefaultDigest(h.signer.Public())
	}
	sg := &Signing{Key: h.signer, Cert: h.key.cert, Chain: h.key.chain, Verifier: s.Verifier()}
	if s.stamper != nil {
		sg.Stamp = StampVia(s.stamper)
	}
	sig, err := sg.Sign(ctx, o)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRequest, err)
	}
	// A revocation acknowledged while this signature was being made (a
	// time-stamp round trip can take a while): the CA's hook marked the
	// key before the acknowledgement, and the signature is not returned.
	if why := h.revoked.Load(); why != nil {
		return fmt.Errorf("%w: %s", ErrPolicy, *why)
	}
	// Audited before it is returned: no signature leaves unrecorded.
	digest := o.Digest
	hashName := req.Hash
	if digest == nil {
		hh := cms.DefaultDigest(h.signer.Public())
		if o.Hash != nil {
			hh = o.Hash
		}
		digest, hashName = hh.Sum(o.Data), hh.Name
	}
	if _, err := s.env.Audit.Write(ctx, s.env.DB, audit.Record{Actor: p.Actor(), Action: "signature.sign", Object: "signature-key/" + h.key.ID,
		Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: map[string]any{"mode": o.Mode, "hash": hashName, "digest": hex.EncodeToString(digest),
			"detached": o.Detached, "timestamp": o.Timestamp || o.LTV, "ltv": o.LTV, "family": o.Family.String()}}); err != nil {
		return fmt.Errorf("signature: audit: %w", err)
	}
	return httpx.WriteJSON(w, http.StatusOK, &SignResponse{Signature: sig, Format: o.Mode, Certificate: h.key.Certificate, Chain: h.key.Chain})
}

// VerifyRequest asks for a verification.
type VerifyRequest struct {
	// Signature is a DER CMS SignedData, or a raw signature with Certificate.
	Signature []byte `json:"signature"`
	// Certificate (PEM) is the signer of a raw signature.
	Certificate string `json:"certificate,omitempty"`
	// Data is the signed content (detached CMS, raw); Digest its Hash
	// digest instead.
	Data   []byte `json:"data,omitempty"`
	Digest []byte `json:"digest,omitempty"`
	Hash   string `json:"hash,omitempty"`
	UID    string `json:"uid,omitempty"`
}

// Validate implements httpx.Validator.
func (q *VerifyRequest) Validate() error {
	switch {
	case len(q.Signature) == 0:
		return errors.New("signature: required")
	case q.Data != nil && q.Digest != nil:
		return errors.New("at most one of data and digest")
	case q.Hash != "" && cms.HashByName(q.Hash) == nil:
		return fmt.Errorf("hash: %q is not sm3, sha256, sha384 or sha512", q.Hash)
	}
	return nil
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) error {
	var req VerifyRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	in, err := req.Input()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRequest, err)
	}
	return httpx.WriteJSON(w, http.StatusOK, s.Verifier().Verify(r.Context(), in))
}

// Input turns the request into verifier input.
func (q *VerifyRequest) Input() (*Input, error) {
	in := &Input{Signature: q.Signature, Content: q.Data, Digest: q.Digest}
	if q.Hash != "" {
		in.Hash = cms.HashByName(q.Hash)
	}
	if q.UID != "" {
		in.UID = []byte(q.UID)
	}
	if q.Certificate != "" {
		b, _ := pem.Decode([]byte(q.Certificate))
		if b == nil {
			return nil, errors.New("certificate is not PEM")
		}
		c, err := smx509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		in.Certificate = c
	}
	return in, nil
}
