package directory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// publishBatch is how many outbox events one transaction consumes.
const publishBatch = 200

// expirySweep is how often the publisher removes the entries of
// certificates past their notAfter.
const expirySweep = 10 * time.Minute

// maxBackoff bounds the wait between failed attempts.
const maxBackoff = time.Minute

// publishLoop consumes the CA's outbox into the directory: at every
// interval (or Wake), until the outbox is empty; after a failure it waits
// twice as long each time, up to a minute. It also reloads the tree when
// another process changed the directory.
func (s *Service) publishLoop(ctx context.Context) {
	wait := s.cfg.PublishInterval
	var lastSweep time.Time
	for {
		err := s.resync(ctx)
		if err == nil && s.src != nil {
			var n int
			for n, err = s.PublishOnce(ctx); err == nil && n == publishBatch; n, err = s.PublishOnce(ctx) {
			}
		}
		if err == nil && s.env.Clock.Now().Sub(lastSweep) >= expirySweep {
			if _, err = s.SweepExpired(ctx); err == nil {
				lastSweep = s.env.Clock.Now()
			}
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			msg := err.Error()
			s.pubErr.Store(&msg)
			s.env.Logger.Warn("directory publisher", "error", err, "retry_in", wait)
			wait = min(wait*2, maxBackoff)
		default:
			s.pubErr.Store(nil)
			wait = s.cfg.PublishInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(wait):
		}
	}
}

// PublishOnce consumes up to publishBatch outbox events in one transaction
// with the directory writes they cause, and returns how many it consumed.
// Two processes on one database cannot both take an event: the writers
// serialise on dir_meta and an event is taken only while unmarked.
func (s *Service) PublishOnce(ctx context.Context) (int, error) {
	var pending []Event
	if err := s.env.DB.Read(ctx, func(q store.Querier) error {
		var err error
		pending, err = s.src.Pending(ctx, q, 1)
		return err
	}); err != nil {
		return 0, fmt.Errorf("directory: outbox: %w", err)
	}
	if len(pending) == 0 {
		return 0, nil
	}
	var n int
	err := s.write(audit.WithActor(ctx, "system"), audit.Record{}, func(b *batch) error {
		events, err := s.src.Pending(ctx, b.tx, publishBatch)
		if err != nil {
			return err
		}
		ids := make([]int64, 0, len(events))
		for _, ev := range events {
			if err := s.apply(ctx, b, ev); err != nil {
				return fmt.Errorf("event %d (%s %s/%s): %w", ev.ID, ev.Kind, ev.Issuer, ev.Serial, err)
			}
			ids = append(ids, ev.ID)
		}
		n = len(ids)
		return s.src.MarkPublished(ctx, b.tx, ids, b.now)
	})
	if err != nil {
		return 0, fmt.Errorf("directory: publish: %w", err)
	}
	s.Published.Add(int64(n))
	return n, nil
}

// apply makes the directory show what ev announced. Every case reads the
// CA's current state rather than trusting the event alone, so replaying or
// reordering events converges on the same entries.
func (s *Service) apply(ctx context.Context, b *batch, ev Event) error {
	switch ev.Kind {
	case EventCAAdded, EventCRLPublished, EventCrossAdded:
		return s.putCA(ctx, b, ev.Issuer)
	case EventIssued, EventRevoked:
		c, err := s.src.Certificate(ctx, b.tx, ev.Issuer, ev.Serial)
		if err != nil {
			return err
		}
		if c == nil {
			return nil
		}
		if c.Revoked {
			return s.removeCert(ctx, b, ev.Issuer, ev.Serial, c.DER)
		}
		return s.putCert(ctx, b, ev.Issuer, ev.Serial, c.DER, c.RequesterOrg)
	}
	// An event kind this version does not know is consumed without effect
	// rather than blocking the queue; the log says so.
	s.env.Logger.Warn("directory: unknown outbox event", "id", ev.ID, "event", ev.Kind)
	return nil
}

