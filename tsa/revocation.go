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
// says why) and wakes the loop to roll it over when it is active (a
// retired unit is marked for the requests still in flight on it). It
// reports whether u was not marked before.
func (s *Service) markRevoked(u *unit, why string) bool {
	msg := fmt.Sprintf("tsa %s: unit %d must not sign: %s", u.profile, u.generation, why)
	if !u.revoked.CompareAndSwap(nil, &msg) {
		return false
	}
	s.env.Logger.Error("tsa: unit certificate chain revoked; the unit signs no more, and is rolled over if active",
		"profile", u.profile, "generation", u.generation, "reason", why)
	select {
	case s.revKick <- struct{}{}:
	default:
	}
	return true
}

// revokedHook is the CA's in-process hook (revwatch.Notifier): a
// revocation of a unit's certificate, or of a CA certificate of its chain,
// marks the unit before the revocation is acknowledged. Every unit this
// process holds is looked at, the retired ones too: a request that took
// a unit just before a rollover may still be signing with it, and Stamp
// reads the mark again once the token is recorded. It runs under pubMu,
// so a unit being published is either in the set it reads or checked
// against the CA's record after this revocation committed (publish).
func (s *Service) revokedHook(issuer *smx509.Certificate, serial *big.Int) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	set := s.units.Load()
	if set == nil {
		return
	}
	for _, list := range set.all {
		for _, u := range list {
			if why := revwatch.Hit(u.certs(), issuer, serial); why != "" {
				s.markRevoked(u, why)
			}
		}
	}
}

// publish makes next the set the handlers read. fresh are its units that
// were not in the set before and may sign (a rollover's new unit, another
// node's unit taken over): each is checked against the CA's record first
// and marked when its chain is revoked, so it is marked before any request
// can take it. The CA's hook tells of a revocation after it commits and
// before it is acknowledged; as hook and publish exclude each other
// (pubMu), a revocation acknowledged before the unit is published was
// committed before this check, and one acknowledged after is seen by the
// hook in next. A unit whose status could not be read is published all the
// same (it signs on, as checkRevocations has it, until the next poll reads
// it); the error is returned.
func (s *Service) publish(ctx context.Context, next *unitSet, fresh ...*unit) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	var errs []error
	if rr, ok := s.issuer.(revwatch.Reader); ok {
		for _, u := range fresh {
			why, err := revwatch.Check(ctx, rr, u.certs())
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("tsa %s: unit %d: revocation status: %w", u.profile, u.generation, err))
			case why != "":
				s.markRevoked(u, why)
			}
		}
	}
	s.units.Store(next)
	return errors.Join(errs...)
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
