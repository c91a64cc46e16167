package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// caCeremonyCommands are the key-ceremony subcommands of `govtrust ca`:
// init-root, init-sub, cross-sign and import. Each works offline on a data
// directory (its database and key backends), is driven by one reviewed
// ceremony file (package ca/ceremony) and writes an audit record carrying
// the file's SM3 hash.
func caCeremonyCommands() []*cobra.Command {
	return []*cobra.Command{initRootCmd(), initSubCmd(), crossSignCmd(), signCRLCmd(), importCACmd(), importCRLCmd()}
}

// ceremonyEnv is what a ceremony command works with.
type ceremonyEnv struct {
	db   *store.DB
	keys *node.Keys
	log  *audit.Log
}

// withCeremony opens the data directory (creating it: a root's machine need
// not have run a node), migrates the CA tables and opens the key backends.
// uris are the CA keys the ceremony makes or uses: one in a software
// keystore protected only by a dev master key is refused before the key
// backends are opened, so that nothing (no dev master key either) is made.
func withCeremony(dataDir, dbURL *string, uris func() []string, fn func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		ctx := cliActor(cmd.Context())
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			return err
		}
		db, cfg, err := offlineDB(ctx, *dataDir, *dbURL, true)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := checkCeremonyKeystore(ctx, db, cfg, *dataDir, uris()); err != nil {
			return err
		}
		if err := db.Migrate(ctx, ca.New().Migrations()...); err != nil {
			return err
		}
		log := audit.New(cfg.Node.Name, clock.New())
		keys, err := node.OpenKeys(ctx, cfg, node.KeysOptions{DB: db, Audit: log, Logger: newCLILogger()})
		if err != nil {
			return err
		}
		defer keys.Close()
		return fn(ctx, cmd, &ceremonyEnv{db: db, keys: keys, log: log})
	}
}

// checkCeremonyKeystore refuses a ceremony whose CA key (one of uris) is,
// or would be, in a software keystore protected only by a dev master key:
// that key is stored in clear in the same database (hsm_soft_master), so
// the CA key would be readable by anyone who reads the database, which
// defeats an offline root and every CA made by ceremony. The keystore must
// be sealed under a passphrase or key shares first, or the key kept on a
// token (pkcs11: URI), as the step-ca and Boulder ceremonies keep CA keys
// in an HSM. A dev keystore is found before anything is opened: a fresh
// data directory in dev mode would otherwise get a dev master key at once.
func checkCeremonyKeystore(ctx context.Context, db *store.DB, cfg *config.Config, dataDir string, uris []string) error {
	var softURI string
	for _, u := range uris {
		if p, err := hsm.ParseURI(u); err == nil && p.Scheme == soft.Scheme {
			softURI = u
			break
		}
	}
	if softURI == "" {
		return nil
	}
	st, err := soft.ReadStatus(ctx, soft.NewSQLStore(db))
	if err != nil {
		return err
	}
	where := dataDir
	if cfg.Database.URL != "" {
		where = "the database " + cfg.Database.URL
	}
	switch {
	case st.Initialized && st.Kind == soft.KindDev:
		return fmt.Errorf("key %s: the software keystore of %s is protected only by a development master key, stored in clear in its database, "+
			"so a CA key there is as good as unencrypted on disk; ceremonies refuse it. A dev keystore cannot be sealed afterwards: "+
			"start a new data directory whose keystore is initialised under a passphrase or key shares "+
			"(govtrust hsm init --data DIR --passphrase-env NAME, or --shares 5 --threshold 3; then hsm.soft.unlock and "+
			"hsm.soft.passphrase or hsm.soft.shares in DIR/govtrust.yaml), or keep the key on a token (a pkcs11: key URI)", softURI, where)
	case !st.Initialized && cfg.HSM.Soft.Unlock == config.UnlockDev:
		return fmt.Errorf("key %s: the software keystore of %s is not initialised and hsm.soft.unlock is dev, so it would get a development "+
			"master key stored in clear in its database; ceremonies refuse it. Initialise the keystore first under a passphrase "+
			"(govtrust hsm init --data %s --passphrase-env NAME, and in %s: hsm: {soft: {unlock: passphrase, passphrase: env:NAME}}) "+
			"or key shares (govtrust hsm init --data %s --shares 5 --threshold 3, and hsm.soft.unlock: shares with hsm.soft.shares), "+
			"or keep the key on a token (a pkcs11: key URI)", softURI, where, dataDir, filepath.Join(dataDir, "govtrust.yaml"), dataDir)
	}
	return nil
}

