package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// Cross-certificates (RFC 5280 §3.2). Another CA certifies one of ours:
// the certificate names our CA's subject and key, and is signed by the
// other CA (`govtrust ca cross-sign` makes one from a ceremony file). A
// relying party that trusts the other CA builds a path to certificates of
// ours through it, but only if it can find it: a CA operator imports it
// (POST /api/v1/ca/{ca}/cross-certificates) and every unexpired one is
// served at /pki/{ca}-cross.p7c, a certs-only CMS message as RFC 5280
// §4.2.2.1 describes for AIA caIssuers.

// CrossRequest is the body of POST /api/v1/ca/{ca}/cross-certificates.
type CrossRequest struct {
	// Certificate is the cross-certificate (PEM).
	Certificate string `json:"certificate"`
	// Issuer is the certificate of the CA that signed it (PEM); its
	// signature on Certificate is checked.
	Issuer string `json:"issuer"`
}

// CrossInfo describes an imported cross-certificate.
type CrossInfo struct {
	CA          string `json:"ca"`
	Subject     string `json:"subject"`
	Issuer      string `json:"issuer"`
	Serial      string `json:"serial"`
	NotBefore   string `json:"not_before"`
	NotAfter    string `json:"not_after"`
	SHA256      string `json:"sha256"`
	URL         string `json:"url"`
	Certificate string `json:"certificate"`
}

// crossTTL bounds how long /pki/{ca}-cross.p7c is served from memory: an
// import in this process shows at once, one in another within this time.
const crossTTL = 10 * time.Second

// crossCache holds the served bundles, so that an anonymous request does
// not cost a database read.
type crossCache struct {
	mu sync.Mutex
	m  map[string]crossBundle
	// gen counts drops: a bundle loaded before the last one is not kept.
	gen uint64
}

type crossBundle struct {
	der    []byte // nil: no unexpired cross-certificate
	loaded time.Time
	until  time.Time // the first NotAfter among them: rebuild then
}

// get returns the bundle of id if it is fresh, and otherwise the
// generation to hand put with the bundle loaded next.
func (c *crossCache) get(id string, now time.Time) (crossBundle, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[id]
	if !ok || now.Sub(b.loaded) >= crossTTL || now.Sub(b.loaded) < 0 || (b.der != nil && !now.Before(b.until)) {
		return crossBundle{}, c.gen, false
	}
	return b, c.gen, true
}

// put keeps b unless an import dropped the cache after gen was read.
func (c *crossCache) put(id string, b crossBundle, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil {
		c.m = map[string]crossBundle{}
	}
	c.m[id] = b
}

func (c *crossCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, id)
}

// importCross handles POST /api/v1/ca/{ca}/cross-certificates.
func (s *Service) importCross(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, err := s.authority(r.PathValue("ca"))
	if err != nil {
		return err
	}
	var req CrossRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	cross, err := parsePEMCert(req.Certificate, "certificate")
	if err != nil {
		return err
	}
	issuer, err := parsePEMCert(req.Issuer, "issuer")
	if err != nil {
		return err
	}
	now := s.env.Clock.Now()
	if err := checkCross(a, cross, issuer, s.levelsBelow(a), now); err != nil {
		return err
	}
	actor := "system"
	if p := authz.PrincipalFrom(ctx); p != nil {
		actor = p.Actor()
	}
	sum := sha256.Sum256(cross.Raw)
	fp := hex.EncodeToString(sum[:])
	rec := audit.Record{Actor: actor, Action: "ca.authority.cross", Object: "ca/" + a.id, Outcome: audit.Success,
		Details: map[string]any{"issuer": cross.Issuer.String(), "serial": serialHex(cross.SerialNumber), "sha256": fp,
			"not_after": cross.NotAfter.UTC().Format(time.RFC3339)}}
	added := false
	if _, err := s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		var err error
		if added, err = insertCross(ctx, tx, a.id, fp, cross, now); err != nil || !added {
			return err
		}
		// The directory adds it to the CA's crossCertificatePair.
		insertOutbox(tx, "cross_added", a.id, serialHex(cross.SerialNumber), now)
		return nil
	}); err != nil {
		return err
	}
	s.cross.drop(a.id)
	status := http.StatusOK // the same certificate again
	if added {
		status = http.StatusCreated
	}
	return httpx.WriteJSON(w, status, &CrossInfo{CA: a.id, Subject: cross.Subject.String(), Issuer: cross.Issuer.String(),
		Serial: serialHex(cross.SerialNumber), NotBefore: cross.NotBefore.UTC().Format(time.RFC3339),
		NotAfter: cross.NotAfter.UTC().Format(time.RFC3339), SHA256: fp, URL: "/pki/" + a.id + "-cross.p7c", Certificate: pemCert(cross.Raw)})
}

