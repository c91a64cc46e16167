package authz

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the schema of the security data.
var Migrations = store.EmbeddedMigrations("authz", migrations, "migrations")

// Role names, re-exported from the policy package for callers that only
// need the names.
const (
	RoleSysAdmin = string(policy.RoleSysAdmin)
	RoleSecAdmin = string(policy.RoleSecAdmin)
	RoleAuditor  = string(policy.RoleAuditor)
	RoleRA       = string(policy.RoleRA)
)

// Account kinds.
const (
	KindPerson      = "person"
	KindApplication = "application"
	KindSystem      = "system"
)

// Errors. They wrap the httpx sentinels, so the HTTP edge maps them.
var (
	ErrUnauthenticated = fmt.Errorf("authentication required: %w", httpx.ErrUnauthorized)
	ErrForbidden       = fmt.Errorf("not permitted: %w", httpx.ErrForbidden)
	ErrNotFound        = fmt.Errorf("authz: not found: %w", httpx.ErrNotFound)
	ErrConflict        = fmt.Errorf("authz: conflict: %w", httpx.ErrConflict)
	ErrInvalid         = fmt.Errorf("authz: invalid request: %w", httpx.ErrBadRequest)
)

// Service holds the security data (accounts, role bindings, tokens,
// certificate bindings) and makes decisions with the policy engine.
type Service struct {
	db     *store.DB
	log    *audit.Log
	mac    *Integrity
	engine *policy.Engine
	clock  clock.Clock
	certs  *CertAuth
	sso    Verifier
	tokens tokenCache
	orgs   orgCache
}

// New returns the security service.
func New(db *store.DB, log *audit.Log, mac *Integrity, engine *policy.Engine, c clock.Clock) *Service {
	if c == nil {
		c = clock.New()
	}
	return &Service{db: db, log: log, mac: mac, engine: engine, clock: c}
}

// Engine returns the policy engine.
func (s *Service) Engine() *policy.Engine { return s.engine }

// Account is a principal's stored identity.
type Account struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Kind      string        `json:"kind"`
	Org       string        `json:"org"`
	Clearance policy.Level  `json:"clearance"`
	Roles     []policy.Role `json:"roles"`
	Created   time.Time     `json:"created_at"`
	Disabled  bool          `json:"disabled"`
	// Tampered lists role bindings whose MAC failed; they are not in Roles.
	Tampered []string `json:"tampered,omitempty"`
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// NewAccount is a request to create an account.
type NewAccount struct {
	Name      string        `json:"name"`
	Kind      string        `json:"kind"`
	Org       string        `json:"org"`
	Clearance policy.Level  `json:"clearance"`
	Roles     []policy.Role `json:"roles"`
}

// Validate checks the request.
func (n *NewAccount) Validate() error {
	switch {
	case !validName(n.Name):
		return errors.New("name: 1-128 printable characters")
	case n.Kind != KindPerson && n.Kind != KindApplication && n.Kind != KindSystem:
		return fmt.Errorf("kind: %q is not person, application or system", n.Kind)
	case !validName(n.Org):
		return errors.New("org: 1-128 printable characters")
	case n.Clearance < policy.Public || n.Clearance > policy.Confidential:
		return fmt.Errorf("clearance: %d is not a level", n.Clearance)
	}
	for _, r := range n.Roles {
		if !r.Valid() {
			return fmt.Errorf("roles: unknown role %q", r)
		}
	}
	return nil
}

func accountMAC(in *Integrity, id, name, kind, org string, clearance int, created, disabled string) string {
	return in.MAC("authz_accounts", id, name, kind, org, fmt.Sprint(clearance), created, disabled)
}

func bindingMAC(in *Integrity, account, role, by, at string) string {
	return in.MAC("authz_role_bindings", account, role, by, at)
}

