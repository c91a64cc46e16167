package authz

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/govtrust/govtrust/internal/crlscope"
)

// CRLChecker checks revocation against CRLs loaded from files (DER or PEM).
// It is RevocationChecker for TLS client certificates (DIR/trust/crl/).
//
// CRLs are kept by issuer and scope: the authorityKeyIdentifier and the
// issuingDistributionPoint. Per scope it keeps the newest complete CRL and
// the delta CRLs newer than it (RFC 5280 §5.2.4). A certificate is checked
// against every scope of its issuer that covers it (§5.2.5, §6.3.3 (b)):
// onlyContainsUserCerts, onlyContainsCACerts, onlyContainsAttributeCerts and
// onlySomeReasons, and a distributionPoint that must name one of the
// certificate's CRL distribution points, or its issuer's name. Each CRL used
// must verify against the issuer; a complete CRL must be before its
// nextUpdate.
//
// A certificate is revoked when the newest delta CRL that lists it lists it
// with any reason but removeFromCRL, or when its complete CRL lists it and no
// delta takes it off. removeFromCRL counts only on a delta before its
// nextUpdate whose BaseCRLNumber is at most the complete CRL's number; a
// delta without such a base is never used as complete. A certificate is
// good only when usable complete CRLs of scopes that cover it together cover
// every reason; otherwise, as when no CRL of its issuer is loaded, Revoked
// reports it revoked with an error (fail closed).
//
// A CRL with a critical extension the checker does not process (indirect
// CRLs among them), or a malformed scope extension, is not used: Add returns
// why and LoadDir logs it.
type CRLChecker struct {
	// Logger gets the CRLs LoadDir does not use; nil is slog.Default().
	Logger *slog.Logger

	mu     sync.RWMutex
	scopes map[string][]*crlScope // by issuer DN
	now    func() time.Time
}

// crlScope holds the CRLs of one issuer and scope.
type crlScope struct {
	key      string
	aki      []byte
	idp      *crlscope.IDP
	complete *loadedCRL
	deltas   []*loadedCRL // newer than complete, newest first
}

// loadedCRL is a CRL with the extensions crypto/x509 leaves raw.
type loadedCRL struct {
	rl      *x509.RevocationList
	base    *big.Int      // BaseCRLNumber of a delta CRL; nil for a complete CRL
	idp     *crlscope.IDP // nil when absent
	scope   string
	entries map[string]*x509.RevocationListEntry // by serial
}

// NewCRLChecker returns an empty checker.
func NewCRLChecker(now func() time.Time) *CRLChecker {
	if now == nil {
		now = time.Now
	}
	return &CRLChecker{scopes: map[string][]*crlScope{}, now: now}
}

