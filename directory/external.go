package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// externalLeaseTTL is how long a process may push to a target before
// another may take over. The holder renews the lease at every batch and,
// within a batch, before each entry once a sixth of it has passed; every
// LDAP operation times out after a third of it. So an entry's push (a
// search and a write) ends before the lease it started under, and a
// process that finds its lease taken stops: two processes never write to
// one server at once, and an older state never overwrites a newer one
// pushed by the process that took over. A variable for tests.
var externalLeaseTTL = 30 * time.Second

// errLeaseLost stops a batch whose lease another process took.
var errLeaseLost = errors.New("lease taken over by another process")

// testBeforePush, when set (tests), runs before each entry's push, once
// the lease is known to be held.
var testBeforePush func(s *Service, norm string)

// target is an external LDAP server kept in step with dir_changes: its
// cursor (dir_targets) advances only after the entries up to it were
// written there, and every push writes an entry's whole current state, so
// a push repeated after a crash changes nothing: nothing is lost and no
// value is written twice.
type target struct {
	cfg   config.ExternalLDAPConfig
	s     *Service
	tls   *tls.Config
	attrs map[string]bool
	poked chan struct{}
	conn  *ldap.Conn
	// leaseTTL is externalLeaseTTL when the target was made; renewed is
	// when this process last took or renewed the lease (monotonic).
	leaseTTL time.Duration
	renewed  time.Time
	// retryAt is when the refused entries are next tried again (zero:
	// at the first batch).
	retryAt time.Time
}

func newTarget(c config.ExternalLDAPConfig, s *Service) (*target, error) {
	t := &target{cfg: c, s: s, poked: make(chan struct{}, 1), attrs: map[string]bool{}, leaseTTL: externalLeaseTTL}
	if c.CACert != "" {
		pemData, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("directory.external %s: ca_cert: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("directory.external %s: ca_cert %s: no certificate", c.Name, c.CACert)
		}
		t.tls = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	attrs := c.Attributes
	if len(attrs) == 0 {
		attrs = s.cfg.PublicAttributes
	}
	for _, a := range attrs {
		t.attrs[schemaName(a)] = true
	}
	t.attrs["objectClass"] = true
	return t, nil
}

func (t *target) poke() {
	select {
	case t.poked <- struct{}{}:
	default:
	}
}

// loop pushes changes until ctx ends, backing off after failures (the
// server down, busy, refusing the bind) from the publish interval up to a
// minute. An entry the server refuses for itself is no failure of the
// batch (entryRefusals).
func (t *target) loop(ctx context.Context) {
	defer t.release()
	wait := t.s.cfg.PublishInterval
	for {
		n, err := t.pushOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errLeaseLost):
			t.close()
			t.s.env.Logger.Info("directory: external publisher: another process took over", "target", t.cfg.Name, "error", err)
			wait = t.s.cfg.PublishInterval
		case err != nil:
			t.close()
			t.s.env.Logger.Warn("directory: external publisher", "target", t.cfg.Name, "error", err, "retry_in", wait)
			t.recordError(ctx, err)
			wait = min(wait*2, maxBackoff)
		case n > 0:
			wait = t.s.cfg.PublishInterval
			continue
		default:
			wait = t.s.cfg.PublishInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-t.poked:
		case <-time.After(wait):
		}
	}
}

// release closes the connection and gives the lease up, so that another
// process (this node restarted, say) takes over at once rather than when
// the lease runs out.
func (t *target) release() {
	t.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE dir_targets SET lease_owner = '', lease_until = '' WHERE name = ? AND lease_owner = ?", t.cfg.Name, t.s.owner)
		return err
	})
}

func (t *target) close() {
	if t.conn != nil {
		_ = t.conn.Close()
		t.conn = nil
	}
}

