package seal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/signature"
)

// The seal maker (制章者) is a key of the key service "seal" with a
// certificate of the seal-maker profile; it signs every SESeal. It is made
// at the first seal (generation 1 uses the key seal.maker_key names) and
// replaced by a new key with a new certificate (the next generation)
// before its certificate ends (renewReason) and at once when the CA
// revokes it or a CA certificate of its chain. The one replaced is
// retired, not revoked: the seals it made carry its certificate and
// verify with it while it is valid. The new maker is recorded and swapped
// in while the old one still makes seals, so there is no moment without a
// maker, except when the CA revoked it: then no seal is made (503) until
// a renewal succeeds.

// revocationPoll is how often the seal service reads the CA's record of
// its maker's certificate and chain, takes a maker another node renewed,
// and renews one that is due: a revocation made by another process is
// seen within it (one made in this process at once, through the CA's
// hook; Make also reads the record before each seal).
const revocationPoll = 5 * time.Second

// ErrMakerUnavailable is a Make refused because the seal maker cannot make
// seals now (its certificate revoked or ended, and no new one yet): 503.
var ErrMakerUnavailable = fmt.Errorf("seal: the seal maker cannot make seals now: %w", httpx.ErrUnavailable)

// makerService is the actor of the maker's renewals.
const makerService = "service/seal"

// maker is one generation of the seal maker. It is replaced, never
// changed, but for revoked.
type maker struct {
	base       string // the configured seal.maker_key of its lineage
	keyURI     string
	generation int
	signer     crypto.Signer
	cert       []byte
	parsed     *smx509.Certificate
	chain      [][]byte // the issuing CA's chain, CA first
	// revoked says why the maker must not make seals once its certificate
	// or a CA certificate of its chain was revoked.
	revoked atomic.Pointer[string]
}

// certs are the certificates the maker's seals rest on: its own, then its
// issuing CA's chain (revwatch.Hit, revwatch.Check).
func (m *maker) certs() [][]byte { return append([][]byte{m.cert}, m.chain...) }

