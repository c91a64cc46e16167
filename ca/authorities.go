package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// Statuses of a CA generation: active issues; retired (replaced by a
// rollover) and revoked (its own certificate revoked by its issuer, see
// "Revoked CAs" below) issue nothing more but go on signing the CRLs and
// OCSP responses of the certificates they issued.
const (
	statusActive  = "active"
	statusRetired = "retired"
	statusRevoked = "revoked"
)

// Rollover design (issue #5 §3). A rollover makes a new generation with a
// NEW id, "<lineage>-g<N>", rather than a new key under the same id:
// everything that answers for issued certificates is keyed by the CA id -
// ca_certificates.issuer_id and serial uniqueness, the CRL number series and
// CRLs, the OCSP responder, and the URLs written into certificates
// (/pki/{id}.crt in AIA caIssuers, /pki/{id}.crl in the CRL distribution
// point, /ocsp/{id}) - so with its own id each generation keeps all of
// them, unchanged, for as long as its certificates live, and the next
// generation's certificates name URLs that will never serve another key
// (RFC 5280 §4.2.2.1, §4.2.1.13). The lineage id (the first generation's id)
// stays the name clients issue from: POST /api/v1/ca/{lineage}/certificates
// goes to the lineage's one active generation (s.current), and switching it
// is one atomic pointer store, after the new generation, its certificate
// row and its first CRL are committed. /pki/{id}.crt always serves the
// generation named {id}: the first generation's certificates name
// /pki/{lineage}.crt in their AIA, so that URL must keep serving the first
// generation; GET /api/v1/ca lists every generation with its lineage and
// status, and the issuance answer carries the chain of the generation that
// signed. A retired generation keeps its key, CRLs and OCSP.

// Revoked CAs. When the certificate of a platform CA generation is revoked
// by its issuer (revokeCA, under dual control; or carried over from a
// CRL), the transaction that revokes it also marks the generation revoked
// in ca_authorities (markRevokedCAs). A revoked generation, and every CA
// below it, issues nothing more: s.current refuses it with a policy error,
// so the API, IssueFor, the node's TLS certificate and rollovers under it
// all stop, and the serial reservation (reserveSerial) refuses it in the
// database too, for a process whose registry has not yet seen the change.
// The revoking process publishes the new registry before it answers, the
// others at their next poll (watch.go). Like a retired generation it keeps
// its key and goes on signing the CRLs and OCSP responses of the
// certificates it issued until they expire; GET /api/v1/ca shows it
// "revoked". A rollover of its lineage makes a new generation with a new
// key, which takes over the lineage id.

// registry is an immutable snapshot of the platform's CAs; rollovers
// replace it whole (Service.reg).
type registry struct {
	byID map[string]*authority
	// order lists the CAs parents first.
	order []*authority
	// active maps a lineage to its active generation.
	active map[string]*authority
}

func newRegistry() *registry {
	return &registry{byID: map[string]*authority{}, active: map[string]*authority{}}
}

func (r *registry) add(a *authority) {
	r.byID[a.id] = a
	r.order = append(r.order, a)
	if a.status == statusActive {
		r.active[a.lineage] = a
	}
}

// with returns a copy of r in which generation old, if still active, is
// retired and a added (in place of a generation of a's id the watch may
// have loaded already).
func (r *registry) with(old string, a *authority) *registry {
	n := newRegistry()
	for _, x := range r.order {
		if x.id == a.id {
			continue
		}
		if x.id == old && x.status == statusActive {
			retired := *x
			retired.status = statusRetired
			x = &retired
		}
		n.add(x)
	}
	n.add(a)
	return n
}

// lineageOf returns the generations of the lineage of CA id: id first, then
// the others, newest first; nil when id is unknown.
func (r *registry) lineageOf(id string) []*authority {
	a := r.byID[id]
	if a == nil {
		return nil
	}
	out := []*authority{a}
	for i := len(r.order) - 1; i >= 0; i-- {
		if x := r.order[i]; x.lineage == a.lineage && x != a {
			out = append(out, x)
		}
	}
	return out
}

