package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/hsm/pkcs11"
	"github.com/govtrust/govtrust/internal/testenv"
)

// TestAgentVendorKey starts `govtrust agent` on a SoftHSM2 token whose key
// pair was made by pkcs11-tool, as a USB key's vendor software makes it
// (no govtrust metadata): the agent finds it by label with the official's
// certificate and proves the pair by a signature; with a certificate for
// another key it refuses to start.
func TestAgentVendorKey(t *testing.T) {
	module := testenv.File(t, "/usr/lib/softhsm/libsofthsm2.so", "SoftHSM2")
	util := testenv.LookPath(t, "softhsm2-util")
	tool := testenv.LookPath(t, "pkcs11-tool")
	tokdir := t.TempDir()
	conf := filepath.Join(tokdir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokdir+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf) // inherited by the agent process
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(util, "--init-token", "--free", "--label", "official", "--so-pin", "12345678", "--pin", "4321")
	p11 := []string{"--module", module, "--token-label", "official"}
	run(tool, append(p11, "--login", "--pin", "4321", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "zhang", "--id", "0a0b", "--usage-sign")...)
	work := t.TempDir()
	pubFile := filepath.Join(work, "pub.der")
	run(tool, append(p11, "--read-object", "--type", "pubkey", "--id", "0a0b", "--output-file", pubFile)...)
	der, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	// The official's certificate, made here with the token's key itself
	// (the agent checks that key and certificate belong together; the
	// platform checks the chain when it seals).
	km, err := pkcs11.New(context.Background(), pkcs11.Config{Module: module, Token: "official", PIN: "4321"})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := km.ExternalSigner(context.Background(), "zhang", nil, pub)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "张三"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Close(); err != nil {
		t.Fatal(err)
	}
	writePEM := func(name string, der []byte) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := writePEM("zhang.pem", certDER)
	pinFile := filepath.Join(work, "pin")
	if err := os.WriteFile(pinFile, []byte("4321\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"agent", "--module", module, "--token-label", "official", "--key-label", "zhang", "--pin-file", pinFile,
		"--listen", "127.0.0.1:0", "--confirm", "auto"}
	ag, _, out := startAgentProc(t, append(args, "--cert", certFile))
	if !strings.Contains(out.String(), "vendor key") {
		t.Errorf("agent did not report the vendor key:\n%s", out)
	}
	_ = ag.Process.Kill()

	// A certificate for another key: the agent refuses to start.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, other.Public(), other)
	if err != nil {
		t.Fatal(err)
	}
	res, code := govtrust(t, append(args, "--cert", writePEM("other.pem", otherDER))...)
	if code == 0 || !strings.Contains(res, "does not match") {
		t.Errorf("agent with a certificate for another key = %d:\n%s", code, res)
	}
}