// CreateAccount creates an account with its roles, refusing role sets that
// must not combine (the refusal is audited).
func (s *Service) CreateAccount(ctx context.Context, req NewAccount) (*Account, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	actor := audit.ActorFrom(ctx)
	if err := policy.CheckRoles(req.Roles); err != nil {
		s.refuse(ctx, "authz.account.create", "account/"+req.Name, err)
		return nil, fmt.Errorf("%w: %v", ErrConflict, err)
	}
	now := s.clock.Now().UTC()
	a := &Account{ID: newID(), Name: req.Name, Kind: req.Kind, Org: req.Org, Clearance: req.Clearance, Roles: req.Roles, Created: now}
	created := now.Format(time.RFC3339Nano)
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: actor, Action: "authz.account.create", Object: "account/" + a.ID, Outcome: audit.Success,
		Details: map[string]any{"name": a.Name, "kind": a.Kind, "org": a.Org, "clearance": a.Clearance.String(), "roles": a.Roles}},
		func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO authz_accounts (id, name, kind, org, clearance, created_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				a.ID, a.Name, a.Kind, a.Org, int(a.Clearance), created, accountMAC(s.mac, a.ID, a.Name, a.Kind, a.Org, int(a.Clearance), created, "")); err != nil {
				if store.IsUniqueViolation(err) {
					return fmt.Errorf("%w: account %q exists", ErrConflict, a.Name)
				}
				return err
			}
			for _, r := range a.Roles {
				if _, err := tx.Exec(ctx, `INSERT INTO authz_role_bindings (account_id, role, granted_by, granted_at, mac) VALUES (?, ?, ?, ?, ?)`,
					a.ID, string(r), actor, created, bindingMAC(s.mac, a.ID, string(r), actor, created)); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// refuse audits a refused change in a transaction of its own.
func (s *Service) refuse(ctx context.Context, action, object string, why error) {
	_, _ = s.log.Write(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: action, Object: object,
		Outcome: audit.Denied, RequestID: httpx.RequestID(ctx), Details: map[string]any{"reason": why.Error()}})
}

// Grant adds a role to an account, refusing combinations that must not be
// held together (ACCEPTANCE.md K-03); the refusal is audited.
func (s *Service) Grant(ctx context.Context, accountID string, role policy.Role) error {
	if !role.Valid() {
		return fmt.Errorf("%w: unknown role %q", ErrInvalid, role)
	}
	actor := audit.ActorFrom(ctx)
	var refusal error
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: actor, Action: "authz.role.grant", Object: "account/" + accountID, Outcome: audit.Success,
		Details: map[string]any{"role": string(role)}}, func(tx *store.Tx) error {
		a, err := s.account(ctx, tx, accountID)
		if err != nil {
			return err
		}
		if slices.Contains(a.Roles, role) {
			return fmt.Errorf("%w: account already has role %s", ErrConflict, role)
		}
		if err := policy.CheckRoles(append(slices.Clone(a.Roles), role)); err != nil {
			refusal = err
			return fmt.Errorf("%w: %v", ErrConflict, err)
		}
		at := s.clock.Now().UTC().Format(time.RFC3339Nano)
		_, err = tx.Exec(ctx, `INSERT INTO authz_role_bindings (account_id, role, granted_by, granted_at, mac) VALUES (?, ?, ?, ?, ?)`,
			accountID, string(role), actor, at, bindingMAC(s.mac, accountID, string(role), actor, at))
		return err
	})
	if refusal != nil {
		s.refuse(ctx, "authz.role.grant", "account/"+accountID, fmt.Errorf("role %s: %w", role, refusal))
	}
	return err
}

// Revoke removes a role from an account.
func (s *Service) Revoke(ctx context.Context, accountID string, role policy.Role) error {
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: "authz.role.revoke", Object: "account/" + accountID, Outcome: audit.Success,
		Details: map[string]any{"role": string(role)}}, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, "DELETE FROM authz_role_bindings WHERE account_id = ? AND role = ?", accountID, string(role))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: account %s has no role %s", ErrNotFound, accountID, role)
		}
		return nil
	})
	return err
}

