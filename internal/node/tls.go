package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLSProvider is implemented by a service that gives the node's HTTPS
// listener its certificate: the CA service issues it from ecdsa-issuing
// (issue #5 §7). Without one, or while it cannot deliver, the listener
// serves the self-signed bootstrap certificate (DIR/bootstrap/tls.key).
type TLSProvider interface {
	// TLSCertificate returns the certificate the listener is to serve:
	// req.Current itself while it is still good, or a new one (renewed,
	// or, when Current is nil, one the provider stored before a restart).
	// The node asks once every service has started and before the
	// listeners open, then every TLSCheckInterval and on RefreshTLS. An
	// error leaves the served certificate as it is.
	TLSCertificate(ctx context.Context, req *TLSRequest) (*TLSCertificate, error)
}

// ErrTLSUnusable marks a TLSProvider error saying that the certificate
// being served may no longer be served (it, or a CA certificate above it,
// was revoked) and that no replacement could be made. The node keeps
// serving it, since a client that does not check revocation still connects
// and one that does refuses it either way, and /readyz reports
// https-certificate until a replacement is installed.
var ErrTLSUnusable = errors.New("the served HTTPS certificate may no longer be served")

// TLSRequest says what the HTTPS listener needs a certificate for.
type TLSRequest struct {
	// DNSNames and IPAddresses are the names clients reach the listener
	// by, from listen.https and node.name (tlsNames). The certificate must
	// name all of them.
	DNSNames    []string
	IPAddresses []net.IP
	// Current is the provider's certificate being served, nil before its
	// first one.
	Current *TLSCertificate
}

// TLSCertificate is a certificate for the HTTPS listener.
type TLSCertificate struct {
	// Chain is the DER certificates served, leaf first.
	Chain [][]byte
	// Key is the leaf's private key. crypto/tls signs every handshake with
	// it, so it may live in the key manager (hsm) rather than in a file.
	Key crypto.Signer
	// Root is the DER trust anchor Chain verifies to; the node writes it to
	// DIR/bootstrap/tls-ca.pem for clients (--cacert, curl --cacert,
	// openssl -CAfile).
	Root []byte
}

// TLSCheckInterval is how often the node asks its TLSProvider whether the
// certificate is still good. Renewal is due after two thirds of a
// certificate's validity (days, for the CA's node-tls profile), so the
// interval only bounds how late in that margin it happens.
var TLSCheckInterval = 10 * time.Minute

// tlsState is the HTTPS listener's certificate. served is read on every
// handshake (tls.Config.GetCertificate) and replaced atomically, so a
// renewal reaches new connections at once while open ones keep the
// certificate they were established with.
type tlsState struct {
	served   atomic.Pointer[tls.Certificate]
	provider TLSProvider
	from     string // the provider service's name
	req      TLSRequest

	mu      sync.Mutex // serialises refreshes
	current *TLSCertificate
	// fallback says why the bootstrap certificate is served although a
	// provider exists (nil once it delivered); /readyz reports it.
	fallback atomic.Pointer[error]
	// unusable says why the served certificate may no longer be served
	// while no replacement exists (an ErrTLSUnusable answer of the
	// provider; nil once a refresh succeeds); /readyz reports it.
	unusable atomic.Pointer[error]

	stop context.CancelFunc
	done chan struct{}
}

func (t *tlsState) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := t.served.Load()
	if c == nil {
		return nil, errors.New("no HTTPS certificate installed")
	}
	return c, nil
}

// serverConfig is the HTTPS listener's TLS configuration.
func (t *tlsState) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: t.getCertificate}
}