func (t *target) recordError(ctx context.Context, err error) {
	_ = t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		_, e := tx.Exec(ctx, "UPDATE dir_targets SET last_error = ?, updated_at = ? WHERE name = ? AND lease_owner = ?",
			truncate(err.Error(), 500), t.s.env.Clock.Now().UTC().Format(timeFormat), t.cfg.Name, t.s.owner)
		return e
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// lease takes or renews this process's lease on the target and returns its
// cursor; ok is false while another process holds it.
func (t *target) lease(ctx context.Context) (cursor int64, ok bool, err error) {
	start := time.Now()
	now := t.s.env.Clock.Now().UTC()
	err = t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO dir_targets (name) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM dir_targets WHERE name = ?)", t.cfg.Name, t.cfg.Name); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, "UPDATE dir_targets SET lease_owner = ?, lease_until = ? WHERE name = ? AND (lease_owner = ? OR lease_owner = '' OR lease_until < ?)",
			t.s.owner, now.Add(t.leaseTTL).Format(timeFormat), t.cfg.Name, t.s.owner, now.Format(timeFormat))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		ok = true
		return tx.QueryRow(ctx, "SELECT cursor FROM dir_targets WHERE name = ?", t.cfg.Name).Scan(&cursor)
	})
	if ok && err == nil {
		t.renewed = start
	}
	return cursor, ok, err
}

// keepLease renews the lease once a sixth of it has passed since it was
// last taken or renewed, and returns errLeaseLost when another process
// holds it now: whoever takes a lease becomes its owner, so while this
// process is still the owner nobody else pushed since.
func (t *target) keepLease(ctx context.Context) error {
	start := time.Now()
	if start.Sub(t.renewed) < t.leaseTTL/6 {
		return nil
	}
	var n int64
	err := t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE dir_targets SET lease_until = ? WHERE name = ? AND lease_owner = ?",
			t.s.env.Clock.Now().UTC().Add(t.leaseTTL).Format(timeFormat), t.cfg.Name, t.s.owner)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("renew lease: %w", err)
	case n != 1:
		return errLeaseLost
	}
	t.renewed = start
	return nil
}

