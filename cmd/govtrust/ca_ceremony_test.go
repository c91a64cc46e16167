package main

import (
	"bytes"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/testenv"
)

// runOpenSSL runs openssl and fails the test on error.
func runOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.LookPath(t, "openssl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mustGovtrust runs the binary and requires exit 0.
func mustGovtrust(t *testing.T, args ...string) string {
	t.Helper()
	out, code := govtrust(t, args...)
	if code != 0 {
		t.Fatalf("govtrust %s = %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// copyCeremonies copies the example ceremony files of ca/ceremony into dir.
func copyCeremonies(t *testing.T, dir string) {
	t.Helper()
	src := filepath.Join("..", "..", "ca", "ceremony", "testdata")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".yaml") {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// ceremonyPassphraseEnv holds the passphrase of the test keystores.
const ceremonyPassphraseEnv = "GTTEST_CEREMONY_PASSPHRASE"

// sealedKeystore makes dir a data directory whose software keystore is
// sealed under a passphrase (govtrust hsm init), as a ceremony requires:
// the configuration names the passphrase by reference, and the variable is
// set for the commands the test runs (and `govtrust up`).
func sealedKeystore(t *testing.T, dir string) {
	t.Helper()
	t.Setenv(ceremonyPassphraseEnv, "ceremony test passphrase, not a secret")
	writeConfig(t, dir, "hsm:\n  soft:\n    unlock: passphrase\n    passphrase: env:"+ceremonyPassphraseEnv+"\n")
	mustGovtrust(t, "hsm", "init", "--data", dir, "--passphrase-env", ceremonyPassphraseEnv)
}

// TestCeremonyRefusesDevKeystore: a ceremony never makes or uses a CA key
// in a software keystore protected only by a dev master key (stored in clear
// in the same database). On a fresh data directory in dev mode init-root
// fails, names the way out, and leaves nothing behind: no master key, no
// key, no certificate. A data directory whose keystore already has a dev
// master key is refused too, for the root's key and for an issuer's key.
func TestCeremonyRefusesDevKeystore(t *testing.T) {
	work := t.TempDir()
	copyCeremonies(t, work)
	at := func(n string) string { return filepath.Join(work, n) }
	fresh := at("fresh")
	out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-ecdsa.yaml"), "--data", fresh, "--out", at("root.pem"))...)
	if code == 0 || !strings.Contains(out, "development master key") || !strings.Contains(out, "govtrust hsm init") || !strings.Contains(out, "pkcs11:") {
		t.Fatalf("init-root on a fresh dev keystore = %d\n%s", code, out)
	}
	if _, err := os.Stat(at("root.pem")); err == nil {
		t.Fatal("a root certificate was written")
	}
	for _, q := range []string{"SELECT COUNT(*) FROM hsm_soft_master", "SELECT COUNT(*) FROM hsm_soft_keys"} {
		if n := sqliteCount(t, fresh, q); n != 0 {
			t.Errorf("%s = %d after the refused ceremony", q, n)
		}
	}

	// A keystore that has a dev master key already (any command opening
	// the keys in dev mode makes one).
	dev := fresh
	mustGovtrust(t, "hsm", "create", "--data", dev, "--uri", "soft:tsa/other", "--algorithm", "ecdsa-p256", "--service", "tsa")
	out, code = govtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-ecdsa.yaml"), "--data", dev, "--out", at("root.pem"))...)
	if code == 0 || !strings.Contains(out, "development master key") || !strings.Contains(out, "new data directory") {
		t.Fatalf("init-root on a dev keystore = %d\n%s", code, out)
	}
	if n := sqliteCount(t, dev, "SELECT COUNT(*) FROM hsm_soft_keys WHERE uri = 'soft:ca/gov-ecdsa-root'"); n != 0 {
		t.Fatal("the root key was made")
	}
	// The issuer's key in a dev keystore: no signing with it either.
	mustGovtrust(t, "hsm", "create", "--data", dev, "--uri", "soft:ca/gov-ecdsa-root", "--algorithm", "ecdsa-p256", "--service", "ca")
	rootB := at("root-b")
	sealedKeystore(t, rootB)
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-ecdsa.yaml"), "--data", rootB, "--out", at("root.pem"))...)
	rootFP := runOpenSSL(t, "x509", "-in", at("root.pem"), "-noout", "-fingerprint", "-sha256")
	cross := editCeremony(t, work, "cross-ecdsa.yaml", "cross.yaml", "A3:B8:8A:09:34:75:82:6E:7D:AF:D9:5F:11:3A:32:B0:1E:3C:DF:A4:13:13:D5:AF:D1:B1:CD:C2:BF:FE:C8:2D",
		strings.TrimSpace(rootFP[strings.Index(rootFP, "=")+1:]), "root-b.pem", "root.pem")
	out, code = govtrust(t, ceremonyArgs(t, []string{"ca", "cross-sign"}, cross, "--data", dev, "--out", at("cross.pem"))...)
	if code == 0 || !strings.Contains(out, "development master key") {
		t.Fatalf("cross-sign with an issuer key in a dev keystore = %d\n%s", code, out)
	}
	if _, err := os.Stat(at("cross.pem")); err == nil {
		t.Fatal("a cross-certificate was written")
	}
}

// sqliteCount runs a COUNT query on the SQLite database of data directory
// dir.
func sqliteCount(t *testing.T, dir, query string) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "govtrust.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestOfflineRootCeremony is the offline-root story end to end with the real
// binary, for both algorithms: init-root on the root's machine, init-sub
// (key and request) in a node's data directory, the request signed on the
// root's machine, import into the node, start the node, issue from the
// imported CA, and verify the chain with OpenSSL. The ceremony hashes are
// in both audit logs.
func TestOfflineRootCeremony(t *testing.T) {
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			work := t.TempDir()
			copyCeremonies(t, work)
			rootDir, nodeDir := filepath.Join(work, "root"), filepath.Join(work, "node")
			sealedKeystore(t, rootDir)
			sealedKeystore(t, nodeDir)
			at := func(n string) string { return filepath.Join(work, n) }
			sub := "gov-" + alg + "-sub"

			out := mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-"+alg+".yaml"), "--data", rootDir, "--out", at("root.pem"))...)
			fp := runOpenSSL(t, "x509", "-in", at("root.pem"), "-noout", "-fingerprint", "-sha256")
			if got := strings.TrimSpace(fp[strings.Index(fp, "=")+1:]); !strings.Contains(out, "SHA-256 fingerprint: "+got) {
				t.Fatalf("init-root printed\n%s\nopenssl says %s", out, fp)
			}
			if subj := runOpenSSL(t, "x509", "-in", at("root.pem"), "-noout", "-subject", "-nameopt", "utf8"); !strings.Contains(subj, "某某市人民政府") {
				t.Fatalf("root subject %s", subj)
			}
			// A second run of the same root ceremony (key.mode: create) must not
			// replace the key.
			if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-"+alg+".yaml"), "--data", rootDir, "--out", at("root2.pem"))...); code == 0 || !strings.Contains(out, "exists") {
				t.Fatalf("second init-root = %d\n%s", code, out)
			}

			out = mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, at("sub-"+alg+".yaml"), "--data", nodeDir, "--csr-out", at("sub.csr"))...)
			// The file is reviewed again with the request's fingerprint.
			signFile := pinRequest(t, work, "sub-"+alg+".yaml", "sub-"+alg+"-sign.yaml", out)
			out = mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, signFile, "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub.pem"))...)
			// The root's data directory records the root, and the sub-CA
			// certificate under it (for its CRL ceremonies).
			if root := "gov-" + alg + "-root"; !strings.Contains(out, "recorded in ca_certificates under "+root) ||
				!strings.Contains(mustGovtrust(t, "ca", "list", "--data", rootDir), root) {
				t.Fatalf("the root's data directory does not record the root and the sub-CA certificate it signed:\n%s", out)
			}
			// The wrong chain is refused before anything is recorded.
			if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "import", "--cert", at("sub.pem"), "--chain", at("sub.pem")}, signFile, "--data", nodeDir)...); code == 0 {
				t.Fatalf("import with a wrong chain succeeded:\n%s", out)
			}
			out = mustGovtrust(t, ceremonyArgs(t, []string{"ca", "import", "--cert", at("sub.pem"), "--chain", at("root.pem")}, signFile, "--data", nodeDir)...)
			if !strings.Contains(out, "imported CA "+sub) {
				t.Fatalf("import printed\n%s", out)
			}

			p := up(t, nodeDir)
			tok, err := os.ReadFile(filepath.Join(nodeDir, "bootstrap", "ra.token"))
			if err != nil {
				t.Fatal(err)
			}
			key := at("leaf.key")
			var req map[string]any
			if alg == "sm2" {
				runOpenSSL(t, "genpkey", "-algorithm", "SM2", "-out", key)
				runOpenSSL(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-utf8", "-subj", "/CN=张三/O=测试局", "-out", at("leaf.csr"))
				req = map[string]any{"profile": "person-sign", "record": map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}}
			} else {
				runOpenSSL(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
					"-subj", "/CN=portal.example.gov.cn", "-addext", "subjectAltName=DNS:portal.example.gov.cn", "-out", at("leaf.csr"))
				req = map[string]any{"profile": "server-tls"}
			}
			csr, _ := os.ReadFile(at("leaf.csr"))
			req["csr"] = string(csr)
			body, _ := json.Marshal(req)
			hreq, _ := http.NewRequest("POST", "https://"+p.addrs["https"]+"/api/v1/ca/"+sub+"/certificates", bytes.NewReader(body))
			hreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
			hreq.Header.Set("Content-Type", "application/json")
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			resp, err := c.Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("issue from %s: %d %s", sub, resp.StatusCode, raw)
			}
			var issued struct {
				Certificate string   `json:"certificate"`
				Chain       []string `json:"chain"`
			}
			if err := json.Unmarshal(raw, &issued); err != nil {
				t.Fatal(err)
			}
			if len(issued.Chain) != 2 {
				t.Fatalf("chain of %d certificates, want the sub-CA and the offline root", len(issued.Chain))
			}
			rootPEM, _ := os.ReadFile(at("root.pem"))
			if strings.TrimSpace(issued.Chain[1]) != strings.TrimSpace(string(rootPEM)) {
				t.Fatal("the chain does not end in the offline root")
			}
			if err := os.WriteFile(at("leaf.pem"), []byte(issued.Certificate), 0o600); err != nil {
				t.Fatal(err)
			}
			if alg == "sm2" {
				// As ca/issue_test.go checks SM2 chains: each link with the
				// default SM2 ID.
				if got := runOpenSSL(t, "verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", at("sub.pem"), at("leaf.pem")); !strings.Contains(got, ": OK") {
					t.Fatalf("openssl verify leaf: %s", got)
				}
				if got := runOpenSSL(t, "verify", "-vfyopt", "distid:1234567812345678", "-CAfile", at("root.pem"), at("sub.pem")); !strings.Contains(got, ": OK") {
					t.Fatalf("openssl verify sub-CA: %s", got)
				}
			} else if got := runOpenSSL(t, "verify", "-CAfile", at("root.pem"), "-untrusted", at("sub.pem"), at("leaf.pem")); !strings.Contains(got, ": OK") {
				t.Fatalf("openssl verify: %s", got)
			}
			// The imported CA has its CRL, signed by its key.
			resp, err = http.Get("http://" + p.addrs["http"] + "/pki/" + sub + ".crl")
			if err != nil {
				t.Fatal(err)
			}
			crl, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("CRL of %s: %d", sub, resp.StatusCode)
			}
			if err := os.WriteFile(at("sub.crl"), crl, 0o600); err != nil {
				t.Fatal(err)
			}
			crlArgs := []string{"crl", "-inform", "DER", "-in", at("sub.crl"), "-noout", "-CAfile", at("sub.pem")}
			if alg == "sm2" {
				crlArgs = []string{"crl", "-inform", "DER", "-in", at("sub.crl"), "-noout", "-text"}
			}
			runOpenSSL(t, crlArgs...)
			p.stop(t)

			// The node's built-in issuing CA's key is not a new sub-CA's.
			builtin := editCeremony(t, work, "sub-"+alg+".yaml", "builtin-key.yaml", "ca: "+sub, "ca: another-sub",
				"uri: soft:ca/"+sub+"\n  mode: create", "uri: soft:ca/"+alg+"-issuing\n  mode: existing")
			if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, builtin, "--data", nodeDir, "--csr-out", at("builtin.csr"))...); code == 0 || !strings.Contains(out, "is the key of CA "+alg+"-issuing") {
				t.Fatalf("init-sub with the built-in issuing CA's key = %d\n%s", code, out)
			}

			// Every step is in the audit logs with the ceremony file's SM3.
			for _, c := range []struct {
				dir, action, file string
			}{
				{rootDir, "ca.ceremony.root", "root-" + alg + ".yaml"},
				{rootDir, "ca.ceremony.sign-sub", "sub-" + alg + "-sign.yaml"},
				{nodeDir, "ca.ceremony.request", "sub-" + alg + ".yaml"},
				{nodeDir, "ca.authority.import", "sub-" + alg + "-sign.yaml"},
			} {
				hash := sm3File(t, at(c.file))
				if n := countAudit(t, c.dir, c.action, hash); n != 1 {
					t.Errorf("%s: %d %s records with ceremony SM3 %s, want 1", c.dir, n, c.action, hash)
				}
			}
		})
	}
}

