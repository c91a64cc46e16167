package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"embed"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// keyService is the key-manager service name of every CA key (key
// separation, ARCHITECTURE.md §3: the TSA or seal API cannot use them).
const keyService = "ca"

// Errors of the CA; each wraps the httpx sentinel that gives its status.
var (
	ErrNotFound = fmt.Errorf("ca: not found: %w", httpx.ErrNotFound)
	ErrConflict = fmt.Errorf("ca: conflict: %w", httpx.ErrConflict)
	ErrPolicy   = fmt.Errorf("ca: refused: %w", httpx.ErrPolicy)
	ErrRequest  = fmt.Errorf("ca: invalid request: %w", httpx.ErrBadRequest)
)

// spec describes one CA the platform creates on first start (CONTRACT.md,
// "Certificate authorities").
type spec struct {
	id, parent string
	alg        hsm.Algorithm
	cn         string
}

// hierarchies lists the CAs, parents first.
var hierarchies = []spec{
	{id: "sm2-root", alg: hsm.SM2, cn: "govtrust SM2 Root CA"},
	{id: "sm2-issuing", parent: "sm2-root", alg: hsm.SM2, cn: "govtrust SM2 Issuing CA"},
	{id: "ecdsa-root", alg: hsm.ECDSAP256, cn: "govtrust ECDSA Root CA"},
	{id: "ecdsa-issuing", parent: "ecdsa-root", alg: hsm.ECDSAP256, cn: "govtrust ECDSA Issuing CA"},
}

// authority is a CA in memory: its certificate, its signer (resolved once at
// Start) and its chain up to the root. An authority is never changed once
// published in the registry (authorities.go); a rollover publishes a new
// one.
type authority struct {
	id, parent string
	alg        hsm.Algorithm
	keyURI     string
	cert       *smx509.Certificate
	signer     crypto.Signer
	// chain is the DER of this CA's certificate followed by its parents'.
	chain [][]byte
	// lineage is the CA id clients issue from, generation its rollover
	// count from 1, status active or retired, origin builtin, imported or
	// rollover (see authorities.go).
	lineage, status, origin string
	generation              int
	// external is set when the parent is not a platform CA (an offline
	// root): parent then names it but no authority of the registry.
	external bool
}

// Service is the certificate authority service.
type Service struct {
	env      *node.Env
	profiles map[string]*profile.Profile
	// cas holds the CAs loaded at Start. It is never written afterwards, so
	// it may be read without locks, but it does not show later rollovers:
	// code that must see them uses s.authority, s.current and
	// s.authorities, which read the registry.
	cas  map[string]*authority
	reg  atomic.Pointer[registry]
	vars map[string]string
	// rollMu serialises rollovers in this process.
	rollMu sync.Mutex
	// orgWarned holds the unregistered organisations already warned about
	// in dev mode (orgbinding.go), so the log says it once per org.
	orgWarned sync.Map

	// crlMu serialises CRL generation in this process; stale marks CAs
	// whose last CRL generation failed.
	crlMu   sync.Mutex
	staleMu sync.Mutex
	stale   map[string]bool
	// stopCRL ends the CRL loop, which closes crlDone.
	stopCRL context.CancelFunc
	crlDone chan struct{}

	// kmc generates and escrows the encryption keys of dual certificates
	// (dual_cert.go); nil when none is wired in.
	kmc KMC
	// batch shares the commits of concurrent issuances (sign.go).
	batch batchHolder
	// ocsp is the OCSP responders and response cache while started
	// (ocsp_cache.go).
	ocsp atomic.Pointer[ocspState]
	// crlState is the CRL schedule, coalescing queues and metrics
	// (crl.go).
	crlState atomic.Pointer[crlState]
	// keyAlerts counts keyCompromise reports left to a CA operator
	// (keysweep.go).
	keyAlerts keyAlerts
	// stopWatchFn ends the registry watch (watch.go), which closes
	// watchDone.
	stopWatchFn context.CancelFunc
	watchDone   chan struct{}
	// ocspIssuers holds each CA certificate's CertID hashes
	// (*smx509.Certificate → *ocsp.Issuer, ocsp.go ocspMatches).
	ocspIssuers sync.Map
	// cross serves /pki/{ca}-cross.p7c (cross.go).
	cross crossCache
	// revokedHooks are told of revocations (revocation_watch.go).
	hookMu       sync.Mutex
	revokedHooks []func(*smx509.Certificate, *big.Int)
}

var (
	_ node.Service      = (*Service)(nil)
	_ node.Migrator     = (*Service)(nil)
	_ node.APIRouter    = (*Service)(nil)
	_ node.PublicRouter = (*Service)(nil)
)

// New returns the CA service with the built-in profiles.
func New() *Service {
	return &Service{profiles: profile.Builtin(), cas: map[string]*authority{}, stale: map[string]bool{}}
}

