package kms

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// Raw bodies: POST .../encrypt and .../decrypt also take and answer
// application/octet-stream, so large payloads avoid base64 in JSON; the
// associated data then travels base64 in this header.
const (
	OctetStream     = "application/octet-stream"
	HeaderAAD       = "Govtrust-Associated-Data"
	HeaderVersion   = "Govtrust-Key-Version"
	HeaderAlgorithm = "Govtrust-Key-Algorithm"
)

// destroyTTL is how long a version destruction waits for its approvals.
const destroyTTL = 24 * time.Hour

// APIRoutes implements node.APIRouter.
func (s *Service) APIRoutes(m *authz.Mux) {
	keyRes := func(r *http.Request) (policy.Resource, error) {
		name := r.PathValue("name")
		res := policy.Resource{Type: "kms-key", ID: name}
		var owner, org string
		err := s.env.DB.ReadRow(r.Context(), `SELECT owner, org FROM kms_keys WHERE name = ?`, name).Scan(&owner, &org)
		if err == nil {
			res.Owner, res.Org = owner, org
		}
		// An unknown key gets neither owner nor organisation: only those
		// allowed on every key learn that it does not exist.
		return res, nil
	}
	allRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "kms-key", ID: "all"}, nil
	}
	m.Handle("GET /api/v1/kms/keys", authz.Rule{Action: "kms.key.read", Resource: allRes}, s.list)
	m.Handle("POST /api/v1/kms/keys", authz.Rule{Action: "kms.key.create", Resource: allRes}, s.create)
	m.Handle("GET /api/v1/kms/keys/{name}", authz.Rule{Action: "kms.key.read", Resource: keyRes}, s.get)
	m.Handle("PATCH /api/v1/kms/keys/{name}", authz.Rule{Action: "kms.key.update", Resource: keyRes}, s.update)
	m.Handle("POST /api/v1/kms/keys/{name}/rotate", authz.Rule{Action: "kms.rotate", Resource: keyRes}, s.rotate)
	m.Handle("POST /api/v1/kms/keys/{name}/encrypt", authz.Rule{Action: "kms.encrypt", Resource: keyRes}, s.encrypt)
	m.Handle("POST /api/v1/kms/keys/{name}/decrypt", authz.Rule{Action: "kms.decrypt", Resource: keyRes}, s.decrypt)
	m.Handle("POST /api/v1/kms/keys/{name}/datakey", authz.Rule{Action: "kms.encrypt", Resource: keyRes}, s.datakey)
	m.Handle("POST /api/v1/kms/keys/{name}/rewrap", authz.Rule{Action: "kms.rewrap", Resource: keyRes}, s.rewrap)
	m.Handle("POST /api/v1/kms/keys/{name}/versions/{version}/destroy", authz.Rule{Action: "kms.key.destroy", Resource: keyRes}, s.destroyVersion)
}

func actorCtx(r *http.Request) *http.Request {
	if p := authz.PrincipalFrom(r.Context()); p != nil {
		return r.WithContext(audit.WithActor(r.Context(), p.Actor()))
	}
	return r
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.List(r.Context())
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var req CreateKeyRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Org == "" {
		if p := authz.PrincipalFrom(r.Context()); p != nil && p.Account != nil {
			req.Org = p.Account.Org
		}
	}
	k, err := s.CreateKey(r.Context(), &req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/kms/keys/"+k.Name)
	return httpx.WriteJSON(w, http.StatusCreated, k)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	k, err := s.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, k)
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var req UpdateKeyRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	k, err := s.Update(r.Context(), r.PathValue("name"), &req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, k)
}

func (s *Service) rotate(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	k, err := s.Rotate(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, k)
}

// CryptRequest is the JSON body of encrypt, decrypt, rewrap and datakey.
// Byte fields are standard base64.
type CryptRequest struct {
	Plaintext      []byte `json:"plaintext,omitempty"`
	Ciphertext     []byte `json:"ciphertext,omitempty"`
	AssociatedData []byte `json:"associated_data,omitempty"`
	// Bits is the data key size of datakey: 128 (default) or 256.
	Bits int `json:"bits,omitempty"`
}

// CryptResponse is the JSON answer of encrypt, decrypt, rewrap and datakey.
type CryptResponse struct {
	Plaintext  []byte    `json:"plaintext,omitempty"`
	Ciphertext []byte    `json:"ciphertext,omitempty"`
	KeyVersion int       `json:"key_version"`
	Algorithm  Algorithm `json:"algorithm"`
}

func isRaw(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == OctetStream
}

// readRaw reads a raw body and the associated data header.
func readRaw(r *http.Request) (body, assoc []byte, err error) {
	if v := r.Header.Get(HeaderAAD); v != "" {
		if assoc, err = base64.StdEncoding.DecodeString(v); err != nil {
			return nil, nil, fmt.Errorf("%w: %s is not standard base64", ErrRequest, HeaderAAD)
		}
	}
	body, err = io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, fmt.Errorf("%w: body exceeds http.max_body_bytes (use datakey for large data): %w", httpx.ErrTooLarge, err)
		}
		return nil, nil, fmt.Errorf("%w: read body: %w", ErrRequest, err)
	}
	return body, assoc, nil
}

func writeRaw(w http.ResponseWriter, data []byte, h Header) error {
	w.Header().Set("Content-Type", OctetStream)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(HeaderVersion, strconv.Itoa(h.Version))
	w.Header().Set(HeaderAlgorithm, string(h.Algorithm))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(data)
	return err
}