// pushOnce tries the refused entries again when their time has come, then
// pushes the next batch of changes, and returns how many changes it
// consumed.
func (t *target) pushOnce(ctx context.Context) (int, error) {
	cursor, ok, err := t.lease(ctx)
	if err != nil || !ok {
		return 0, err
	}
	t.retryRefused(ctx)
	type change struct {
		id   int64
		norm string
	}
	var changes []change
	if err := t.s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, "SELECT id, dn_norm FROM dir_changes WHERE id > ? ORDER BY id LIMIT 200", cursor)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c change
			if err := rows.Scan(&c.id, &c.norm); err != nil {
				return err
			}
			changes = append(changes, c)
		}
		return rows.Err()
	}); err != nil {
		return 0, fmt.Errorf("read changes: %w", err)
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if err := t.connect(); err != nil {
		return 0, err
	}
	var norms []string
	lastChange := map[string]int64{}
	for _, c := range changes {
		if _, ok := lastChange[c.norm]; !ok {
			norms = append(norms, c.norm)
		}
		lastChange[c.norm] = c.id
	}
	pushed, refused, err := t.pushAll(ctx, norms)
	if err != nil {
		return 0, err
	}
	last := changes[len(changes)-1].id
	now := t.s.env.Clock.Now().UTC().Format(timeFormat)
	err = t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE dir_targets SET cursor = ?, last_error = '', updated_at = ? WHERE name = ? AND lease_owner = ? AND cursor = ?",
			last, now, t.cfg.Name, t.s.owner, cursor)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(err, sql.ErrNoRows)
		}
		if err := t.forgetRefused(ctx, tx, pushed); err != nil {
			return err
		}
		for _, r := range refused {
			if _, err := tx.Exec(ctx, `INSERT INTO dir_refused (target, dn_norm, dn, change_id, code, message, refused_at) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (target, dn_norm) DO UPDATE SET dn = excluded.dn, change_id = excluded.change_id, code = excluded.code,
				message = excluded.message, refused_at = excluded.refused_at`,
				t.cfg.Name, r.norm, r.dn, lastChange[r.norm], int(r.code), truncate(r.message, 500), now); err != nil {
				return err
			}
			if _, err := t.s.env.Audit.Append(ctx, tx, audit.Record{Actor: "system", Action: "directory.external.refused", Object: "ldap/" + r.dn,
				Outcome: audit.Failure, Details: map[string]any{"target": t.cfg.Name, "change": lastChange[r.norm], "code": r.code,
					"result": ldap.LDAPResultCodeMap[r.code], "message": truncate(r.message, 500)}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("advance cursor: %w", err)
	}
	for _, r := range refused {
		t.s.env.Logger.Error("ALERT: external LDAP server refused an entry; it is skipped and the rest of the queue goes on",
			"target", t.cfg.Name, "dn", r.dn, "code", r.code, "result", ldap.LDAPResultCodeMap[r.code], "error", r.message,
			"retry", "when the entry changes, at the next start, and every "+refusedRetryInterval.String())
	}
	return len(changes), nil
}

// refusal is an entry the target refused for itself (entryRefusals).
type refusal struct {
	norm, dn string
	code     uint16
	message  string
}

// entryRefusals are the LDAP results by which a server refuses one entry
// for what it is (its schema, constraints or naming, RFC 4511 Appendix A):
// the same write would be refused again however often it is tried, so the
// entry is recorded as refused and the queue goes on. Every other result
// (the server down, busy or unavailable, a timeout, insufficient access,
// unwillingToPerform) concerns the server as a whole: the queue waits and
// tries again in order.
var entryRefusals = map[uint16]bool{
	ldap.LDAPResultNoSuchAttribute:           true, // 16
	ldap.LDAPResultUndefinedAttributeType:    true, // 17
	ldap.LDAPResultInappropriateMatching:     true, // 18
	ldap.LDAPResultConstraintViolation:       true, // 19
	ldap.LDAPResultAttributeOrValueExists:    true, // 20
	ldap.LDAPResultInvalidAttributeSyntax:    true, // 21
	ldap.LDAPResultInvalidDNSyntax:           true, // 34
	ldap.LDAPResultNamingViolation:           true, // 64
	ldap.LDAPResultObjectClassViolation:      true, // 65
	ldap.LDAPResultNotAllowedOnNonLeaf:       true, // 66: children the target has and govtrust does not
	ldap.LDAPResultNotAllowedOnRDN:           true, // 67
	ldap.LDAPResultEntryAlreadyExists:        true, // 68: after a second look (push)
	ldap.LDAPResultObjectClassModsProhibited: true, // 69
	ldap.LDAPResultAffectsMultipleDSAs:       true, // 71
}

// parentMissing is an add refused with noSuchObject: the entry's parent is
// missing on the target.
type parentMissing struct{ err error }

func (e parentMissing) Error() string { return e.err.Error() }
func (e parentMissing) Unwrap() error { return e.err }

// pushAll writes the current state of the entries norms: first those that
// exist, parents (shorter DNs) first so that adds find their parent, then
// the deleted ones, children first, since a server refuses to delete an
// entry that still has children (RFC 4511 §4.8, notAllowedOnNonLeaf). It
// returns the entries written and those the target refused (an add below
// a refused parent is refused with it); any other failure stops it.
func (t *target) pushAll(ctx context.Context, norms []string) (pushed []string, refused []refusal, err error) {
	norms = slices.Clone(norms)
	depth := func(n string) int { return strings.Count(n, ",") }
	slices.SortStableFunc(norms, func(a, b string) int { return depth(a) - depth(b) })
	isRefused := map[string]bool{}
	one := func(n string, e *Entry) error {
		if err := t.keepLease(ctx); err != nil {
			return err
		}
		if testBeforePush != nil {
			testBeforePush(t.s, n)
		}
		err := t.push(n, e)
		if err == nil {
			pushed = append(pushed, n)
			return nil
		}
		code, ok, msg := uint16(0), false, err.Error()
		var le *ldap.Error
		if errors.As(err, &le) {
			code, ok = le.ResultCode, entryRefusals[le.ResultCode]
		}
		if np := (parentMissing{}); !ok && errors.As(err, &np) {
			// A parent refused (in this batch or before) takes its
			// children with it; a parent simply missing (the target's
			// base DN, say) is the server's problem: the queue waits.
			ok = isRefused[e.parent]
			if !ok {
				var rerr error
				if ok, rerr = t.isRefused(ctx, e.parent); rerr != nil {
					return rerr
				}
			}
			msg = "its parent " + t.mapDN(e.parent) + " was refused; " + strings.TrimSpace(msg)
		}
		if !ok {
			return fmt.Errorf("push %s: %w", n, err)
		}
		isRefused[n] = true
		dn := t.mapDN(t.dnOfDeleted(n))
		if e != nil {
			dn = t.mapDN(e.DN)
		}
		refused = append(refused, refusal{norm: n, dn: dn, code: code, message: msg})
		return nil
	}
	var deleted []string
	for _, n := range norms {
		e, err := t.read(ctx, n)
		if err != nil {
			return nil, nil, err
		}
		if e == nil {
			deleted = append(deleted, n)
			continue
		}
		if err := one(n, e); err != nil {
			return nil, nil, err
		}
	}
	slices.SortStableFunc(deleted, func(a, b string) int { return depth(b) - depth(a) })
	for _, n := range deleted {
		// Read again: an entry deleted and added back since is written
		// rather than deleted (its parent exists, it was written above).
		e, err := t.read(ctx, n)
		if err != nil {
			return nil, nil, err
		}
		if err := one(n, e); err != nil {
			return nil, nil, err
		}
	}
	return pushed, refused, nil
}

// isRefused reports whether the target refused the entry norm and it has
// not been written there since.
func (t *target) isRefused(ctx context.Context, norm string) (bool, error) {
	var n int
	err := t.s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT COUNT(*) FROM dir_refused WHERE target = ? AND dn_norm = ?", t.cfg.Name, norm).Scan(&n)
	})
	return n > 0, err
}