// sm3File is the SM3 of a file as OpenSSL computes it (an independent
// implementation of GB/T 32905).
func sm3File(t *testing.T, path string) string {
	t.Helper()
	out := runOpenSSL(t, "dgst", "-sm3", "-r", path)
	return strings.Fields(out)[0]
}

func countAudit(t *testing.T, dir, action, hash string) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "govtrust.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM audit_log WHERE action = ? AND details LIKE ?", action, fmt.Sprintf("%%%s%%", hash)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// ceremonyArgs are cmd, then --ceremony path --sm3 <its SM3, computed by
// OpenSSL>, then more.
func ceremonyArgs(t *testing.T, cmd []string, path string, more ...string) []string {
	t.Helper()
	return append(append(cmd, "--ceremony", path, "--sm3", sm3File(t, path)), more...)
}

// pinRequest writes a copy of the ceremony file from as to with the
// request_sha256 that the output of init-sub --csr-out printed.
func pinRequest(t *testing.T, dir, from, to, csrOut string) string {
	t.Helper()
	_, rest, ok := strings.Cut(csrOut, "request SHA-256: ")
	if !ok {
		t.Fatalf("init-sub --csr-out printed no request fingerprint:\n%s", csrOut)
	}
	fp, _, _ := strings.Cut(rest, " ")
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, to)
	if err := os.WriteFile(p, append(b, []byte("request_sha256: \""+fp+"\"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// editCeremony writes a copy of the example ceremony file from as to, with
// each pair of edits applied (each must apply).
func editCeremony(t *testing.T, dir, from, to string, edits ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		n := strings.Replace(s, edits[i], edits[i+1], 1)
		if n == s {
			t.Fatalf("%s: %q not found", from, edits[i])
		}
		s = n
	}
	p := filepath.Join(dir, to)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCeremonyRefusesAnotherCAsKey: a ceremony never gives a new CA the key
// of a CA the data directory already has: a sub ceremony whose key.uri
// names another root's key (even in create-if-absent mode) is refused before
// any request is made, and a request whose key an earlier ceremony
// certified for another CA is not signed.
func TestCeremonyRefusesAnotherCAsKey(t *testing.T) {
	work := t.TempDir()
	copyCeremonies(t, work)
	at := func(n string) string { return filepath.Join(work, n) }
	rootDir, nodeDir := at("root"), at("node")
	sealedKeystore(t, rootDir)
	sealedKeystore(t, nodeDir)
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-ecdsa.yaml"), "--data", rootDir, "--out", at("root.pem"))...)
	rootB := editCeremony(t, work, "root-ecdsa.yaml", "root-b.yaml", "ca: gov-ecdsa-root", "ca: gov-ecdsa-root-b",
		"uri: soft:ca/gov-ecdsa-root", "uri: soft:ca/gov-ecdsa-root-b", "ECDSA 根 CA", "ECDSA 根 CA B")
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, rootB, "--data", rootDir, "--out", at("root-b.pem"))...)

	// The other root's key as the sub-CA's key.
	bad := editCeremony(t, work, "sub-ecdsa.yaml", "bad-sub.yaml", "uri: soft:ca/gov-ecdsa-sub\n  mode: create", "uri: soft:ca/gov-ecdsa-root-b\n  mode: create-if-absent")
	out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, bad, "--data", rootDir, "--csr-out", at("bad.csr"))...)
	// The roots are CAs of the data directory (init-root records them).
	if code == 0 || !strings.Contains(out, "is the key of CA gov-ecdsa-root-b") {
		t.Fatalf("init-sub with another root's key = %d\n%s", code, out)
	}
	if _, err := os.Stat(at("bad.csr")); err == nil {
		t.Fatal("a request was written")
	}

	// One key certified as two sub-CAs.
	out = mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, at("sub-ecdsa.yaml"), "--data", nodeDir, "--csr-out", at("sub.csr"))...)
	signFile := pinRequest(t, work, "sub-ecdsa.yaml", "sub-sign.yaml", out)
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, signFile, "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub.pem"))...)
	second := editCeremony(t, work, "sub-sign.yaml", "second-sub.yaml", "ca: gov-ecdsa-sub", "ca: gov-ecdsa-sub-2")
	out, code = govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, second, "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub2.pem"))...)
	if code == 0 || !strings.Contains(out, "made or certified for CA gov-ecdsa-sub") {
		t.Fatalf("signing one key as a second sub-CA = %d\n%s", code, out)
	}
	if _, err := os.Stat(at("sub2.pem")); err == nil {
		t.Fatal("a certificate was written")
	}
}

