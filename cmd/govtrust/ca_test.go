package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony/ceremonytest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// stdoutOf runs the binary and returns its standard output only.
func stdoutOf(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(out)
}

// addOperator creates a CA operator account offline and writes its token to
// a file, as a security administrator would in a ceremony.
func addOperator(t *testing.T, dir, name string) string {
	t.Helper()
	if out, code := govtrust(t, "account", "create", "--data", dir, "--name", name, "--org", "platform",
		"--clearance", "confidential", "--role", "ca-operator"); code != 0 {
		t.Fatalf("account create %s = %d\n%s", name, code, out)
	}
	tok := strings.TrimSpace(stdoutOf(t, "token", "create", "--data", dir, "--account", name, "--name", "test"))
	path := filepath.Join(t.TempDir(), name+".token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// recordSubCA records the certificate of the node's ecdsa-issuing CA, which
// ecdsa-root signed, among ecdsa-root's issued certificates (as the CA does
// for the CAs it certifies), in the stopped node's database. It returns the
// serial.
func recordSubCA(t *testing.T, dir string) string {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "govtrust.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var der []byte
	if err := db.QueryRow("SELECT cert FROM ca_authorities WHERE id = 'ecdsa-issuing'").Scan(&der); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || !cert.IsCA {
		t.Fatalf("ecdsa-issuing certificate: %v", err)
	}
	serial := fmt.Sprintf("%x", cert.SerialNumber.Bytes())
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	if _, err := db.Exec(`INSERT INTO ca_certificates (issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org, created_at)
		VALUES ('ecdsa-root', ?, ?, 'sub-ca', ?, ?, ?, 'good', 'system', '', ?) ON CONFLICT (issuer_id, serial) DO NOTHING`,
		serial, cert.Subject.String(), f(cert.NotBefore), f(cert.NotAfter), der, f(time.Now())); err != nil {
		t.Fatal(err)
	}
	return serial
}

var serialLine = regexp.MustCompile(`serial ([0-9a-f]+)`)

// TestCACommands runs `govtrust ca` against a running node: list, profiles,
// issue (B-03: the same Idempotency-Key five times across a restart gives one
// certificate), show, revoke, crl, the dual-controlled revocation of a CA
// certificate by two CA operators, problem errors, and the offline
// read-only mode on the stopped node's data directory.
func TestCACommands(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	dir := filepath.Join(t.TempDir(), "data")
	up(t, dir).stop(t)
	op1, op2 := addOperator(t, dir, "op1"), addOperator(t, dir, "op2")
	caSerial := recordSubCA(t, dir)

	p := up(t, dir)
	api := func(tokenFile string, args ...string) []string {
		return append(args, "--url", "https://"+p.addrs["https"], "--cacert", filepath.Join(dir, "bootstrap", "tls-chain.pem"), "--token-file", tokenFile)
	}
	ra := filepath.Join(dir, "bootstrap", "ra.token")
	run := func(want int, args ...string) string {
		t.Helper()
		out, code := govtrust(t, args...)
		if code != want {
			t.Fatalf("govtrust %s = %d, want %d\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}

	out := run(0, api(ra, "ca", "list")...)
	for _, id := range []string{"sm2-root", "sm2-issuing", "ecdsa-root", "ecdsa-issuing"} {
		if !strings.Contains(out, id) {
			t.Errorf("ca list lacks %s:\n%s", id, out)
		}
	}
	out = run(0, api(ra, "ca", "profiles")...)
	if !strings.Contains(out, "server-tls") || !strings.Contains(out, "yes (path 0)") {
		t.Errorf("ca profiles:\n%s", out)
	}

	// A cross-certificate from another root, published by a CA operator.
	rootDER := httpGet(t, "http://"+p.addrs["http"]+"/pki/ecdsa-root.crt")
	root, err := smx509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	other, otherKey := ceremonytest.ExternalRoot(t, "Other Root CA")
	crossDir := t.TempDir()
	crossFile, otherFile := filepath.Join(crossDir, "cross.pem"), filepath.Join(crossDir, "other.pem")
	for f, der := range map[string][]byte{crossFile: ceremonytest.CrossSign(t, root, other, otherKey), otherFile: other.Raw} {
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	crossArgs := []string{"ca", "cross", "ecdsa-root", "--cert", crossFile, "--issuer", otherFile}
	if out := run(1, api(ra, crossArgs...)...); !strings.Contains(out, "403") {
		t.Errorf("cross as the RA:\n%s", out)
	}
	if out := run(0, api(op1, crossArgs...)...); !strings.HasPrefix(out, "published cross-certificate of ecdsa-root") || !strings.Contains(out, "/pki/ecdsa-root-cross.p7c") {
		t.Errorf("cross:\n%s", out)
	}
	if out := run(0, api(op1, crossArgs...)...); !strings.HasPrefix(out, "already published") {
		t.Errorf("cross again:\n%s", out)
	}
	if out := run(1, api(op1, "ca", "cross", "ecdsa-issuing", "--cert", crossFile, "--issuer", otherFile)...); !strings.Contains(out, "422") || !strings.Contains(out, "subject") {
		t.Errorf("cross for the wrong CA:\n%s", out)
	}

	// B-03: one certificate for five tries with one key, across a restart.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "portal.example.gov.cn"},
		DNSNames: []string{"portal.example.gov.cn"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	csr := filepath.Join(work, "csr.pem")
	if err := os.WriteFile(csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(work, "cert.pem")
	serials := map[string]int{}
	issue := func() {
		t.Helper()
		out := run(0, api(ra, "ca", "issue", "ecdsa-issuing", "--csr", csr, "--profile", "server-tls", "--idempotency-key", "b03-key", "--out", certFile)...)
		m := serialLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no serial printed:\n%s", out)
		}
		serials[m[1]]++
	}
	for i := 0; i < 3; i++ {
		issue()
	}
	p.stop(t)
	p = up(t, dir)
	for i := 0; i < 2; i++ {
		issue()
	}
	if len(serials) != 1 {
		t.Fatalf("B-03: five tries printed serials %v, want one", serials)
	}
	var serial string
	for s := range serials {
		serial = s
	}
	bundle, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(bundle), "BEGIN CERTIFICATE"); n != 3 {
		t.Fatalf("--out holds %d certificates, want leaf, issuing CA, root", n)
	}
	leaf, _ := pem.Decode(bundle)
	if c, err := x509.ParseCertificate(leaf.Bytes); err != nil || fmt.Sprintf("%x", c.SerialNumber.Bytes()) != serial {
		t.Fatalf("--out leaf: %v", err)
	}
	if out, err := exec.Command(openssl, "verify", "-CAfile", certFile, certFile).CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}

	out = run(0, api(ra, "ca", "show", "ecdsa-issuing", serial)...)
	if !regexp.MustCompile(`status:\s+good`).MatchString(out) || !strings.Contains(out, "server-tls") {
		t.Errorf("ca show:\n%s", out)
	}

	t.Run("problems", func(t *testing.T) {
		out := run(1, api(ra, "ca", "revoke", "ecdsa-issuing", "--serial", serial, "--reason", "certificateHold")...)
		for _, want := range []string{"400 Bad Request", "certificateHold", "request_id"} {
			if !strings.Contains(out, want) {
				t.Errorf("bad reason: output lacks %q:\n%s", want, out)
			}
		}
		out = run(1, api(ra, "ca", "crl", "ecdsa-issuing", "--generate")...)
		if !strings.Contains(out, "POST /api/v1/ca/ecdsa-issuing/crls: 403 Forbidden") {
			t.Errorf("RA generating a CRL:\n%s", out)
		}
		bad := filepath.Join(t.TempDir(), "bad.token")
		if err := os.WriteFile(bad, []byte("gt_not-a-token"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := run(1, api(bad, "ca", "list")...); !strings.Contains(out, "401 Unauthorized") {
			t.Errorf("bad token:\n%s", out)
		}
		if out := run(1, "ca", "list", "--url", "https://"+p.addrs["https"]); !strings.Contains(out, "no API token") {
			t.Errorf("no token:\n%s", out)
		}
		if out := run(1, "ca", "list", "--url", "https://"+p.addrs["https"], "--token-file", ra); !strings.Contains(out, "certificate") {
			t.Errorf("untrusted server certificate accepted:\n%s", out)
		}
		if out := run(1, "ca", "list", "--url", "http://192.0.2.1:8443", "--token-file", ra); !strings.Contains(out, "plain http") {
			t.Errorf("token over plain http to another host:\n%s", out)
		}
	})

	out = run(0, api(ra, "ca", "revoke", "ecdsa-issuing", "--serial", serial, "--reason", "keyCompromise")...)
	if !strings.Contains(out, "revoked ecdsa-issuing/"+serial) {
		t.Fatalf("revoke:\n%s", out)
	}
	crlFile := filepath.Join(work, "crl.der")
	out = run(0, api(op1, "ca", "crl", "ecdsa-issuing", "--generate", "--public-url", "http://"+p.addrs["http"], "--out", crlFile)...)
	if !strings.Contains(out, "generated CRL") || !strings.Contains(out, "signature OK") || !regexp.MustCompile(serial+`\s+\S+\s+keyCompromise`).MatchString(out) {
		t.Errorf("crl --generate:\n%s", out)
	}
	text, err := exec.Command(openssl, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(text), strings.ToUpper(serial)) || !strings.Contains(string(text), "Key Compromise") {
		t.Errorf("openssl crl: %v\n%s", err, text)
	}

	t.Run("CA certificate under dual control", func(t *testing.T) {
		revoke := func(tok string, want int, extra ...string) string {
			t.Helper()
			return run(want, api(tok, append([]string{"ca", "revoke", "ecdsa-root", "--serial", caSerial, "--reason", "cACompromise"}, extra...)...)...)
		}
		if out := revoke(ra, 1); !strings.Contains(out, "403 Forbidden") {
			t.Fatalf("RA:\n%s", out)
		}
		var pending struct {
			Approval, Status string
		}
		if err := json.Unmarshal([]byte(revoke(op1, 0, "--json")), &pending); err != nil || pending.Status != "pending" || pending.Approval == "" {
			t.Fatalf("first operator: %+v %v", pending, err)
		}
		if out := revoke(op1, 0); !strings.Contains(out, "waits for a second CA operator") || !strings.Contains(out, "--approval "+pending.Approval) {
			t.Errorf("first operator, human output:\n%s", out)
		}
		if out := revoke(op1, 1, "--approval", pending.Approval); !strings.Contains(out, "403 Forbidden") || !strings.Contains(out, "lacks the required approvals") {
			t.Errorf("first operator alone executes:\n%s", out)
		}
		if out := run(0, api(op1, "ca", "show", "ecdsa-root", caSerial)...); !regexp.MustCompile(`status:\s+good`).MatchString(out) {
			t.Fatalf("revoked by one operator:\n%s", out)
		}
		if out := revoke(op2, 0, "--approval", pending.Approval); !strings.Contains(out, "revoked ecdsa-root/"+caSerial) || !strings.Contains(out, "under approval "+pending.Approval) {
			t.Fatalf("second operator:\n%s", out)
		}
		var rep crlReport
		if err := json.Unmarshal([]byte(run(0, "ca", "crl", "ecdsa-root", "--public-url", "http://"+p.addrs["http"], "--json")), &rep); err != nil || !rep.SignatureOK {
			t.Fatalf("ARL: %+v %v", rep, err)
		}
		if len(rep.Revoked) != 1 || rep.Revoked[0].Serial != caSerial || rep.Revoked[0].Reason != "cACompromise" {
			t.Errorf("ARL entries %+v", rep.Revoked)
		}
	})
	p.stop(t)

	t.Run("offline", func(t *testing.T) {
		if out := run(0, "ca", "list", "--data", dir); strings.Count(out, "active") != 4 {
			t.Errorf("offline list:\n%s", out)
		}
		out := run(0, "ca", "show", "--data", dir, "ecdsa-issuing", serial)
		if !regexp.MustCompile(`status:\s+revoked`).MatchString(out) || !strings.Contains(out, "keyCompromise") {
			t.Errorf("offline show:\n%s", out)
		}
		out = run(0, "ca", "crl", "--data", dir, "ecdsa-root")
		if !strings.Contains(out, "signature OK") || !regexp.MustCompile(caSerial+`\s+\S+\s+cACompromise`).MatchString(out) {
			t.Errorf("offline crl:\n%s", out)
		}
		if out := run(1, "ca", "crl", "--data", dir, "ecdsa-root", "--generate"); !strings.Contains(out, "needs the API") {
			t.Errorf("offline generate:\n%s", out)
		}
	})

	db, err := sql.Open("sqlite", filepath.Join(dir, "govtrust.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM ca_certificates WHERE idempotency_key = 'b03-key'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("B-03: %d certificates stored for the key (%v), want 1", n, err)
	}
}

// TestCAShowAfterRollover: after a rollover of ecdsa-issuing, `govtrust ca
// show ecdsa-issuing SERIAL` finds a certificate the new generation issued,
// online and offline alike (the lineage's generations are searched, as the
// API does), and both print the generation that signed it, not the id
// given.
func TestCAShowAfterRollover(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	up(t, dir).stop(t)
	op := addOperator(t, dir, "op")
	p := up(t, dir)
	base := "https://" + p.addrs["https"]
	opTok, err := os.ReadFile(op)
	if err != nil {
		t.Fatal(err)
	}
	opc := newAPIClient(t, strings.TrimSpace(string(opTok)), dir)
	if st, body, err := opc.post(base+"/api/v1/ca/ecdsa-issuing/rollover", []byte(`{}`), nil); err != nil || st != 201 {
		t.Fatalf("rollover: %d %v %s", st, err, body)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body, err := issueBody(key, "portal.example.gov.cn")
	if err != nil {
		t.Fatal(err)
	}
	ra := newAPIClient(t, readToken(t, dir, "ra"), dir)
	st, raw, err := ra.post(base+"/api/v1/ca/ecdsa-issuing/certificates", body, nil)
	if err != nil || st != 201 && st != 200 {
		t.Fatalf("issue: %d %v %s", st, err, raw)
	}
	var issued struct{ Serial, CA string }
	if err := json.Unmarshal(raw, &issued); err != nil || issued.CA != "ecdsa-issuing-g2" {
		t.Fatalf("issued %+v (%v), want by ecdsa-issuing-g2", issued, err)
	}
	signedBy := regexp.MustCompile(`(?m)^ca:\s+ecdsa-issuing-g2$`)
	for _, args := range [][]string{
		{"ca", "show", "ecdsa-issuing", issued.Serial, "--url", base, "--cacert", filepath.Join(dir, "bootstrap", "tls-chain.pem"),
			"--token-file", filepath.Join(dir, "bootstrap", "ra.token")},
		nil, // offline, once the node has stopped
	} {
		mode := "online"
		if args == nil {
			p.stop(t)
			mode, args = "offline", []string{"ca", "show", "--data", dir, "ecdsa-issuing", issued.Serial}
		}
		out, code := govtrust(t, args...)
		if code != 0 || !signedBy.MatchString(out) || !regexp.MustCompile(`status:\s+good`).MatchString(out) {
			t.Errorf("%s ca show ecdsa-issuing %s = %d, want ca: ecdsa-issuing-g2:\n%s", mode, issued.Serial, code, out)
		}
	}
	// The generation's own id finds it too; another lineage's does not.
	if out, code := govtrust(t, "ca", "show", "--data", dir, "ecdsa-issuing-g2", issued.Serial); code != 0 || !signedBy.MatchString(out) {
		t.Errorf("offline ca show ecdsa-issuing-g2 = %d:\n%s", code, out)
	}
	if out, code := govtrust(t, "ca", "show", "--data", dir, "sm2-issuing", issued.Serial); code == 0 || !strings.Contains(out, "not found") {
		t.Errorf("offline ca show sm2-issuing = %d, want not found:\n%s", code, out)
	}
}
