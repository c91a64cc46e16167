package main_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/miekg/pkcs11"
)

// baseEnv is this process's environment without the module's variables,
// plus extra.
func baseEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOVTRUST_P11_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// dirEnv is the environment for a subprocess using the token in dir.
func dirEnv(dir string) []string { return baseEnv("GOVTRUST_P11_DIR=" + dir) }

// run runs a command with env and returns its combined output.
func run(t *testing.T, env []string, wantOK bool, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if wantOK && err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	if !wantOK && err == nil {
		t.Fatalf("%s %s succeeded, want failure\n%s", filepath.Base(name), strings.Join(args, " "), out)
	}
	return string(out)
}

func contains(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

// sm2Cert makes a self-signed SM2 certificate to store on the token.
func sm2Cert(t *testing.T) []byte {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	must(t, err)
	tmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(2026),
		Subject:      pkix.Name{CommonName: "张三", Organization: []string{"govtrust test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	return der
}

func TestPKCS11Tool(t *testing.T) {
	tool := testenv.LookPath(t, "pkcs11-tool")
	dir := t.TempDir()
	p11 := func(wantOK bool, args ...string) string {
		t.Helper()
		return run(t, dirEnv(dir), wantOK, tool, append([]string{"--module", soPath}, args...)...)
	}

	// A token created the way an operator would: C_InitToken, C_InitPIN.
	p11(true, "--init-token", "--label", "official", "--so-pin", soPIN)
	p11(true, "--login", "--login-type", "so", "--so-pin", soPIN, "--init-pin", "--pin", userPIN)
	contains(t, "-L", p11(true, "-L"), "token label        : official", "token initialized", "PIN initialized")
	contains(t, "-M", p11(true, "-M"), "mechtype-0x80008001", "mechtype-0x80008100", "mechtype-0x80008000",
		"mechtype-0x80008200", "ECDSA-KEY-PAIR-GEN", "ECDSA,")
	p11(true, "--login", "--pin", userPIN, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "p256", "--id", "01")

	// This process adds an SM2 key, a private data object and a certificate.
	p := load(t, dir)
	s := userSession(t, p)
	keyPair(t, p, s, true, "sm2-seal")
	_, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "govtrust-meta"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte(`{"service":"seal"}`)),
	})
	must(t, err)
	cert := sm2Cert(t)
	certH, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "seal-cert"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert),
	})
	must(t, err)
	c, err := smx509.ParseCertificate(cert)
	must(t, err)
	if !bytes.Equal(attr(t, p, s, certH, pkcs11.CKA_SUBJECT), c.RawSubject) {
		t.Errorf("certificate CKA_SUBJECT not taken from the certificate")
	}

	// Objects made by another process appear here without a restart.
	p11(true, "--login", "--pin", userPIN, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "p256-b")
	if n := len(find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "p256-b"))); n != 2 {
		t.Errorf("found %d objects made by pkcs11-tool meanwhile, want 2", n)
	}

	out := p11(true, "--login", "--pin", userPIN, "-O")
	contains(t, "-O logged in", out, "label:      p256", "label:      sm2-seal", "label:          'govtrust-meta'",
		"label:      seal-cert", "Private Key Object; EC", "sensitive, always sensitive, never extractable, local")
	out = p11(true, "-O")
	contains(t, "-O public", out, "label:      seal-cert", "Public Key Object; EC")
	if strings.Contains(out, "Private Key Object") || strings.Contains(out, "govtrust-meta") {
		t.Errorf("-O without login shows private objects:\n%s", out)
	}

	// The private key cannot be read out. pkcs11-tool 0.23 refuses by
	// itself; the module's own refusal (CKR_ATTRIBUTE_SENSITIVE on
	// CKA_VALUE) is checked in TestKeyPolicyAndAttributes and abicheck.
	keyOut := filepath.Join(t.TempDir(), "priv.der")
	out = p11(true, "--login", "--pin", userPIN, "--read-object", "--type", "privkey", "--label", "p256", "-o", keyOut)
	if b, err := os.ReadFile(keyOut); err == nil && len(b) > 0 {
		t.Errorf("pkcs11-tool wrote %d bytes of private key:\n%s", len(b), out)
	}

	// pkcs11-tool signs with the P-256 key; crypto/ecdsa verifies.
	pubOut := filepath.Join(t.TempDir(), "pub.der")
	p11(true, "--read-object", "--type", "pubkey", "--id", "01", "-o", pubOut)
	pubDER, err := os.ReadFile(pubOut)
	must(t, err)
	pk, err := x509.ParsePKIXPublicKey(pubDER)
	must(t, err)
	digest := sha256.Sum256([]byte("pkcs11-tool"))
	in, sigOut := filepath.Join(t.TempDir(), "digest"), filepath.Join(t.TempDir(), "sig")
	must(t, os.WriteFile(in, digest[:], 0o600))
	// pkcs11-tool 0.23 selects the signing key by --id, not by --label.
	p11(true, "--login", "--pin", userPIN, "--sign", "-m", "ECDSA", "--id", "01", "-i", in, "-o", sigOut)
	sig, err := os.ReadFile(sigOut)
	must(t, err)
	_, _, der := splitRS(t, sig)
	if !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), digest[:], der) {
		t.Errorf("crypto/ecdsa rejects pkcs11-tool's signature")
	}

	contains(t, "wrong PIN", p11(false, "--login", "--pin", "000000", "-O"), "CKR_PIN_INCORRECT")
}

