package authz

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/store"
)

// Principal is an authenticated caller.
type Principal struct {
	Account *Account
	// Roles are the roles in force for this request: the account's, narrowed
	// by the token's scopes.
	Roles []policy.Role
	// Via says how the caller proved itself: "token/<id>", "cert/<serial>",
	// "sso/<session>".
	Via string
	// epoch is the authz_epoch the request read before authenticating
	// (hasEpoch), which kept organisations are matched against (orgcache.go).
	epoch    int64
	hasEpoch bool
}

// Actor names the principal in audit records.
func (p *Principal) Actor() string { return "account/" + p.Account.Name }

// Has reports whether p holds any of roles.
func (p *Principal) Has(roles ...policy.Role) bool {
	for _, r := range roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
}

// Policy returns the principal as the policy engine sees it.
func (p *Principal) Policy() policy.Principal {
	return policy.Principal{ID: p.Account.ID, Org: p.Account.Org, Roles: p.Roles, Clearance: p.Account.Clearance}
}

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// WithPrincipal returns ctx carrying p (and p as the audit actor).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return audit.WithActor(context.WithValue(ctx, principalKey{}, p), p.Actor())
}

// Verifier authenticates SSO access tokens; the SSO service implements it.
// It returns the account ID the token was issued to, and a session label.
type Verifier interface {
	VerifyAccessToken(ctx context.Context, token string) (accountID, session string, err error)
}

// SetSSO installs the SSO access-token verifier.
func (s *Service) SetSSO(v Verifier) { s.sso = v }

// SetCertAuth installs client-certificate authentication.
func (s *Service) SetCertAuth(c *CertAuth) { s.certs = c }

// Authenticate finds the principal of a request: a bearer token (govtrust
// API token, or SSO access token when a verifier is installed) or else a
// verified TLS client certificate. No credential, or a bad one, is
// ErrUnauthenticated.
func (s *Service) Authenticate(r *http.Request) (*Principal, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := bearerToken(h)
		if !ok {
			return nil, ErrUnauthenticated
		}
		return s.AuthenticateBearer(ctx, tok)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && s.certs != nil {
		return s.authenticateCert(ctx, r.TLS.PeerCertificates)
	}
	return nil, ErrUnauthenticated
}

// bearerToken returns the token of an Authorization value of the Bearer
// scheme (RFC 6750 §2.1). The scheme name is case-insensitive and separated
// from the credentials by one or more spaces (RFC 9110 §11.1, §11.4):
// "bearer gt_x" is as good as "Bearer gt_x".
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// AuthenticateBearer authenticates a bearer token of either kind.
func (s *Service) AuthenticateBearer(ctx context.Context, tok string) (*Principal, error) {
	if strings.HasPrefix(tok, tokenPrefix) || s.sso == nil {
		return s.authenticateToken(ctx, tok)
	}
	id, session, err := s.sso.VerifyAccessToken(ctx, tok)
	if err != nil {
		return nil, ErrUnauthenticated
	}
	a, err := s.Account(ctx, id)
	if err != nil || a.Disabled {
		return nil, ErrUnauthenticated
	}
	return &Principal{Account: a, Roles: a.Roles, Via: "sso/" + session}, nil
}

// CertAuth authenticates TLS client certificates: the chain must verify to
// one of the trusted roots for client authentication, no certificate of it
// may be revoked, and the leaf's issuer and subject must be bound to an
// account.
type CertAuth struct {
	Roots         *x509.CertPool
	Intermediates *x509.CertPool
	Revocation    RevocationChecker
	Now           func() time.Time
}

// RevocationChecker says whether a certificate is revoked. The certificate
// authority implements it from its database; CRLChecker does from CRLs.
type RevocationChecker interface {
	Revoked(ctx context.Context, cert, issuer *x509.Certificate) (bool, error)
}

func (s *Service) authenticateCert(ctx context.Context, peer []*x509.Certificate) (*Principal, error) {
	c := s.certs
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	inter := x509.NewCertPool()
	if c.Intermediates != nil {
		inter = c.Intermediates.Clone()
	}
	for _, ic := range peer[1:] {
		inter.AddCert(ic)
	}
	chains, err := peer[0].Verify(x509.VerifyOptions{Roots: c.Roots, Intermediates: inter, CurrentTime: now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, ErrUnauthenticated
	}
	chain := chains[0]
	if c.Revocation == nil {
		return nil, ErrUnauthenticated // fail closed: no way to check revocation
	}
	for i := 0; i+1 < len(chain); i++ {
		revoked, err := c.Revocation.Revoked(ctx, chain[i], chain[i+1])
		if err != nil || revoked {
			return nil, ErrUnauthenticated
		}
	}
	leaf := chain[0]
	accountID, err := s.certBinding(ctx, leaf.Issuer.String(), leaf.Subject.String())
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrTampered) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	a, err := s.Account(ctx, accountID)
	if err != nil || a.Disabled {
		return nil, ErrUnauthenticated
	}
	return &Principal{Account: a, Roles: a.Roles, Via: "cert/" + leaf.SerialNumber.Text(16)}, nil
}

// certBinding returns the account a certificate issuer and subject (RFC 4514
// strings) are bound to: ErrNotFound when none is, ErrTampered (alerted)
// when the binding fails its integrity check.
func (s *Service) certBinding(ctx context.Context, issuer, subject string) (string, error) {
	var accountID, created, mac string
	err := s.db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT account_id, created_at, mac FROM authz_cert_bindings WHERE issuer = ? AND subject = ?", issuer, subject).
			Scan(&accountID, &created, &mac)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: no account is bound to certificate subject %s", ErrNotFound, subject)
	}
	if err != nil {
		return "", err
	}
	if err := s.mac.Check(mac, "authz_cert_bindings", issuer, subject, accountID, created); err != nil {
		s.alert(ctx, "cert-binding/"+subject, err)
		return "", fmt.Errorf("%w: binding of certificate subject %s", ErrTampered, subject)
	}
	return accountID, nil
}

// CertificateAccount returns the account a certificate's issuer and subject
// (RFC 4514 strings) are bound to (BindCertificate), for services that
// deliver to a person's certificate (the KMC's judicial key recovery):
// ErrNotFound when none is, ErrTampered when the binding fails its
// integrity check.
func (s *Service) CertificateAccount(ctx context.Context, issuer, subject string) (*Account, error) {
	id, err := s.certBinding(ctx, issuer, subject)
	if err != nil {
		return nil, err
	}
	return s.Account(ctx, id)
}

// BindCertificate binds a client certificate's issuer and subject to an
// account, so certificates renewed with the same names keep working.
func (s *Service) BindCertificate(ctx context.Context, accountID string, cert *x509.Certificate) error {
	issuer, subject := cert.Issuer.String(), cert.Subject.String()
	created := s.clock.Now().UTC().Format(time.RFC3339Nano)
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: "authz.cert.bind", Object: "account/" + accountID, Outcome: audit.Success,
		Details: map[string]any{"issuer": issuer, "subject": subject}}, func(tx *store.Tx) error {
		if _, err := s.account(ctx, tx, accountID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO authz_cert_bindings (issuer, subject, account_id, created_at, mac) VALUES (?, ?, ?, ?, ?)",
			issuer, subject, accountID, created, s.mac.MAC("authz_cert_bindings", issuer, subject, accountID, created))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: certificate subject %s is bound already", ErrConflict, subject)
		}
		return err
	})
	return err
}
