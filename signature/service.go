package signature

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// keyService owns the application signing keys in the key manager.
const keyService = "signature"

// Errors of the API.
var (
	ErrNotFound = fmt.Errorf("signature: not found: %w", httpx.ErrNotFound)
	ErrRequest  = fmt.Errorf("signature: invalid request: %w", httpx.ErrBadRequest)
	ErrPolicy   = fmt.Errorf("signature: refused: %w", httpx.ErrPolicy)
)

// Issuer issues the certificates of application keys
// (ca.Service.IssueForApplication: the CA refuses the profiles it keeps for
// the platform's own services, such as tsa, ocsp-signer and seal-maker).
type Issuer interface {
	IssueForApplication(ctx context.Context, caID, profile string, csrDER []byte, record map[string]string, actor string) (der []byte, chain [][]byte, err error)
}

// Authorities lists the platform's CA certificates (ca.Service.CACertificates):
// the self-signed ones are trust anchors, the others intermediates.
type Authorities interface {
	CACertificates() []*smx509.Certificate
}

// Service is the signing and verification service.
type Service struct {
	issuer  Issuer
	cas     Authorities
	stamper Stamper
	env     *node.Env
	fetch   Fetcher
	// foreign are the configured foreign trust anchors
	// (signature.anchors), read at start.
	foreign []*smx509.Certificate

	mu      sync.Mutex
	signers map[string]*heldKey // key id -> resolved key (hot path holds the signer)
	// revRecheck is how long a held key's revocation status read from the
	// CA is trusted (revocationRecheck when 0).
	revRecheck time.Duration
}

var (
	_ node.Service   = (*Service)(nil)
	_ node.Migrator  = (*Service)(nil)
	_ node.APIRouter = (*Service)(nil)
)

// New returns the service; issuer makes key certificates, cas gives the
// trust anchors, stamper (may be nil) time-stamps.
func New(issuer Issuer, cas Authorities, stamper Stamper) *Service {
	return &Service{issuer: issuer, cas: cas, stamper: stamper, signers: map[string]*heldKey{}}
}

// Name implements node.Service.
func (s *Service) Name() string { return "signature" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations {
	return []store.Migrations{store.EmbeddedMigrations("signature", migrations, "migrations")}
}

// Start implements node.Service.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	if s.issuer == nil || s.cas == nil {
		return errors.New("signature: no certificate issuer or CA list wired in")
	}
	s.env = env
	timeout := 10 * time.Second
	if env.Config != nil {
		if env.Config.Signature.FetchTimeout > 0 {
			timeout = env.Config.Signature.FetchTimeout
		}
		foreign, err := loadAnchors(env.Config.Signature.Anchors)
		if err != nil {
			return err
		}
		s.foreign = foreign
	}
	s.fetch = &HTTPFetcher{Client: &http.Client{Timeout: timeout}}
	// A key whose certificate the CA revokes signs no more: the hook stops
	// a held key before the revocation is acknowledged; usable reads the
	// CA's record at a key's first signature and every revocationRecheck.
	if n, ok := s.issuer.(revwatch.Notifier); ok {
		n.OnRevoked(s.revokedHook)
	}
	return nil
}

// loadAnchors reads the foreign trust anchors: each file holds one or more
// PEM certificates, each a self-signed CA certificate.
func loadAnchors(paths []string) ([]*smx509.Certificate, error) {
	return ReadCertificateFiles("signature.anchors", paths, func(c *smx509.Certificate) error {
		if !c.IsCA || !isSelfSigned(c) {
			return fmt.Errorf("%s is not a self-signed CA certificate", c.Subject)
		}
		return nil
	})
}

// ReadCertificateFiles reads the PEM certificates of the files a setting
// names (paths): each file must hold at least one, and check, when not
// nil, must accept each. Errors name the setting and the file.
func ReadCertificateFiles(setting string, paths []string, check func(*smx509.Certificate) error) ([]*smx509.Certificate, error) {
	var out []*smx509.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", setting, err)
		}
		n := 0
		for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := smx509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", setting, p, err)
			}
			if check != nil {
				if err := check(c); err != nil {
					return nil, fmt.Errorf("%s: %s: %w", setting, p, err)
				}
			}
			out = append(out, c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", setting, p)
		}
	}
	return out, nil
}

// Ready implements node.Service.
func (s *Service) Ready(ctx context.Context) error {
	if s.env == nil {
		return errors.New("signature: not started")
	}
	if len(s.cas.CACertificates()) == 0 {
		return errors.New("signature: no trust anchors")
	}
	return nil
}

// Stop implements node.Service.
func (s *Service) Stop(ctx context.Context) error { return nil }

// Verifier returns a verifier with the platform's anchors, the configured
// foreign ones and online revocation checking.
func (s *Service) Verifier() *Verifier {
	v := s.verifierWith(s.cas.CACertificates())
	v.Fetch, v.Now = s.fetch, s.env.Clock.Now
	return v
}

