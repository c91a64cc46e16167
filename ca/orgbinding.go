package ca

import (
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/config"
)

// The organisation binding. A registration officer or an application
// account acts for one organisation (its account's Org); what a certificate
// it obtains says about an organisation must be that organisation's
// registered values (authz.Org: the organisation registry a system
// administrator keeps), not whatever the registration record says. EJBCA
// fixes an RA's organisation values in its end-entity profile; Boulder
// issues only for identifiers the account has validated. The values bound
// are those a certificate carries about an organisation: subject O (from
// the record or, for a profile that takes it so, the CSR) and the GM/T 0015
// organisation identity extensions the profile writes from the record
// (uscc, org-code, tax: authz.OrgCodeKinds). CA operators, and the
// platform's own issuance (IssueFor), are not bound: they issue for any
// organisation.

// oidOrganization is subject O (X.520 organizationName, 2.5.4.10).
var oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}

// orgBound reports whether p's requests are bound to its organisation.
func orgBound(p *authz.Principal) bool {
	if p == nil || p.Account == nil || p.Has(policy.RoleCAOperator) {
		return false
	}
	return p.Has(policy.RoleRA, policy.RoleApplication) || p.Account.Kind == authz.KindApplication
}

// registerHint says how an organisation is registered.
func registerHint(org string) string {
	return fmt.Sprintf("a system administrator registers it with `govtrust account org set %s --legal-name NAME [--uscc CODE] [--org-code CODE] [--tax NUMBER]` or PUT /api/v1/orgs/%s", org, org)
}

// checkOrgBinding refuses (ErrPolicy, 422) a certificate template of a
// bound principal whose organisation values are not its organisation's
// registered ones. record is the request's registration record, prof the
// profile that built tmpl from it.
func (s *Service) checkOrgBinding(ctx context.Context, p *authz.Principal, prof *profile.Profile, record map[string]string, tmpl *smx509.Certificate) error {
	if !orgBound(p) {
		return nil
	}
	orgID := p.Account.Org
	org, err := s.env.Authz.OrgOf(ctx, p)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		if s.env.Config != nil && s.env.Config.Mode == config.ModeProduction {
			return fmt.Errorf("%w: organisation %q of account %s is not in the organisation registry, so the certificate's organisation values cannot be checked; %s",
				ErrPolicy, orgID, p.Account.Name, registerHint(orgID))
		}
		if _, warned := s.orgWarned.LoadOrStore(orgID, true); !warned {
			s.env.Logger.Warn("ca: organisation not registered; issuing without checking the certificate's organisation values against the registry (refused in production mode)",
				"org", orgID, "account", p.Account.Name, "fix", registerHint(orgID))
		}
		return nil
	case err != nil:
		return fmt.Errorf("ca: organisation binding: %w", err)
	}
	const source = "organisation registry (GET /api/v1/orgs, govtrust account org list)"
	for _, o := range organizations(tmpl) {
		if o != org.LegalName {
			from := "the registration record"
			if r, ok := prof.Subject["O"]; ok && !strings.HasPrefix(r.Source, "record:") {
				from = "source " + r.Source
			}
			return fmt.Errorf("%w: subject O %q (from %s) is not the legal name of organisation %s, %q in the %s",
				ErrPolicy, o, from, orgID, org.LegalName, source)
		}
	}
	for _, rule := range prof.Identity {
		kind := string(rule.Type)
		registered, isOrg := org.Code(kind)
		v := record[kind]
		if !isOrg || v == "" {
			continue
		}
		if registered == "" {
			return fmt.Errorf("%w: record %s %q: organisation %s has no %s in the %s",
				ErrPolicy, kind, v, orgID, kind, source)
		}
		if normalCode(kind, v) != normalCode(kind, registered) {
			return fmt.Errorf("%w: record %s %q is not the %s of organisation %s, %q in the %s",
				ErrPolicy, kind, v, kind, orgID, registered, source)
		}
	}
	return nil
}

// organizations returns the subject O values tmpl will carry.
func organizations(tmpl *smx509.Certificate) []string {
	out := append([]string{}, tmpl.Subject.Organization...)
	for _, a := range tmpl.Subject.ExtraNames {
		if a.Type.Equal(oidOrganization) {
			if v, ok := a.Value.(string); ok {
				out = append(out, v)
			} else {
				out = append(out, fmt.Sprint(a.Value))
			}
		}
	}
	return out
}

// normalCode writes an organisation code without its optional hyphen
// (GB 11714: "XXXXXXXX-C" and "XXXXXXXXC" are one code).
func normalCode(kind, v string) string {
	if kind == "org-code" && len(v) == 10 && v[8] == '-' {
		return v[:8] + v[9:]
	}
	return v
}
