// Command govtrust is the one binary of the govtrust trust-services platform.
// It only wires: `govtrust up` loads the configuration, constructs the
// services and runs them in one process; the other subcommands are admin and
// client tools (`govtrust audit verify|export`, ...).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code without printing twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "govtrust:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "govtrust",
		Short:         "govtrust trust-services platform: CA, keys, directory, time-stamping, seals, signing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newUpCmd(), newAuditCmd(), newHSMCmd(), newTokenCmd(), newAccountCmd())
	root.AddCommand(newBackupCmd(), newRestoreCmd())
	root.AddCommand(newCACmd())
	root.AddCommand(newTSCmd())
	root.AddCommand(newKMSCmd())
	root.AddCommand(newSignCmd(), newVerifyCmd())
	root.AddCommand(newDirectoryCmd())
	root.AddCommand(newSealCmd(), newAgentCmd())
	return root
}

// newCLILogger logs warnings and errors of offline commands to standard error
// as text.
func newCLILogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
