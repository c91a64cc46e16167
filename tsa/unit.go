package tsa

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// keyUsePeriod is how long a unit's key signs tokens before a new unit
// takes over. The certificate (profile tsa) is valid for five years, so a
// token stays verifiable with a currently valid certificate for at least
// four years after it was made (RFC 3628 §7.2.5: the TSU key's usage period
// is shorter than its certificate's validity).
const keyUsePeriod = 365 * 24 * time.Hour

// rolloverMargin is the least time before its certificate's notAfter at
// which a unit is replaced: a token stays verifiable with a certificate
// valid at the time of verification (OpenSSL's ts -verify checks the chain
// then, not at genTime) for at least this long after it was made. The
// margin used is the larger of this and a tenth of the certificate's life,
// at most half of that life, so that a short certificate is used for half
// of it before being replaced (expiryMargin).
const rolloverMargin = 30 * 24 * time.Hour

// expiryMargin is the time before c's notAfter at which its unit is
// replaced (rolloverMargin).
func expiryMargin(c *smx509.Certificate) time.Duration {
	life := c.NotAfter.Sub(c.NotBefore)
	return min(max(rolloverMargin, life/10), life/2)
}

const timeFormat = time.RFC3339Nano

// unit is a time-stamping unit: a key and its certificate.
type unit struct {
	profile    string
	generation int
	keyURI     string
	cert       *smx509.Certificate
	// chain is the issuing CA's chain, CA first (DER).
	chain   [][]byte
	status  string
	created time.Time
	// signer and ca (the issuing CA's certificate, chain[0]) are set for
	// the active unit.
	signer *tsp.Signer
	ca     *smx509.Certificate
	// stuck is set once the TSA has logged that no CA can replace this
	// unit before its certificate ends (rollReason).
	stuck atomic.Bool
	// revoked says why the unit must not sign once its certificate or a
	// CA certificate of its chain was revoked (revocation.go).
	revoked atomic.Pointer[string]
}