// setupTLS chooses the HTTPS listener's first certificate: the provider's
// when a started service is one and it delivers, the self-signed bootstrap
// certificate otherwise.
func (n *Node) setupTLS(ctx context.Context) (string, error) {
	t := &tlsState{}
	n.tls = t
	t.req.DNSNames, t.req.IPAddresses = tlsNames(n.cfg.Listen.HTTPS, n.cfg.Node.Name)
	for _, s := range n.started {
		if p, ok := s.(TLSProvider); ok {
			t.provider, t.from = p, s.Name()
			break
		}
	}
	if t.provider != nil {
		err := n.refreshTLS(ctx)
		if t.current != nil {
			if err != nil {
				// Installed, but DIR/bootstrap could not be updated.
				n.logger.Error("HTTPS certificate files", "error", err)
			}
			leaf := t.served.Load().Leaf
			return fmt.Sprintf("certificate from %s, serial %x, until %s", t.from, leaf.SerialNumber.Bytes(), leaf.NotAfter.UTC().Format(time.RFC3339)), nil
		}
		n.logger.Error("HTTPS certificate: the provider could not deliver one; serving the self-signed bootstrap certificate and retrying",
			"provider", t.from, "every", TLSCheckInterval.String(), "error", err)
		why := fmt.Errorf("serving the self-signed bootstrap certificate: %w", err)
		t.fallback.Store(&why)
	}
	dir := filepath.Join(n.opts.DataDir, "bootstrap")
	c, made, err := ensureTLS(dir, n.cfg.Node.Name, n.opts.Clock.Now())
	if err != nil {
		return "", err
	}
	t.served.Store(c)
	if err := writeFileIfChanged(filepath.Join(dir, "tls-ca.pem"), pemCerts(c.Certificate[:1]), 0o644); err != nil {
		return "", err
	}
	if made {
		return "new self-signed certificate", nil
	}
	return "self-signed certificate", nil
}

