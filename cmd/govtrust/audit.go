package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// offlineConfig loads the configuration of a data directory (its
// govtrust.yaml when there is one, and the environment), with dbURL, when
// given, overriding the database.
func offlineConfig(dataDir, dbURL string) (*config.Config, error) {
	path := filepath.Join(dataDir, "govtrust.yaml")
	if _, err := os.Stat(path); err != nil {
		path = ""
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, err
	}
	if dbURL != "" {
		cfg.Database.URL = dbURL
	}
	return cfg, cfg.Validate()
}

// offlineDB opens and migrates the store of a data directory (through its
// configuration file) or the database URL given, without starting anything.
// A data directory without a database is an error unless create is set.
func offlineDB(ctx context.Context, dataDir, dbURL string, create ...bool) (*store.DB, *config.Config, error) {
	cfg, err := offlineConfig(dataDir, dbURL)
	if err != nil {
		return nil, nil, err
	}
	sc, err := node.StoreConfig(cfg, dataDir)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Database.URL == "" && !(len(create) > 0 && create[0]) {
		if _, err := os.Stat(sc.URL); err != nil {
			return nil, nil, fmt.Errorf("no database in %s (run govtrust up once, or give --db): %w", dataDir, err)
		}
	}
	db, err := store.Open(ctx, sc)
	if err != nil {
		return nil, nil, err
	}
	if err := db.Migrate(ctx, node.BaseMigrations()...); err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, cfg, nil
}

func newAuditCmd() *cobra.Command {
	var dataDir, dbURL string
	cmd := &cobra.Command{Use: "audit", Short: "Verify and export the tamper-evident audit log (offline)"}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./govtrust-data", "data directory")
	cmd.PersistentFlags().StringVar(&dbURL, "db", "", "database URL instead of the data directory's (postgres://...)")

	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain; report edited, deleted and truncated records by sequence number",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, err := offlineDB(cmd.Context(), dataDir, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			rep, err := audit.Verify(cmd.Context(), db)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := json.NewEncoder(out).Encode(rep); err != nil {
					return err
				}
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintln(out, p)
				}
				status := "OK"
				if !rep.OK() {
					status = fmt.Sprintf("FAILED (%d problems)", len(rep.Problems))
				}
				fmt.Fprintf(out, "audit chain %s: %d records, last seq %d, head seq %d, head hash %s\n",
					status, rep.Records, rep.LastSeq, rep.HeadSeq, rep.HeadHash)
			}
			if !rep.OK() {
				return exitError{2}
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")

	var after int64
	export := &cobra.Command{
		Use:   "export",
		Short: "Write audit records as JSON lines to standard output",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, err := offlineDB(cmd.Context(), dataDir, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			w := bufio.NewWriter(cmd.OutOrStdout())
			if _, err := audit.Export(cmd.Context(), db, after, w); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	export.Flags().Int64Var(&after, "after", 0, "export records with a sequence number above this")
	cmd.AddCommand(verify, export)
	return cmd
}
