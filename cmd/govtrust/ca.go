package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/httpx"
)

// caOpts are the connection options of the `govtrust ca` client commands:
// the API (HTTPS, a bearer token, the node's CA bundle), the plain HTTP
// listener for the public objects, or, offline, a data directory.
type caOpts struct {
	url, publicURL       string
	token, tokenFile     string
	cacert               string
	dataDir, dbURL       string
	asJSON               bool
	timeout              time.Duration
	online, offline, pub bool // which flags the command takes
}

func (o *caOpts) register(cmd *cobra.Command) {
	f := cmd.Flags()
	if o.online {
		f.StringVar(&o.url, "url", "https://127.0.0.1:8443", "API base URL (HTTPS; plain http only to localhost)")
		f.StringVar(&o.tokenFile, "token-file", "", "file holding the API bearer token (for example DATA/bootstrap/ra.token)")
		f.StringVar(&o.token, "token", "", "API bearer token (prefer --token-file: arguments are visible to other local users)")
		f.StringVar(&o.cacert, "cacert", "", "PEM bundle trusted for the API's TLS certificate (for example DATA/bootstrap/tls-chain.pem); default the system roots")
		f.DurationVar(&o.timeout, "timeout", time.Minute, "time limit of each HTTP request")
	}
	if o.pub {
		f.StringVar(&o.publicURL, "public-url", "http://127.0.0.1:8080", "base URL of the plain HTTP listener serving /pki/")
	}
	if o.offline {
		f.StringVar(&o.dataDir, "data", "", "read this data directory's database instead of asking the API (offline, read-only: ceremonies, stopped nodes)")
		f.StringVar(&o.dbURL, "db", "", "read this database URL instead of the data directory's (offline, read-only)")
	}
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
}

func (o *caOpts) isOffline() bool { return o.dataDir != "" || o.dbURL != "" }

