package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/testenv"
)

// TestSignVerifyCommands: `govtrust sign|verify` against a running node
// with a key the security administrator made for an application; the SM2
// signature passes INTEROP.md's OpenSSL detached check, the ECDSA one
// `openssl cms -verify`; altered content fails with its reason; offline
// verification with the anchors gives the same verdict.
func TestSignVerifyCommands(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	dir := filepath.Join(t.TempDir(), "data")
	httpAddr := testenv.FreeAddr(t) // certificates name it in their OCSP and CRL URLs
	up(t, dir, "--http", httpAddr).stop(t)
	if out, code := govtrust(t, "account", "create", "--data", dir, "--name", "billing-app", "--kind", "application", "--org", "demo",
		"--clearance", "public", "--role", "application"); code != 0 {
		t.Fatalf("account create = %d\n%s", code, out)
	}
	tok := strings.TrimSpace(stdoutOf(t, "token", "create", "--data", dir, "--account", "billing-app", "--name", "test"))
	appToken := filepath.Join(t.TempDir(), "app.token")
	if err := os.WriteFile(appToken, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := up(t, dir, "--http", httpAddr)
	running := true
	defer func() {
		if running {
			p.stop(t)
		}
	}()
	api := "https://" + p.addrs["https"]
	cacert := filepath.Join(dir, "bootstrap", "tls-chain.pem")
	secadmin, err := os.ReadFile(filepath.Join(dir, "bootstrap", "secadmin.token"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	newKey := func(alg string) (id, certPEM string) {
		body, _ := json.Marshal(map[string]any{"name": "billing " + alg, "owner": "billing-app", "algorithm": alg, "record": map[string]string{"uscc": "91350100M000100Y43"}})
		req, _ := http.NewRequest("POST", api+"/api/v1/signature/keys", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(secadmin)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var k struct{ ID, Certificate string }
		if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&k) != nil {
			t.Fatalf("create %s key: %d", alg, resp.StatusCode)
		}
		return k.ID, k.Certificate
	}
	work := t.TempDir()
	doc := filepath.Join(work, "doc.txt")
	if err := os.WriteFile(doc, []byte("审批决定书 No. 2026-0042\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	alt := filepath.Join(work, "alt.txt")
	if err := os.WriteFile(alt, []byte("审批决定书 No. 2026-0043\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	online := []string{"--url", api, "--token-file", appToken, "--cacert", cacert}

	smID, smCert := newKey("sm2")
	smPEM := filepath.Join(work, "sm2.pem")
	os.WriteFile(smPEM, []byte(smCert), 0o644)
	sig := filepath.Join(work, "doc.p7s")
	if out, code := govtrust(t, append([]string{"sign", "--key", smID, "--in", doc, "--out", sig, "--detached", "--timestamp"}, online...)...); code != 0 {
		t.Fatalf("sign = %d\n%s", code, out)
	}
	script, _ := filepath.Abs("../../signature/cms/testdata/cms-sm2-verify.sh")
	if out, err := runCmd("sh", script, sig, smPEM, doc); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("OpenSSL detached check: %v\n%s", err, out)
	}
	if out, code := govtrust(t, append([]string{"verify", "--in", sig, "--content", doc}, online...)...); code != 0 || !strings.HasPrefix(out, "VALID") || !strings.Contains(out, "signature-time-stamp") {
		t.Fatalf("verify = %d\n%s", code, out)
	}
	if out, code := govtrust(t, append([]string{"verify", "--in", sig, "--content", alt}, online...)...); code == 0 || !strings.Contains(out, "content-altered") {
		t.Fatalf("verify altered = %d\n%s", code, out)
	}

	// Offline, with the anchors fetched from the public listener.
	anchors := filepath.Join(work, "anchors.pem")
	var bundle []byte
	for _, id := range []string{"sm2-root", "sm2-issuing", "ecdsa-root", "ecdsa-issuing"} {
		resp, err := http.Get("http://" + p.addrs["http"] + "/pki/" + id + ".crt")
		if err != nil {
			t.Fatal(err)
		}
		der := new(bytes.Buffer)
		der.ReadFrom(resp.Body)
		resp.Body.Close()
		bundle = append(bundle, pemBlock(der.Bytes())...)
	}
	os.WriteFile(anchors, bundle, 0o644)
	if out, code := govtrust(t, "verify", "--offline", "--anchors", anchors, "--in", sig, "--content", doc, "--json"); code != 0 || !strings.Contains(out, `"valid": true`) {
		t.Fatalf("offline verify = %d\n%s", code, out)
	}

	ecID, _ := newKey("ecdsa-p256")
	ecSig := filepath.Join(work, "doc-ec.p7m")
	if out, code := govtrust(t, append([]string{"sign", "--key", ecID, "--in", doc, "--out", ecSig, "--hash", "sha256"}, online...)...); code != 0 {
		t.Fatalf("sign ecdsa = %d\n%s", code, out)
	}
	if out, err := runCmd(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", ecSig, "-CAfile", anchors, "-purpose", "any", "-out", os.DevNull); err != nil || !strings.Contains(out, "Verification successful") {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}

	// Offline with the key URI, on the stopped node's data directory
	// (ceremony-style signing), hash-only: the result passes OpenSSL's
	// detached check and the platform's verifier, offline.
	p.stop(t)
	running = false
	offSig := filepath.Join(work, "doc-offline.p7s")
	if out, code := govtrust(t, "sign", "--data", dir, "--key-uri", "soft:signature/"+smID, "--cert", smPEM,
		"--in", doc, "--out", offSig, "--hash-only", "--hash", "sm3"); code != 0 {
		t.Fatalf("offline sign = %d\n%s", code, out)
	}
	if out, err := runCmd("sh", script, offSig, smPEM, doc); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("OpenSSL detached check of the offline signature: %v\n%s", err, out)
	}
	// Without fetching, revocation cannot be shown (that is the verdict);
	// the signature and the chain to the platform root must pass.
	out, _ := govtrust(t, "verify", "--offline", "--no-fetch", "--anchors", anchors, "--in", offSig, "--content", doc, "--json")
	var rep struct {
		Signers []struct {
			Checks []struct {
				Name string `json:"name"`
				Pass bool   `json:"pass"`
			} `json:"checks"`
		} `json:"signers"`
	}
	// The report comes first; the exit-status line of an invalid verdict follows it.
	if err := json.NewDecoder(strings.NewReader(out[strings.Index(out, "{"):])).Decode(&rep); err != nil || len(rep.Signers) != 1 {
		t.Fatalf("offline verify report: %v\n%s", err, out)
	}
	passed := map[string]bool{}
	for _, c := range rep.Signers[0].Checks {
		passed[c.Name] = c.Pass
	}
	if !passed["signature"] || !passed["chain"] {
		t.Errorf("offline signature: checks %v, want signature and chain passed\n%s", passed, out)
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func pemBlock(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
