package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/store"
)

// leaseTTL is how long a process may push to a target before another may
// take over (it renews at every batch).
const leaseTTL = 30 * time.Second

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
}

func newTarget(c config.ExternalLDAPConfig, s *Service) (*target, error) {
	t := &target{cfg: c, s: s, poked: make(chan struct{}, 1), attrs: map[string]bool{}}
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
// server down, a schema refusal) from the publish interval up to a minute.
func (t *target) loop(ctx context.Context) {
	defer t.close()
	wait := t.s.cfg.PublishInterval
	for {
		n, err := t.pushOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
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
	now := t.s.env.Clock.Now().UTC()
	err = t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO dir_targets (name) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM dir_targets WHERE name = ?)", t.cfg.Name, t.cfg.Name); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, "UPDATE dir_targets SET lease_owner = ?, lease_until = ? WHERE name = ? AND (lease_owner = ? OR lease_owner = '' OR lease_until < ?)",
			t.s.owner, now.Add(leaseTTL).Format(timeFormat), t.cfg.Name, t.s.owner, now.Format(timeFormat))
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
	return cursor, ok, err
}

// pushOnce pushes the next batch of changes and returns how many changes
// it consumed.
func (t *target) pushOnce(ctx context.Context) (int, error) {
	cursor, ok, err := t.lease(ctx)
	if err != nil || !ok {
		return 0, err
	}
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
	// The latest state of each entry is pushed once per batch: first the
	// entries that exist, parents (shorter DNs) first so that adds find
	// their parent, then the deleted ones, children first, since a server
	// refuses to delete an entry that still has children (RFC 4511 §4.8,
	// notAllowedOnNonLeaf).
	var norms []string
	for _, c := range changes {
		if !slices.Contains(norms, c.norm) {
			norms = append(norms, c.norm)
		}
	}
	depth := func(n string) int { return strings.Count(n, ",") }
	slices.SortStableFunc(norms, func(a, b string) int { return depth(a) - depth(b) })
	var deleted []string
	for _, n := range norms {
		e, err := t.read(ctx, n)
		if err != nil {
			return 0, err
		}
		if e == nil {
			deleted = append(deleted, n)
			continue
		}
		if err := t.push(n, e); err != nil {
			return 0, fmt.Errorf("push %s: %w", n, err)
		}
	}
	slices.SortStableFunc(deleted, func(a, b string) int { return depth(b) - depth(a) })
	for _, n := range deleted {
		// Read again: an entry deleted and added back since is written
		// rather than deleted (its parent exists, it was written above).
		e, err := t.read(ctx, n)
		if err != nil {
			return 0, err
		}
		if err := t.push(n, e); err != nil {
			return 0, fmt.Errorf("push %s: %w", n, err)
		}
	}
	last := changes[len(changes)-1].id
	err = t.s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE dir_targets SET cursor = ?, last_error = '', updated_at = ? WHERE name = ? AND lease_owner = ? AND cursor = ?",
			last, t.s.env.Clock.Now().UTC().Format(timeFormat), t.cfg.Name, t.s.owner, cursor)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(err, sql.ErrNoRows)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("advance cursor: %w", err)
	}
	return len(changes), nil
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
	c, err := ldap.DialURL(t.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", t.cfg.URL, err)
	}
	c.SetTimeout(10 * time.Second)
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
func (t *target) push(norm string, e *Entry) error {
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
		return t.conn.Add(add)
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