// apiError is an error answer of the API: its RFC 9457 problem, or the
// status and the start of the body when the answer is not one.
type apiError struct {
	method, path string
	status       int
	problem      *httpx.Problem
	body         string
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	if p := e.problem; p != nil {
		if p.Detail != "" {
			fmt.Fprintf(&b, ": %s", p.Detail)
		}
		for _, fe := range p.Errors {
			fmt.Fprintf(&b, "\n  - %s", fe)
		}
		if p.RequestID != "" {
			fmt.Fprintf(&b, "\n  (request_id %s: quote it to the operator)", p.RequestID)
		}
	} else if e.body != "" {
		fmt.Fprintf(&b, ": %s", e.body)
	}
	return b.String()
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// client returns the HTTP client for base: TLS 1.2 or later verified against
// --cacert (or the system roots) for https, and plain http only to this
// machine, so a bearer token never crosses a network in clear.
func (o *caOpts) client(base string, withToken bool) (*http.Client, *url.URL, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("URL %q: want scheme://host[:port]", base)
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 10 * time.Second}
	switch u.Scheme {
	case "https":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.cacert != "" {
			pemData, err := os.ReadFile(o.cacert)
			if err != nil {
				return nil, nil, fmt.Errorf("--cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemData) {
				return nil, nil, fmt.Errorf("--cacert %s: no PEM certificate in it", o.cacert)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	case "http":
		if withToken && !isLoopback(u.Hostname()) {
			return nil, nil, fmt.Errorf("URL %s: plain http sends the token in clear; use https (with --cacert) or a localhost address", base)
		}
	default:
		return nil, nil, fmt.Errorf("URL %s: scheme must be https (or http to localhost)", base)
	}
	timeout := o.timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	return &http.Client{Transport: tr, Timeout: timeout}, u, nil
}

func (o *caOpts) bearer() (string, error) {
	switch {
	case o.token != "" && o.tokenFile != "":
		return "", errors.New("give --token or --token-file, not both")
	case o.token != "":
		return o.token, nil
	case o.tokenFile != "":
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s is empty", o.tokenFile)
		}
		return tok, nil
	}
	return "", errors.New("no API token: give --token-file FILE (for example DATA/bootstrap/ra.token), or --data DIR to read a data directory offline")
}

// call sends a JSON request to the API and decodes a 2xx answer into out;
// any other answer is an *apiError.
func (o *caOpts) call(ctx context.Context, method, path string, body any, hdr map[string]string, out any) (int, error) {
	tok, err := o.bearer()
	if err != nil {
		return 0, err
	}
	c, base, err := o.client(o.url, true)
	if err != nil {
		return 0, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base.String()+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json, application/problem+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, problemError(method, path, resp, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func problemError(method, path string, resp *http.Response, raw []byte) error {
	e := &apiError{method: method, path: path, status: resp.StatusCode}
	var p httpx.Problem
	if strings.HasPrefix(resp.Header.Get("Content-Type"), httpx.ProblemContentType) && json.Unmarshal(raw, &p) == nil {
		e.problem = &p
	} else {
		e.body = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	return e
}

// fetchPublic GETs a public object (/pki/...) from the plain HTTP listener.
func (o *caOpts) fetchPublic(ctx context.Context, path string) ([]byte, error) {
	c, base, err := o.client(o.publicURL, false)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String()+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, problemError(http.MethodGet, path, resp, raw)
	}
	return raw, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Certificate authorities: list, profiles, issue, show, revoke, CRLs; key ceremonies and import",
		Long: `Certificate authorities, through the node's API or offline.

Online, commands call the HTTPS API with a bearer token (--token-file) and check
the server's certificate against --cacert (a dev node's is DATA/bootstrap/tls-chain.pem).
With --data (or --db), list, show and crl read the data directory's database
instead, read-only, for ceremonies and stopped nodes. API errors are printed
with their problem details and request ID, and exit with status 1.

init-root, init-sub, cross-sign and import run key ceremonies from a reviewed
YAML ceremony file (--sm3: the hash the reviewers signed off), offline on a
data directory.`,
	}
	cmd.AddCommand(newCAListCmd(), newCAProfilesCmd(), newCAIssueCmd(), newCAShowCmd(), newCARevokeCmd(), newCACRLCmd(), newCACrossCmd())
	cmd.AddCommand(caCeremonyCommands()...)
	return cmd
}

func newCAListCmd() *cobra.Command {
	o := &caOpts{online: true, offline: true}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the certificate authorities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				CAs []ca.CAInfo `json:"cas"`
			}
			if o.isOffline() {
				db, _, err := inspectDB(cmd.Context(), o.dataDir, o.dbURL)
				if err != nil {
					return err
				}
				defer db.Close()
				if out.CAs, err = ca.Authorities(cmd.Context(), db, time.Now()); err != nil {
					return err
				}
			} else if _, err := o.call(cmd.Context(), http.MethodGet, "/api/v1/ca", nil, nil, &out); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tALGORITHM\tPARENT\tSTATUS\tNOT AFTER\tSUBJECT")
			for _, c := range out.CAs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Algorithm, dash(c.Parent), c.Status, shortTime(c.NotAfter), c.Subject)
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	return cmd
}

// shortTime shows an RFC 3339 time to the second.
func shortTime(s string) string {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339)
	}
	return s
}

func newCAProfilesCmd() *cobra.Command {
	o := &caOpts{online: true, offline: true}
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List the certificate profiles (offline: the profiles built into this binary)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Profiles []ca.ProfileInfo `json:"profiles"`
			}
			if o.isOffline() {
				out.Profiles = ca.Profiles()
			} else if _, err := o.call(cmd.Context(), http.MethodGet, "/api/v1/ca/profiles", nil, nil, &out); err != nil {
				return err
			}
			if o.asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tCA\tKEY TYPES\tVALIDITY\tKEY USAGE\tEXT KEY USAGE")
			for _, p := range out.Profiles {
				isCA := "no"
				if p.CA {
					isCA = "yes"
					if p.PathLen != nil {
						isCA = fmt.Sprintf("yes (path %d)", *p.PathLen)
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Version, isCA, strings.Join(p.KeyTypes, ","), p.Validity,
					dash(strings.Join(p.KeyUsage, ",")), dash(strings.Join(p.ExtKeyUsage, ",")))
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	return cmd
}

// readCSR reads a PKCS #10 request file, PEM or DER, as the PEM the API
// takes.
func readCSR(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--csr: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return "", fmt.Errorf("--csr %s: PEM block %q, want CERTIFICATE REQUEST", path, blk.Type)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: blk.Bytes})), nil
	}
	if len(b) > 0 && b[0] == 0x30 { // a DER SEQUENCE
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: b})), nil
	}
	return "", fmt.Errorf("--csr %s: neither PEM nor DER", path)
}

