package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony/ceremonytest"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// importEnv is the database, audit log and key manager of a stopped node,
// as `govtrust ca import` opens them.
type importEnv struct {
	db   *store.DB
	log  *audit.Log
	keys hsm.KeyManager
	root *smx509.Certificate
	key  *ecdsa.PrivateKey
}

// newImportEnv opens a fresh SQLite database with the node's and the CA's
// migrations and the node's key manager for cfg (config.Defaults() when
// nil), and makes an offline root to certify the CAs imported.
func newImportEnv(t *testing.T, cfg *config.Config) *importEnv {
	t.Helper()
	if cfg == nil {
		c := config.Defaults()
		cfg = &c
	}
	db := storetest.SQLite(t, append(node.BaseMigrations(), New().Migrations()...)...)
	clk := clock.New()
	log := audit.New("import-test", clk)
	keys, err := node.OpenKeys(context.Background(), cfg, node.KeysOptions{DB: db, Audit: log, Logger: slog.New(slog.DiscardHandler), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	root, key := ceremonytest.ExternalRoot(t, "Offline Root")
	return &importEnv{db: db, log: log, keys: keys, root: root, key: key}
}

// newKey makes an ECDSA P-256 key of the CA service at uri.
func (e *importEnv) newKey(t *testing.T, uri string) crypto.PublicKey {
	t.Helper()
	info, err := e.keys.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: keyService})
	if err != nil {
		t.Fatalf("create %s: %v", uri, err)
	}
	return info.Public
}

// subCA certifies pub as the sub-CA cn under the offline root.
func (e *importEnv) subCA(t *testing.T, cn string, pub crypto.PublicKey) *smx509.Certificate {
	t.Helper()
	parent, err := x509.ParseCertificate(e.root.Raw)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: pkix.Name{Country: []string{"CN"}, Organization: []string{"Other PKI"}, CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(2, 0, 0), BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, e.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// importCA imports cert as CA id with the key at uri.
func (e *importEnv) importCA(id, uri string, cert *smx509.Certificate) error {
	_, err := Import(audit.WithActor(context.Background(), "test"), e.db, e.log, e.keys,
		ImportRequest{ID: id, Cert: cert, Chain: []*smx509.Certificate{e.root}, KeyURI: uri, Now: time.Now()})
	return err
}

// importSoftHSMToken initialises a SoftHSM2 token labelled label in a
// directory of its own, points SOFTHSM2_CONF at it, and returns the node
// configuration that mounts it (PIN from $GT_TEST_PIN).
func importSoftHSMToken(t *testing.T, label string) *config.Config {
	t.Helper()
	module := testenv.File(t, "/usr/lib/softhsm/libsofthsm2.so", "SoftHSM2 (apt-get install softhsm2)")
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
	t.Setenv("GT_TEST_PIN", "1234")
	if out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", "12345678", "--pin", "1234").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	cfg := config.Defaults()
	cfg.HSM.PKCS11 = []config.PKCS11Config{{Token: label, Module: module, PIN: "env:GT_TEST_PIN"}}
	return &cfg
}

// TestImportRefusesAnotherCAsKey: ca import refuses a key another CA of the
// database holds by its public key, not only by its URI: a PKCS#11 key has
// many URIs (RFC 7512 attributes in any order, with or without its id), and
// a second certificate for the key of CA dept-sub imported under another
// of them would make a second CA with the same key, which no CRL of the
// first covers. A CA with a key of its own is imported.
func TestImportRefusesAnotherCAsKey(t *testing.T) {
	e := newImportEnv(t, importSoftHSMToken(t, "ca"))
	const uri = "pkcs11:token=ca;object=dept-sub"
	pub := e.newKey(t, uri)
	if err := e.importCA("dept-sub", uri, e.subCA(t, "Dept Sub CA", pub)); err != nil {
		t.Fatalf("import dept-sub: %v", err)
	}
	again := e.subCA(t, "Dept Sub CA 2", pub)
	for _, alias := range []string{uri, "pkcs11:object=dept-sub;token=ca"} {
		err := e.importCA("dept-sub-2", alias, again)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "CA dept-sub") {
			t.Errorf("import of dept-sub's key as %s for dept-sub-2: %v, want a conflict naming dept-sub", alias, err)
		}
	}
	var n int
	if err := e.db.QueryRow(context.Background(), "SELECT COUNT(*) FROM ca_authorities").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d CAs recorded, want dept-sub only", n)
	}
	const other = "pkcs11:token=ca;object=dept-other"
	if err := e.importCA("dept-other", other, e.subCA(t, "Dept Other CA", e.newKey(t, other))); err != nil {
		t.Errorf("import of a CA with a key of its own: %v", err)
	}
}

