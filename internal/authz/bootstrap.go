package authz

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/govtrust/govtrust/internal/authz/policy"
)

// BootstrapOrg is the organisation of the first administrators, and
// BootstrapDemoOrg the demo department of the first registration officer.
const (
	BootstrapOrg     = "platform"
	BootstrapDemoOrg = "demo"
)

// BootstrapAccounts are the first accounts of CONTRACT.md: the three
// separated administrators and a registration officer of the demo
// organisation, each in an account of its own.
var BootstrapAccounts = []NewAccount{
	{Name: "sysadmin", Kind: KindPerson, Org: BootstrapOrg, Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleSysAdmin}},
	{Name: "secadmin", Kind: KindPerson, Org: BootstrapOrg, Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleSecAdmin}},
	{Name: "auditor", Kind: KindPerson, Org: BootstrapOrg, Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleAuditor}},
	{Name: "ra", Kind: KindPerson, Org: BootstrapDemoOrg, Clearance: policy.Internal, Roles: []policy.Role{policy.RoleRA}},
}

// Bootstrap creates the first accounts and a token for each, and returns
// the tokens by account name. It is run once, on the first start.
func (s *Service) Bootstrap(ctx context.Context, ttl time.Duration) (map[string]string, error) {
	out := map[string]string{}
	for _, req := range BootstrapAccounts {
		a, err := s.CreateAccount(ctx, req)
		if errors.Is(err, ErrConflict) {
			// A first run that stopped half-way: keep the account, issue a
			// fresh token (the old one's file is overwritten).
			a, err = s.AccountByName(ctx, req.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("bootstrap account %s: %w", req.Name, err)
		}
		tok, _, err := s.CreateToken(ctx, a.ID, "bootstrap-"+a.Name, nil, ttl)
		if err != nil {
			return nil, fmt.Errorf("bootstrap token %s: %w", req.Name, err)
		}
		out[a.Name] = tok
	}
	return out, nil
}
