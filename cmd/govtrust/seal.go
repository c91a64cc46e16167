package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/pkcs11"
	"github.com/govtrust/govtrust/signature/seal"
	"github.com/govtrust/govtrust/signature/seal/agent"
)

// newSealCmd is `govtrust seal`: electronic seals (电子印章) through the
// node's API, and sealing through the local signing agent.
func newSealCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seal",
		Short: "Electronic seals: apply, approve, make, list, status, usage, sign (through the local agent), verify",
		Long: `Electronic seals (电子印章, GB/T 38540) through the node's API.

A seal administrator applies for a seal (apply), a second seal administrator
approves it (approve, dual control) and the applicant has it made (make). An
official bound to the seal seals a document with their own USB key (sign):
the server prepares what is to be signed, the local signing agent
(govtrust agent) asks the official and signs with the USB key, the server
time-stamps and assembles the seal signature. verify checks a sealed OFD or
PDF, or a detached .ses with its document; it exits 1 when not valid.

Connection flags are those of govtrust ca: --url, --token-file, --cacert.`,
	}
	cmd.AddCommand(newSealApplyCmd(), newSealApproveCmd(), newSealMakeCmd(), newSealListCmd(), newSealStatusCmd(),
		newSealUsageCmd(), newSealSignCmd(), newSealVerifyCmd())
	return cmd
}

// parseWhen reads a date (YYYY-MM-DD, UTC midnight) or an RFC 3339 time.
func parseWhen(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want YYYY-MM-DD or an RFC 3339 time", flag, s)
	}
	return t, nil
}

// pictureType names a picture file's type by its extension.
func pictureType(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		return "PNG", nil
	case ".svg":
		return "SVG", nil
	case ".ofd":
		return "OFD", nil
	}
	return "", fmt.Errorf("--picture %s: want a .png, .svg or .ofd file", path)
}

func newSealApplyCmd() *cobra.Command {
	o := &caOpts{online: true}
	var req seal.ApplyRequest
	var picture, from, to string
	var holders []string
	cmd := &cobra.Command{
		Use:   "apply --name NAME --kind KIND (--generate | --picture FILE) --valid-to DATE --holder ACCOUNT=CERT.pem",
		Short: "Apply for a seal (seal administrator); a second seal administrator approves it",
		Example: "  govtrust seal apply --name 福州市数据管理局 --kind official --generate --valid-to 2028-12-31 \\\n" +
			"      --holder zhang=zhang-sign.pem --token-file admin1.token --cacert DATA/bootstrap/tls-chain.pem",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			req.ValidFrom = time.Now().UTC()
			if from != "" {
				if req.ValidFrom, err = parseWhen("valid-from", from); err != nil {
					return err
				}
			}
			if to == "" {
				return errors.New("--valid-to is required")
			}
			if req.ValidTo, err = parseWhen("valid-to", to); err != nil {
				return err
			}
			if picture != "" {
				if req.PictureType, err = pictureType(picture); err != nil {
					return err
				}
				if req.Picture, err = os.ReadFile(picture); err != nil {
					return fmt.Errorf("--picture: %w", err)
				}
			}
			for _, h := range holders {
				acc, file, ok := strings.Cut(h, "=")
				if !ok || acc == "" || file == "" {
					return fmt.Errorf("--holder %q: want ACCOUNT=CERTIFICATE.pem", h)
				}
				b, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("--holder %s: %w", acc, err)
				}
				req.Holders = append(req.Holders, seal.Holder{Account: acc, Certificate: string(b)})
			}
			if err := req.Validate(); err != nil {
				return err
			}
			var a seal.Application
			if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/seal-applications", req, nil, &a); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", a.ID)
			fmt.Fprintf(cmd.ErrOrStderr(), "applied: application %s for the %s seal %q (seal ID %s), %s; approval %s by a second seal administrator (payload SM3 %s)\n",
				a.ID, a.Kind, a.Name, a.ESID, a.Status, a.Approval, a.PayloadHash)
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "the department's name, as on the seal")
	f.StringVar(&req.Kind, "kind", "", "official, contract, finance, invoice or personal")
	f.BoolVar(&req.Generate, "generate", false, "render a standard round seal from the name (and --text)")
	f.StringVar(&picture, "picture", "", "or the seal picture (.png, .svg, .ofd)")
	f.StringVar(&req.Text, "text", "", "text under the star of a generated seal (default by kind)")
	f.IntVar(&req.SizeMM, "size-mm", 0, "diameter in millimetres (default 42)")
	f.StringVar(&from, "valid-from", "", "start of validity, YYYY-MM-DD or RFC 3339 (default now)")
	f.StringVar(&to, "valid-to", "", "end of validity, YYYY-MM-DD or RFC 3339")
	f.StringArrayVar(&holders, "holder", nil, "an official allowed to use the seal: ACCOUNT=signing-certificate.pem (repeatable)")
	return cmd
}