// validAt reports whether t is within the unit certificate's validity: a
// token is never made outside it (it would not verify).
func (u *unit) validAt(t time.Time) error {
	if t.Before(u.cert.NotBefore) || t.After(u.cert.NotAfter) {
		return fmt.Errorf("tsa %s: the certificate of unit %d is valid from %s to %s, not at %s",
			u.profile, u.generation, u.cert.NotBefore.UTC().Format(time.RFC3339), u.cert.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// unitSet is what the handlers read: the active unit of each profile and
// every unit ever made, newest first. It is replaced, never changed.
type unitSet struct {
	active map[string]*unit
	all    map[string][]*unit
}

func joinChain(chain [][]byte) []byte { return bytes.Join(chain, nil) }

func splitChain(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		c, err := smx509.ParseCertificate(b[:certLen(b)])
		if err != nil {
			return nil, err
		}
		out = append(out, c.Raw)
		b = b[len(c.Raw):]
	}
	return out, nil
}

// certLen is the length of the DER element at the start of b (a SEQUENCE
// with a long-form length), or len(b) when it cannot tell.
func certLen(b []byte) int {
	if len(b) < 2 || b[0] != 0x30 {
		return len(b)
	}
	if b[1] < 0x80 {
		return min(len(b), 2+int(b[1]))
	}
	n := int(b[1] & 0x7f)
	if n == 0 || n > 3 || len(b) < 2+n {
		return len(b)
	}
	l := 0
	for _, o := range b[2 : 2+n] {
		l = l<<8 | int(o)
	}
	return min(len(b), 2+n+l)
}

// loadUnits reads the units, creating the first one of each profile, and
// rolls over those due; a failed rollover is logged, and the unit it
// would have replaced signs on while its certificate is valid (the loop
// tries again; /readyz says when it is not valid).
func (s *Service) loadUnits(ctx context.Context) error {
	set, err := s.readUnits(ctx)
	if err != nil {
		return err
	}
	for _, u := range set.active {
		if err := s.resolve(ctx, u); err != nil {
			return err
		}
	}
	s.units.Store(set)
	for _, sp := range specs {
		if set.active[sp.name] == nil {
			if _, err := s.Rollover(ctx, sp.name, "system"); err != nil {
				return err
			}
		}
	}
	if err := s.rollDue(ctx); err != nil {
		s.env.Logger.Error("tsa: rollover at start failed; the current unit keeps signing while its certificate is valid", "error", err)
	}
	return nil
}

// readUnits reads every unit recorded, newest first, without resolving
// their keys.
func (s *Service) readUnits(ctx context.Context) (*unitSet, error) {
	set := &unitSet{active: map[string]*unit{}, all: map[string][]*unit{}}
	rows, err := s.env.DB.Query(ctx, "SELECT profile, generation, key_uri, cert, chain, status, created_at FROM tsa_units ORDER BY profile, generation DESC")
	if err != nil {
		return nil, fmt.Errorf("tsa: load units: %w", err)
	}
	for rows.Next() {
		u := &unit{}
		var cert, chain []byte
		var created string
		if err := rows.Scan(&u.profile, &u.generation, &u.keyURI, &cert, &chain, &u.status, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("tsa: load units: %w", err)
		}
		if u.cert, err = smx509.ParseCertificate(cert); err != nil {
			rows.Close()
			return nil, fmt.Errorf("tsa: unit %s/%d certificate: %w", u.profile, u.generation, err)
		}
		if u.chain, err = splitChain(chain); err != nil {
			rows.Close()
			return nil, fmt.Errorf("tsa: unit %s/%d chain: %w", u.profile, u.generation, err)
		}
		u.created, _ = time.Parse(timeFormat, created)
		set.all[u.profile] = append(set.all[u.profile], u)
		if u.status == "active" {
			set.active[u.profile] = u
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tsa: load units: %w", err)
	}
	return set, nil
}

// reloadUnits takes over what other nodes sharing the database recorded:
// an active unit newer than this process's (another node's rollover)
// replaces it, and the list of units is the database's. Units this
// process already holds keep their objects (signer, revocation mark). A
// newer unit whose key does not resolve here leaves its profile's unit as
// it is and is reported; the other profiles are reloaded all the same.
func (s *Service) reloadUnits(ctx context.Context) error {
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	fresh, err := s.readUnits(ctx)
	if err != nil {
		return err
	}
	cur := s.units.Load()
	next := &unitSet{active: map[string]*unit{}, all: map[string][]*unit{}}
	changed := false
	var errs []error
	var taken []*unit
	for profile, list := range fresh.all {
		known := map[int]*unit{}
		for _, u := range cur.all[profile] {
			known[u.generation] = u
		}
		for _, u := range list {
			if k := known[u.generation]; k != nil {
				u = k
			} else {
				changed = true
			}
			next.all[profile] = append(next.all[profile], u)
		}
	}
	for profile, c := range cur.active {
		next.active[profile] = c
		a := fresh.active[profile]
		if a == nil || a.generation <= c.generation {
			continue
		}
		for _, u := range next.all[profile] {
			if u.generation == a.generation {
				a = u
			}
		}
		if a.signer == nil {
			if err := s.resolve(ctx, a); err != nil {
				// This profile keeps its unit; the others, and the
				// revocation checks, go on (the error is reported).
				errs = append(errs, err)
				continue
			}
		}
		next.active[profile] = a
		taken = append(taken, a)
		changed = true
		s.env.Logger.Info("tsa: unit made by another node taken over", "profile", profile, "generation", a.generation, "replaces", c.generation)
	}
	if changed {
		// A unit taken over is checked before it can sign (publish).
		errs = append(errs, s.publish(ctx, next, taken...))
	}
	return errors.Join(errs...)
}

// resolve makes the unit's signer from its key (once, at load or
// creation: hot paths hold a crypto.Signer, ARCHITECTURE.md §1).
func (s *Service) resolve(ctx context.Context, u *unit) error {
	key, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: u.keyURI, Service: keyService})
	if err != nil {
		return fmt.Errorf("tsa: unit %s/%d key %s: %w", u.profile, u.generation, u.keyURI, err)
	}
	var chain []*smx509.Certificate
	for _, der := range u.chain {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("tsa: unit %s/%d chain: %w", u.profile, u.generation, err)
		}
		chain = append(chain, c)
	}
	if u.signer, err = tsp.NewSigner(u.cert, chain, key); err != nil {
		return fmt.Errorf("tsa: unit %s/%d: %w", u.profile, u.generation, err)
	}
	if len(chain) > 0 {
		u.ca = chain[0]
	}
	return nil
}

