package tsa

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
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
	// signer is set for the active unit.
	signer *tsp.Signer
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
// rolls over those whose key-use period has ended.
func (s *Service) loadUnits(ctx context.Context) error {
	set := &unitSet{active: map[string]*unit{}, all: map[string][]*unit{}}
	rows, err := s.env.DB.Query(ctx, "SELECT profile, generation, key_uri, cert, chain, status, created_at FROM tsa_units ORDER BY profile, generation DESC")
	if err != nil {
		return fmt.Errorf("tsa: load units: %w", err)
	}
	for rows.Next() {
		u := &unit{}
		var cert, chain []byte
		var created string
		if err := rows.Scan(&u.profile, &u.generation, &u.keyURI, &cert, &chain, &u.status, &created); err != nil {
			rows.Close()
			return fmt.Errorf("tsa: load units: %w", err)
		}
		if u.cert, err = smx509.ParseCertificate(cert); err != nil {
			rows.Close()
			return fmt.Errorf("tsa: unit %s/%d certificate: %w", u.profile, u.generation, err)
		}
		if u.chain, err = splitChain(chain); err != nil {
			rows.Close()
			return fmt.Errorf("tsa: unit %s/%d chain: %w", u.profile, u.generation, err)
		}
		u.created, _ = time.Parse(timeFormat, created)
		set.all[u.profile] = append(set.all[u.profile], u)
		if u.status == "active" {
			set.active[u.profile] = u
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("tsa: load units: %w", err)
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
	return s.rollDue(ctx)
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
	return nil
}

// rollDue rolls over every profile whose active unit has signed for
// keyUsePeriod.
func (s *Service) rollDue(ctx context.Context) error {
	now := s.env.Clock.Now()
	for _, sp := range specs {
		u := s.units.Load().active[sp.name]
		if u != nil && now.Sub(u.created) >= keyUsePeriod {
			if _, err := s.Rollover(ctx, sp.name, "system"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Rollover makes a new unit for profile (a new key, a certificate from the
// CA), records it as active and the previous one as retired in one
// transaction, then switches signing to it. Requests in flight finish with
// the old unit, later ones use the new: there is no moment without an
// active unit.
func (s *Service) Rollover(ctx context.Context, profile, actor string) (*smx509.Certificate, error) {
	sp := specByName(profile)
	if sp == nil {
		return nil, fmt.Errorf("%w: no TSA profile %q", ErrNotFound, profile)
	}
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	old := s.units.Load()
	gen := 1
	if all := old.all[profile]; len(all) > 0 {
		gen = all[0].generation + 1
	}
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
	s.units.Store(next)
	s.env.Logger.Info("tsa: unit active", "profile", profile, "generation", gen, "key", u.keyURI)
	return u.cert, nil
}

// errNoUnit is a systemFailure: a profile without an active unit.
var errNoUnit = errors.New("tsa: no active unit")
