package authz

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/store"
)

// tokenPrefix marks govtrust tokens so secret scanners can find leaked ones.
const tokenPrefix = "gt_"

// MaxTokenTTL bounds a token's lifetime.
const MaxTokenTTL = 366 * 24 * time.Hour

func hashToken(tok string) string {
	h := sm3.Sum([]byte(tok))
	return hex.EncodeToString(h[:])
}

func tokenMAC(in *Integrity, id, account, name, hash, scopes, created, expires, revoked string) string {
	return in.MAC("authz_tokens", id, account, name, hash, scopes, created, expires, revoked)
}

// Token describes a stored token (never the secret itself).
type Token struct {
	ID        string        `json:"id"`
	AccountID string        `json:"account_id"`
	Name      string        `json:"name"`
	Scopes    []policy.Role `json:"scopes,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"`
	Revoked   bool          `json:"revoked"`
	// Tampered is set when the row failed its integrity check; such a token
	// never authenticates.
	Tampered bool `json:"tampered,omitempty"`
}

// CreateToken makes a token for an account and returns its secret, shown
// once. Scopes, when given, narrow the account's roles for this token.
func (s *Service) CreateToken(ctx context.Context, accountID, name string, scopes []policy.Role, ttl time.Duration) (string, *Token, error) {
	if !validName(name) || ttl <= 0 || ttl > MaxTokenTTL {
		return "", nil, fmt.Errorf("%w: a token needs a name and a lifetime up to %v", ErrInvalid, MaxTokenTTL)
	}
	for _, r := range scopes {
		if !r.Valid() {
			return "", nil, fmt.Errorf("%w: unknown scope %q", ErrInvalid, r)
		}
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", nil, err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	now := s.clock.Now().UTC()
	t := &Token{ID: newID(), AccountID: accountID, Name: name, Scopes: scopes, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	sc := joinRoles(scopes)
	created, expires := now.Format(time.RFC3339Nano), t.ExpiresAt.Format(time.RFC3339Nano)
	h := hashToken(tok)
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: "authz.token.create", Object: "token/" + t.ID, Outcome: audit.Success,
		Details: map[string]any{"account": accountID, "name": name, "scopes": sc, "expires_at": expires}}, func(tx *store.Tx) error {
		if _, err := s.account(ctx, tx, accountID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO authz_tokens (id, account_id, name, token_hash, scopes, created_at, expires_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, accountID, name, h, sc, created, expires, tokenMAC(s.mac, t.ID, accountID, name, h, sc, created, expires, ""))
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("authz: create token: %w", err)
	}
	return tok, t, nil
}

func joinRoles(rs []policy.Role) string {
	ss := make([]string, len(rs))
	for i, r := range rs {
		ss[i] = string(r)
	}
	return strings.Join(ss, ",")
}

func splitRoles(s string) []policy.Role {
	if s == "" {
		return nil
	}
	var out []policy.Role
	for _, r := range strings.Split(s, ",") {
		out = append(out, policy.Role(r))
	}
	return out
}

type tokenRow struct {
	id, account, name, hash, scopes, created, expires, revoked, mac string
}

func (r *tokenRow) check(in *Integrity) error {
	return in.Check(r.mac, "authz_tokens", r.id, r.account, r.name, r.hash, r.scopes, r.created, r.expires, r.revoked)
}

const tokenCols = "id, account_id, name, token_hash, scopes, created_at, expires_at, revoked_at, mac"

func scanToken(row interface{ Scan(...any) error }) (*tokenRow, error) {
	var r tokenRow
	err := row.Scan(&r.id, &r.account, &r.name, &r.hash, &r.scopes, &r.created, &r.expires, &r.revoked, &r.mac)
	return &r, err
}

func (r *tokenRow) token() *Token {
	t := &Token{ID: r.id, AccountID: r.account, Name: r.name, Scopes: splitRoles(r.scopes), Revoked: r.revoked != ""}
	t.CreatedAt, _ = time.Parse(time.RFC3339Nano, r.created)
	t.ExpiresAt, _ = time.Parse(time.RFC3339Nano, r.expires)
	return t
}

// RevokeToken revokes a token at once.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: "authz.token.revoke", Object: "token/" + id, Outcome: audit.Success},
		func(tx *store.Tx) error {
			r, err := scanToken(tx.QueryRow(ctx, "SELECT "+tokenCols+" FROM authz_tokens WHERE id = ?", id))
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: token %s", ErrNotFound, id)
			}
			if err != nil {
				return err
			}
			if r.revoked != "" {
				return nil
			}
			r.revoked = s.clock.Now().UTC().Format(time.RFC3339Nano)
			_, err = tx.Exec(ctx, "UPDATE authz_tokens SET revoked_at = ?, mac = ? WHERE id = ?", r.revoked,
				tokenMAC(s.mac, r.id, r.account, r.name, r.hash, r.scopes, r.created, r.expires, r.revoked), id)
			return err
		})
	return err
}

