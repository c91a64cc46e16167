package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/signature"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/tsa/client"
)

// signOpts are the flags of `govtrust sign`.
type signOpts struct {
	api                 caOpts
	key                 string // API: key id
	keyURI, cert, chain string // offline
	in, out             string
	mode, hash, family  string
	sm2OID, uid, tsaURL string
	detached, hashOnly  bool
	timestamp, ltv      bool
}

// newSignCmd is `govtrust sign`: against the API with a key held for the
// caller, or offline with a key URI of this data directory's key manager.
func newSignCmd() *cobra.Command {
	o := &signOpts{api: caOpts{online: true, offline: true}}
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Sign a file: CMS (attached, detached, hash-only, time-stamped, LTV) or raw",
		Example: "  govtrust sign --key 1f2e... --token-file app.token --cacert DATA/bootstrap/tls-chain.pem --in doc.pdf --out doc.p7s --detached --timestamp\n" +
			"  govtrust sign --data DATA --key-uri soft:signature/1f2e... --cert key.pem --chain chain.pem --in doc.pdf --out doc.p7s --tsa-url http://127.0.0.1:8080/tsa",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.api.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "API: id of a signing key held for the caller")
	f.StringVar(&o.keyURI, "key-uri", "", "offline (with --data): key URI in this data directory's key manager (key service \"signature\")")
	f.StringVar(&o.cert, "cert", "", "offline: the key's certificate (PEM)")
	f.StringVar(&o.chain, "chain", "", "offline: its issuers (PEM bundle)")
	f.StringVar(&o.tsaURL, "tsa-url", "", "offline: TSA URL for --timestamp (for example http://127.0.0.1:8080/tsa)")
	f.StringVar(&o.in, "in", "", "the file to sign")
	f.StringVar(&o.out, "out", "", "where to write the signature (DER)")
	f.StringVar(&o.mode, "mode", "cms", "cms or raw")
	f.StringVar(&o.hash, "hash", "", "digest algorithm (sm3, sha256, sha384, sha512); default by key")
	f.StringVar(&o.family, "family", "rfc5652", "CMS OID family: rfc5652 or gmt0010")
	f.StringVar(&o.sm2OID, "sm2-oid", "", "SM2 SignerInfo algorithm: 1.2.156.10197.1.301.1 (default) or 1.2.156.10197.1.501")
	f.StringVar(&o.uid, "uid", "", "SM2 user ID (default 1234567812345678)")
	f.BoolVar(&o.detached, "detached", false, "leave the content out of the CMS")
	f.BoolVar(&o.hashOnly, "hash-only", false, "send only the digest of the file (large documents; implies --detached)")
	f.BoolVar(&o.timestamp, "timestamp", false, "add an RFC 3161 signature time-stamp")
	f.BoolVar(&o.ltv, "ltv", false, "embed chains, OCSP responses and an archive time-stamp (long-term validation)")
	return cmd
}