// rollDue rolls over every profile whose active unit is due (rollReason),
// a revoked one included.
// A profile whose rollover fails keeps its unit and does not hold up the
// others; the failures are returned together.
func (s *Service) rollDue(ctx context.Context) error {
	// A successor another node made is taken over, not made again; a
	// reload that fails does not hold up the rollovers that are due.
	var errs []error
	if err := s.reloadUnits(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, sp := range specs {
		u := s.units.Load().active[sp.name]
		if u == nil {
			continue
		}
		why := s.rollReason(u, s.env.Clock.Now())
		if why == "" {
			continue
		}
		if _, err := s.Rollover(ctx, sp.name, "system"); err != nil {
			errs = append(errs, fmt.Errorf("tsa %s: unit %d %s: %w", sp.name, u.generation, why, err))
		}
	}
	return errors.Join(errs...)
}

// caLister is the CA service's list of its CA certificates, every
// generation (ca.Service.CACertificates); the TSA reads it, when its
// Issuer has it, to learn of a newer generation of a unit's issuing CA.
type caLister interface {
	CACertificates() []*smx509.Certificate
}

// issuerEnd is the latest notAfter a new unit's certificate could have:
// that of the unit's issuing CA or of a newer generation of it (the same
// name) valid at now, which the CA issues from once rolled over.
func (s *Service) issuerEnd(u *unit, now time.Time) time.Time {
	var end time.Time
	if u.ca != nil {
		end = u.ca.NotAfter
	}
	if l, ok := s.issuer.(caLister); ok {
		for _, c := range l.CACertificates() {
			same := bytes.Equal(c.RawSubject, u.cert.RawIssuer) || c.Subject.String() == u.cert.Issuer.String()
			if same && !now.Before(c.NotBefore) && c.NotAfter.After(end) {
				end = c.NotAfter
			}
		}
	}
	return end
}

// rollReason says why u is due for rollover at now, "" when it is not:
// its key has signed for keyUsePeriod, or its certificate ends within
// expiryMargin and a CA can issue one that ends later. The CA clamps a
// unit certificate to its own notAfter, so in the CA's last years a new
// unit would end no later than the current one: then the unit is not
// replaced (that would only make keys), it signs until its certificate
// ends, requests then get systemFailure and /readyz says why, and this is
// logged once, until the issuing CA is rolled over.
func (s *Service) rollReason(u *unit, now time.Time) string {
	if why := u.revoked.Load(); why != nil {
		return *why
	}
	if now.Sub(u.created) >= keyUsePeriod {
		return "key-use period ended"
	}
	end := u.cert.NotAfter
	if now.Add(expiryMargin(u.cert)).Before(end) {
		return ""
	}
	if !s.issuerEnd(u, now).After(end) {
		if !u.stuck.Swap(true) {
			s.env.Logger.Error("tsa: unit certificate ends soon and no CA certificate ends later; tokens get systemFailure from then on until the issuing CA is rolled over",
				"profile", u.profile, "generation", u.generation, "not_after", end.UTC().Format(time.RFC3339))
		}
		return ""
	}
	return "certificate ends " + end.UTC().Format(time.RFC3339)
}

// Rollover makes a new unit for profile (a new key, a certificate from the
// CA), records it as active and the previous one as retired in one
// transaction, then switches signing to it, marked first when its chain
// was revoked meanwhile (publish). Requests in flight finish with the old
// unit, later ones use the new: there is no moment without an active
// unit.
func (s *Service) Rollover(ctx context.Context, profile, actor string) (*smx509.Certificate, error) {
	sp := specByName(profile)
	if sp == nil {
		return nil, fmt.Errorf("%w: no TSA profile %q", ErrNotFound, profile)
	}
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	old := s.units.Load()
	// The next generation after every one recorded, by this node or
	// another sharing the database (in memory it could be behind).
	var last sql.NullInt64
	if err := s.env.DB.QueryRow(ctx, "SELECT MAX(generation) FROM tsa_units WHERE profile = ?", profile).Scan(&last); err != nil {
		return nil, fmt.Errorf("tsa: units of %s: %w", profile, err)
	}
	gen := int(last.Int64) + 1
	// A random suffix: a key left over by a crash between key creation and
	// the unit's record is never reused or overwritten.
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	u := &unit{profile: profile, generation: gen, status: "active", created: s.env.Clock.Now().UTC(),
		keyURI: fmt.Sprintf("soft:tsa/%s-%d-%s", profile, gen, hex.EncodeToString(suffix))}
	if _, err := s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: u.keyURI, Algorithm: sp.alg, Usage: hsm.UsageSign, Service: keyService}); err != nil {
		return nil, fmt.Errorf("tsa: create key %s: %w", u.keyURI, err)
	}
	keep := false
	defer func() {
		// A rollover that fails before its record (the CA refusing, say)
		// leaves no key behind: a scheduled one is tried again on every
		// tick. Once the record is attempted the key stays, in case the
		// commit went through (a leftover key is never reused, above).
		if !keep {
			if err := s.env.Keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: u.keyURI, Service: keyService}); err != nil {
				s.env.Logger.Error("tsa: rollover failed and its new key could not be deleted", "key", u.keyURI, "error", err)
			}
		}
	}()
	key, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: u.keyURI, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("tsa: key %s: %w", u.keyURI, err)
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{
		Subject: pkix.Name{CommonName: fmt.Sprintf("%s %d", sp.cn, gen)}}, key)
	if err != nil {
		return nil, fmt.Errorf("tsa: unit request: %w", err)
	}
	der, chain, err := s.issuer.IssueFor(ctx, sp.ca, "tsa", csr, map[string]string{"O": "govtrust"}, "service/tsa")
	if err != nil {
		return nil, fmt.Errorf("tsa: unit certificate: %w", err)
	}
	if u.cert, err = smx509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("tsa: unit certificate: %w", err)
	}
	u.chain = chain
	if err := s.resolve(ctx, u); err != nil {
		return nil, err
	}
	rec := audit.Record{Actor: actor, Action: "tsa.unit.create", Object: fmt.Sprintf("tsa/%s/%d", profile, gen), Outcome: audit.Success,
		Details: map[string]any{"key_uri": u.keyURI, "serial": fmt.Sprintf("%x", u.cert.SerialNumber), "issuer": sp.ca,
			"not_after": u.cert.NotAfter.UTC().Format(time.RFC3339)}}
	keep = true
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE tsa_units SET status = 'retired' WHERE profile = ? AND status = 'active'", profile); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO tsa_units (profile, generation, key_uri, cert, chain, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
			profile, gen, u.keyURI, u.cert.Raw, joinChain(chain), "active", u.created.Format(timeFormat))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tsa: record unit: %w", err)
	}
	next := &unitSet{active: map[string]*unit{}, all: map[string][]*unit{}}
	for k, v := range old.active {
		next.active[k] = v
	}
	for k, v := range old.all {
		next.all[k] = v
	}
	next.active[profile] = u
	next.all[profile] = append([]*unit{u}, old.all[profile]...)
	// A revocation of the new certificate, or of its CA, acknowledged
	// since the CA issued it marks the unit before it is published
	// (publish); the check goes on when the caller has gone, the unit
	// being recorded.
	if err := s.publish(context.WithoutCancel(ctx), next, u); err != nil {
		s.env.Logger.Warn("tsa: the new unit's revocation status could not be read; it signs, and the next poll reads it again",
			"profile", profile, "generation", gen, "error", err)
	}
	s.env.Logger.Info("tsa: unit active", "profile", profile, "generation", gen, "key", u.keyURI)
	return u.cert, nil
}

// errNoUnit is a systemFailure: a profile without an active unit.
var errNoUnit = errors.New("tsa: no active unit")
