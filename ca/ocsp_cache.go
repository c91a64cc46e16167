package ca

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// Pre-signed OCSP responses (RFC 5019 §2.2.1, §6).
//
// A request without a nonce is answered from a cache of responses signed
// ahead of time, keyed by (CA, serial, CertID hash algorithm): the response
// names the CertID as the client sent it, so each hash algorithm needs its
// own. The cache has two levels: a bounded map in memory (ocspCacheMax
// entries; when full, an arbitrary eighth is dropped), backed by the table
// ca_ocsp_responses that every process on the database shares. A response
// is made lazily on the first request for its key, and re-signed once half
// its validity has passed (12 of 24 h, so at least 12 h before nextUpdate,
// the BR §4.9.10 "half-life" rule) by the request that finds it due and by a
// scheduled sweep of the table (ocspRefreshTick). Only good and revoked
// answers about certificates in ca_certificates are cached; unknown serials
// (RFC 6960 §2.2: never "good") and nonce requests are signed on demand and
// never stored, so an anonymous caller cannot grow the table.
//
// Correctness before speed (ACCEPTANCE.md C-02: "revoked" within 5 s of the
// acknowledgement, in every process):
//
//   - the revocation's own transaction deletes the serial's rows from
//     ca_ocsp_responses and moves the CA's counter in ca_ocsp_epochs (hooks
//     in revoke.go), so once the revocation commits no process can load a
//     stale good answer from the table;
//   - a response is stored in the table only in a transaction that finds the
//     certificate's state unchanged (certState: the status and, when revoked,
//     the date, reason and revocation_seq), reading it FOR SHARE on
//     PostgreSQL (SQLite write transactions are serial): a re-sign that read
//     "good" before a concurrent revocation, or "revoked, superseded" before
//     a change of reason to keyCompromise (which takes the same hooks),
//     committed either waits for it and sees the new state, or commits first
//     and has its row deleted by the change's DELETE; whatever the clocks
//     and however close the two signatures;
//   - the process that revoked drops the serial from its memory before it
//     answers, and signs the revoked responses at once;
//   - every process polls ca_ocsp_epochs every ocspPollInterval (1 s) and
//     drops the memory entries of a CA whose counter moved; memory is only
//     used while the last successful poll is younger than ocspStaleAfter
//     (3 s), so a process whose poll fails (database unreachable, loop
//     stuck) stops answering from memory instead of answering stale;
//   - a memory fill (from the table or a fresh signature) is kept only if no
//     invalidation happened since it began (respCache.gen), so a fill that
//     raced a drop cannot bring the stale answer back.
//
// Together: at most ocspPollInterval plus one poll's latency after the
// acknowledgement of a revocation made in another process, and not at all
// in the revoking process, can a "good" answer still be served.
//
// The same poll picks up a responder another process rolled over, and
// responses signed by an older responder are not served from the cache:
// they are re-signed by the current one.

const (
	// ocspPollInterval is how often each process reads ca_ocsp_epochs and
	// the responder generations.
	ocspPollInterval = time.Second
	// ocspStaleAfter stops memory answers when no poll succeeded for this
	// long (wall time, not the injectable clock: it measures this process's
	// own loop).
	ocspStaleAfter = 3 * time.Second
	// ocspRefreshTick is how often the table is swept for responses due for
	// re-signing, and the responders checked for rollover.
	ocspRefreshTick = time.Minute
	// ocspRefreshBatch bounds the re-signs of one sweep per CA.
	ocspRefreshBatch = 1000
	// ocspCacheMax bounds the memory cache (a response with its responder
	// certificate is about 1 KiB).
	ocspCacheMax = 32768
	// ocspMinRemaining: a cached response closer than this to its
	// nextUpdate is not served; a fresh one is signed.
	ocspMinRemaining = time.Hour
)