func (o *signOpts) request(data []byte) (*signature.SignRequest, error) {
	req := &signature.SignRequest{Mode: o.mode, Hash: o.hash, Detached: o.detached, Family: o.family, SM2OID: o.sm2OID, UID: o.uid,
		Timestamp: o.timestamp, LTV: o.ltv}
	if o.hashOnly {
		h := cms.HashByName(o.hash)
		if h == nil {
			return nil, errors.New("--hash-only needs --hash (sm3, sha256...)")
		}
		req.Digest = h.Sum(data)
	} else {
		req.Data = data
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}

func (o *signOpts) run(cmd *cobra.Command) error {
	if o.in == "" || o.out == "" {
		return errors.New("--in and --out are required")
	}
	data, err := os.ReadFile(o.in)
	if err != nil {
		return err
	}
	req, err := o.request(data)
	if err != nil {
		return err
	}
	var sig []byte
	switch {
	case o.api.isOffline():
		if sig, err = o.offline(cmd, req); err != nil {
			return err
		}
	case o.key != "":
		var resp signature.SignResponse
		if _, err := o.api.call(cmd.Context(), http.MethodPost, "/api/v1/signature/keys/"+o.key+"/sign", req, nil, &resp); err != nil {
			return err
		}
		sig = resp.Signature
	default:
		return errors.New("give --key (API) or --data with --key-uri (offline)")
	}
	if err := os.WriteFile(o.out, sig, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes, %s)\n", o.out, len(sig), req.Mode)
	return nil
}

// offline signs with a key of the data directory's key manager.
func (o *signOpts) offline(cmd *cobra.Command, req *signature.SignRequest) ([]byte, error) {
	if o.keyURI == "" || o.cert == "" {
		return nil, errors.New("offline signing needs --key-uri and --cert")
	}
	certs, err := readCerts(o.cert)
	if err != nil {
		return nil, err
	}
	var chain []*smx509.Certificate
	if o.chain != "" {
		if chain, err = readCerts(o.chain); err != nil {
			return nil, err
		}
	}
	var sig []byte
	err = withKeys(&o.api.dataDir, &o.api.dbURL, func(ctx context.Context, cmd *cobra.Command, keys *node.Keys) error {
		key, err := keys.Signer(ctx, &hsm.SignerRequest{URI: o.keyURI, Service: "signature"})
		if err != nil {
			return err
		}
		sg := &signature.Signing{Key: key, Cert: certs[0], Chain: chain}
		if o.tsaURL != "" {
			sg.Stamp = func(ctx context.Context, profile string, h *cms.Hash, digest []byte) ([]byte, error) {
				u := o.tsaURL
				if profile == "ecdsa" && strings.HasSuffix(u, "/tsa") {
					u += "/ecdsa"
				}
				r, err := client.New(u).StampDigest(ctx, h, digest)
				if err != nil {
					return nil, err
				}
				return r.Token, nil
			}
		}
		if o.ltv {
			sg.Verifier = &signature.Verifier{Roots: chain, Fetch: &signature.HTTPFetcher{Client: &http.Client{Timeout: 10 * time.Second}}}
		}
		sig, err = sg.Sign(ctx, req.Options())
		return err
	})(cmd, nil)
	return sig, err
}

// newVerifyCmd is `govtrust verify`.
func newVerifyCmd() *cobra.Command {
	o := caOpts{online: true}
	var in, content, digest, hash, certFile, uid, anchors string
	var offline, noFetch bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify a CMS or raw signature; prints the report (exit 1 when invalid)",
		Example: "  govtrust verify --token-file app.token --cacert DATA/bootstrap/tls-chain.pem --in doc.p7s --content doc.pdf\n" +
			"  govtrust verify --offline --anchors roots.pem --in doc.p7s --content doc.pdf --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return errors.New("--in is required")
			}
			sig, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			req := signature.VerifyRequest{Signature: sig, Hash: hash, UID: uid}
			if content != "" {
				if req.Data, err = os.ReadFile(content); err != nil {
					return err
				}
			}
			if digest != "" {
				if req.Digest, err = hex.DecodeString(strings.TrimSpace(digest)); err != nil {
					return fmt.Errorf("--digest: %w", err)
				}
			}
			if certFile != "" {
				b, err := os.ReadFile(certFile)
				if err != nil {
					return err
				}
				req.Certificate = string(b)
			}
			var rep signature.Report
			if offline {
				if anchors == "" {
					return errors.New("--offline needs --anchors (PEM bundle of trusted roots, and intermediates)")
				}
				certs, err := readCerts(anchors)
				if err != nil {
					return err
				}
				v := &signature.Verifier{}
				for _, c := range certs {
					if string(c.RawIssuer) == string(c.RawSubject) {
						v.Roots = append(v.Roots, c)
					} else {
						v.Intermediates = append(v.Intermediates, c)
					}
				}
				if !noFetch {
					v.Fetch = &signature.HTTPFetcher{Client: &http.Client{Timeout: 10 * time.Second}}
				}
				input, err := req.Input()
				if err != nil {
					return err
				}
				rep = *v.Verify(cmd.Context(), input)
			} else if _, err := o.call(cmd.Context(), http.MethodPost, "/api/v1/signature/verify", req, nil, &rep); err != nil {
				return err
			}
			if o.asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), rep.Summary)
			}
			if !rep.Valid {
				return errInvalid
			}
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "the signature (DER CMS, or raw with --cert)")
	f.StringVar(&content, "content", "", "the signed file (detached CMS, raw)")
	f.StringVar(&digest, "digest", "", "or its digest in hex (with --hash)")
	f.StringVar(&hash, "hash", "", "digest algorithm of --digest (or raw): sm3, sha256, sha384, sha512")
	f.StringVar(&certFile, "cert", "", "signer certificate (PEM) of a raw signature")
	f.StringVar(&uid, "uid", "", "expected SM2 user ID (default 1234567812345678)")
	f.BoolVar(&offline, "offline", false, "verify here instead of asking the API")
	f.StringVar(&anchors, "anchors", "", "offline: trusted roots (and intermediates), PEM")
	f.BoolVar(&noFetch, "no-fetch", false, "offline: use only the revocation data embedded in the signature")
	return cmd
}

// errInvalid makes the exit status 1 after the report was printed.
var errInvalid = errors.New("signature is not valid")