// newest returns the generation of lineage with the highest generation
// number, or nil.
func (r *registry) newest(lineage string) *authority {
	var n *authority
	for _, x := range r.order {
		if x.lineage == lineage && (n == nil || x.generation > n.generation) {
			n = x
		}
	}
	return n
}

// revokedAbove returns the first CA, a itself or one of the platform CAs
// above it, whose certificate is revoked, or nil. A CA below a revoked CA
// cannot issue either: no chain through the revoked certificate validates
// (RFC 5280 §6.1.3).
func (r *registry) revokedAbove(a *authority) *authority {
	for x, n := a, 0; x != nil && n < 16; x, n = r.byID[x.parent], n+1 {
		if x.status == statusRevoked {
			return x
		}
		if x.external || x.parent == "" {
			break
		}
	}
	return nil
}

func (s *Service) registry() *registry {
	if r := s.reg.Load(); r != nil {
		return r
	}
	return newRegistry()
}

// authorities returns every CA generation, parents first.
func (s *Service) authorities() []*authority { return s.registry().order }

// lookup returns the CA generation id, or nil.
func (s *Service) lookup(id string) *authority { return s.registry().byID[id] }

// current returns the active generation of the lineage of id (id may name
// any generation): the CA that issues for it. A lineage whose newest
// generation is revoked, or whose issuer is, has none: every issuance path
// (the API, IssueFor, the node's TLS certificate, rollovers) asks here and
// is refused.
func (s *Service) current(id string) (*authority, error) {
	reg := s.registry()
	a := reg.byID[id]
	if a == nil {
		return nil, fmt.Errorf("%w: no CA %q", ErrNotFound, id)
	}
	cur := reg.active[a.lineage]
	if cur == nil {
		if n := reg.newest(a.lineage); n != nil && n.status == statusRevoked {
			return nil, revokedCAError(n, n)
		}
		return nil, fmt.Errorf("%w: CA %s has no active generation", ErrPolicy, a.lineage)
	}
	if r := reg.revokedAbove(cur); r != nil {
		return nil, revokedCAError(cur, r)
	}
	return cur, nil
}

// revokedCAError is the refusal to issue from a because the certificate of
// r (a itself or a CA above it) is revoked.
func revokedCAError(a, r *authority) error {
	what := "its certificate"
	if r != a {
		what = "the certificate of " + r.id + ", a CA above it,"
	}
	return fmt.Errorf("%w: CA %s is revoked: %s (serial %s) was revoked by %s; it issues nothing more and only signs the CRLs and OCSP responses of the certificates it issued",
		ErrPolicy, a.id, what, serialHex(r.cert.SerialNumber), r.parent)
}

// loadAll loads every CA row, creating the built-in hierarchies on first
// start, and resolves each signer once.
func (s *Service) loadAll(ctx context.Context) (*registry, error) {
	rows, err := readAuthorities(ctx, s.env.DB)
	if err != nil {
		return nil, err
	}
	byID := map[string]*authorityRow{}
	for _, r := range rows {
		byID[r.id] = r
	}
	reg := newRegistry()
	for _, sp := range hierarchies {
		a, err := s.loadOrCreate(ctx, sp, byID[sp.id], reg)
		if err != nil {
			return nil, fmt.Errorf("ca %s: %w", sp.id, err)
		}
		reg.add(a)
	}
	// The others, parents first: a row waits until its parent is loaded
	// unless the parent is external (an offline root, chain stored).
	pending := make([]*authorityRow, 0, len(rows))
	for _, r := range rows {
		if reg.byID[r.id] == nil {
			pending = append(pending, r)
		}
	}
	for len(pending) > 0 {
		var later []*authorityRow
		for _, r := range pending {
			if len(r.chain) == 0 && reg.byID[r.parent] == nil {
				later = append(later, r)
				continue
			}
			a, err := s.open(ctx, r, reg)
			if err != nil {
				return nil, fmt.Errorf("ca %s: %w", r.id, err)
			}
			reg.add(a)
		}
		if len(later) == len(pending) {
			return nil, fmt.Errorf("ca %s: parent %q is not a CA of this platform and no chain is stored", later[0].id, later[0].parent)
		}
		pending = later
	}
	return reg, nil
}

