package ca

import (
	"context"
	"encoding/hex"
	"errors"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// OnRevoked registers h, which is called in this process after each
// revocation commits and before it is acknowledged (the revoked
// certificate, every certificate a keyCompromise revoked with it, the
// encryption certificate of a revoked dual pair). h must not block: the
// TSA marks a unit that may no longer sign and wakes its loop. Other
// processes learn of a revocation from the database (Revoked).
// issuer is the certificate of the CA generation that issued serial.
func (s *Service) OnRevoked(h func(issuer *smx509.Certificate, serial *big.Int)) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.revokedHooks = append(s.revokedHooks, h)
}

// tellRevoked calls the OnRevoked hooks for a's certificate serial (hex).
func (s *Service) tellRevoked(a *authority, serial string) {
	s.hookMu.Lock()
	hooks := s.revokedHooks
	s.hookMu.Unlock()
	if len(hooks) == 0 {
		return
	}
	b, err := hex.DecodeString(serial)
	if err != nil {
		return
	}
	n := new(big.Int).SetBytes(b)
	for _, h := range hooks {
		h(a.cert, n)
	}
}

// Revoked reports whether a platform CA revoked the certificate der, and
// when and why (the RFC 5280 reason name); a zero time when the CA's record
// says good. A certificate no platform CA issued (a root, an offline CA's
// certificate, a foreign one) is ErrNotFound (FindIssued).
func (s *Service) Revoked(ctx context.Context, der []byte) (time.Time, string, error) {
	c, err := s.FindIssued(ctx, der)
	if err != nil {
		return time.Time{}, "", err
	}
	if c.Status != "revoked" {
		return time.Time{}, "", nil
	}
	at := c.RevokedAt
	if at.IsZero() {
		return time.Time{}, "", errors.New("ca: certificate " + c.CA + "/" + c.Serial + " is revoked without a time")
	}
	return at, c.Reason, nil
}