func newSealApproveCmd() *cobra.Command {
	o := &caOpts{online: true}
	var comment string
	cmd := &cobra.Command{
		Use:   "approve APPLICATION",
		Short: "Approve a seal application (a seal administrator other than the applicant)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a seal.Application
			if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/seal-applications/"+url.PathEscape(args[0])+"/approve",
				seal.ApproveRequest{Comment: comment}, nil, &a); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved: application %s (%s seal %q, payload SM3 %s)\n", a.ID, a.Kind, a.Name, a.PayloadHash)
			return nil
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&comment, "comment", "", "approval comment (audited)")
	return cmd
}

func newSealMakeCmd() *cobra.Command {
	o := &caOpts{online: true}
	var out string
	cmd := &cobra.Command{
		Use:   "make APPLICATION",
		Short: "Make an approved seal: the platform's seal-maker key signs the SESeal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rec seal.Record
			if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/seal-applications/"+url.PathEscape(args[0])+"/make", nil, nil, &rec); err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, rec.DER, 0o644); err != nil {
					return err
				}
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), rec)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", rec.ID)
			fmt.Fprintf(cmd.ErrOrStderr(), "made: seal %s %q (%s), %s, valid %s to %s\n", rec.ID, rec.Name, rec.Kind, rec.Status,
				rec.ValidStart.Format(time.RFC3339), rec.ValidEnd.Format(time.RFC3339))
			return nil
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "also write the SESeal (DER) here")
	return cmd
}

func newSealListCmd() *cobra.Command {
	o := &caOpts{online: true}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the seals of the caller's organisation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []seal.Record
			if _, err := o.call(cmd.Context(), http.MethodGet, "/api/v1/seals", nil, nil, &list); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tVALID TO\tHOLDERS\tNAME")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Kind, r.Status, r.ValidEnd.UTC().Format(time.RFC3339), len(r.Holders), r.Name)
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	return cmd
}

func newSealStatusCmd() *cobra.Command {
	o := &caOpts{online: true, pub: true}
	var set, reason string
	cmd := &cobra.Command{
		Use:   "status SEAL [--set active|suspended|revoked --reason TEXT]",
		Short: "Show a seal's public status (as relying parties see it), or change it (seal administrator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := url.PathEscape(args[0])
			if set != "" {
				var rec seal.Record
				if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/seals/"+id+"/status", seal.StatusRequest{Status: set, Reason: reason}, nil, &rec); err != nil {
					return err
				}
				if o.asJSON {
					return printJSON(cmd.OutOrStdout(), rec)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "seal %s %q: %s since %s\n", rec.ID, rec.Name, rec.Status, rec.StatusAt.Format(time.RFC3339))
				return nil
			}
			raw, err := o.fetchPublic(cmd.Context(), "/seals/"+id+"/status")
			if err != nil {
				return err
			}
			if o.asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			var st seal.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("status answer: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "seal %s %q: %s since %s (valid %s to %s)\n", st.ID, st.Name, st.Status, st.StatusAt, st.ValidStart, st.ValidEnd)
			return nil
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&set, "set", "", "change the status: active, suspended or revoked (through the API)")
	cmd.Flags().StringVar(&reason, "reason", "", "reason of the change (audited)")
	return cmd
}

