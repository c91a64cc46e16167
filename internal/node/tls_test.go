package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTLSNames(t *testing.T) {
	loop := []string{"127.0.0.1", "::1"}
	for _, tc := range []struct {
		listen, node string
		dns, ips     []string
	}{
		{"127.0.0.1:8443", "gt1", []string{"gt1", "localhost"}, loop},
		{"127.0.0.1:0", "Node_1", []string{"localhost"}, loop}, // not a host name: left out
		{"0.0.0.0:8443", "pki.example.gov.cn", []string{"pki.example.gov.cn", "localhost"}, loop},
		{"[::]:8443", "gt1", []string{"gt1", "localhost"}, loop},
		{":8443", "gt1", []string{"gt1", "localhost"}, loop},
		{"192.0.2.7:8443", "gt1", []string{"gt1"}, []string{"192.0.2.7"}},
		{"pki.example.gov.cn:8443", "gt1", []string{"gt1", "pki.example.gov.cn"}, nil},
		{"localhost:8443", "LOCALHOST", []string{"localhost"}, loop},
	} {
		t.Run(tc.listen+"/"+tc.node, func(t *testing.T) {
			dns, ips := tlsNames(tc.listen, tc.node)
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			if !slices.Equal(dns, tc.dns) || !slices.Equal(got, tc.ips) {
				t.Fatalf("names %v %v, want %v %v", dns, got, tc.dns, tc.ips)
			}
		})
	}
}

// testCA is a TLSProvider for the node's own tests: an ECDSA root that
// signs leaves for whatever names it is asked (the real provider, the CA
// service, is tested in package ca). fail makes it refuse; drop leaves one
// name out of the certificates.
type testCA struct {
	mu      sync.Mutex
	fail    error
	drop    string
	root    *x509.Certificate
	rootKey crypto.Signer
	calls   int
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &testCA{root: root, rootKey: key}
}

func (c *testCA) Name() string                              { return "testca" }
func (c *testCA) Start(ctx context.Context, env *Env) error { return nil }
func (c *testCA) Ready(ctx context.Context) error           { return nil }
func (c *testCA) Stop(ctx context.Context) error            { return nil }

func (c *testCA) TLSCertificate(ctx context.Context, req *TLSRequest) (*TLSCertificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail != nil {
		return nil, c.fail
	}
	if req.Current != nil {
		return req.Current, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(c.calls) + 1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, n := range req.DNSNames {
		if n != c.drop {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	for _, ip := range req.IPAddresses {
		if ip.String() != c.drop {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, key.Public(), c.rootKey)
	if err != nil {
		return nil, err
	}
	return &TLSCertificate{Chain: [][]byte{der, c.root.Raw}, Key: key, Root: c.root.Raw}, nil
}

// served dials the HTTPS listener and returns the leaf it presents,
// verified against DIR/bootstrap/tls-ca.pem for 127.0.0.1.
func served(t *testing.T, dir, addr string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("tls-ca.pem: no certificate")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to %s verified with tls-ca.pem: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestTLSBootstrapCertificate: without a provider the listener serves the
// self-signed bootstrap certificate, tls-ca.pem verifies it, and a restart
// reuses it.
func TestTLSBootstrapCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n, err := Start(context.Background(), testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	first := served(t, dir, n.Addresses().HTTPS)
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.RawIssuer, first.RawSubject) {
		t.Fatal("bootstrap certificate is not self-signed")
	}
	n, err = Start(context.Background(), testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if again := served(t, dir, n.Addresses().HTTPS); !again.Equal(first) {
		t.Fatal("restart made a new bootstrap certificate")
	}
}

// TestTLSProvider: a provider that fails at start leaves the bootstrap
// certificate served and /readyz saying why; once it delivers, the listener
// serves its chain without a restart, tls-chain.pem and tls-ca.pem follow
// and tls.key is removed; a certificate that lacks a listener name is
// refused and the served one kept.
func TestTLSProvider(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	ca := newTestCA(t)
	ca.fail = errors.New("issuing CA key unavailable")
	n, err := Start(ctx, testOptions(dir), ca)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(ctx)
	addr := n.Addresses().HTTPS
	boot := served(t, dir, addr)
	if !bytes.Equal(boot.RawIssuer, boot.RawSubject) {
		t.Fatal("not the bootstrap certificate while the provider fails")
	}
	status, body := get(t, insecureClient(), "http://"+n.Addresses().HTTP+"/readyz", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "issuing CA key unavailable") {
		t.Fatalf("readyz %d %s: want the provider's failure", status, body)
	}

	ca.mu.Lock()
	ca.fail, ca.drop = nil, "127.0.0.1"
	ca.mu.Unlock()
	if err := n.RefreshTLS(ctx); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("a certificate without 127.0.0.1 was not refused: %v", err)
	}
	if !served(t, dir, addr).Equal(boot) {
		t.Fatal("a refused certificate was served")
	}

	ca.mu.Lock()
	ca.drop = ""
	ca.mu.Unlock()
	if err := n.RefreshTLS(ctx); err != nil {
		t.Fatal(err)
	}
	leaf := served(t, dir, addr) // tls-ca.pem is the provider's root now
	if !bytes.Equal(leaf.RawIssuer, ca.root.RawSubject) {
		t.Fatalf("served %s, want a certificate from the provider", leaf.Issuer)
	}
	if status, body := get(t, insecureClient(), "http://"+n.Addresses().HTTP+"/readyz", ""); status != http.StatusOK {
		t.Fatalf("readyz %d %s after the provider delivered", status, body)
	}
	chain, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(chain); b == nil || !bytes.Equal(b.Bytes, leaf.Raw) {
		t.Fatal("tls-chain.pem does not start with the served certificate")
	}
	if _, err := os.Stat(filepath.Join(dir, "bootstrap", "tls.key")); !os.IsNotExist(err) {
		t.Fatalf("tls.key kept after the provider's certificate was installed: %v", err)
	}
	// Every listener name is in it, the IPv6 loopback too.
	if err := leaf.VerifyHostname(net.ParseIP("::1").String()); err != nil {
		t.Fatal(err)
	}
}
