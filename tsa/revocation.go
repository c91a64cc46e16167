package tsa

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/revwatch"
)

// revocationPoll is how often the TSA reads the CA's record of its units'
// certificates and chains: a revocation made by another process is seen
// within it (one made in this process at once, through the CA's hook).
const revocationPoll = 5 * time.Second

// certs are the certificates a unit's tokens rest on: its own, then its
// issuing CA's chain (revwatch.Hit, revwatch.Check).
func (u *unit) certs() [][]byte { return append([][]byte{u.cert.Raw}, u.chain...) }

// markRevoked stops u from signing (Stamp answers systemFailure, /readyz
// says why) and wakes the loop to roll it over. It reports whether u was
// not marked before.
func (s *Service) markRevoked(u *unit, why string) bool {
	msg := fmt.Sprintf("tsa %s: unit %d must not sign: %s", u.profile, u.generation, why)
	if !u.revoked.CompareAndSwap(nil, &msg) {
		return false
	}
	s.env.Logger.Error("tsa: unit certificate chain revoked; the unit stops signing and is rolled over",
		"profile", u.profile, "generation", u.generation, "reason", why)
	select {
	case s.revKick <- struct{}{}:
	default:
	}
	return true
}

// revokedHook is the CA's in-process hook (revwatch.Notifier): a
// revocation of a unit's certificate, or of a CA certificate of its chain,
// marks the unit before the revocation is acknowledged.
func (s *Service) revokedHook(issuer *smx509.Certificate, serial *big.Int) {
	set := s.units.Load()
	if set == nil {
		return
	}
	for _, u := range set.active {
		if why := revwatch.Hit(u.certs(), issuer, serial); why != "" {
			s.markRevoked(u, why)
		}
	}
}

// checkRevocations reads the CA's record of every certificate the active
// units rest on and marks those revoked (markRevoked). A certificate no
// platform CA issued is not checked here. Errors are returned together;
// a unit whose status could not be read keeps signing.
func (s *Service) checkRevocations(ctx context.Context) error {
	rr, ok := s.issuer.(revwatch.Reader)
	if !ok {
		return nil
	}
	var errs []error
	for _, u := range s.units.Load().active {
		if u.revoked.Load() != nil {
			continue
		}
		why, err := revwatch.Check(ctx, rr, u.certs())
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("tsa %s: unit %d: revocation status: %w", u.profile, u.generation, err))
		case why != "":
			s.markRevoked(u, why)
		}
	}
	return errors.Join(errs...)
}

// rollRevoked rolls over every active unit marked revoked, once another
// node's successor, when there is one, has been taken over instead
// (reloadUnits). When the CA cannot issue (its own certificate revoked,
// say) the profile answers systemFailure until it can: rollDue tries
// again every tsa.ntp_interval, and POST /api/v1/tsa/{profile}/rollover
// at once.
func (s *Service) rollRevoked(ctx context.Context) {
	ctx = audit.WithActor(ctx, "system")
	if err := s.reloadUnits(ctx); err != nil {
		s.env.Logger.Warn("tsa: could not read the units other nodes made", "error", err)
	}
	for _, sp := range specs {
		u := s.units.Load().active[sp.name]
		if u == nil || u.revoked.Load() == nil {
			continue
		}
		if _, err := s.Rollover(ctx, sp.name, "system"); err != nil {
			s.env.Logger.Error("tsa: rollover of a revoked unit failed; the profile answers systemFailure until one succeeds",
				"profile", sp.name, "generation", u.generation, "error", err)
		}
	}
}

// revocationPass takes over the units other nodes made (reloadUnits) and
// checks the active units' chains; a unit newly marked revoked wakes the
// loop, which rolls it over once (rollRevoked); later attempts are
// rollDue's, every tsa.ntp_interval, not one key and one certificate
// request per poll. A failed pass is logged when it starts failing and
// when it works again, not at every poll of a database that is away.
func (s *Service) revocationPass(ctx context.Context) {
	// A reload that fails (an unreadable row, another node's unit whose
	// key does not resolve here) does not stop the revocation checks.
	err := errors.Join(s.reloadUnits(ctx), s.checkRevocations(ctx))
	switch {
	case err != nil && !s.revFailing:
		s.env.Logger.Warn("tsa: could not read the units or their revocation status; they sign on meanwhile", "error", err)
	case err == nil && s.revFailing:
		s.env.Logger.Info("tsa: the units and their revocation status are read again")
	}
	s.revFailing = err != nil
}