// Name implements node.Service.
func (s *Service) Name() string { return "ca" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations {
	return []store.Migrations{store.EmbeddedMigrations("ca", migrations, "migrations")}
}

// Start loads the CA hierarchies, creating what is missing, and resolves
// every CA signer once.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	s.env = env
	s.vars = urlVars(env)
	if strings.HasPrefix(s.vars["base"], "https:") {
		for name, p := range s.profiles {
			if p.Purpose == lint.PurposeTLSServer {
				// BR §7.1.2.7 and zlint: CRL distribution points and AIA
				// URLs are http; so say the CA's own BR lints.
				env.Logger.Error("ca.public_url is https: the Baseline Requirements ask for http CRL and AIA URLs in TLS server certificates, so every request for this profile will be refused (422) until ca.public_url is an http URL", "profile", name, "public_url", s.vars["base"])
			}
		}
	}
	ctx = audit.WithActor(ctx, "system")
	reg, err := s.loadAll(ctx)
	if err != nil {
		return err
	}
	for _, a := range reg.order {
		s.cas[a.id] = a
		// A pair made before such pairs were refused (checkDeltaTwins).
		if twin := reg.byID[a.id+"-delta"]; twin != nil {
			env.Logger.Error("two CA ids share a CRL URL: it serves the full CRL of the second, and the delta CRL of the first is not served",
				"url", "/pki/"+twin.id+".crl", "first", a.id, "second", twin.id)
		}
	}
	s.reg.Store(reg)
	if err := s.recordCACerts(ctx); err != nil {
		return err
	}
	if n, err := s.fillKeyHashes(ctx); err != nil {
		return err
	} else if n > 0 {
		env.Logger.Info("key hashes of earlier certificates recorded", "certificates", n)
	}
	if n, err := s.sweepBlockedKeys(ctx); err != nil {
		return err
	} else if n > 0 {
		env.Logger.Warn("certificates of keys revoked for keyCompromise revoked with them", "certificates", n)
	}
	if n, err := s.fillPairs(ctx); err != nil {
		return err
	} else if n > 0 {
		env.Logger.Info("dual pairs issued earlier recorded from the KMC's escrows", "pairs", n)
	}
	if n, err := s.sweepPairs(ctx); err != nil {
		return err
	} else if n > 0 {
		env.Logger.Warn("encryption certificates of revoked signing certificates revoked with them", "certificates", n)
	}
	if err := s.afterRestore(ctx); err != nil {
		return err
	}
	// Every CA, the roots too (their CRL is the ARL of RFC 5280 §5), has a
	// CRL before anything is served.
	if err := s.refreshCRLs(ctx); err != nil {
		return fmt.Errorf("ca: first CRLs: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopCRL, s.crlDone = cancel, make(chan struct{})
	go s.crlLoop(loopCtx, s.crlDone)
	s.startOCSP(ctx)
	s.startWatch(ctx)
	return nil
}

// urlVars fills the {base}, {ldap} and {ldap_base} of the profiles' URL
// templates: ca.public_url and ca.public_ldap_url, or, when they are empty
// (development), the configured listeners; and the directory's base DN (the
// LDAP CRL distribution point names the CA's directory entry,
// cn=<ca>,ou=ca,<base DN>, CONTRACT.md "Directory").
func urlVars(env *node.Env) map[string]string {
	base, ldap, ldapBase := "http://127.0.0.1:8080", "ldap://127.0.0.1:3389", "dc=govtrust,dc=local"
	if c := env.Config; c != nil {
		switch {
		case c.CA.PublicURL != "":
			base = c.CA.PublicURL
		case c.Listen.HTTP != "":
			base = "http://" + c.Listen.HTTP
		}
		switch {
		case c.CA.PublicLDAPURL != "":
			ldap = c.CA.PublicLDAPURL
		case c.Listen.LDAP != "":
			ldap = "ldap://" + c.Listen.LDAP
		}
		if b := c.Directory.BaseDN; b != "" {
			ldapBase = b
		}
	}
	return map[string]string{"base": base, "ldap": ldap, "ldap_base": ldapBase}
}

// Ready implements node.Service: every CA key must still resolve in its
// backend (a PKCS#11 token may have gone away).
func (s *Service) Ready(ctx context.Context) error {
	if s.env == nil {
		return errors.New("ca: not started")
	}
	for _, a := range s.authorities() {
		if _, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: a.keyURI, Service: keyService}); err != nil {
			return fmt.Errorf("ca %s: key %s: %w", a.id, a.keyURI, err)
		}
	}
	return nil
}