// TestCeremonyRefusesDeltaNameClash: a sub ceremony for a CA whose id is
// another CA's with "-delta" appended (here a built-in CA's, whose delta CRL
// is at /pki/ecdsa-issuing-delta.crl) is refused before a key or a request
// is made.
func TestCeremonyRefusesDeltaNameClash(t *testing.T) {
	work := t.TempDir()
	copyCeremonies(t, work)
	at := func(n string) string { return filepath.Join(work, n) }
	bad := editCeremony(t, work, "sub-ecdsa.yaml", "delta-sub.yaml", "ca: gov-ecdsa-sub", "ca: ecdsa-issuing-delta")
	sealedKeystore(t, at("node"))
	out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, bad, "--data", at("node"), "--csr-out", at("delta.csr"))...)
	if code == 0 || !strings.Contains(out, "CA ecdsa-issuing exists") {
		t.Fatalf("init-sub for ecdsa-issuing-delta = %d\n%s", code, out)
	}
	if _, err := os.Stat(at("delta.csr")); err == nil {
		t.Fatal("a request was written")
	}
	if n := countAudit(t, at("node"), "hsm.key.create", ""); n != 0 {
		t.Fatalf("%d keys made", n)
	}
}

// TestCeremonyBoundToReviewedFile: a ceremony runs only the file whose SM3
// hash the reviewers signed off (--sm3, checked before any key is made),
// and only on the files it pins: the request it signs (request_sha256), the
// root it cross-certifies (subject_certificate_sha256) and, when given, the
// issuer's certificate (issuer.certificate_sha256).
func TestCeremonyBoundToReviewedFile(t *testing.T) {
	work := t.TempDir()
	copyCeremonies(t, work)
	at := func(n string) string { return filepath.Join(work, n) }
	rootDir, nodeDir, bDir := at("root"), at("node"), at("root-b")
	sealedKeystore(t, nodeDir)
	sealedKeystore(t, bDir)
	// Root A allows a cross-certified root and its issuing CAs below it.
	rootA := editCeremony(t, work, "root-ecdsa.yaml", "root-a.yaml", "path_length: 1", "path_length: 2")

	if out, code := govtrust(t, "ca", "init-root", "--ceremony", rootA, "--data", rootDir, "--out", at("root.pem")); code == 0 || !strings.Contains(out, "sm3") {
		t.Fatalf("init-root without --sm3 = %d\n%s", code, out)
	}
	reviewed := sm3File(t, rootA)
	editCeremony(t, work, "root-a.yaml", "root-a.yaml", "days: 7300", "days: 7301") // changed after the review
	if out, code := govtrust(t, "ca", "init-root", "--ceremony", rootA, "--sm3", reviewed, "--data", rootDir, "--out", at("root.pem")); code == 0 || !strings.Contains(out, "not the reviewed") {
		t.Fatalf("init-root of a file changed after its review = %d\n%s", code, out)
	}
	if _, err := os.Stat(rootDir); err == nil {
		t.Fatal("the data directory was opened for a file that is not the reviewed one")
	}
	sealedKeystore(t, rootDir)
	// Reviewed again: the key was never made, so key.mode create succeeds.
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, rootA, "--data", rootDir, "--out", at("root.pem"))...)

	// The request step, then signing: not without the request's pin, not
	// another request.
	out := mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, at("sub-ecdsa.yaml"), "--data", nodeDir, "--csr-out", at("sub.csr"))...)
	if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, at("sub-ecdsa.yaml"), "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub.pem"))...); code == 0 || !strings.Contains(out, "no request_sha256") {
		t.Fatalf("signing without request_sha256 = %d\n%s", code, out)
	}
	signFile := pinRequest(t, work, "sub-ecdsa.yaml", "sub-sign.yaml", out)
	runOpenSSL(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", at("other.key"),
		"-utf8", "-subj", "/C=CN/O=某某市人民政府/OU=电子政务中心/CN=某某市政务 ECDSA 签发 CA", "-out", at("other.csr"))
	if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, signFile, "--data", rootDir, "--sign", at("other.csr"), "--out", at("sub.pem"))...); code == 0 || !strings.Contains(out, "not the reviewed") {
		t.Fatalf("signing another request = %d\n%s", code, out)
	}
	// A wrong issuer pin.
	wrongIssuer := editCeremony(t, work, "sub-sign.yaml", "sub-wrong-issuer.yaml", "  # certificate_sha256: \"...\"", "  certificate_sha256: \""+strings.Repeat("AB:", 31)+"AB\"")
	if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, wrongIssuer, "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub.pem"))...); code == 0 || !strings.Contains(out, "issuer.certificate_sha256") {
		t.Fatalf("signing under an issuer certificate that is not the pinned one = %d\n%s", code, out)
	}
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, signFile, "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub.pem"))...)

	// Cross-certify root B (made on another machine): only the pinned one.
	rootB := editCeremony(t, work, "root-ecdsa.yaml", "root-b.yaml", "ca: gov-ecdsa-root", "ca: gov-ecdsa-root-b",
		"uri: soft:ca/gov-ecdsa-root", "uri: soft:ca/gov-ecdsa-root-b", "ECDSA 根 CA", "ECDSA 根 CA B")
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, rootB, "--data", bDir, "--out", at("root-b.pem"))...)
	if out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "cross-sign"}, at("cross-ecdsa.yaml"), "--data", rootDir, "--out", at("b-by-a.pem"))...); code == 0 || !strings.Contains(out, "not the reviewed") {
		t.Fatalf("cross-sign of a root that is not the pinned one = %d\n%s", code, out)
	}
	fp := runOpenSSL(t, "x509", "-in", at("root-b.pem"), "-noout", "-fingerprint", "-sha256")
	b, err := os.ReadFile(at("cross-ecdsa.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`subject_certificate_sha256: "[0-9A-F:]+"`).ReplaceAllString(string(b), `subject_certificate_sha256: "`+strings.TrimSpace(fp[strings.Index(fp, "=")+1:])+`"`)
	if err := os.WriteFile(at("cross.yaml"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	mustGovtrust(t, ceremonyArgs(t, []string{"ca", "cross-sign"}, at("cross.yaml"), "--data", rootDir, "--out", at("b-by-a.pem"))...)
	if got := runOpenSSL(t, "verify", "-CAfile", at("root.pem"), at("b-by-a.pem")); !strings.Contains(got, ": OK") {
		t.Fatalf("openssl verify cross-certificate: %s", got)
	}
}

// TestCeremonyBadSubjectNoKey: a subject the certificate lint would refuse
// stops the root ceremony when the file is read, before the data directory
// is opened or a key made.
func TestCeremonyBadSubjectNoKey(t *testing.T) {
	work := t.TempDir()
	copyCeremonies(t, work)
	bad := editCeremony(t, work, "root-sm2.yaml", "bad-root.yaml", "C: CN", `C: "@@"`)
	out, code := govtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, bad, "--data", filepath.Join(work, "root"), "--out", filepath.Join(work, "root.pem"))...)
	if code == 0 || !strings.Contains(out, "subject.C") {
		t.Fatalf("init-root with C=@@ = %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(work, "root")); err == nil {
		t.Fatal("the data directory was opened")
	}
}

// TestCeremonyKeyOnToken: a ceremony whose CA key is on a token (a pkcs11:
// key URI, SoftHSM2 here) runs on a data directory whose software keystore
// is in dev mode: the dev master key protects no CA key there.
func TestCeremonyKeyOnToken(t *testing.T) {
	module := testenv.File(t, "/usr/lib/softhsm/libsofthsm2.so", "SoftHSM2")
	util := testenv.LookPath(t, "softhsm2-util")
	tokdir := t.TempDir()
	conf := filepath.Join(tokdir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokdir+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	t.Setenv("GT_TEST_PIN", "4321")
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "ca", "--so-pin", "12345678", "--pin", "4321").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	work := t.TempDir()
	copyCeremonies(t, work)
	at := func(n string) string { return filepath.Join(work, n) }
	rootDir := at("root")
	writeConfig(t, rootDir, "hsm:\n  pkcs11:\n    - token: ca\n      module: "+module+"\n      pin: env:GT_TEST_PIN\n")
	onToken := editCeremony(t, work, "root-ecdsa.yaml", "root-token.yaml", "uri: soft:ca/gov-ecdsa-root", "uri: pkcs11:token=ca;object=gov-ecdsa-root")
	out := mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, onToken, "--data", rootDir, "--out", at("root.pem"))...)
	if !strings.Contains(out, "SHA-256 fingerprint: ") {
		t.Fatalf("init-root with the key on a token:\n%s", out)
	}
	if n := sqliteCount(t, rootDir, "SELECT COUNT(*) FROM hsm_soft_keys"); n != 0 {
		t.Fatalf("%d keys in the software keystore", n)
	}
}

