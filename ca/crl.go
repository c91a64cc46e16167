package ca

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// crlSchedule is when CRLs are made. Production uses defaultCRLSchedule;
// tests set shorter ones (crlStateOf(svc).schedule, before Start).
type crlSchedule struct {
	// full and delta are the intervals from thisUpdate to nextUpdate of full
	// and delta CRLs. Each is replaced after two thirds of its interval
	// (crl.RefreshDue) and so, with a tick of at most a twelfth of it,
	// always before three quarters (ACCEPTANCE.md C-04, crl.RefreshDeadline).
	full, delta time.Duration
	// tick is how often the CA looks for CRLs due for replacement or left
	// stale by a failed generation.
	tick time.Duration
	// wait bounds how long a revocation's answer waits for the CRLs that
	// list it (afterRevocation).
	wait time.Duration
}

// defaultCRLSchedule: full CRLs valid a day (BR §4.9.7 allows 7 days for
// end-entity CRLs), re-issued after 16 h; delta CRLs valid 2 h, re-issued
// after 80 min and after every revocation; a tick of 10 min is a twelfth of
// the delta interval.
var defaultCRLSchedule = crlSchedule{full: 24 * time.Hour, delta: 2 * time.Hour, tick: 10 * time.Minute, wait: crlWaitMax}

// validate refuses schedules that cannot keep the C-04 promise.
func (c crlSchedule) validate() error {
	switch {
	case c.full <= 0 || c.delta <= 0 || c.tick <= 0:
		return errors.New("ca: CRL schedule: intervals and tick must be positive")
	case c.full > crl.MaxValidity:
		return fmt.Errorf("ca: CRL schedule: full CRL interval %v over %v", c.full, crl.MaxValidity)
	case c.delta >= c.full:
		return fmt.Errorf("ca: CRL schedule: delta interval %v not shorter than the full one %v", c.delta, c.full)
	case c.tick > c.delta/12:
		// RefreshDue fires at 2/3 of the interval; the tick that sees it
		// comes at most one tick later, which must be before 3/4.
		return fmt.Errorf("ca: CRL schedule: tick %v over a twelfth of the delta interval %v", c.tick, c.delta)
	}
	return nil
}

// crlKeep is how many CRLs of each kind per CA stay in ca_crls (the newest
// is served; the others are kept for inspection). The newest delta base is
// never pruned.
const crlKeep = 10

// crlMaxAge caps the Cache-Control max-age of a served CRL, so that caches
// pick up the CRL made at once after a revocation within a minute
// (ACCEPTANCE.md C-01) even though the CRL itself is valid for longer.
const crlMaxAge = 60

// maxCRLAttempts bounds the retries when another generation took the
// number first.
const maxCRLAttempts = 3

// crlDPTemplate and deltaDPTemplate are where a CA's CRLs are published. The
// first crl_distribution_points template of every built-in profile is
// crlDPTemplate (TestCRLDPTemplate), so a full CRL's issuingDistributionPoint
// names exactly the distribution point its certificates carry.
const (
	crlDPTemplate   = "{base}/pki/{ca}.crl"
	deltaDPTemplate = "{base}/pki/{ca}-delta.crl"
)

// CRL kinds as stored in ca_crls.kind.
const (
	kindFull  = "full"
	kindDelta = "delta"
)

var (
	// errCRLRace reports that another generation moved the CA's CRL counter
	// between the read and the write.
	errCRLRace = errors.New("ca: CRL number taken by a concurrent generation")
	// errNoDeltaBase reports that no full CRL can serve as a delta's base
	// yet: a scheduled full CRL must be made first.
	errNoDeltaBase = errors.New("ca: no full CRL to base a delta CRL on")
)

// crlState is the CRL machinery of one Service: schedule, coalescing queues,
// alert metrics and the CRLs served from memory.
type crlState struct {
	schedule crlSchedule

	// ticks and ticked, when set (tests), replace the loop's ticker: the loop
	// refreshes on each value from ticks and then reports on ticked.
	ticks  <-chan time.Time
	ticked chan<- error
	// duringBuild, when set (tests), runs inside the read transaction of a
	// generation, after its snapshot is taken and before the entries are read.
	duringBuild func(kind string)

	mu     sync.Mutex
	queues map[string]*crlQueue
	// runners counts coalesced generations in flight; the loop waits for
	// them before it reports stopped.
	runners sync.WaitGroup

	regressions *prometheus.CounterVec
	generations *prometheus.CounterVec

	// served holds the CRLs GET /pki/{ca}.crl serves.
	served servedCRLs
}

// crlStateOf returns s's CRL state, made on first use (tests set its
// schedule before Start).
func crlStateOf(s *Service) *crlState {
	if st := s.crlState.Load(); st != nil {
		return st
	}
	st := &crlState{
		schedule: defaultCRLSchedule,
		queues:   map[string]*crlQueue{},
		regressions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "govtrust_ca_crl_number_regressions_total",
			Help: "CRLs refused at publication because their number was not above the last published one (RFC 5280 §5.2.3); any increase needs an operator.",
		}, []string{"ca", "kind"}),
		generations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "govtrust_ca_crl_generations_total",
			Help: "CRL generations by CA, kind and result.",
		}, []string{"ca", "kind", "result"}),
	}
	s.crlState.CompareAndSwap(nil, st)
	return s.crlState.Load()
}

// Collectors returns the CA's Prometheus metrics: CRL number regressions
// (an alert), CRL generations and keyCompromise reports left to a CA
// operator (an alert, keysweep.go). The node must register them on its
// registry for /metrics to show them.
func (s *Service) Collectors() []prometheus.Collector {
	st := crlStateOf(s)
	return []prometheus.Collector{st.regressions, st.generations, s.keyReferrals()}
}

// storedCRL is a row of ca_crls.
type storedCRL struct {
	number                 int64
	kind                   string
	thisUpdate, nextUpdate time.Time
	der                    []byte
	// base is a delta's base CRL number; seq is the highest revocation
	// sequence the CRL's snapshot saw (valid is false for CRLs made before
	// sequences existed).
	base      int64
	seq       sql.NullInt64
	deltaBase bool
}

// storedColumns are the columns of a storedCRL but its DER: only serving
// and exporting a CRL read that (50 MB for 10^6 entries).
const storedColumns = "number, kind, this_update, next_update, COALESCE(base_number, 0), revocation_seq, delta_base"