// Stop implements node.Service: it ends the CRL loop and waits for it.
func (s *Service) Stop(ctx context.Context) error {
	defer s.closeBatcher()
	s.stopWatch()
	s.stopOCSP(ctx)
	if s.stopCRL == nil {
		return nil
	}
	s.stopCRL()
	select {
	case <-s.crlDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ca: stop CRL loop: %w", ctx.Err())
	}
}

// loadOrCreate returns the built-in CA of sp from its row, or creates its
// key and certificate on first start. Creation is serialised across the
// processes of a database (lockCreation) and the row read again once the
// lock is held, so a process that started with another on an empty
// database runs the CA the other made. A key without a row means an
// interrupted or tampered installation: it fails rather than create a
// second key.
func (s *Service) loadOrCreate(ctx context.Context, sp spec, row *authorityRow, reg *registry) (*authority, error) {
	if row == nil {
		unlock, err := s.lockCreation(ctx)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if row, err = loadAuthority(ctx, s.env.DB, sp.id); errors.Is(err, ErrNotFound) {
			row = nil
		} else if err != nil {
			return nil, err
		}
	}
	if row != nil {
		if row.keyURI != "soft:ca/"+sp.id || row.algorithm != string(sp.alg) || row.parent != sp.parent {
			return nil, fmt.Errorf("stored CA (key %s, %s, parent %q) differs from the built-in hierarchy", row.keyURI, row.algorithm, row.parent)
		}
		return s.open(ctx, row, reg)
	}
	a := &authority{id: sp.id, parent: sp.parent, alg: sp.alg, keyURI: "soft:ca/" + sp.id, lineage: sp.id, generation: 1,
		status: statusActive, origin: "builtin"}
	var parent *authority
	if sp.parent != "" {
		if parent = reg.byID[sp.parent]; parent == nil {
			return nil, fmt.Errorf("parent %s not loaded", sp.parent)
		}
	}
	if err := s.create(ctx, a, sp, parent); err != nil {
		return nil, err
	}
	a.chain = [][]byte{a.cert.Raw}
	if parent != nil {
		a.chain = append(a.chain, parent.chain...)
	}
	return a, nil
}

// creationLockID is the PostgreSQL advisory lock key that serialises the
// first-run creation of the built-in CAs across processes ("gt-ca-mk").
const creationLockID int64 = 0x67742d63612d6d6b

// lockCreation takes the cross-process lock of CA creation and returns its
// release. On PostgreSQL it is a transaction-level advisory lock, released
// with the transaction or the session, so a crashed process cannot leave it
// held. A SQLite database is one node's (a cluster shares PostgreSQL), and
// a node loads its CAs one after the other.
func (s *Service) lockCreation(ctx context.Context) (func(), error) {
	if s.env.DB.Driver() != store.Postgres {
		return func() {}, nil
	}
	tx, err := s.env.DB.Writer().BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("CA creation lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", creationLockID); err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("CA creation lock: %w", err)
	}
	return func() { _ = tx.Rollback() }, nil
}

// samePublicKey compares two public keys by their SubjectPublicKeyInfo.
func samePublicKey(a, b crypto.PublicKey) bool {
	da, err1 := smx509.MarshalPKIXPublicKey(a)
	db, err2 := smx509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

// create makes the key and the certificate of a new CA and records both.
func (s *Service) create(ctx context.Context, a *authority, sp spec, parent *authority) error {
	if _, err := s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: a.keyURI, Algorithm: sp.alg, Usage: hsm.UsageSign, Service: keyService}); err != nil {
		if errors.Is(err, hsm.ErrExists) {
			return fmt.Errorf("key %s exists but no CA is recorded for it; refusing to create a second key (restore the ca_authorities row or remove the key deliberately): %w", a.keyURI, err)
		}
		return fmt.Errorf("create key %s: %w", a.keyURI, err)
	}
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: a.keyURI, Service: keyService})
	if err != nil {
		return fmt.Errorf("signer %s: %w", a.keyURI, err)
	}
	a.signer = signer
	now := s.env.Clock.Now().UTC()
	var der []byte
	if parent == nil {
		der, err = selfSign(sp, signer, now)
	} else {
		der, err = s.signSubCA(sp, signer, parent, now)
	}
	if err != nil {
		return err
	}
	if a.cert, err = smx509.ParseCertificate(der); err != nil {
		return fmt.Errorf("parse new certificate: %w", err)
	}
	rec := audit.Record{Actor: "system", Action: "ca.authority.create", Object: "ca/" + sp.id, Outcome: audit.Success,
		Details: map[string]any{"algorithm": string(sp.alg), "key_uri": a.keyURI, "parent": sp.parent,
			"subject": a.cert.Subject.String(), "serial": serialHex(a.cert.SerialNumber), "not_after": a.cert.NotAfter.UTC().Format(time.RFC3339)}}
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		if err := insertAuthority(ctx, tx, authorityRow{id: sp.id, algorithm: string(sp.alg), keyURI: a.keyURI, cert: der, parent: sp.parent, created: now}); err != nil {
			return err
		}
		if parent == nil {
			return nil
		}
		_, err := recordCACert(ctx, tx, parent.id, a.cert, "sub-ca", now)
		return err
	})
	if err != nil {
		return fmt.Errorf("record CA: %w", err)
	}
	s.env.Logger.Info("certificate authority created", "ca", sp.id, "algorithm", sp.alg, "key", a.keyURI)
	return nil
}