// TestOfflineRootARL is the revocation of a sub-CA under an offline root,
// end to end with the real binary, for both algorithms: the root's data
// directory records the root and the sub-CA certificate it signs; the
// sub-CA is imported into a node and issues; a CRL ceremony on the root's
// machine revokes it and signs the root's CRL; the node imports that CRL
// while running, serves it at the root's CRL URL (/pki/{root}.crl, with the
// root's certificate at /pki/{root}.crt), and the revoked sub-CA issues no
// more. The CRL verifies with OpenSSL (ECDSA) and the platform verifier
// (SM2); a later CRL ceremony without revocations still lists the sub-CA
// under a higher number, and the node refuses an older CRL, a CRL changed
// after signing, and a CRL of a root it does not know.
func TestOfflineRootARL(t *testing.T) {
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			work := t.TempDir()
			copyCeremonies(t, work)
			at := func(n string) string { return filepath.Join(work, n) }
			rootDir, nodeDir := at("root"), at("node")
			sealedKeystore(t, rootDir)
			sealedKeystore(t, nodeDir)
			root, sub := "gov-"+alg+"-root", "gov-"+alg+"-sub"

			mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, at("root-"+alg+".yaml"), "--data", rootDir, "--out", at("root.pem"))...)
			out := mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, at("sub-"+alg+".yaml"), "--data", nodeDir, "--csr-out", at("sub.csr"))...)
			signFile := pinRequest(t, work, "sub-"+alg+".yaml", "sub-sign.yaml", out)
			out = mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-sub"}, signFile, "--data", rootDir, "--sign", at("sub.csr"), "--out", at("sub.pem"))...)
			// (a) The root's data directory has the root and what it signed.
			if !strings.Contains(out, "recorded in ca_certificates under "+root) {
				t.Fatalf("the sub-CA certificate was not recorded under the root:\n%s", out)
			}
			if list := mustGovtrust(t, "ca", "list", "--data", rootDir); !strings.Contains(list, root) {
				t.Fatalf("ca list on the root's data directory:\n%s", list)
			}
			serial := strings.TrimPrefix(strings.TrimSpace(runOpenSSL(t, "x509", "-in", at("sub.pem"), "-noout", "-serial")), "serial=")
			serial = strings.ToLower(serial) // as the platform writes serials: hex of the content octets
			if show := mustGovtrust(t, "ca", "show", root, serial, "--data", rootDir); !strings.Contains(show, "good") {
				t.Fatalf("ca show of the sub-CA certificate on the root's data directory:\n%s", show)
			}
			mustGovtrust(t, ceremonyArgs(t, []string{"ca", "import", "--cert", at("sub.pem"), "--chain", at("root.pem")}, signFile, "--data", nodeDir)...)

			p := up(t, nodeDir)
			defer p.stop(t)
			if code, _ := httpFetch(t, "http://"+p.addrs["http"]+"/pki/"+root+".crl"); code != http.StatusNotFound {
				t.Fatalf("the root's CRL before any import: %d", code)
			}
			if code := issueFromSub(t, p, nodeDir, sub, alg, at); code != http.StatusCreated {
				t.Fatalf("issue from %s before its revocation: %d", sub, code)
			}

			// (b) The CRL ceremony on the root's machine.
			crlFile := pinCRLRevocation(t, work, "crl-"+alg+".yaml", "crl.yaml", at("sub.pem"))
			out = mustGovtrust(t, ceremonyArgs(t, []string{"ca", "sign-crl"}, crlFile, "--data", rootDir, "--out", at("root-1.crl"))...)
			if !strings.Contains(out, "revoked "+root+"/"+serial) {
				t.Fatalf("sign-crl printed\n%s", out)
			}
			checkRootCRL(t, alg, root, at("root-1.crl"), at("root.pem"), serial)
			if show := mustGovtrust(t, "ca", "show", root, serial, "--data", rootDir); !strings.Contains(show, "cACompromise") {
				t.Fatalf("the revocation is not recorded on the root's data directory:\n%s", show)
			}

			// (c) The node imports it while running and serves it.
			out = mustGovtrust(t, "ca", "import-crl", "--crl", at("root-1.crl"), "--data", nodeDir)
			if !strings.Contains(out, "served at /pki/"+root+".crl") || !strings.Contains(out, "CA "+sub+" of this node is revoked") {
				t.Fatalf("import-crl printed\n%s", out)
			}
			code, served := httpFetch(t, "http://"+p.addrs["http"]+"/pki/"+root+".crl")
			if code != http.StatusOK {
				t.Fatalf("GET /pki/%s.crl: %d", root, code)
			}
			if err := os.WriteFile(at("served.crl"), served, 0o600); err != nil {
				t.Fatal(err)
			}
			checkRootCRL(t, alg, root, at("served.crl"), at("root.pem"), serial)
			code, crt := httpFetch(t, "http://"+p.addrs["http"]+"/pki/"+root+".crt")
			rootPEM, _ := os.ReadFile(at("root.pem"))
			if blk, _ := pem.Decode(rootPEM); code != http.StatusOK || blk == nil || !bytes.Equal(crt, blk.Bytes) {
				t.Fatalf("GET /pki/%s.crt: %d, not the root's certificate", root, code)
			}
			// The revoked sub-CA issues no more (the registry poll, 5 s).
			deadline := time.Now().Add(15 * time.Second)
			for code := issueFromSub(t, p, nodeDir, sub, alg, at); code != http.StatusUnprocessableEntity; code = issueFromSub(t, p, nodeDir, sub, alg, at) {
				if time.Now().After(deadline) {
					t.Fatalf("issue from the revoked %s: %d", sub, code)
				}
				time.Sleep(500 * time.Millisecond)
			}

			// The next CRL ceremony, with no revocation: a higher number,
			// the sub-CA still listed.
			renew := editCeremony(t, work, "crl.yaml", "crl-renew.yaml", "revoke:", "revoke: []\nold_revoke:")
			renew = stripAfter(t, renew, "old_revoke:")
			mustGovtrust(t, ceremonyArgs(t, []string{"ca", "sign-crl"}, renew, "--data", rootDir, "--out", at("root-2.crl"))...)
			n1, n2 := checkRootCRL(t, alg, root, at("root-1.crl"), at("root.pem"), serial), checkRootCRL(t, alg, root, at("root-2.crl"), at("root.pem"), serial)
			if n2.Cmp(n1) <= 0 {
				t.Fatalf("CRL numbers %v then %v", n1, n2)
			}
			mustGovtrust(t, "ca", "import-crl", "--crl", at("root-2.crl"), "--data", nodeDir)
			if _, served := httpFetch(t, "http://"+p.addrs["http"]+"/pki/"+root+".crl"); !bytes.Equal(served, mustRead(t, at("root-2.crl"))) {
				t.Fatal("the node does not serve the newer CRL")
			}
			// The older CRL again: refused; the newer again: nothing changes.
			if out, code := govtrust(t, "ca", "import-crl", "--crl", at("root-1.crl"), "--data", nodeDir); code == 0 || !strings.Contains(out, "not above") {
				t.Fatalf("import of an older CRL = %d\n%s", code, out)
			}
			if out := mustGovtrust(t, "ca", "import-crl", "--crl", at("root-2.crl"), "--data", nodeDir); !strings.Contains(out, "already imported") {
				t.Fatalf("import of the same CRL again:\n%s", out)
			}
			// A CRL changed after signing.
			bad := mustRead(t, at("root-2.crl"))
			bad[len(bad)-3] ^= 1
			if err := os.WriteFile(at("bad.crl"), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, code := govtrust(t, "ca", "import-crl", "--crl", at("bad.crl"), "--data", nodeDir); code == 0 || !strings.Contains(out, "does not verify") {
				t.Fatalf("import of a changed CRL = %d\n%s", code, out)
			}
			// The CRL of a root the node does not know (no CA imported under
			// it).
			otherDir := at("other")
			sealedKeystore(t, otherDir)
			other := editCeremony(t, work, "root-"+alg+".yaml", "other-root.yaml", "ca: "+root, "ca: other-root", "uri: soft:ca/"+root, "uri: soft:ca/other-root")
			mustGovtrust(t, ceremonyArgs(t, []string{"ca", "init-root"}, other, "--data", otherDir, "--out", at("other.pem"))...)
			otherCRL := editCeremony(t, work, "crl-renew.yaml", "other-crl.yaml", "ca: "+root, "ca: other-root", "key_uri: soft:ca/"+root, "key_uri: soft:ca/other-root",
				"certificate: root.pem", "certificate: other.pem", "/pki/"+root+".crl", "/pki/other-root.crl")
			mustGovtrust(t, ceremonyArgs(t, []string{"ca", "sign-crl"}, otherCRL, "--data", otherDir, "--out", at("other.crl"))...)
			if out, code := govtrust(t, "ca", "import-crl", "--crl", at("other.crl"), "--data", nodeDir); code == 0 || !strings.Contains(out, "any offline CA this node knows") {
				t.Fatalf("import of an unknown root's CRL = %d\n%s", code, out)
			}
			for _, c := range []struct{ dir, action string }{{rootDir, "ca.ceremony.crl"}, {nodeDir, "ca.crl.import"}} {
				if n := countAudit(t, c.dir, c.action, ""); n != 2 {
					t.Errorf("%s: %d %s records, want 2", c.dir, n, c.action)
				}
			}
		})
	}
}