// forgetRefused removes the entries written from the refused ones.
func (t *target) forgetRefused(ctx context.Context, tx *store.Tx, pushed []string) error {
	for _, n := range pushed {
		if _, err := tx.Exec(ctx, "DELETE FROM dir_refused WHERE target = ? AND dn_norm = ?", t.cfg.Name, n); err != nil {
			return err
		}
	}
	return nil
}

// refusedRetryInterval is how often the entries a target refused are
// tried again (besides when they change and when the process starts): a
// server's schema or data fixed by its operator then gets them without
// anyone's intervention.
const refusedRetryInterval = 10 * time.Minute

// retryRefused pushes the refused entries again once their time has come
// (at the first batch of the process, then every refusedRetryInterval):
// those written leave dir_refused, those refused again stay (with the
// new answer, without a new alert). A failure of another kind (the server
// down, a refused entry's parent gone from the server) is logged and the
// retry is tried again a minute later: it never holds up the queue.
func (t *target) retryRefused(ctx context.Context) {
	if time.Now().Before(t.retryAt) {
		return
	}
	if err := t.retryRefusedNow(ctx); err != nil {
		t.close()
		t.s.env.Logger.Warn("directory: external publisher: retry of refused entries", "target", t.cfg.Name, "error", err, "retry_in", maxBackoff)
		t.retryAt = time.Now().Add(maxBackoff)
		return
	}
	t.retryAt = time.Now().Add(refusedRetryInterval)
}

func (t *target) retryRefusedNow(ctx context.Context) error {
	var norms []string
	if err := t.s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, "SELECT dn_norm FROM dir_refused WHERE target = ? ORDER BY dn_norm", t.cfg.Name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			norms = append(norms, n)
		}
		return rows.Err()
	}); err != nil {
		return fmt.Errorf("read refused entries: %w", err)
	}
	if len(norms) > 0 {
		if err := t.connect(); err != nil {
			return err
		}
		pushed, refused, err := t.pushAll(ctx, norms)
		if err != nil {
			return err
		}
		now := t.s.env.Clock.Now().UTC().Format(timeFormat)
		if err := t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			// Only while this process still holds the lease.
			res, err := tx.Exec(ctx, "UPDATE dir_targets SET updated_at = ? WHERE name = ? AND lease_owner = ?", now, t.cfg.Name, t.s.owner)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return errors.Join(err, sql.ErrNoRows)
			}
			if err := t.forgetRefused(ctx, tx, pushed); err != nil {
				return err
			}
			for _, r := range refused {
				if _, err := tx.Exec(ctx, "UPDATE dir_refused SET code = ?, message = ?, refused_at = ? WHERE target = ? AND dn_norm = ?",
					int(r.code), truncate(r.message, 500), now, t.cfg.Name, r.norm); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("record retried entries: %w", err)
		}
		if len(pushed) > 0 {
			t.s.env.Logger.Info("directory: external publisher wrote refused entries on retry", "target", t.cfg.Name, "written", len(pushed), "still_refused", len(refused))
		}
		for _, r := range refused {
			t.s.env.Logger.Warn("directory: external LDAP server still refuses an entry", "target", t.cfg.Name, "dn", r.dn, "code", r.code, "error", r.message)
		}
	}
	return nil
}

