package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/tsa/client"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// newTSCmd is `govtrust ts`: RFC 3161 time-stamps from the command line.
func newTSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ts", Short: "Request and verify RFC 3161 time-stamp tokens"}
	cmd.AddCommand(newTSRequestCmd(), newTSVerifyCmd())
	return cmd
}

// tsInput is a file or a digest to time-stamp or check against.
type tsInput struct {
	data, digest, hash string
}

func (in *tsInput) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&in.data, "data", "", "the file time-stamped")
	f.StringVar(&in.digest, "digest", "", "or its digest, in hex")
	f.StringVar(&in.hash, "hash", "sm3", "digest algorithm: sm3, sha256, sha384, sha512")
}

// resolve returns the algorithm and the digest.
func (in *tsInput) resolve() (*tsp.HashAlg, []byte, error) {
	h := tsp.HashByName(in.hash)
	if h == nil {
		return nil, nil, fmt.Errorf("--hash %q: want sm3, sha256, sha384 or sha512", in.hash)
	}
	switch {
	case (in.data == "") == (in.digest == ""):
		return nil, nil, errors.New("give exactly one of --data and --digest")
	case in.data != "":
		b, err := os.ReadFile(in.data)
		if err != nil {
			return nil, nil, err
		}
		return h, h.Sum(b), nil
	}
	d, err := hex.DecodeString(strings.TrimSpace(in.digest))
	if err != nil || len(d) != h.Size {
		return nil, nil, fmt.Errorf("--digest: want %d octets of hex for %s", h.Size, h.Name)
	}
	return h, d, nil
}

func newTSRequestCmd() *cobra.Command {
	var in tsInput
	var url, dataDir, profile, out string
	var noCert bool
	cmd := &cobra.Command{
		Use:   "request",
		Short: "Time-stamp a file or a digest; writes the DER token",
		Example: "  govtrust ts request --data contract.pdf --out contract.tst\n" +
			"  govtrust ts request --url http://tsa.example/tsa/ecdsa --hash sha256 --digest 9f86d0... --out x.tst",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, digest, err := in.resolve()
			if err != nil {
				return err
			}
			if out == "" {
				return errors.New("--out is required")
			}
			if url == "" {
				base, err := publicBase(dataDir)
				if err != nil {
					return err
				}
				url = base + "/tsa"
				if profile != "" {
					url += "/" + profile
				}
			}
			c := client.New(url)
			c.NoCerts = noCert
			res, err := c.StampDigest(cmd.Context(), h, digest)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, res.Token, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serial %x\ntime   %s\npolicy %s\ntoken  %s\n", res.Info.SerialNumber,
				res.Info.GenTime.Format("2006-01-02T15:04:05.000Z07:00"), res.Info.Policy, out)
			return nil
		},
	}
	in.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&url, "url", "", "TSA URL (default: the node of --data, /tsa or /tsa/PROFILE)")
	f.StringVar(&dataDir, "data-dir", "./govtrust-data", "data directory of a local node (its run/addresses.json)")
	f.StringVar(&profile, "profile", "", "profile of the local node: sm2 (default) or ecdsa")
	f.StringVar(&out, "out", "", "file for the DER token")
	f.BoolVar(&noCert, "no-cert", false, "do not ask for the TSA certificate in the token")
	return cmd
}

// publicBase reads the plain HTTP address of a local node.
func publicBase(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "run", "addresses.json"))
	if err != nil {
		return "", fmt.Errorf("no --url and no running node in %s: %w", dataDir, err)
	}
	var a struct {
		HTTP string `json:"http"`
	}
	if err := json.Unmarshal(b, &a); err != nil || a.HTTP == "" {
		return "", fmt.Errorf("%s/run/addresses.json: no http address", dataDir)
	}
	return "http://" + a.HTTP, nil
}

func newTSVerifyCmd() *cobra.Command {
	var in tsInput
	var token, caFile, chainFile string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify a token (or a TimeStampResp) against a file or digest and a trust anchor",
		Example: "  govtrust ts verify --token contract.tst --data contract.pdf --ca sm2-root.pem\n" +
			"  govtrust ts verify --token x.tst --hash sha256 --digest 9f86d0... --ca ecdsa-root.pem --chain tsa-certs.pem",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, digest, err := in.resolve()
			if err != nil {
				return err
			}
			der, err := os.ReadFile(token)
			if err != nil {
				return err
			}
			// A whole TimeStampResp is accepted too (openssl ts -reply output).
			if r, err := tsp.ParseResponse(der); err == nil && r.Token != nil {
				der = r.Token
			}
			tok, err := tsp.ParseToken(der)
			if err != nil {
				return err
			}
			roots, err := readCerts(caFile)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			pool := smx509.NewCertPool()
			for _, c := range roots {
				pool.AddCert(c)
			}
			var inter []*smx509.Certificate
			if chainFile != "" {
				if inter, err = readCerts(chainFile); err != nil {
					return fmt.Errorf("--chain: %w", err)
				}
			}
			if !tok.Info.MessageImprint.HashAlgorithm.Equal(h.OID) {
				return fmt.Errorf("the token's imprint is %s, not %s (use --hash %s)", tok.Info.MessageImprint.HashAlgorithm, h.Name, tok.Info.MessageImprint.Hash.Name)
			}
			cert, err := tok.Verify(tsp.VerifyOptions{Roots: pool, Intermediates: inter, Digest: digest})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "verified\nserial %x\ntime   %s (accuracy %s)\npolicy %s\ntsa    %s\n", tok.Info.SerialNumber,
				tok.Info.GenTime.Format("2006-01-02T15:04:05.000Z07:00"), tok.Info.Accuracy, tok.Info.Policy, cert.Subject)
			return nil
		},
	}
	in.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&token, "token", "", "DER token or TimeStampResp")
	f.StringVar(&caFile, "ca", "", "PEM trust anchor(s), for example the root CA")
	f.StringVar(&chainFile, "chain", "", "PEM certificates completing the chain (TSA certificate when the token has none, issuing CA)")
	_ = cmd.MarkFlagRequired("token")
	_ = cmd.MarkFlagRequired("ca")
	return cmd
}