func newSealUsageCmd() *cobra.Command {
	o := &caOpts{online: true}
	cmd := &cobra.Command{
		Use:   "usage SEAL",
		Short: "Show a seal's usage log (who sealed which document hash when); its administrators only",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u []seal.Usage
			if _, err := o.call(cmd.Context(), http.MethodGet, "/api/v1/seals/"+url.PathEscape(args[0])+"/usage", nil, nil, &u); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), u)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SIGNED AT\tACTOR\tFORMAT\tDOCUMENT\tSM3\tSIGNER")
			for _, x := range u {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.SignedAt.UTC().Format(time.RFC3339), x.Actor, x.Format, x.Document, x.DocHash, x.Signer)
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	return cmd
}

// formatOf names a document's seal format by its extension: OFD and PDF
// are sealed inside, any other file gets a detached .ses.
func formatOf(path, flag string) (string, error) {
	if flag != "" {
		switch flag {
		case seal.FormatSES, seal.FormatOFD, seal.FormatPDF:
			return flag, nil
		}
		return "", fmt.Errorf("--format %q: want ses, ofd or pdf", flag)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ofd":
		return seal.FormatOFD, nil
	case ".pdf":
		return seal.FormatPDF, nil
	}
	return seal.FormatSES, nil
}

// sm3OfFile is the SM3 of a file, read as a stream (hash-only mode for files
// too large to upload).
func sm3OfFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sm3.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// agentClient returns a client of the local signing agent, which must be
// on this machine: what it signs is the official's.
func agentClient(agentURL string) (*agent.Client, error) {
	u, err := url.Parse(strings.TrimRight(agentURL, "/"))
	if err != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) || u.Port() == "" {
		return nil, fmt.Errorf("--agent %q: want http://127.0.0.1:PORT (the local signing agent, govtrust agent)", agentURL)
	}
	return &agent.Client{URL: u.String(), HTTP: &http.Client{Timeout: 5 * time.Minute}}, nil
}

