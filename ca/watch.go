package ca

import (
	"context"
	"time"
)

// registryPoll is how often a CA process looks for CA generations other
// processes on the same database added or retired (a rollover, an import
// into a running deployment). A process may issue from a generation another
// process has just retired until its next poll: the old generation stays
// valid and keeps its CRLs and OCSP, so such a certificate is as good as
// one issued a moment before the rollover.
const registryPoll = 5 * time.Second

// startWatch starts the loop that keeps the registry in step with
// ca_authorities.
func (s *Service) startWatch(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	s.stopWatchFn, s.watchDone = cancel, done
	go func() {
		defer close(done)
		t := time.NewTicker(registryPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.syncRegistry(ctx); err != nil {
					s.env.Logger.Error("ca: reload of the CA generations failed; retrying", "err", err)
				}
			}
		}
	}()
}

func (s *Service) stopWatch() {
	if s.stopWatchFn != nil {
		s.stopWatchFn()
		<-s.watchDone
	}
}

// syncRegistry reloads the registry when ca_authorities holds a CA this
// process does not know or a status that differs from the one it knows
// (a rollover retires a generation, a revocation of its certificate
// revokes it). Known generations keep their authority (signer, chain); new
// ones are opened like at start. A registry published meanwhile by this
// process (a rollover) makes it read again.
func (s *Service) syncRegistry(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		done, err := s.syncRegistryOnce(ctx)
		if done || err != nil || attempt == 3 {
			return err
		}
	}
}

// syncRegistryOnce is one attempt of syncRegistry; it reports false when
// the registry changed under it.
func (s *Service) syncRegistryOnce(ctx context.Context) (bool, error) {
	rows, err := readAuthorities(ctx, s.env.DB)
	if err != nil {
		return false, err
	}
	cur := s.reg.Load()
	old := cur
	if old == nil {
		old = newRegistry()
	}
	changed := false
	for _, r := range rows {
		if a := old.byID[r.id]; a == nil || a.status != r.status {
			changed = true
			break
		}
	}
	if !changed {
		return true, nil
	}
	reg := newRegistry()
	pending := rows
	for len(pending) > 0 {
		var later []*authorityRow
		for _, r := range pending {
			if a := old.byID[r.id]; a != nil {
				if a.status != r.status {
					c := *a
					c.status = r.status
					a = &c
				}
				reg.add(a)
				continue
			}
			if len(r.chain) == 0 && r.parent != "" && reg.byID[r.parent] == nil {
				later = append(later, r)
				continue
			}
			a, err := s.open(ctx, r, reg)
			if err != nil {
				return false, err
			}
			reg.add(a)
		}
		if len(later) == len(pending) {
			return true, nil // a parent this process cannot open yet: next poll
		}
		pending = later
	}
	if !s.reg.CompareAndSwap(cur, reg) {
		return false, nil
	}
	for _, a := range reg.order {
		if prev := old.byID[a.id]; prev == nil || prev.status != a.status {
			s.env.Logger.Info("certificate authority generation loaded from the database", "ca", a.id, "lineage", a.lineage, "status", a.status)
		}
	}
	return true, nil
}