// ceremonyKey returns the signer of the ceremony's key, making the key as
// the file's key.mode says. A key of another CA of the data directory, or
// a CA id whose CRL files would clash with another CA's there
// (ca.CheckCAID), is refused before anything is made or used.
func ceremonyKey(ctx context.Context, env *ceremonyEnv, f *ceremony.File) (crypto.Signer, bool, error) {
	if err := ca.CheckCAID(ctx, env.db, f.CA); err != nil {
		return nil, false, err
	}
	if err := env.checkKeyOwner(ctx, f.CA, f.Key.URI, nil); err != nil {
		return nil, false, err
	}
	req := &hsm.SignerRequest{URI: f.Key.URI, Service: "ca"}
	created := false
	if f.Key.Mode != ceremony.Existing {
		_, err := env.keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: f.Key.URI, Algorithm: f.Algorithm, Usage: hsm.UsageSign, Service: "ca"})
		switch {
		case err == nil:
			created = true
		case errors.Is(err, hsm.ErrExists) && f.Key.Mode == ceremony.CreateIfAbsent:
		default:
			return nil, false, fmt.Errorf("key %s: %w", f.Key.URI, err)
		}
	}
	s, err := env.keys.Signer(ctx, req)
	if err != nil {
		return nil, false, fmt.Errorf("key %s: %w", f.Key.URI, err)
	}
	if !created {
		// The key was there already: it may be another CA's under another
		// URI (a PKCS#11 object with two labels).
		if err := env.checkKeyOwner(ctx, f.CA, "", s.Public()); err != nil {
			return nil, false, err
		}
	}
	return s, created, nil
}

// keyCeremonies are the audit actions of the ceremonies that make or
// certify a CA key; their records name the CA (object ca/<id>), the key URI
// when the key is this data directory's, and the public key's SHA-256.
var keyCeremonies = []string{"ca.ceremony.root", "ca.ceremony.request", "ca.ceremony.sign-sub", "ca.ceremony.cross-sign"}

// checkKeyOwner refuses, for a ceremony of CA id, a key that belongs to
// another CA of the data directory: one recorded in ca_authorities (by URI
// or public key), or one an earlier ceremony here made or certified for
// another CA. An empty uri or a nil pub is not compared.
func (env *ceremonyEnv) checkKeyOwner(ctx context.Context, id, uri string, pub crypto.PublicKey) error {
	h, err := ca.FindKeyHolder(ctx, env.db, uri, pub)
	if err != nil {
		return err
	}
	what := "the key"
	if uri != "" {
		what = "key " + uri
	}
	if h != nil && h.ID != id && h.Lineage != id {
		return fmt.Errorf("%s is the key of CA %s of this data directory; a new CA needs a key of its own", what, h.ID)
	}
	sum := ""
	if pub != nil {
		if sum, err = publicKeySHA256(pub); err != nil {
			return err
		}
	}
	return env.db.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, "SELECT seq, object, details FROM audit_log WHERE outcome = ? AND action IN (?, ?, ?, ?)",
			audit.Success, keyCeremonies[0], keyCeremonies[1], keyCeremonies[2], keyCeremonies[3])
		if err != nil {
			return fmt.Errorf("read ceremony records: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			var object, details string
			if err := rows.Scan(&seq, &object, &details); err != nil {
				return fmt.Errorf("read ceremony records: %w", err)
			}
			var d struct {
				KeyURI    string `json:"key_uri"`
				PublicKey string `json:"public_key_sha256"`
			}
			if json.Unmarshal([]byte(details), &d) != nil {
				continue
			}
			other, _ := strings.CutPrefix(object, "ca/")
			if other == id || !((uri != "" && d.KeyURI == uri) || (sum != "" && d.PublicKey == sum)) {
				continue
			}
			return fmt.Errorf("%s was made or certified for CA %s by a ceremony of this data directory (audit record %d); a new CA needs a key of its own", what, other, seq)
		}
		return rows.Err()
	})
}