// validAt says why no seal may be made with m at now, nil when one may.
func (m *maker) validAt(now time.Time) error {
	if why := m.revoked.Load(); why != nil {
		return fmt.Errorf("%w: %s; no seal is made until a new maker certificate is obtained", ErrMakerUnavailable, *why)
	}
	c := m.parsed
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("%w: the certificate of maker %d expired at %s and no new one was obtained", ErrMakerUnavailable, m.generation, c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: the certificate of maker %d is valid from %s", ErrMakerUnavailable, m.generation, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// renewAt is when a maker certificate is due for renewal: once two thirds
// of its validity have passed (as the node's HTTPS certificate, ca/tls.go),
// so every seal is made under a maker certificate with at least a third of
// its validity ahead, and renewal has that long to succeed.
func renewAt(c *smx509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// makerFor returns the maker to make a seal with: the active one (made at
// the first seal), after reading the CA's record of its certificates. A
// maker that is due for renewal makes this seal and the loop renews it.
func (s *Service) makerFor(ctx context.Context, actor string) (*maker, error) {
	m := s.maker.Load()
	if m == nil {
		var err error
		if m, err = s.firstMaker(ctx, actor); err != nil {
			return nil, err
		}
	}
	if err := s.checkMaker(ctx, m); err != nil {
		s.env.Logger.Warn("seal: could not read the revocation status of the seal maker; it makes this seal", "error", err)
	}
	if err := m.validAt(s.env.Clock.Now()); err != nil {
		s.kick()
		return nil, s.withRenewError(err)
	}
	if s.renewReason(m, s.env.Clock.Now()) != "" {
		s.kick()
	}
	return m, nil
}

// withRenewError adds why the last renewal failed to err.
func (s *Service) withRenewError(err error) error {
	if err == nil {
		return nil
	}
	if why := s.renewErr.Load(); why != nil {
		return fmt.Errorf("%w (the last renewal failed: %s)", err, *why)
	}
	return err
}

// firstMaker loads the active maker of the configured key, or makes it:
// the key seal.maker_key names (created when missing: service "seal",
// sign only), certified under the seal-maker profile.
func (s *Service) firstMaker(ctx context.Context, actor string) (*maker, error) {
	s.makerMu.Lock()
	defer s.makerMu.Unlock()
	if m := s.maker.Load(); m != nil {
		return m, nil
	}
	m, err := s.loadMaker(ctx)
	if err != nil || m != nil {
		return m, err
	}
	uri := s.cfg.MakerKey
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: keyService})
	if errors.Is(err, hsm.ErrNotFound) {
		if _, err = s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: keyService}); err != nil {
			return nil, fmt.Errorf("seal: create maker key: %w", err)
		}
		signer, err = s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: keyService})
	}
	if err != nil {
		return nil, fmt.Errorf("seal: maker key %s: %w", uri, err)
	}
	m = &maker{base: uri, keyURI: uri, generation: 1, signer: signer}
	if err := s.certify(ctx, m, actor); err != nil {
		return nil, err
	}
	rec := audit.Record{Actor: actor, Action: "seal.maker.create", Object: "seal-maker/1", Outcome: audit.Success,
		Details: map[string]any{"key_uri": uri, "serial": fmt.Sprintf("%x", m.parsed.SerialNumber), "not_after": m.parsed.NotAfter.UTC().Format(time.RFC3339)}}
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error { return s.insertMaker(ctx, tx, m) })
	if store.IsUniqueViolation(err) {
		// Another node made it at the same moment: take the recorded one.
		if m, err = s.loadMaker(ctx); err == nil && m != nil {
			s.maker.Store(m)
			return m, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("seal: record maker certificate: %w", err)
	}
	s.maker.Store(m)
	s.env.Logger.Info("seal: seal maker active", "generation", 1, "key", uri, "not_after", m.parsed.NotAfter.UTC().Format(time.RFC3339))
	return m, nil
}

// certify has the CA certify m's key under the seal-maker profile.
func (s *Service) certify(ctx context.Context, m *maker, actor string) error {
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "govtrust seal maker"}}, m.signer)
	if err != nil {
		return fmt.Errorf("seal: maker CSR: %w", err)
	}
	der, chain, err := s.issuer.IssueFor(ctx, s.cfg.MakerCA, "seal-maker", csr,
		map[string]string{"CN": "govtrust seal maker", "O": "govtrust"}, actor)
	if err != nil {
		return fmt.Errorf("seal: maker certificate: %w", err)
	}
	if m.parsed, err = smx509.ParseCertificate(der); err != nil {
		return fmt.Errorf("seal: maker certificate: %w", err)
	}
	m.cert, m.chain = der, chain
	return nil
}

func (s *Service) insertMaker(ctx context.Context, tx *store.Tx, m *maker) error {
	_, err := tx.Exec(ctx, `INSERT INTO seal_maker (key_uri, cert, chain, created_at, base, generation, status) VALUES (?, ?, ?, ?, ?, ?, 'active')`,
		m.keyURI, m.cert, joinDER(m.chain), s.env.Clock.Now().UTC().Format(timeFormat), m.base, m.generation)
	return err
}

