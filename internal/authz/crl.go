package authz

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
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

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CRL and certificate extensions the checker reads (RFC 5280 §4.2.1.13,
// §5.2, §5.3).
var (
	oidExtAKI             = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtCRLNumber       = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtDeltaCRL        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidExtIDP             = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidExtCRLDP           = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtReasonCode      = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidExtInvalidityDate  = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidExtHoldInstruction = asn1.ObjectIdentifier{2, 5, 29, 23}
)

// reasonRemoveFromCRL is the CRLReason of a delta CRL entry that takes a
// certificate off its base CRL (RFC 5280 §5.3.1).
const reasonRemoveFromCRL = 8

// reasons is a set of ReasonFlags (RFC 5280 §4.2.1.13): bit i is flag i.
type reasons uint16

// allReasons is keyCompromise (1) through aACompromise (8); flag 0 is
// "unused" and names no reason.
const allReasons reasons = 0x1fe

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
	idp      *idp
	complete *loadedCRL
	deltas   []*loadedCRL // newer than complete, newest first
}

// loadedCRL is a CRL with the extensions crypto/x509 leaves raw.
type loadedCRL struct {
	rl      *x509.RevocationList
	base    *big.Int // BaseCRLNumber of a delta CRL; nil for a complete CRL
	idp     *idp     // nil when absent
	scope   string
	entries map[string]*x509.RevocationListEntry // by serial
}

