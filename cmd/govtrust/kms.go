package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/kms"
	"github.com/govtrust/govtrust/kms/kmc"
)

func newKMSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kms",
		Short: "Key service: application keys (encrypt, decrypt, rotate) and escrowed key recovery",
		Long: `Application keys and the key management centre, through the node's HTTPS API
(--url, --token-file, --cacert, as for govtrust ca).

encrypt and decrypt stream raw bytes (--in/--out, "-" for standard input and
output); the ciphertext carries the key name, version and algorithm.
recover asks for the recovery of an escrowed encryption key (two key recovery
officers approve it at /api/v1/approvals/{id}), or with --execute carries out an
approved one and writes the SM2EnvelopedKey for the named recipient.`,
	}
	cmd.AddCommand(newKMSKeysCmd(), newKMSCryptCmd("encrypt"), newKMSCryptCmd("decrypt"), newKMSRotateCmd(), newKMSRecoverCmd())
	return cmd
}

func newKMSKeysCmd() *cobra.Command {
	o := &caOpts{online: true}
	var create, owner, alg, period, org string
	cmd := &cobra.Command{
		Use:   "keys [NAME]",
		Short: "List application keys, show one, or create one with --create",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if create != "" {
				var k kms.Key
				body := kms.CreateKeyRequest{Name: create, Owner: owner, Algorithm: kms.Algorithm(alg), RotationPeriod: period, Org: org}
				if _, err := o.call(ctx, http.MethodPost, "/api/v1/kms/keys", body, nil, &k); err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), k)
			}
			if len(args) == 1 {
				var k kms.Key
				if _, err := o.call(ctx, http.MethodGet, "/api/v1/kms/keys/"+url.PathEscape(args[0]), nil, nil, &k); err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), k)
			}
			var out struct {
				Keys []kms.Key `json:"keys"`
			}
			if _, err := o.call(ctx, http.MethodGet, "/api/v1/kms/keys", nil, nil, &out); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tALGORITHM\tSTATUS\tVERSION\tMIN DECRYPT\tROTATION\tOWNER")
			for _, k := range out.Keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", k.Name, k.Algorithm, k.Status, k.LatestVersion, k.MinDecryptionVersion, dash(k.RotationPeriod), k.Owner)
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&create, "create", "", "create a key of this name")
	f.StringVar(&owner, "owner", "", "with --create: the account ID that encrypts and decrypts with the key")
	f.StringVar(&alg, "algorithm", "sm4-gcm", "with --create: sm4-gcm or aes-256-gcm")
	f.StringVar(&period, "rotation-period", "", "with --create: rotate automatically this often (e.g. 720h)")
	f.StringVar(&org, "org", "", "with --create: the key's organisation (default the caller's)")
	return cmd
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

func writeOutput(cmd *cobra.Command, path string, b []byte) error {
	if path == "-" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func newKMSCryptCmd(op string) *cobra.Command {
	o := &caOpts{online: true}
	var in, out, aad string
	cmd := &cobra.Command{
		Use:   op + " KEY",
		Short: strings.ToUpper(op[:1]) + op[1:] + " --in with an application key, to --out",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(in)
			if err != nil {
				return err
			}
			tok, err := o.bearer()
			if err != nil {
				return err
			}
			c, base, err := o.client(o.url, true)
			if err != nil {
				return err
			}
			path := "/api/v1/kms/keys/" + url.PathEscape(args[0]) + "/" + op
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, base.String()+path, bytes.NewReader(data))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", kms.OctetStream)
			if aad != "" {
				req.Header.Set(kms.HeaderAAD, base64.StdEncoding.EncodeToString([]byte(aad)))
			}
			resp, err := c.Do(req)
			if err != nil {
				return fmt.Errorf("POST %s: %w", path, err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("POST %s: read answer: %w", path, err)
			}
			if resp.StatusCode != http.StatusOK {
				return problemError(http.MethodPost, path, resp, raw)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: key %s version %s (%s), %d bytes\n", op, args[0], resp.Header.Get(kms.HeaderVersion), resp.Header.Get(kms.HeaderAlgorithm), len(raw))
			return writeOutput(cmd, out, raw)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&in, "in", "-", "input file, - for standard input")
	f.StringVar(&out, "out", "-", "output file, - for standard output")
	f.StringVar(&aad, "aad", "", "associated data bound to the ciphertext (the same must be given to decrypt)")
	return cmd
}

func newKMSRotateCmd() *cobra.Command {
	o := &caOpts{online: true}
	cmd := &cobra.Command{
		Use:   "rotate KEY",
		Short: "Rotate an application key: a new version encrypts from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var k kms.Key
			if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/kms/keys/"+url.PathEscape(args[0])+"/rotate", nil, nil, &k); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), k)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: version %d encrypts now\n", k.Name, k.LatestVersion)
			return nil
		},
	}
	o.register(cmd)
	return cmd
}

func newKMSRecoverCmd() *cobra.Command {
	o := &caOpts{online: true}
	var caID, serial, recipient, reason, caseRef, execute, out string
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Ask for the recovery of an escrowed encryption key, or carry out an approved one (--execute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if execute != "" {
				var res kmc.RecoveryResponse
				if _, err := o.call(ctx, http.MethodPost, "/api/v1/kmc/recoveries/"+url.PathEscape(execute)+"/execute", nil, nil, &res); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "recovered the key of %s/%s for %s (SM2EnvelopedKey, %d bytes)\n", res.CA, res.Serial, res.Recipient, len(res.EnvelopedKey))
				return writeOutput(cmd, out, res.EnvelopedKey)
			}
			if caID == "" || serial == "" || recipient == "" {
				return fmt.Errorf("recover: --ca, --serial and --recipient are required (or --execute APPROVAL)")
			}
			cert, err := os.ReadFile(recipient)
			if err != nil {
				return err
			}
			var p kmc.PendingRecovery
			body := kmc.RecoveryRequest{RecipientCertificate: string(cert), Reason: reason, CaseReference: caseRef}
			if _, err := o.call(ctx, http.MethodPost, "/api/v1/kmc/escrow/"+url.PathEscape(caID)+"/"+url.PathEscape(serial)+"/recoveries", body, nil, &p); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approval %s: %d key recovery officers must approve payload %s before %s\n  %s\n", p.Approval, p.Required, p.PayloadHash, p.Expires, p.Summary)
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&caID, "ca", "", "CA of the encryption certificate")
	f.StringVar(&serial, "serial", "", "serial (hex) of the encryption certificate whose key is recovered")
	f.StringVar(&recipient, "recipient", "", "PEM signing certificate (SM2, issued by a platform CA, not revoked) that receives the key: the subscriber's own, or a key recovery officer's for a judicial recovery")
	f.StringVar(&reason, "reason", "", "why the key is recovered")
	f.StringVar(&caseRef, "case", "", "case reference (judicial or administrative)")
	f.StringVar(&execute, "execute", "", "carry out this approved recovery")
	f.StringVar(&out, "out", "-", "with --execute: file for the SM2EnvelopedKey (DER), - for standard output")
	return cmd
}