// insertCross records cross, a cross-certificate for CA id whose SHA-256
// is fp; it reports whether it was new.
func insertCross(ctx context.Context, tx *store.Tx, id, fp string, cross *smx509.Certificate, now time.Time) (bool, error) {
	res, err := tx.Exec(ctx, `INSERT INTO ca_cross_certificates (ca_id, fingerprint, issuer, serial, not_before, not_after, der, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, id, fp, cross.Issuer.String(), serialHex(cross.SerialNumber),
		cross.NotBefore.UTC().Format(timeFormat), cross.NotAfter.UTC().Format(timeFormat), cross.Raw, now.UTC().Format(timeFormat))
	if err != nil {
		return false, fmt.Errorf("record cross-certificate for %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record cross-certificate for %s: %w", id, err)
	}
	return n == 1, nil
}

// parsePEMCert parses the one certificate of a PEM text.
func parsePEMCert(text, field string) (*smx509.Certificate, error) {
	b, rest := pem.Decode([]byte(text))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: want one PEM CERTIFICATE", httpx.ErrBadRequest, field)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: %s: more than one PEM block", httpx.ErrBadRequest, field)
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", httpx.ErrBadRequest, field, err)
	}
	return c, nil
}

// levelsBelow is the number of levels of CAs of the registry below a
// (every generation counts): a path through a cross-certificate for a to
// a certificate of the lowest of them has that many intermediates below the
// cross-certificate.
func (s *Service) levelsBelow(a *authority) int {
	reg := s.registry()
	levels := 0
	for _, x := range reg.order {
		n := 0
		// A chain of parents is at most as long as the registry.
		for p, steps := x, 0; p != nil && steps <= len(reg.order); p, steps = reg.byID[p.parent], steps+1 {
			if p.id == a.id {
				levels = max(levels, n)
				break
			}
			n++
		}
	}
	return levels
}

// checkCross refuses anything but a valid cross-certificate for a, signed
// by issuer, that leaves room for the levels of CAs below a.
func checkCross(a *authority, cross, issuer *smx509.Certificate, levels int, now time.Time) error {
	switch {
	case !bytes.Equal(cross.RawSubject, a.cert.RawSubject):
		return fmt.Errorf("%w: the certificate's subject %q is not %s's %q", ErrPolicy, cross.Subject, a.id, a.cert.Subject)
	case !bytes.Equal(cross.RawSubjectPublicKeyInfo, a.cert.RawSubjectPublicKeyInfo):
		return fmt.Errorf("%w: the certificate certifies another key than %s's", ErrPolicy, a.id)
	case bytes.Equal(cross.RawIssuer, cross.RawSubject):
		return fmt.Errorf("%w: the certificate is self-issued: a cross-certificate comes from another CA", ErrPolicy)
	case bytes.Equal(cross.RawIssuer, a.cert.RawIssuer):
		// The CA's own certificate, or another from its own parent.
		return fmt.Errorf("%w: the certificate comes from %s's own issuer %q: a cross-certificate comes from another CA", ErrPolicy, a.id, a.cert.Issuer)
	case !cross.BasicConstraintsValid || !cross.IsCA || cross.KeyUsage&smx509.KeyUsageCertSign == 0:
		return fmt.Errorf("%w: not a CA certificate (basicConstraints cA and keyCertSign)", ErrPolicy)
	case len(a.cert.SubjectKeyId) > 0 && !bytes.Equal(cross.SubjectKeyId, a.cert.SubjectKeyId):
		// The CA's certificates name its identifier in their
		// authorityKeyIdentifier; a path builder passes over an issuer
		// whose identifier differs (RFC 5280 §4.2.1.1, §4.2.1.2).
		return fmt.Errorf("%w: the certificate's subjectKeyIdentifier %x is not %s's %x: paths through it would not reach the CA's certificates", ErrPolicy, cross.SubjectKeyId, a.id, a.cert.SubjectKeyId)
	case !now.Before(cross.NotAfter):
		return fmt.Errorf("%w: the certificate expired at %s", ErrPolicy, cross.NotAfter.UTC().Format(time.RFC3339))
	case !bytes.Equal(cross.RawIssuer, issuer.RawSubject):
		return fmt.Errorf("%w: issuer: the certificate was issued by %q, not by %q", ErrPolicy, cross.Issuer, issuer.Subject)
	}
	// RFC 5280 §6.1.4 (l): through the cross-certificate, every CA below a
	// is an intermediate under it.
	if limit, ok := ceremony.PathLen(cross); ok && levels > limit {
		return fmt.Errorf("%w: the certificate's pathLenConstraint %d leaves no room for the %d level(s) of CAs below %s: their certificates would not validate through it",
			ErrPolicy, limit, levels, a.id)
	}
	// CheckSignatureFrom also refuses an issuer that may not sign
	// certificates (not a CA, or no keyCertSign).
	if err := cross.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: the issuer's signature on the certificate does not verify: %v", ErrPolicy, err)
	}
	if len(cross.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(cross.AuthorityKeyId, issuer.SubjectKeyId) {
		return fmt.Errorf("%w: issuer: the certificate's authorityKeyIdentifier %x is not the issuer's subjectKeyIdentifier %x", ErrPolicy, cross.AuthorityKeyId, issuer.SubjectKeyId)
	}
	return nil
}

// serveCross serves /pki/{id}-cross.p7c: the unexpired cross-certificates
// of CA id as a certs-only CMS SignedData (DER, RFC 5652 §5 with no
// signers; RFC 5280 §4.2.2.1).
func (s *Service) serveCross(w http.ResponseWriter, r *http.Request, id string) error {
	a, err := s.authority(id)
	if err != nil {
		return err
	}
	now := s.env.Clock.Now()
	b, gen, ok := s.cross.get(a.id, now)
	if !ok {
		if b, err = loadCross(r.Context(), s.env.DB, a.id, now); err != nil {
			return err
		}
		s.cross.put(a.id, b, gen)
	}
	if b.der == nil {
		return fmt.Errorf("%w: no cross-certificate for %s", ErrNotFound, a.id)
	}
	w.Header().Set("Content-Type", "application/pkcs7-mime")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err = w.Write(b.der)
	return err
}

// loadCross builds the bundle of CA id's cross-certificates valid at now.
func loadCross(ctx context.Context, db *store.DB, id string, now time.Time) (crossBundle, error) {
	var ders [][]byte
	until := time.Time{}
	err := db.Read(ctx, func(q store.Querier) error {
		ders, until = nil, time.Time{}
		rows, err := q.Query(ctx, "SELECT der, not_after FROM ca_cross_certificates WHERE ca_id = ?", id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var der []byte
			var na string
			if err := rows.Scan(&der, &na); err != nil {
				return err
			}
			t, err := time.Parse(timeFormat, na)
			if err != nil {
				return fmt.Errorf("cross-certificate of %s: not_after %q: %w", id, na, err)
			}
			if !now.Before(t) {
				continue
			}
			if until.IsZero() || t.Before(until) {
				until = t
			}
			ders = append(ders, der)
		}
		return rows.Err()
	})
	if err != nil {
		return crossBundle{}, fmt.Errorf("load cross-certificates of %s: %w", id, err)
	}
	b := crossBundle{loaded: now, until: until}
	if len(ders) == 0 {
		return b, nil
	}
	// DER orders a SET OF by the encodings of its elements (X.690 §11.6).
	slices.SortFunc(ders, bytes.Compare)
	if b.der, err = pkcs7.DegenerateCertificate(bytes.Join(ders, nil)); err != nil {
		return crossBundle{}, fmt.Errorf("cross-certificates of %s: %w", id, err)
	}
	return b, nil
}
