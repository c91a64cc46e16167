package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// TestM09RestorePostgres is ACCEPTANCE.md M-09 on PostgreSQL, backed up and
// restored by its own tools (pg_dump -Fc, pg_restore into a new database)
// and the restore recorded with `govtrust restore --db`, carrying over the
// CRL published after the backup: the certificates of the backup are there
// (the one revoked after it revoked again), one issued and revoked after it
// is revoked in OCSP and listed without its certificate, the CRLs
// served at the first start are numbered above those published after the
// backup, and the audit chain verifies with the restore in it. Without the
// record the node would serve the backup's CRLs, numbered below them (the
// test checks that first, on a second copy).
func TestM09RestorePostgres(t *testing.T) {
	pgDump, pgRestore := testenv.LookPath(t, "pg_dump"), testenv.LookPath(t, "pg_restore")
	src := storetest.PostgresURL(t)
	dir := filepath.Join(t.TempDir(), "data")
	writeNodeConfig(t, dir, quietConfig)
	p := up(t, dir, "--db", src)
	raToken := readToken(t, dir, "ra")
	api := newAPIClient(t, raToken, dir)
	work := t.TempDir()
	files := fetchCA(t, p.addrs["http"], "ecdsa-issuing", "ecdsa-root", work)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	type issued struct {
		serial string
		der    []byte
	}
	issue := func(i int) issued {
		t.Helper()
		body, err := issueBody(key, fmt.Sprintf("h%d.m09pg.example.gov.cn", i))
		if err != nil {
			t.Fatal(err)
		}
		status, raw, err := api.post("https://"+p.addrs["https"]+"/api/v1/ca/ecdsa-issuing/certificates", body, nil)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("issue: %d %v %s", status, err, raw)
		}
		var c issued
		if c.serial, c.der, err = decodeIssued(raw); err != nil {
			t.Fatal(err)
		}
		return c
	}
	revoke := func(c issued) {
		t.Helper()
		body, _ := json.Marshal(ca.RevokeRequest{Serial: c.serial, Reason: "superseded"})
		if status, raw, err := api.post("https://"+p.addrs["https"]+"/api/v1/ca/ecdsa-issuing/revocations", body, nil); err != nil || status != http.StatusOK {
			t.Fatalf("revoke %s: %d %v %s", c.serial, status, err, raw)
		}
	}
	var before []issued
	for i := range 6 {
		before = append(before, issue(i))
	}
	revoke(before[0])

	dump := filepath.Join(t.TempDir(), "govtrust.dump")
	takenAt := time.Now().UTC().Truncate(time.Second)
	if out, err := exec.Command(pgDump, "-Fc", "-f", dump, src).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}

	// After the backup: a certificate, and a revocation, which publishes
	// new CRLs at once.
	after := issue(100)
	revoke(after)
	revoke(before[1])
	published, _, fullDER := crlEntries(t, p.addrs["http"], "ecdsa-issuing", files.issuer)
	crlFile := filepath.Join(work, "published.crl")
	if err := os.WriteFile(crlFile, fullDER, 0o600); err != nil {
		t.Fatal(err)
	}
	if delta, _, _ := crlEntries(t, p.addrs["http"], "ecdsa-issuing-delta", files.issuer); delta.Cmp(published) > 0 {
		published = delta
	}
	p.stop(t)

	restoreTo := func() string {
		t.Helper()
		dst := storetest.PostgresURL(t)
		if out, err := exec.Command(pgRestore, "--no-owner", "--exit-on-error", "-d", dst, dump).CombinedOutput(); err != nil {
			t.Fatalf("pg_restore: %v\n%s", err, out)
		}
		return dst
	}
	served := func(p *proc) *big.Int {
		t.Helper()
		n, _, _ := crlEntries(t, p.addrs["http"], "ecdsa-issuing", files.issuer)
		return n
	}

	// Without the record, the restored node serves the backup's CRL: the
	// test below would catch a CA that did not republish.
	plain := restoreTo()
	plainDir := filepath.Join(t.TempDir(), "plain")
	writeNodeConfig(t, plainDir, quietConfig)
	p = up(t, plainDir, "--db", plain)
	if n := served(p); n.Cmp(published) >= 0 {
		t.Errorf("the restore not recorded, the node serves CRL %v, not the backup's (published before the loss up to %v): the check below proves nothing", n, published)
	}
	p.stop(t)

	restored := restoreTo()
	out, code := govtrust(t, "restore", "--db", restored, "--taken-at", takenAt.Format(time.RFC3339), "--crl", crlFile)
	if code != 0 || !strings.Contains(out, "1 revoked again") || !strings.Contains(out, "1 kept without a certificate") {
		t.Fatalf("govtrust restore --db --crl = %d, want before[1]'s revocation carried over\n%s", code, out)
	}
	if out, code := govtrust(t, "restore", "--db", restored, "--from", work); code == 0 {
		t.Errorf("restore with --db and --from succeeded:\n%s", out)
	}
	newDir := filepath.Join(t.TempDir(), "restored")
	writeNodeConfig(t, newDir, quietConfig)
	p = up(t, newDir, "--db", restored)
	number, entries, _ := crlEntries(t, p.addrs["http"], "ecdsa-issuing", files.issuer)
	if number.Cmp(published) <= 0 {
		t.Errorf("CRL served by the restored node: number %v, published before the loss up to %v", number, published)
	}
	for _, c := range []issued{before[0], before[1], after} {
		if _, ok := entries[c.serial]; !ok {
			t.Errorf("CRL of the restored node does not list %s", c.serial)
		}
	}
	api = newAPIClient(t, raToken, newDir)
	for i, c := range before {
		code, raw, err := api.get("https://" + p.addrs["https"] + "/api/v1/ca/ecdsa-issuing/certificates/" + c.serial)
		var got ca.CertificateResponse
		if err != nil || code != http.StatusOK || json.Unmarshal(raw, &got) != nil {
			t.Fatalf("GET %s on the restored node: %d %v %s", c.serial, code, err, raw)
		}
		want := "good"
		if i <= 1 {
			want = "revoked" // before[0] before the backup; before[1] after it, carried over from the CRL
		}
		if got.Status != want {
			t.Errorf("certificate %s on the restored node: %s, want %s", c.serial, got.Status, want)
		}
	}
	cert, err := smx509.ParseCertificate(after.der)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.CreateRequest(cert, files.issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+p.addrs["http"]+"/ocsp/ecdsa-issuing", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ocsp.ParseResponseForCert(raw, cert, files.issuer); err != nil || r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonSuperseded {
		t.Errorf("OCSP for the certificate issued and revoked after the backup: %v %v, want revoked (superseded), carried over without its certificate", r, err)
	}
	p.stop(t)
	auditVerify(t, "--db", restored)
	if n := countAction(auditEvents(t, "--db", restored), "node.restore"); n != 1 {
		t.Errorf("node.restore audit records: %d, want 1", n)
	}
}