// open makes the authority of a stored row: its certificate, its signer
// (which must hold the certificate's key) and its chain, checked link by
// link.
func (s *Service) open(ctx context.Context, r *authorityRow, reg *registry) (*authority, error) {
	a := &authority{id: r.id, parent: r.parent, alg: hsm.Algorithm(r.algorithm), keyURI: r.keyURI,
		lineage: r.lineage, generation: r.generation, status: r.status, origin: r.origin}
	var err error
	if a.cert, err = smx509.ParseCertificate(r.cert); err != nil {
		return nil, fmt.Errorf("stored certificate: %w", err)
	}
	if a.signer, err = s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: a.keyURI, Service: keyService}); err != nil {
		return nil, fmt.Errorf("signer %s: %w", a.keyURI, err)
	}
	if !samePublicKey(a.signer.Public(), a.cert.PublicKey) {
		return nil, fmt.Errorf("key %s does not match the stored certificate", a.keyURI)
	}
	a.chain = [][]byte{a.cert.Raw}
	if parent := reg.byID[r.parent]; parent != nil && len(r.chain) == 0 {
		if err := a.cert.CheckSignatureFrom(parent.cert); err != nil {
			return nil, fmt.Errorf("certificate not signed by %s: %w", parent.id, err)
		}
		a.chain = append(a.chain, parent.chain...)
		return a, nil
	}
	if r.parent == "" {
		return a, nil // a root
	}
	ext, err := smx509.ParseCertificates(r.chain)
	if err != nil || len(ext) == 0 {
		return nil, fmt.Errorf("stored chain: %w", errors.Join(err, errors.New("empty")))
	}
	if err := a.cert.CheckSignatureFrom(ext[0]); err != nil {
		return nil, fmt.Errorf("certificate not signed by its stored issuer %s: %w", ext[0].Subject, err)
	}
	a.external = true
	for _, c := range ext {
		a.chain = append(a.chain, c.Raw)
	}
	return a, nil
}

// recordCACerts makes sure every CA certificate a platform CA signed has its
// ca_certificates row (data directories made before the rows existed get
// them here; repeated starts add nothing).
func (s *Service) recordCACerts(ctx context.Context) error {
	now := s.env.Clock.Now().UTC()
	for _, a := range s.authorities() {
		if a.parent == "" || a.external {
			continue
		}
		err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			added, err := recordCACert(ctx, tx, a.parent, a.cert, "sub-ca", now)
			if err != nil || !added {
				return err
			}
			_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: "system", Action: "ca.certificate.record",
				Object: "cert/" + a.parent + "/" + serialHex(a.cert.SerialNumber), Outcome: audit.Success,
				Details: map[string]any{"ca": a.id, "profile": "sub-ca", "subject": a.cert.Subject.String()}})
			return err
		})
		if err != nil {
			return fmt.Errorf("ca %s: %w", a.id, err)
		}
	}
	return nil
}

// RolloverRequest is the body of POST /api/v1/ca/{ca}/rollover.
type RolloverRequest struct {
	// KeyURI names the new key; by default soft:ca/<new id> when the old
	// key is in the software keystore (required otherwise).
	KeyURI string `json:"key_uri,omitempty"`
}

// Validate implements httpx.Validator.
func (r *RolloverRequest) Validate() error {
	if r.KeyURI != "" {
		if _, err := hsm.ParseURI(r.KeyURI); err != nil {
			return fmt.Errorf("key_uri: %w", err)
		}
	}
	return nil
}

// RolloverResponse describes the new generation.
type RolloverResponse struct {
	ID          string `json:"id"`
	Lineage     string `json:"lineage"`
	Generation  int    `json:"generation"`
	Previous    string `json:"previous"`
	KeyURI      string `json:"key_uri"`
	Certificate string `json:"certificate"`
}