// publicKeySHA256 is the hex SHA-256 of a key's SubjectPublicKeyInfo (DER),
// as `openssl pkey -pubin -outform DER | sha256sum` computes it.
func publicKeySHA256(pub crypto.PublicKey) (string, error) {
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:]), nil
}

// issuerOf reads the ceremony's issuer certificate and key.
func issuerOf(ctx context.Context, env *ceremonyEnv, f *ceremony.File) (*smx509.Certificate, crypto.Signer, error) {
	certs, err := readCerts(f.Path(f.Issuer.Certificate))
	if err != nil {
		return nil, nil, fmt.Errorf("issuer.certificate: %w", err)
	}
	if f.Issuer.CertificateSHA256 != "" {
		if err := ceremony.CheckPin("issuer.certificate_sha256", f.Issuer.CertificateSHA256, certs[0].Raw); err != nil {
			return nil, nil, err
		}
	}
	s, err := env.keys.Signer(ctx, &hsm.SignerRequest{URI: f.Issuer.KeyURI, Service: "ca"})
	if err != nil {
		return nil, nil, fmt.Errorf("issuer.key_uri %s: %w", f.Issuer.KeyURI, err)
	}
	return certs[0], s, nil
}

// record writes the ceremony's audit record; an unwritable audit log fails
// the command (ARCHITECTURE.md §4).
func (env *ceremonyEnv) record(ctx context.Context, action string, f *ceremony.File, details map[string]any) error {
	if _, err := env.log.Write(ctx, env.db, ceremonyRecord(ctx, action, f.CA, f.Kind, f.SM3Hex(), details)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// ceremonyRecord is the audit record of a ceremony of CA id: details with
// the ceremony file's SM3 hash and kind.
func ceremonyRecord(ctx context.Context, action, id string, kind ceremony.Kind, sm3 string, details map[string]any) audit.Record {
	details["ceremony_sm3"] = sm3
	details["kind"] = string(kind)
	return audit.Record{Actor: audit.ActorFrom(ctx), Action: action, Object: "ca/" + id, Outcome: audit.Success, Details: details}
}

// loadCeremony reads the ceremony file and refuses it unless it is the
// reviewed one (reviewed: its SM3 hash, --sm3) and of kind want.
func loadCeremony(path, reviewed string, want ceremony.Kind) (*ceremony.File, error) {
	f, err := ceremony.Load(path)
	if err != nil {
		return nil, err
	}
	if err := f.CheckSM3(reviewed); err != nil {
		return nil, fmt.Errorf("ceremony file %s: %w", path, err)
	}
	if want != "" && f.Kind != want {
		return nil, fmt.Errorf("ceremony file %s is a %s ceremony; this command runs %s ceremonies", path, f.Kind, want)
	}
	return f, nil
}

// ceremonyRun is the RunE of a ceremony command: the file is loaded and
// checked against its reviewed hash before the data directory and its keys
// are opened, and fn runs with it.
// keys names the CA keys the step makes or uses (checkCeremonyKeystore).
func ceremonyRun(dataDir, dbURL, file, reviewed *string, kind ceremony.Kind, keys func(f *ceremony.File) []string, fn func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv, f *ceremony.File) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		f, err := loadCeremony(*file, *reviewed, kind)
		if err != nil {
			return err
		}
		return withCeremony(dataDir, dbURL, func() []string { return keys(f) }, func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv) error {
			return fn(ctx, cmd, env, f)
		})(cmd, args)
	}
}