// ExternalTarget is the state of an external LDAP server's queue, as
// GET /api/v1/directory/external shows it.
type ExternalTarget struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// OK is false while the last attempt failed (LastError: the queue
	// waits and is retried in order) or while entries are refused.
	OK bool `json:"ok"`
	// Cursor is the last change written there; Pending counts the
	// changes after it.
	Cursor    int64  `json:"cursor"`
	Pending   int64  `json:"pending"`
	LastError string `json:"last_error,omitempty"`
	UpdatedAt string `json:"updated_at,omitempty"`
	// Refused are the entries the server refused for what they are,
	// skipped until they are written (RefusedEntry).
	Refused []RefusedEntry `json:"refused"`
}

// RefusedEntry is an entry an external server refused: its DN there, the
// LDAP result and the server's message, the change refused and when.
type RefusedEntry struct {
	DN        string `json:"dn"`
	Code      int    `json:"code"`
	Result    string `json:"result"`
	Message   string `json:"message"`
	Change    int64  `json:"change"`
	RefusedAt string `json:"refused_at"`
}

// ExternalStatus returns the state of every configured external server.
func (s *Service) ExternalStatus(ctx context.Context) ([]ExternalTarget, error) {
	out := []ExternalTarget{}
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		out = out[:0]
		for _, c := range s.cfg.External {
			st := ExternalTarget{Name: c.Name, URL: c.URL, Refused: []RefusedEntry{}}
			err := q.QueryRow(ctx, "SELECT cursor, last_error, updated_at FROM dir_targets WHERE name = ?", c.Name).Scan(&st.Cursor, &st.LastError, &st.UpdatedAt)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if err := q.QueryRow(ctx, "SELECT COUNT(*) FROM dir_changes WHERE id > ?", st.Cursor).Scan(&st.Pending); err != nil {
				return err
			}
			rows, err := q.Query(ctx, "SELECT dn, code, message, change_id, refused_at FROM dir_refused WHERE target = ? ORDER BY change_id, dn_norm", c.Name)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r RefusedEntry
				if err := rows.Scan(&r.DN, &r.Code, &r.Message, &r.Change, &r.RefusedAt); err != nil {
					rows.Close()
					return err
				}
				r.Result = ldap.LDAPResultCodeMap[uint16(r.Code)]
				st.Refused = append(st.Refused, r)
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return err
			}
			st.OK = st.LastError == "" && len(st.Refused) == 0
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory: external targets: %w", err)
	}
	return out, nil
}

func (s *Service) handleExternal(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.ExternalStatus(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"targets": ts})
}

var _ node.MetricsProvider = (*Service)(nil)

// Collectors implements node.MetricsProvider: per external server, the
// entries it refused (an alert: any is an entry missing there) and the
// changes not yet written (a queue that only grows is a server that
// stopped taking them), read from the database when scraped.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{externalCollector{s}}
}

var (
	refusedDesc = prometheus.NewDesc("govtrust_directory_external_refused_entries",
		"Entries an external LDAP server refused (schema, constraint, naming) and that are not there; see GET /api/v1/directory/external.", []string{"target"}, nil)
	pendingDesc = prometheus.NewDesc("govtrust_directory_external_pending_changes",
		"Directory changes not yet written to an external LDAP server.", []string{"target"}, nil)
)

type externalCollector struct{ s *Service }

func (c externalCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- refusedDesc
	ch <- pendingDesc
}

func (c externalCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.env == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ts, err := c.s.ExternalStatus(ctx)
	if err != nil {
		c.s.env.Logger.Warn("directory: metrics", "error", err)
		return
	}
	for _, t := range ts {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.GaugeValue, float64(len(t.Refused)), t.Name)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(t.Pending), t.Name)
	}
}

// read returns the stored entry norm, nil when it was deleted.
func (t *target) read(ctx context.Context, norm string) (*Entry, error) {
	var e *Entry
	err := t.s.env.DB.Read(ctx, func(q store.Querier) error {
		var err error
		e, err = readEntry(ctx, q, norm)
		return err
	})
	return e, err
}