// Account returns an account with its verified roles.
func (s *Service) Account(ctx context.Context, id string) (*Account, error) {
	var a *Account
	err := s.db.Read(ctx, func(q store.Querier) error {
		var err error
		a, err = s.account(ctx, q, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(a.Tampered) > 0 {
		s.alert(ctx, "account/"+id, fmt.Errorf("role bindings %s failed their integrity check and are ignored", strings.Join(a.Tampered, ", ")))
	}
	return a, nil
}

// AccountByName looks an account up by name.
func (s *Service) AccountByName(ctx context.Context, name string) (*Account, error) {
	var id string
	if err := s.db.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT id FROM authz_accounts WHERE name = ?", name).Scan(&id)
	}); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: account %q", ErrNotFound, name)
		}
		return nil, err
	}
	return s.Account(ctx, id)
}

// alert audits an integrity failure.
func (s *Service) alert(ctx context.Context, object string, why error) {
	_, _ = s.log.Write(ctx, s.db, audit.Record{Actor: "system", Action: "authz.integrity", Object: object,
		Outcome: audit.Failure, RequestID: httpx.RequestID(ctx), Details: map[string]any{"reason": why.Error()}})
}

// account reads and verifies an account and its role bindings.
func (s *Service) account(ctx context.Context, q store.Querier, id string) (*Account, error) {
	var a Account
	var clearance int
	var created, disabled, mac string
	err := q.QueryRow(ctx, "SELECT id, name, kind, org, clearance, created_at, disabled_at, mac FROM authz_accounts WHERE id = ?", id).
		Scan(&a.ID, &a.Name, &a.Kind, &a.Org, &clearance, &created, &disabled, &mac)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: account %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if err := s.mac.Check(mac, "authz_accounts", a.ID, a.Name, a.Kind, a.Org, fmt.Sprint(clearance), created, disabled); err != nil {
		return nil, fmt.Errorf("account %s: %w", id, err)
	}
	a.Clearance, a.Disabled = policy.Level(clearance), disabled != ""
	a.Created, _ = time.Parse(time.RFC3339Nano, created)
	rows, err := q.Query(ctx, "SELECT role, granted_by, granted_at, mac FROM authz_role_bindings WHERE account_id = ? ORDER BY role", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var role, by, at, bmac string
		if err := rows.Scan(&role, &by, &at, &bmac); err != nil {
			return nil, err
		}
		if s.mac.Check(bmac, "authz_role_bindings", id, role, by, at) != nil {
			a.Tampered = append(a.Tampered, role)
			continue
		}
		a.Roles = append(a.Roles, policy.Role(role))
	}
	return &a, rows.Err()
}

// readIDs runs query, which selects one id column, and returns the ids,
// the rows closed before the caller reads each (a reader may hold one
// connection).
func readIDs(ctx context.Context, q store.Querier, query string) ([]string, error) {
	rows, err := q.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Accounts lists every account (with verified roles).
func (s *Service) Accounts(ctx context.Context) ([]*Account, error) {
	var out []*Account
	err := s.db.Read(ctx, func(q store.Querier) error {
		out = out[:0]
		ids, err := readIDs(ctx, q, "SELECT id FROM authz_accounts ORDER BY name")
		if err != nil {
			return err
		}
		for _, id := range ids {
			a, err := s.account(ctx, q, id)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Disable disables an account: its tokens and certificates stop working.
func (s *Service) Disable(ctx context.Context, id string) error {
	_, err := s.log.Do(ctx, s.db, audit.Record{Actor: audit.ActorFrom(ctx), Action: "authz.account.disable", Object: "account/" + id, Outcome: audit.Success},
		func(tx *store.Tx) error {
			a, err := s.account(ctx, tx, id)
			if err != nil {
				return err
			}
			var created string
			if err := tx.QueryRow(ctx, "SELECT created_at FROM authz_accounts WHERE id = ?", id).Scan(&created); err != nil {
				return err
			}
			at := s.clock.Now().UTC().Format(time.RFC3339Nano)
			_, err = tx.Exec(ctx, "UPDATE authz_accounts SET disabled_at = ?, mac = ? WHERE id = ?", at,
				accountMAC(s.mac, a.ID, a.Name, a.Kind, a.Org, int(a.Clearance), created, at), id)
			return err
		})
	return err
}
