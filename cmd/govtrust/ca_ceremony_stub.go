package main

import "github.com/spf13/cobra"

// caCeremonyCommands stands in for the CA ceremony subcommands (init-root,
// init-sub, cross-sign, import) until cmd/govtrust/ca_ceremony.go provides
// them; delete this file when it does.
func caCeremonyCommands() []*cobra.Command { return nil }
