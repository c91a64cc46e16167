package signature

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/httpx"
)

// revocationRecheck is how long the CA's record of a held key's
// certificates is trusted before it is read again at the next signature:
// a revocation made by another process is seen within it (one made in this
// process at once, through the CA's hook; a key's first signature after
// the node started always reads it).
const revocationRecheck = 5 * time.Second

// revocationReader is the CA's record of a certificate it issued
// (ca.Service.Revoked): a zero time when good; an error wrapping
// httpx.ErrNotFound when no platform CA issued it (a root, an offline CA).
type revocationReader interface {
	Revoked(ctx context.Context, der []byte) (time.Time, string, error)
}

// revocationNotifier tells of each revocation this process commits, before
// it is acknowledged (ca.Service.OnRevoked).
type revocationNotifier interface {
	OnRevoked(func(issuer *smx509.Certificate, serial *big.Int))
}

// links are the (certificate, its issuer) pairs a key's signatures rest
// on: the key's certificate under its CA, then each CA certificate of the
// chain under the next; the chain's last (the root) has no issuer here.
func (k *Key) links() [][2]*smx509.Certificate {
	certs := append([]*smx509.Certificate{k.cert}, k.chain...)
	out := make([][2]*smx509.Certificate, 0, len(certs)-1)
	for i := 0; i+1 < len(certs); i++ {
		out = append(out, [2]*smx509.Certificate{certs[i], certs[i+1]})
	}
	return out
}

// markRevoked records why h must not sign any more.
func (h *heldKey) markRevoked(why string) {
	msg := fmt.Sprintf("key %s must not sign: %s; a relying party would reject its signatures: create a new key", h.key.ID, why)
	h.revoked.CompareAndSwap(nil, &msg)
}

// revokedHook is the CA's in-process hook (revocationNotifier): a
// revocation of a held key's certificate, or of a CA certificate of its
// chain, stops the key before the revocation is acknowledged. A key not
// held yet reads the CA's record at its first signature.
func (s *Service) revokedHook(issuer *smx509.Certificate, serial *big.Int) {
	s.mu.Lock()
	held := make([]*heldKey, 0, len(s.signers))
	for _, h := range s.signers {
		held = append(held, h)
	}
	s.mu.Unlock()
	for _, h := range held {
		for _, l := range h.key.links() {
			if bytes.Equal(l[1].Raw, issuer.Raw) && l[0].SerialNumber.Cmp(serial) == 0 {
				h.markRevoked(fmt.Sprintf("certificate %x (%s) was revoked", serial, l[0].Subject.CommonName))
			}
		}
	}
}

// usable reports why h must not sign now, nil when it may: its certificate
// or one of its chain is outside its validity, or revoked (the CA's hook,
// or its record read at most revRecheck ago). The refusals wrap ErrPolicy
// (422); a record that cannot be read, httpx.ErrUnavailable (503).
func (s *Service) usable(ctx context.Context, h *heldKey) error {
	if why := h.revoked.Load(); why != nil {
		return fmt.Errorf("%w: %s", ErrPolicy, *why)
	}
	now := s.env.Clock.Now()
	for i, c := range append([]*smx509.Certificate{h.key.cert}, h.key.chain...) {
		what := "its certificate"
		if i > 0 {
			what = "the CA certificate " + c.Subject.CommonName + " of its chain"
		}
		switch {
		case now.After(c.NotAfter):
			return fmt.Errorf("%w: key %s: %s expired at %s; a signature made now would not verify: create a new key",
				ErrPolicy, h.key.ID, what, c.NotAfter.UTC().Format(time.RFC3339))
		case now.Before(c.NotBefore):
			return fmt.Errorf("%w: key %s: %s is not yet valid (from %s)",
				ErrPolicy, h.key.ID, what, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	rr, ok := s.issuer.(revocationReader)
	if !ok {
		return nil
	}
	recheck := s.revRecheck
	if recheck == 0 {
		recheck = revocationRecheck
	}
	h.checkMu.Lock()
	defer h.checkMu.Unlock()
	if !h.checked.IsZero() && time.Since(h.checked) < recheck {
		return nil
	}
	for _, l := range h.key.links() {
		at, reason, err := rr.Revoked(ctx, l[0].Raw)
		if errors.Is(err, httpx.ErrNotFound) {
			continue
		}
		if err != nil {
			s.env.Logger.Warn("signature: could not read the revocation status of a key's certificate", "key", h.key.ID, "error", err)
			return fmt.Errorf("signature: key %s: the revocation status of its certificates cannot be read now: %w", h.key.ID, httpx.ErrUnavailable)
		}
		if !at.IsZero() {
			h.markRevoked(fmt.Sprintf("certificate %x (%s) was revoked (%s) at %s",
				l[0].SerialNumber, l[0].Subject.CommonName, reason, at.UTC().Format(time.RFC3339)))
			return fmt.Errorf("%w: %s", ErrPolicy, *h.revoked.Load())
		}
	}
	h.checked = time.Now()
	return nil
}