// ocspState is the OCSP part of a running Service.
type ocspState struct {
	mu         sync.RWMutex
	responders map[string]*responder // by CA id; absent: the CA signs
	cache      *respCache
	// lastPoll is the wall time (UnixNano) of the last successful poll.
	lastPoll atomic.Int64
	// epochs are the ca_ocsp_epochs values last seen (poll loop only).
	epochs map[string]int64
	// known are the CA generations the loop has seen (poll loop only): one
	// it has not, made by a rollover or an import while running, gets its
	// responder at the next poll rather than the next maintenance tick.
	known      map[string]bool
	refreshing sync.Map // cacheKey -> struct{}: background re-signs in flight
	// asyncMu orders the start of a background re-sign (async.Add) before
	// stopOCSP's wait; stopping refuses new ones.
	asyncMu  sync.Mutex
	async    sync.WaitGroup
	stopping bool
	stop     context.CancelFunc
	done     chan struct{}
}

func (s *Service) ocspState() *ocspState {
	return s.ocsp.Load()
}

// responder returns the delegated responder of CA id, nil when the CA signs.
func (st *ocspState) responder(id string) *responder {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.responders[id]
}

// swapResponder makes r (nil: none, the CA signs) the responder of CA id
// if old still is, and reports whether it did: of two goroutines that read
// the same responder and replaced it, the later cannot put an older or a
// revoked one back.
func (st *ocspState) swapResponder(id string, old, r *responder) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.responders[id] != old {
		return false
	}
	if r == nil {
		delete(st.responders, id)
	} else {
		st.responders[id] = r
	}
	return true
}

// fresh reports whether the memory cache may answer.
func (st *ocspState) fresh() bool {
	return time.Since(time.Unix(0, st.lastPoll.Load())) < ocspStaleAfter
}

// startOCSP makes or loads the delegated responder of every CA generation
// of the registry (the built-in hierarchies, imported CAs, the generations
// rollovers made), reads the revocation counters and starts the OCSP loop.
// A responder that cannot be made now is logged and retried by the loop;
// the CA signs meanwhile.
func (s *Service) startOCSP(ctx context.Context) {
	st := &ocspState{responders: map[string]*responder{}, cache: newRespCache(ocspCacheMax), epochs: map[string]int64{}, known: map[string]bool{}}
	now := s.env.Clock.Now()
	for _, a := range s.authorities() {
		st.known[a.id] = true
		if !ocspServes(a, now) {
			continue
		}
		r, err := s.ensureResponder(ctx, a, nil)
		if err != nil {
			s.env.Logger.Error("OCSP responder unavailable; the CA key signs OCSP until the loop makes one", "ca", a.id, "err", err)
		}
		if r != nil {
			st.responders[a.id] = r
		}
	}
	if err := s.pollOCSP(ctx, st); err != nil {
		s.env.Logger.Error("OCSP poll failed; answers are signed on demand until it succeeds", "err", err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st.stop, st.done = cancel, make(chan struct{})
	s.ocsp.Store(st)
	go s.ocspLoop(loopCtx, st)
}

// stopOCSP ends the OCSP loop and waits for it.
func (s *Service) stopOCSP(ctx context.Context) {
	st := s.ocspState()
	if st == nil {
		return
	}
	st.asyncMu.Lock()
	st.stopping = true
	st.asyncMu.Unlock()
	st.stop()
	done := make(chan struct{})
	go func() {
		<-st.done
		st.async.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.env.Logger.Error("OCSP loop did not stop in time", "err", ctx.Err())
	}
	s.ocsp.Store(nil)
}

// ocspLoop polls every ocspPollInterval and, every ocspRefreshTick, checks
// the responders for rollover and re-signs the responses due.
func (s *Service) ocspLoop(ctx context.Context, st *ocspState) {
	defer close(st.done)
	ctx = audit.WithActor(ctx, "system")
	poll := time.NewTicker(ocspPollInterval)
	defer poll.Stop()
	refresh := time.NewTicker(ocspRefreshTick)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			if err := s.pollOCSP(ctx, st); err != nil && ctx.Err() == nil {
				s.env.Logger.Error("OCSP poll failed; memory answers stop until it succeeds", "err", err)
			}
		case <-refresh.C:
			s.maintainOCSP(ctx, st)
		}
	}
}