// loadMaker reads the active maker of the configured key (nil when none
// was made yet) and resolves its key; the one in memory is returned when
// it is the recorded one.
func (s *Service) loadMaker(ctx context.Context) (*maker, error) {
	m := &maker{base: s.cfg.MakerKey}
	var chain []byte
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT key_uri, generation, cert, chain FROM seal_maker WHERE base = ? AND status = 'active' ORDER BY generation DESC LIMIT 1`, m.base).
			Scan(&m.keyURI, &m.generation, &m.cert, &chain)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("seal: load maker: %w", err)
	}
	if cur := s.maker.Load(); cur != nil && cur.keyURI == m.keyURI {
		return cur, nil
	}
	if m.parsed, err = smx509.ParseCertificate(m.cert); err != nil {
		return nil, fmt.Errorf("seal: maker %d certificate: %w", m.generation, err)
	}
	m.chain = splitDER(chain)
	if m.signer, err = s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: m.keyURI, Service: keyService}); err != nil {
		return nil, fmt.Errorf("seal: maker key %s: %w", m.keyURI, err)
	}
	return m, nil
}

// renewReason says why m is due for renewal at now, "" when it is not: it
// was revoked, or two thirds of its certificate's validity have passed
// (renewAt) and a CA can issue one that ends later. The CA clamps a
// certificate to its own notAfter, so in the CA's last years a new one
// would end no later: then the maker is not renewed (that would only make
// keys), makes seals until its certificate ends, and this is logged once.
func (s *Service) renewReason(m *maker, now time.Time) string {
	if why := m.revoked.Load(); why != nil {
		return *why
	}
	c := m.parsed
	if now.Before(renewAt(c)) {
		return ""
	}
	if !s.issuerEnd(c, now).After(c.NotAfter) {
		if !s.stuck.Swap(true) {
			s.env.Logger.Error("seal: the seal maker's certificate is due for renewal and no CA certificate ends later; seals are refused once it ends, until the issuing CA is rolled over",
				"generation", m.generation, "not_after", c.NotAfter.UTC().Format(time.RFC3339))
		}
		return ""
	}
	return "two thirds of its certificate's validity passed at " + renewAt(c).UTC().Format(time.RFC3339) +
		" (it ends " + c.NotAfter.UTC().Format(time.RFC3339) + ")"
}

// issuerEnd is the latest notAfter a new maker certificate could have:
// that of a CA certificate named as c's issuer (its generation or a newer
// one, which the CA issues from once rolled over) valid at now.
func (s *Service) issuerEnd(c *smx509.Certificate, now time.Time) time.Time {
	var end time.Time
	for _, ca := range s.cas.CACertificates() {
		same := bytes.Equal(ca.RawSubject, c.RawIssuer)
		if same && !now.Before(ca.NotBefore) && ca.NotAfter.After(end) {
			end = ca.NotAfter
		}
	}
	return end
}

// renew makes the next generation of the maker old (a new key, a
// certificate from the CA), records it as active and old as retired in one
// transaction, then swaps it in: seals being made finish with old, later
// ones use the new. When another node renewed old first, its maker is
// taken instead.
func (s *Service) renew(ctx context.Context, old *maker, why string) (*maker, error) {
	s.makerMu.Lock()
	defer s.makerMu.Unlock()
	cur, err := s.loadMaker(ctx)
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.keyURI != old.keyURI {
		s.maker.Store(cur)
		return cur, nil
	}
	m := &maker{base: old.base, generation: old.generation + 1}
	if m.keyURI, err = nextKeyURI(old.base, m.generation); err != nil {
		return nil, err
	}
	if _, err := s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: m.keyURI, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: keyService}); err != nil {
		return nil, fmt.Errorf("seal: create maker key %s: %w", m.keyURI, err)
	}
	keep := false
	defer func() {
		// A renewal that fails before its record (the CA refusing, say)
		// leaves no key behind; it is tried again at the next poll. Once
		// the record is attempted the key stays, in case the commit went
		// through (a new key URI is never reused: nextKeyURI).
		if !keep {
			if err := s.env.Keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: m.keyURI, Service: keyService}); err != nil {
				s.env.Logger.Error("seal: maker renewal failed and its new key could not be deleted", "key", m.keyURI, "error", err)
			}
		}
	}()
	if m.signer, err = s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: m.keyURI, Service: keyService}); err != nil {
		return nil, fmt.Errorf("seal: maker key %s: %w", m.keyURI, err)
	}
	if err := s.certify(ctx, m, makerService); err != nil {
		return nil, err
	}
	now := s.env.Clock.Now().UTC()
	rec := audit.Record{Actor: "system", Action: "seal.maker.renew", Object: fmt.Sprintf("seal-maker/%d", m.generation), Outcome: audit.Success,
		Details: map[string]any{"key_uri": m.keyURI, "serial": fmt.Sprintf("%x", m.parsed.SerialNumber), "not_after": m.parsed.NotAfter.UTC().Format(time.RFC3339),
			"replaces": old.generation, "replaced_serial": fmt.Sprintf("%x", old.parsed.SerialNumber), "why": why}}
	keep = true
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE seal_maker SET status = 'retired', retired_at = ?, retired_why = ? WHERE key_uri = ? AND status = 'active'`,
			now.Format(timeFormat), why, old.keyURI)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: maker %d is no longer the active one", ErrConflict, old.generation)
		}
		return s.insertMaker(ctx, tx, m)
	})
	if err != nil {
		// The commit's outcome may be unknown (a connection lost at
		// COMMIT), and a commit can become visible after this read: the
		// new key stays whatever the read shows (an unused key is
		// harmless; an active maker without its key stops every seal).
		cur, lerr := s.loadMaker(ctx)
		switch {
		case lerr != nil || cur == nil:
			return nil, fmt.Errorf("seal: record maker %d (its key %s is kept): %w", m.generation, m.keyURI, err)
		case cur.keyURI == m.keyURI:
			// The record went through after all.
			s.maker.Store(cur)
			s.stuck.Store(false)
			return cur, nil
		case cur.keyURI != old.keyURI:
			// Another node recorded its renewal first.
			s.maker.Store(cur)
			return cur, nil
		}
		return nil, fmt.Errorf("seal: record maker %d (its key %s is kept): %w", m.generation, m.keyURI, err)
	}
	s.maker.Store(m)
	s.stuck.Store(false)
	s.env.Logger.Info("seal: seal maker renewed", "generation", m.generation, "key", m.keyURI, "why", why,
		"not_after", m.parsed.NotAfter.UTC().Format(time.RFC3339))
	return m, nil
}