func TestConfiguration(t *testing.T) {
	tool := testenv.LookPath(t, "pkcs11-tool")
	dir := t.TempDir()
	run(t, dirEnv(dir), true, cliPath, "--init", "--label", "from-env", "--so-pin", soPIN)

	// GOVTRUST_P11_CONF with a relative directory.
	conf := filepath.Join(dir, "conf", "p11.conf")
	must(t, os.MkdirAll(filepath.Dir(conf), 0o700))
	must(t, os.WriteFile(conf, []byte("# comment\n directory = ..\n"), 0o600))
	out := run(t, baseEnv("GOVTRUST_P11_CONF="+conf), true, tool, "--module", soPath, "-L")
	contains(t, "-L via config file", out, "from-env")

	for name, env := range map[string][]string{
		"both variables": {"GOVTRUST_P11_DIR=" + dir, "GOVTRUST_P11_CONF=" + conf},
		"neither":        nil,
		"unknown key":    {"GOVTRUST_P11_CONF=" + writeFile(t, "pin = 1234\n")},
	} {
		out := run(t, baseEnv(env...), false, tool, "--module", soPath, "-L")
		contains(t, name, out, "govtrust-p11: C_Initialize:")
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestCLIInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "token")
	out := run(t, baseEnv(), true, cliPath, "--init", "--dir", dir, "--label", "cli-token", "--so-pin", soPIN, "--pin", userPIN)
	contains(t, "--init", out, `initialised software token "cli-token"`, "user PIN set")
	contains(t, "second --init", run(t, baseEnv(), false, cliPath, "--init", "--dir", dir, "--label", "x", "--so-pin", soPIN), "already holds token")
	contains(t, "no flags", run(t, baseEnv(), false, cliPath), "usage: govtrust-p11 --init")
	contains(t, "short PIN", run(t, baseEnv(), false, cliPath, "--init", "--dir", t.TempDir(), "--label", "x", "--so-pin", "12"), "PINs must be")

	p := load(t, dir)
	ti, err := p.GetTokenInfo(0)
	must(t, err)
	if ti.Label != "cli-token" || ti.Flags&pkcs11.CKF_USER_PIN_INITIALIZED == 0 {
		t.Fatalf("token made by the CLI: label %q flags %#x", ti.Label, ti.Flags)
	}
	s := userSession(t, p)
	keyPair(t, p, s, true, "k")
	must(t, p.Finalize())

	// --force wipes it; PINs can come from files.
	pinFile := writeFile(t, "99999999\n")
	run(t, baseEnv(), true, cliPath, "--init", "--dir", dir, "--label", "again", "--so-pin-file", pinFile, "--force")
	must(t, p.Initialize())
	ti, err = p.GetTokenInfo(0)
	must(t, err)
	if ti.Label != "again" || ti.Flags&pkcs11.CKF_USER_PIN_INITIALIZED != 0 {
		t.Fatalf("after --force: label %q flags %#x", ti.Label, ti.Flags)
	}
	s = openSession(t, p, true)
	must(t, p.Login(s, pkcs11.CKU_SO, "99999999"))
	if n := len(find(t, p, s)); n != 0 {
		t.Errorf("%d objects survived --force", n)
	}
}

func TestCallingConventions(t *testing.T) {
	dir := t.TempDir()
	run(t, baseEnv(), true, cliPath, "--init", "--dir", dir, "--label", "abi", "--so-pin", soPIN, "--pin", userPIN)
	p := load(t, dir)
	s := userSession(t, p)
	keyPair(t, p, s, true, "abi-key")
	out := run(t, dirEnv(dir), true, abiPath, soPath, userPIN, "abi-key")
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("abicheck:\n%s", out)
	}
}

// TestP11KitRemote runs the module in a p11-kit server process and uses it
// through p11-kit's C client module: the set-up README.md suggests for Go
// hosts that should not load a second Go runtime.
func TestP11KitRemote(t *testing.T) {
	p11kit := testenv.LookPath(t, "p11-kit")
	tool := testenv.LookPath(t, "pkcs11-tool")
	clients, _ := filepath.Glob("/usr/lib/*/pkcs11/p11-kit-client.so")
	if len(clients) == 0 {
		testenv.Missing(t, "p11-kit-client.so (Debian package p11-kit-modules)")
	}
	dir := t.TempDir()
	run(t, dirEnv(dir), true, cliPath, "--init", "--label", "remote", "--so-pin", soPIN, "--pin", userPIN)

	sock := filepath.Join(t.TempDir(), "p11.sock")
	server := exec.Command(p11kit, "server", "-f", "-n", sock, "--provider", soPath, "pkcs11:token=remote")
	server.Env = dirEnv(dir)
	stdout, err := server.StdoutPipe()
	must(t, err)
	server.Stderr = os.Stderr
	must(t, server.Start())
	t.Cleanup(func() {
		_ = server.Process.Kill()
		_ = server.Wait()
	})
	// The server prints its address once it listens.
	sc := bufio.NewScanner(stdout)
	for !strings.Contains(sc.Text(), "P11_KIT_SERVER_ADDRESS") {
		if !sc.Scan() {
			t.Fatalf("p11-kit server exited without printing its address: %v", sc.Err())
		}
	}

	env := baseEnv("P11_KIT_SERVER_ADDRESS=unix:path=" + sock)
	run(t, env, true, tool, "--module", clients[0], "--login", "--pin", userPIN,
		"--keypairgen", "--key-type", "EC:prime256v1", "--label", "remote-key")
	out := run(t, env, true, tool, "--module", clients[0], "--login", "--pin", userPIN, "-O")
	contains(t, "-O through p11-kit", out, "label:      remote-key", "never extractable")
	if n, _ := filepath.Glob(filepath.Join(dir, "objects", "*.json")); len(n) != 2 {
		t.Errorf("the token directory holds %d objects, want the 2 made through p11-kit", len(n))
	}
}