// ocspServes reports whether CA generation a still needs a responder and
// re-signed responses at now: until its own certificate expires (the
// profiles clamp what it issues to its notAfter, so nothing it issued
// outlives it, and it can issue no responder certificate after it; a
// retired generation keeps its OCSP until then, authorities.go).
func ocspServes(a *authority, now time.Time) bool {
	return now.Before(a.cert.NotAfter)
}

// maintainOCSP, for every CA generation of the registry, rolls the
// responder over when due (or revoked), destroys superseded responder keys
// and re-signs the cached responses due.
func (s *Service) maintainOCSP(ctx context.Context, st *ocspState) {
	now := s.env.Clock.Now()
	for _, a := range s.authorities() {
		if !ocspServes(a, now) {
			continue
		}
		s.updateResponder(ctx, st, a)
		if err := s.retireResponders(ctx, a, st.responder(a.id)); err != nil {
			s.env.Logger.Error("retiring old OCSP responders failed", "ca", a.id, "err", err)
		}
		if err := s.refreshDue(ctx, st, a); err != nil {
			s.env.Logger.Error("OCSP re-signing failed", "ca", a.id, "err", err)
		}
	}
}

// updateResponder runs ensureResponder for a and installs what it returns:
// a new or loaded responder, or none when the one in use was revoked and no
// successor could be made (the CA signs meanwhile; the revoked key signs
// nothing more).
func (s *Service) updateResponder(ctx context.Context, st *ocspState, a *authority) {
	cur := st.responder(a.id)
	r, err := s.ensureResponder(ctx, a, cur)
	if err != nil {
		s.env.Logger.Error("OCSP responder check failed", "ca", a.id, "err", err)
	}
	if r != cur && st.swapResponder(a.id, cur, r) && r != nil && (cur == nil || r.generation != cur.generation) {
		s.env.Logger.Info("OCSP responder in use", "ca", a.id, "generation", r.generation)
	}
	if r != nil && signerGeneration(a, r, s.env.Clock.Now()) != r.generation {
		// Its rollover kept failing (err above) until its certificate
		// cannot outlast a response signed now: ocspSigner has the CA key
		// sign meanwhile.
		s.env.Logger.Error("OCSP responder certificate ends before the responses it would sign; the CA key signs OCSP until a successor is made",
			"ca", a.id, "generation", r.generation, "not_after", r.cert.NotAfter.UTC().Format(time.RFC3339))
	}
}

// replaceRevoked stops signing with cur, a's responder whose certificate is
// revoked, at once (the CA key signs until a successor is in place, RFC
// 6960 §2.6), then installs its successor, made or loaded.
func (s *Service) replaceRevoked(ctx context.Context, st *ocspState, a *authority, cur *responder) {
	st.swapResponder(a.id, cur, nil)
	s.updateResponder(ctx, st, a)
}

// activeResponders is what a poll reads of a CA's active responders.
type activeResponders struct {
	newest  int64
	revoked map[int64]bool // the generations whose certificate is revoked
}

