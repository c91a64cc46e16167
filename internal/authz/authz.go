// Package authz authenticates callers and decides what they may do, as HTTP
// middleware that every service shares instead of writing its own checks.
//
// This first part holds API bearer tokens: random 256-bit secrets shown once,
// stored only as their SM3 hash with a name, roles and an expiry, and the four
// bootstrap tokens of CONTRACT.md (sysadmin, secadmin, auditor, ra). The
// separated administrator roles (三员分立: system, security and audit
// administrators) are named here; policies, client certificates and
// classification levels build on this package.
package authz

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the schema of the token store.
var Migrations = store.Migrations{Service: "authz", FS: sub(migrations, "migrations")}

func sub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	return s
}

// Roles.
const (
	RoleSysAdmin = "sysadmin" // system administrator: runs the platform
	RoleSecAdmin = "secadmin" // security administrator: keys, policies, accounts
	RoleAuditor  = "auditor"  // audit administrator: reads the audit log, changes nothing
	RoleRA       = "ra"       // registration officer of a department
)

// Principal is an authenticated caller.
type Principal struct {
	ID    string   // token ID (or, later, account ID)
	Name  string   // human-readable name
	Roles []string // granted roles
}

// Has reports whether p holds any of roles.
func (p *Principal) Has(roles ...string) bool {
	for _, r := range roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
}

// Errors.
var (
	ErrUnauthenticated = fmt.Errorf("authentication required: %w", httpx.ErrUnauthorized)
	ErrForbidden       = fmt.Errorf("not permitted: %w", httpx.ErrForbidden)
)

// tokenPrefix marks govtrust tokens so secret scanners can find leaked ones.
const tokenPrefix = "gt_"

// Tokens is the bearer-token store.
type Tokens struct {
	db    *store.DB
	log   *audit.Log
	clock clock.Clock
}

// NewTokens returns the token store over db; log receives authentication
// failures and token changes.
func NewTokens(db *store.DB, log *audit.Log, c clock.Clock) *Tokens {
	if c == nil {
		c = clock.New()
	}
	return &Tokens{db: db, log: log, clock: c}
}

func hashToken(tok string) string {
	h := sm3.Sum([]byte(tok))
	return hex.EncodeToString(h[:])
}

// Token describes a stored token (never the secret itself).
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Revoked   bool      `json:"revoked"`
}

// Create makes a token and returns its secret, which is shown once. actor is
// who creates it (audited in the same transaction).
func (t *Tokens) Create(ctx context.Context, actor, name string, roles []string, ttl time.Duration) (string, *Token, error) {
	if name == "" || len(roles) == 0 || ttl <= 0 {
		return "", nil, errors.New("authz: token needs a name, roles and a positive lifetime")
	}
	var secret, id [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", nil, err
	}
	if _, err := rand.Read(id[:8]); err != nil {
		return "", nil, err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	now := t.clock.Now()
	info := &Token{ID: hex.EncodeToString(id[:8]), Name: name, Roles: roles, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	_, err := t.log.Do(ctx, t.db, audit.Record{
		Actor: actor, Action: "authz.token.create", Object: "token/" + info.ID, Outcome: audit.Success,
		Details: map[string]any{"name": name, "roles": roles, "expires_at": info.ExpiresAt.Format(time.RFC3339)},
	}, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO authz_tokens (id, name, token_hash, roles, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			info.ID, name, hashToken(tok), strings.Join(roles, ","), now.Format(time.RFC3339Nano), info.ExpiresAt.Format(time.RFC3339Nano))
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("authz: create token: %w", err)
	}
	return tok, info, nil
}

// Count returns the number of stored tokens.
func (t *Tokens) Count(ctx context.Context) (int, error) {
	var n int
	err := t.db.QueryRow(ctx, "SELECT COUNT(*) FROM authz_tokens").Scan(&n)
	return n, err
}

// Authenticate returns the principal for a bearer token, or ErrUnauthenticated
// for a missing, unknown, expired or revoked one (the caller learns nothing
// about which).
func (t *Tokens) Authenticate(ctx context.Context, tok string) (*Principal, error) {
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) > 128 {
		return nil, ErrUnauthenticated
	}
	h := hashToken(tok)
	var id, name, stored, roles, expires, revoked string
	err := t.db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT id, name, token_hash, roles, expires_at, revoked_at FROM authz_tokens WHERE token_hash = ?", h).
			Scan(&id, &name, &stored, &roles, &expires, &revoked)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("authz: look up token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(stored), []byte(h)) != 1 || revoked != "" {
		return nil, ErrUnauthenticated
	}
	exp, err := time.Parse(time.RFC3339Nano, expires)
	if err != nil || !t.clock.Now().Before(exp) {
		return nil, ErrUnauthenticated
	}
	return &Principal{ID: id, Name: name, Roles: strings.Split(roles, ",")}, nil
}

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Require wraps next so that only callers with a bearer token holding one of
// roles reach it: no or a bad credential is 401 (with a WWW-Authenticate
// challenge, RFC 6750 §3), a wrong role 403; both are audited as denied.
func (t *Tokens) Require(action string, roles []string, next http.Handler) http.Handler {
	return httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var p *Principal
		var err error
		if ok {
			p, err = t.Authenticate(ctx, strings.TrimSpace(tok))
		} else {
			err = ErrUnauthenticated
		}
		if err != nil {
			if errors.Is(err, ErrUnauthenticated) {
				t.deny(ctx, "anonymous", action, "no valid bearer token")
				w.Header().Set("WWW-Authenticate", `Bearer realm="govtrust"`)
			}
			return err
		}
		if !p.Has(roles...) {
			t.deny(ctx, "token/"+p.ID, action, "role not permitted")
			return ErrForbidden
		}
		ctx = audit.WithActor(context.WithValue(ctx, principalKey{}, p), "token/"+p.ID)
		next.ServeHTTP(w, r.WithContext(ctx))
		return nil
	})
}

func (t *Tokens) deny(ctx context.Context, actor, action, why string) {
	// A denial that cannot be audited is still a denial; the failure is logged
	// by the caller's request log through the returned error path.
	_, _ = t.log.Write(ctx, t.db, audit.Record{
		Actor: actor, Action: action, Outcome: audit.Denied, RequestID: httpx.RequestID(ctx),
		Details: map[string]any{"reason": why},
	})
}
