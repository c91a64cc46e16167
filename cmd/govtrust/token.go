package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
)

// offlineAuthz opens the security service of a data directory as the node
// does (integrity key through the key manager, platform and site policies).
// Offline commands act as the local operator ("cli:<user>" in the audit log):
// whoever can run them already holds the data directory and its keys.
func offlineAuthz(ctx context.Context, dataDir, dbURL string) (*authz.Service, func(), error) {
	keys, db, err := openKeys(ctx, dataDir, dbURL)
	if err != nil {
		return nil, nil, err
	}
	closeAll := func() { keys.Close(); db.Close() }
	mac, err := authz.OpenIntegrity(ctx, db, keys, authz.DefaultIntegrityKEK)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	var site = os.DirFS(filepath.Join(dataDir, "policies"))
	if _, err := os.Stat(filepath.Join(dataDir, "policies")); err != nil {
		site = nil
	}
	engine, err := policy.New(site)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	cfg, err := offlineConfig(dataDir, dbURL)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return authz.New(db, audit.New(cfg.Node.Name, clock.New()), mac, engine, nil), closeAll, nil
}

// withAuthz makes a cobra RunE that opens the data directory's security
// service, runs fn as the local operator, and closes everything.
func withAuthz(dataDir, dbURL *string, fn func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cliActor(cmd.Context())
		svc, done, err := offlineAuthz(ctx, *dataDir, *dbURL)
		if err != nil {
			return err
		}
		defer done()
		return fn(ctx, cmd, svc, args)
	}
}

func newTokenCmd() *cobra.Command {
	var dataDir, dbURL string
	cmd := &cobra.Command{Use: "token", Short: "API bearer tokens: create (shown once), list, revoke (offline, on the data directory)"}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./govtrust-data", "data directory")
	cmd.PersistentFlags().StringVar(&dbURL, "db", "", "database URL instead of the data directory's")

	var account, name string
	var ttl time.Duration
	var scopes []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token for an account and print it once",
		Args:  cobra.NoArgs,
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, _ []string) error {
			acc, err := svc.AccountByName(ctx, account)
			if err != nil {
				return err
			}
			rs := make([]policy.Role, len(scopes))
			for i, s := range scopes {
				rs[i] = policy.Role(s)
			}
			tok, info, err := svc.CreateToken(ctx, acc.ID, name, rs, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s for %s, expires %s; it is shown only now\n", info.ID, acc.Name, info.ExpiresAt.Format(time.RFC3339))
			return nil
		}),
	}
	create.Flags().StringVar(&account, "account", "", "account name")
	create.Flags().StringVar(&name, "name", "", "token name (what it is for)")
	create.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "lifetime")
	create.Flags().StringSliceVar(&scopes, "scope", nil, "narrow the token to these roles of the account (repeatable)")
	_ = create.MarkFlagRequired("account")
	_ = create.MarkFlagRequired("name")

	var listAccount string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, _ []string) error {
			id := ""
			if listAccount != "" {
				acc, err := svc.AccountByName(ctx, listAccount)
				if err != nil {
					return err
				}
				id = acc.ID
			}
			toks, err := svc.Tokens(ctx, id)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(toks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tACCOUNT\tNAME\tSCOPES\tEXPIRES\tREVOKED")
			for _, t := range toks {
				sc := make([]string, len(t.Scopes))
				for i, s := range t.Scopes {
					sc[i] = string(s)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", t.ID, t.AccountID, t.Name, dash(strings.Join(sc, ",")), t.ExpiresAt.Format(time.RFC3339), t.Revoked)
			}
			return tw.Flush()
		}),
	}
	list.Flags().StringVar(&listAccount, "account", "", "only this account's tokens")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once",
		Args:  cobra.ExactArgs(1),
		RunE: withAuthz(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, svc *authz.Service, args []string) error {
			if err := svc.RevokeToken(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked", args[0])
			return nil
		}),
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
