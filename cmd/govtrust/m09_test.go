package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/testenv"
)

// TestM09BackupRestoreDrill is ACCEPTANCE.md M-09 on SQLite, with the
// checks RELIABILITY.md §1.9 names for a restore drill (I1 no serial reuse,
// I5 CRL numbers strictly increase):
//
//  1. A node issues and revokes; `govtrust backup` runs while clients go on
//     issuing; after it the node issues and revokes more and publishes CRLs.
//  2. The node and its data directory are given up; `govtrust restore` puts
//     the backup in a fresh data directory and the node starts on it.
//  3. On the restored node: every certificate answered before the backup
//     began is there, byte for byte, with the status it had; none answered
//     after the backup ended is (OCSP says unknown, never good); the served
//     CRLs are numbered above every CRL published before the loss; new
//     certificates' serials are unlike every earlier one; the tokens of the
//     old node work; the audit chain and its checkpoints verify, and the
//     restore is in it.
//
// RPO is the time since the backup; the test reports the backup's duration
// and the RTO (restore plus start until the listeners are up).
func TestM09BackupRestoreDrill(t *testing.T) {
	opensslBin := testenv.LookPath(t, "openssl")
	dir := filepath.Join(t.TempDir(), "data")
	writeNodeConfig(t, dir, quietConfig)
	up(t, dir).stop(t)
	opToken, err := os.ReadFile(addOperator(t, dir, "m09-operator"))
	if err != nil {
		t.Fatal(err)
	}
	p := up(t, dir)
	raToken := readToken(t, dir, "ra")
	api := newAPIClient(t, raToken, dir)
	operator := newAPIClient(t, strings.TrimSpace(string(opToken)), dir)
	work := t.TempDir()
	cas := []string{"ecdsa-issuing", "sm2-issuing"}
	files := map[string]*caFiles{
		"ecdsa-issuing": fetchCA(t, p.addrs["http"], "ecdsa-issuing", "ecdsa-root", work),
		"sm2-issuing":   fetchCA(t, p.addrs["http"], "sm2-issuing", "sm2-root", work),
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	type issued struct {
		ca, serial string
		der        []byte
		revoked    string // reason, when revoked before the backup
	}
	var seq atomic.Int64
	issueWith := func(caID string, key crypto.Signer) (*issued, error) {
		body, err := issueBody(key, fmt.Sprintf("h%d.m09.example.gov.cn", seq.Add(1)))
		if err != nil {
			return nil, err
		}
		status, raw, err := api.post("https://"+p.addrs["https"]+"/api/v1/ca/"+caID+"/certificates", body, nil)
		if err != nil || status != http.StatusCreated {
			return nil, fmt.Errorf("issue at %s: %d %v %s", caID, status, err, raw)
		}
		c := &issued{ca: caID}
		c.serial, c.der, err = decodeIssued(raw)
		return c, err
	}
	issue := func(caID string) (*issued, error) {
		var key crypto.Signer = ecKey
		if caID == "sm2-issuing" {
			key = smKey
		}
		return issueWith(caID, key)
	}
	revoke := func(c *issued, reason string) *ca.RevokeResponse {
		t.Helper()
		body, _ := json.Marshal(ca.RevokeRequest{Serial: c.serial, Reason: reason})
		status, raw, err := api.post("https://"+p.addrs["https"]+"/api/v1/ca/"+c.ca+"/revocations", body, nil)
		var out ca.RevokeResponse
		if err != nil || status != http.StatusOK || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("revoke %s: %d %v %s", c.serial, status, err, raw)
		}
		return &out
	}
	seen := map[string]bool{} // every serial ever answered, "ca/serial"

	// Before the backup.
	var before []*issued
	for i := range 40 {
		c, err := issue(cas[i%2])
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			revoke(c, "superseded")
			c.revoked = "superseded"
		}
		before = append(before, c)
		seen[c.ca+"/"+c.serial] = true
	}

	// The backup, online: four clients go on issuing while it runs.
	backupDir := filepath.Join(t.TempDir(), "backup")
	stop := make(chan struct{})
	var mu sync.Mutex
	var during []*issued
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := issue(cas[w%2])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				during = append(during, c)
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	backupStart := time.Now()
	out, code := govtrust(t, "backup", "--data", dir, "--out", backupDir)
	backupTook := time.Since(backupStart)
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("govtrust backup = %d\n%s", code, out)
	}
	t.Logf("M-09: %s(%s while %d certificates were issued)", out, backupTook.Round(time.Millisecond), len(during))
	for _, c := range during {
		seen[c.ca+"/"+c.serial] = true
	}
	if st, err := os.Stat(backupDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("backup directory: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(backupDir, "bootstrap", "ra.token")); err == nil {
		t.Error("the backup holds the bearer-token files")
	}

	// After the backup: more certificates, a revocation, new CRLs.
	var after []*issued
	// after[0] is revoked for keyCompromise below: a key of its own, since
	// that revokes every certificate of the key (ca/keysweep.go).
	ownKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		var c *issued
		var err error
		if i == 0 {
			c, err = issueWith(cas[0], ownKey)
		} else {
			c, err = issue(cas[i%2])
		}
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, c)
		seen[c.ca+"/"+c.serial] = true
	}
	revoke(after[0], "keyCompromise")
	// A certificate from before the backup, revoked after it: the backup
	// has it good; the CRLs published before the loss carry it over.
	lateTarget := before[1]
	late := revoke(lateTarget, "affiliationChanged")
	published := map[string]*big.Int{}
	var crlFiles []string
	for _, id := range cas {
		for range 2 {
			if code, raw, err := operator.post("https://"+p.addrs["https"]+"/api/v1/ca/"+id+"/crls", nil, nil); err != nil || code != http.StatusCreated {
				t.Fatalf("generate the %s CRL: %d %v %s", id, code, err, raw)
			}
		}
		var der []byte
		published[id], _, der = crlEntries(t, p.addrs["http"], id, files[id].issuer)
		delta, _, deltaDER := crlEntries(t, p.addrs["http"], id+"-delta", files[id].issuer)
		if delta.Cmp(published[id]) > 0 {
			published[id] = delta
		}
		for name, b := range map[string][]byte{id + ".crl": der, id + "-delta.crl": deltaDER} {
			f := filepath.Join(work, name)
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			crlFiles = append(crlFiles, "--crl", f)
		}
	}
	p.stop(t)

	// A backup that was changed is refused, and nothing is restored from
	// it: a byte of the database (SM3), a manifest naming a path outside.
	for name, change := range map[string]func(dir string) error{
		"database byte": func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, "govtrust.db"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{0x5a}, 8000)
			return err
		},
		"manifest path": func(dir string) error {
			b, err := os.ReadFile(filepath.Join(dir, "backup.json"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "backup.json"), bytes.Replace(b, []byte(`"govtrust.yaml"`), []byte(`"../escaped"`), 1), 0o600)
		},
		// A CRL to carry over whose signature does not verify: the backup
		// itself is left as it is.
		"CRL signature": func(string) error {
			b, err := os.ReadFile(crlFiles[1])
			if err != nil {
				return err
			}
			b[len(b)-5] ^= 1
			return os.WriteFile(filepath.Join(work, "forged.crl"), b, 0o600)
		},
	} {
		tampered := filepath.Join(t.TempDir(), "tampered")
		if _, err := copyTree(backupDir, tampered); err != nil {
			t.Fatal(err)
		}
		if err := change(tampered); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "target")
		args := []string{"restore", "--from", tampered, "--data", target}
		if name == "CRL signature" {
			args = append(args, "--crl", filepath.Join(work, "forged.crl"))
		}
		if out, code := govtrust(t, args...); code == 0 {
			t.Errorf("restore of a backup with a changed %s succeeded:\n%s", name, out)
		}
		if _, err := os.Stat(filepath.Join(target, "govtrust.db")); err == nil {
			t.Errorf("restore of a backup with a changed %s left a database", name)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(target), "escaped")); err == nil {
			t.Errorf("restore of a backup with a changed %s wrote outside the data directory", name)
		}
	}

	// The loss, and the restore into a new data directory.
	restored := filepath.Join(t.TempDir(), "restored")
	rtoStart := time.Now()
	out, code = govtrust(t, append([]string{"restore", "--from", backupDir, "--data", restored}, crlFiles...)...)
	if code != 0 {
		t.Fatalf("govtrust restore = %d\n%s", code, out)
	}
	if !strings.Contains(out, "1 revoked again") {
		t.Errorf("restore did not report the revocation carried over:\n%s", out)
	}
	restoreTook := time.Since(rtoStart)
	p = up(t, restored)
	rto := time.Since(rtoStart)
	t.Logf("M-09: %sRTO %s (restore %s, start until listening %s)", out, rto.Round(time.Millisecond),
		restoreTook.Round(time.Millisecond), (rto - restoreTook).Round(time.Millisecond))
	if out, code := govtrust(t, "restore", "--from", backupDir, "--data", restored); code == 0 {
		t.Errorf("a second restore over the restored database succeeded:\n%s", out)
	}

	// The tokens of the old node work on the restored one (their hashes
	// are in the database).
	api = newAPIClient(t, raToken, restored)
	operator = newAPIClient(t, strings.TrimSpace(string(opToken)), restored)
	get := func(c *issued) (int, *ca.CertificateResponse) {
		code, raw, err := operator.get("https://" + p.addrs["https"] + "/api/v1/ca/" + c.ca + "/certificates/" + c.serial)
		if err != nil {
			t.Fatalf("GET %s: %v", c.serial, err)
		}
		var got ca.CertificateResponse
		if code == http.StatusOK {
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("GET %s: %v", c.serial, err)
			}
		}
		return code, &got
	}
	for _, c := range before {
		code, got := get(c)
		if code != http.StatusOK {
			t.Errorf("certificate %s/%s answered before the backup: GET on the restored node %d", c.ca, c.serial, code)
			continue
		}
		if !bytes.Equal(pemDER(got.Certificate), c.der) {
			t.Errorf("certificate %s/%s differs on the restored node", c.ca, c.serial)
		}
		want := map[bool]string{true: "revoked", false: "good"}[c.revoked != "" || c == lateTarget]
		if got.Status != want {
			t.Errorf("certificate %s/%s: %s on the restored node, want %s", c.ca, c.serial, got.Status, want)
		}
		if c == lateTarget && (got.Reason != "affiliationChanged" || got.RevokedAt != late.RevokedAt) {
			t.Errorf("revocation carried over from the CRL: %s at %s, was affiliationChanged at %s", got.Reason, got.RevokedAt, late.RevokedAt)
		}
	}
	inBackup := 0
	for _, c := range during {
		code, got := get(c)
		if code == http.StatusOK {
			inBackup++
			if !bytes.Equal(pemDER(got.Certificate), c.der) {
				t.Errorf("certificate %s/%s issued during the backup differs on the restored node", c.ca, c.serial)
			}
		}
	}
	t.Logf("M-09: %d of the %d certificates issued while the backup ran are in it", inBackup, len(during))
	// after[0] was issued and revoked after the backup: the published CRL
	// brought it back as a revocation without a certificate. The others
	// are unknown.
	for i, c := range after {
		code, got := get(c)
		switch {
		case i == 0 && (code != http.StatusOK || got.Status != "revoked" || got.Reason != "keyCompromise" || got.Certificate != ""):
			t.Errorf("certificate %s/%s issued and revoked after the backup: GET on the restored node %d %+v, want revoked, keyCompromise, no certificate", c.ca, c.serial, code, got)
		case i > 0 && code != http.StatusNotFound:
			t.Errorf("certificate %s/%s issued after the backup: GET on the restored node %d, want 404", c.ca, c.serial, code)
		}
		cert, err := smx509.ParseCertificate(c.der)
		if err != nil {
			t.Fatal(err)
		}
		der, err := ocsp.CreateRequest(cert, files[c.ca].issuer, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+p.addrs["http"]+"/ocsp/"+c.ca, "application/ocsp-request", bytes.NewReader(der))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]ocsp.Status{true: ocsp.Revoked, false: ocsp.Unknown}[i == 0]
		r, err := ocsp.ParseResponseForCert(buf.Bytes(), cert, files[c.ca].issuer)
		if err != nil || r.Status != want {
			t.Errorf("OCSP for %s/%s, issued after the backup: %v %v, want %v", c.ca, c.serial, r, err, want)
		}
	}
	leaf := filepath.Join(work, "after0.pem")
	if err := os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: after[0].der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := opensslOCSP(opensslBin, p.addrs["http"], after[0].ca, files[after[0].ca], leaf, after[0].ca == "sm2-issuing"); err != nil || r.status == "good" {
		t.Errorf("openssl ocsp for a certificate issued after the backup: %+v %v, never good", r, err)
	}

	// I5: the restored node published new CRLs at start, above every
	// number published before the loss.
	for _, id := range cas {
		for _, name := range []string{id, id + "-delta"} {
			number, entries, der := crlEntries(t, p.addrs["http"], name, files[id].issuer)
			if number.Cmp(published[id]) <= 0 {
				t.Errorf("%s CRL served by the restored node: number %v, published before the loss up to %v", name, number, published[id])
			}
			if id == lateTarget.ca && name == id && entries[lateTarget.serial] != reasonCodes["affiliationChanged"] {
				t.Errorf("%s CRL of the restored node: the revocation carried over is listed %v", name, entries[lateTarget.serial])
			}
			if id == after[0].ca && name == id && entries[after[0].serial] != reasonCodes["keyCompromise"] {
				t.Errorf("%s CRL of the restored node: the revocation without a certificate is listed %v", name, entries[after[0].serial])
			}
			if id == "ecdsa-issuing" {
				opensslVerifyCRL(t, opensslBin, der, files[id], work)
			}
		}
		t.Logf("M-09: %s CRLs before the loss up to number %v; the restored node's are above it", id, published[id])
	}

	// I1: new certificates' serials are unlike every serial answered
	// before, the lost ones too.
	for i := range 20 {
		c, err := issue(cas[i%2])
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ca+"/"+c.serial] {
			t.Errorf("serial %s/%s answered again after the restore", c.ca, c.serial)
		}
		seen[c.ca+"/"+c.serial] = true
	}
	if code, raw, err := operator.post("https://"+p.addrs["https"]+"/api/v1/ca/sm2-issuing/crls", nil, nil); err != nil || code != http.StatusCreated {
		t.Errorf("generate a CRL on the restored node: %d %v %s", code, err, raw)
	}
	p.stop(t)
	sqliteIntegrity(t, restored)
	auditVerify(t, "--data", restored)
	if n := countAction(auditEvents(t, "--data", restored), "node.restore"); n != 1 {
		t.Errorf("node.restore audit records: %d, want 1", n)
	}
}

func countAction(events map[[2]string]int, action string) int {
	n := 0
	for k, v := range events {
		if k[0] == action {
			n += v
		}
	}
	return n
}

// pemDER is the DER of a PEM certificate, nil if there is none.
func pemDER(s string) []byte {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil
	}
	return b.Bytes
}