// scanStored scans storedColumns, followed by der when withDER.
func scanStored(row interface{ Scan(...any) error }, issuer string, withDER bool) (*storedCRL, error) {
	c := &storedCRL{}
	var this, next string
	var base int
	dest := []any{&c.number, &c.kind, &this, &next, &c.base, &c.seq, &base}
	if withDER {
		dest = append(dest, &c.der)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	c.deltaBase = base != 0
	var err error
	if c.thisUpdate, err = time.Parse(timeFormat, this); err == nil {
		c.nextUpdate, err = time.Parse(timeFormat, next)
	}
	if err != nil {
		return nil, fmt.Errorf("CRL %s/%d: bad time: %w", issuer, c.number, err)
	}
	return c, nil
}

// latestCRL returns the newest stored full CRL of issuer with its DER, or
// ErrNotFound.
func latestCRL(ctx context.Context, db *store.DB, issuer string) (*storedCRL, error) {
	return latestWhere(ctx, db, issuer, "kind = 'full'", true)
}

// latestDelta returns the newest stored delta CRL of issuer with its DER,
// or ErrNotFound.
func latestDelta(ctx context.Context, db *store.DB, issuer string) (*storedCRL, error) {
	return latestWhere(ctx, db, issuer, "kind = 'delta'", true)
}

// baseWhere selects the full CRLs a delta may be based on.
const baseWhere = "kind = 'full' AND delta_base = 1 AND revocation_seq IS NOT NULL"

// latestBase returns the newest full CRL of issuer that deltas are based
// on, without its DER, or ErrNotFound.
func latestBase(ctx context.Context, db *store.DB, issuer string) (*storedCRL, error) {
	return latestWhere(ctx, db, issuer, baseWhere, false)
}

// advanceCRLNumber moves the CRL counter of issuer to number in tx, from
// where the snapshot r saw it; false when it is no longer there (another
// generation published in between).
func advanceCRLNumber(ctx context.Context, tx *store.Tx, issuer string, r buildResult, number int64) (bool, error) {
	var res sql.Result
	var err error
	if r.havePrev {
		res, err = tx.Exec(ctx, "UPDATE ca_crl_numbers SET last = ? WHERE issuer_id = ? AND last = ?", number, issuer, r.prev)
	} else {
		res, err = tx.Exec(ctx, "INSERT INTO ca_crl_numbers (issuer_id, last) VALUES (?, ?) ON CONFLICT (issuer_id) DO NOTHING", issuer, number)
	}
	if err != nil {
		return false, fmt.Errorf("CRL counter: %w", err)
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1, nil
}

// baseIn returns, in q, the newest regularly scheduled full CRL of issuer
// (baseWhere), the one deltas and the retention rule refer to;
// sql.ErrNoRows when there is none.
func baseIn(ctx context.Context, q store.Querier, issuer string) (*storedCRL, error) {
	return scanStored(q.QueryRow(ctx, "SELECT "+storedColumns+" FROM ca_crls WHERE issuer_id = ? AND "+baseWhere+" ORDER BY number DESC LIMIT 1", issuer), issuer, false)
}

// countRevoked counts, in q, the revoked certificates of issuer that a
// CRL with filter f lists.
func countRevoked(ctx context.Context, q store.Querier, issuer string, f entryFilter) (int64, error) {
	where, args := f.where()
	var count int64
	if err := q.QueryRow(ctx, "SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = ? AND status = 'revoked' AND "+where,
		append([]any{issuer}, args...)...).Scan(&count); err != nil {
		return 0, fmt.Errorf("count revoked: %w", err)
	}
	return count, nil
}

// latestWhere returns the newest CRL of issuer selected by where, with its
// DER only if withDER.
func latestWhere(ctx context.Context, db *store.DB, issuer, where string, withDER bool) (*storedCRL, error) {
	cols := storedColumns
	if withDER {
		cols += ", der"
	}
	var c *storedCRL
	err := db.Read(ctx, func(q store.Querier) error {
		var err error
		c, err = scanStored(q.QueryRow(ctx, "SELECT "+cols+" FROM ca_crls WHERE issuer_id = ? AND "+where+" ORDER BY number DESC LIMIT 1", issuer), issuer, withDER)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no CRL for %s yet", ErrNotFound, issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("read CRL of %s: %w", issuer, err)
	}
	return c, nil
}

// revokedSelect orders serials numerically, as crl.Build needs: stored
// serials are hex of their content octets without leading zero octets, so a
// shorter one is smaller, and equal lengths compare as bytes. PostgreSQL is
// told to compare bytes (COLLATE "C"), whatever the database collation.
func revokedSelect(d store.Driver, cols, where string) string {
	collate := ""
	if d == store.Postgres {
		collate = ` COLLATE "C"`
	}
	return "SELECT " + cols + " FROM ca_certificates WHERE issuer_id = ? AND status = 'revoked' AND " + where +
		" ORDER BY LENGTH(serial), serial" + collate
}

// entryFilter selects the revoked certificates of one CRL.
//
// A full CRL keeps an entry until it has appeared on a regularly scheduled
// full CRL issued after the certificate expired (RFC 5280 §3.3, BR
// §4.10.1): it drops an entry only when the newest scheduled full CRL (the
// delta base) held it in its snapshot (revocation_seq at most that CRL's
// sequence) and that CRL's thisUpdate is after the certificate's notAfter.
// The full CRLs made right after revocations do not count: they are not on
// the schedule relying parties fetch by, and one may follow another within
// a second. The sequence test matters: a certificate revoked after it
// expired, or while the scheduled CRL was being built, was never on it. A
// delta lists every revocation its base did not hold.
type entryFilter struct {
	delta bool
	// prevThis and prevSeq describe the newest scheduled full CRL: the base
	// of a delta, the retention cut-off of a full CRL. prevThis is zero when
	// no scheduled full CRL knows its sequence, which keeps every entry.
	prevThis time.Time
	prevSeq  int64
}

func (f entryFilter) where() (string, []any) {
	if f.delta {
		return "revocation_seq > ?", []any{f.prevSeq}
	}
	// Stored times are RFC 3339 UTC in whole seconds for notAfter (from the
	// DER) and thisUpdate (truncated), so text order is time order;
	// keep() checks every row again in Go.
	after := ""
	if !f.prevThis.IsZero() {
		after = f.prevThis.UTC().Format(timeFormat)
	}
	return "(not_after >= ? OR revocation_seq > ?)", []any{after, f.prevSeq}
}

func (f entryFilter) keep(notAfter time.Time, seq int64) bool {
	if f.delta {
		return seq > f.prevSeq
	}
	return crl.Retain(notAfter, f.prevThis) || seq > f.prevSeq
}

// clamped counts the entries of one CRL whose revocation date was after the
// CRL's thisUpdate and was written as thisUpdate (see revokedEntries).
type clamped struct {
	n      int64
	latest time.Time // the latest revocation date clamped
}

// revokedEntries yields the revoked certificates of issuer selected by f in
// serial order from q; crl.Build ranges over it three times in one read
// transaction.
//
// A revocation dated after thisUpdate, the CRL's own date, is yielded with
// thisUpdate as its revocationDate, and counted in c (each pass counts
// afresh). It happens when the wall clock stepped back after the revocation
// (an NTP correction) or when another process sharing the database, whose
// clock is ahead, revoked: crl.Build refuses an entry revoked after the
// CRL's thisUpdate (RFC 5280 §5.1.2.6: the revocation was known when the
// CRL was issued), and refusing would stop every CRL of the CA until the
// clock passed the revocation again. thisUpdate stays the clock's time:
// moving it forward would make a CRL that relying parties reject as not yet
// valid. The certificate is listed at once, dated as late as the CRL
// allows; the next CRL made after the clock caught up shows the stored date.
func revokedEntries(ctx context.Context, q store.Querier, issuer string, f entryFilter, thisUpdate time.Time, c *clamped) iter.Seq2[crl.Entry, error] {
	where, args := f.where()
	query := revokedSelect(q.Driver(), "serial, revoked_at, revocation_reason, not_after, revocation_seq", where)
	args = append([]any{issuer}, args...)
	return func(yield func(crl.Entry, error) bool) {
		*c = clamped{}
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			yield(crl.Entry{}, err)
			return
		}
		defer rows.Close()
		n := new(big.Int) // crl.Build does not keep Entry.Serial
		for rows.Next() {
			var serial, at, na string
			var reason int
			var seq int64
			if err := rows.Scan(&serial, &at, &reason, &na, &seq); err != nil {
				yield(crl.Entry{}, err)
				return
			}
			_, ok := n.SetString(serial, 16)
			t, err := time.Parse(timeFormat, at)
			notAfter, err2 := time.Parse(timeFormat, na)
			if !ok || err != nil || err2 != nil {
				yield(crl.Entry{}, fmt.Errorf("revoked certificate %s/%s: bad serial or time", issuer, serial))
				return
			}
			if !f.keep(notAfter, seq) {
				yield(crl.Entry{}, fmt.Errorf("revoked certificate %s/%s: selected by SQL but not by the retention rule", issuer, serial))
				return
			}
			if t.Truncate(time.Second).After(thisUpdate) { // crl.Build writes whole seconds
				c.n++
				if t.After(c.latest) {
					c.latest = t
				}
				t = thisUpdate
			}
			if !yield(crl.Entry{Serial: n, RevokedAt: t, Reason: reason}, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(crl.Entry{}, err)
		}
	}
}

// dpURL fills a distribution point template for CA id; "" when the node has
// no base URL (a service started without listeners, as in store tests).
func (s *Service) dpURL(tmpl, id string) string {
	base := s.vars["base"]
	if base == "" {
		return ""
	}
	return strings.NewReplacer("{base}", base, "{ca}", id).Replace(tmpl)
}

// scopeOf returns the issuingDistributionPoint of a's CRLs, full and delta
// alike (RFC 5280 §5.2.4: a delta CRL has the scope of its base, and
// relying parties such as OpenSSL require the two IDPs to be identical).
//
// Its one fullName is the URI of the certificates' first CRL distribution
// point, byte for byte (ACCEPTANCE.md A-10; BR §7.2.2.1 wants exactly that
// HTTP URI; RFC 5280 §6.3.3 (b)(2)(i) matches a CRL to a certificate's
// distribution point by a name in common). Only the HTTP URI is named: the
// profiles put HTTP and LDAP in two DistributionPoints, and one IDP cannot be
// byte-identical to both; HTTP is the one every profile carries.
//
// onlyContainsCACerts (RFC 5280 §5.2.5) is not set on the roots' CRLs,
// although today a root certifies only issuing CAs: a root may sign its own
// delegated OCSP responder certificate (RFC 6960 §4.2.2.2, the ocsp-signer
// profile), an end entity, and a CRL that claims to hold only CA
// certificates must never list one. Without the flag the root's CRL still
// matches the issuing CAs' distribution point by name.
func (s *Service) scopeOf(a *authority) *crl.IssuingDistributionPoint {
	u := s.dpURL(crlDPTemplate, a.id)
	if u == "" {
		return nil
	}
	return &crl.IssuingDistributionPoint{FullName: []string{u}}
}

// buildResult is what the read transaction of a generation produced.
type buildResult struct {
	prev       int64 // the counter's value
	havePrev   bool
	number     int64 // the new CRL's: crl.NextNumber(prev, the time)
	thisUpdate time.Time
	seq        int64 // highest revocation sequence in the snapshot
	base       *storedCRL
}

// generateCRL makes a full CRL for a, outside the schedule (after
// revocations): deltas stay based on the last scheduled full CRL.
func (s *Service) generateCRL(ctx context.Context, a *authority) (*storedCRL, error) {
	return s.generate(ctx, a, kindFull, false)
}

// generateBase makes a scheduled full CRL for a, which the following delta
// CRLs are based on.
func (s *Service) generateBase(ctx context.Context, a *authority) (*storedCRL, error) {
	return s.generate(ctx, a, kindFull, true)
}

// generateDelta makes a delta CRL for a on its newest base full CRL.
func (s *Service) generateDelta(ctx context.Context, a *authority) (*storedCRL, error) {
	return s.generate(ctx, a, kindDelta, false)
}

// generate builds, signs and stores a CRL of kind for a. The entries are
// read in one repeatable-read transaction (db.Read), with the number that
// follows the counter read there (crl.NextNumber: derived from the time,
// and above the counter); the counter moves, guarded by its old value, in
// the transaction that stores the CRL. A concurrent generation
// that took the number first makes this one start again, so a CRL made
// after a revocation always includes it.
// A record also gives is appended in the transaction that stores the CRL
// (forceCRL's, naming who asked).
func (s *Service) generate(ctx context.Context, a *authority, kind string, asBase bool, also ...func(*storedCRL) audit.Record) (*storedCRL, error) {
	st := crlStateOf(s)
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	for attempt := 1; ; attempt++ {
		c, err := s.generateOnce(ctx, st, a, kind, asBase, also)
		if !errors.Is(err, errCRLRace) || attempt >= maxCRLAttempts {
			result := "ok"
			if err != nil {
				result = "error"
			}
			st.generations.WithLabelValues(a.id, kind, result).Inc()
			return c, err
		}
	}
}

func (s *Service) generateOnce(ctx context.Context, st *crlState, a *authority, kind string, asBase bool, also []func(*storedCRL) audit.Record) (*storedCRL, error) {
	validity := st.schedule.full
	if kind == kindDelta {
		validity = st.schedule.delta
	}
	idp := s.scopeOf(a)
	var r buildResult
	var buf bytes.Buffer
	var clamp clamped
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		buf.Reset()
		var err error
		if r, err = s.beginCRL(ctx, q, a.id); err != nil {
			return err
		}
		if st.duringBuild != nil {
			st.duringBuild(kind)
		}
		f := entryFilter{delta: kind == kindDelta}
		if f.delta {
			b, err := baseIn(ctx, q, a.id)
			if errors.Is(err, sql.ErrNoRows) {
				return errNoDeltaBase
			}
			if err != nil {
				return fmt.Errorf("delta base: %w", err)
			}
			r.base = b
			f.prevSeq = b.seq.Int64
		} else {
			prev, err := baseIn(ctx, q, a.id)
			switch {
			case err == nil:
				f.prevThis, f.prevSeq = prev.thisUpdate, prev.seq.Int64
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("previous scheduled full CRL: %w", err)
			}
		}
		count, err := countRevoked(ctx, q, a.id, f)
		if err != nil {
			return err
		}
		t := crl.Template{Issuer: a.cert, Number: big.NewInt(r.number), ThisUpdate: r.thisUpdate,
			NextUpdate: r.thisUpdate.Add(validity), IDP: idp}
		if f.delta {
			t.DeltaBase = big.NewInt(r.base.number)
		} else if u := s.dpURL(deltaDPTemplate, a.id); u != "" {
			t.FreshestCRL = []string{u} // RFC 5280 §5.2.6
		}
		return crl.Build(ctx, &buf, t, revokedEntries(ctx, q, a.id, f, r.thisUpdate, &clamp), count, a.signer)
	})
	if err != nil {
		if errors.Is(err, crl.ErrNumberRegression) {
			s.alertRegression(st, a, kind, r.number, err)
		}
		if errors.Is(err, errNoDeltaBase) {
			return nil, err
		}
		return nil, fmt.Errorf("build %s CRL of %s: %w", kind, a.id, err)
	}
	c := &storedCRL{number: r.number, kind: kind, thisUpdate: r.thisUpdate, nextUpdate: r.thisUpdate.Add(validity),
		der: buf.Bytes(), seq: sql.NullInt64{Int64: r.seq, Valid: true}, deltaBase: asBase}
	details := map[string]any{"kind": kind, "this_update": c.thisUpdate.Format(time.RFC3339),
		"next_update": c.nextUpdate.Format(time.RFC3339), "size": len(c.der), "revocation_seq": r.seq}
	action := "ca.crl.generate"
	var baseNumber any
	if r.base != nil {
		c.base, baseNumber = r.base.number, r.base.number
		details["base"] = r.base.number
		action = "ca.crl.delta.generate"
	}
	rec := audit.Record{Actor: "system", Action: action, Object: "crl/" + a.id + "/" + strconv.FormatInt(c.number, 10),
		Outcome: audit.Success, Details: details}
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		// The counter first: if it moved since the snapshot, another
		// generation (in this process or another one on the same database)
		// published in between, usually with a higher number, and this one
		// starts again on a new snapshot. Only with the counter still where
		// the snapshot saw it does a stored number at or above this one mean
		// a real regression (a counter moved back), which alerts.
		if moved, err := advanceCRLNumber(ctx, tx, a.id, r, c.number); err != nil {
			return err
		} else if !moved {
			return errCRLRace
		}
		if err := checkNumber(ctx, tx, a.id, c.number); err != nil {
			return err
		}
		baseFlag := 0
		if asBase {
			baseFlag = 1
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ca_crls (issuer_id, number, kind, this_update, next_update, der, created_at, base_number, revocation_seq, delta_base)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.id, c.number, kind, c.thisUpdate.Format(timeFormat), c.nextUpdate.Format(timeFormat),
			c.der, s.env.Clock.Now().UTC().Format(timeFormat), baseNumber, r.seq, baseFlag); err != nil {
			return fmt.Errorf("store CRL: %w", err)
		}
		if err := pruneCRLs(ctx, tx, a.id, kind); err != nil {
			return err
		}
		insertCRLOutbox(tx, a.id, kind, c.number, c.thisUpdate)
		if _, err = s.env.Audit.Append(ctx, tx, rec); err != nil {
			return err
		}
		for _, f := range also {
			if _, err := s.env.Audit.Append(ctx, tx, f(c)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, crl.ErrNumberRegression) {
		s.alertRegression(st, a, kind, c.number, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s CRL of %s: %w", kind, a.id, err)
	}
	if sc, err := s.newServedCRL(ctx, a.id, kind, c); err != nil {
		s.env.Logger.Warn("CRL stored; the served copy is loaded by the next request", "ca", a.id, "kind", kind, "number", c.number, "err", err)
	} else {
		st.served.slot(a.id, kind).offer(sc)
	}
	if clamp.n > 0 {
		s.env.Logger.Warn("clock behind revocation dates (stepped back, or another process's clock ahead): revocationDate written as the CRL's thisUpdate",
			"ca", a.id, "kind", kind, "number", c.number, "entries", clamp.n,
			"latest_revoked_at", clamp.latest.UTC().Format(time.RFC3339Nano), "this_update", c.thisUpdate.Format(time.RFC3339))
	}
	return c, nil
}

// checkNumber is the publish guard (crl.CheckNumber): number must be above
// every CRL number stored for issuer, full or delta.
func checkNumber(ctx context.Context, q store.Querier, issuer string, number int64) error {
	var last sql.NullInt64
	if err := q.QueryRow(ctx, "SELECT MAX(number) FROM ca_crls WHERE issuer_id = ?", issuer).Scan(&last); err != nil {
		return fmt.Errorf("last CRL number: %w", err)
	}
	var prev *big.Int
	if last.Valid {
		prev = big.NewInt(last.Int64)
	}
	return crl.CheckNumber(prev, big.NewInt(number))
}

// alertRegression raises the alert for a refused CRL number. Boulder's
// storer makes the same check: a number that does not go up means a
// restored backup, a moved counter or two writers, and publishing it would
// make relying parties keep the older CRL. An operator must look.
func (s *Service) alertRegression(st *crlState, a *authority, kind string, number int64, err error) {
	st.regressions.WithLabelValues(a.id, kind).Inc()
	s.env.Logger.Error("ALERT: CRL number regression, CRL not published", "ca", a.id, "kind", kind, "number", number, "err", err)
}

// pruneCRLs keeps the newest crlKeep CRLs of kind for issuer, and always the
// newest delta base.
func pruneCRLs(ctx context.Context, tx *store.Tx, issuer, kind string) error {
	var cutoff int64
	err := tx.QueryRow(ctx, "SELECT number FROM ca_crls WHERE issuer_id = ? AND kind = ? ORDER BY number DESC LIMIT 1 OFFSET ?",
		issuer, kind, crlKeep).Scan(&cutoff)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune CRLs: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM ca_crls WHERE issuer_id = ? AND kind = ? AND number <= ? AND number <> COALESCE(
		(SELECT MAX(number) FROM ca_crls WHERE issuer_id = ? AND `+baseWhere+`), 0)`, issuer, kind, cutoff, issuer); err != nil {
		return fmt.Errorf("prune CRLs: %w", err)
	}
	return nil
}

// afterRestore marks for new CRLs at once every CA whose newest CRL is
// older than the restore of the database from a backup (Env.RestoredAt):
// CRLs published after the backup was taken, with higher numbers and
// perhaps more entries, are out there but not in the database, and the
// restored one must not be served in their place.
func (s *Service) afterRestore(ctx context.Context) error {
	at := s.env.RestoredAt
	if at.IsZero() {
		return nil
	}
	for _, a := range s.authorities() {
		c, err := latestWhere(ctx, s.env.DB, a.id, "1 = 1", false)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if c.thisUpdate.Before(at) {
			s.env.Logger.Warn("database restored from a backup after this CA's newest CRL: publishing new CRLs now",
				"ca", a.id, "restored_at", at, "number", c.number, "this_update", c.thisUpdate)
			s.setStale(a.id, true)
		}
	}
	return nil
}

// refreshCRLs brings every CA's CRLs up to date: a scheduled full CRL when
// there is none, when the newest full CRL or the delta base is due for
// replacement (crl.RefreshDue), or after a failed generation, followed by a
// delta on it; a full CRL and a delta when a revocation committed that the
// newest full CRL or delta does not hold (revocationsBehind); otherwise a
// delta when the newest is due, missing or on an older base.
func (s *Service) refreshCRLs(ctx context.Context) error {
	var errs []error
	for _, a := range s.authorities() {
		if err := s.refreshCA(ctx, a); err != nil {
			s.setStale(a.id, true)
			errs = append(errs, err)
			continue
		}
		s.setStale(a.id, false)
	}
	return errors.Join(errs...)
}

func (s *Service) refreshCA(ctx context.Context, a *authority) error {
	now := s.env.Clock.Now()
	if done, err := s.crlsFinished(ctx, a, now); err != nil || done {
		return err
	}
	latest := func(where string) (*storedCRL, bool, error) {
		c, err := latestWhere(ctx, s.env.DB, a.id, where, false)
		if errors.Is(err, ErrNotFound) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		if !now.Before(crl.RefreshDeadline(c.thisUpdate, c.nextUpdate)) {
			s.env.Logger.Error("ALERT: CRL still served past three quarters of its interval", "ca", a.id, "kind", c.kind,
				"number", c.number, "this_update", c.thisUpdate, "next_update", c.nextUpdate)
		}
		return c, crl.RefreshDue(c.thisUpdate, c.nextUpdate, now), nil
	}
	full, fullDue, err := latest("kind = 'full'")
	if err != nil {
		return err
	}
	base, baseDue, err := latest(baseWhere)
	if err != nil {
		return err
	}
	if fullDue || baseDue || s.isStale(a.id) {
		return s.generateBoth(ctx, a, true)
	}
	d, deltaDue, err := latest("kind = 'delta'")
	if err != nil {
		return err
	}
	behind, err := s.revocationsBehind(ctx, a, full, d)
	if err != nil {
		return err
	}
	if behind {
		return s.generateBoth(ctx, a, false)
	}
	if deltaDue || d.base != base.number {
		if _, err := s.generateDelta(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// revocationsBehind reports whether a revocation of a has committed that
// full or delta (a's newest CRLs of each kind; delta nil if there is none)
// does not hold: the process that committed it ended before the CRLs of
// afterRevocation were made (killed, out of memory), their generation
// failed, or another process on the same database revoked and has not
// published yet. Revocation sequences follow commit order
// (migrations/*/00003_crl.sql), so a CRL holds every revocation up to the
// sequence it records; the index on (issuer_id, revocation_seq) answers the
// MAX. Once the CRLs made here record the sequence, the next tick finds
// nothing to do, on every process sharing the database.
//
// While this process has a generation for a's revocations queued or
// running, the answer is no: that generation holds every revocation
// committed before it starts; if it fails, it marks a stale for the next
// tick; a revocation committed by another process after it started is
// seen at the next tick.
func (s *Service) revocationsBehind(ctx context.Context, a *authority, full, delta *storedCRL) (bool, error) {
	var seq int64
	if err := s.env.DB.ReadRow(ctx, "SELECT COALESCE(MAX(revocation_seq), 0) FROM ca_certificates WHERE issuer_id = ?", a.id).Scan(&seq); err != nil {
		return false, fmt.Errorf("revocation sequence of %s: %w", a.id, err)
	}
	held := full.seq.Int64 // 0 for a CRL made before sequences
	var deltaSeq any
	if delta != nil {
		held, deltaSeq = min(held, delta.seq.Int64), delta.seq.Int64
	}
	if seq <= held || s.revocationQueued(a.id) {
		return false, nil
	}
	s.env.Logger.Warn("revocations committed that the newest CRLs do not list (the process that made them ended first, their CRLs failed, or another process revoked): publishing a full CRL and a delta now",
		"ca", a.id, "revocation_seq", seq, "full", full.number, "full_seq", full.seq.Int64, "delta_seq", deltaSeq)
	return true, nil
}

// revocationQueued reports whether afterRevocation has a generation of
// CA id's CRLs waiting or running in this process.
func (s *Service) revocationQueued(id string) bool {
	st := crlStateOf(s)
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queues[id]
	return q != nil && (q.running || q.next != nil)
}

// crlsFinished reports whether retired (or revoked) CA generation a has
// published its last CRL: its own certificate has expired (relying parties can no longer
// check a CRL it signs), or every certificate it issued expired before its
// newest scheduled full CRL was made (that CRL was the first regularly
// scheduled one after the last expiry, which RFC 5280 §3.3 asks an entry to
// appear in; nothing it could list again is valid). The CRLs stay served;
// the schedule stops signing them. Active generations never finish.
func (s *Service) crlsFinished(ctx context.Context, a *authority, now time.Time) (bool, error) {
	if a.status == statusActive {
		return false, nil
	}
	if !now.Before(a.cert.NotAfter) {
		return true, nil
	}
	var last sql.NullString
	if err := s.env.DB.ReadRow(ctx, "SELECT MAX(not_after) FROM ca_certificates WHERE issuer_id = ?", a.id).Scan(&last); err != nil {
		return false, fmt.Errorf("retired CA %s: last expiry: %w", a.id, err)
	}
	lastExpiry := time.Time{}
	if last.Valid {
		t, err := time.Parse(timeFormat, last.String)
		if err != nil {
			return false, fmt.Errorf("retired CA %s: last expiry %q: %w", a.id, last.String, err)
		}
		lastExpiry = t
	}
	if now.Before(lastExpiry) {
		return false, nil
	}
	full, err := latestBase(ctx, s.env.DB, a.id)
	if errors.Is(err, ErrNotFound) {
		return false, nil // one CRL still to make
	}
	if err != nil {
		return false, err
	}
	return full.thisUpdate.After(lastExpiry), nil
}

// generateBoth makes a full CRL (a delta base if asBase) and then a delta,
// so the delta's number is above the full one's and it lists whatever
// committed while the full CRL was built.
func (s *Service) generateBoth(ctx context.Context, a *authority, asBase bool) error {
	_, err := s.generatePair(ctx, a, asBase)
	return err
}

// generatePair is generateBoth, with also appended with the full CRL (see
// generate); it returns the full CRL, also when the delta failed.
func (s *Service) generatePair(ctx context.Context, a *authority, asBase bool, also ...func(*storedCRL) audit.Record) (*storedCRL, error) {
	full, err := s.generate(ctx, a, kindFull, asBase, also...)
	if err != nil {
		return nil, err
	}
	_, err = s.generateDelta(ctx, a)
	if errors.Is(err, errNoDeltaBase) && !asBase {
		// No scheduled full CRL with a sequence yet (a database from before
		// delta CRLs): make one.
		if _, err = s.generateBase(ctx, a); err == nil {
			_, err = s.generateDelta(ctx, a)
		}
	}
	return full, err
}

func (s *Service) isStale(id string) bool {
	s.staleMu.Lock()
	defer s.staleMu.Unlock()
	return s.stale[id]
}

func (s *Service) setStale(id string, v bool) {
	s.staleMu.Lock()
	defer s.staleMu.Unlock()
	s.stale[id] = v
}

// crlQueue coalesces the CRL generations that revocations of one CA ask
// for, like a group commit: a revocation that has committed joins the next
// generation that has not started yet, and waits for it. Every revocation
// acknowledged before a generation starts is therefore in it (its snapshot
// is taken after the join), while a burst of N revocations arriving during
// one generation shares the next one: at most one generation runs and one
// waits, whatever N.
type crlQueue struct {
	running bool
	next    *crlFlight
}

// crlFlight is one coalesced generation; done closes when it has finished
// with err.
type crlFlight struct {
	done chan struct{}
	err  error
}

// crlWaitMax bounds how long a revocation's answer waits for the CRLs that
// list it. CRLs of a few thousand entries take milliseconds, so the answer
// normally comes after them; a CA with 10^5 revoked certificates takes
// seconds per full CRL (README), and its revocations then answer after
// this bound while the generation goes on (ACCEPTANCE.md C-01 allows 60 s;
// OCSP answers revoked before the 200 in any case).
const crlWaitMax = 5 * time.Second

// afterRevocation makes new CRLs for a once a revocation has committed (a
// full CRL and a delta, coalesced with concurrent revocations) and waits
// for them, at most crlWaitMax. A failure is logged and leaves the CA stale
// for the next tick (or the next revocation) to retry; the revocation
// itself stands, and OCSP, which reads the database, already answers
// revoked.
func (s *Service) afterRevocation(ctx context.Context, a *authority) {
	st := crlStateOf(s)
	st.mu.Lock()
	q := st.queues[a.id]
	if q == nil {
		q = &crlQueue{}
		st.queues[a.id] = q
	}
	if q.next == nil {
		q.next = &crlFlight{done: make(chan struct{})}
	}
	f := q.next
	if !q.running {
		q.running = true
		st.runners.Add(1)
		go s.runCRLQueue(context.WithoutCancel(ctx), st, a, q)
	}
	st.mu.Unlock()
	wait := st.schedule.wait
	if wait <= 0 {
		wait = crlWaitMax
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
		s.env.Logger.Warn("revocation answered before its CRLs were made; the generation goes on", "ca", a.id, "waited", wait)
	case <-ctx.Done():
		// The generation goes on; the caller's answer does not wait.
	}
}

// runCRLQueue runs the queued generations of a until none is waiting.
func (s *Service) runCRLQueue(ctx context.Context, st *crlState, a *authority, q *crlQueue) {
	defer st.runners.Done()
	for {
		st.mu.Lock()
		f := q.next
		if f == nil {
			q.running = false
			st.mu.Unlock()
			return
		}
		q.next = nil // later revocations join a new flight
		st.mu.Unlock()

		gctx, cancel := context.WithTimeout(ctx, time.Minute)
		f.err = s.generateBoth(gctx, a, false)
		cancel()
		if f.err != nil {
			s.setStale(a.id, true)
			s.env.Logger.Error("CRL after revocation failed; the next tick retries", "ca", a.id, "err", f.err)
		} else {
			s.setStale(a.id, false)
		}
		close(f.done)
	}
}

// crlLoop refreshes the CRLs every tick until ctx ends, then waits for the
// coalesced generations still running.
func (s *Service) crlLoop(ctx context.Context, done chan<- struct{}) {
	st := crlStateOf(s)
	defer func() {
		st.runners.Wait()
		s.crlState.Store(nil)
		close(done)
	}()
	if err := st.schedule.validate(); err != nil {
		s.env.Logger.Error("ALERT: CRL schedule cannot keep CRLs fresh", "err", err)
	}
	ticks, ticked := st.ticks, st.ticked
	if ticks == nil {
		t := time.NewTicker(st.schedule.tick)
		defer t.Stop()
		ticks = t.C
	}
	// Revocations the KMC could not be told of when they were made
	// (ca/dual_cert.go): soon after start (the KMC starts after the CA),
	// then every kmcNoticeEvery.
	kmcTimer := time.NewTimer(kmcNoticeFirst)
	defer kmcTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kmcTimer.C:
			if _, err := s.kmcNotices(ctx); err != nil {
				s.env.Logger.Warn("telling the KMC of revocations failed; trying again", "err", err)
			}
			kmcTimer.Reset(kmcNoticeEvery)
		case <-ticks:
			err := s.refreshCRLs(ctx)
			if err != nil {
				s.env.Logger.Error("CRL refresh failed", "err", err)
			}
			if ticked != nil {
				select {
				case ticked <- err:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// serveCRL serves /pki/{ca}.crl, the newest full CRL, and
// /pki/{ca}-delta.crl, the newest delta CRL (RFC 5280 §4.2.1.13 and
// §5.2.6 over HTTP: DER, application/pkix-crl), from the copy the CA keeps
// in memory (servedCRLs), without copying it. The answer carries
// validators (ETag from the CRL's kind and number, Last-Modified its
// thisUpdate) and answers a conditional GET or HEAD whose If-None-Match
// or, without one, If-Modified-Since still holds with 304 (RFC 9110
// §13.2.2); Expires is the end of the max-age sent, never after
// nextUpdate.
func (s *Service) serveCRL(w http.ResponseWriter, r *http.Request, id string) error {
	a, kind, err := s.crlTarget(id)
	if err != nil {
		return err
	}
	c, err := s.servedCRL(r.Context(), a.id, kind)
	if err != nil {
		return err
	}
	return s.writeCRL(w, r, c)
}

// writeCRL answers r with c: caching headers, validators, a conditional
// answer, or the CRL.
func (s *Service) writeCRL(w http.ResponseWriter, r *http.Request, c *servedCRL) error {
	now := s.env.Clock.Now()
	maxAge := int(c.nextUpdate.Sub(now) / time.Second)
	maxAge = max(0, min(maxAge, crlMaxAge))
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(maxAge)+", no-transform")
	h.Set("Expires", now.Add(time.Duration(maxAge)*time.Second).UTC().Format(http.TimeFormat))
	h.Set("Last-Modified", c.lastModified)
	h.Set("ETag", c.etag)
	if notModified(r, c.etag, c.thisUpdate, c.strongDate) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/pkix-crl")
	h.Set("Content-Length", strconv.Itoa(len(c.der)))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	_, err := w.Write(c.der)
	return err
}

// notModified reports whether a GET or HEAD request's validators match the
// CRL served (RFC 9110 §13.1.2, §13.1.3): If-None-Match with the weak
// comparison, or "*"; only when it is absent, If-Modified-Since not before
// thisUpdate (HTTP dates have whole seconds, as thisUpdate does), and only
// if strongDate (see servedCRL), so that a client holding an earlier CRL
// of the same second never gets 304 for this one.
func notModified(r *http.Request, etag string, thisUpdate time.Time, strongDate bool) bool {
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		for _, v := range inm {
			for t := range strings.SplitSeq(v, ",") {
				t = strings.TrimSpace(t)
				if t == "*" || strings.TrimPrefix(t, "W/") == etag {
					return true
				}
			}
		}
		return false
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" || !strongDate {
		return false
	}
	t, err := http.ParseTime(ims)
	return err == nil && !thisUpdate.Truncate(time.Second).After(t)
}

// servedCRL is the newest CRL of one CA and kind as served over HTTP. It is
// immutable once made: every request shares der.
//
// strongDate tells whether Last-Modified (thisUpdate, to the second) tells
// this CRL from every earlier one of its CA and kind. It does not when an
// earlier one has a thisUpdate in the same second (a revocation's CRL made
// within a second of the previous one) or later (the clock stepped back).
// thisUpdate stays the clock's time, never in the future (relying parties
// refuse a CRL not yet valid, and a burst of revocations would push it
// further ahead), so instead a client revalidating with If-Modified-Since
// alone gets the whole CRL until one of a later second replaces it. The
// ETag, which carries the number, always tells CRLs apart.
type servedCRL struct {
	number                 int64
	thisUpdate, nextUpdate time.Time
	der                    []byte
	etag, lastModified     string
	strongDate             bool
}

// newServedCRL makes the served copy of c, the CRL of kind of CA id.
func (s *Service) newServedCRL(ctx context.Context, id, kind string, c *storedCRL) (*servedCRL, error) {
	// this_update is stored in RFC 3339 UTC ("...T10:00:00Z", with a
	// fraction only if one was stored): comparing with the text up to the
	// seconds finds every one in that second or later.
	second := c.thisUpdate.UTC().Truncate(time.Second)
	var clash int
	err := s.env.DB.ReadRow(ctx, "SELECT COUNT(*) FROM ca_crls WHERE issuer_id = ? AND kind = ? AND number < ? AND this_update >= ?",
		id, kind, c.number, second.Format("2006-01-02T15:04:05")).Scan(&clash)
	if err != nil {
		return nil, fmt.Errorf("read CRL dates of %s: %w", id, err)
	}
	// Older CRLs are pruned (crlKeep), so the query may miss one made
	// before the clock stepped back. The number tells that too: it is the
	// clock's time in microseconds unless the counter was already past it
	// (crl.NextNumber), which, beyond thisUpdate's second, means an earlier
	// CRL was made at a later reading of some clock.
	ahead := c.number >= second.Add(time.Second).UnixMicro()
	der := c.der
	if cap(der)-len(der) > len(der)/8 {
		der = bytes.Clone(der) // a bytes.Buffer's spare capacity, kept as long as the CRL
	}
	return &servedCRL{number: c.number, thisUpdate: c.thisUpdate, nextUpdate: c.nextUpdate, der: der,
		etag:         `"` + kind + "-" + strconv.FormatInt(c.number, 10) + `"`,
		lastModified: c.thisUpdate.UTC().Format(http.TimeFormat),
		strongDate:   clash == 0 && !ahead}, nil
}

// servedCRLs keeps, per CA and kind, the one copy of the newest CRL that
// every GET shares: a public endpoint must not read a CRL of 50 MB from the
// database once per request. A request reads only the newest stored number
// (an index lookup): another process on the same database may have
// published since. A newer number than the copy's is loaded once, by one
// request while the others for that CRL wait; a CRL this process stores
// replaces the copy at once (offer).
type servedCRLs struct {
	mu    sync.Mutex
	slots map[string]*servedSlot // "{ca} {kind}"
}

type servedSlot struct {
	cur  atomic.Pointer[servedCRL]
	load chan struct{} // holds a token while one request loads the DER
}

func (c *servedCRLs) slot(ca, kind string) *servedSlot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slots == nil {
		c.slots = map[string]*servedSlot{}
	}
	k := ca + " " + kind
	sl := c.slots[k]
	if sl == nil {
		sl = &servedSlot{load: make(chan struct{}, 1)}
		c.slots[k] = sl
	}
	return sl
}

// offer makes c the served copy unless one with a number at least as high
// is already there; it returns the copy served now.
func (sl *servedSlot) offer(c *servedCRL) *servedCRL {
	for {
		cur := sl.cur.Load()
		if cur != nil && cur.number >= c.number {
			return cur
		}
		if sl.cur.CompareAndSwap(cur, c) {
			return c
		}
	}
}

// fresh returns the served copy if its number is at least newest.
func (sl *servedSlot) fresh(newest int64) *servedCRL {
	if cur := sl.cur.Load(); cur != nil && cur.number >= newest {
		return cur
	}
	return nil
}

// servedCRL returns the newest CRL of kind for CA id, from memory when the
// database holds none newer; ErrNotFound before the first.
func (s *Service) servedCRL(ctx context.Context, id, kind string) (*servedCRL, error) {
	sl := crlStateOf(s).served.slot(id, kind)
	var newest sql.NullInt64
	if err := s.env.DB.ReadRow(ctx, "SELECT MAX(number) FROM ca_crls WHERE issuer_id = ? AND kind = ?", id, kind).Scan(&newest); err != nil {
		return nil, fmt.Errorf("read CRL number of %s: %w", id, err)
	}
	if !newest.Valid {
		return nil, fmt.Errorf("%w: no CRL for %s yet", ErrNotFound, id)
	}
	if c := sl.fresh(newest.Int64); c != nil {
		return c, nil
	}
	select {
	case sl.load <- struct{}{}:
		defer func() { <-sl.load }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c := sl.fresh(newest.Int64); c != nil {
		return c, nil // loaded by the request that held the token
	}
	c, err := latestWhere(ctx, s.env.DB, id, "kind = '"+kind+"'", true)
	if err != nil {
		return nil, err
	}
	sc, err := s.newServedCRL(ctx, id, kind, c)
	if err != nil {
		return nil, err
	}
	return sl.offer(sc), nil
}

// crlTarget resolves the name of a CRL file, without ".crl": a CA id names
// its full CRL, and "{ca}-delta" the delta CRL of ca unless it is itself a
// CA id (ceremony.ValidID allows ids such as "corp-delta", whose full CRL
// is at /pki/corp-delta.crl, the distribution point its certificates carry).
// CAs corp and corp-delta would both claim /pki/corp-delta.crl: no way of
// making a CA makes the second of such a pair (checkDeltaTwins).
func (s *Service) crlTarget(name string) (a *authority, kind string, err error) {
	a, err = s.authority(name)
	if err == nil {
		return a, kindFull, nil
	}
	if caID, ok := strings.CutSuffix(name, "-delta"); ok && errors.Is(err, ErrNotFound) {
		if a, err := s.authority(caID); err == nil {
			return a, kindDelta, nil
		}
	}
	return nil, "", err
}

// deltaTwins returns the ids whose CRL files would take or hide those of CA
// id: id+"-delta" (its full CRL is id's delta CRL) and, for an id ending in
// "-delta", the id without it (whose delta CRL is id's full CRL).
func deltaTwins(id string) []string {
	twins := []string{id + "-delta"}
	if base, ok := strings.CutSuffix(id, "-delta"); ok {
		twins = append(twins, base)
	}
	return twins
}

// checkDeltaTwins refuses a new CA id when one of its delta twins
// (deltaTwins) is a CA of q or a built-in CA (made at the first start, so
// perhaps not yet a row).
func checkDeltaTwins(ctx context.Context, q store.Querier, id string) error {
	for _, twin := range deltaTwins(id) {
		exists := slices.ContainsFunc(hierarchies, func(sp spec) bool { return sp.id == twin })
		if !exists {
			switch err := q.QueryRow(ctx, "SELECT 1 FROM ca_authorities WHERE id = ?", twin).Scan(new(int)); {
			case err == nil:
				exists = true
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("look up CA %s: %w", twin, err)
			}
		}
		if exists {
			base, delta := id, twin
			if twin+"-delta" == id {
				base, delta = twin, id
			}
			return fmt.Errorf("%w: CA id %s: CA %s exists, and /pki/%s.crl would be both the delta CRL of %s and the full CRL of %s; choose another id",
				ErrConflict, id, twin, delta, base, delta)
		}
	}
	return nil
}

// rolloverName matches the ids rollovers give generations,
// <lineage>-gN with N from 2 (strconv.Itoa), and their delta twins.
var rolloverName = regexp.MustCompile(`^(.+)-g([2-9]|[1-9][0-9]+)(-delta)?$`)

// rollable reports whether lineage is a CA that Rollover rolls over: one
// whose parent is a platform CA (a root, or a CA under an offline root, is
// rolled over by ceremony, under ids its operators choose).
func rollable(ctx context.Context, q store.Querier, lineage string) (bool, error) {
	for _, sp := range hierarchies {
		if sp.id == lineage {
			return sp.parent != "", nil
		}
	}
	err := q.QueryRow(ctx, `SELECT 1 FROM ca_authorities a JOIN ca_authorities p ON p.id = a.parent WHERE a.lineage = ? LIMIT 1`, lineage).Scan(new(int))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, fmt.Errorf("look up lineage %s: %w", lineage, err)
}

// checkOfflineID refuses id as the id of a new CA of this node when the
// node serves the CRL of an offline CA (ImportOfflineCRL) at one of the
// paths the new CA's CRLs take, /pki/{id}.crl and /pki/{id}-delta.crl:
// the node's own CA would hide the offline CA's CRL.
func checkOfflineID(ctx context.Context, q store.Querier, id string) error {
	for _, x := range []string{id, id + "-delta"} {
		var one int
		err := q.QueryRow(ctx, "SELECT 1 FROM ca_offline_crls WHERE ca_id = ? LIMIT 1", x).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return fmt.Errorf("look up offline CA %s: %w", x, err)
		}
		return fmt.Errorf("%w: CA id %s: this node serves the CRL of offline CA %s at /pki/%s.crl, which a CA %s would take; choose another id", ErrConflict, id, x, x, id)
	}
	return nil
}

// checkRolloverName refuses a new CA id that takes a name a rollover
// needs: taken, it would stop that lineage's rollovers for good, and
// rollover is how a lineage recovers from a revoked CA certificate. id is
// refused when it is a generation name (<lineage>-gN or its -delta twin)
// of a rollable lineage; and, when the new CA itself will be rollable
// (platformParent), when a CA already holds one of its own generation
// names.
func checkRolloverName(ctx context.Context, q store.Querier, id string, platformParent bool) error {
	if m := rolloverName.FindStringSubmatch(id); m != nil {
		ok, err := rollable(ctx, q, m[1])
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("%w: CA id %s is the name a rollover of %s gives a generation; choose another id", ErrConflict, id, m[1])
		}
	}
	if !platformParent {
		return nil
	}
	rows, err := q.Query(ctx, "SELECT id FROM ca_authorities")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var other string
		if err := rows.Scan(&other); err != nil {
			return err
		}
		if m := rolloverName.FindStringSubmatch(other); m != nil && m[1] == id {
			return fmt.Errorf("%w: CA id %s: CA %s holds a name the rollovers of %s would give a generation; choose another id", ErrConflict, id, other, id)
		}
	}
	return rows.Err()
}

// CheckCAID refuses id as the id of a new CA of db when its CRL files would
// take or hide those of a CA there (/pki/{x}-delta.crl is the delta CRL of x
// and the full CRL of x-delta), when it is a name a rollover of a CA
// there needs (checkRolloverName), or when it is an offline CA whose CRLs
// the node serves (checkOfflineID). The ceremonies that make a CA key call
// it before making anything; Import and rollovers check again as they
// record.
func CheckCAID(ctx context.Context, db *store.DB, id string) error {
	return db.Read(ctx, func(q store.Querier) error {
		if err := checkDeltaTwins(ctx, q, id); err != nil {
			return err
		}
		if err := checkOfflineID(ctx, q, id); err != nil {
			return err
		}
		return checkRolloverName(ctx, q, id, false)
	})
}

// beginCRL starts a CRL of CA id in q's read snapshot: the counter's last
// number, the highest revocation sequence the CRL will hold, thisUpdate
// and the next number, checked against the publish guard. The first
// statement fixes the snapshot (SQLite WAL and PostgreSQL REPEATABLE READ
// alike). thisUpdate is read after it: every revocation the snapshot holds
// was dated before it committed, hence before now, as crl.Build requires
// of revocationDate, unless the clock stepped back since (revokedEntries
// clamps those dates). The publish guard runs here, before anything is
// signed, and again in the transaction that stores the CRL.
func (s *Service) beginCRL(ctx context.Context, q store.Querier, id string) (buildResult, error) {
	var r buildResult
	err := q.QueryRow(ctx, "SELECT last FROM ca_crl_numbers WHERE issuer_id = ?", id).Scan(&r.prev)
	r.havePrev = err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("CRL counter: %w", err)
	}
	if err := q.QueryRow(ctx, "SELECT COALESCE(MAX(revocation_seq), 0) FROM ca_certificates WHERE issuer_id = ?", id).Scan(&r.seq); err != nil {
		return r, fmt.Errorf("revocation sequence: %w", err)
	}
	now := s.env.Clock.Now().UTC()
	r.thisUpdate = now.Truncate(time.Second)
	r.number = crl.NextNumber(r.prev, now)
	if err := checkNumber(ctx, q, id, r.number); err != nil {
		return r, err
	}
	return r, nil
}