// pinCRLRevocation writes a copy of the example CRL ceremony file from as
// to, revoking cert (its fingerprint as OpenSSL computes it).
func pinCRLRevocation(t *testing.T, dir, from, to, cert string) string {
	t.Helper()
	fp := runOpenSSL(t, "x509", "-in", cert, "-noout", "-fingerprint", "-sha256")
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`certificate_sha256: "[0-9A-F:]+"`).ReplaceAllString(string(b), `certificate_sha256: "`+strings.TrimSpace(fp[strings.Index(fp, "=")+1:])+`"`)
	p := filepath.Join(dir, to)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// stripAfter cuts the file at path from the line starting with marker on.
func stripAfter(t *testing.T, path, marker string) string {
	t.Helper()
	b := mustRead(t, path)
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		t.Fatalf("%s: no %q", path, marker)
	}
	if err := os.WriteFile(path, b[:i], 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// httpFetch GETs u and returns the status and body.
func httpFetch(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// checkRootCRL checks the CRL (DER) at path: signed by the root in
// rootPEM (OpenSSL for ECDSA, the platform verifier for SM2), its
// issuingDistributionPoint the CRL URL of root (as the sub ceremony wrote
// it into the sub-CA certificate, without onlyContainsCACerts, as the
// online roots' CRLs), the sub-CA serial listed
// with reason cACompromise, nextUpdate 180 days after thisUpdate; it
// returns the CRL number.
func checkRootCRL(t *testing.T, alg, root, path, rootPEM, serial string) *big.Int {
	t.Helper()
	der := mustRead(t, path)
	rootCert, err := readCerts(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	if alg == "ecdsa" {
		if got := runOpenSSL(t, "crl", "-inform", "DER", "-in", path, "-CAfile", rootPEM, "-noout", "-verify"); !strings.Contains(got, "verify OK") {
			t.Fatalf("openssl crl -verify: %s", got)
		}
	}
	rl, err := crl.Verify(der, rootCert[0])
	if err != nil {
		t.Fatalf("platform verifier: %v", err)
	}
	if err := crl.LintOffline(rl, rootCert[0]); err != nil {
		t.Fatal(err)
	}
	sc, err := crl.ParseScope(rl)
	if err != nil || sc.IDP == nil || !slices.Equal(sc.IDP.FullName, []string{"http://pki.example.gov.cn/pki/" + root + ".crl"}) || sc.IDP.OnlyCA || sc.DeltaBase != nil {
		t.Fatalf("scope %+v %v", sc, err)
	}
	if got := rl.NextUpdate.Sub(rl.ThisUpdate); got != 180*24*time.Hour {
		t.Errorf("nextUpdate - thisUpdate = %v", got)
	}
	if !bytes.Equal(rl.AuthorityKeyId, rootCert[0].SubjectKeyId) {
		t.Error("AKI is not the root's SKI")
	}
	for _, e := range rl.RevokedCertificateEntries {
		if fmt.Sprintf("%x", e.SerialNumber.Bytes()) == serial {
			if e.ReasonCode != crl.ReasonCACompromise {
				t.Errorf("reason %d", e.ReasonCode)
			}
			return rl.Number
		}
	}
	t.Fatalf("%s: serial %s not listed", path, serial)
	return nil
}

// issueFromSub asks the node p for a certificate from CA sub and returns
// the HTTP status.
func issueFromSub(t *testing.T, p *proc, nodeDir, sub, alg string, at func(string) string) int {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(nodeDir, "bootstrap", "ra.token"))
	if err != nil {
		t.Fatal(err)
	}
	key, csrPath := at("leaf.key"), at("leaf.csr")
	os.Remove(key)
	var req map[string]any
	if alg == "sm2" {
		runOpenSSL(t, "genpkey", "-algorithm", "SM2", "-out", key)
		runOpenSSL(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-utf8", "-subj", "/CN=张三/O=测试局", "-out", csrPath)
		req = map[string]any{"profile": "person-sign", "record": map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}}
	} else {
		runOpenSSL(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
			"-subj", "/CN=portal.example.gov.cn", "-addext", "subjectAltName=DNS:portal.example.gov.cn", "-out", csrPath)
		req = map[string]any{"profile": "server-tls"}
	}
	req["csr"] = string(mustRead(t, csrPath))
	body, _ := json.Marshal(req)
	hreq, _ := http.NewRequest("POST", "https://"+p.addrs["https"]+"/api/v1/ca/"+sub+"/certificates", bytes.NewReader(body))
	hreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	hreq.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