func newSealSignCmd() *cobra.Command {
	o := &caOpts{online: true}
	var in, out, format, agentURL, name string
	var hashOnly bool
	var pos seal.PrepareRequest
	var keyword string
	var occurrence int
	var riding bool
	cmd := &cobra.Command{
		Use:   "sign SEAL --in FILE [--out FILE] --agent http://127.0.0.1:PORT",
		Short: "Seal a document with the official's USB key through the local signing agent",
		Long: `Seal a document: the server prepares what is to be signed, the local signing
agent (govtrust agent, holding the official's USB key) shows it to the official
and signs, the server time-stamps it and assembles the SES_Signature.

An .ofd or .pdf file is sealed inside (--out is the sealed document); any
other file gets a detached seal signature (--out, default FILE.ses). With
--hash-only only the SM3 of the file is sent (detached seals of files too
large to upload; the API refuses bodies over http.max_body_bytes).

The seal goes at --page, --x, --y (mm from the top left), or centred on
the first (or --occurrence-th) occurrence of --keyword in the pages' text
(OFD, and PDF text in simple or Type0 fonts with a ToUnicode map), or with
--riding as a riding seal (骑缝章) cut into one slice per page along the
pages' right edges, its top at --y or centred.`,
		Example: "  govtrust agent --module /usr/lib/ukey-p11.so --token-label zhang --key-label sign --cert zhang-sign.pem &\n" +
			"  govtrust seal sign 3f2a9c1e7d5b4a60 --in notice.ofd --out notice-sealed.ofd --page 1 --x 120 --y 200 \\\n" +
			"      --agent http://127.0.0.1:7443 --token-file zhang.token --cacert DATA/bootstrap/tls-chain.pem\n" +
			"  govtrust seal sign 3f2a9c1e7d5b4a60 --in notice.pdf --out notice-sealed.pdf --keyword '（盖章）' ...\n" +
			"  govtrust seal sign 3f2a9c1e7d5b4a60 --in contract.ofd --out contract-sealed.ofd --riding ...",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if in == "" {
				return errors.New("--in is required")
			}
			f, err := formatOf(in, format)
			if err != nil {
				return err
			}
			if hashOnly && f != seal.FormatSES {
				return errors.New("--hash-only seals a detached .ses only; OFD and PDF are sealed inside and must be sent")
			}
			if out == "" {
				if f != seal.FormatSES {
					return errors.New("--out is required for an OFD or PDF (the sealed document)")
				}
				out = in + ".ses"
			}
			ag, err := agentClient(agentURL)
			if err != nil {
				return err
			}
			certDER, err := ag.Certificate(ctx)
			if err != nil {
				return fmt.Errorf("the local signing agent at %s: %w", agentURL, err)
			}
			req := pos
			if keyword != "" || riding || occurrence != 0 {
				if cmd.Flags().Changed("page") || cmd.Flags().Changed("x") || (keyword != "" && cmd.Flags().Changed("y")) {
					return errors.New("--keyword and --riding place the seal themselves: drop --page and --x (and --y with --keyword)")
				}
				p := &seal.Position{Keyword: keyword, Occurrence: occurrence, Riding: riding}
				if riding && cmd.Flags().Changed("y") {
					y := pos.Y
					p.Y = &y
				}
				req.Page, req.X, req.Y, req.Position = 0, 0, 0, p
			}
			req.Format, req.Name = f, name
			if req.Name == "" {
				req.Name = filepath.Base(in)
			}
			req.Certificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))
			if hashOnly {
				if req.Digest, err = sm3OfFile(in); err != nil {
					return err
				}
			} else if req.Document, err = os.ReadFile(in); err != nil {
				return err
			}
			if err := req.Validate(); err != nil {
				return err
			}
			var p seal.Prepared
			if st, err := o.call(ctx, http.MethodPost, "/api/v1/seals/"+url.PathEscape(args[0])+"/prepare", req, nil, &p); err != nil {
				if st == http.StatusRequestEntityTooLarge && f == seal.FormatSES {
					return fmt.Errorf("%w\n(the document is larger than the API accepts: seal it with --hash-only)", err)
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "prepared: %s (hash %s) with seal %q (%s); confirm on the agent\n", p.Document, p.DocumentHash, p.SealName, p.SealID)
			ar := agent.Request{Format: p.Format, Document: p.Document, SealID: p.SealID, SealName: p.SealName, ToBeSigned: p.ToBeSigned, SignatureXML: p.SignatureXML}
			if p.Format == seal.FormatSES {
				ar.DocumentHash = p.DocumentHash // the agent checks it is the dataHash; for ofd and pdf it reads the hash itself
			}
			sig, err := ag.Sign(ctx, ar)
			if err != nil {
				return err
			}
			var sealed seal.Sealed
			if _, err := o.call(ctx, http.MethodPost, "/api/v1/seal-sessions/"+url.PathEscape(p.Session)+"/complete", seal.CompleteRequest{Signature: sig}, nil, &sealed); err != nil {
				return err
			}
			if err := os.WriteFile(out, sealed.Document, 0o644); err != nil {
				return err
			}
			if o.asJSON {
				sealed.Document = nil
				return printJSON(cmd.OutOrStdout(), sealed)
			}
			ts := "time-stamped"
			if !sealed.Timestamped {
				ts = "NOT time-stamped"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sealed %s with seal %q (%s) at %s, %s: wrote %s (%d bytes, usage %s)\n",
				p.Document, p.SealName, sealed.SealID, sealed.SignedAt.UTC().Format(time.RFC3339), ts, out, len(sealed.Document), sealed.Usage)
			return nil
		},
	}
	o.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&in, "in", "", "the document")
	fl.StringVar(&out, "out", "", "where to write the sealed document (OFD, PDF) or the detached seal (default IN.ses)")
	fl.StringVar(&format, "format", "", "ses, ofd or pdf (default by the file's extension; ses for anything else)")
	fl.StringVar(&agentURL, "agent", "http://127.0.0.1:7443", "the local signing agent (govtrust agent)")
	fl.StringVar(&name, "name", "", "document name shown to the official and logged (default the file's name)")
	fl.BoolVar(&hashOnly, "hash-only", false, "send only the SM3 of the file (detached seal; large files)")
	fl.IntVar(&pos.Page, "page", 0, "page of the seal, from 1 (OFD, PDF)")
	fl.Float64Var(&pos.X, "x", 0, "seal position in mm from the page's left edge (OFD, PDF)")
	fl.Float64Var(&pos.Y, "y", 0, "seal position in mm from the page's top edge (OFD, PDF; with --riding, default centred)")
	fl.StringVar(&keyword, "keyword", "", "centre the seal on this text, e.g. '（盖章）' (OFD, PDF)")
	fl.IntVar(&occurrence, "occurrence", 0, "with --keyword, which occurrence, from 1 (default 1)")
	fl.BoolVar(&riding, "riding", false, "a riding seal across the right edges of all pages (OFD, PDF)")
	return cmd
}

