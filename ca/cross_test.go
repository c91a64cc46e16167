package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/ceremony/ceremonytest"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// endEntity certifies subject's name and key under issuer in a certificate
// that is not a CA's.
func endEntity(t *testing.T, subject, issuer *smx509.Certificate, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	parent, err := x509.ParseCertificate(issuer.Raw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), RawSubject: subject.RawSubject,
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, subject.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crossCert is a cross-certificate for subject's name and key under issuer
// made without the ceremony: with subjectKeyIdentifier ski and
// pathLenConstraint pathLen (-1: none).
func crossCert(t *testing.T, subject, issuer *smx509.Certificate, key *ecdsa.PrivateKey, ski []byte, pathLen int) []byte {
	t.Helper()
	parent, err := x509.ParseCertificate(issuer.Raw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), RawSubject: subject.RawSubject,
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0, SubjectKeyId: ski, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, subject.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCrossCertificates: a CA operator publishes a cross-certificate another
// root issued to ecdsa-root; /pki/ecdsa-root-cross.p7c serves it, and
// OpenSSL, trusting only the other root, verifies a certificate of
// ecdsa-issuing through it (and not without it). Everything that is not a
// cross-certificate for the CA, signed by the issuer given, is refused.
func TestCrossCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	root := tn.svc.lookup("ecdsa-root").cert
	other, otherKey := ceremonytest.ExternalRoot(t, "Other Root CA")
	cross := ceremonytest.CrossSign(t, root, other, otherKey)
	crossPEM, otherPEM := pemCert(cross), pemCert(other.Raw)

	p7c := func() (int, string, []byte) {
		t.Helper()
		resp, err := http.Get("http://" + tn.n.Addresses().HTTP + "/pki/ecdsa-root-cross.p7c")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	if status, _, _ := p7c(); status != http.StatusNotFound {
		t.Fatalf("before any import: HTTP %d, want 404", status)
	}

	// Refusals.
	third, _ := ceremonytest.ExternalRoot(t, "Third Root CA")
	// Another root with the other root's name and its own key.
	fake, fakeKey := ceremonytest.ExternalRoot(t, "Other Root CA")
	sub := tn.svc.lookup("ecdsa-issuing").cert
	for _, c := range []struct {
		name, ca, role, cert, issuer string
		want                         int
		why                          string // in the problem's detail
	}{
		{"not a CA operator", "ecdsa-root", "ra", crossPEM, otherPEM, http.StatusForbidden, ""},
		{"not PEM", "ecdsa-root", "operator", "MIIB", otherPEM, http.StatusBadRequest, "want one PEM"},
		{"two certificates", "ecdsa-root", "operator", crossPEM + crossPEM, otherPEM, http.StatusBadRequest, "more than one"},
		{"unknown CA", "no-such-ca", "operator", crossPEM, otherPEM, http.StatusNotFound, "no CA"},
		{"another CA's subject and key", "ecdsa-issuing", "operator", crossPEM, otherPEM, http.StatusUnprocessableEntity, "subject"},
		{"self-issued", "ecdsa-root", "operator", pemCert(root.Raw), pemCert(root.Raw), http.StatusUnprocessableEntity, "self-issued"},
		{"issuer not the signer", "ecdsa-root", "operator", crossPEM, pemCert(third.Raw), http.StatusUnprocessableEntity, "was issued by"},
		{"issuer's name, another key", "ecdsa-root", "operator", pemCert(ceremonytest.CrossSign(t, root, fake, fakeKey)), otherPEM, http.StatusUnprocessableEntity, "does not verify"},
		{"the CA's own certificate", "ecdsa-issuing", "operator", pemCert(sub.Raw), pemCert(root.Raw), http.StatusUnprocessableEntity, "own issuer"},
		{"not a CA certificate", "ecdsa-root", "operator", pemCert(endEntity(t, root, other, otherKey)), otherPEM, http.StatusUnprocessableEntity, "not a CA certificate"},
		{"path length too small", "ecdsa-root", "operator", pemCert(crossCert(t, root, other, otherKey, root.SubjectKeyId, 0)), otherPEM, http.StatusUnprocessableEntity, "pathLenConstraint 0"},
		{"another subjectKeyIdentifier", "ecdsa-root", "operator", pemCert(crossCert(t, root, other, otherKey, bytes.Repeat([]byte{7}, 20), 1)), otherPEM, http.StatusUnprocessableEntity, "subjectKeyIdentifier"},
	} {
		status, raw := tn.do("POST", "/api/v1/ca/"+c.ca+"/cross-certificates", c.role, CrossRequest{Certificate: c.cert, Issuer: c.issuer}, nil)
		if status != c.want || !strings.Contains(string(raw), c.why) {
			t.Errorf("%s: HTTP %d, want %d with %q: %s", c.name, status, c.want, c.why, raw)
		}
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_cross_certificates"); n != 0 {
		t.Fatalf("%d rows after refusals", n)
	}

	// Import, twice.
	status, raw := tn.do("POST", "/api/v1/ca/ecdsa-root/cross-certificates", "operator", CrossRequest{Certificate: crossPEM, Issuer: otherPEM}, nil)
	var info CrossInfo
	if status != http.StatusCreated || json.Unmarshal(raw, &info) != nil {
		t.Fatalf("import: HTTP %d: %s", status, raw)
	}
	if info.CA != "ecdsa-root" || info.URL != "/pki/ecdsa-root-cross.p7c" || !strings.Contains(info.Issuer, "Other Root CA") {
		t.Errorf("import answer %+v", info)
	}
	if status, raw := tn.do("POST", "/api/v1/ca/ecdsa-root/cross-certificates", "operator", CrossRequest{Certificate: crossPEM, Issuer: otherPEM}, nil); status != http.StatusOK {
		t.Errorf("the same again: HTTP %d, want 200: %s", status, raw)
	}
	if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.authority.cross' AND outcome = 'success'"); n != 2 {
		t.Errorf("%d audit records of imports, want 2", n)
	}

	// Served, and usable for path building by OpenSSL.
	status, ctype, body := p7c()
	if status != http.StatusOK || ctype != "application/pkcs7-mime" {
		t.Fatalf("p7c: HTTP %d, %q", status, ctype)
	}
	tmp := t.TempDir()
	p7File := writeFile(t, tmp, "cross.p7c", string(body))
	certs := openssl(t, "pkcs7", "-inform", "DER", "-in", p7File, "-print_certs")
	if strings.Count(certs, "BEGIN CERTIFICATE") != 1 || !strings.Contains(certs, "Other Root CA") {
		t.Fatalf("p7c holds:\n%s", certs)
	}
	leaf := tn.issueECDSA(t)
	leafFile := writeFile(t, tmp, "leaf.pem", leaf.Certificate)
	otherFile := writeFile(t, tmp, "other.pem", otherPEM)
	crossFile := writeFile(t, tmp, "cross.pem", certs)
	subFile := writeFile(t, tmp, "sub.pem", pemCert(sub.Raw))
	bin := testenv.LookPath(t, "openssl")
	verify := func(untrusted ...string) (string, error) {
		args := []string{"verify", "-CAfile", otherFile}
		for _, u := range untrusted {
			args = append(args, "-untrusted", u)
		}
		out, err := exec.Command(bin, append(args, leafFile)...).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(subFile); err == nil {
		t.Fatalf("verified without the cross-certificate:\n%s", out)
	}
	if out, err := verify(subFile, crossFile); err != nil || !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify through the cross-certificate: %v\n%s", err, out)
	}

	// A second process (or a restart) serves it from the database.
	tn.stop()
	tn = startNode(t, dir)
	if status, _, again := p7c(); status != http.StatusOK || string(again) != string(body) {
		t.Errorf("after a restart: HTTP %d, %d octets (was %d)", status, len(again), len(body))
	}
}

// TestCrossStore: cross-certificates are recorded once per CA and
// fingerprint, and the bundle holds the unexpired ones, sorted, on both
// databases.
func TestCrossStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now()
		root, _ := ceremonytest.ExternalRoot(t, "Subject Root")
		other, otherKey := ceremonytest.ExternalRoot(t, "Issuer Root")
		der := ceremonytest.CrossSign(t, root, other, otherKey)
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []bool{true, false} {
			var added bool
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				added, err = insertCross(ctx, tx, "r", "fp1", c, now)
				return err
			}); err != nil || added != want {
				t.Fatalf("insert %d: added %v, %v; want %v", i, added, err, want)
			}
		}
		b, err := loadCross(ctx, db, "r", now)
		if err != nil || b.der == nil || !b.until.Equal(c.NotAfter) {
			t.Fatalf("bundle: %d octets, until %v, %v", len(b.der), b.until, err)
		}
		if got, err := pkcs7.Parse(b.der); err != nil || len(got.Certificates) != 1 || !bytes.Equal(got.Certificates[0].Raw, der) {
			t.Fatalf("bundle does not hold the certificate: %v", err)
		}
		if b, err := loadCross(ctx, db, "r", c.NotAfter); err != nil || b.der != nil {
			t.Fatalf("after its expiry: %d octets, %v", len(b.der), err)
		}
		if b, err := loadCross(ctx, db, "other", now); err != nil || b.der != nil {
			t.Fatalf("another CA: %d octets, %v", len(b.der), err)
		}
	}, New().Migrations()...)
}