// CADN returns the DN of the CA id's entry.
func (s *Service) CADN(id string) string { return rdn("cn", id) + ",ou=ca," + s.baseDN }

// CertDN returns the DN of the entry of certificate issuer/serial.
func (s *Service) CertDN(issuer, serial string) string {
	return rdn("uid", strings.ToLower(serial)) + "," + s.CADN(issuer)
}

// putCA writes the entry of CA id: RFC 4523 pkiCA with the certificate and
// the newest CRLs. The full CRL is both the certificateRevocationList and
// the authorityRevocationList: it is complete (no onlyContainsUserCerts or
// onlyContainsCACerts, RFC 5280 §5.2.5), so it covers CA certificates too.
func (s *Service) putCA(ctx context.Context, b *batch, id string) error {
	a, err := s.src.Authority(ctx, b.tx, id)
	if err != nil {
		return err
	}
	if a == nil {
		return nil
	}
	ocs := []string{"top", "applicationProcess", "certificationAuthority", "pkiCA"}
	if a.DeltaCRL != nil {
		ocs = append(ocs, "deltaCRL")
	}
	e, err := newEntry(s.CADN(id), KindCA, ocs...)
	if err != nil {
		return err
	}
	e.setStr("cn", id)
	if c, err := smx509.ParseCertificate(a.Cert); err == nil {
		e.setStr("description", c.Subject.String())
	}
	e.set("cACertificate", a.Cert)
	if a.CRL != nil {
		e.set("certificateRevocationList", a.CRL)
		e.set("authorityRevocationList", a.CRL)
	}
	if a.DeltaCRL != nil {
		e.set("deltaRevocationList", a.DeltaCRL)
	}
	if len(a.Cross) > 0 {
		pairs := make([][]byte, 0, len(a.Cross))
		for _, c := range a.Cross {
			p, err := CertificatePair(c, nil)
			if err != nil {
				return fmt.Errorf("CA %s: %w", id, err)
			}
			pairs = append(pairs, p)
		}
		e.set("crossCertificatePair", pairs...)
	}
	if old, err := b.get(ctx, e.norm); err != nil {
		return err
	} else if old != nil && sameAttrs(old, e) {
		return nil
	}
	return b.put(ctx, e)
}

func sameAttrs(a, b *Entry) bool {
	if len(a.Attrs) != len(b.Attrs) || a.Kind != b.Kind {
		return false
	}
	for k, va := range a.Attrs {
		vb := b.Attrs[k]
		if !slices.EqualFunc(va, vb, bytes.Equal) {
			return false
		}
	}
	return true
}

// oidUID is the userid attribute type in a certificate subject (RFC 4519
// §2.39).
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// holders returns the person and application entries a certificate
// belongs to: those whose mail is one of its e-mail addresses, or whose
// uid is the uid of its subject, and, unless anyOrg, that belong to org
// (inOrg). A certificate names a mailbox or a uid because its
// requester said so (an RA officer's registration record, an application's
// own request), and a requester speaks only for its own organisation: a
// certificate requested in one department is never filed as the
// certificate of a person or application of another, whatever address it
// carries. Removal does not use it: a certificate leaves every entry that
// holds it (certHolders), whatever their mail or uid says by then.
func (s *Service) holders(der []byte, org string) []string {
	if org == "" {
		return nil
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	var out []string
	add := func(ns []string) {
		for _, n := range ns {
			e := s.tree.get(n)
			if e == nil || !holderKind(e.Kind) || slices.Contains(out, n) {
				continue
			}
			if !s.inOrg(e, org) {
				s.env.Logger.Warn("directory: certificate not filed under an entry of another organisation",
					"entry", e.DN, "requester_org", org, "subject", c.Subject.String())
				continue
			}
			out = append(out, n)
		}
	}
	for _, m := range c.EmailAddresses {
		add(s.tree.findBy("mail", m))
	}
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidUID) {
			if v, ok := n.Value.(string); ok {
				add(s.tree.findBy("uid", v))
			}
		}
	}
	return out
}