// idp is an issuingDistributionPoint (RFC 5280 §5.2.5).
type idp struct {
	names    []string // the distributionPoint as DER GeneralNames; nil when absent
	onlyUser bool
	onlyCA   bool
	onlyAttr bool
	reasons  reasons // onlySomeReasons; allReasons when absent
	indirect bool
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
	l := &loadedCRL{rl: rl}
	var idpRaw []byte
	seen := map[string]bool{}
	for _, ext := range rl.Extensions {
		id := ext.Id.String()
		if seen[id] {
			return nil, fmt.Errorf("extension %s appears twice", id)
		}
		seen[id] = true
		switch {
		case ext.Id.Equal(oidExtAKI), ext.Id.Equal(oidExtCRLNumber):
			// crypto/x509 has parsed them.
		case ext.Id.Equal(oidExtDeltaCRL):
			v := cryptobyte.String(ext.Value)
			l.base = new(big.Int)
			if !v.ReadASN1Integer(l.base) || !v.Empty() || l.base.Sign() < 0 {
				return nil, errors.New("malformed deltaCRLIndicator")
			}
		case ext.Id.Equal(oidExtIDP):
			p, err := parseIDP(ext.Value, rl.RawIssuer)
			if err != nil {
				return nil, fmt.Errorf("malformed issuingDistributionPoint: %w", err)
			}
			if p.indirect {
				return nil, errors.New("indirect CRLs are not supported (issuingDistributionPoint indirectCRL, RFC 5280 §5.2.5)")
			}
			l.idp, idpRaw = p, ext.Value
		default:
			if ext.Critical {
				return nil, fmt.Errorf("unrecognised critical extension %s (RFC 5280 §5.2)", id)
			}
		}
	}
	if l.base != nil && rl.Number == nil {
		return nil, errors.New("delta CRL without a cRLNumber (RFC 5280 §5.2.4)")
	}
	l.entries = make(map[string]*x509.RevocationListEntry, len(rl.RevokedCertificateEntries))
	for i := range rl.RevokedCertificateEntries {
		e := &rl.RevokedCertificateEntries[i]
		for _, ext := range e.Extensions {
			// reasonCode is processed; invalidityDate and holdInstructionCode
			// say nothing about whether the certificate is revoked now.
			// certificateIssuer (indirect CRLs) is not supported.
			if ext.Critical && !ext.Id.Equal(oidExtReasonCode) && !ext.Id.Equal(oidExtInvalidityDate) && !ext.Id.Equal(oidExtHoldInstruction) {
				return nil, fmt.Errorf("entry %x: unrecognised critical entry extension %s (RFC 5280 §5.3)", e.SerialNumber, ext.Id)
			}
		}
		if k := e.SerialNumber.Text(16); l.entries[k] == nil {
			l.entries[k] = e
		}
	}
	l.scope = hex.EncodeToString(rl.AuthorityKeyId) + "/" + hex.EncodeToString(idpRaw)
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
	dps := distributionPoints(cert)
	var covered reasons
	var why []string
	for _, v := range views {
		if len(v.s.aki) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(v.s.aki, issuer.SubjectKeyId) {
			continue // another key of a CA with the same name
		}
		mask := v.s.idp.covers(cert, dps)
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
			if e.ReasonCode != reasonRemoveFromCRL {
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
	if covered&allReasons == allReasons {
		return false, nil
	}
	if len(why) == 0 {
		why = append(why, "only CRLs of another key of the issuer")
	}
	return true, fmt.Errorf("no usable complete CRL of %s for certificate %x: %s", cert.Issuer, cert.SerialNumber, strings.Join(why, "; "))
}

func issuerName(n pkix.Name) string { return n.String() }

// covers returns the reasons for which a CRL with this
// issuingDistributionPoint gives the status of cert (RFC 5280 §6.3.3 (b)),
// none when it does not apply; dps are cert's distribution points.
func (p *idp) covers(cert *x509.Certificate, dps []distributionPoint) reasons {
	if p == nil {
		return allReasons
	}
	isCA := cert.BasicConstraintsValid && cert.IsCA
	if p.onlyAttr || p.onlyUser && isCA || p.onlyCA && !isCA {
		return 0
	}
	if p.names == nil {
		return p.reasons
	}
	var m reasons
	for _, dp := range dps {
		for _, n := range dp.names {
			if slices.Contains(p.names, n) {
				m |= dp.reasons
				break
			}
		}
	}
	return m & p.reasons
}

// distributionPoint is a DistributionPoint of a certificate whose CRL its
// issuer signs: the names as DER GeneralNames and the reasons.
type distributionPoint struct {
	names   []string
	reasons reasons
}

// distributionPoints returns the CRL distribution points of cert that name
// their CRL and have no cRLIssuer (indirect CRLs are not supported), and
// last the issuer's name for all reasons: RFC 5280 §6.3.3 ends with the CRLs
// "not specified in a distribution point but issued by the certificate
// issuer", taken to have that name. A malformed extension adds nothing.
func distributionPoints(cert *x509.Certificate) []distributionPoint {
	var out []distributionPoint
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidExtCRLDP) {
			continue
		}
		s := cryptobyte.String(ext.Value)
		var seq cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
			break
		}
		for !seq.Empty() {
			var dp, dpn cryptobyte.String
			var hasName bool
			if !seq.ReadASN1(&dp, cbasn1.SEQUENCE) || !dp.ReadOptionalASN1(&dpn, &hasName, tagDPName) {
				break
			}
			d := distributionPoint{reasons: allReasons}
			if dp.PeekASN1Tag(tagReasons) {
				var bits cryptobyte.String
				r, ok := reasons(0), dp.ReadASN1(&bits, tagReasons)
				if ok {
					r, ok = parseReasonFlags(bits)
				}
				if !ok {
					continue
				}
				d.reasons = r
			}
			if !hasName || !dp.Empty() { // no name, or a cRLIssuer
				continue
			}
			names, ok := parseDPName(dpn, cert.RawIssuer)
			if !ok {
				continue
			}
			d.names = names
			out = append(out, d)
		}
	}
	if n, ok := directoryName(cert.RawIssuer); ok {
		out = append(out, distributionPoint{names: []string{n}, reasons: allReasons})
	}
	return out
}

// Tags of the DistributionPoint and IssuingDistributionPoint fields (RFC
// 5280 §4.2.1.13, §5.2.5; IMPLICIT, so a CHOICE inside [0] is explicit).
var (
	tagDPName   = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagFullName = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagRelative = cbasn1.Tag(1).Constructed().ContextSpecific()
	tagReasons  = cbasn1.Tag(1).ContextSpecific()
	tagDirName  = cbasn1.Tag(4).Constructed().ContextSpecific()
)