// TestCrossCertificateSM2: an SM2 root of another PKI (made by the root
// ceremony) cross-signs sm2-root; the SM2 signature is checked on import
// (a copy with a flipped signature bit is refused) and the bundle holds
// the certificate.
func TestCrossCertificateSM2(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := ceremony.Parse([]byte("kind: root\nca: other-sm2\nsubject:\n  C: CN\n  O: 另一个政务 PKI\n  CN: 另一个 SM2 根 CA\n" +
		"algorithm: sm2\nkey:\n  uri: soft:ca/other-sm2\n  mode: create\nvalidity:\n  days: 7300\npath_length: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := ceremony.SelfSign(rf, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := smx509.ParseCertificate(otherDER)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ceremony.Parse([]byte("kind: cross\nca: cross-sm2\nalgorithm: sm2\nvalidity:\n  days: 1825\npath_length: 1\n" +
		"subject_certificate: subject.pem\nsubject_certificate_sha256: " + ceremony.Fingerprint(tn.svc.lookup("sm2-root").cert.Raw) +
		"\nissuer:\n  certificate: issuer.pem\n  key_uri: soft:ca/other-sm2\n"))
	if err != nil {
		t.Fatal(err)
	}
	cross, err := ceremony.CrossSign(cf, tn.svc.lookup("sm2-root").cert, other, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(cross)
	bad[len(bad)-3] ^= 1 // inside the signature's integer
	if status, raw := tn.do("POST", "/api/v1/ca/sm2-root/cross-certificates", "operator", CrossRequest{Certificate: pemCert(bad), Issuer: pemCert(otherDER)}, nil); status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "does not verify") {
		t.Fatalf("altered signature: HTTP %d: %s", status, raw)
	}
	if status, raw := tn.do("POST", "/api/v1/ca/sm2-root/cross-certificates", "operator", CrossRequest{Certificate: pemCert(cross), Issuer: pemCert(otherDER)}, nil); status != http.StatusCreated {
		t.Fatalf("import: HTTP %d: %s", status, raw)
	}
	resp, err := http.Get("http://" + tn.n.Addresses().HTTP + "/pki/sm2-root-cross.p7c")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p7, err := pkcs7.Parse(body)
	if resp.StatusCode != http.StatusOK || err != nil || len(p7.Certificates) != 1 || !bytes.Equal(p7.Certificates[0].Raw, cross) {
		t.Fatalf("p7c: HTTP %d, %v", resp.StatusCode, err)
	}
	if err := p7.Certificates[0].CheckSignatureFrom(other); err != nil {
		t.Fatalf("served cross-certificate does not verify under the other root: %v", err)
	}
}