// TestImportRefusesDeltaNameClash: /pki/{x}-delta.crl is the delta CRL of
// CA x and the full CRL of a CA x-delta, so ids x and x-delta are never
// both CAs: the second of such a pair is refused on import, in either
// order, and beside a built-in CA before its first start has made it.
func TestImportRefusesDeltaNameClash(t *testing.T) {
	e := newImportEnv(t, nil)
	imp := func(id string) error {
		uri := "soft:ca/" + id
		return e.importCA(id, uri, e.subCA(t, "CA "+id, e.newKey(t, uri)))
	}
	for _, c := range []struct{ first, second, clash string }{
		{"corp", "corp-delta", "corp"},
		{"dept-delta", "dept", "dept-delta"},
		{"", "ecdsa-issuing-delta", "ecdsa-issuing"},
	} {
		if c.first != "" {
			if err := imp(c.first); err != nil {
				t.Fatalf("import %s: %v", c.first, err)
			}
		}
		err := imp(c.second)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "CA "+c.clash+" exists") {
			t.Errorf("import %s beside %s: %v, want a conflict naming %s", c.second, c.clash, err, c.clash)
		}
	}
	var n int
	if err := e.db.QueryRow(context.Background(), "SELECT COUNT(*) FROM ca_authorities").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d CAs recorded, want corp and dept-delta", n)
	}
	if err := CheckCAID(context.Background(), e.db, "corp-delta"); !errors.Is(err, ErrConflict) {
		t.Errorf("CheckCAID(corp-delta): %v, want a conflict", err)
	}
	if err := CheckCAID(context.Background(), e.db, "corp-2"); err != nil {
		t.Errorf("CheckCAID(corp-2): %v", err)
	}
}

// TestImportRefusesRolloverName: a new CA may not take the id a rollover
// of an existing lineage gives a generation (<lineage>-gN, N >= 2) or its
// delta twin, when that lineage is one Rollover rolls (a platform parent):
// it could never be rolled over again. Ceremonies are told before they
// make a key (CheckCAID). A lineage under an offline root is rolled over by
// ceremony under ids its operators choose, so its -gN ids stay free; and a
// CA that will be rollable is refused when a CA already holds one of its
// generation names (the other order).
func TestImportRefusesRolloverName(t *testing.T) {
	e := newImportEnv(t, nil)
	ctx := context.Background()
	imp := func(id string) error {
		uri := "soft:ca/" + id
		return e.importCA(id, uri, e.subCA(t, "CA "+id, e.newKey(t, uri)))
	}
	for _, id := range []string{"sm2-issuing-g3", "ecdsa-issuing-g2-delta", "sm2-issuing-g12"} {
		if err := imp(id); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "rollover") {
			t.Errorf("import %s: %v, want a conflict naming the rollover", id, err)
		}
		if err := CheckCAID(ctx, e.db, id); !errors.Is(err, ErrConflict) {
			t.Errorf("CheckCAID(%s): %v, want the conflict before a ceremony makes a key", id, err)
		}
	}
	if err := imp("corp"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"corp-g2", "corp-g3-delta", "sm2-root-g2", "other-g2", "sm2-issuing-g1", "sm2-issuing-gx"} {
		if err := imp(id); err != nil {
			t.Errorf("import %s (no rollable lineage of that name): %v", id, err)
		}
	}
	// The other order: corp-g2 exists, so a rollable CA corp-like lineage
	// "corp" may not be made; one under an offline root may.
	err := e.db.Read(ctx, func(q store.Querier) error { return checkRolloverName(ctx, q, "corp", true) })
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "corp-g") {
		t.Errorf("a rollable corp beside corp-g2: %v, want a conflict naming it", err)
	}
	if err := e.db.Read(ctx, func(q store.Querier) error { return checkRolloverName(ctx, q, "corp", false) }); err != nil {
		t.Errorf("a corp under an offline root beside corp-g2: %v", err)
	}
}

// TestRolloverRefusesDeltaNameClash: a rollover whose new generation's id
// would share /pki/{id}-delta.crl with a CA already there (ecdsa-issuing-g2
// beside an imported ecdsa-issuing-g2-delta) is refused before a key is
// made, in the process that has the CA loaded and in one that has not.
func TestRolloverRefusesDeltaNameClash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	e := &importEnv{db: tn.db(), log: tn.n.Env().Audit, keys: tn.n.Env().Keys}
	e.root, e.key = ceremonytest.ExternalRoot(t, "Offline Root")
	const id = "ecdsa-issuing-g2-delta"
	// Such an id is refused on import now (TestImportRefusesRolloverName):
	// recorded before that, under another id renamed here.
	if err := e.importCA("before-fix", "soft:ca/"+id, e.subCA(t, "CA "+id, e.newKey(t, "soft:ca/"+id))); err != nil {
		t.Fatalf("import %s: %v", id, err)
	}
	if _, err := e.db.Exec(context.Background(), "UPDATE ca_authorities SET id = ?, lineage = ? WHERE id = 'before-fix'", id, id); err != nil {
		t.Fatal(err)
	}
	ctx := audit.WithActor(context.Background(), "test")
	for round := range 2 {
		_, err := tn.svc.Rollover(ctx, "test", "ecdsa-issuing", "")
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "CA "+id+" exists") {
			t.Fatalf("round %d: rollover of ecdsa-issuing beside %s: %v, want a conflict", round, id, err)
		}
		if _, err := tn.n.Env().Keys.PublicKey(ctx, &hsm.PublicKeyRequest{URI: "soft:ca/ecdsa-issuing-g2"}); !errors.Is(err, hsm.ErrNotFound) {
			t.Fatalf("round %d: the refused rollover left a key: %v", round, err)
		}
		if round == 0 {
			tn.stop()
			tn = startNode(t, dir)
		}
	}
	if tn.svc.lookup(id) == nil {
		t.Fatalf("%s is not loaded", id)
	}
}

