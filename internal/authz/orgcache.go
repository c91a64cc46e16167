package authz

import (
	"context"
	"errors"
	"sync"
)

// The organisations read for bound issuances (OrgOf) are kept, as the
// bearer tokens are (tokencache.go) and under the same rule: an entry
// serves only requests authenticated under the authz_epoch it was read
// under, and a write to the registry, by anyone, changes the epoch
// (migration 00004). A principal authenticated by token carries the epoch
// its request read before anything else, so a kept organisation costs no
// query; without one (another way in, or no epoch) the registry is read.

type orgEntry struct {
	org   *Org // nil: not registered
	epoch int64
}

type orgCache struct {
	mu      sync.Mutex
	entries map[string]orgEntry
	// hits counts look-ups served from memory (for tests).
	hits uint64
}

// OrgOf returns the registry entry of p's organisation (Org), from memory
// when p's request was authenticated under the epoch it was read under.
func (s *Service) OrgOf(ctx context.Context, p *Principal) (*Org, error) {
	id := p.Account.Org
	if !p.hasEpoch {
		return s.Org(ctx, id)
	}
	s.orgs.mu.Lock()
	e, ok := s.orgs.entries[id]
	if ok && e.epoch == p.epoch {
		s.orgs.hits++
		s.orgs.mu.Unlock()
		if e.org == nil {
			return nil, errNotRegistered(id)
		}
		o := *e.org
		return &o, nil
	}
	s.orgs.mu.Unlock()
	// Read after p's epoch: a write in between changed the epoch, and the
	// entry kept under p's no longer matches the next request.
	o, err := s.Org(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	s.orgs.mu.Lock()
	if s.orgs.entries == nil || len(s.orgs.entries) >= tokenCacheMax {
		s.orgs.entries = map[string]orgEntry{}
	}
	e = orgEntry{epoch: p.epoch}
	if o != nil {
		c := *o
		e.org = &c
	}
	s.orgs.entries[id] = e
	s.orgs.mu.Unlock()
	return o, err
}
