// Rawcrypto measures this machine's raw SM2 and ECDSA P-256 signing and
// verification rates on all cores and prints them under the report header of
// ACCEPTANCE.md §3. They are the denominators of every govtrust service
// benchmark (see bench/README.md).
//
// Usage:
//
//	go run ./bench/rawcrypto [-duration 3s] [-json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/govtrust/govtrust/bench/ref"
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measuring time per operation")
	asJSON := flag.Bool("json", false, "print one JSON object instead of text")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *duration, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "rawcrypto:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, d time.Duration, asJSON bool) error {
	// The facts are collected before measuring so the date is the start of the run.
	facts := ref.Collect(ctx)
	if !asJSON {
		facts.Print(os.Stdout)
		// The per-run facts of ACCEPTANCE.md §3, as every load program states them.
		fmt.Printf("storage:  none\n")
		fmt.Printf("keys:     software, in process memory\n")
		fmt.Printf("duration: %s per operation\n\n", d)
	}
	r, err := ref.Measure(ctx, d)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Facts ref.Facts `json:"facts"`
			Rates ref.Rates `json:"rates"`
		}{facts, r})
	}
	r.Report(os.Stdout)
	return nil
}