func initRootCmd() *cobra.Command {
	var dataDir, dbURL, file, sum, out string
	cmd := &cobra.Command{
		Use:   "init-root",
		Short: "Root ceremony: make the root key in the key store and its self-signed certificate",
		Long: `Make a root CA as the ceremony file says: the key (in the data directory's
key backends), the self-signed certificate written to --out (PEM), its SHA-256
fingerprint printed, and an audit record with the ceremony file's SM3 hash.
The data directory's software keystore must be sealed under a passphrase or key
shares (govtrust hsm init), or the key on a token (pkcs11: URI): a keystore
with a dev master key is refused.

  govtrust ca init-root --ceremony root.yaml --sm3 REVIEWED-SM3 --data /secure/root --out root.pem`,
		Args: cobra.NoArgs,
		RunE: ceremonyRun(&dataDir, &dbURL, &file, &sum, ceremony.Root, ownKey, func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv, f *ceremony.File) error {
			signer, created, err := ceremonyKey(ctx, env, f)
			if err != nil {
				return err
			}
			der, err := ceremony.SelfSign(f, signer, time.Now())
			if err != nil {
				return err
			}
			if err := writePEM(out, "CERTIFICATE", der); err != nil {
				return err
			}
			fp := ceremony.Fingerprint(der)
			pk, err := publicKeySHA256(signer.Public())
			if err != nil {
				return err
			}
			cert, err := smx509.ParseCertificate(der)
			if err != nil {
				return err
			}
			// The root is a CA of this data directory from now on: the
			// certificates it signs in later ceremonies are recorded under
			// it, and its CRL ceremonies revoke them (ca sign-crl).
			rec := ceremonyRecord(ctx, "ca.ceremony.root", f.CA, f.Kind, f.SM3Hex(), map[string]any{"key_uri": f.Key.URI, "key_created": created,
				"public_key_sha256": pk, "fingerprint": fp, "certificate": out})
			if err := ca.RecordOfflineRoot(ctx, env.db, env.log, ca.OfflineRoot{ID: f.CA, KeyURI: f.Key.URI, Cert: cert,
				CeremonySM3: f.SM3Hex(), Now: time.Now()}, rec); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "root %s: certificate %s\nSHA-256 fingerprint: %s\nceremony SM3: %s\nrecorded in this data directory as CA %s\n", f.CA, out, fp, f.SM3Hex(), f.CA)
			return nil
		}),
	}
	ceremonyFlags(cmd, &dataDir, &dbURL, &file, &sum)
	cmd.Flags().StringVar(&out, "out", "", "write the root certificate (PEM) here")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func initSubCmd() *cobra.Command {
	var dataDir, dbURL, file, sum, csrOut, sign, out string
	cmd := &cobra.Command{
		Use:   "init-sub",
		Short: "Sub-CA ceremony: make the sub-CA key and request, or sign a sub-CA request with the issuer's key",
		Long: `Two steps of one ceremony file, on two machines:

On the node that will run the sub-CA: make its key and PKCS#10 request; the
request's SHA-256 fingerprint is printed.
  govtrust ca init-sub --ceremony sub.yaml --sm3 REVIEWED-SM3 --data NODE-DATA --csr-out sub.csr

Add it to the ceremony file as request_sha256 and review the file again. On
the root's machine: sign that request (and no other) with the issuer's key
(issuer section); its subject must be the ceremony's, byte for byte.
  govtrust ca init-sub --ceremony sub.yaml --sm3 REVIEWED-SM3 --data ROOT-DATA --sign sub.csr --out sub.pem

Then on the node: govtrust ca import --cert sub.pem --chain root.pem ...`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if (csrOut == "") == (sign == "") {
				return errors.New("give --csr-out (make the key and request) or --sign REQUEST --out CERT (sign it)")
			}
			if sign != "" && out == "" {
				return errors.New("--sign needs --out")
			}
			return nil
		},
		RunE: ceremonyRun(&dataDir, &dbURL, &file, &sum, ceremony.Sub, func(f *ceremony.File) []string {
			if sign != "" {
				return issuerKey(f)
			}
			return ownKey(f)
		}, func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv, f *ceremony.File) error {
			w := cmd.OutOrStdout()
			if sign != "" && f.RequestSHA256 == "" {
				return fmt.Errorf("ceremony file %s has no request_sha256: add the fingerprint the request step printed and review the file again before signing", file)
			}
			if csrOut != "" {
				signer, created, err := ceremonyKey(ctx, env, f)
				if err != nil {
					return err
				}
				der, err := ceremony.CSR(f, signer)
				if err != nil {
					return err
				}
				if err := writePEM(csrOut, "CERTIFICATE REQUEST", der); err != nil {
					return err
				}
				pk, err := publicKeySHA256(signer.Public())
				if err != nil {
					return err
				}
				if err := env.record(ctx, "ca.ceremony.request", f, map[string]any{"key_uri": f.Key.URI, "key_created": created,
					"public_key_sha256": pk, "request": csrOut}); err != nil {
					return err
				}
				fmt.Fprintf(w, "sub-CA %s: key %s, request %s\nrequest SHA-256: %s (add it to the ceremony file as request_sha256 for the signing step)\nceremony SM3: %s\n",
					f.CA, f.Key.URI, csrOut, ceremony.Fingerprint(der), f.SM3Hex())
				return nil
			}
			csr, err := readPEMFile(sign, "CERTIFICATE REQUEST")
			if err != nil {
				return err
			}
			if err := ceremony.CheckPin("request_sha256", f.RequestSHA256, csr); err != nil {
				return fmt.Errorf("%s: %w", sign, err)
			}
			req, err := smx509.ParseCertificateRequest(csr)
			if err != nil {
				return fmt.Errorf("%s: %w", sign, err)
			}
			if err := env.checkKeyOwner(ctx, f.CA, "", req.PublicKey); err != nil {
				return fmt.Errorf("the request's key: %w", err)
			}
			issuer, signer, err := issuerOf(ctx, env, f)
			if err != nil {
				return err
			}
			der, err := ceremony.SignCSR(f, csr, issuer, signer, time.Now())
			if err != nil {
				return err
			}
			return finishSigned(ctx, cmd, env, f, "ca.ceremony.sign-sub", "sub-ca", der, out)
		}),
	}
	ceremonyFlags(cmd, &dataDir, &dbURL, &file, &sum)
	cmd.Flags().StringVar(&csrOut, "csr-out", "", "make the sub-CA key and write its request (PEM) here")
	cmd.Flags().StringVar(&sign, "sign", "", "sign this sub-CA request (PEM) with the issuer's key")
	cmd.Flags().StringVar(&out, "out", "", "with --sign: write the sub-CA certificate (PEM) here")
	return cmd
}

