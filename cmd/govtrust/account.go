package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

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
	cmd.AddCommand(create, list, roleCmd("grant", "Grant a role (combinations that must not be held together are refused)", true),
		roleCmd("revoke", "Revoke a role", false), disable)
	return cmd
}