// pollOCSP reads the revocation counters and the active responders of every
// CA with the status of their certificates, drops the memory entries of CAs
// whose counter moved, loads responders another process made, stops using a
// responder whose certificate was revoked (in any process) and makes its
// successor, and makes the responder of a CA generation that appeared since
// the last poll.
func (s *Service) pollOCSP(ctx context.Context, st *ocspState) error {
	epochs := map[string]int64{}
	active := map[string]*activeResponders{}
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		clear(epochs)
		clear(active)
		if err := scanPairs(ctx, q, "SELECT issuer_id, epoch FROM ca_ocsp_epochs", epochs); err != nil {
			return err
		}
		rows, err := q.Query(ctx, `SELECT r.issuer_id, r.generation, COALESCE(c.status, '') FROM ca_ocsp_responders r
			LEFT JOIN ca_certificates c ON c.issuer_id = r.issuer_id AND c.serial = r.serial
			WHERE r.state = 'active'`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, status string
			var g int64
			if err := rows.Scan(&id, &g, &status); err != nil {
				return err
			}
			l := active[id]
			if l == nil {
				l = &activeResponders{revoked: map[int64]bool{}}
				active[id] = l
			}
			l.newest = max(l.newest, g)
			if status == "revoked" {
				l.revoked[g] = true
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("OCSP poll: %w", err)
	}
	for id, e := range epochs {
		if old, ok := st.epochs[id]; !ok || old != e {
			// A first sighting drops too: the memory may have been filled
			// before the first poll saw the counter.
			st.cache.flush(id)
		}
		st.epochs[id] = e
	}
	// The memory agrees with the counters from here on; the responder work
	// below may wait on another process (awaitResponder), and fresh() stops
	// memory answers if it makes the next poll late.
	st.lastPoll.Store(time.Now().UnixNano())
	now := s.env.Clock.Now()
	for id, l := range active {
		a := s.lookup(id)
		cur := st.responder(id)
		switch {
		case a == nil || !ocspServes(a, now):
		case cur != nil && l.revoked[cur.generation]:
			s.env.Logger.Warn("OCSP responder certificate revoked; rolling over", "ca", id, "generation", cur.generation)
			s.replaceRevoked(ctx, st, a, cur)
		case !l.revoked[l.newest] && (cur == nil || cur.generation < l.newest):
			s.updateResponder(ctx, st, a)
		}
	}
	for _, a := range s.authorities() {
		if st.known[a.id] {
			continue
		}
		st.known[a.id] = true
		if ocspServes(a, now) && st.responder(a.id) == nil {
			s.updateResponder(ctx, st, a)
		}
	}
	return nil
}

func scanPairs(ctx context.Context, q store.Querier, query string, into map[string]int64) error {
	rows, err := q.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return err
		}
		into[id] = n
	}
	return rows.Err()
}

// cacheKey names a pre-signed response.
type cacheKey struct {
	ca     string
	serial string // a positive serial's magnitude, big-endian, as a string
	hash   ocsp.HashAlg
}

// cached is a pre-signed response.
type cached struct {
	der                    []byte
	thisUpdate, nextUpdate time.Time
	generation             int64 // of the responder that signed it; 0: the CA
	etag                   string
	// lastModified and expires are thisUpdate and nextUpdate as HTTP dates
	// (RFC 9110 §5.6.7), formatted once for a pre-signed response served
	// many times; empty for one signed on demand.
	lastModified, expires string
}

// httpDates returns thisUpdate and nextUpdate as HTTP dates.
func (c *cached) httpDates() (lastModified, expires string) {
	if c.lastModified != "" {
		return c.lastModified, c.expires
	}
	return c.thisUpdate.UTC().Format(http.TimeFormat), c.nextUpdate.UTC().Format(http.TimeFormat)
}

// usable reports whether c may answer at now for a CA whose current
// responder generation is gen.
func (c *cached) usable(now time.Time, gen int64) bool {
	return c.generation == gen && !now.Before(c.thisUpdate) && now.Before(c.nextUpdate.Add(-ocspMinRemaining))
}

// due reports whether c should be re-signed: half its validity has passed.
func (c *cached) due(now time.Time) bool {
	return !now.Before(c.thisUpdate.Add(c.nextUpdate.Sub(c.thisUpdate) / 2))
}

func newCached(der []byte, this, next time.Time, gen int64) *cached {
	sum := sha256.Sum256(der)
	return &cached{der: der, thisUpdate: this, nextUpdate: next, generation: gen, etag: `"` + hex.EncodeToString(sum[:16]) + `"`,
		lastModified: this.UTC().Format(http.TimeFormat), expires: next.UTC().Format(http.TimeFormat)}
}

