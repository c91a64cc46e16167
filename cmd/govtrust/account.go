package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

func newAccountCmd() *cobra.Command {
	var dataDir, dbURL string
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Accounts and roles, offline on the data directory (the way administrator accounts are made)",
		Long: `Accounts and roles, offline on the data directory.

The API refuses to create administrator accounts (sysadmin, secadmin, auditor), to
grant those roles, or to mint tokens for another administrator, so that no single
administrator can become another. Those are done here, by whoever holds the data
directory and its keys, and each change is audited as cli:<user>.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./govtrust-data", "data directory")
	cmd.PersistentFlags().StringVar(&dbURL, "db", "", "database URL instead of the data directory's")

	var name, kind, org, clearance string
	var roles []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an account with roles",
		Args:  cobra.NoArgs,
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, _ []string) error {
			lvl, err := policy.ParseLevel(clearance)
			if err != nil {
				return err
			}
			rs := make([]policy.Role, len(roles))
			for i, r := range roles {
				rs[i] = policy.Role(r)
			}
			a, err := svc.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: kind, Org: org, Clearance: lvl, Roles: rs})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created account %s (%s)\n", a.Name, a.ID)
			return nil
		}),
	}
	create.Flags().StringVar(&name, "name", "", "account name")
	create.Flags().StringVar(&kind, "kind", authz.KindPerson, "person, application or system")
	create.Flags().StringVar(&org, "org", "", "organisation (department code)")
	create.Flags().StringVar(&clearance, "clearance", "internal", "public, internal, secret or confidential (公开, 内部, 秘密, 机密)")
	create.Flags().StringSliceVar(&roles, "role", nil, "role (repeatable)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("org")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List accounts with their verified roles",
		Args:  cobra.NoArgs,
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, _ []string) error {
			accs, err := svc.Accounts(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(accs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tKIND\tORG\tCLEARANCE\tROLES\tDISABLED")
			for _, a := range accs {
				rs := make([]string, len(a.Roles))
				for i, r := range a.Roles {
					rs[i] = string(r)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", a.Name, a.ID, a.Kind, a.Org, a.Clearance, dash(strings.Join(rs, ",")), a.Disabled)
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	roleCmd := func(use, short string, grant bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ACCOUNT ROLE",
			Short: short,
			Args:  cobra.ExactArgs(2),
			RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, args []string) error {
				a, err := svc.AccountByName(ctx, args[0])
				if err != nil {
					return err
				}
				if grant {
					err = svc.Grant(ctx, a.ID, policy.Role(args[1]))
				} else {
					err = svc.Revoke(ctx, a.ID, policy.Role(args[1]))
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s\n", use, a.Name, args[1])
				return nil
			}),
		}
	}
	disable := &cobra.Command{
		Use:   "disable ACCOUNT",
		Short: "Disable an account: its tokens and certificates stop working",
		Args:  cobra.ExactArgs(1),
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, args []string) error {
			a, err := svc.AccountByName(ctx, args[0])
			if err != nil {
				return err
			}
			if err := svc.Disable(ctx, a.ID); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "disabled", a.Name)
			return nil
		}),
	}
	bindCert := &cobra.Command{
		Use:   "bind-cert ACCOUNT CERT.pem",
		Short: "Bind a certificate (exactly it: its SHA-256) to an account, for TLS client-certificate login and as a key recovery officer's certificate",
		Long: `Bind a certificate to an account, offline on the data directory.

The binding names exactly this certificate (the SHA-256 of its DER; its
issuer and subject are kept for display): another certificate with the same
names, a renewal among them, is not bound and must be bound itself. A
certificate is bound to one account. A binding of the same names and
account made before bindings named their certificate is replaced.`,
		Args: cobra.ExactArgs(2),
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, args []string) error {
			a, err := svc.AccountByName(ctx, args[0])
			if err != nil {
				return err
			}
			der, err := readCertificateFile(args[1])
			if err != nil {
				return err
			}
			if err := svc.BindCertificateDER(ctx, a.ID, der); err != nil {
				return err
			}
			c, _ := smx509.ParseCertificate(der)
			fmt.Fprintf(cmd.OutOrStdout(), "bound certificate %s (serial %x, issuer %s, SHA-256 %s) to account %s\n",
				c.Subject, c.SerialNumber, c.Issuer, authz.CertFingerprint(der), a.Name)
			return nil
		}),
	}
	cmd.AddCommand(create, list, roleCmd("grant", "Grant a role (combinations that must not be held together are refused)", true),
		roleCmd("revoke", "Revoke a role", false), disable, bindCert, newOrgCmd(&dataDir, &dbURL))
	return cmd
}

// readCertificateFile reads the certificate of a PEM (the first
// CERTIFICATE block) or DER file.
func readCertificateFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	der := b
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			der = blk.Bytes
			break
		}
	}
	if _, err := smx509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("%s: not a certificate (PEM or DER): %w", name, err)
	}
	return der, nil
}

// newOrgCmd is `govtrust account org`: the organisation registry, to which
// the CA binds what registration officers and application accounts request.
func newOrgCmd(dataDir, dbURL *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "org",
		Short: "The organisation registry: each organisation's legal name (certificate O) and codes",
		Long: `The organisation registry, offline on the data directory (the API has the same:
PUT /api/v1/orgs/{id}, GET /api/v1/orgs, for system administrators).

For each organisation id that accounts carry (--org of account create), the legal
name its certificates carry as subject O and its codes: the unified social credit
code (uscc), the organisation code and the taxpayer number. The CA issues to the
registration officers and application accounts of an organisation only
certificates whose O and identity extensions are these values.`,
	}
	var o authz.Org
	set := &cobra.Command{
		Use:   "set ORG",
		Short: "Register an organisation, or replace its values (a code not given is no longer registered)",
		Args:  cobra.ExactArgs(1),
		RunE: withAuthz(dataDir, dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, args []string) error {
			o.ID = args[0]
			got, err := svc.SetOrg(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered organisation %s: %s\n", got.ID, got.LegalName)
			return nil
		}),
	}
	set.Flags().StringVar(&o.LegalName, "legal-name", "", "legal name, what certificates carry as O")
	set.Flags().StringVar(&o.USCC, "uscc", "", "unified social credit code (统一社会信用代码, GB 32100)")
	set.Flags().StringVar(&o.OrgCode, "org-code", "", "organisation code (组织机构代码, GB 11714)")
	set.Flags().StringVar(&o.Tax, "tax", "", "taxpayer identification number (纳税人识别号)")
	_ = set.MarkFlagRequired("legal-name")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered organisations",
		Args:  cobra.NoArgs,
		RunE: withAuthz(dataDir, dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, _ []string) error {
			orgs, err := svc.Orgs(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				if orgs == nil {
					orgs = []*authz.Org{}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(orgs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ORG\tLEGAL NAME\tUSCC\tORG CODE\tTAX\tUPDATED BY")
			for _, o := range orgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.LegalName, dash(o.USCC), dash(o.OrgCode), dash(o.Tax), o.UpdatedBy)
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(set, list)
	return cmd
}