// nextKeyURI names the key of generation gen of the lineage of base:
// base's name (soft:) or object label (pkcs11:, without its id) followed by
// the generation and a random suffix, so that a key left over by a crash
// between key creation and the record is never reused.
func nextKeyURI(base string, gen int) (string, error) {
	u, err := hsm.ParseURI(base)
	if err != nil {
		return "", fmt.Errorf("seal: seal.maker_key: %w", err)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	suffix := fmt.Sprintf("-g%d-%s", gen, hex.EncodeToString(b))
	if u.Attrs == nil {
		u.Opaque += suffix
		return u.String(), nil
	}
	attrs := map[string]string{}
	for k, v := range u.Attrs {
		attrs[k] = v
	}
	delete(attrs, "id")
	if attrs["object"] == "" {
		attrs["object"] = "seal-maker"
	}
	attrs["object"] += suffix
	u.Attrs = attrs
	return u.String(), nil
}

// checkMaker reads the CA's record of every certificate m rests on and
// marks it revoked (markRevoked). A certificate no platform CA issued is
// not checked here. An error is a record that could not be read.
func (s *Service) checkMaker(ctx context.Context, m *maker) error {
	rr, ok := s.issuer.(revwatch.Reader)
	if !ok || m.revoked.Load() != nil {
		return nil
	}
	why, err := revwatch.Check(ctx, rr, m.certs())
	if err != nil {
		return fmt.Errorf("seal: maker %d: revocation status: %w", m.generation, err)
	}
	if why != "" {
		s.markRevoked(m, why)
	}
	return nil
}

// markRevoked stops m from making seals (Make answers 503, /readyz says
// why) and wakes the loop to renew it.
func (s *Service) markRevoked(m *maker, why string) {
	msg := fmt.Sprintf("seal maker %d must not make seals: %s", m.generation, why)
	if !m.revoked.CompareAndSwap(nil, &msg) {
		return
	}
	s.env.Logger.Error("seal: the seal maker's certificate chain was revoked; no seal is made until it is renewed",
		"generation", m.generation, "reason", why)
	s.kick()
}

// kick wakes the loop.
func (s *Service) kick() {
	select {
	case s.revKick <- struct{}{}:
	default:
	}
}

// revokedHook is the CA's in-process hook (revwatch.Notifier): a
// revocation of the maker's certificate, or of a CA certificate of its
// chain, stops it before the revocation is acknowledged.
func (s *Service) revokedHook(issuer *smx509.Certificate, serial *big.Int) {
	if m := s.maker.Load(); m != nil {
		if why := revwatch.Hit(m.certs(), issuer, serial); why != "" {
			s.markRevoked(m, why)
		}
	}
}

// makerPass is one round of the loop (and the check at start): take the
// maker another node recorded, read the CA's record of the maker's
// certificates, and renew it when due. Failures are logged when they
// start and when they end, not at every poll.
func (s *Service) makerPass(ctx context.Context) {
	var errs []error
	m, err := s.loadMaker(ctx)
	if err != nil {
		errs = append(errs, err)
		m = s.maker.Load()
	} else if m != nil && m != s.maker.Load() {
		s.maker.Store(m)
		s.env.Logger.Info("seal: seal maker recorded by another node taken", "generation", m.generation, "key", m.keyURI)
	}
	if m != nil {
		if err := s.checkMaker(ctx, m); err != nil {
			errs = append(errs, err)
		}
		if why := s.renewReason(m, s.env.Clock.Now()); why != "" {
			if _, err := s.renew(ctx, m, why); err != nil {
				msg := err.Error()
				s.renewErr.Store(&msg)
				errs = append(errs, fmt.Errorf("renewal of maker %d (%s): %w", m.generation, why, err))
			} else {
				s.renewErr.Store(nil)
			}
		}
	}
	err = errors.Join(errs...)
	switch {
	case err != nil && (s.passErr == "" || s.passErr != err.Error()):
		s.env.Logger.Error("seal: seal maker check failed; a maker whose certificate is valid and not known revoked makes seals meanwhile", "error", err)
	case err == nil && s.passErr != "":
		s.env.Logger.Info("seal: seal maker check works again")
	}
	s.passErr = ""
	if err != nil {
		s.passErr = err.Error()
	}
}

// loop runs makerPass every revPoll, and at once when kicked (a revocation
// the hook or Make saw, a maker due for renewal).
func (s *Service) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.revPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.revKick:
		}
		s.makerPass(ctx)
	}
}