// respCache is the bounded memory level of the cache.
type respCache struct {
	mu  sync.RWMutex
	m   map[cacheKey]*cached
	gen uint64 // moves on every invalidation
	max int
}

func newRespCache(max int) *respCache {
	return &respCache{m: make(map[cacheKey]*cached), max: max}
}

func (c *respCache) get(k cacheKey) *cached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[k]
}

// generation is read before a fill starts; put keeps the fill only if no
// invalidation happened since.
func (c *respCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *respCache) put(k cacheKey, v *cached, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return false
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		// Drop an arbitrary eighth (map order): simpler than LRU and as
		// good for a cache whose misses cost a table read, not a signature.
		n := c.max / 8
		for key := range c.m {
			delete(c.m, key)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.m[k] = v
	return true
}

// drop removes the entries of one serial of CA ca.
func (c *respCache) drop(ca, serial string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, h := range cachedHashes {
		delete(c.m, cacheKey{ca, serial, h})
	}
}

// flush removes every entry of CA ca.
func (c *respCache) flush(ca string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k := range c.m {
		if k.ca == ca {
			delete(c.m, k)
		}
	}
}

// cachedHashes are the CertID hash algorithms ParseRequest accepts, with
// their names in ca_ocsp_responses.hash_alg.
var cachedHashes = []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA256, ocsp.SHA384, ocsp.SHA512, ocsp.SM3}

var hashNames = map[ocsp.HashAlg]string{ocsp.SHA1: "sha1", ocsp.SHA256: "sha256", ocsp.SHA384: "sha384", ocsp.SHA512: "sha512", ocsp.SM3: "sm3"}

func hashByName(name string) (ocsp.HashAlg, bool) {
	for h, n := range hashNames {
		if n == name {
			return h, true
		}
	}
	return 0, false
}

// presigned answers a request without a nonce from the cache, filling it
// when needed. It returns the response, or nil when the answer is not
// cacheable (unknown serial, a CA certificate) or the cache cannot be used,
// for the caller to sign on demand.
//
// The key holds a serial's magnitude only (big.Int.Bytes), so a serial that
// is zero or negative never reaches it: no certificate has one (RFC 5280
// §4.1.2.2), and −N must not be answered with N's response. Such a request
// is signed on demand: "unknown", for the CertID as asked.
func (s *Service) presigned(ctx context.Context, st *ocspState, a *authority, req *ocsp.Request) (*cached, error) {
	if req.SerialNumber.Sign() <= 0 {
		return nil, nil
	}
	k := cacheKey{ca: a.id, serial: string(req.SerialNumber.Bytes()), hash: req.HashAlgorithm}
	if !st.fresh() {
		return nil, nil
	}
	now := s.env.Clock.Now()
	gen := signerGeneration(a, st.responder(a.id), now)
	if c := st.cache.get(k); c != nil && c.usable(now, gen) {
		if c.due(now) {
			s.refreshAsync(st, a, k)
		}
		return c, nil
	}
	fill := st.cache.generation()
	c, err := loadResponse(ctx, s.env.DB, k)
	if err != nil {
		return nil, err
	}
	if c != nil && c.usable(now, gen) {
		st.cache.put(k, c, fill)
		if c.due(now) {
			s.refreshAsync(st, a, k)
		}
		return c, nil
	}
	return s.resign(ctx, st, a, k, fill)
}