// authorityRoutes adds the CA operators' routes (APIRoutes calls it).
func (s *Service) authorityRoutes(m *authz.Mux) {
	res := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "ca", ID: r.PathValue("ca"), Org: s.principalOrg(r)}, nil
	}
	m.Handle("POST /api/v1/ca/{ca}/rollover", authz.Rule{Action: "ca.authority.rollover", Resource: res}, s.rolloverHandler)
	m.Handle("POST /api/v1/ca/{ca}/cross-certificates", authz.Rule{Action: "ca.authority.cross", Resource: res}, s.importCross)
}

func (s *Service) rolloverHandler(w http.ResponseWriter, r *http.Request) error {
	var req RolloverRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	actor := "system"
	if p := authz.PrincipalFrom(r.Context()); p != nil {
		actor = p.Actor()
	}
	a, err := s.Rollover(r.Context(), actor, r.PathValue("ca"), req.KeyURI)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusCreated, &RolloverResponse{ID: a.id, Lineage: a.lineage, Generation: a.generation,
		Previous: a.previous, KeyURI: a.keyURI, Certificate: pemCert(a.cert.Raw)})
}

// rolled is an authority just made by a rollover, with the id of the
// generation it replaced.
type rolled struct {
	*authority
	previous string
}

// Rollover replaces the active generation of the lineage of id with a new
// key and a certificate from the same parent (see "Rollover design"
// above) that keeps the CA's identity (carryIdentity). Issuance in flight on the old generation completes on it; every
// request after the switch is signed by the new one. Roots are rolled over
// by ceremony (their successor must be distributed, usually with a
// cross-certificate), not here.
func (s *Service) Rollover(ctx context.Context, actor, id, keyURI string) (*rolled, error) {
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	reg := s.registry()
	named := reg.byID[id]
	if named == nil {
		return nil, fmt.Errorf("%w: no CA %q", ErrNotFound, id)
	}
	// The generation replaced is the active one or, in a lineage whose CA
	// certificate was revoked, the revoked one: the new generation, with a
	// new key, takes over the lineage's name.
	old := reg.active[named.lineage]
	if old == nil {
		if old = reg.newest(named.lineage); old == nil || old.status != statusRevoked {
			return nil, fmt.Errorf("%w: CA %s has no active generation", ErrPolicy, named.lineage)
		}
	}
	parent := reg.byID[old.parent]
	switch {
	case old.parent == "":
		return nil, fmt.Errorf("%w: %s is a root; a root is rolled over by ceremony (govtrust ca init-root, cross-sign)", ErrPolicy, old.id)
	case parent == nil || old.external:
		return nil, fmt.Errorf("%w: the parent of %s is offline; roll it over by ceremony (govtrust ca init-sub, import)", ErrPolicy, old.id)
	}
	if r := reg.revokedAbove(parent); r != nil {
		return nil, revokedCAError(parent, r)
	}
	gen := 0
	for _, x := range reg.order {
		if x.lineage == old.lineage {
			gen = max(gen, x.generation)
		}
	}
	gen++
	newID := old.lineage + "-g" + strconv.Itoa(gen)
	if !ceremony.ValidID(newID) || reg.byID[newID] != nil {
		return nil, fmt.Errorf("%w: cannot name generation %d of %s", ErrConflict, gen, old.lineage)
	}
	if err := s.env.DB.Read(ctx, func(q store.Querier) error { return checkDeltaTwins(ctx, q, newID) }); err != nil {
		return nil, fmt.Errorf("rollover %s: generation %d: %w", old.id, gen, err)
	}
	if keyURI == "" {
		if !strings.HasPrefix(old.keyURI, "soft:") {
			return nil, fmt.Errorf("%w: key_uri is required when the CA key is not in the software keystore", ErrRequest)
		}
		keyURI = "soft:ca/" + newID
	}
	ctx = audit.WithActor(ctx, actor)
	if _, err := s.env.Keys.Backend(keyURI); err != nil {
		return nil, fmt.Errorf("%w: key_uri %s: no key backend of this node serves it", ErrRequest, keyURI)
	}
	// The key and its audit record are made whole even if the client
	// leaves meanwhile: a key made but not reported would be left behind.
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	_, err := s.env.Keys.CreateKey(kctx, &hsm.CreateKeyRequest{URI: keyURI, Algorithm: old.alg, Usage: hsm.UsageSign, Service: keyService})
	kcancel()
	if err != nil {
		switch {
		case errors.Is(err, hsm.ErrExists): // another CA's key, or a concurrent rollover's
			return nil, fmt.Errorf("%w: rollover %s: key %s exists; a new generation needs a new key: %w", ErrConflict, old.id, keyURI, err)
		case errors.Is(err, hsm.ErrUnsupported):
			return nil, fmt.Errorf("%w: rollover %s: key %s: %w", ErrPolicy, old.id, keyURI, err)
		case errors.Is(err, hsm.ErrBadURI): // a name the backend refuses (soft:UPPER, soft:../x)
			return nil, fmt.Errorf("%w: key_uri %s: %w", ErrRequest, keyURI, err)
		}
		return nil, fmt.Errorf("rollover %s: create key %s: %w", old.id, keyURI, err)
	}
	committed := false
	defer func() {
		// A key no CA row names would block the next attempt (create
		// refuses an existing key): destroy it if the rollover failed,
		// even when the client has gone (its context is cancelled).
		if !committed {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := s.env.Keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: keyURI, Service: keyService}); err != nil {
				s.env.Logger.Error("rollover failed and its new key could not be deleted", "key", keyURI, "err", err)
			}
		}
	}()
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: keyURI, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("rollover %s: signer %s: %w", old.id, keyURI, err)
	}
	now := s.env.Clock.Now().UTC()
	der, err := s.signSubCAName(pkixName(old.cert), old.cert, signer, parent, now)
	if err != nil {
		return nil, fmt.Errorf("rollover %s: %w", old.id, err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("rollover %s: parse new certificate: %w", old.id, err)
	}
	a := &authority{id: newID, parent: parent.id, alg: old.alg, keyURI: keyURI, cert: cert, signer: signer,
		chain: append([][]byte{der}, parent.chain...), lineage: old.lineage, generation: gen, status: statusActive, origin: "rollover"}
	rec := audit.Record{Actor: actor, Action: "ca.authority.rollover", Object: "ca/" + old.lineage, Outcome: audit.Success,
		Details: map[string]any{"previous": old.id, "new": newID, "generation": gen, "key_uri": keyURI,
			"serial": serialHex(cert.SerialNumber), "fingerprint": ceremony.Fingerprint(der), "not_after": cert.NotAfter.Format(time.RFC3339)}}
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		// Only an active generation is retired: a revoked one (here, or
		// in another process meanwhile) stays revoked.
		if err := checkDeltaTwins(ctx, tx, newID); err != nil {
			return err
		}
		if err := checkOfflineID(ctx, tx, newID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE ca_authorities SET status = ? WHERE id = ? AND status = ?", statusRetired, old.id, statusActive); err != nil {
			return fmt.Errorf("retire %s: %w", old.id, err)
		}
		if err := insertAuthority(ctx, tx, authorityRow{id: newID, algorithm: string(old.alg), keyURI: keyURI, cert: der, parent: parent.id,
			created: now, lineage: old.lineage, generation: gen, status: statusActive, origin: "rollover"}); err != nil {
			return err
		}
		_, err := recordCACert(ctx, tx, parent.id, cert, "sub-ca", now)
		return err
	})
	if err != nil {
		if store.IsUniqueViolation(err) { // another process made generation gen first
			return nil, fmt.Errorf("%w: rollover %s: generation %s exists: %w", ErrConflict, old.id, newID, err)
		}
		return nil, fmt.Errorf("rollover %s: record: %w", old.id, err)
	}
	committed = true
	// The new generation has a CRL before it issues anything; a failure
	// leaves it stale for the CRL loop, as after a revocation.
	if _, err := s.generateCRL(ctx, a); err != nil {
		s.setStale(a.id, true)
		s.env.Logger.Error("first CRL of the new generation failed; the next tick retries", "ca", a.id, "err", err)
	}
	// The parent's CRL now covers one more certificate; nothing is revoked,
	// so it need not change.
	// On the registry as it is now: the watch (watch.go) may have published
	// another change meanwhile.
	for {
		cur := s.reg.Load()
		if s.reg.CompareAndSwap(cur, cur.with(old.id, a)) {
			break
		}
	}
	s.env.Logger.Info("certificate authority rolled over", "lineage", old.lineage, "previous", old.id, "new", newID, "key", keyURI)
	return &rolled{authority: a, previous: old.id}, nil
}