func crossSignCmd() *cobra.Command {
	var dataDir, dbURL, file, sum, out string
	cmd := &cobra.Command{
		Use:   "cross-sign",
		Short: "Cross ceremony: certify an existing root's subject and key under another root",
		Long: `Certify the root in subject_certificate under the issuer of the ceremony file
(RFC 5280 §3.2 cross-certificate), on the issuer's machine; the file pins
subject_certificate by its SHA-256 fingerprint.

  govtrust ca cross-sign --ceremony cross.yaml --sm3 REVIEWED-SM3 --data ROOT-A-DATA --out b-by-a.pem`,
		Args: cobra.NoArgs,
		RunE: ceremonyRun(&dataDir, &dbURL, &file, &sum, ceremony.Cross, issuerKey, func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv, f *ceremony.File) error {
			subj, err := readCerts(f.Path(f.SubjectCertificate))
			if err != nil {
				return fmt.Errorf("subject_certificate: %w", err)
			}
			if err := ceremony.CheckPin("subject_certificate_sha256", f.SubjectCertificateSHA256, subj[0].Raw); err != nil {
				return err
			}
			if err := env.checkKeyOwner(ctx, f.CA, "", subj[0].PublicKey); err != nil {
				return fmt.Errorf("subject_certificate: %w", err)
			}
			issuer, signer, err := issuerOf(ctx, env, f)
			if err != nil {
				return err
			}
			der, err := ceremony.CrossSign(f, subj[0], issuer, signer, time.Now())
			if err != nil {
				return err
			}
			return finishSigned(ctx, cmd, env, f, "ca.ceremony.cross-sign", "cross-ca", der, out)
		}),
	}
	ceremonyFlags(cmd, &dataDir, &dbURL, &file, &sum)
	cmd.Flags().StringVar(&out, "out", "", "write the cross-certificate (PEM) here")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func signCRLCmd() *cobra.Command {
	var dataDir, dbURL, file, sum, out string
	cmd := &cobra.Command{
		Use:   "sign-crl",
		Short: "CRL ceremony: revoke certificates an offline root signed and sign the root's CRL (its ARL)",
		Long: `On the offline root's machine: revoke the certificates the ceremony file lists
(each pinned by its SHA-256 fingerprint, with an RFC 5280 reason for CA certificates:
keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation),
which the root signed in earlier ceremonies, and sign the root's CRL with its key:
every certificate revoked in this data directory is listed, the CRL number is above
every earlier one, the issuingDistributionPoint is the file's crl_url, and nextUpdate
is next_update_days (at most 365) later. The CRL (DER) is written to --out, for the
node serving crl_url: govtrust ca import-crl --crl FILE --data NODE.

Run it again with no revoke list to re-sign the CRL before its nextUpdate.

  govtrust ca sign-crl --ceremony crl.yaml --sm3 REVIEWED-SM3 --data /secure/root --out gov-sm2-root.crl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := ceremony.LoadCRL(file)
			if err != nil {
				return err
			}
			if err := f.CheckSM3(sum); err != nil {
				return fmt.Errorf("ceremony file %s: %w", file, err)
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("--out %s exists; the CRL is written to a new file", out)
			}
			return withCeremony(&dataDir, &dbURL, func() []string { return []string{f.Issuer.KeyURI} }, func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv) error {
				certs, err := readCerts(f.Path(f.Issuer.Certificate))
				if err != nil {
					return fmt.Errorf("issuer.certificate: %w", err)
				}
				if f.Issuer.CertificateSHA256 != "" {
					if err := ceremony.CheckPin("issuer.certificate_sha256", f.Issuer.CertificateSHA256, certs[0].Raw); err != nil {
						return err
					}
				}
				req := ca.OfflineCRLRequest{CA: f.CA, Issuer: certs[0], KeyURI: f.Issuer.KeyURI, URL: f.CRLURL,
					Validity: time.Duration(f.NextUpdateDays) * 24 * time.Hour}
				for i, r := range f.Revoke {
					c, err := readCerts(f.Path(r.Certificate))
					if err != nil {
						return fmt.Errorf("revoke[%d]: %w", i, err)
					}
					if err := ceremony.CheckPin(fmt.Sprintf("revoke[%d].certificate_sha256", i), r.CertificateSHA256, c[0].Raw); err != nil {
						return err
					}
					req.Revoke = append(req.Revoke, ca.OfflineRevocation{Cert: c[0], Reason: r.Reason})
				}
				if req.Signer, err = env.keys.Signer(ctx, &hsm.SignerRequest{URI: f.Issuer.KeyURI, Service: "ca"}); err != nil {
					return fmt.Errorf("issuer.key_uri %s: %w", f.Issuer.KeyURI, err)
				}
				req.Record = ceremonyRecord(ctx, "ca.ceremony.crl", f.CA, ceremony.CRL, f.SM3Hex(), map[string]any{"issuer_key_uri": f.Issuer.KeyURI,
					"crl_url": f.CRLURL, "out": out})
				res, err := ca.SignOfflineCRL(ctx, env.db, env.log, clock.New(), req)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if res.Recorded {
					fmt.Fprintf(w, "recorded root %s in this data directory (made before root ceremonies recorded their root)\n", f.CA)
				}
				if err := writeFile(out, res.DER); err != nil {
					return fmt.Errorf("CRL %d of %s is signed and stored, but %w; export it with govtrust ca crl %s --data %s --out FILE", res.Number, f.CA, err, f.CA, dataDir)
				}
				fmt.Fprintf(w, "CRL %d of %s: %s\nthisUpdate %s, nextUpdate %s, %d revoked (now: %d, already: %d)\nSHA-256: %s\nceremony SM3: %s\n",
					res.Number, f.CA, out, res.ThisUpdate.Format(time.RFC3339), res.NextUpdate.Format(time.RFC3339), res.Entries,
					len(res.Revoked), len(res.Already), ceremony.Fingerprint(res.DER), f.SM3Hex())
				for _, s := range res.Revoked {
					fmt.Fprintf(w, "revoked %s/%s\n", f.CA, s)
				}
				return nil
			})(cmd, args)
		},
	}
	ceremonyFlags(cmd, &dataDir, &dbURL, &file, &sum)
	cmd.Flags().StringVar(&out, "out", "", "write the CRL (DER) here")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// finishSigned writes a certificate a ceremony signed, records it under its
// issuer when the issuer is a CA of this data directory, and audits it.
func finishSigned(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv, f *ceremony.File, action, prof string, der []byte, out string) error {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := writePEM(out, "CERTIFICATE", der); err != nil {
		return err
	}
	issuerID, err := ca.RecordCACertificate(ctx, env.db, env.log, cert, prof, time.Now())
	if err != nil {
		return err
	}
	fp := ceremony.Fingerprint(der)
	pk, err := publicKeySHA256(cert.PublicKey)
	if err != nil {
		return err
	}
	if err := env.record(ctx, action, f, map[string]any{"issuer_key_uri": f.Issuer.KeyURI, "fingerprint": fp, "public_key_sha256": pk,
		"serial": fmt.Sprintf("%x", cert.SerialNumber.Bytes()), "subject": cert.Subject.String(), "certificate": out, "recorded_under": issuerID}); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s: certificate %s\nSHA-256 fingerprint: %s\nceremony SM3: %s\n", f.CA, out, fp, f.SM3Hex())
	if issuerID != "" {
		fmt.Fprintf(w, "recorded in ca_certificates under %s\n", issuerID)
	}
	return nil
}

func importCACmd() *cobra.Command {
	var dataDir, dbURL, certFile, chainFile, keyURI, id, file, sum string
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Record a CA made by ceremony in a stopped node's data directory; the next start serves it",
		Long: `Check that the key is the certificate's, that the certificate may sign
certificates and CRLs, and that the chain verifies up to a self-signed root;
then record the CA (audited). With --ceremony (and its reviewed SM3 hash,
--sm3), the CA id and key URI come from the ceremony file and its hash is
recorded.

  govtrust ca import --cert sub.pem --chain root.pem --key-uri soft:ca/dept-sub --id dept-sub --data NODE-DATA
  govtrust ca import --cert sub.pem --chain root.pem --ceremony sub.yaml --sm3 REVIEWED-SM3 --data NODE-DATA`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if file != "" {
				_, err := loadCeremony(file, sum, "")
				return err
			}
			return nil
		},
		RunE: withCeremony(&dataDir, &dbURL, func() []string {
			if file != "" {
				if f, err := loadCeremony(file, sum, ""); err == nil {
					return []string{keyURI, f.Key.URI}
				}
			}
			return []string{keyURI}
		}, func(ctx context.Context, cmd *cobra.Command, env *ceremonyEnv) error {
			req := ca.ImportRequest{ID: id, KeyURI: keyURI, Now: time.Now()}
			if file != "" {
				f, err := loadCeremony(file, sum, "")
				if err != nil {
					return err
				}
				if id != "" && id != f.CA {
					return fmt.Errorf("--id %s differs from the ceremony's ca %s", id, f.CA)
				}
				if keyURI != "" && keyURI != f.Key.URI {
					return fmt.Errorf("--key-uri %s differs from the ceremony's key.uri %s", keyURI, f.Key.URI)
				}
				req.ID, req.KeyURI, req.CeremonySM3 = f.CA, f.Key.URI, f.SM3Hex()
			}
			if req.ID == "" || req.KeyURI == "" {
				return errors.New("give --id and --key-uri, or --ceremony")
			}
			certs, err := readCerts(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			req.Cert = certs[0]
			if req.Chain, err = readCerts(chainFile); err != nil {
				return fmt.Errorf("--chain: %w", err)
			}
			res, err := ca.Import(ctx, env.db, env.log, env.keys, req)
			if err != nil {
				return err
			}
			parent := res.Parent
			if res.External {
				parent += " (offline root, chain stored)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported CA %s (%s), parent %s\nSHA-256 fingerprint: %s\nthe node serves it from its next start\n",
				res.ID, res.Algorithm, parent, res.Fingerprint)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "./govtrust-data", "data directory of the node")
	f.StringVar(&dataDir, "data-dir", "./govtrust-data", "same as --data")
	f.StringVar(&dbURL, "db", "", "database URL instead of the data directory's")
	f.StringVar(&certFile, "cert", "", "the CA certificate (PEM or DER)")
	f.StringVar(&chainFile, "chain", "", "its issuer's certificates up to the root (PEM, issuer first)")
	f.StringVar(&keyURI, "key-uri", "", "the CA key in the node's key backends")
	f.StringVar(&id, "id", "", "the CA id (lowercase letters, digits, '-')")
	f.StringVar(&file, "ceremony", "", "the sub ceremony file (gives the id and key URI, and records its SM3)")
	f.StringVar(&sum, "sm3", "", "with --ceremony: the reviewed SM3 hash of the ceremony file (openssl dgst -sm3); another file is refused")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("chain")
	return cmd
}

// ownKey and issuerKey name the key a ceremony step makes or uses: the
// new CA's (init-root, the request step of init-sub), or its issuer's (the
// signing step of init-sub, cross-sign).
func ownKey(f *ceremony.File) []string { return []string{f.Key.URI} }

func issuerKey(f *ceremony.File) []string {
	if f.Issuer == nil {
		return nil
	}
	return []string{f.Issuer.KeyURI}
}

func importCRLCmd() *cobra.Command {
	var dataDir, dbURL, crlFile, id string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import-crl",
		Short: "Serve the CRL an offline root signed (ca sign-crl) at its distribution point, after checking it",
		Long: `Import a CRL signed by an offline CA (the ARL of an offline root, from
govtrust ca sign-crl) into a node's data directory. The CRL must verify with the
certificate of an offline CA the node knows (a chain given to ca import), keep the
platform's CRL profile, be current, and have a number above the last one imported
for that CA. The node serves it at /pki/ID.crl (ID from the CRL's distribution
point, or --id), the CA's certificate at /pki/ID.crt, and publishes both to the
directory. A CA of the node whose certificate the CRL lists is marked revoked: it
issues nothing more. The node may be running: it serves the CRL at once and sees a
revoked CA within 5 s.

  govtrust ca import-crl --crl gov-sm2-root.crl --data NODE-DATA`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cliActor(cmd.Context())
			der, err := os.ReadFile(crlFile)
			if err != nil {
				return fmt.Errorf("--crl: %w", err)
			}
			if blk, _ := pem.Decode(der); blk != nil {
				if blk.Type != "X509 CRL" {
					return fmt.Errorf("--crl %s: PEM block %q, want X509 CRL", crlFile, blk.Type)
				}
				der = blk.Bytes
			}
			db, cfg, err := offlineDB(ctx, dataDir, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.Migrate(ctx, ca.New().Migrations()...); err != nil {
				return err
			}
			res, err := ca.ImportOfflineCRL(ctx, db, audit.New(cfg.Node.Name, clock.New()), der, id, time.Now())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, res)
			}
			what := "imported"
			if res.Already {
				what = "already imported"
			}
			fmt.Fprintf(w, "%s CRL %s of %s (%s, certificate SHA-256 %s)\nthisUpdate %s, nextUpdate %s, %d revoked\nserved at %s\n",
				what, res.Number, res.CA, res.Issuer, res.IssuerSHA256, res.ThisUpdate, res.NextUpdate, res.Entries, res.URL)
			for _, c := range res.RevokedCAs {
				fmt.Fprintf(w, "CA %s of this node is revoked by it: it issues nothing more\n", c)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "./govtrust-data", "data directory of the node")
	f.StringVar(&dbURL, "db", "", "database URL instead of the data directory's")
	f.StringVar(&crlFile, "crl", "", "the CRL (DER or PEM)")
	f.StringVar(&id, "id", "", "the offline CA's id (default: from the CRL's distribution point, .../ID.crl)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("crl")
	return cmd
}

func ceremonyFlags(cmd *cobra.Command, dataDir, dbURL, file, sum *string) {
	f := cmd.Flags()
	f.StringVar(dataDir, "data", "./govtrust-data", "data directory holding the key store (created if absent)")
	f.StringVar(dbURL, "db", "", "database URL instead of the data directory's")
	f.StringVar(file, "ceremony", "", "the reviewed ceremony file (YAML)")
	f.StringVar(sum, "sm3", "", "the SM3 hash of the ceremony file the reviewers signed off (openssl dgst -sm3); another file is refused before any key is touched")
	_ = cmd.MarkFlagRequired("ceremony")
	_ = cmd.MarkFlagRequired("sm3")
}

// writeFile writes data to a new file, refusing to overwrite one.
func writeFile(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// writePEM writes one PEM block, refusing to overwrite a file.
func writePEM(path, typ string, der []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := pem.Encode(fh, &pem.Block{Type: typ, Bytes: der}); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func readPEMFile(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %s", path, typ)
	}
	return blk.Bytes, nil
}

// readCerts reads the certificates of a PEM file (or one DER certificate).
func readCerts(path string) ([]*smx509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*smx509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := smx509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		c, err := smx509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("%s: no certificate (PEM or DER): %w", path, err)
		}
		out = append(out, c)
	}
	return out, nil
}