// verifierWith returns a verifier whose roots are the foreign anchors and
// the self-signed ones of platform, the rest of platform intermediates.
func (s *Service) verifierWith(platform []*smx509.Certificate) *Verifier {
	v := &Verifier{Roots: slices.Clone(s.foreign)}
	for _, c := range platform {
		if isSelfSigned(c) {
			v.Roots = append(v.Roots, c)
		} else {
			v.Intermediates = append(v.Intermediates, c)
		}
	}
	return v
}

func isSelfSigned(c *smx509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// Key is an application signing key as the API shows it.
type Key struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	Org       string    `json:"org"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created_at"`
	Disabled  bool      `json:"disabled"`
	// Certificate and Chain are PEM.
	Certificate string   `json:"certificate"`
	Chain       []string `json:"chain"`

	keyURI string
	cert   *smx509.Certificate
	chain  []*smx509.Certificate
}

type heldKey struct {
	key    *Key
	signer crypto.Signer
	// revoked says why the key must not sign once its certificate or a CA
	// certificate of its chain was revoked (revocation.go); checked is when
	// the CA's record of them was last read and found good.
	revoked atomic.Pointer[string]
	checkMu sync.Mutex
	checked time.Time
}

// keySpec is where a key algorithm's certificates come from.
var keySpecs = map[hsm.Algorithm]string{
	hsm.SM2: "sm2-issuing", hsm.ECDSAP256: "ecdsa-issuing", hsm.ECDSAP384: "ecdsa-issuing",
}

// NewKey is a request to create an application signing key.
type NewKey struct {
	Name      string            `json:"name"`
	Owner     string            `json:"owner"` // account id or name
	Algorithm hsm.Algorithm     `json:"algorithm"`
	Profile   string            `json:"profile"` // CA profile, default org-sign
	Record    map[string]string `json:"record"`  // registration record (O, CN, uscc...)
}

// Validate implements httpx.Validator.
func (n *NewKey) Validate() error {
	switch {
	case n.Name == "" || len(n.Name) > 128:
		return errors.New("name: 1-128 characters")
	case n.Owner == "":
		return errors.New("owner: the account id of the application")
	case keySpecs[n.Algorithm] == "":
		return fmt.Errorf("algorithm: %q is not sm2, ecdsa-p256 or ecdsa-p384", n.Algorithm)
	}
	return nil
}

// CreateKey makes the key in the key manager, has its certificate issued
// and records it for its owner. actor is who asked (audited).
func (s *Service) CreateKey(ctx context.Context, req NewKey, actor string) (*Key, error) {
	acc, err := s.env.Authz.Account(ctx, req.Owner)
	if err != nil {
		acc, err = s.env.Authz.AccountByName(ctx, req.Owner)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: owner %q: %v", ErrRequest, req.Owner, err)
	}
	if acc.Kind != "application" || acc.Disabled {
		return nil, fmt.Errorf("%w: owner %s is not an enabled application account", ErrPolicy, acc.Name)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	k := &Key{ID: hex.EncodeToString(id), Name: req.Name, Owner: acc.ID, Org: acc.Org, Algorithm: string(req.Algorithm),
		Created: s.env.Clock.Now().UTC(), keyURI: "soft:signature/" + hex.EncodeToString(id)}
	if _, err := s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: k.keyURI, Algorithm: req.Algorithm, Usage: hsm.UsageSign, Service: keyService}); err != nil {
		return nil, fmt.Errorf("signature: create key: %w", err)
	}
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: k.keyURI, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("signature: key %s: %w", k.keyURI, err)
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: req.Name}}, signer)
	if err != nil {
		return nil, fmt.Errorf("signature: CSR: %w", err)
	}
	prof := req.Profile
	if prof == "" {
		prof = "org-sign"
	}
	rec := map[string]string{"CN": req.Name, "O": acc.Org}
	for k, v := range req.Record {
		rec[k] = v
	}
	der, chain, err := s.issuer.IssueForApplication(ctx, keySpecs[req.Algorithm], prof, csr, rec, actor)
	if err != nil {
		if errors.Is(err, httpx.ErrPolicy) {
			return nil, fmt.Errorf("%w: certificate: %v", ErrPolicy, err)
		}
		return nil, fmt.Errorf("%w: certificate: %v", ErrRequest, err)
	}
	if err := k.setCerts(der, chain); err != nil {
		return nil, err
	}
	rec2 := audit.Record{Actor: actor, Action: "signature.key.create", Object: "signature-key/" + k.ID, Outcome: audit.Success,
		Details: map[string]any{"owner": k.Owner, "algorithm": k.Algorithm, "serial": fmt.Sprintf("%x", k.cert.SerialNumber), "key_uri": k.keyURI}}
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec2, func(tx *store.Tx) error { return insertKey(ctx, tx, k, der, chain, actor) })
	if err != nil {
		return nil, fmt.Errorf("signature: record key: %w", err)
	}
	return k, nil
}
