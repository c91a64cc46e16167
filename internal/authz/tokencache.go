package authz

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Bearer tokens that have authenticated are kept, so that a request with a
// token seen before costs one read of authz_epoch instead of a read
// transaction with three queries and three MAC checks (12 % of the CPU of
// a certificate issuance, bench/ca). What keeps this safe:
//
//   - authz_epoch takes a new random value on every write to the tokens,
//     the accounts, their role bindings and the integrity key, by database
//     triggers (migrations 00002), so a write by any process (the API,
//     `govtrust token revoke` offline, another node, an UPDATE by hand) is
//     seen by the next request, as without the cache: the epoch is read on
//     every request and an entry serves only the epoch it was checked
//     under. Random, not counted, so that a database restored from a
//     backup (its old value) cannot match entries of a later state that
//     happened to reach the same count;
//   - the epoch is read before the rows an entry is made from, so a write
//     that lands in between leaves the entry under the older epoch, which
//     the next request no longer matches;
//   - the expiry is checked on every use;
//   - only what authenticated cleanly is kept: a refusal, an alert (a row
//     that failed its MAC, role bindings that did) or an error always takes
//     the full path again, and so alerts again.
//
// The cache holds the entries of one epoch: a new epoch empties it.

// tokenCacheMax bounds the tokens kept; a full cache starts again empty.
const tokenCacheMax = 4096

type tokenCache struct {
	mu      sync.Mutex
	epoch   int64
	entries map[string]tokenEntry // by token hash
	// hits and misses count look-ups (for tests and benchmarks).
	hits, misses uint64
}

type tokenEntry struct {
	p       Principal // Account and Roles are copies, never handed out
	expires time.Time
}

// epoch reads the current authz epoch, on the reader pool (a request must
// not wait for the writer, which a batch may hold through its fsync).
func (s *Service) epoch(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.ReadRow(ctx, "SELECT n FROM authz_epoch WHERE id = 1").Scan(&n)
	return n, err
}

// get returns a copy of the principal kept for the token hash under epoch,
// if it is there and the token has not expired at now. Another epoch
// empties the cache and makes it the cache's. (Two requests that read the
// epoch on either side of a write can swap it back and forth once; that
// costs look-ups, never a wrong answer, as an entry is only ever served
// under the epoch it was checked under.)
func (c *tokenCache) get(hash string, epoch int64, now time.Time) (*Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		c.epoch, c.entries = epoch, nil
	}
	e, ok := c.entries[hash]
	if !ok || !now.Before(e.expires) {
		c.misses++
		return nil, false
	}
	c.hits++
	return e.p.clone(), true
}

// put keeps p for the token hash, checked under epoch, until expires.
func (c *tokenCache) put(hash string, epoch int64, p *Principal, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		// Checked under an epoch that is no longer the cache's: keep
		// nothing rather than mix epochs.
		return
	}
	if c.entries == nil || len(c.entries) >= tokenCacheMax {
		c.entries = make(map[string]tokenEntry)
	}
	c.entries[hash] = tokenEntry{p: *p.clone(), expires: expires}
}

// stats reports the look-ups served from the cache and those that were not.
func (c *tokenCache) stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

// clone returns a copy of p that shares nothing mutable with it.
func (p *Principal) clone() *Principal {
	a := *p.Account
	a.Roles = slices.Clone(a.Roles)
	a.Tampered = slices.Clone(a.Tampered)
	return &Principal{Account: &a, Roles: slices.Clone(p.Roles), Via: p.Via}
}