// Add adds a CRL: a complete CRL replaces an older one of its scope, a delta
// CRL joins the complete one. A CRL not newer than the complete CRL of its
// scope is ignored. A CRL the checker cannot use is not added, and the error
// says why.
func (c *CRLChecker) Add(rl *x509.RevocationList) error {
	l, err := loadCRL(rl)
	if err != nil {
		return fmt.Errorf("CRL %v of %s: %w", rl.Number, rl.Issuer, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := issuerName(rl.Issuer)
	var s *crlScope
	for _, x := range c.scopes[k] {
		if x.key == l.scope {
			s = x
			break
		}
	}
	if s == nil {
		s = &crlScope{key: l.scope, aki: rl.AuthorityKeyId, idp: l.idp}
		c.scopes[k] = append(c.scopes[k], s)
	}
	if s.complete != nil && !newerCRL(rl, s.complete.rl) {
		return nil
	}
	if l.base == nil {
		s.complete = l
		// Copy, not filter in place: Revoked may hold the old slice.
		var keep []*loadedCRL
		for _, d := range s.deltas {
			if newerCRL(d.rl, rl) {
				keep = append(keep, d)
			}
		}
		s.deltas = keep
		return nil
	}
	for _, d := range s.deltas {
		if d.rl.Number.Cmp(rl.Number) == 0 {
			return nil
		}
	}
	deltas := append(slices.Clone(s.deltas), l)
	slices.SortFunc(deltas, func(a, b *loadedCRL) int { return b.rl.Number.Cmp(a.rl.Number) })
	s.deltas = deltas
	return nil
}

// newerCRL reports whether a was issued after b: by CRL number when both
// have one (RFC 5280 §5.2.3), else by thisUpdate.
func newerCRL(a, b *x509.RevocationList) bool {
	if a.Number != nil && b.Number != nil {
		return a.Number.Cmp(b.Number) > 0
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

// loadCRL reads the extensions of rl the checker needs and refuses one it
// must not use (RFC 5280 §5.2, §5.3: a CRL with an unrecognised critical
// extension, or entry extension, is not used).
func loadCRL(rl *x509.RevocationList) (*loadedCRL, error) {
	sc, err := crlscope.Read(rl.Extensions, rl.RawIssuer)
	if err != nil {
		return nil, err
	}
	l := &loadedCRL{rl: rl, base: sc.Base, idp: sc.IDP}
	l.entries = make(map[string]*x509.RevocationListEntry, len(rl.RevokedCertificateEntries))
	for i := range rl.RevokedCertificateEntries {
		e := &rl.RevokedCertificateEntries[i]
		if err := crlscope.CheckEntry(e.Extensions); err != nil {
			return nil, fmt.Errorf("entry %x: %w", e.SerialNumber, err)
		}
		if k := e.SerialNumber.Text(16); l.entries[k] == nil {
			l.entries[k] = e
		}
	}
	l.scope = hex.EncodeToString(rl.AuthorityKeyId) + "/" + hex.EncodeToString(sc.RawIDP)
	return l, nil
}

// LoadDir adds every *.crl and *.pem CRL in dir. A file that is not a CRL is
// an error; a CRL the checker cannot use is logged and skipped.
func (c *CRLChecker) LoadDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.Default()
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".crl") || strings.HasSuffix(e.Name(), ".pem")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if blk, _ := pem.Decode(b); blk != nil {
			b = blk.Bytes
		}
		crl, err := x509.ParseRevocationList(b)
		if err != nil {
			return fmt.Errorf("CRL %s: %w", e.Name(), err)
		}
		if err := c.Add(crl); err != nil {
			logger.Warn("client CA CRL not used", "file", filepath.Join(dir, e.Name()), "err", err)
		}
	}
	return nil
}

// Revoked implements RevocationChecker.
func (c *CRLChecker) Revoked(_ context.Context, cert, issuer *x509.Certificate) (bool, error) {
	type view struct {
		s        *crlScope
		complete *loadedCRL
		deltas   []*loadedCRL
	}
	c.mu.RLock()
	var views []view
	for _, s := range c.scopes[issuerName(cert.Issuer)] {
		views = append(views, view{s, s.complete, s.deltas})
	}
	c.mu.RUnlock()
	if len(views) == 0 {
		return true, fmt.Errorf("no CRL for issuer %s", cert.Issuer)
	}
	now := c.now()
	serial := cert.SerialNumber.Text(16)
	dps := crlscope.DistributionPoints(cert.RawIssuer, cert.Extensions)
	var covered crlscope.Reasons
	var why []string
	for _, v := range views {
		if len(v.s.aki) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(v.s.aki, issuer.SubjectKeyId) {
			continue // another key of a CA with the same name
		}
		mask := v.s.idp.Covers(cert.BasicConstraintsValid && cert.IsCA, dps)
		if mask == 0 {
			why = append(why, "a CRL's issuingDistributionPoint does not cover the certificate")
			continue
		}
		var complete *loadedCRL
		if l := v.complete; l == nil {
			why = append(why, "delta CRL without its complete CRL")
		} else if err := l.rl.CheckSignatureFrom(issuer); err != nil {
			why = append(why, fmt.Sprintf("CRL %v: %v", l.rl.Number, err))
		} else if !l.rl.NextUpdate.IsZero() && now.After(l.rl.NextUpdate) {
			why = append(why, fmt.Sprintf("CRL %v is past its nextUpdate", l.rl.Number))
		} else {
			complete = l
		}
		removed := false
		for _, d := range v.deltas {
			e := d.entries[serial]
			if e == nil || d.rl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			if e.ReasonCode != crlscope.ReasonRemoveFromCRL {
				return true, nil
			}
			// removeFromCRL: only against the base it was made for, and
			// only while current; otherwise older lists decide.
			if complete != nil && complete.rl.Number != nil && d.base.Cmp(complete.rl.Number) <= 0 &&
				(d.rl.NextUpdate.IsZero() || !now.After(d.rl.NextUpdate)) {
				removed = true
				break
			}
		}
		if complete == nil {
			continue
		}
		if !removed && complete.entries[serial] != nil {
			return true, nil
		}
		covered |= mask
	}
	if covered&crlscope.AllReasons == crlscope.AllReasons {
		return false, nil
	}
	if len(why) == 0 {
		why = append(why, "only CRLs of another key of the issuer")
	}
	return true, fmt.Errorf("no usable complete CRL of %s for certificate %x: %s", cert.Issuer, cert.SerialNumber, strings.Join(why, "; "))
}

func issuerName(n pkix.Name) string { return n.String() }