// pkixName is a certificate's subject as a pkix.Name.
func pkixName(c *smx509.Certificate) pkix.Name { return c.Subject }

// The extensions a new generation takes from the one it replaces
// (carryIdentity): certificatePolicies, policyMappings and those of
// ceremony.Constraints (nameConstraints, policyConstraints,
// inhibitAnyPolicy, extKeyUsage).
var (
	oidCarryPolicies       = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidCarryPolicyMappings = asn1.ObjectIdentifier{2, 5, 29, 33}
	oidCarryExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	carriedExtensions      = []asn1.ObjectIdentifier{oidCarryPolicies, oidCarryPolicyMappings, oidCarryExtKeyUsage,
		{2, 5, 29, 30}, {2, 5, 29, 36}, {2, 5, 29, 54}}
)

// carryIdentity makes res, the sub-ca profile's template for the next
// generation of the CA whose certificate is prev, keep what was reviewed
// when prev was made (a ceremony file, or the built-in hierarchy): a
// rollover changes the key, not the CA. From prev it takes the subject
// (byte for byte: every attribute, in its order and encoding), the
// certificatePolicies and policyMappings extensions (with their
// qualifiers), the pathLenConstraint or its absence, the nameConstraints,
// policyConstraints, inhibitAnyPolicy and extKeyUsage
// (ceremony.Constraints), and the length of its validity, from the
// profile's notBefore and clamped to the parent's notAfter (parent issued
// prev). The lint expectations follow, so the lints check the carried
// values. The built-in generations, made with the profile, carry what the
// profile gives them.
func carryIdentity(res *profile.Result, prev, parent *smx509.Certificate, now time.Time) error {
	t := res.Template
	t.RawSubject, t.Subject = bytes.Clone(prev.RawSubject), prev.Subject
	isCarried := func(id asn1.ObjectIdentifier) bool {
		return slices.ContainsFunc(carriedExtensions, func(c asn1.ObjectIdentifier) bool { return c.Equal(id) })
	}
	t.ExtraExtensions = slices.DeleteFunc(t.ExtraExtensions, func(e pkix.Extension) bool { return isCarried(e.Id) })
	t.PermittedDNSDomainsCritical, t.PermittedDNSDomains, t.ExcludedDNSDomains = false, nil, nil
	t.PermittedIPRanges, t.ExcludedIPRanges, t.PermittedEmailAddresses, t.ExcludedEmailAddresses = nil, nil, nil, nil
	t.PermittedURIDomains, t.ExcludedURIDomains = nil, nil
	t.ExtKeyUsage, t.UnknownExtKeyUsage = nil, nil
	for _, e := range prev.Extensions {
		if e.Id.Equal(oidCarryPolicies) || e.Id.Equal(oidCarryPolicyMappings) {
			t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: e.Id, Critical: e.Critical, Value: bytes.Clone(e.Value)})
		}
	}
	constraints := ceremony.Constraints(prev)
	t.ExtraExtensions = append(t.ExtraExtensions, constraints...)
	res.Expect.Policies = append([]asn1.ObjectIdentifier{}, prev.PolicyIdentifiers...)
	res.Expect.ExtKeyUsage = []asn1.ObjectIdentifier{}
	for _, e := range constraints {
		if e.Id.Equal(oidCarryExtKeyUsage) {
			if _, err := asn1.Unmarshal(e.Value, &res.Expect.ExtKeyUsage); err != nil {
				return fmt.Errorf("extKeyUsage of the current generation: %w", err)
			}
		}
	}
	if n, ok := ceremony.PathLen(prev); ok {
		t.MaxPathLen, t.MaxPathLenZero = n, n == 0
		res.Expect.PathLen = &n
	} else {
		t.MaxPathLen, t.MaxPathLenZero = -1, false
		res.Expect.PathLen = nil
	}
	length := prev.NotAfter.Sub(prev.NotBefore)
	t.NotAfter = t.NotBefore.Add(length)
	if t.NotAfter.After(parent.NotAfter) {
		t.NotAfter = parent.NotAfter.UTC()
	}
	if !t.NotAfter.After(now) {
		return fmt.Errorf("%w: the parent's certificate expires at %s: no room for a new generation", ErrPolicy, parent.NotAfter.UTC().Format(time.RFC3339))
	}
	res.Expect.MaxValidity = max(res.Expect.MaxValidity, length+time.Second)
	return nil
}