func newSealVerifyCmd() *cobra.Command {
	o := &caOpts{online: true}
	var in, sig, format, digest string
	cmd := &cobra.Command{
		Use:   "verify --in FILE [--sig FILE.ses]",
		Short: "Verify a sealed OFD or PDF, or a detached .ses with its document; exit 1 when not valid",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" && digest == "" {
				return errors.New("--in (the document) or --digest is required")
			}
			f, err := formatOf(in, format)
			if err != nil {
				return err
			}
			if sig != "" {
				f = seal.FormatSES
			}
			req := seal.VerifyRequest{Format: f}
			if digest != "" {
				if req.Digest, err = hex.DecodeString(digest); err != nil {
					return fmt.Errorf("--digest: %w", err)
				}
			} else if req.Document, err = os.ReadFile(in); err != nil {
				return err
			}
			if f == seal.FormatSES {
				if sig == "" {
					return errors.New("--sig (the detached .ses) is required for a document that is not OFD or PDF")
				}
				if req.Signature, err = os.ReadFile(sig); err != nil {
					return err
				}
			}
			if err := req.Validate(); err != nil {
				return err
			}
			var rep seal.Report
			if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/seals/verify", req, nil, &rep); err != nil {
				return err
			}
			if o.asJSON {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), rep.Summary)
				if !rep.Valid {
					fmt.Fprintf(cmd.OutOrStdout(), "reasons: %s\n", strings.Join(rep.Reasons(), ", "))
				}
			}
			if !rep.Valid {
				return errInvalid
			}
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "the document (sealed OFD or PDF, or the file a .ses seals)")
	f.StringVar(&sig, "sig", "", "the detached seal signature (.ses)")
	f.StringVar(&format, "format", "", "ses, ofd or pdf (default by extension)")
	f.StringVar(&digest, "digest", "", "instead of --in, the document's SM3 in hex (detached .ses, hash-only)")
	return cmd
}

// agentOpts are the flags of `govtrust agent`.
type agentOpts struct {
	listen, module, token string
	slot                  int
	keyLabel, keyID       string
	cert, pinFile, vendor string
	confirm               string
	origins               []string
}