func newCAIssueCmd() *cobra.Command {
	o := &caOpts{online: true}
	var csrFile, profileName, idemKey, outFile string
	var records []string
	cmd := &cobra.Command{
		Use:   "issue CA --csr FILE --profile NAME",
		Short: "Issue a certificate from a CSR; write the certificate and its chain as PEM",
		Long: `Issue a certificate from a PKCS #10 request (PEM or DER) under a profile.

The certificate followed by its chain (issuing CA first) is written as PEM to
--out, or to standard output; the serial goes to standard error. With
--idempotency-key, repeating the command (after a timeout, a crash, a node
restart) returns the certificate issued the first time instead of a second one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			csr, err := readCSR(csrFile)
			if err != nil {
				return err
			}
			req := ca.IssueRequest{CSR: csr, Profile: profileName}
			for _, kv := range records {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--record %q: want KEY=VALUE", kv)
				}
				if req.Record == nil {
					req.Record = map[string]string{}
				}
				req.Record[k] = v
			}
			var hdr map[string]string
			if idemKey != "" {
				hdr = map[string]string{"Idempotency-Key": idemKey}
			}
			var out ca.IssueResponse
			status, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/ca/"+url.PathEscape(args[0])+"/certificates", req, hdr, &out)
			if err != nil {
				return err
			}
			bundle := out.Certificate + strings.Join(out.Chain, "")
			if outFile != "" {
				if err := os.WriteFile(outFile, []byte(bundle), 0o644); err != nil {
					return err
				}
			}
			switch {
			case o.asJSON:
				if err := printJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			case outFile == "":
				fmt.Fprint(cmd.OutOrStdout(), bundle)
			}
			what := "issued"
			if status == http.StatusOK {
				what = "already issued for this Idempotency-Key"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s serial %s (profile %s)\n", what, args[0], out.Serial, profileName)
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&csrFile, "csr", "", "PKCS #10 request file (PEM or DER)")
	f.StringVar(&profileName, "profile", "", "profile name (govtrust ca profiles)")
	f.StringVar(&idemKey, "idempotency-key", "", "Idempotency-Key: the same key and request return the same certificate")
	f.StringArrayVar(&records, "record", nil, "registration record value the RA verified, KEY=VALUE (repeatable: CN=..., O=..., id-card=...)")
	f.StringVar(&outFile, "out", "", "write the certificate and chain PEM here instead of standard output")
	_ = cmd.MarkFlagRequired("csr")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func newCAShowCmd() *cobra.Command {
	o := &caOpts{online: true, offline: true}
	var withPEM bool
	cmd := &cobra.Command{
		Use:   "show CA SERIAL",
		Short: "Show a certificate and its status (serial in hex)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c ca.CertificateResponse
			if o.isOffline() {
				db, _, err := inspectDB(cmd.Context(), o.dataDir, o.dbURL)
				if err != nil {
					return err
				}
				defer db.Close()
				got, err := ca.Certificate(cmd.Context(), db, args[0], args[1])
				if err != nil {
					return err
				}
				c = *got
			} else if _, err := o.call(cmd.Context(), http.MethodGet,
				"/api/v1/ca/"+url.PathEscape(args[0])+"/certificates/"+url.PathEscape(args[1]), nil, nil, &c); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.asJSON {
				return printJSON(w, c)
			}
			// The generation that signed it, which after a rollover may
			// not be the one named.
			issuer := c.CA
			if issuer == "" {
				issuer = args[0]
			}
			tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "ca:\t%s\nserial:\t%s\nsubject:\t%s\nprofile:\t%s\nstatus:\t%s\nnot before:\t%s\nnot after:\t%s\n",
				issuer, c.Serial, c.Subject, c.Profile, c.Status, shortTime(c.NotBefore), shortTime(c.NotAfter))
			if c.Status == "revoked" {
				fmt.Fprintf(tw, "revoked at:\t%s\nreason:\t%s\n", c.RevokedAt, c.Reason)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if withPEM {
				fmt.Fprint(w, c.Certificate)
			}
			return nil
		},
	}
	o.register(cmd)
	cmd.Flags().BoolVar(&withPEM, "pem", false, "print the certificate PEM after the summary")
	return cmd
}

func newCARevokeCmd() *cobra.Command {
	o := &caOpts{online: true}
	var serial, reason, approval string
	cmd := &cobra.Command{
		Use:   "revoke CA --serial HEX [--reason NAME]",
		Short: "Revoke a certificate; a CA certificate needs a second CA operator (--approval)",
		Long: `Revoke a certificate with an RFC 5280 reason: unspecified, keyCompromise,
affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, and for CA
certificates cACompromise (certificateHold is not offered: revocation is final).

A CA certificate is revoked under dual control. The first CA operator's command
revokes nothing: it prints the approval ID. A second, different CA operator runs
the same command with --approval ID, which approves exactly that serial and
reason and revokes at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := ca.RevokeRequest{Serial: serial, Reason: reason, Approval: approval}
			path := "/api/v1/ca/" + url.PathEscape(args[0]) + "/revocations"
			// The answer is one of two shapes: decode into both.
			var raw json.RawMessage
			status, err := o.call(cmd.Context(), http.MethodPost, path, req, nil, &raw)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.asJSON {
				_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
				return err
			}
			if status == http.StatusAccepted {
				var p ca.PendingRevocation
				if err := json.Unmarshal(raw, &p); err != nil {
					return fmt.Errorf("decode answer: %w", err)
				}
				fmt.Fprintf(w, "%s/%s is a CA certificate: its revocation (reason %s) waits for a second CA operator.\n", args[0], p.Serial, p.Reason)
				fmt.Fprintf(w, "approval %s (status %s, SM3 %s, expires %s)\n", p.Approval, p.Status, p.PayloadHash, p.Expires)
				fmt.Fprintf(w, "another CA operator completes it with:\n  govtrust ca revoke %s --serial %s --reason %s --approval %s\n", args[0], p.Serial, p.Reason, p.Approval)
				return nil
			}
			var r ca.RevokeResponse
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("decode answer: %w", err)
			}
			fmt.Fprintf(w, "revoked %s/%s at %s, reason %s", args[0], r.Serial, r.RevokedAt, r.Reason)
			if r.Approval != "" {
				fmt.Fprintf(w, ", under approval %s", r.Approval)
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&serial, "serial", "", "serial number in hex")
	f.StringVar(&reason, "reason", "unspecified", "RFC 5280 CRLReason name")
	f.StringVar(&approval, "approval", "", "CA certificates: the approval ID printed by the first CA operator's command")
	_ = cmd.MarkFlagRequired("serial")
	return cmd
}

