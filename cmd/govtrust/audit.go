package main

import (
	"bufio"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	return openOffline(ctx, dataDir, dbURL, true, len(create) > 0 && create[0])
}

// inspectDB opens the store for reading only: no migration, so `audit
// verify` and `export` work with a read-only role and leave a forensic copy
// as it was.
func inspectDB(ctx context.Context, dataDir, dbURL string) (*store.DB, *config.Config, error) {
	return openOffline(ctx, dataDir, dbURL, false, false)
}

func openOffline(ctx context.Context, dataDir, dbURL string, migrate, create bool) (*store.DB, *config.Config, error) {
	cfg, err := offlineConfig(dataDir, dbURL)
	if err != nil {
		return nil, nil, err
	}
	sc, err := node.StoreConfig(cfg, dataDir)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Database.URL == "" && !create {
		if _, err := os.Stat(sc.URL); err != nil {
			return nil, nil, fmt.Errorf("no database in %s (run govtrust up once, or give --db): %w", dataDir, err)
		}
	}
	db, err := store.Open(ctx, sc)
	if err != nil {
		return nil, nil, err
	}
	if migrate {
		if err := db.Migrate(ctx, node.BaseMigrations()...); err != nil {
			db.Close()
			return nil, nil, err
		}
	}
	return db, cfg, nil
}

func newAuditCmd() *cobra.Command {
	var dataDir, dbURL string
	cmd := &cobra.Command{Use: "audit", Short: "Verify and export the tamper-evident audit log (offline)"}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./govtrust-data", "data directory")
	cmd.PersistentFlags().StringVar(&dbURL, "db", "", "database URL instead of the data directory's (postgres://...)")

	var asJSON bool
	var keyFiles []string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain and the signed checkpoints; name edited, deleted, truncated and rewritten records by sequence number",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The trusted key comes from a file outside the database: whoever
			// can rewrite the database could replace a key stored in it.
			files := keyFiles
			if len(files) == 0 && (dbURL == "" || cmd.Flags().Changed("data")) {
				def := filepath.Join(dataDir, "bootstrap", "audit-checkpoint.pem")
				if _, err := os.Stat(def); err == nil {
					files = []string{def}
				}
			}
			var keys []crypto.PublicKey
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("checkpoint key: %w", err)
				}
				k, err := audit.ParsePublicKeyPEM(b)
				if err != nil {
					return fmt.Errorf("checkpoint key %s: %w", f, err)
				}
				keys = append(keys, k)
			}
			db, _, err := inspectDB(cmd.Context(), dataDir, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			rep, err := audit.Verify(cmd.Context(), db)
			if err != nil {
				return err
			}
			var cps *audit.CheckpointReport
			if len(keys) > 0 {
				if cps, err = audit.VerifyCheckpoints(cmd.Context(), db, keys...); err != nil {
					return err
				}
			}
			ok := rep.OK() && (cps == nil || cps.OK())
			out := cmd.OutOrStdout()
			if asJSON {
				if err := json.NewEncoder(out).Encode(struct {
					*audit.Report
					Checkpoints         *audit.CheckpointReport `json:"checkpoints"`
					CheckpointsVerified bool                    `json:"checkpoints_verified"`
					OK                  bool                    `json:"ok"`
				}{rep, cps, cps != nil, ok}); err != nil {
					return err
				}
			} else {
				printAuditVerify(out, rep, cps)
			}
			if !ok {
				return exitError{2}
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	verify.Flags().StringArrayVar(&keyFiles, "checkpoint-key", nil,
		"trusted PEM public key of the audit checkpoints (repeatable; default DATA/bootstrap/audit-checkpoint.pem when it exists)")

	var after int64
	var checkpoints bool
	export := &cobra.Command{
		Use:   "export",
		Short: "Write audit records (or, with --checkpoints, signed checkpoints) as JSON lines to standard output",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, err := inspectDB(cmd.Context(), dataDir, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			w := bufio.NewWriter(cmd.OutOrStdout())
			if checkpoints {
				_, err = audit.ExportCheckpoints(cmd.Context(), db, after, w)
			} else {
				_, err = audit.Export(cmd.Context(), db, after, w)
			}
			if err != nil {
				return err
			}
			return w.Flush()
		},
	}
	export.Flags().Int64Var(&after, "after", 0, "export records (or checkpoints covering records) with a sequence number above this")
	export.Flags().BoolVar(&checkpoints, "checkpoints", false, "export the signed checkpoints instead of the records")
	cmd.AddCommand(verify, export)
	return cmd
}

// printAuditVerify writes the human-readable verify report: problems first, then
// one summary line for the chain and one for the checkpoints.
func printAuditVerify(out io.Writer, rep *audit.Report, cps *audit.CheckpointReport) {
	for _, p := range rep.Problems {
		fmt.Fprintln(out, p)
	}
	status := "OK"
	if !rep.OK() {
		status = fmt.Sprintf("FAILED (%d problems)", len(rep.Problems))
	}
	fmt.Fprintf(out, "audit chain %s: %d records, last seq %d, head seq %d, head hash %s\n",
		status, rep.Records, rep.LastSeq, rep.HeadSeq, rep.HeadHash)
	if cps == nil {
		fmt.Fprintln(out, "checkpoints not verified: no trusted checkpoint key (give --checkpoint-key FILE)")
		return
	}
	for _, p := range cps.Problems {
		fmt.Fprintln(out, p)
	}
	status = "OK"
	if !cps.OK() {
		status = fmt.Sprintf("FAILED (%d problems)", len(cps.Problems))
	}
	tail := fmt.Sprintf("no valid checkpoint, all %d records unprotected", cps.Unprotected)
	if cps.Valid > 0 {
		tail = fmt.Sprintf("newest valid at seq %d (%s), %d records after it unprotected",
			cps.NewestSeq, cps.NewestTime.Format(time.RFC3339), cps.Unprotected)
	}
	fmt.Fprintf(out, "audit checkpoints %s: %d checkpoints, %d valid, %s; trusted key SM3 %s\n",
		status, cps.Checkpoints, cps.Valid, tail, strings.Join(cps.TrustedKeys, ", "))
}
