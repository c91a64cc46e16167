package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/kms"
	"github.com/govtrust/govtrust/kms/kmc"
	"github.com/govtrust/govtrust/signature"
	"github.com/govtrust/govtrust/signature/seal"
	"github.com/govtrust/govtrust/tsa"
)

func newUpCmd() *cobra.Command {
	var dataDir, configFile string
	var mode, httpAddr, httpsAddr, ldapAddr, dbURL string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run every service in one process (first run initialises the data directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := node.Options{
				DataDir: dataDir, ConfigFile: configFile, Environ: os.Environ(),
				Progress: cmd.OutOrStdout(), LogOutput: cmd.ErrOrStderr(),
			}
			flags := cmd.Flags()
			for name, p := range map[string]**string{"mode": &opts.Mode, "http": &opts.HTTP, "https": &opts.HTTPS, "ldap": &opts.LDAP, "db": &opts.DB} {
				if flags.Changed(name) {
					v, _ := flags.GetString(name)
					*p = &v
				}
			}
			return run(cmd.Context(), cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "./govtrust-data", "data directory (created on first run)")
	f.StringVar(&configFile, "config", "", "configuration file (default DATA/govtrust.yaml, written on first run)")
	f.StringVar(&mode, "mode", "dev", "dev or production (production refuses unsafe settings)")
	f.StringVar(&httpAddr, "http", "127.0.0.1:8080", "plain HTTP listener: certificates, CRLs, OCSP, TSA, health")
	f.StringVar(&httpsAddr, "https", "127.0.0.1:8443", "HTTPS listener: API, portal, SSO, metrics")
	f.StringVar(&ldapAddr, "ldap", "127.0.0.1:3389", "LDAP listener of the directory")
	f.StringVar(&dbURL, "db", "", "database: empty for DATA/govtrust.db (SQLite), or postgres://user@host/db")
	return cmd
}

// services returns the platform's services, wired together. Each issue that
// adds a service adds it here.
func services() []node.Service {
	c, k := ca.New(), kmc.New()
	c.UseKMC(kmcClient{k})
	k.UseCertificates(caCertificates{c})
	t := tsa.New(c)
	return []node.Service{c, t, kms.New(), k, signature.New(c, c, t), directory.New(caSource{}), seal.New(c, c, t)}
}

func run(ctx context.Context, cmd *cobra.Command, opts node.Options) error {
	n, err := node.Start(ctx, opts, services()...)
	if err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(cmd.OutOrStdout(), "govtrust: signal received, draining")
	case runErr = <-n.Errors():
		fmt.Fprintln(cmd.ErrOrStderr(), "govtrust: listener failed:", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "govtrust: stopped")
	return runErr
}