// ImportRequest is a CA made elsewhere (a sub-CA certificate signed by an
// offline root in a ceremony) to be run by this node.
type ImportRequest struct {
	ID string
	// Cert is the CA certificate; Chain its issuer's certificates, issuer
	// first, up to a self-signed root.
	Cert  *smx509.Certificate
	Chain []*smx509.Certificate
	// KeyURI names the CA key in the key manager (made by `ca init-sub`).
	KeyURI string
	// CeremonySM3 is the hex SM3 of the ceremony file, when one is given.
	CeremonySM3 string
	Now         time.Time
}

// ImportResult says what Import recorded.
type ImportResult struct {
	ID, Parent, Algorithm, Fingerprint string
	// External is set when the parent is not a CA of this platform.
	External bool
}

// Import records a CA made by ceremony in the database of a stopped node,
// after checking that keys holds its key, that the certificate may issue
// certificates and CRLs, and that the chain verifies (ceremony.CheckCA);
// the node serves it from its next start. db must be migrated with the CA
// service's migrations. The record and its audit record commit together.
func Import(ctx context.Context, db *store.DB, log *audit.Log, keys hsm.KeyManager, req ImportRequest) (*ImportResult, error) {
	if !ceremony.ValidID(req.ID) {
		return nil, fmt.Errorf("%w: CA id %q: want lowercase letters, digits and '-'", ErrRequest, req.ID)
	}
	signer, err := keys.Signer(ctx, &hsm.SignerRequest{URI: req.KeyURI, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("import %s: key %s: %w", req.ID, req.KeyURI, err)
	}
	if err := ceremony.CheckCA(req.Cert, req.Chain, signer.Public(), req.Now); err != nil {
		return nil, fmt.Errorf("%w: import %s: %w", ErrPolicy, req.ID, err)
	}
	alg, err := ceremony.Algorithm(req.Cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: import %s: %w", ErrPolicy, req.ID, err)
	}
	res := &ImportResult{ID: req.ID, Algorithm: string(alg), Fingerprint: ceremony.Fingerprint(req.Cert.Raw)}
	row := authorityRow{id: req.ID, algorithm: string(alg), keyURI: req.KeyURI, cert: req.Cert.Raw, created: req.Now,
		origin: "imported", ceremonySM3: req.CeremonySM3}
	details := map[string]any{"fingerprint": res.Fingerprint, "key_uri": req.KeyURI, "algorithm": res.Algorithm,
		"subject": req.Cert.Subject.String(), "serial": serialHex(req.Cert.SerialNumber), "not_after": req.Cert.NotAfter.UTC().Format(time.RFC3339)}
	if req.CeremonySM3 != "" {
		details["ceremony_sm3"] = req.CeremonySM3
	}
	rec := audit.Record{Actor: audit.ActorFrom(ctx), Action: "ca.authority.import", Object: "ca/" + req.ID, Outcome: audit.Success, Details: details}
	_, err = log.Do(ctx, db, rec, func(tx *store.Tx) error {
		rows, err := loadAuthorities(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			switch {
			case r.id == req.ID:
				return fmt.Errorf("%w: CA %s exists", ErrConflict, req.ID)
			case r.keyURI == req.KeyURI:
				return fmt.Errorf("%w: key %s is the key of CA %s", ErrConflict, req.KeyURI, r.id)
			case certifiesKey(r.cert, req.Cert.PublicKey):
				// The same key under another URI (a PKCS#11 key has many):
				// a second CA with this key would be one no CRL of the
				// first covers.
				return fmt.Errorf("%w: key %s is the key of CA %s (the same public key, recorded as %s); a new CA needs a key of its own", ErrConflict, req.KeyURI, r.id, r.keyURI)
			case string(r.cert) == string(req.Chain[0].Raw):
				res.Parent = r.id
			}
		}
		if err := checkDeltaTwins(ctx, tx, req.ID); err != nil {
			return err
		}
		if err := checkOfflineID(ctx, tx, req.ID); err != nil {
			return err
		}
		if err := checkRolloverName(ctx, tx, req.ID, res.Parent != ""); err != nil {
			return err
		}
		if res.Parent == "" {
			// The issuer is an offline root: keep its chain so the node can
			// serve the full chain; the parent is named after it.
			res.External = true
			res.Parent = "offline-" + strings.ToLower(strings.ReplaceAll(ceremony.Fingerprint(req.Chain[0].Raw)[:23], ":", ""))
			for _, c := range req.Chain {
				row.chain = append(row.chain, c.Raw...)
			}
		}
		row.parent = res.Parent
		details["parent"], details["external_parent"] = res.Parent, res.External
		if err := insertAuthority(ctx, tx, row); err != nil {
			return err
		}
		if !res.External {
			if _, err := recordCACert(ctx, tx, res.Parent, req.Cert, "sub-ca", req.Now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if store.IsUniqueViolation(err) {
			return nil, fmt.Errorf("%w: import %s: %w", ErrConflict, req.ID, err)
		}
		return nil, fmt.Errorf("import %s: %w", req.ID, err)
	}
	return res, nil
}

// certifiesKey reports whether the certificate der certifies pub (their
// SubjectPublicKeyInfo are the same).
func certifiesKey(der []byte, pub crypto.PublicKey) bool {
	c, err := smx509.ParseCertificate(der)
	return err == nil && samePublicKey(c.PublicKey, pub)
}

// RecordCACertificate records a CA certificate signed offline (a sub-CA or a
// cross-certificate from a ceremony) under its issuer when the issuer is a
// CA of this database, so CRLs, OCSP and serial uniqueness cover it. It
// returns the issuer's id, or "" when no CA here issued it.
func RecordCACertificate(ctx context.Context, db *store.DB, log *audit.Log, cert *smx509.Certificate, prof string, now time.Time) (string, error) {
	var issuer string
	rows, err := readAuthorities(ctx, db)
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		c, err := smx509.ParseCertificate(r.cert)
		if err == nil && string(c.RawSubject) == string(cert.RawIssuer) && cert.CheckSignatureFrom(c) == nil {
			issuer = r.id
			break
		}
	}
	if issuer == "" {
		return "", nil
	}
	rec := audit.Record{Actor: audit.ActorFrom(ctx), Action: "ca.certificate.record", Object: "cert/" + issuer + "/" + serialHex(cert.SerialNumber),
		Outcome: audit.Success, Details: map[string]any{"profile": prof, "subject": cert.Subject.String()}}
	_, err = log.Do(ctx, db, rec, func(tx *store.Tx) error {
		_, err := recordCACert(ctx, tx, issuer, cert, prof, now)
		return err
	})
	if err != nil {
		return "", err
	}
	return issuer, nil
}