// makerReady says why seals cannot be made now, nil when they can (or the
// maker is made at the first seal).
func (s *Service) makerReady() error {
	m := s.maker.Load()
	if m == nil {
		return nil
	}
	return s.withRenewError(m.validAt(s.env.Clock.Now()))
}

// loadMakerAnchors reads seal.maker_anchors: files of PEM certificates,
// each the issuer of foreign seal makers (another platform's seal-maker
// CA) or a foreign maker certificate itself. A certificate of one of the
// platform's CAs (platform), or issued by one, is refused: the platform's
// own makers are known from the table seal_maker, and anchoring makers at
// a platform CA would make every certificate it issued, a citizen's
// included, a seal maker.
func loadMakerAnchors(paths []string, platform []*smx509.Certificate) ([]*smx509.Certificate, error) {
	return signature.ReadCertificateFiles("seal.maker_anchors", paths, func(c *smx509.Certificate) error {
		for _, ca := range platform {
			same := bytes.Equal(c.RawSubject, ca.RawSubject) && bytes.Equal(c.RawSubjectPublicKeyInfo, ca.RawSubjectPublicKeyInfo)
			if same || (bytes.Equal(c.RawIssuer, ca.RawSubject) && c.CheckSignatureFrom(ca) == nil) {
				return fmt.Errorf("%s is, or was issued by, the platform CA %s: the platform's own seal makers are recognised without configuration, and no other certificate of its CAs may make seals",
					c.Subject, ca.Subject)
			}
		}
		return nil
	})
}
