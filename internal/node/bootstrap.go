package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/store"
)

// BootstrapTokenTTL is the lifetime of the first run's tokens. Production
// deployments replace them with named, shorter-lived tokens.
const BootstrapTokenTTL = 90 * 24 * time.Hour

// bootstrapRoles are the accounts of CONTRACT.md, each with its token file.
var bootstrapRoles = []string{"sysadmin", "secadmin", "auditor", "ra"}

// bootstrap initialises a new installation once (tokens, node_meta) and
// sets up audit checkpoints. The HTTPS certificate is chosen later, once the
// services have started (setupTLS), since the CA service provides it. Nodes
// sharing a PostgreSQL database may start together for the first time: the
// check and the first run are serialised across them (lockBootstrap), so
// exactly one initialises, and the others find it done.
func (n *Node) bootstrap(ctx context.Context) (string, error) {
	if err := n.openAuthz(ctx); err != nil {
		return "", err
	}
	unlock, err := n.lockBootstrap(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	var initialized string
	err = n.db.QueryRow(ctx, "SELECT value FROM node_meta WHERE key = 'initialized_at'").Scan(&initialized)
	first := errors.Is(err, sql.ErrNoRows)
	if err != nil && !first {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	detail := "existing installation from " + initialized
	if first {
		if err := n.initialize(ctx); err != nil {
			return "", err
		}
		detail = "first run: wrote bootstrap tokens"
	}
	cpDetail, err := n.setupCheckpoints(ctx)
	if err != nil {
		return "", err
	}
	return detail + ", " + cpDetail, nil
}

// bootstrapLockID is the PostgreSQL advisory lock key that serialises the
// bootstrap of the nodes of a database ("gt-nd-bs").
const bootstrapLockID int64 = 0x67742d6e642d6273

// lockBootstrap takes the cross-process lock of the bootstrap and returns
// its release. On PostgreSQL it is a transaction-level advisory lock,
// released with the transaction or the session, so a crashed node cannot
// leave it held; it covers the first-run check, the first run and the
// creation of the audit checkpoint key. A SQLite database is one node's.
func (n *Node) lockBootstrap(ctx context.Context) (func(), error) {
	if n.db.Driver() != store.Postgres {
		return func() {}, nil
	}
	tx, err := n.db.Writer().BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("bootstrap lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", bootstrapLockID); err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("bootstrap lock: %w", err)
	}
	return func() { _ = tx.Rollback() }, nil
}

func (n *Node) initialize(ctx context.Context) error {
	log := audit.New(n.cfg.Node.Name, n.opts.Clock)
	dir := filepath.Join(n.opts.DataDir, "bootstrap")
	tokens, err := n.authz.Bootstrap(ctx, BootstrapTokenTTL)
	if err != nil {
		return err
	}
	for _, name := range bootstrapRoles {
		if err := writeFileAtomic(filepath.Join(dir, name+".token"), []byte(tokens[name]+"\n"), 0o600); err != nil {
			return fmt.Errorf("bootstrap %s token: %w", name, err)
		}
	}
	// Recorded last: a crash before this point re-runs the bootstrap, which
	// then issues fresh tokens and overwrites the files.
	_, err = log.Do(ctx, n.db, audit.Record{Actor: "system", Action: "node.initialize", Object: "node/" + n.cfg.Node.Name, Outcome: audit.Success},
		func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO node_meta (key, value) VALUES ('initialized_at', ?)", n.opts.Clock.Now().Format(time.RFC3339))
			return err
		})
	return err
}

// ensureTLS loads dir/tls-chain.pem and dir/tls.key when they are the
// self-signed bootstrap pair and valid for 30 more days, or makes a new
// self-signed ECDSA P-256 certificate. The listener serves it only when no
// TLSProvider delivers a certificate (a node without the CA service, or a
// CA that cannot issue yet); a provider's certificate replaces it and
// removes tls.key (writeTLSFiles).
func ensureTLS(dir, node string, now time.Time) (*tls.Certificate, bool, error) {
	chainPath, keyPath := filepath.Join(dir, "tls-chain.pem"), filepath.Join(dir, "tls.key")
	if c, err := tls.LoadX509KeyPair(chainPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && now.Add(30*24*time.Hour).Before(leaf.NotAfter) {
			c.Leaf = leaf
			return &c, false, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, false, err
	}
	dnsNames := []string{"localhost"}
	if n := strings.ToLower(node); isDNSName(n) && n != "localhost" {
		dnsNames = append(dnsNames, n)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: "govtrust bootstrap " + node, Organization: []string{"govtrust"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		// A self-signed leaf, not a CA: clients pin it as it is, and its key
		// (a file until the CA replaces it) can vouch for nothing else.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dnsNames,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(chainPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, false, err
	}
	c, err := tls.LoadX509KeyPair(chainPath, keyPath)
	if err != nil {
		return nil, false, err
	}
	c.Leaf, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, false, err
	}
	return &c, true, nil
}

// ReadBootstrapToken returns the bootstrap token of role from a data
// directory (for CLI commands and tests).
func ReadBootstrapToken(dataDir, role string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "bootstrap", role+".token"))
	if err != nil {
		return "", err
	}
	return string(trimNL(b)), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// openAuthz sets up the security middleware: the integrity key (wrapped by a
// key of the key manager), the policy engine with the platform's policies and
// the site's from DIR/policies, and client-certificate authentication when
// DIR/trust/clients holds CA certificates.
func (n *Node) openAuthz(ctx context.Context) error {
	mac, err := authz.OpenIntegrity(ctx, n.db, n.keys, authz.DefaultIntegrityKEK)
	if err != nil {
		return err
	}
	var site fs.FS
	if dir := filepath.Join(n.opts.DataDir, "policies"); dirExists(dir) {
		site = os.DirFS(dir)
	}
	engine, err := policy.New(site)
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	n.authz = authz.New(n.db, audit.New(n.cfg.Node.Name, n.opts.Clock), mac, engine, n.opts.Clock)
	unpinned, err := n.authz.UnpinnedCertBindings(ctx)
	if err != nil {
		return fmt.Errorf("certificate bindings: %w", err)
	}
	if unpinned > 0 {
		n.logger.Warn("certificate bindings made before bindings named their certificate (issuer and subject only) no longer authenticate or name a key recovery recipient: bind each certificate again with govtrust account bind-cert ACCOUNT CERT.pem",
			"count", unpinned)
	}
	n.dual = dual.New(n.db, audit.New(n.cfg.Node.Name, n.opts.Clock), n.opts.Clock)
	roots, err := loadCertDir(filepath.Join(n.opts.DataDir, "trust", "clients"))
	if err != nil {
		return fmt.Errorf("trusted client CAs: %w", err)
	}
	if roots != nil {
		crls := authz.NewCRLChecker(n.opts.Clock.Now)
		crls.Logger = n.logger
		if err := crls.LoadDir(filepath.Join(n.opts.DataDir, "trust", "crl")); err != nil {
			return fmt.Errorf("client CA CRLs: %w", err)
		}
		n.clientCAs = roots
		n.authz.SetCertAuth(&authz.CertAuth{Roots: roots, Revocation: crls, Now: n.opts.Clock.Now})
	}
	return nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// loadCertDir reads every PEM certificate in dir; nil when there are none.
func loadCertDir(dir string) (*x509.CertPool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificate", e.Name())
		}
		n++
	}
	if n == 0 {
		return nil, nil
	}
	return pool, nil
}
