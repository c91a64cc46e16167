package signature

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/revwatch"
)

// revocationRecheck is how long the CA's record of a held key's
// certificates is trusted before it is read again at the next signature:
// a revocation made by another process is seen within it (one made in this
// process at once, through the CA's hook; a key's first signature after
// the node started always reads it).
const revocationRecheck = 5 * time.Second

// certs are the certificates a key's signatures rest on: its own, then
// its CA's chain (revwatch.Hit, revwatch.Check).
func (k *Key) certs() [][]byte {
	out := [][]byte{k.cert.Raw}
	for _, c := range k.chain {
		out = append(out, c.Raw)
	}
	return out
}

// markRevoked records why h must not sign any more.
func (h *heldKey) markRevoked(why string) {
	msg := fmt.Sprintf("key %s must not sign: %s; a relying party would reject its signatures: create a new key", h.key.ID, why)
	h.revoked.CompareAndSwap(nil, &msg)
}

// revokedHook is the CA's in-process hook (revwatch.Notifier): a
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
		if why := revwatch.Hit(h.key.certs(), issuer, serial); why != "" {
			h.markRevoked(why)
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
	rr, ok := s.issuer.(revwatch.Reader)
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
	why, err := revwatch.Check(ctx, rr, h.key.certs())
	if err != nil {
		s.env.Logger.Warn("signature: could not read the revocation status of a key's certificate", "key", h.key.ID, "error", err)
		return fmt.Errorf("signature: key %s: the revocation status of its certificates cannot be read now: %w", h.key.ID, httpx.ErrUnavailable)
	}
	if why != "" {
		h.markRevoked(why)
		return fmt.Errorf("%w: %s", ErrPolicy, *h.revoked.Load())
	}
	h.checked = time.Now()
	return nil
}
