package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/internal/testenv"
)

func writeConfig(t *testing.T, dir, yaml string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "govtrust.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// govtrustEnv runs the binary with extra environment variables.
func govtrustEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// Shamir: `hsm init --shares 5 --threshold 3` writes the shares once; any 3
// unlock the keystore, 2 do not.
func TestHSMInitShamir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	shares := filepath.Join(t.TempDir(), "shares")
	out, code := govtrust(t, "hsm", "init", "--data", dir, "--shares", "5", "--threshold", "3", "--shares-dir", shares)
	if code != 0 || strings.Count(out, "wrote ") != 5 {
		t.Fatalf("init = %d\n%s", code, out)
	}
	for i := 1; i <= 5; i++ {
		fi, err := os.Stat(filepath.Join(shares, "share-"+string(rune('0'+i))+".txt"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("share %d: %v %v", i, err, fi)
		}
	}
	ref := func(i int) string { return "file:" + filepath.Join(shares, "share-"+string(rune('0'+i))+".txt") }
	writeConfig(t, dir, "hsm:\n  soft:\n    unlock: shares\n    shares: ["+ref(2)+", "+ref(4)+", "+ref(5)+"]\n")
	if out, code := govtrust(t, "hsm", "create", "--data", dir, "--uri", "soft:tsa/key-1", "--algorithm", "ecdsa-p256", "--service", "tsa"); code != 0 {
		t.Fatalf("create with 3 shares = %d\n%s", code, out)
	}
	writeConfig(t, dir, "hsm:\n  soft:\n    unlock: shares\n    shares: ["+ref(1)+", "+ref(3)+"]\n")
	if out, code := govtrust(t, "hsm", "keys", "--data", dir); code == 0 {
		t.Fatalf("2 of 5 shares unlocked the keystore:\n%s", out)
	}
	// A second init is refused: the master key exists.
	if out, code := govtrust(t, "hsm", "init", "--data", dir, "--shares", "5", "--threshold", "3"); code == 0 {
		t.Fatalf("second init accepted:\n%s", out)
	}
}

// E-05: the key-location report against a SoftHSM2 token matches what the
// token can do (`pkcs11-tool -M` lists no SM2 mechanism, so the SM2 key must
// be reported as software wrapped by a hardware key); E-01 for the P-256 key.
func TestHSMKeysReport(t *testing.T) {
	module := testenv.File(t, "/usr/lib/softhsm/libsofthsm2.so", "SoftHSM2")
	util := testenv.LookPath(t, "softhsm2-util")
	tool := testenv.LookPath(t, "pkcs11-tool")
	tokdir := t.TempDir()
	conf := filepath.Join(tokdir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokdir+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SOFTHSM2_CONF=" + conf, "GT_TEST_PIN=4321"}
	t.Setenv("SOFTHSM2_CONF", conf)
	t.Setenv("GT_TEST_PIN", "4321")
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "ca", "--so-pin", "12345678", "--pin", "4321").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "data")
	writeConfig(t, dir, "hsm:\n  pkcs11:\n    - token: ca\n      module: "+module+"\n      pin: env:GT_TEST_PIN\n")
	// The database exists after one start.
	up(t, dir).stop(t)
	for _, k := range [][]string{{"pkcs11:token=ca;object=ca-p256", "ecdsa-p256"}, {"pkcs11:token=ca;object=ca-sm2", "sm2"}, {"soft:ca/sm2", "sm2"}} {
		if out, code := govtrustEnv(t, env, "hsm", "create", "--data", dir, "--uri", k[0], "--algorithm", k[1], "--service", "ca"); code != 0 {
			t.Fatalf("create %s = %d\n%s", k[0], code, out)
		}
	}
	out, code := govtrustEnv(t, env, "hsm", "keys", "--data", dir, "--json")
	if code != 0 {
		t.Fatalf("keys = %d\n%s", code, out)
	}
	var rep struct {
		Keys []struct{ URI, Algorithm, Backend, Module, Token, Label, Location string }
	}
	// Standard error (the dev master-key warning) shares the output; the
	// report is the JSON line.
	i := strings.Index(out, `{"keys"`)
	if i < 0 {
		t.Fatalf("no JSON report:\n%s", out)
	}
	line := out[i:]
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	loc := map[string]string{}
	for _, k := range rep.Keys {
		loc[k.Label+"/"+k.Backend] = k.Location
		if k.Backend == "pkcs11" && (k.Module != module || k.Token != "ca") {
			t.Errorf("%s: module %q token %q", k.URI, k.Module, k.Token)
		}
	}
	want := map[string]string{"ca-p256/pkcs11": "hardware", "ca-sm2/pkcs11": "software, wrapped by hardware key", "ca/sm2/soft": "software"}
	for k, v := range want {
		if loc[k] != v {
			t.Errorf("%s: location %q, want %q (report %v)", k, loc[k], v, loc)
		}
	}
	mechs, err := exec.Command(tool, "--module", module, "-M").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool -M: %v\n%s", err, mechs)
	}
	if !strings.Contains(string(mechs), "ECDSA") || strings.Contains(strings.ToUpper(string(mechs)), "SM2") {
		t.Fatalf("SoftHSM2's mechanisms are not what the report assumes:\n%s", mechs)
	}
	// E-01: the token holds the P-256 private key sensitive and never extractable.
	objs, err := exec.Command(tool, "--module", module, "--login", "--pin", "4321", "--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, objs)
	}
	s := string(objs)
	if !strings.Contains(s, "ca-p256") || !strings.Contains(s, "sensitive") || !strings.Contains(s, "never extractable") {
		t.Fatalf("private key attributes:\n%s", s)
	}
	if strings.Contains(s, "ca-sm2") {
		t.Fatalf("a wrapped SM2 key must not exist as a token private key:\n%s", s)
	}
}

