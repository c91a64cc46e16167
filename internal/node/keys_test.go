package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
)

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// softHSMToken initialises a SoftHSM2 token in a directory of its own and
// points SOFTHSM2_CONF at it.
func softHSMToken(t *testing.T, label, pin string) {
	t.Helper()
	testenv.File(t, softhsmModule, "SoftHSM2 (apt-get install softhsm2)")
	util := testenv.LookPath(t, "softhsm2-util")
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", "12345678", "--pin", pin).CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
}

func tokenEnv(token, module, pinVar string) string {
	return "hsm:\n  pkcs11:\n    - token: " + token + "\n      module: " + module + "\n      pin: env:" + pinVar + "\n"
}

func startWithConfig(t *testing.T, yaml string) *Node {
	t.Helper()
	n, _ := startWithConfigLogs(t, yaml)
	return n
}

// startWithConfigLogs starts a node and returns its log sink too.
func startWithConfigLogs(t *testing.T, yaml string) (*Node, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	dir := filepath.Join(t.TempDir(), "data")
	cfg := filepath.Join(t.TempDir(), "govtrust.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(dir)
	o.ConfigFile = cfg
	o.LogOutput = logs
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, logs
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// E-02: a wrong PIN, a missing token or a missing module leave the node up but
// not ready, say why, and sign nothing; there is no software fallback.
func TestTokenFailsClosed(t *testing.T) {
	softHSMToken(t, "ca", "1234")
	// Not digits: a 4-digit PIN turned up by chance in request IDs and
	// durations in the log about once in a thousand runs.
	const wrongPIN = "Qz-wrong-PIN"
	t.Setenv("GT_TEST_PIN", wrongPIN)
	cases := []struct {
		name, yaml, reason string
		want               error
	}{
		{"wrong PIN", tokenEnv("ca", softhsmModule, "GT_TEST_PIN"), "PIN", hsm.ErrPIN},
		{"missing token", tokenEnv("tsa", softhsmModule, "GT_TEST_PIN"), "unavailable", hsm.ErrUnavailable},
		{"missing module", tokenEnv("ca", "/nonexistent/libpkcs11.so", "GT_TEST_PIN"), "unavailable", hsm.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, logs := startWithConfigLogs(t, c.yaml)
			code, body := get(t, insecureClient(), "http://"+n.Addresses().HTTP+"/readyz", "")
			if code != 503 || !strings.Contains(body, `"keys"`) || !strings.Contains(strings.ToLower(body), strings.ToLower(c.reason)) {
				t.Fatalf("readyz = %d %s; want 503 naming %q", code, body, c.reason)
			}
			if strings.Contains(body, wrongPIN) {
				t.Fatal("readyz leaks the PIN")
			}
			if !strings.Contains(logs.String(), "PKCS#11 token unavailable") {
				t.Fatalf("the failure is not logged:\n%s", logs.String())
			}
			if strings.Contains(logs.String(), wrongPIN) {
				t.Fatal("the log leaks the PIN")
			}
			var audited int
			if err := n.Env().DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM audit_log WHERE action = 'hsm.pkcs11.open' AND outcome = 'failure' AND details NOT LIKE ?", "%"+wrongPIN+"%").Scan(&audited); err != nil || audited != 1 {
				t.Fatalf("%d audited open failures (%v), want 1", audited, err)
			}
			token := "ca"
			if c.name == "missing token" {
				token = "tsa"
			}
			uri := "pkcs11:token=" + token + ";object=root"
			_, err := n.Env().Keys.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: "ca"})
			if !errors.Is(err, c.want) {
				t.Fatalf("CreateKey on the failed token = %v, want %v", err, c.want)
			}
			if _, err := n.Env().Keys.Signer(context.Background(), &hsm.SignerRequest{URI: uri, Service: "ca"}); err == nil {
				t.Fatal("a signer was handed out by a failed token")
			}
		})
	}
}

// With the right PIN the token is ready, keys created through the node live
// where the report says, and the audit log records their creation.
func TestTokenAndSoftKeys(t *testing.T) {
	softHSMToken(t, "ca", "1234")
	t.Setenv("GT_TEST_PIN", "1234")
	n := startWithConfig(t, tokenEnv("ca", softhsmModule, "GT_TEST_PIN"))
	if code, body := get(t, insecureClient(), "http://"+n.Addresses().HTTP+"/readyz", ""); code != 200 {
		t.Fatalf("readyz = %d %s", code, body)
	}
	ctx := context.Background()
	keys := n.Env().Keys
	want := map[string]hsm.Location{
		"pkcs11:token=ca;object=root-p256": hsm.LocationHardware,
		"pkcs11:token=ca;object=root-sm2":  hsm.LocationWrapped,
		"soft:ca/root-sm2":                 hsm.LocationSoftware,
	}
	for uri := range want {
		alg := hsm.SM2
		if strings.Contains(uri, "p256") {
			alg = hsm.ECDSAP256
		}
		if _, err := keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: alg, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
			t.Fatalf("create %s: %v", uri, err)
		}
	}
	list, err := keys.ListKeys(ctx, &hsm.ListKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantByName := map[string]hsm.Location{}
	for uri, loc := range want {
		wantByName[keyName(t, uri)] = loc
	}
	seen := 0
	for _, k := range list {
		if loc, ok := wantByName[keyName(t, k.URI)]; ok {
			seen++
			if k.Location != loc {
				t.Errorf("%s: location %q, want %q", k.URI, k.Location, loc)
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("listed %d of %d keys: %+v", seen, len(want), list)
	}
	// SM2 signatures from the wrapped key verify with gmsm.
	s, err := keys.Signer(ctx, &hsm.SignerRequest{URI: "pkcs11:token=ca;object=root-sm2", Service: "ca"})
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 100)
	_, _ = rand.Read(msg)
	sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		t.Fatal(err)
	}
	if ecpub, ok := s.Public().(*ecdsa.PublicKey); !ok || !sm2.VerifyASN1WithSM2(ecpub, nil, msg, sig) {
		t.Fatal("SM2 signature from the wrapped key does not verify")
	}
	// The TSA cannot use the CA's key.
	if _, err := keys.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/root-sm2", Service: "tsa"}); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Fatalf("key separation: %v", err)
	}
	var n2 int
	if err := n.Env().DB.QueryRow(ctx, "SELECT COUNT(*) FROM audit_log WHERE action = ? AND outcome = 'success' AND details LIKE '%\"service\":\"ca\"%'", hsm.ActionKeyCreate).Scan(&n2); err != nil || n2 != 3 {
		t.Fatalf("%d key-creation audit records for the CA's keys (%v), want 3", n2, err)
	}
}

// keyName identifies a key by scheme, token and object (or opaque name),
// ignoring attributes a backend adds to its canonical URI (such as id).
func keyName(t *testing.T, uri string) string {
	t.Helper()
	u, err := hsm.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "|" + u.Opaque + "|" + u.Get("token") + "|" + u.Get("object")
}