// resign signs a fresh response for k without a nonce, stores it in the
// table if the certificate's state it was signed from (status, and the
// revocation's date, reason and sequence) is still the stored one, and in
// memory if it was stored and no invalidation happened since fill was read.
// It returns nil for an answer that is not cached.
func (s *Service) resign(ctx context.Context, st *ocspState, a *authority, k cacheKey, fill uint64) (*cached, error) {
	serial := new(big.Int).SetBytes([]byte(k.serial))
	t, state, err := s.template(ctx, a, serial, k.hash, nil)
	if err != nil {
		return nil, err
	}
	if state.status == "" {
		return nil, nil
	}
	r := ocspSigner(a, st.responder(a.id), &t)
	der, err := s.signOCSP(a, r, t)
	if err != nil {
		return nil, err
	}
	gen := int64(0)
	if r != nil {
		gen = r.generation
	}
	c := newCached(der, t.ThisUpdate, t.NextUpdate, gen)
	stored, err := storeResponse(ctx, s.env.DB, k, state, c)
	if err != nil {
		return nil, err
	}
	if stored {
		st.cache.put(k, c, fill)
	}
	// Not stored: the certificate's state changed under us (revoked, or its
	// reason changed), or the table holds a later response. The answer is
	// still the truth as read at the start of this request, so it is
	// returned, but neither level of the cache keeps it.
	return c, nil
}

// refreshAsync re-signs k in the background, once at a time per key.
func (s *Service) refreshAsync(st *ocspState, a *authority, k cacheKey) {
	if _, busy := st.refreshing.LoadOrStore(k, struct{}{}); busy {
		return
	}
	st.asyncMu.Lock()
	if st.stopping {
		st.asyncMu.Unlock()
		st.refreshing.Delete(k)
		return
	}
	st.async.Add(1)
	st.asyncMu.Unlock()
	go func() {
		defer st.async.Done()
		defer st.refreshing.Delete(k)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.resign(ctx, st, a, k, st.cache.generation()); err != nil {
			s.env.Logger.Error("OCSP re-sign failed", "ca", a.id, "serial", hex.EncodeToString([]byte(k.serial)), "err", err)
		}
	}()
}

// refreshDue re-signs up to ocspRefreshBatch stored responses of a that
// are past half their validity or were signed by another signer than the
// one that signs now (an older responder, or the CA key while a responder
// was missing, or the responder whose certificate ends too soon,
// ocspSigner).
func (s *Service) refreshDue(ctx context.Context, st *ocspState, a *authority) error {
	now := s.env.Clock.Now().UTC()
	gen := signerGeneration(a, st.responder(a.id), now)
	var keys []cacheKey
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		keys = keys[:0]
		rows, err := q.Query(ctx, `SELECT serial, hash_alg FROM ca_ocsp_responses
			WHERE issuer_id = ? AND (this_update <= ? OR generation <> ?) LIMIT ?`,
			a.id, now.Add(-ocspValidity/2).Format(timeFormat), gen, ocspRefreshBatch)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var serial, name string
			if err := rows.Scan(&serial, &name); err != nil {
				return err
			}
			b, err := hex.DecodeString(serial)
			h, ok := hashByName(name)
			if err != nil || !ok {
				return fmt.Errorf("stored OCSP response %s/%s/%s: bad serial or hash", a.id, serial, name)
			}
			keys = append(keys, cacheKey{a.id, string(b), h})
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := s.resign(ctx, st, a, k, st.cache.generation()); err != nil {
			return err
		}
	}
	return nil
}