// `govtrust token create|list|revoke` on the data directory: a token made
// offline works against the running node, and stops working once revoked.
func TestTokenCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	up(t, dir).stop(t)
	out, code := govtrust(t, "token", "create", "--data", dir, "--account", "auditor", "--name", "siem", "--ttl", "1h")
	if code != 0 {
		t.Fatalf("token create = %d\n%s", code, out)
	}
	var tok string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "gt_") {
			tok = line
		}
	}
	if tok == "" {
		t.Fatalf("no token printed:\n%s", out)
	}
	p := up(t, dir)
	get := func() int {
		req, _ := http.NewRequest("GET", "https://"+p.addrs["https"]+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("offline-made token: %d", code)
	}
	out, code = govtrust(t, "token", "list", "--data", dir, "--account", "auditor", "--json")
	var toks []struct {
		ID, Name string
	}
	i := strings.Index(out, "[{")
	if code != 0 || i < 0 || json.Unmarshal([]byte(out[i:]), &toks) != nil || len(toks) != 2 {
		t.Fatalf("token list = %d\n%s", code, out)
	}
	id := toks[1].ID
	if toks[1].Name != "siem" {
		id = toks[0].ID
	}
	if out, code := govtrust(t, "token", "revoke", "--data", dir, id); code != 0 {
		t.Fatalf("revoke = %d\n%s", code, out)
	}
	if code := get(); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	p.stop(t)
}

// `govtrust account create|grant|list` makes administrator accounts offline,
// refusing role combinations that must not be held together.
func TestAccountCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	up(t, dir).stop(t)
	if out, code := govtrust(t, "account", "create", "--data", dir, "--name", "auditor-2", "--org", "platform", "--clearance", "机密", "--role", "auditor"); code != 0 {
		t.Fatalf("create = %d\n%s", code, out)
	}
	if out, code := govtrust(t, "account", "grant", "--data", dir, "auditor-2", "ca-operator"); code == 0 || !strings.Contains(out, "conflict") {
		t.Fatalf("auditor + ca-operator granted: %d\n%s", code, out)
	}
	out, code := govtrust(t, "account", "list", "--data", dir)
	if code != 0 || !strings.Contains(out, "auditor-2") || !strings.Contains(out, "confidential") {
		t.Fatalf("list = %d\n%s", code, out)
	}
	out, code = govtrust(t, "audit", "export", "--data", dir)
	if code != 0 || !strings.Contains(out, `"action":"authz.role.grant","object":"account/`) || !strings.Contains(out, `"outcome":"denied"`) {
		t.Fatalf("refused grant not audited:\n%s", out)
	}
}