// maxDepartmentDepth bounds the walk up the department tree (seeAlso
// links written by an administrator could form a loop).
const maxDepartmentDepth = 32

// inOrg reports whether entry e (a person or an application, placed
// below its department, ou=<code>,ou=departments,<base>) belongs to the
// organisation org: an account's organisation is a department code, and
// it covers that department and the departments below it (seeAlso names
// a department's parent).
func (s *Service) inOrg(e *Entry, org string) bool {
	want, _, err := normalizeDN(s.DepartmentDN(org))
	if err != nil {
		return false
	}
	dept := e.parent
	for range maxDepartmentDepth {
		if dept == want {
			return true
		}
		d := s.tree.get(dept)
		if d == nil || d.Kind != KindDepartment {
			return false
		}
		up := d.First("seeAlso")
		if up == "" {
			return false
		}
		if dept, _, err = normalizeDN(up); err != nil {
			return false
		}
	}
	return false
}

// putCert writes the certificate's own entry below its CA and adds it to
// the userCertificate of its holders in org, the requester's organisation.
func (s *Service) putCert(ctx context.Context, b *batch, issuer, serial string, der []byte, org string) error {
	caNorm, _, _ := normalizeDN(s.CADN(issuer))
	if ca, err := b.get(ctx, caNorm); err != nil {
		return err
	} else if ca == nil {
		if err := s.putCA(ctx, b, issuer); err != nil {
			return err
		}
	}
	e, err := newEntry(s.CertDN(issuer, serial), KindCertificate, "top", "applicationProcess", "uidObject", "pkiUser")
	if err != nil {
		return err
	}
	cn := serial
	if c, err := smx509.ParseCertificate(der); err == nil {
		if c.Subject.CommonName != "" {
			cn = c.Subject.CommonName
		}
		e.setStr("description", c.Subject.String())
	}
	e.setStr("cn", cn)
	e.setStr("uid", strings.ToLower(serial))
	e.set("userCertificate", der)
	if err := b.put(ctx, e); err != nil {
		return err
	}
	for _, n := range s.holders(der, org) {
		h, err := b.get(ctx, n)
		if err != nil || h == nil {
			if err != nil {
				return err
			}
			continue
		}
		if slices.ContainsFunc(h.Attrs["userCertificate"], func(v []byte) bool { return bytes.Equal(v, der) }) {
			continue
		}
		h.Attrs["userCertificate"] = append(h.Attrs["userCertificate"], der)
		if !slices.ContainsFunc(h.Attrs["objectClass"], func(v []byte) bool { return strings.EqualFold(string(v), "pkiUser") }) {
			h.Attrs["objectClass"] = append(h.Attrs["objectClass"], []byte("pkiUser"))
		}
		if err := b.put(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// SweepExpired removes the entries of certificates whose notAfter has
// passed, and their values from the holders' entries: the directory lists
// current certificates (issue #6), and an expiry leaves no outbox event. It
// returns how many it removed; the publisher runs it every expirySweep.
func (s *Service) SweepExpired(ctx context.Context) (int, error) {
	type ref struct {
		issuer, serial string
		der            []byte
	}
	now := s.env.Clock.Now()
	var expired []ref
	s.tree.mu.RLock()
	for _, e := range s.tree.entries {
		if e.Kind != KindCertificate {
			continue
		}
		der := e.Get("userCertificate")
		if len(der) == 0 {
			continue
		}
		c, err := smx509.ParseCertificate(der[0])
		if err != nil || !now.After(c.NotAfter) {
			continue
		}
		// The parent is cn=<ca>,ou=ca,<base>.
		issuer, _, _ := strings.Cut(strings.TrimPrefix(e.parent, "cn="), ",")
		expired = append(expired, ref{issuer: issuer, serial: e.First("uid"), der: der[0]})
	}
	s.tree.mu.RUnlock()
	if len(expired) == 0 {
		return 0, nil
	}
	err := s.write(audit.WithActor(ctx, "system"), audit.Record{}, func(b *batch) error {
		for _, r := range expired {
			if err := s.removeCert(ctx, b, r.issuer, r.serial, r.der); err != nil {
				return fmt.Errorf("expired certificate %s/%s: %w", r.issuer, r.serial, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("directory: sweep expired certificates: %w", err)
	}
	return len(expired), nil
}

// removeCert removes a revoked or expired certificate: its entry, and the
// value from every entry that holds it (the directory lists current
// certificates; the CRL says which were revoked).
func (s *Service) removeCert(ctx context.Context, b *batch, issuer, serial string, der []byte) error {
	norm, _, _ := normalizeDN(s.CertDN(issuer, serial))
	if err := b.remove(ctx, norm); err != nil {
		return err
	}
	ns, err := certHolders(ctx, b, der)
	if err != nil {
		return err
	}
	for _, n := range ns {
		h, err := b.get(ctx, n)
		if err != nil {
			return err
		}
		if h == nil || !holderKind(h.Kind) {
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(h.Attrs["userCertificate"]), func(v []byte) bool { return bytes.Equal(v, der) })
		if len(kept) == len(h.Attrs["userCertificate"]) {
			continue
		}
		h.set("userCertificate", kept...)
		if err := b.put(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// holderKind reports whether entries of kind list certificates in their
// userCertificate: persons and applications.
func holderKind(kind string) bool { return kind == KindPerson || kind == KindApplication }

// certHolders returns the entries that hold der in their userCertificate as
// the transaction of b sees them: the rows of dir_cert_holders, the reverse
// index written with every holder entry (indexHolders), and the entries b
// wrote itself (indexed only at its end). The holders are found by the
// certificate, not by their mail or uid, which may have changed since it was
// filed, and not from the in-memory tree, which may be behind the database
// when another process wrote. The caller checks each entry it gets.
func certHolders(ctx context.Context, b *batch, der []byte) ([]string, error) {
	sum := sha256.Sum256(der)
	rows, err := b.tx.Query(ctx, "SELECT holder_norm FROM dir_cert_holders WHERE cert_sha256 = ?", sum[:])
	if err != nil {
		return nil, fmt.Errorf("certificate holders: %w", err)
	}
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("certificate holders: %w", err)
		}
		out = append(out, n)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("certificate holders: %w", err)
	}
	for n, e := range b.upserts {
		if holderKind(e.Kind) && slices.ContainsFunc(e.Attrs["userCertificate"], func(v []byte) bool { return bytes.Equal(v, der) }) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// indexHolders brings dir_cert_holders in step with the entries b changed
// (write runs it at the end of every directory transaction, whoever wrote:
// the publisher, an import, an LDAP client): one row per certificate of
// each person or application entry, none for a deleted entry or one of
// another kind.
func indexHolders(ctx context.Context, b *batch) error {
	done := make(map[string]bool, len(b.order))
	for _, n := range b.order {
		if done[n] {
			continue
		}
		done[n] = true
		if _, err := b.tx.Exec(ctx, "DELETE FROM dir_cert_holders WHERE holder_norm = ?", n); err != nil {
			return fmt.Errorf("certificate holders of %s: %w", n, err)
		}
		if e := b.upserts[n]; e != nil && holderKind(e.Kind) {
			if err := insertHolder(ctx, b.tx, n, e.Attrs["userCertificate"]); err != nil {
				return err
			}
		}
	}
	return nil
}

// insertHolder records that entry norm holds the certificates ders.
func insertHolder(ctx context.Context, tx *store.Tx, norm string, ders [][]byte) error {
	seen := make(map[[sha256.Size]byte]bool, len(ders))
	for _, der := range ders {
		sum := sha256.Sum256(der)
		if seen[sum] {
			continue
		}
		seen[sum] = true
		if _, err := tx.Exec(ctx, "INSERT INTO dir_cert_holders (cert_sha256, holder_norm) VALUES (?, ?)", sum[:], norm); err != nil {
			return fmt.Errorf("certificate holders of %s: %w", norm, err)
		}
	}
	return nil
}

// indexExisting fills dir_cert_holders from the stored entries once, at the
// first start after migration 00002 (holders_indexed), and takes out of
// persons and applications the certificates earlier versions failed to
// remove: issued by one of the directory's CAs, yet without a certificate
// entry any more, because they were revoked or expired after the holder's
// mail or uid had changed. Another process doing the same waits on the
// directory's write lock and then finds the work done.
func (s *Service) indexExisting(ctx context.Context) error {
	var done int
	if err := s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT holders_indexed FROM dir_meta WHERE id = 1").Scan(&done)
	}); err != nil {
		return fmt.Errorf("directory: certificate holders: %w", err)
	}
	if done != 0 {
		return nil
	}
	var stale int
	err := s.write(audit.WithActor(ctx, "system"), audit.Record{}, func(b *batch) error {
		stale = 0
		if err := b.tx.QueryRow(ctx, "SELECT holders_indexed FROM dir_meta WHERE id = 1").Scan(&done); err != nil {
			return err
		}
		if done != 0 {
			return nil
		}
		// Rebuilt whole: rows a writer added meanwhile are written again.
		if _, err := b.tx.Exec(ctx, "DELETE FROM dir_cert_holders"); err != nil {
			return err
		}
		es, err := readKinds(ctx, b.tx, KindCA, KindCertificate, KindPerson, KindApplication)
		if err != nil {
			return err
		}
		issuers := map[string]bool{}
		current := map[[sha256.Size]byte]bool{}
		for _, e := range es {
			switch e.Kind {
			case KindCA:
				for _, v := range e.Attrs["cACertificate"] {
					if c, err := smx509.ParseCertificate(v); err == nil {
						issuers[string(c.RawSubject)] = true
					}
				}
			case KindCertificate:
				for _, v := range e.Attrs["userCertificate"] {
					current[sha256.Sum256(v)] = true
				}
			}
		}
		for _, e := range es {
			held := e.Attrs["userCertificate"]
			if !holderKind(e.Kind) || len(held) == 0 {
				continue
			}
			kept := slices.DeleteFunc(slices.Clone(held), func(v []byte) bool {
				if current[sha256.Sum256(v)] {
					return false
				}
				c, err := smx509.ParseCertificate(v)
				return err == nil && issuers[string(c.RawIssuer)]
			})
			if len(kept) == len(held) {
				if err := insertHolder(ctx, b.tx, e.norm, held); err != nil {
					return err
				}
				continue
			}
			// Written through the batch: logged for the external servers
			// and indexed at the end of the transaction.
			stale += len(held) - len(kept)
			e.set("userCertificate", kept...)
			if err := b.put(ctx, e); err != nil {
				return err
			}
		}
		_, err = b.tx.Exec(ctx, "UPDATE dir_meta SET holders_indexed = 1 WHERE id = 1")
		return err
	})
	if err != nil {
		return fmt.Errorf("directory: certificate holders: %w", err)
	}
	if stale > 0 {
		s.env.Logger.Warn("directory: removed certificates no longer current from their holders", "certificates", stale)
	}
	return nil
}

// readKinds reads the stored entries of the given kinds in q.
func readKinds(ctx context.Context, q store.Querier, kinds ...string) ([]*Entry, error) {
	args := make([]any, len(kinds))
	for i, k := range kinds {
		args[i] = k
	}
	rows, err := q.Query(ctx, "SELECT dn_norm, dn, parent_norm, kind, attrs FROM dir_entries WHERE kind IN (?"+strings.Repeat(", ?", len(kinds)-1)+")", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var es []*Entry
	for rows.Next() {
		e := &Entry{}
		var raw []byte
		if err := rows.Scan(&e.norm, &e.DN, &e.parent, &e.Kind, &raw); err != nil {
			return nil, err
		}
		if e.Attrs, err = decodeAttrs(raw); err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.DN, err)
		}
		es = append(es, e)
	}
	return es, rows.Err()
}