// Tokens lists the tokens of an account ("" for every account).
func (s *Service) Tokens(ctx context.Context, accountID string) ([]*Token, error) {
	q := "SELECT " + tokenCols + " FROM authz_tokens"
	var args []any
	if accountID != "" {
		q += " WHERE account_id = ?"
		args = append(args, accountID)
	}
	var out []*Token
	err := s.db.Read(ctx, func(qr store.Querier) error {
		out = out[:0]
		rows, err := qr.Query(ctx, q+" ORDER BY created_at", args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanToken(rows)
			if err != nil {
				return err
			}
			t := r.token()
			t.Tampered = r.check(s.mac) != nil
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// authenticateToken returns the principal for a bearer token, or
// ErrUnauthenticated for a missing, unknown, expired, revoked or tampered one
// (the caller learns nothing about which; the log and audit do).
func (s *Service) authenticateToken(ctx context.Context, tok string) (*Principal, error) {
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) > 128 {
		return nil, ErrUnauthenticated
	}
	h := hashToken(tok)
	// The epoch first, then the rows (tokencache.go). Without an epoch
	// (a database error) nothing is served from or put in the cache.
	epoch, epochErr := s.epoch(ctx)
	if epochErr == nil {
		if p, ok := s.tokens.get(h, epoch, s.clock.Now()); ok {
			p.epoch, p.hasEpoch = epoch, true
			return p, nil
		}
	}
	var r *tokenRow
	var a *Account
	err := s.db.Read(ctx, func(q store.Querier) error {
		var err error
		if r, err = scanToken(q.QueryRow(ctx, "SELECT "+tokenCols+" FROM authz_tokens WHERE token_hash = ?", h)); err != nil {
			return err
		}
		if err := r.check(s.mac); err != nil {
			return err
		}
		a, err = s.account(ctx, q, r.account)
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ErrUnauthenticated
	case errors.Is(err, ErrTampered):
		s.alert(ctx, "token-hash/"+h[:16], err)
		return nil, ErrUnauthenticated
	case err != nil:
		return nil, fmt.Errorf("authz: look up token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(r.hash), []byte(h)) != 1 || r.revoked != "" || a.Disabled {
		return nil, ErrUnauthenticated
	}
	exp, err := time.Parse(time.RFC3339Nano, r.expires)
	if err != nil || !s.clock.Now().Before(exp) {
		return nil, ErrUnauthenticated
	}
	if len(a.Tampered) > 0 {
		s.alert(ctx, "account/"+a.ID, fmt.Errorf("role bindings %s failed their integrity check and are ignored", strings.Join(a.Tampered, ", ")))
	}
	roles := a.Roles
	if scopes := splitRoles(r.scopes); len(scopes) > 0 {
		roles = slices.DeleteFunc(slices.Clone(a.Roles), func(x policy.Role) bool { return !slices.Contains(scopes, x) })
	}
	p := &Principal{Account: a, Roles: roles, Via: "token/" + r.id}
	if epochErr == nil && len(a.Tampered) == 0 {
		s.tokens.put(h, epoch, p, exp)
		p.epoch, p.hasEpoch = epoch, true
	}
	return p, nil
}