func (t *target) connect() error {
	if t.conn != nil {
		return nil
	}
	var opts []ldap.DialOpt
	if t.tls != nil {
		opts = append(opts, ldap.DialWithTLSConfig(t.tls))
	}
	// Every operation ends within a third of the lease (externalLeaseTTL).
	timeout := t.leaseTTL / 3
	opts = append(opts, ldap.DialWithDialer(&net.Dialer{Timeout: timeout}))
	c, err := ldap.DialURL(t.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", t.cfg.URL, err)
	}
	c.SetTimeout(timeout)
	if t.cfg.StartTLS {
		cfg := t.tls
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			c.Close()
			return fmt.Errorf("StartTLS %s: %w", t.cfg.URL, err)
		}
	}
	if t.cfg.BindDN != "" {
		pw, err := t.cfg.Password.Resolve()
		if err != nil {
			c.Close()
			return fmt.Errorf("password: %w", err)
		}
		if err := c.Bind(t.cfg.BindDN, string(pw)); err != nil {
			c.Close()
			return fmt.Errorf("bind %s: %w", t.cfg.BindDN, err)
		}
	}
	t.conn = c
	return nil
}

// mapDN moves a DN from the directory's base to the target's.
func (t *target) mapDN(dn string) string {
	if t.cfg.BaseDN == "" {
		return dn
	}
	base := t.s.baseDN
	if len(dn) >= len(base) && strings.EqualFold(dn[len(dn)-len(base):], base) {
		return dn[:len(dn)-len(base)] + t.cfg.BaseDN
	}
	return dn
}

// push makes the target's entry norm equal e (nil: absent). The base entry
// belongs to the target's operator and is never written.
func (t *target) push(norm string, e *Entry) error { return t.pushEntry(norm, e, false) }

// pushEntry is push; again is set on its second look at the entry.
func (t *target) pushEntry(norm string, e *Entry, again bool) error {
	if norm == t.s.base {
		return nil
	}
	if e == nil {
		dn := t.mapDN(t.dnOfDeleted(norm))
		err := t.conn.Del(ldap.NewDelRequest(dn, nil))
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return err
		}
		return nil
	}
	dn := t.mapDN(e.DN)
	attrs := t.attributes(e)
	// What the target has now (types only: small answers, see
	// ber.MaxPacketLengthBytes in Start).
	res, err := t.conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 10, true, "(objectClass=*)", nil, nil))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		add := ldap.NewAddRequest(dn, nil)
		for _, name := range sortedKeys(attrs) {
			add.Attribute(wireName(name), attrs[name])
		}
		err := t.conn.Add(add)
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			return parentMissing{err}
		case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) && !again:
			// Written by someone else since the search: look again.
			return t.pushEntry(norm, e, true)
		}
		return err
	case err != nil:
		return err
	}
	mod := ldap.NewModifyRequest(dn, nil)
	have := map[string]bool{}
	if len(res.Entries) == 1 {
		for _, a := range res.Entries[0].Attributes {
			have[schemaName(a.Name)] = true
		}
	}
	for _, name := range sortedKeys(attrs) {
		mod.Replace(wireName(name), attrs[name])
	}
	for name := range have {
		if _, ok := attrs[name]; !ok && t.attrs[name] {
			mod.Delete(wireName(name), nil)
		}
	}
	return t.conn.Modify(mod)
}

// dnOfDeleted rebuilds a DN from its normalised form (the entry is gone).
func (t *target) dnOfDeleted(norm string) string { return norm }

// attributes returns what the target gets of e: the configured attributes,
// with the object classes of its kind replaced when configured.
func (t *target) attributes(e *Entry) map[string][]string {
	out := map[string][]string{}
	for name, vals := range e.Attrs {
		if !t.attrs[name] || len(vals) == 0 {
			continue
		}
		ss := make([]string, len(vals))
		for i, v := range vals {
			ss[i] = string(v)
		}
		out[name] = ss
	}
	if ocs, ok := t.cfg.ObjectClasses[e.Kind]; ok {
		out["objectClass"] = slices.Clone(ocs)
	}
	return out
}

func sortedKeys(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