// newSerial returns 0x01 followed by 16 random bytes as a positive integer
// (see the package comment).
func newSerial() (*big.Int, error) {
	b := make([]byte, 17)
	if _, err := rand.Read(b[1:]); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	b[0] = 0x01
	return new(big.Int).SetBytes(b), nil
}

// serialHex is the lowercase hex of the serial's content octets.
func serialHex(n *big.Int) string { return fmt.Sprintf("%x", n.Bytes()) }

// caName is the subject of a platform CA.
func caName(cn string) pkix.Name {
	return pkix.Name{Country: []string{"CN"}, Organization: []string{"govtrust"}, CommonName: cn}
}

// rootValidity is the root CAs' lifetime; issuing CAs get the sub-ca
// profile's (clamped to the root's).
const rootValidity = 20 * 365 * 24 * time.Hour

// selfSign makes a root certificate: CA, pathLenConstraint 1 (one level of
// issuing CAs below, RFC 5280 §4.2.1.9), keyCertSign and cRLSign.
func selfSign(sp spec, signer crypto.Signer, now time.Time) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	spki, err := smx509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ski, err := keyID(spki)
	if err != nil {
		return nil, err
	}
	tmpl := &smx509.Certificate{
		SerialNumber:          serial,
		Subject:               caName(sp.cn),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign | smx509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		SubjectKeyId:          ski,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("self-sign root: %w", err)
	}
	return der, nil
}

// signSubCA makes an issuing CA certificate with the built-in sub-ca profile
// (pathLenConstraint 0) from a request the new key signs itself, linted and
// TBS-checked like any issuance.
func (s *Service) signSubCA(sp spec, signer crypto.Signer, parent *authority, now time.Time) ([]byte, error) {
	return s.signSubCAName(caName(sp.cn), nil, signer, parent, now)
}

// signSubCAName is signSubCA for any subject: C is fixed, O and OU come from
// name, CN through the request (the sub-ca profile's subject rules). With
// prev, the certificate of the generation a rollover replaces, the new
// certificate keeps prev's reviewed identity instead: its subject, policies,
// constraints and validity length (carryIdentity); the profile still gives
// the key usage, the URLs and the identifiers.
func (s *Service) signSubCAName(name pkix.Name, prev *smx509.Certificate, signer crypto.Signer, parent *authority, now time.Time) ([]byte, error) {
	if prev != nil && name.CommonName == "" {
		// The request's subject is replaced by prev's; the profile only
		// needs one to build its template.
		name.CommonName = "CA"
	}
	csrDER, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: name.CommonName}}, signer)
	if err != nil {
		return nil, fmt.Errorf("sub-CA request: %w", err)
	}
	csr, err := smx509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sub-CA request: %w", err)
	}
	p := s.profiles["sub-ca"]
	if p == nil {
		return nil, errors.New("built-in profile sub-ca missing")
	}
	record := map[string]string{"O": "govtrust"}
	if len(name.Organization) > 0 {
		record["O"] = name.Organization[0]
	}
	if len(name.OrganizationalUnit) > 0 {
		record["OU"] = name.OrganizationalUnit[0]
	}
	res, err := p.Apply(profile.Input{CSR: csr, Record: record, Now: now,
		Issuer: parent.cert, CAID: parent.id, Vars: s.vars})
	if err != nil {
		return nil, fmt.Errorf("sub-ca profile: %w", err)
	}
	if prev != nil {
		if err := carryIdentity(res, prev, parent.cert, now); err != nil {
			return nil, err
		}
	}
	return signLinted(res, parent)
}

// signLinted sets a fresh serial on res.Template, lints it, signs it with
// the CA and checks the signed TBS is the linted one.
func signLinted(res *profile.Result, ca *authority) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	res.Template.SerialNumber = serial
	linted, err := lint.Precheck(res.Template, ca.cert, res.PublicKey, res.Expect)
	if err != nil {
		return nil, err
	}
	if errs := lint.Errors(linted.Findings); len(errs) > 0 {
		return nil, fmt.Errorf("pre-issuance lint: %v", errs)
	}
	der, err := smx509.CreateCertificate(rand.Reader, res.Template, ca.cert, res.PublicKey, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if err := linted.SameTBS(der); err != nil {
		return nil, err
	}
	return der, nil
}