// newAgentCmd is `govtrust agent`: the local signing agent on the
// official's computer (package signature/seal/agent) with their USB key.
func newAgentCmd() *cobra.Command {
	o := &agentOpts{}
	cmd := &cobra.Command{
		Use:   "agent --module LIB (--token-label L | --slot N) (--key-label L | --key-id HEX) --cert FILE",
		Short: "Run the local signing agent with the official's USB key (PKCS#11), on 127.0.0.1 only",
		Long: `Run the local signing agent (本地签章助手) on the official's computer.

It listens on the loopback interface only, opens the USB key through its
PKCS#11 module and asks the PIN itself, on the terminal without echo (or reads
--pin-file): the PIN never leaves this computer and the server never receives
it nor the private key. For each request it shows the document name, the seal
and the hash it signs (for an OFD, the files its Signature.xml protects with
their SM3), read from what is to be signed, and signs only after the
official confirms on the terminal (--confirm tty) — or at once with
--confirm auto, printing what it signed (unattended tests only). Web pages may
call it only from the --origin values given.

The key is one govtrust made on the token (found through its metadata) or one
the USB key's vendor software made, found by --key-label or --key-id; --cert
is its signing certificate (PEM), and one signature over a random challenge
proves the key and the certificate belong together.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:7443", "loopback address to listen on (127.0.0.1:PORT; anything else is refused)")
	f.StringVar(&o.module, "module", "", "PKCS#11 module (shared library) of the USB key")
	f.StringVar(&o.token, "token-label", "", "token label of the USB key")
	f.IntVar(&o.slot, "slot", -1, "or its slot ID")
	f.StringVar(&o.keyLabel, "key-label", "", "label of the signing key on the token")
	f.StringVar(&o.keyID, "key-id", "", "or its CKA_ID in hex")
	f.StringVar(&o.cert, "cert", "", "the key's signing certificate (PEM)")
	f.StringVar(&o.pinFile, "pin-file", "", "read the user PIN from this file instead of asking on the terminal")
	f.StringVar(&o.vendor, "vendor", "tass", "SM2 mechanism table of the token (hsm/pkcs11 Vendors)")
	f.StringVar(&o.confirm, "confirm", "tty", "tty: ask the official on the terminal for each signature; auto: sign at once and print what was signed")
	f.StringArrayVar(&o.origins, "origin", nil, "web origin allowed to call the agent, e.g. https://portal.example.gov.cn (repeatable)")
	return cmd
}

func (o *agentOpts) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	switch {
	case o.module == "":
		return errors.New("--module (the USB key's PKCS#11 library) is required")
	case o.token == "" && o.slot < 0:
		return errors.New("--token-label or --slot is required")
	case (o.keyLabel == "") == (o.keyID == ""):
		return errors.New("give one of --key-label and --key-id")
	case o.cert == "":
		return errors.New("--cert (the key's signing certificate, PEM) is required")
	case o.confirm != "tty" && o.confirm != "auto":
		return fmt.Errorf("--confirm %q: tty or auto", o.confirm)
	}
	var keyID []byte
	if o.keyID != "" {
		var err error
		if keyID, err = hex.DecodeString(o.keyID); err != nil || len(keyID) == 0 {
			return fmt.Errorf("--key-id %q: want hex", o.keyID)
		}
	}
	certPEM, err := os.ReadFile(o.cert)
	if err != nil {
		return fmt.Errorf("--cert: %w", err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return fmt.Errorf("--cert %s: no PEM certificate", o.cert)
	}
	cert, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("--cert %s: %w", o.cert, err)
	}
	// Listen first: a refused address is reported before the PIN is asked.
	ln, err := agent.Listen(o.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	var tty *os.File
	if o.confirm == "tty" {
		if tty, err = os.OpenFile("/dev/tty", os.O_RDWR, 0); err != nil {
			return fmt.Errorf("--confirm tty needs a terminal: %w", err)
		}
		defer tty.Close()
	}
	pin, err := o.readPIN(ctx)
	if err != nil {
		return err
	}
	cfg := pkcs11.Config{Module: o.module, Token: o.token, PIN: pin, Vendor: o.vendor}
	if o.slot >= 0 {
		s := uint(o.slot)
		cfg.Slot = &s
	}
	km, err := pkcs11.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open the USB key: %w", err)
	}
	defer km.Close()
	// A key govtrust made on the token is found through its metadata; a
	// key the vendor's software made (the usual USB key) by its label or id
	// alone, with the certificate's public key, proven by one signature.
	var signer crypto.Signer
	keyName := ""
	if key, err := findKey(ctx, km, o.keyLabel, keyID); err == nil {
		keyName = key.URI
		if signer, err = km.Signer(ctx, &hsm.SignerRequest{URI: key.URI, Service: key.Service}); err != nil {
			return fmt.Errorf("USB key %s: %w", key.URI, err)
		}
		pub, ok1 := signer.Public().(*ecdsa.PublicKey)
		cpub, ok2 := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok1 || !ok2 || !pub.Equal(cpub) {
			return fmt.Errorf("--cert %s does not certify the key %s", o.cert, key.URI)
		}
	} else {
		if signer, err = km.ExternalSigner(ctx, o.keyLabel, keyID, cert.PublicKey); err != nil {
			return fmt.Errorf("USB key: no govtrust key matches, and as a vendor key: %w", err)
		}
		keyName = fmt.Sprintf("label %q id %x (vendor key)", o.keyLabel, keyID)
	}
	out := cmd.OutOrStdout()
	var mu sync.Mutex // one question on the terminal at a time
	confirm := func(s agent.Shown) bool {
		mu.Lock()
		defer mu.Unlock()
		desc := describeShown(s)
		if tty == nil {
			fmt.Fprintf(out, "signing %s", desc)
			return true
		}
		fmt.Fprintf(tty, "\nSign %sSign with %s? [y/N] ", desc, cert.Subject.CommonName)
		line, _ := bufio.NewReader(tty).ReadString('\n')
		return strings.EqualFold(strings.TrimSpace(line), "y") || strings.EqualFold(strings.TrimSpace(line), "yes")
	}
	a, err := agent.New(agent.Config{Signer: signer, Certificate: cert.Raw, Origins: o.origins, Confirm: confirm,
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 10 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(out, "agent listening on http://%s with key %s (%s)\n", ln.Addr(), keyName, cert.Subject.CommonName)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "agent stopped")
	return nil
}

// describeShown is what the agent shows the official for s.
func describeShown(s agent.Shown) string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %q\n", s.Document)
	switch s.Format {
	case agent.FormatOFD:
		fmt.Fprintf(&b, "  Signature.xml %s, hash %s, protecting %d files:\n", s.Property, s.DocumentHash, len(s.References))
		for _, r := range s.References {
			fmt.Fprintf(&b, "    %s SM3 %s\n", r.File, r.SM3)
		}
	case agent.FormatPDF:
		fmt.Fprintf(&b, "  hash of the signed byte range %s\n", s.DocumentHash)
	default:
		fmt.Fprintf(&b, "  document hash %s\n", s.DocumentHash)
	}
	fmt.Fprintf(&b, "  seal %q (%s), format %s, time %s\n", s.SealName, s.SealID, s.Format, s.Time.UTC().Format(time.RFC3339))
	return b.String()
}

// findKey finds the signing key named by label or id among the keys
// govtrust made on the token.
func findKey(ctx context.Context, km *pkcs11.KeyManager, label string, id []byte) (*hsm.KeyInfo, error) {
	keys, err := km.ListKeys(ctx, &hsm.ListKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("list the USB key's keys: %w", err)
	}
	var found *hsm.KeyInfo
	for _, k := range keys {
		if k.Usage != hsm.UsageSign {
			continue
		}
		if label != "" && k.Label != label {
			continue
		}
		if id != nil {
			u, err := hsm.ParseURI(k.URI)
			if err != nil || u.Get("id") != string(id) {
				continue
			}
		}
		if found != nil {
			return nil, fmt.Errorf("several signing keys match (%s, %s): give --key-id", found.URI, k.URI)
		}
		found = k
	}
	if found == nil {
		return nil, errors.New("no signing key on the USB key matches --key-label/--key-id")
	}
	return found, nil
}

// readPIN reads the user PIN from --pin-file, or asks it on the controlling
// terminal with echo turned off by stty(1): golang.org/x/term is not a
// dependency, and the PIN must not be shown. Without a terminal whose echo
// can be turned off the agent refuses to ask and wants --pin-file.
func (o *agentOpts) readPIN(ctx context.Context) (string, error) {
	if o.pinFile != "" {
		b, err := os.ReadFile(o.pinFile)
		if err != nil {
			return "", fmt.Errorf("--pin-file: %w", err)
		}
		pin := strings.TrimRight(string(b), "\r\n")
		if pin == "" {
			return "", fmt.Errorf("--pin-file %s is empty", o.pinFile)
		}
		return pin, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("no terminal to ask the USB key's PIN on (%w): give --pin-file", err)
	}
	defer tty.Close()
	stty := func(arg string) error {
		c := exec.Command("stty", arg)
		c.Stdin, c.Stdout = tty, io.Discard
		return c.Run()
	}
	if err := stty("-echo"); err != nil {
		return "", fmt.Errorf("cannot turn off the terminal's echo to ask the PIN (%w): give --pin-file", err)
	}
	defer func() { _ = stty("echo") }()
	fmt.Fprint(tty, "USB key PIN: ")
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(tty).ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(tty)
		return "", ctx.Err()
	case a := <-ch:
		fmt.Fprintln(tty)
		if a.err != nil && a.line == "" {
			return "", fmt.Errorf("read the PIN: %w", a.err)
		}
		pin := strings.TrimRight(a.line, "\r\n")
		if pin == "" {
			return "", errors.New("empty PIN")
		}
		return pin, nil
	}
}
