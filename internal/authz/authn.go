package authz

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

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
// may be revoked, and the leaf itself (its SHA-256) must be bound to an
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
	accountID, err := s.certBinding(ctx, leaf.Raw, leaf.Issuer.String(), leaf.Subject.String())
	if errors.Is(err, ErrUnpinnedBinding) {
		return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, err.Error())
	}
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

// CertFingerprint is how a certificate binding names its certificate: the
// SHA-256 of the certificate's DER, hex.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ErrUnpinnedBinding is a certificate binding made before bindings named
// their certificate (issuer and subject only, migration 00005): it no
// longer authenticates or names a recipient until the certificate is bound
// again. It wraps ErrNotFound.
var ErrUnpinnedBinding = fmt.Errorf("%w: the certificate's issuer and subject are bound by a binding made before bindings named their certificate (SHA-256); it no longer counts: a security administrator must bind the certificate again (govtrust account bind-cert ACCOUNT CERT.pem)", ErrNotFound)

// certBinding returns the account the certificate der (with its issuer and
// subject, RFC 4514 strings, for the messages) is bound to: ErrNotFound
// when none is (ErrUnpinnedBinding when only a binding of its names made
// before bindings named their certificate is), ErrTampered (alerted) when
// the binding fails its integrity check.
func (s *Service) certBinding(ctx context.Context, der []byte, issuer, subject string) (string, error) {
	fp := CertFingerprint(der)
	var accountID, rowIssuer, rowSubject, created, mac string
	unpinned := false
	err := s.db.Read(ctx, func(q store.Querier) error {
		err := q.QueryRow(ctx, "SELECT account_id, issuer, subject, created_at, mac FROM authz_cert_bindings WHERE cert_sha256 = ?", fp).
			Scan(&accountID, &rowIssuer, &rowSubject, &created, &mac)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var n int
		if err := q.QueryRow(ctx, "SELECT COUNT(*) FROM authz_cert_bindings WHERE issuer = ? AND subject = ? AND cert_sha256 = ''", issuer, subject).
			Scan(&n); err != nil {
			return err
		}
		unpinned = n > 0
		return sql.ErrNoRows
	})
	if errors.Is(err, sql.ErrNoRows) {
		if unpinned {
			return "", fmt.Errorf("%w (certificate subject %s, issuer %s, SHA-256 %s)", ErrUnpinnedBinding, subject, issuer, fp)
		}
		return "", fmt.Errorf("%w: no account is bound to certificate %s (subject %s)", ErrNotFound, fp, subject)
	}
	if err != nil {
		return "", err
	}
	if err := s.mac.Check(mac, "authz_cert_bindings", fp, rowIssuer, rowSubject, accountID, created); err != nil {
		s.alert(ctx, "cert-binding/"+fp, err)
		return "", fmt.Errorf("%w: binding of certificate %s (subject %s)", ErrTampered, fp, subject)
	}
	return accountID, nil
}

// CertificateAccount returns the account the certificate der (exactly
// these bytes) is bound to (BindCertificate), for services that deliver to
// a person's certificate (the KMC's judicial key recovery): ErrNotFound
// when none is (ErrUnpinnedBinding when only a binding of its issuer and
// subject made before bindings named their certificate is), ErrTampered
// when the binding fails its integrity check.
func (s *Service) CertificateAccount(ctx context.Context, der []byte) (*Account, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrInvalid, err)
	}
	id, err := s.certBinding(ctx, der, c.Issuer.String(), c.Subject.String())
	if err != nil {
		return nil, err
	}
	return s.Account(ctx, id)
}

// UnpinnedCertBindings counts the certificate bindings made before
// bindings named their certificate, which no longer count (the node logs
// them at start).
func (s *Service) UnpinnedCertBindings(ctx context.Context) (int, error) {
	var n int
	err := s.db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT COUNT(*) FROM authz_cert_bindings WHERE cert_sha256 = ''").Scan(&n)
	})
	return n, err
}

// BindCertificate binds the client certificate cert (its DER, cert.Raw) to
// an account: see BindCertificateDER.
func (s *Service) BindCertificate(ctx context.Context, accountID string, cert *x509.Certificate) error {
	return s.BindCertificateDER(ctx, accountID, cert.Raw)
}

// BindCertificateDER binds the certificate der, exactly these bytes (its
// SHA-256), to an account: mTLS login with it authenticates as the
// account, and services that deliver to a person's certificate
// (CertificateAccount) find the account. Another certificate with the
// same issuer and subject (a renewal, or one a registration officer had
// issued with the same names) is not bound: it must be bound itself. A
// binding made before bindings named their certificate, of the same names
// and account, is replaced. A certificate is bound to one account.
func (s *Service) BindCertificateDER(ctx context.Context, accountID string, der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("%w: the certificate to bind is required (its DER)", ErrInvalid)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: certificate to bind: %w", ErrInvalid, err)
	}
	fp, issuer, subject := CertFingerprint(der), c.Issuer.String(), c.Subject.String()
	created := s.clock.Now().UTC().Format(time.RFC3339Nano)
	_, err = s.log.Do(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: "authz.cert.bind", Object: "account/" + accountID, Outcome: audit.Success,
		Details: map[string]any{"issuer": issuer, "subject": subject, "serial": c.SerialNumber.Text(16), "cert_sha256": fp}}, func(tx *store.Tx) error {
		if _, err := s.account(ctx, tx, accountID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO authz_cert_bindings (cert_sha256, issuer, subject, account_id, created_at, mac) VALUES (?, ?, ?, ?, ?, ?)",
			fp, issuer, subject, accountID, created, s.mac.MAC("authz_cert_bindings", fp, issuer, subject, accountID, created))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: certificate %s (subject %s) is bound already", ErrConflict, fp, subject)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM authz_cert_bindings WHERE issuer = ? AND subject = ? AND account_id = ? AND cert_sha256 = ''",
			issuer, subject, accountID)
		return err
	})
	return err
}
