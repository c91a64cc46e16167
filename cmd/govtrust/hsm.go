package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// cliActor names the operator in audit records written by offline commands.
func cliActor(ctx context.Context) context.Context {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return audit.WithActor(ctx, "cli:"+name)
}

// openKeys opens the data directory's key backends as `govtrust up` would.
func openKeys(ctx context.Context, dataDir, dbURL string) (*node.Keys, *store.DB, error) {
	db, cfg, err := offlineDB(ctx, dataDir, dbURL)
	if err != nil {
		return nil, nil, err
	}
	logger := newCLILogger()
	keys, err := node.OpenKeys(ctx, cfg, node.KeysOptions{DB: db, Audit: audit.New(cfg.Node.Name, clock.New()), Logger: logger})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return keys, db, nil
}

// withKeys makes a cobra RunE that opens the data directory's key backends,
// runs fn as the local operator, and closes everything.
func withKeys(dataDir, dbURL *string, fn func(ctx context.Context, cmd *cobra.Command, keys *node.Keys) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		ctx := cliActor(cmd.Context())
		keys, db, err := openKeys(ctx, *dataDir, *dbURL)
		if err != nil {
			return err
		}
		defer db.Close()
		defer keys.Close()
		return fn(ctx, cmd, keys)
	}
}

func newHSMCmd() *cobra.Command {
	var dataDir, dbURL string
	cmd := &cobra.Command{Use: "hsm", Short: "Key stores: initialise the software keystore, list keys and where they live, create and delete keys"}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./govtrust-data", "data directory")
	cmd.PersistentFlags().StringVar(&dbURL, "db", "", "database URL instead of the data directory's")

	var passEnv, passFile, sharesDir string
	var shares, threshold int
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the software keystore's master key, under a passphrase or as m-of-n Shamir shares (printed once)",
		Long: `Create the software keystore's master key before the first production start.

  govtrust hsm init --passphrase-env GOVTRUST_MASTER_PASSPHRASE
  govtrust hsm init --shares 5 --threshold 3 [--shares-dir DIR]

Shamir shares are printed (or written, one file per custodian, mode 0600) once and
stored nowhere else: hand each to its custodian. Then set hsm.soft.unlock in the
configuration to passphrase or shares.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cliActor(cmd.Context())
			req := soft.InitRequest{Logger: newCLILogger()}
			switch {
			case shares > 0:
				if passEnv != "" || passFile != "" {
					return errors.New("choose a passphrase or shares, not both")
				}
				req.Kind, req.Shares, req.Threshold = soft.KindShamir, shares, threshold
			case passEnv != "" || passFile != "":
				ref := config.SecretRef("env:" + passEnv)
				if passFile != "" {
					ref = config.SecretRef("file:" + passFile)
				}
				p, err := ref.Resolve()
				if err != nil {
					return err
				}
				defer clear(p)
				req.Kind, req.Passphrase = soft.KindPassphrase, p
			default:
				return errors.New("give --passphrase-env, --passphrase-file, or --shares and --threshold")
			}
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return err
			}
			db, cfg, err := offlineDB(ctx, dataDir, dbURL, true)
			if err != nil {
				return err
			}
			defer db.Close()
			log := audit.New(cfg.Node.Name, clock.New())
			req.Audit = func(ctx context.Context, action, object, outcome string, details map[string]any) {
				if _, err := log.Write(ctx, db, audit.Record{Actor: audit.ActorFrom(ctx), Action: action, Object: object, Outcome: outcome, Details: details}); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "govtrust: audit write failed:", err)
				}
			}
			res, err := soft.Init(ctx, soft.NewSQLStore(db), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch res.Kind {
			case soft.KindShamir:
				if sharesDir != "" {
					if err := os.MkdirAll(sharesDir, 0o700); err != nil {
						return err
					}
					for i, s := range res.Shares {
						path := filepath.Join(sharesDir, fmt.Sprintf("share-%d.txt", i+1))
						if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
							return err
						}
						fmt.Fprintln(out, "wrote", path)
					}
				} else {
					for i, s := range res.Shares {
						fmt.Fprintf(out, "share %d: %s\n", i+1, s)
					}
				}
				fmt.Fprintf(out, "Master key split %d-of-%d. The shares exist nowhere else: give each to its custodian now.\n"+
					"Configure: hsm.soft.unlock: shares, and hsm.soft.shares: [file:..., ...] (at least %d).\n", threshold, shares, threshold)
				for i := range res.Shares {
					res.Shares[i] = ""
				}
			default:
				fmt.Fprintln(out, "Master key sealed under the passphrase (argon2id). Configure: hsm.soft.unlock: passphrase, and hsm.soft.passphrase: env:NAME or file:PATH.")
			}
			return nil
		},
	}
	f := initCmd.Flags()
	f.StringVar(&passEnv, "passphrase-env", "", "read the passphrase from this environment variable")
	f.StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file")
	f.IntVar(&shares, "shares", 0, "split the master key into this many Shamir shares")
	f.IntVar(&threshold, "threshold", 0, "number of shares needed to unlock")
	f.StringVar(&sharesDir, "shares-dir", "", "write share-N.txt files (mode 0600) here instead of printing the shares")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the software keystore and every configured PKCS#11 token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cliActor(cmd.Context())
			db, cfg, err := offlineDB(ctx, dataDir, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := soft.ReadStatus(ctx, soft.NewSQLStore(db))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case !st.Initialized:
				fmt.Fprintln(out, "software keystore: not initialised (govtrust hsm init, or a dev-mode start creates a dev master key)")
			case st.Kind == soft.KindShamir:
				fmt.Fprintf(out, "software keystore: shamir %d-of-%d master key, %d keys, created %s\n", st.Threshold, st.Shares, st.Keys, st.Created.Format("2006-01-02"))
			case st.Kind == soft.KindPassphrase:
				fmt.Fprintf(out, "software keystore: passphrase master key (argon2id t=%d m=%d KiB p=%d), %d keys, created %s\n", st.KDFTime, st.KDFMemKiB, st.KDFThreads, st.Keys, st.Created.Format("2006-01-02"))
			default:
				fmt.Fprintf(out, "software keystore: DEV master key stored in clear (refused in production), %d keys\n", st.Keys)
			}
			fmt.Fprintf(out, "configured unlock: %s\n", cfg.HSM.Soft.Unlock)
			keys, err := node.OpenKeys(ctx, cfg, node.KeysOptions{DB: db, Audit: audit.New(cfg.Node.Name, clock.New()), Logger: newCLILogger()})
			if err != nil {
				fmt.Fprintf(out, "software keystore: cannot open with the configured unlock: %v\n", err)
				return exitError{2}
			}
			defer keys.Close()
			bad := false
			if err := keys.Soft.Check(ctx); err != nil {
				fmt.Fprintf(out, "software keystore: %v\n", err)
				bad = true
			}
			for _, t := range keys.Tokens {
				state := "ok"
				if err := t.Check(ctx); err != nil {
					state, bad = "UNAVAILABLE: "+err.Error(), true
				}
				fmt.Fprintf(out, "pkcs11 token %s (%s): %s\n", t.Name(), t.Module(), state)
			}
			if bad {
				return exitError{2}
			}
			return nil
		},
	}

	var asJSON bool
	keysCmd := &cobra.Command{
		Use:   "keys",
		Short: "List every key: URI, algorithm, backend, module/slot/label, and where it lives",
		Args:  cobra.NoArgs,
		RunE: withKeys(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, keys *node.Keys) error {
			type backend struct {
				name string
				km   hsm.KeyManager
			}
			backends := []backend{{"soft", keys.Soft}}
			for _, t := range keys.Tokens {
				backends = append(backends, backend{"pkcs11 token " + t.Name(), t})
			}
			var all []*hsm.KeyInfo
			var problems []string
			for _, b := range backends {
				ks, err := b.km.ListKeys(ctx, &hsm.ListKeysRequest{})
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", b.name, err))
					continue
				}
				all = append(all, ks...)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				type row struct {
					URI, Algorithm, Usage, Service, Backend, Module, Slot, Token, Label, Location string
				}
				rows := []row{}
				for _, k := range all {
					rows = append(rows, row{k.URI, string(k.Algorithm), string(k.Usage), k.Service, k.Backend, k.Module, k.Slot, k.Token, k.Label, string(k.Location)})
				}
				if err := json.NewEncoder(out).Encode(map[string]any{"keys": rows, "problems": problems}); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "URI\tALGORITHM\tUSAGE\tSERVICE\tBACKEND\tMODULE\tSLOT\tLABEL\tLOCATION")
				for _, k := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.URI, k.Algorithm, k.Usage, k.Service, k.Backend,
						dash(k.Module), dash(k.Slot), dash(k.Label), k.Location)
				}
				tw.Flush()
				for _, p := range problems {
					fmt.Fprintln(out, "UNAVAILABLE:", p)
				}
			}
			if len(problems) > 0 {
				return exitError{2}
			}
			return nil
		}),
	}
	keysCmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var uri, alg, usage, service string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a key (audited)",
		Args:  cobra.NoArgs,
		RunE: withKeys(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, keys *node.Keys) error {
			a := hsm.Algorithm(alg)
			if !a.Valid() {
				return fmt.Errorf("unknown algorithm %q", alg)
			}
			info, err := keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: a, Usage: hsm.Usage(usage), Service: service})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s (%s, %s, service %s) in %s: %s\n", info.URI, info.Algorithm, info.Usage, info.Service, info.Backend, info.Location)
			return nil
		}),
	}
	create.Flags().StringVar(&uri, "uri", "", "key URI: soft:NAME or pkcs11:token=T;object=LABEL")
	create.Flags().StringVar(&alg, "algorithm", string(hsm.SM2), "sm2, ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, sm4, aes-256")
	create.Flags().StringVar(&usage, "usage", string(hsm.UsageSign), "sign, decrypt or wrap")
	create.Flags().StringVar(&service, "service", "", "owning service (ca, tsa, seal, kms, ...)")
	_ = create.MarkFlagRequired("uri")
	_ = create.MarkFlagRequired("service")

	var delURI, delService string
	del := &cobra.Command{
		Use:   "delete",
		Short: "Destroy a key (audited; only its own service's name deletes it)",
		Args:  cobra.NoArgs,
		RunE: withKeys(&dataDir, &dbURL, func(ctx context.Context, cmd *cobra.Command, keys *node.Keys) error {
			if err := keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: delURI, Service: delService}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted", delURI)
			return nil
		}),
	}
	del.Flags().StringVar(&delURI, "uri", "", "key URI")
	del.Flags().StringVar(&delService, "service", "", "owning service")
	_ = del.MarkFlagRequired("uri")
	_ = del.MarkFlagRequired("service")

	cmd.AddCommand(initCmd, status, keysCmd, create, del)
	return cmd
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