func writeCrypt(w http.ResponseWriter, out *CryptResponse) error {
	w.Header().Set("Cache-Control", "no-store")
	return httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) encrypt(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if isRaw(r) {
		plain, assoc, err := readRaw(r)
		if err != nil {
			return err
		}
		ct, h, err := s.Encrypt(r.Context(), name, plain, assoc)
		if err != nil {
			return err
		}
		return writeRaw(w, ct, h)
	}
	var req CryptRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	ct, h, err := s.Encrypt(r.Context(), name, req.Plaintext, req.AssociatedData)
	if err != nil {
		return err
	}
	return writeCrypt(w, &CryptResponse{Ciphertext: ct, KeyVersion: h.Version, Algorithm: h.Algorithm})
}

func (s *Service) decrypt(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if isRaw(r) {
		ct, assoc, err := readRaw(r)
		if err != nil {
			return err
		}
		plain, h, err := s.Decrypt(r.Context(), name, ct, assoc)
		if err != nil {
			return err
		}
		return writeRaw(w, plain, h)
	}
	var req CryptRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	plain, h, err := s.Decrypt(r.Context(), name, req.Ciphertext, req.AssociatedData)
	if err != nil {
		return err
	}
	if plain == nil {
		plain = []byte{}
	}
	return writeCrypt(w, &CryptResponse{Plaintext: plain, KeyVersion: h.Version, Algorithm: h.Algorithm})
}

func (s *Service) datakey(w http.ResponseWriter, r *http.Request) error {
	var req CryptRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Bits == 0 {
		req.Bits = 128
	}
	plain, ct, h, err := s.DataKey(r.Context(), r.PathValue("name"), req.Bits, req.AssociatedData)
	if err != nil {
		return err
	}
	return writeCrypt(w, &CryptResponse{Plaintext: plain, Ciphertext: ct, KeyVersion: h.Version, Algorithm: h.Algorithm})
}

func (s *Service) rewrap(w http.ResponseWriter, r *http.Request) error {
	var req CryptRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	ct, h, err := s.Rewrap(r.Context(), r.PathValue("name"), req.Ciphertext, req.AssociatedData)
	if err != nil {
		return err
	}
	return writeCrypt(w, &CryptResponse{Ciphertext: ct, KeyVersion: h.Version, Algorithm: h.Algorithm})
}

// DestroyRequest is the body of POST .../versions/{version}/destroy: empty
// to ask for the destruction, with the approval's ID to carry it out.
type DestroyRequest struct {
	Approval string `json:"approval,omitempty"`
}

// PendingDestroy is the 202 answer: the destruction waits for approval at
// /api/v1/approvals/{approval}.
type PendingDestroy struct {
	Key         string `json:"key"`
	Version     int    `json:"version"`
	Status      string `json:"status"`
	Approval    string `json:"approval"`
	PayloadHash string `json:"payload_hash"`
	Required    int    `json:"required"`
	Expires     string `json:"expires"`
}

func (s *Service) destroyVersion(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	ctx := r.Context()
	name := r.PathValue("name")
	version, err := strconv.Atoi(r.PathValue("version"))
	if err != nil || version < 1 {
		return fmt.Errorf("%w: version must be a positive integer", ErrRequest)
	}
	var req DestroyRequest
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(r, &req); err != nil {
			return err
		}
	}
	k, err := s.Get(ctx, name)
	if err != nil {
		return err
	}
	if version > k.LatestVersion {
		return fmt.Errorf("%w: key %s has no version %d", ErrNotFound, name, version)
	}
	if version == k.LatestVersion {
		return fmt.Errorf("%w: version %d is the key's latest; rotate first, then destroy it", ErrPolicy, version)
	}
	p := authz.PrincipalFrom(ctx)
	payload := DestroyPayload(name, version)
	if req.Approval == "" {
		d, err := s.openRequest(ctx, payload, p.Account.ID, fmt.Sprintf("destroy version %d of application key %s (%s): data only it encrypted becomes unrecoverable", version, name, k.Algorithm))
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/api/v1/approvals/"+d.ID)
		return httpx.WriteJSON(w, http.StatusAccepted, &PendingDestroy{Key: name, Version: version, Status: string(d.Status), Approval: d.ID,
			PayloadHash: hex.EncodeToString(d.PayloadHash), Required: d.Required, Expires: d.Expires.Format(time.RFC3339)})
	}
	d, err := s.env.Dual.Get(ctx, req.Approval)
	if err != nil {
		return err
	}
	if d.Kind != DestroyKind {
		return fmt.Errorf("%w: approval %s is a %s request", ErrConflict, d.ID, d.Kind)
	}
	err = s.env.Dual.Do(ctx, d.ID, payload, func(tx *store.Tx) error {
		return s.destroy(ctx, tx, name, version, map[string]any{"approval": d.ID, "requester": d.Requester})
	})
	if err != nil {
		return err
	}
	s.forget(name)
	k, err = s.Get(ctx, name)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, k)
}

// openRequest finds the open dual-control request for payload or makes one.
func (s *Service) openRequest(ctx context.Context, payload []byte, requester, summary string) (*dual.Request, error) {
	hash := dual.Hash(payload)
	for _, st := range []dual.Status{dual.StatusPending, dual.StatusApproved} {
		open, err := s.env.Dual.List(ctx, dual.Filter{Kind: DestroyKind, Status: st})
		if err != nil {
			return nil, err
		}
		for _, o := range open {
			if bytes.Equal(o.PayloadHash, hash) {
				return o, nil
			}
		}
	}
	return s.env.Dual.Create(ctx, dual.NewRequest{Kind: DestroyKind, Requester: requester, Payload: payload,
		Required: s.cfg.DestroyApprovals, TTL: destroyTTL, ApproverRole: string(policy.RoleSecAdmin), Summary: summary})
}