// loadResponse reads the stored response of k, nil when there is none.
func loadResponse(ctx context.Context, db *store.DB, k cacheKey) (*cached, error) {
	var der []byte
	var this, next string
	var gen int64
	err := db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT der, this_update, next_update, generation FROM ca_ocsp_responses
			WHERE issuer_id = ? AND serial = ? AND hash_alg = ?`, k.ca, hex.EncodeToString([]byte(k.serial)), hashNames[k.hash]).
			Scan(&der, &this, &next, &gen)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read OCSP response: %w", err)
	}
	t1, err1 := time.Parse(timeFormat, this)
	t2, err2 := time.Parse(timeFormat, next)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("stored OCSP response: bad time: %w", err)
	}
	return newCached(der, t1, t2, gen), nil
}

// storeResponse stores c for k if the certificate's row still holds state,
// the one c was signed from: status, revocation date, reason and sequence,
// so that neither a "good" answer read before a revocation nor a "revoked"
// one read before a change of reason (revoke.go toKeyCompromise) is stored
// after it (see the comment at the top of this file for why the read locks
// the row). A response already stored with a later thisUpdate is not
// replaced. It reports whether c is now the stored response.
func storeResponse(ctx context.Context, db *store.DB, k cacheKey, state certState, c *cached) (bool, error) {
	serial := hex.EncodeToString([]byte(k.serial))
	stored := false
	err := db.Tx(ctx, func(tx *store.Tx) error {
		stored = false
		now, err := readCertState(ctx, tx, k.ca, serial, true)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("status of %s/%s: %w", k.ca, serial, err)
		}
		if state.status == "" || now != state {
			return nil
		}
		res, err := tx.Exec(ctx, `INSERT INTO ca_ocsp_responses (issuer_id, serial, hash_alg, generation, status, this_update, next_update, der)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (issuer_id, serial, hash_alg) DO UPDATE SET generation = excluded.generation, status = excluded.status,
				this_update = excluded.this_update, next_update = excluded.next_update, der = excluded.der
			WHERE ca_ocsp_responses.this_update <= excluded.this_update`,
			k.ca, serial, hashNames[k.hash], c.generation, state.status, c.thisUpdate.UTC().Format(timeFormat), c.nextUpdate.UTC().Format(timeFormat), c.der)
		if err != nil {
			return fmt.Errorf("store OCSP response %s/%s: %w", k.ca, serial, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store OCSP response %s/%s: %w", k.ca, serial, err)
		}
		// 0: the stored response is newer (the WHERE of DO UPDATE).
		stored = n == 1
		return nil
	})
	return stored, err
}

// ocspRevokeTx is called in the transaction of a revocation of issuer/
// serial: it deletes the serial's stored responses and moves the CA's
// revocation counter, which the other processes poll.
func (s *Service) ocspRevokeTx(ctx context.Context, tx *store.Tx, issuer, serial string) error {
	if _, err := tx.Exec(ctx, "DELETE FROM ca_ocsp_responses WHERE issuer_id = ? AND serial = ?", issuer, serial); err != nil {
		return fmt.Errorf("drop OCSP responses of %s/%s: %w", issuer, serial, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ca_ocsp_epochs (issuer_id, epoch) VALUES (?, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET epoch = ca_ocsp_epochs.epoch + 1`, issuer); err != nil {
		return fmt.Errorf("OCSP revocation counter of %s: %w", issuer, err)
	}
	return nil
}

// ocspRevoked is called after a revocation of a/serial committed and
// before it is acknowledged: it tells the OnRevoked hooks, drops the
// serial from this process's memory and signs its revoked responses at
// once (for the CertID hashes clients use most: SHA-1, SHA-256 and SM3). When the serial is the certificate of
// a's responder in use, the responder is replaced first (ensureResponder
// makes its successor; the CA key signs if that fails), so nothing this
// process answers after the acknowledgement is signed by the revoked key;
// other processes see the revocation at their next poll. A signing failure
// is logged: the revocation stands, and the next request signs on demand.
func (s *Service) ocspRevoked(ctx context.Context, a *authority, serial string) {
	s.tellRevoked(a, serial)
	st := s.ocspState()
	if st == nil {
		return
	}
	b, err := hex.DecodeString(serial)
	if err != nil {
		return
	}
	st.cache.drop(a.id, string(b))
	ctx = context.WithoutCancel(ctx)
	if r := st.responder(a.id); r != nil && serialHex(r.cert.SerialNumber) == serial {
		s.env.Logger.Warn("OCSP responder certificate revoked; rolling over", "ca", a.id, "generation", r.generation, "serial", serial)
		s.replaceRevoked(audit.WithActor(ctx, "system"), st, a, r)
	}
	for _, h := range []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA256, ocsp.SM3} {
		if _, err := s.resign(ctx, st, a, cacheKey{a.id, string(b), h}, st.cache.generation()); err != nil {
			s.env.Logger.Error("signing the revoked OCSP response failed", "ca", a.id, "serial", serial, "err", err)
			return
		}
	}
}
