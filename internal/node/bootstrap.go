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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/store"
)

// BootstrapTokenTTL is the lifetime of the first run's tokens. Production
// deployments replace them with named, shorter-lived tokens.
const BootstrapTokenTTL = 90 * 24 * time.Hour

// bootstrapRoles are the accounts of CONTRACT.md, each with its token file.
var bootstrapRoles = []string{authz.RoleSysAdmin, authz.RoleSecAdmin, authz.RoleAuditor, authz.RoleRA}

// bootstrap initialises a new installation once (tokens, node_meta) and makes
// sure the HTTPS listener has a certificate.
func (n *Node) bootstrap(ctx context.Context) (*tlsMaterial, string, error) {
	var initialized string
	err := n.db.QueryRow(ctx, "SELECT value FROM node_meta WHERE key = 'initialized_at'").Scan(&initialized)
	first := errors.Is(err, sql.ErrNoRows)
	if err != nil && !first {
		return nil, "", fmt.Errorf("bootstrap: %w", err)
	}
	detail := "existing installation from " + initialized
	if first {
		if err := n.initialize(ctx); err != nil {
			return nil, "", err
		}
		detail = "first run: wrote bootstrap tokens"
	}
	tm, made, err := ensureTLS(filepath.Join(n.opts.DataDir, "bootstrap"), n.cfg.Node.Name, n.opts.Clock.Now())
	if err != nil {
		return nil, "", err
	}
	if made {
		detail += ", new self-signed TLS certificate"
	}
	return tm, detail, nil
}

func (n *Node) initialize(ctx context.Context) error {
	log := audit.New(n.cfg.Node.Name, n.opts.Clock)
	tokens := authz.NewTokens(n.db, log, n.opts.Clock)
	dir := filepath.Join(n.opts.DataDir, "bootstrap")
	for _, role := range bootstrapRoles {
		tok, _, err := tokens.Create(ctx, "system", "bootstrap-"+role, []string{role}, BootstrapTokenTTL)
		if err != nil {
			return fmt.Errorf("bootstrap %s token: %w", role, err)
		}
		if err := writeFileAtomic(filepath.Join(dir, role+".token"), []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("bootstrap %s token: %w", role, err)
		}
	}
	// Recorded last: a crash before this point re-runs the bootstrap, which
	// then issues fresh tokens and overwrites the files.
	_, err := log.Do(ctx, n.db, audit.Record{Actor: "system", Action: "node.initialize", Object: "node/" + n.cfg.Node.Name, Outcome: audit.Success},
		func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO node_meta (key, value) VALUES ('initialized_at', ?)", n.opts.Clock.Now().Format(time.RFC3339))
			return err
		})
	return err
}

// tlsMaterial is the HTTPS listener's certificate.
type tlsMaterial struct {
	cert tls.Certificate
}

func (t *tlsMaterial) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{t.cert}}
}

// ensureTLS loads dir/tls-chain.pem and dir/tls.key, or makes a self-signed
// ECDSA P-256 certificate when they are missing or expire within 30 days.
// The certificate authority replaces it with one from ecdsa-issuing.
func ensureTLS(dir, node string, now time.Time) (*tlsMaterial, bool, error) {
	chainPath, keyPath := filepath.Join(dir, "tls-chain.pem"), filepath.Join(dir, "tls.key")
	if c, err := tls.LoadX509KeyPair(chainPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && now.Add(30*24*time.Hour).Before(leaf.NotAfter) {
			return &tlsMaterial{cert: c}, false, nil
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
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: "govtrust bootstrap " + node, Organization: []string{"govtrust"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: it is its own trust anchor for clients
		DNSNames:              []string{"localhost", node},
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
	return &tlsMaterial{cert: c}, true, nil
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