// TestImportRefusesInoperableCA: ca import refuses a CA certificate the
// node could not operate as an issuer, with the reason, rather than record
// a CA whose first CRL fails at the next start (which stops the node) and
// whose issuance fails: one without subjectKeyIdentifier (RFC 5280
// §4.2.1.2), and one the lints a ceremony runs refuse (basicConstraints
// not critical, RFC 5280 §4.2.1.9). The certificates are made by OpenSSL,
// as an offline root's operators might; the same one with the extensions
// right (and an 8-octet serial, the issuer's practice) is imported, and
// the node starts and serves every CA.
func TestImportRefusesInoperableCA(t *testing.T) {
	bin := testenv.LookPath(t, "openssl")
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	e := &importEnv{db: tn.db(), log: tn.n.Env().Audit, keys: tn.n.Env().Keys}
	e.root, e.key = ceremonytest.ExternalRoot(t, "Offline Root")
	tmp := t.TempDir()
	keyDER, err := x509.MarshalECPrivateKey(e.key)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM := writeFile(t, tmp, "root.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.root.Raw})))
	rootKey := writeFile(t, tmp, "root.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	// sign makes the CA certificate of a new key at soft:ca/<id> with the
	// OpenSSL extension lines ext.
	sign := func(id, ext string) (string, *smx509.Certificate) {
		t.Helper()
		uri := "soft:ca/" + id
		e.newKey(t, uri)
		signer, err := e.keys.Signer(context.Background(), &hsm.SignerRequest{URI: uri, Service: keyService})
		if err != nil {
			t.Fatal(err)
		}
		csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{Country: []string{"CN"}, Organization: []string{"Other PKI"}, CommonName: id}}, signer)
		if err != nil {
			t.Fatal(err)
		}
		csrP := writeFile(t, tmp, id+".csr", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})))
		extP := writeFile(t, tmp, id+".cnf", ext)
		out := filepath.Join(tmp, id+".pem")
		if b, err := exec.Command(bin, "x509", "-req", "-in", csrP, "-CA", rootPEM, "-CAkey", rootKey, "-set_serial", "0x0123456789abcdef",
			"-days", "365", "-sha256", "-extfile", extP, "-out", out).CombinedOutput(); err != nil {
			t.Fatalf("openssl: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := smx509.ParseCertificate(pemDER(t, string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return uri, cert
	}
	const good = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
	for _, c := range []struct{ id, ext, want string }{
		{"noski-sub", strings.Replace(good, "subjectKeyIdentifier=hash", "subjectKeyIdentifier=none", 1), "subjectKeyIdentifier"},
		{"bc-sub", strings.Replace(good, "critical,CA:TRUE", "CA:TRUE", 1), "e_bc_not_critical_ca"},
	} {
		uri, cert := sign(c.id, c.ext)
		err := e.importCA(c.id, uri, cert)
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("import %s: %v, want a policy refusal naming %s", c.id, err, c.want)
		}
	}
	uri, cert := sign("dept-sub", good)
	if err := e.importCA("dept-sub", uri, cert); err != nil {
		t.Fatalf("import of a CA with the extensions right: %v", err)
	}
	tn.stop()
	tn = startNode(t, dir)
	for _, id := range []string{"noski-sub", "bc-sub"} {
		if tn.svc.lookup(id) != nil {
			t.Errorf("CA %s loaded", id)
		}
	}
	if status, _, raw := tn.issue("dept-sub", IssueRequest{CSR: csrPEM(goCSR(t, "app")), Profile: "client-tls"}, ""); status != http.StatusCreated {
		t.Errorf("issue from the imported CA: %d %s", status, raw)
	}
	resp, err := tn.c.Get("http://" + tn.n.Addresses().HTTP + "/pki/dept-sub.crl")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /pki/dept-sub.crl: %d", resp.StatusCode)
	}
}

// TestImportRefusesSM2UnderECDSA: a hierarchy has one algorithm
// (ARCHITECTURE.md §2) and an SM2 certificate is signed with SM2-with-SM3
// (GM/T 0015): ca import refuses an SM2 CA certificate an ECDSA root
// signed, which the node would otherwise run.
func TestImportRefusesSM2UnderECDSA(t *testing.T) {
	e := newImportEnv(t, nil)
	const uri = "soft:ca/sm2-under-ecdsa"
	info, err := e.keys.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: keyService})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{Country: []string{"CN"}, Organization: []string{"Other PKI"}, CommonName: "SM2 Sub"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(2, 0, 0), BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign | smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, e.root, info.Public, e.key)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	err = e.importCA("sm2-under-ecdsa", uri, sub)
	if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "sm2 key under a ecdsa-p256 CA") {
		t.Errorf("import of an SM2 CA signed by an ECDSA root: %v, want a policy refusal", err)
	}
}