// crlReasons names the CRLReason codes (RFC 5280 §5.3.1).
var crlReasons = map[int]string{0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise"}

// crlReport is the `ca crl` summary of a CRL.
type crlReport struct {
	CA          string      `json:"ca"`
	Number      string      `json:"number"`
	ThisUpdate  string      `json:"this_update"`
	NextUpdate  string      `json:"next_update"`
	SignatureOK bool        `json:"signature_ok"`
	Revoked     []crlEntry  `json:"revoked"`
	Generated   *ca.CRLInfo `json:"generated,omitempty"`
}

type crlEntry struct {
	Serial    string `json:"serial"`
	RevokedAt string `json:"revoked_at"`
	Reason    string `json:"reason"`
}

func newCACRLCmd() *cobra.Command {
	o := &caOpts{online: true, offline: true, pub: true}
	var outFile string
	var generate, asPEM bool
	cmd := &cobra.Command{
		Use:   "crl CA",
		Short: "Fetch (or, with --generate, first make) a CA's current CRL; check its signature and list it",
		Long: `Fetch a CA's current full CRL from the plain HTTP listener (/pki/CA.crl, --public-url),
or offline from the data directory, check its signature against the CA's certificate
(fetched from the same place), and list its entries; --out writes the CRL (DER, or PEM
with --pem). --generate first has the API make a new CRL now (CA operators).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id := args[0]
			rep := crlReport{CA: id}
			var der, caDER []byte
			if o.isOffline() {
				if generate {
					return errors.New("--generate needs the API: CRLs are signed by the running CA (offline mode reads only)")
				}
				db, _, err := inspectDB(ctx, o.dataDir, o.dbURL)
				if err != nil {
					return err
				}
				defer db.Close()
				if _, der, caDER, err = ca.CurrentCRL(ctx, db, id); err != nil {
					return err
				}
			} else {
				if generate {
					rep.Generated = &ca.CRLInfo{}
					if _, err := o.call(ctx, http.MethodPost, "/api/v1/ca/"+url.PathEscape(id)+"/crls", nil, nil, rep.Generated); err != nil {
						return err
					}
				}
				var err error
				if der, err = o.fetchPublic(ctx, "/pki/"+url.PathEscape(id)+".crl"); err != nil {
					return err
				}
				if caDER, err = o.fetchPublic(ctx, "/pki/"+url.PathEscape(id)+".crt"); err != nil {
					return err
				}
			}
			rl, err := smx509.ParseRevocationList(der)
			if err != nil {
				return fmt.Errorf("CRL of %s: %w", id, err)
			}
			caCert, err := smx509.ParseCertificate(caDER)
			if err != nil {
				return fmt.Errorf("certificate of %s: %w", id, err)
			}
			rep.SignatureOK = rl.CheckSignatureFrom(caCert) == nil
			if rl.Number != nil {
				rep.Number = rl.Number.String()
			}
			rep.ThisUpdate, rep.NextUpdate = rl.ThisUpdate.UTC().Format(time.RFC3339), rl.NextUpdate.UTC().Format(time.RFC3339)
			rep.Revoked = []crlEntry{}
			for _, e := range rl.RevokedCertificateEntries {
				name, ok := crlReasons[e.ReasonCode]
				if !ok {
					name = fmt.Sprintf("reason(%d)", e.ReasonCode)
				}
				rep.Revoked = append(rep.Revoked, crlEntry{Serial: fmt.Sprintf("%x", e.SerialNumber.Bytes()),
					RevokedAt: e.RevocationTime.UTC().Format(time.RFC3339), Reason: name})
			}
			if outFile != "" {
				data := der
				if asPEM {
					data = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
				}
				if err := os.WriteFile(outFile, data, 0o644); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if o.asJSON {
				if err := printJSON(w, rep); err != nil {
					return err
				}
			} else {
				if g := rep.Generated; g != nil {
					fmt.Fprintf(w, "generated CRL %d of %s\n", g.Number, g.CA)
				}
				sig := "signature OK"
				if !rep.SignatureOK {
					sig = "SIGNATURE INVALID"
				}
				fmt.Fprintf(w, "CRL %s of %s: thisUpdate %s, nextUpdate %s, %d revoked, %s\n", rep.Number, id, rep.ThisUpdate, rep.NextUpdate, len(rep.Revoked), sig)
				if len(rep.Revoked) > 0 {
					tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SERIAL\tREVOKED AT\tREASON")
					for _, e := range rep.Revoked {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Serial, e.RevokedAt, e.Reason)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
				}
			}
			if !rep.SignatureOK {
				return fmt.Errorf("CRL of %s: the signature does not verify with the CA's certificate", id)
			}
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&outFile, "out", "", "write the CRL to this file (DER; PEM with --pem)")
	f.BoolVar(&asPEM, "pem", false, "write --out as PEM")
	f.BoolVar(&generate, "generate", false, "first have the API make a new CRL now (CA operators)")
	return cmd
}

func newCACrossCmd() *cobra.Command {
	o := &caOpts{online: true}
	var certFile, issuerFile string
	cmd := &cobra.Command{
		Use:   "cross CA --cert FILE --issuer FILE",
		Short: "Publish a cross-certificate another CA issued to CA (CA operators)",
		Long: `Publish a cross-certificate (the output of another root's "govtrust ca cross-sign")
that certifies CA's subject and key: --cert is the cross-certificate, --issuer the
certificate of the CA that signed it (both PEM). The API checks both and serves every
unexpired cross-certificate of CA at /pki/CA-cross.p7c; the directory adds it to the CA
entry's crossCertificatePair.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if certFile == "" || issuerFile == "" {
				return errors.New("give --cert and --issuer")
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return err
			}
			issuerPEM, err := os.ReadFile(issuerFile)
			if err != nil {
				return err
			}
			var info ca.CrossInfo
			status, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/ca/"+url.PathEscape(args[0])+"/cross-certificates",
				ca.CrossRequest{Certificate: string(certPEM), Issuer: string(issuerPEM)}, nil, &info)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.asJSON {
				return printJSON(w, &info)
			}
			what := "published"
			if status == http.StatusOK {
				what = "already published"
			}
			_, err = fmt.Fprintf(w, "%s cross-certificate of %s by %q (serial %s, until %s, SHA-256 %s) at %s\n",
				what, info.CA, info.Issuer, info.Serial, info.NotAfter, info.SHA256, info.URL)
			return err
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&certFile, "cert", "", "the cross-certificate (PEM)")
	f.StringVar(&issuerFile, "issuer", "", "the certificate of the CA that signed it (PEM)")
	return cmd
}
