package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/httpx"
)

// adminAPI serves the security administration and audit endpoints on the
// HTTPS listener: accounts and roles, API tokens, dual-control approvals, and
// the auditor's export of records and checkpoints.
type adminAPI struct {
	n    *Node
	dual *dual.Store
}

func (a *adminAPI) routes(m *authz.Mux) {
	acct := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "account", ID: r.PathValue("id"), Owner: r.PathValue("id")}, nil
	}
	m.Handle("GET /api/v1/accounts", authz.Rule{Action: "authz.account.list"}, a.listAccounts)
	m.Handle("POST /api/v1/accounts", authz.Rule{Action: "authz.account.create"}, a.createAccount)
	m.Handle("POST /api/v1/accounts/{id}/roles", authz.Rule{Action: "authz.role.grant", Resource: acct}, a.grant)
	m.Handle("DELETE /api/v1/accounts/{id}/roles/{role}", authz.Rule{Action: "authz.role.revoke", Resource: acct}, a.revokeRole)
	m.Handle("POST /api/v1/accounts/{id}/disable", authz.Rule{Action: "authz.account.disable", Resource: acct}, a.disable)
	m.Handle("GET /api/v1/tokens", authz.Rule{Action: "authz.token.list"}, a.listTokens)
	m.Handle("POST /api/v1/tokens", authz.Rule{Action: "authz.token.create"}, a.createToken)
	m.Handle("DELETE /api/v1/tokens/{id}", authz.Rule{Action: "authz.token.revoke"}, a.revokeToken)
	m.Handle("GET /api/v1/policies", authz.Rule{Action: "authz.policy.read"}, a.policies)
	orgRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "org", ID: r.PathValue("id"), Org: r.PathValue("id")}, nil
	}
	m.Handle("GET /api/v1/orgs", authz.Rule{Action: "org.registry.list"}, a.listOrgs)
	m.Handle("PUT /api/v1/orgs/{id}", authz.Rule{Action: "org.registry.set", Resource: orgRes}, a.setOrg)

	approval := func(r *http.Request) (policy.Resource, error) {
		req, err := a.dual.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return policy.Resource{}, err
		}
		return policy.Resource{Type: "dual-request", ID: req.ID, Owner: req.Requester, Org: a.orgOf(r, req.Requester),
			Attrs: map[string]string{"kind": req.Kind}}, nil
	}
	approvalCtx := func(_ *http.Request, res policy.Resource) map[string]string {
		return map[string]string{"requester": res.Owner, "kind": res.Attrs["kind"]}
	}
	m.Handle("GET /api/v1/approvals/{id}", authz.Rule{Action: "dual.read", Resource: approval, Context: approvalCtx}, a.getApproval)
	m.Handle("POST /api/v1/approvals/{id}/approve", authz.Rule{Action: "dual.approve", Resource: approval, Context: approvalCtx}, a.approve)
	m.Handle("POST /api/v1/approvals/{id}/reject", authz.Rule{Action: "dual.reject", Resource: approval, Context: approvalCtx}, a.reject)

	auditRes := func(*http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "audit-log", ID: "chain", Level: policy.Confidential}, nil
	}
	m.Handle("GET /api/v1/audit/records", authz.Rule{Action: "audit.export", Resource: auditRes}, a.exportRecords)
	m.Handle("GET /api/v1/audit/checkpoints", authz.Rule{Action: "audit.checkpoint.read"}, a.exportCheckpoints)
	m.Handle("GET /api/v1/audit/verify", authz.Rule{Action: "audit.read", Resource: auditRes}, a.verifyAudit)
}

// adminRoles are the three separated administrator roles. The API never
// creates them, grants them, or mints tokens for another account that holds
// them: one security administrator must not be able to become, or act as,
// another administrator. Administrator accounts are made offline, in a
// ceremony on the data directory (`govtrust account create`), and each
// administrator's tokens by that administrator (or offline).
var adminRoles = []policy.Role{policy.RoleSysAdmin, policy.RoleSecAdmin, policy.RoleAuditor}