// parseIDP parses an issuingDistributionPoint; issuer is the CRL's issuer
// name, which a nameRelativeToCRLIssuer extends.
func parseIDP(v []byte, issuer []byte) (*idp, error) {
	s := cryptobyte.String(v)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("not a SEQUENCE")
	}
	p := &idp{reasons: allReasons}
	if seq.PeekASN1Tag(tagDPName) {
		var dpn cryptobyte.String
		names, ok := []string(nil), seq.ReadASN1(&dpn, tagDPName)
		if ok {
			names, ok = parseDPName(dpn, issuer)
		}
		if !ok {
			return nil, errors.New("malformed distributionPoint")
		}
		p.names = names
	}
	for i, f := range []*bool{&p.onlyUser, &p.onlyCA} {
		if err := readFlag(&seq, cbasn1.Tag(i+1).ContextSpecific(), f); err != nil {
			return nil, err
		}
	}
	if tag := cbasn1.Tag(3).ContextSpecific(); seq.PeekASN1Tag(tag) {
		var bits cryptobyte.String
		r, ok := reasons(0), seq.ReadASN1(&bits, tag)
		if ok {
			r, ok = parseReasonFlags(bits)
		}
		if !ok {
			return nil, errors.New("malformed onlySomeReasons")
		}
		p.reasons = r
	}
	for i, f := range []*bool{&p.indirect, &p.onlyAttr} {
		if err := readFlag(&seq, cbasn1.Tag(i+4).ContextSpecific(), f); err != nil {
			return nil, err
		}
	}
	if !seq.Empty() {
		return nil, errors.New("unknown fields")
	}
	n := 0
	for _, f := range []bool{p.onlyUser, p.onlyCA, p.onlyAttr} {
		if f {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("more than one of onlyContainsUserCerts, onlyContainsCACerts and onlyContainsAttributeCerts")
	}
	return p, nil
}

// readFlag reads an optional [tag] IMPLICIT BOOLEAN DEFAULT FALSE.
func readFlag(s *cryptobyte.String, tag cbasn1.Tag, f *bool) error {
	if !s.PeekASN1Tag(tag) {
		return nil
	}
	var b cryptobyte.String
	if !s.ReadASN1(&b, tag) || len(b) != 1 {
		return fmt.Errorf("malformed BOOLEAN [%d]", tag&0x1f)
	}
	*f = b[0] != 0
	return nil
}

// parseReasonFlags reads the contents of a ReasonFlags BIT STRING.
func parseReasonFlags(b []byte) (reasons, bool) {
	if len(b) == 0 || b[0] > 7 || len(b) == 1 && b[0] != 0 {
		return 0, false
	}
	var r reasons
	for i, o := range b[1:] {
		for j := range 8 {
			if bit := i*8 + j; o&(0x80>>j) != 0 && bit < 16 {
				r |= 1 << bit
			}
		}
	}
	return r & allReasons, true
}

// parseDPName reads the contents of a distributionPoint [0]: a fullName or a
// nameRelativeToCRLIssuer, which extends issuer. It returns the names as DER
// GeneralNames, the form in which they are compared.
func parseDPName(dpn cryptobyte.String, issuer []byte) ([]string, bool) {
	var inner cryptobyte.String
	switch {
	case dpn.PeekASN1Tag(tagFullName):
		if !dpn.ReadASN1(&inner, tagFullName) || !dpn.Empty() {
			return nil, false
		}
		var names []string
		for !inner.Empty() {
			var gn cryptobyte.String
			var tag cbasn1.Tag
			if !inner.ReadAnyASN1Element(&gn, &tag) || tag&0xc0 != 0x80 {
				return nil, false
			}
			names = append(names, string(gn))
		}
		return names, len(names) > 0
	case dpn.PeekASN1Tag(tagRelative):
		if !dpn.ReadASN1(&inner, tagRelative) || !dpn.Empty() || inner.Empty() {
			return nil, false
		}
		s := cryptobyte.String(issuer)
		var rdns cryptobyte.String
		if !s.ReadASN1(&rdns, cbasn1.SEQUENCE) {
			return nil, false
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(rdns)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(inner) })
		})
		name, err := b.Bytes()
		if err != nil {
			return nil, false
		}
		n, ok := directoryName(name)
		return []string{n}, ok
	}
	return nil, false
}

// directoryName returns the DER GeneralName directoryName of a DER Name.
func directoryName(name []byte) (string, bool) {
	var b cryptobyte.Builder
	b.AddASN1(tagDirName, func(b *cryptobyte.Builder) { b.AddBytes(name) })
	out, err := b.Bytes()
	return string(out), err == nil && len(name) > 0
}