// ready reports an HTTPS listener that serves the bootstrap certificate
// because its provider failed, a certificate that is revoked (or chains to
// a revoked CA) because no replacement could be made, or an expired
// certificate because renewals kept failing (each failure is logged;
// clients now refuse the listener).
func (t *tlsState) ready(now time.Time) error {
	if p := t.fallback.Load(); p != nil {
		return *p
	}
	if p := t.unusable.Load(); p != nil {
		return *p
	}
	if c := t.served.Load(); c != nil && c.Leaf != nil && !now.Before(c.Leaf.NotAfter) {
		return fmt.Errorf("the HTTPS certificate expired at %s and was not renewed", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// RefreshTLS asks the TLS provider at once whether the HTTPS certificate
// is still good and installs what it answers (a renewal, or its first
// certificate after a failure). The node does this every TLSCheckInterval;
// operators and tests call it after moving the clock or revoking the
// certificate. Without a provider it does nothing.
func (n *Node) RefreshTLS(ctx context.Context) error {
	if n.tls == nil || n.tls.provider == nil {
		return nil
	}
	return n.refreshTLS(ctx)
}

func (n *Node) refreshTLS(ctx context.Context) error {
	t := n.tls
	t.mu.Lock()
	defer t.mu.Unlock()
	req := t.req
	req.Current = t.current
	c, err := t.provider.TLSCertificate(ctx, &req)
	if err != nil {
		err = fmt.Errorf("HTTPS certificate from %s: %w", t.from, err)
		if errors.Is(err, ErrTLSUnusable) && t.current != nil {
			t.unusable.Store(&err)
		}
		return err
	}
	if c == nil {
		return fmt.Errorf("HTTPS certificate from %s: none given", t.from)
	}
	if t.current != nil && sameChain(c, t.current) {
		t.unusable.Store(nil)
		return nil
	}
	cert, err := n.checkTLS(c, &t.req)
	if err != nil {
		return fmt.Errorf("HTTPS certificate from %s refused: %w", t.from, err)
	}
	t.served.Store(cert)
	t.current = c
	t.fallback.Store(nil)
	t.unusable.Store(nil)
	n.logger.Info("HTTPS certificate installed", "provider", t.from, "serial", fmt.Sprintf("%x", cert.Leaf.SerialNumber.Bytes()),
		"issuer", cert.Leaf.Issuer.String(), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return n.writeTLSFiles(c)
}

// checkTLS turns a provider's certificate into a tls.Certificate after
// checking what a client will check: the key is the leaf's, the chain
// verifies to Root now for serverAuth, and every name the listener is
// reached by is in it (RFC 6125 §6). A bad certificate is never served.
func (n *Node) checkTLS(c *TLSCertificate, req *TLSRequest) (*tls.Certificate, error) {
	if len(c.Chain) == 0 || c.Key == nil || len(c.Root) == 0 {
		return nil, errors.New("chain, key and root are required")
	}
	leaf, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("leaf: %w", err)
	}
	lk, err1 := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	kk, err2 := x509.MarshalPKIXPublicKey(c.Key.Public())
	if err1 != nil || err2 != nil || !bytes.Equal(lk, kk) {
		return nil, errors.New("the key is not the leaf certificate's")
	}
	root, err := x509.ParseCertificate(c.Root)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(),
		CurrentTime: n.opts.Clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	opts.Roots.AddCert(root)
	for _, der := range c.Chain[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		opts.Intermediates.AddCert(ic)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, err
	}
	for _, name := range req.DNSNames {
		if err := leaf.VerifyHostname(name); err != nil {
			return nil, err
		}
	}
	for _, ip := range req.IPAddresses {
		if err := leaf.VerifyHostname(ip.String()); err != nil {
			return nil, err
		}
	}
	return &tls.Certificate{Certificate: c.Chain, PrivateKey: c.Key, Leaf: leaf}, nil
}

// writeTLSFiles writes the served chain to DIR/bootstrap/tls-chain.pem and
// its trust anchor to tls-ca.pem, and removes tls.key: the self-signed
// bootstrap key is no longer used, and an unused private key on disk is
// only a liability (a later fallback makes a new one).
func (n *Node) writeTLSFiles(c *TLSCertificate) error {
	dir := filepath.Join(n.opts.DataDir, "bootstrap")
	if err := writeFileIfChanged(filepath.Join(dir, "tls-ca.pem"), pemCerts([][]byte{c.Root}), 0o644); err != nil {
		return err
	}
	if err := writeFileIfChanged(filepath.Join(dir, "tls-chain.pem"), pemCerts(c.Chain), 0o644); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, "tls.key")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// startTLSRefresh starts the periodic check of the provider's certificate.
func (n *Node) startTLSRefresh() {
	t := n.tls
	if t == nil || t.provider == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.stop, t.done = cancel, make(chan struct{})
	go func() {
		defer close(t.done)
		tick := time.NewTicker(TLSCheckInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				if err := n.refreshTLS(rctx); err != nil && ctx.Err() == nil {
					n.logger.Error("HTTPS certificate renewal", "error", err)
				}
				cancel()
			}
		}
	}()
}

// stopTLSRefresh ends the periodic check and waits for it, before the
// services it calls stop.
func (n *Node) stopTLSRefresh() {
	if n.tls != nil && n.tls.stop != nil {
		n.tls.stop()
		<-n.tls.done
	}
}

func sameChain(a, b *TLSCertificate) bool {
	return a.Key == b.Key && slices.EqualFunc(a.Chain, b.Chain, bytes.Equal) && bytes.Equal(a.Root, b.Root)
}

func pemCerts(ders [][]byte) []byte {
	var b bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return b.Bytes()
}

// writeFileIfChanged writes b atomically unless path holds it already.
func writeFileIfChanged(path string, b []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeFileAtomic(path, b, mode)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// isDNSName reports whether s is a host name in preferred name syntax
// (RFC 1034 §3.5, RFC 1123 §2.1), lower case.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// tlsNames are the names clients reach the HTTPS listener at listen by: the
// node name (when it is a host name: it is the host name by default), the
// listener's host, and, when the listener answers on the loopback
// interface (a loopback or unspecified address, or localhost), "localhost",
// 127.0.0.1 and ::1, which local tools use (CONTRACT.md: 127.0.0.1:8443).
// A listener on 0.0.0.0 answers on other addresses too; clients reach them
// by the node name, which node.name sets.
func tlsNames(listen, nodeName string) ([]string, []net.IP) {
	var dns []string
	var ips []net.IP
	addDNS := func(s string) {
		s = strings.TrimSuffix(strings.ToLower(s), ".")
		if isDNSName(s) && !slices.Contains(dns, s) {
			dns = append(dns, s)
		}
	}
	addIP := func(ip net.IP) {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	addDNS(nodeName)
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && !ip.IsUnspecified():
		addIP(ip)
	case ip == nil && host != "":
		addDNS(host)
	}
	if host == "" || strings.EqualFold(host, "localhost") || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		addDNS("localhost")
		addIP(net.IPv4(127, 0, 0, 1))
		addIP(net.IPv6loopback)
	}
	return dns, ips
}