func isAdminRole(r policy.Role) bool {
	for _, a := range adminRoles {
		if r == a {
			return true
		}
	}
	return false
}

var errAdminOffline = httpx.Errorf(http.StatusForbidden, "administrator accounts, roles and other administrators' tokens are managed offline (govtrust account, govtrust token), not through the API")

// orgOf returns an account's organisation ("" when unknown).
func (a *adminAPI) orgOf(r *http.Request, accountID string) string {
	acc, err := a.n.authz.Account(r.Context(), accountID)
	if err != nil {
		return ""
	}
	return acc.Org
}

// refused audits a request the API refuses after the policy allowed it.
func (a *adminAPI) refused(r *http.Request, action, object, why string) {
	p := authz.PrincipalFrom(r.Context())
	_, _ = a.n.env.Audit.Write(context.WithoutCancel(r.Context()), a.n.db, audit.Record{Actor: p.Actor(), Action: action, Object: object,
		Outcome: audit.Denied, RequestID: httpx.RequestID(r.Context()), Details: map[string]any{"reason": why}})
}

func (a *adminAPI) listAccounts(w http.ResponseWriter, r *http.Request) error {
	accs, err := a.n.authz.Accounts(r.Context())
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"accounts": accs})
}

func (a *adminAPI) listOrgs(w http.ResponseWriter, r *http.Request) error {
	orgs, err := a.n.authz.Orgs(r.Context())
	if err != nil {
		return err
	}
	if orgs == nil {
		orgs = []*authz.Org{}
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"orgs": orgs})
}

func (a *adminAPI) setOrg(w http.ResponseWriter, r *http.Request) error {
	var req authz.OrgRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	o, err := a.n.authz.SetOrg(r.Context(), authz.Org{ID: r.PathValue("id"), LegalName: req.LegalName, USCC: req.USCC, OrgCode: req.OrgCode, Tax: req.Tax})
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, o)
}

type createAccountReq struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Org       string   `json:"org"`
	Clearance string   `json:"clearance"`
	Roles     []string `json:"roles"`
}

func (a *adminAPI) createAccount(w http.ResponseWriter, r *http.Request) error {
	var req createAccountReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	lvl := policy.Public
	if req.Clearance != "" {
		var err error
		if lvl, err = policy.ParseLevel(req.Clearance); err != nil {
			return httpx.Errorf(http.StatusBadRequest, "clearance: %v", err)
		}
	}
	roles := make([]policy.Role, len(req.Roles))
	for i, s := range req.Roles {
		roles[i] = policy.Role(s)
		if isAdminRole(roles[i]) {
			a.refused(r, "authz.account.create", "account/"+req.Name, "administrator role "+s)
			return errAdminOffline
		}
	}
	acc, err := a.n.authz.CreateAccount(r.Context(), authz.NewAccount{Name: req.Name, Kind: req.Kind, Org: req.Org, Clearance: lvl, Roles: roles})
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusCreated, acc)
}