// TestCrossCache: a bundle loaded before an import is not kept after it,
// and bundles expire with their TTL and their first certificate.
func TestCrossCache(t *testing.T) {
	var c crossCache
	now := time.Now()
	_, gen, ok := c.get("r", now)
	if ok {
		t.Fatal("hit in an empty cache")
	}
	c.drop("r") // an import while the bundle was being loaded
	c.put("r", crossBundle{der: []byte{1}, loaded: now, until: now.Add(time.Hour)}, gen)
	if _, _, ok := c.get("r", now); ok {
		t.Fatal("a bundle loaded before the import was kept")
	}
	_, gen, _ = c.get("r", now)
	c.put("r", crossBundle{der: []byte{1}, loaded: now, until: now.Add(time.Minute)}, gen)
	for _, c2 := range []struct {
		at   time.Time
		want bool
	}{{now, true}, {now.Add(crossTTL - time.Millisecond), true}, {now.Add(crossTTL), false}, {now.Add(-time.Second), false}} {
		if _, _, ok := c.get("r", c2.at); ok != c2.want {
			t.Errorf("at %v: hit %v, want %v", c2.at.Sub(now), ok, c2.want)
		}
	}
	c.put("r", crossBundle{der: []byte{1}, loaded: now, until: now.Add(time.Second)}, gen)
	if _, _, ok := c.get("r", now.Add(time.Second)); ok {
		t.Error("hit after the first certificate's expiry")
	}
}
