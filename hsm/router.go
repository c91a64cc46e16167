package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"
)

// Router is a KeyManager that sends each request to the backend mounted for the
// key URI's scheme, and for pkcs11 URIs optionally for its token label. It lets
// the rest of the platform hold one KeyManager while keys live in several
// backends.
type Router struct {
	// Audit, when set, records key creation and deletion for every backend.
	// An operation whose audit record cannot be written does not happen: a
	// created key is deleted again, and a deletion is refused before it
	// starts (its request is recorded first).
	Audit AuditFunc

	mu     sync.RWMutex
	byName map[string]KeyManager // "soft", "pkcs11", "pkcs11:token=ca"
	order  []string
}

var _ KeyManager = (*Router)(nil)

// AuditFunc writes one audit record and reports whether it was written.
type AuditFunc func(ctx context.Context, action, object, outcome string, details map[string]any) error

// Audit actions recorded by the Router.
const (
	ActionKeyCreate        = "hsm.key.create"
	ActionKeyDeleteRequest = "hsm.key.delete.request"
	ActionKeyDelete        = "hsm.key.delete"
)

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{byName: map[string]KeyManager{}} }

// Mount attaches km for scheme, or for scheme and a PKCS#11 token label when
// token is not empty. A token-specific mount wins over a scheme-wide one.
func (r *Router) Mount(scheme, token string, km KeyManager) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := mountKey(scheme, token)
	if _, ok := r.byName[k]; !ok {
		r.order = append(r.order, k)
	}
	r.byName[k] = km
}

func mountKey(scheme, token string) string {
	if token == "" {
		return scheme
	}
	return scheme + ":token=" + token
}

// Backend returns the key manager that serves uri.
func (r *Router) Backend(uri string) (KeyManager, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t := u.Get("token"); t != "" {
		if km, ok := r.byName[mountKey(u.Scheme, t)]; ok {
			return km, nil
		}
	}
	if km, ok := r.byName[u.Scheme]; ok {
		return km, nil
	}
	return nil, fmt.Errorf("%w: no backend for %q", ErrUnavailable, uri)
}

func (r *Router) all() []KeyManager {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]KeyManager, 0, len(r.order))
	for _, k := range r.order {
		out = append(out, r.byName[k])
	}
	return out
}

// CreateKey implements KeyManager.
func (r *Router) CreateKey(ctx context.Context, req *CreateKeyRequest) (*KeyInfo, error) {
	km, err := r.Backend(req.URI)
	if err != nil {
		return nil, err
	}
	info, err := km.CreateKey(ctx, req)
	if r.Audit == nil {
		return info, err
	}
	details := map[string]any{"algorithm": string(req.Algorithm), "usage": string(req.Usage), "service": req.Service}
	if err != nil {
		details["error"] = err.Error()
		_ = r.Audit(ctx, ActionKeyCreate, req.URI, "failure", details) // the failure is returned either way
		return nil, err
	}
	details["location"] = string(info.Location)
	details["backend"] = info.Backend
	if aerr := r.Audit(ctx, ActionKeyCreate, info.URI, "success", details); aerr != nil {
		derr := km.DeleteKey(ctx, &DeleteKeyRequest{URI: info.URI, Service: req.Service})
		return nil, errors.Join(fmt.Errorf("hsm: key %s not created: audit log unwritable: %w", info.URI, aerr), derr)
	}
	return info, nil
}

// PublicKey implements KeyManager.
func (r *Router) PublicKey(ctx context.Context, req *PublicKeyRequest) (crypto.PublicKey, error) {
	km, err := r.Backend(req.URI)
	if err != nil {
		return nil, err
	}
	return km.PublicKey(ctx, req)
}

// Signer implements KeyManager.
func (r *Router) Signer(ctx context.Context, req *SignerRequest) (crypto.Signer, error) {
	km, err := r.Backend(req.URI)
	if err != nil {
		return nil, err
	}
	return km.Signer(ctx, req)
}

// Decrypter implements the optional Decrypter ability when the backend has it.
func (r *Router) Decrypter(ctx context.Context, req *DecrypterRequest) (crypto.Decrypter, error) {
	km, err := r.Backend(req.URI)
	if err != nil {
		return nil, err
	}
	d, ok := km.(Decrypter)
	if !ok {
		return nil, ErrUnsupported
	}
	return d.Decrypter(ctx, req)
}

// Wrap implements the optional KeyWrapper ability when the backend has it.
func (r *Router) Wrap(ctx context.Context, req *WrapRequest) ([]byte, error) {
	w, err := r.wrapper(req.URI)
	if err != nil {
		return nil, err
	}
	return w.Wrap(ctx, req)
}

// Unwrap implements the optional KeyWrapper ability when the backend has it.
func (r *Router) Unwrap(ctx context.Context, req *WrapRequest) ([]byte, error) {
	w, err := r.wrapper(req.URI)
	if err != nil {
		return nil, err
	}
	return w.Unwrap(ctx, req)
}

func (r *Router) wrapper(uri string) (KeyWrapper, error) {
	km, err := r.Backend(uri)
	if err != nil {
		return nil, err
	}
	w, ok := km.(KeyWrapper)
	if !ok {
		return nil, ErrUnsupported
	}
	return w, nil
}

// ListKeys implements KeyManager: the keys of every mounted backend.
func (r *Router) ListKeys(ctx context.Context, req *ListKeysRequest) ([]*KeyInfo, error) {
	var out []*KeyInfo
	for _, km := range r.all() {
		ks, err := km.ListKeys(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, ks...)
	}
	return out, nil
}

// DeleteKey implements KeyManager.
func (r *Router) DeleteKey(ctx context.Context, req *DeleteKeyRequest) error {
	km, err := r.Backend(req.URI)
	if err != nil {
		return err
	}
	if r.Audit == nil {
		return km.DeleteKey(ctx, req)
	}
	details := map[string]any{"service": req.Service}
	if err := r.Audit(ctx, ActionKeyDeleteRequest, req.URI, "success", details); err != nil {
		return fmt.Errorf("hsm: key %s not deleted: audit log unwritable: %w", req.URI, err)
	}
	outcome := "success"
	if err = km.DeleteKey(ctx, req); err != nil {
		outcome, details["error"] = "failure", err.Error()
	}
	// The request is already on record; a failure to record the outcome is
	// reported with the deletion's own result.
	return errors.Join(err, r.Audit(ctx, ActionKeyDelete, req.URI, outcome, details))
}

// Check reports the first backend that is not usable.
func (r *Router) Check(ctx context.Context) error {
	var errs []error
	for _, km := range r.all() {
		if c, ok := km.(Checker); ok {
			if err := c.Check(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Close closes every backend.
func (r *Router) Close() error {
	var errs []error
	for _, km := range r.all() {
		errs = append(errs, km.Close())
	}
	return errors.Join(errs...)
}