func (a *adminAPI) grant(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Role string `json:"role"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if isAdminRole(policy.Role(req.Role)) {
		a.refused(r, "authz.role.grant", "account/"+r.PathValue("id"), "administrator role "+req.Role)
		return errAdminOffline
	}
	if err := a.n.authz.Grant(r.Context(), r.PathValue("id"), policy.Role(req.Role)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *adminAPI) revokeRole(w http.ResponseWriter, r *http.Request) error {
	if err := a.n.authz.Revoke(r.Context(), r.PathValue("id"), policy.Role(r.PathValue("role"))); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *adminAPI) disable(w http.ResponseWriter, r *http.Request) error {
	if err := a.n.authz.Disable(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *adminAPI) listTokens(w http.ResponseWriter, r *http.Request) error {
	toks, err := a.n.authz.Tokens(r.Context(), r.URL.Query().Get("account"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"tokens": toks})
}

type createTokenReq struct {
	Account string   `json:"account"` // account ID or name
	Name    string   `json:"name"`
	Scopes  []string `json:"scopes"`
	TTL     string   `json:"ttl"` // Go duration, e.g. "720h"
}

func (a *adminAPI) createToken(w http.ResponseWriter, r *http.Request) error {
	var req createTokenReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		return httpx.Errorf(http.StatusBadRequest, "ttl: %q is not a duration such as 720h", req.TTL)
	}
	acc, err := a.n.authz.Account(r.Context(), req.Account)
	if err != nil {
		if acc, err = a.n.authz.AccountByName(r.Context(), req.Account); err != nil {
			return err
		}
	}
	if p := authz.PrincipalFrom(r.Context()); p.Account.ID != acc.ID {
		for _, role := range acc.Roles {
			if isAdminRole(role) {
				a.refused(r, "authz.token.create", "account/"+acc.ID, "token for another administrator")
				return errAdminOffline
			}
		}
	}
	scopes := make([]policy.Role, len(req.Scopes))
	for i, s := range req.Scopes {
		scopes[i] = policy.Role(s)
	}
	tok, info, err := a.n.authz.CreateToken(r.Context(), acc.ID, req.Name, scopes, ttl)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpx.WriteJSON(w, http.StatusCreated, map[string]any{"token": tok, "info": info})
}

func (a *adminAPI) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.n.authz.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *adminAPI) policies(w http.ResponseWriter, r *http.Request) error {
	e := a.n.authz.Engine()
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"version": e.Version(), "policies": e.Policies()})
}

func (a *adminAPI) getApproval(w http.ResponseWriter, r *http.Request) error {
	req, err := a.dual.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, req)
}

type decisionReq struct {
	// PayloadHash is the hex SM3 of the exact request the approver approves
	// (shown to them with the request): an approval is bound to it.
	PayloadHash string `json:"payload_hash"`
	Comment     string `json:"comment"`
}

func (a *adminAPI) approve(w http.ResponseWriter, r *http.Request) error {
	var req decisionReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	h, err := hex.DecodeString(req.PayloadHash)
	if err != nil || len(h) != 32 {
		return httpx.Errorf(http.StatusBadRequest, "payload_hash: 64 hex digits (SM3) expected")
	}
	p := authz.PrincipalFrom(r.Context())
	out, err := a.dual.Approve(r.Context(), r.PathValue("id"), p.Account.ID, h, req.Comment)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}

func (a *adminAPI) reject(w http.ResponseWriter, r *http.Request) error {
	var req decisionReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	p := authz.PrincipalFrom(r.Context())
	out, err := a.dual.Reject(r.Context(), r.PathValue("id"), p.Account.ID, req.Comment)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}

func afterParam(r *http.Request) (int64, error) {
	s := r.URL.Query().Get("after")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, httpx.Errorf(http.StatusBadRequest, "after: a sequence number")
	}
	return n, nil
}

// exportRecords streams audit records as JSON lines (application/x-ndjson).
func (a *adminAPI) exportRecords(w http.ResponseWriter, r *http.Request) error {
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	if _, err := audit.Export(r.Context(), a.n.db, after, bw); err != nil {
		return err
	}
	return bw.Flush()
}

func (a *adminAPI) exportCheckpoints(w http.ResponseWriter, r *http.Request) error {
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	if _, err := audit.ExportCheckpoints(r.Context(), a.n.db, after, bw); err != nil {
		return err
	}
	return bw.Flush()
}

// verifyAudit runs the chain and checkpoint verification online.
func (a *adminAPI) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	rep, err := audit.Verify(r.Context(), a.n.db)
	if err != nil {
		return err
	}
	out := map[string]any{"chain": rep}
	if a.n.cp != nil {
		pub := a.n.cpPublic
		cps, err := audit.VerifyCheckpoints(r.Context(), a.n.db, pub)
		if err != nil {
			return err
		}
		out["checkpoints"] = cps
		out["ok"] = rep.OK() && cps.OK()
	} else {
		out["ok"] = rep.OK()
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}
