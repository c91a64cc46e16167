package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/ceremony/ceremonytest"
	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// offlineRootEnv is the data directory of an offline root's machine (its
// database and audit log) with a root made by the example root ceremony
// of alg and recorded there, as `govtrust ca init-root` leaves it.
type offlineRootEnv struct {
	db      *store.DB
	log     *audit.Log
	clk     clock.Clock
	alg     string
	id      string
	root    *smx509.Certificate
	rootKey crypto.Signer
}

const offlineURLBase = "http://pki.example.gov.cn/pki/"

func newOfflineRootEnv(t *testing.T, alg string) *offlineRootEnv {
	t.Helper()
	return offlineRootEnvOn(t, alg, storetest.SQLite(t, offlineMigrations()...))
}

func offlineMigrations() []store.Migrations {
	return append(node.BaseMigrations(), New().Migrations()...)
}

// offlineRootEnvOn is newOfflineRootEnv on db (migrated with
// offlineMigrations).
func offlineRootEnvOn(t *testing.T, alg string, db *store.DB) *offlineRootEnv {
	t.Helper()
	e := &offlineRootEnv{db: db, clk: clock.New(), alg: alg}
	e.log = audit.New("root-test", e.clk)
	f, err := ceremony.Load("ceremony/testdata/root-" + alg + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.id, e.rootKey = f.CA, offlineKey(t, alg)
	der, err := ceremony.SelfSign(f, e.rootKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if e.root, err = smx509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	rec := audit.Record{Actor: "test", Action: "ca.ceremony.root", Object: "ca/" + e.id, Outcome: audit.Success}
	if err := RecordOfflineRoot(e.ctx(), e.db, e.log, OfflineRoot{ID: e.id, KeyURI: f.Key.URI, Cert: e.root, Now: time.Now()}, rec); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *offlineRootEnv) ctx() context.Context { return audit.WithActor(context.Background(), "test") }

func offlineKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	if alg == "sm2" {
		k, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sub signs a sub-CA certificate id under the root with the example sub
// ceremony (its crl_urls name the root's CRL URL); edit changes the file
// first.
func (e *offlineRootEnv) sub(t *testing.T, id string, edit func(*ceremony.File)) *smx509.Certificate {
	t.Helper()
	f, err := ceremony.Load("ceremony/testdata/sub-" + e.alg + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.CA, f.Key.URI = id, "soft:ca/"+id
	if edit != nil {
		edit(f)
	}
	csr, err := ceremony.CSR(f, offlineKey(t, e.alg))
	if err != nil {
		t.Fatal(err)
	}
	f.RequestSHA256 = ceremony.Fingerprint(csr)
	der, err := ceremony.SignCSR(f, csr, e.root, e.rootKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := RecordCACertificate(e.ctx(), e.db, e.log, c, "sub-ca", time.Now()); err != nil || got != e.id {
		t.Fatalf("RecordCACertificate = %q, %v; want it under %s", got, err, e.id)
	}
	return c
}

func (e *offlineRootEnv) request(revoke ...OfflineRevocation) OfflineCRLRequest {
	return OfflineCRLRequest{CA: e.id, Issuer: e.root, KeyURI: "soft:ca/" + e.id, Signer: e.rootKey, URL: offlineURLBase + e.id + ".crl",
		Validity: 180 * 24 * time.Hour, Revoke: revoke,
		Record: audit.Record{Actor: "test", Action: "ca.ceremony.crl", Object: "ca/" + e.id, Outcome: audit.Success, Details: map[string]any{"ceremony_sm3": "00"}}}
}

// TestSignOfflineCRL: a CRL ceremony on the root's data directory revokes a
// sub-CA certificate the root signed (recorded there by its ceremony) and
// signs the root's CRL with the online roots' profile: the root's AKI, a
// critical IDP naming the CRL URL the sub-CA certificate carries (without
// onlyContainsCACerts), nextUpdate as long as the ceremony asks (up to 365
// days, never more), numbers that only go up, and every revocation of the
// data directory listed. Each kind of bad input is refused before anything
// is revoked or signed.
func TestSignOfflineCRL(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		for _, alg := range []string{"sm2", "ecdsa"} {
			t.Run(alg, func(t *testing.T) { testSignOfflineCRL(t, offlineRootEnvOn(t, alg, db)) })
		}
	}, offlineMigrations()...)
}

func testSignOfflineCRL(t *testing.T, e *offlineRootEnv) {
	alg := e.alg
	sub := e.sub(t, "dept-sub", nil)
	other := e.sub(t, "other-sub", nil)
	ctx := e.ctx()

	res, err := SignOfflineCRL(ctx, e.db, e.log, e.clk, e.request(OfflineRevocation{Cert: sub, Reason: "cACompromise"}))
	if err != nil {
		t.Fatal(err)
	}
	rl, err := crl.Verify(res.DER, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.LintOffline(rl, e.root); err != nil {
		t.Fatal(err)
	}
	sc, err := crl.ParseScope(rl)
	if err != nil || sc.IDP == nil || len(sc.IDP.FullName) != 1 || sc.IDP.FullName[0] != sub.CRLDistributionPoints[0] || sc.IDP.OnlyCA || sc.IDP.OnlyUser {
		t.Fatalf("IDP %+v (%v), want the sub-CA's distribution point %v", sc, err, sub.CRLDistributionPoints)
	}
	if !bytes.Equal(rl.AuthorityKeyId, e.root.SubjectKeyId) || rl.NextUpdate.Sub(rl.ThisUpdate) != 180*24*time.Hour {
		t.Errorf("AKI %x, validity %v", rl.AuthorityKeyId, rl.NextUpdate.Sub(rl.ThisUpdate))
	}
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(sub.SerialNumber) != 0 ||
		rl.RevokedCertificateEntries[0].ReasonCode != crl.ReasonCACompromise {
		t.Fatalf("entries %+v", rl.RevokedCertificateEntries)
	}
	if len(res.Revoked) != 1 || res.Number != rl.Number.Int64() {
		t.Fatalf("result %+v", res)
	}
	c, err := Certificate(ctx, e.db, e.id, serialHex(sub.SerialNumber))
	if err != nil || c.Status != "revoked" || c.Reason != "cACompromise" {
		t.Fatalf("the revocation in the data directory: %+v %v", c, err)
	}
	if info, der, _, err := CurrentCRL(ctx, e.db, e.id); err != nil || !bytes.Equal(der, res.DER) {
		t.Fatalf("the CRL in the data directory: %+v %v", info, err)
	}

	// The next ceremony: longest validity, nothing new revoked, the
	// number above, the entry kept.
	req := e.request()
	req.Validity = crl.MaxOfflineValidity
	res2, err := SignOfflineCRL(ctx, e.db, e.log, e.clk, req)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Number <= res.Number || res2.Entries != 1 {
		t.Fatalf("second CRL %d with %d entries after %d", res2.Number, res2.Entries, res.Number)
	}
	// The same revocation again changes nothing; another reason is
	// refused.
	res3, err := SignOfflineCRL(ctx, e.db, e.log, e.clk, e.request(OfflineRevocation{Cert: sub, Reason: "cACompromise"}))
	if err != nil || len(res3.Already) != 1 || len(res3.Revoked) != 0 {
		t.Fatalf("the same revocation again: %+v %v", res3, err)
	}

	stranger := newOfflineRootEnv(t, alg).sub(t, "stranger", nil)
	otherURL := e.sub(t, "elsewhere", func(f *ceremony.File) { f.CRLURLs = []string{"http://crl.example.org/other.crl"} })
	var number int64
	if err := e.db.ReadRow(ctx, "SELECT last FROM ca_crl_numbers WHERE issuer_id = ?", e.id).Scan(&number); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		req  OfflineCRLRequest
		want string
	}{
		{"reason of end entities", e.request(OfflineRevocation{Cert: other, Reason: "privilegeWithdrawn"}), "reason"},
		{"another reason", e.request(OfflineRevocation{Cert: other, Reason: "superseded"}, OfflineRevocation{Cert: sub, Reason: "superseded"}), "already revoked"},
		{"not signed by the root", e.request(OfflineRevocation{Cert: stranger, Reason: "superseded"}), "was not signed by"},
		{"another distribution point", e.request(OfflineRevocation{Cert: otherURL, Reason: "superseded"}), "relying parties would not find"},
		{"over 365 days", func() OfflineCRLRequest { r := e.request(); r.Validity = crl.MaxOfflineValidity + time.Hour; return r }(), "validity"},
		{"another key", func() OfflineCRLRequest { r := e.request(); r.Signer = offlineKey(t, alg); return r }(), "not the key"},
		{"another root certificate", func() OfflineCRLRequest {
			r, o := e.request(), newOfflineRootEnv(t, alg)
			r.Issuer, r.Signer = o.root, o.rootKey
			return r
		}(), "is not the certificate recorded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := SignOfflineCRL(ctx, e.db, e.log, e.clk, c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	// Nothing was revoked or signed by the refused ceremonies.
	if c, err := Certificate(ctx, e.db, e.id, serialHex(other.SerialNumber)); err != nil || c.Status != "good" {
		t.Fatalf("%+v %v", c, err)
	}
	var after int64
	if err := e.db.ReadRow(ctx, "SELECT last FROM ca_crl_numbers WHERE issuer_id = ?", e.id).Scan(&after); err != nil || after != number {
		t.Fatalf("CRL counter %d after the refusals, was %d (%v)", after, number, err)
	}
}

// TestRecordOfflineRoot: a root ceremony records its root once, and not a
// certificate that is not a self-signed CA, nor the key of another CA.
func TestRecordOfflineRoot(t *testing.T) {
	e := newOfflineRootEnv(t, "ecdsa")
	ctx := e.ctx()
	rec := audit.Record{Actor: "test", Action: "ca.ceremony.root", Object: "ca/x", Outcome: audit.Success}
	sub := e.sub(t, "dept-sub", nil)
	for _, c := range []struct {
		name string
		root OfflineRoot
		want string
	}{
		{"again", OfflineRoot{ID: e.id, KeyURI: "soft:ca/again", Cert: e.root}, "recorded in this data directory already"},
		{"same key", OfflineRoot{ID: "copy", KeyURI: "soft:ca/copy", Cert: e.root}, "is the key of CA " + e.id},
		{"same key URI", OfflineRoot{ID: "copy", KeyURI: "soft:ca/" + e.id, Cert: newOfflineRootEnv(t, "ecdsa").root}, "is the key of CA " + e.id},
		{"not self-signed", OfflineRoot{ID: "sub", KeyURI: "soft:ca/sub", Cert: sub}, "not a self-signed CA certificate"},
		{"delta twin", OfflineRoot{ID: e.id + "-delta", KeyURI: "soft:ca/d", Cert: newOfflineRootEnv(t, "ecdsa").root}, "choose another id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.root.Now = time.Now()
			if err := RecordOfflineRoot(ctx, e.db, e.log, c.root, rec); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// offlineCRL signs, with the key of the offline root of ie, a CRL of that
// root listing serials; mod changes the template first.
func offlineCRL(t *testing.T, ie *importEnv, number int64, mod func(*crl.Template), serials ...*big.Int) []byte {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	tmpl := crl.Template{Issuer: ie.root, Number: big.NewInt(number), ThisUpdate: now, NextUpdate: now.Add(90 * 24 * time.Hour), Offline: true,
		IDP: &crl.IssuingDistributionPoint{FullName: []string{offlineURLBase + "offline-root.crl"}}}
	if mod != nil {
		mod(&tmpl)
	}
	var es []crl.Entry
	for _, s := range serials {
		es = append(es, crl.Entry{Serial: s, RevokedAt: now.Add(-time.Minute), Reason: crl.ReasonCACompromise})
	}
	if len(es) == 2 && es[0].Serial.Cmp(es[1].Serial) > 0 {
		es[0], es[1] = es[1], es[0]
	}
	var buf bytes.Buffer
	seq := func(yield func(crl.Entry, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
	if err := crl.Build(context.Background(), &buf, tmpl, seq, int64(len(es)), ie.key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestImportOfflineCRL: a node imports the CRL of the offline root of a CA
// it runs only when the CRL verifies with that root, is a current full CRL
// of the platform's profile, names the CA id it is served under, and has a
// number above the last imported. The CA of the node that the CRL lists is
// marked revoked with it, the directory is told, and the same CRL imported
// again changes nothing.
func TestImportOfflineCRL(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) { testImportOfflineCRL(t, importEnvOn(t, db)) }, offlineMigrations()...)
}

// importEnvOn is newImportEnv on db (migrated with offlineMigrations).
func importEnvOn(t *testing.T, db *store.DB) *importEnv {
	t.Helper()
	cfg := config.Defaults()
	clk := clock.New()
	log := audit.New("import-test", clk)
	keys, err := node.OpenKeys(context.Background(), &cfg, node.KeysOptions{DB: db, Audit: log, Logger: slog.New(slog.DiscardHandler), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	root, key := ceremonytest.ExternalRoot(t, "Offline Root")
	return &importEnv{db: db, log: log, keys: keys, root: root, key: key}
}

func testImportOfflineCRL(t *testing.T, ie *importEnv) {
	ctx := audit.WithActor(context.Background(), "test")
	pub := ie.newKey(t, "soft:ca/dept-sub")
	sub := ie.subCA(t, "Dept Sub", pub)
	if err := ie.importCA("dept-sub", "soft:ca/dept-sub", sub); err != nil {
		t.Fatal(err)
	}
	other := ie.subCA(t, "Not Imported", ie.newKey(t, "soft:ca/other"))
	now := time.Now()

	first := offlineCRL(t, ie, 100, nil)
	res, err := ImportOfflineCRL(ctx, ie.db, ie.log, first, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if res.CA != "offline-root" || res.URL != "/pki/offline-root.crl" || len(res.RevokedCAs) != 0 || res.Already {
		t.Fatalf("first import %+v", res)
	}
	var a *AuthorityRecord
	err = ie.db.Read(ctx, func(q store.Querier) error {
		var err error
		a, err = AuthorityRecordOf(ctx, q, "offline-root")
		return err
	})
	if err != nil || !bytes.Equal(a.Cert, ie.root.Raw) || !bytes.Equal(a.CRL, first) || a.CRLNumber != 100 {
		t.Fatalf("the directory's record of the offline root: %+v %v", a, err)
	}
	// A CA of the node may not take the offline root's id: its CRLs would
	// hide the ARL at /pki/offline-root.crl.
	if err := CheckCAID(ctx, ie.db, "offline-root"); !errors.Is(err, ErrConflict) {
		t.Errorf("CheckCAID(offline-root) after its CRL was imported: %v, want a conflict", err)
	}
	clash := ie.subCA(t, "Clash Sub", ie.newKey(t, "soft:ca/clash"))
	if err := ie.importCA("offline-root", "soft:ca/clash", clash); !errors.Is(err, ErrConflict) {
		t.Errorf("import of a CA named offline-root: %v, want a conflict", err)
	}

	// The root revokes the imported CA (and one the node does not run).
	second := offlineCRL(t, ie, 200, nil, sub.SerialNumber, other.SerialNumber)
	res, err = ImportOfflineCRL(ctx, ie.db, ie.log, second, "offline-root", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RevokedCAs) != 1 || res.RevokedCAs[0] != "dept-sub" || res.Entries != 2 {
		t.Fatalf("second import %+v", res)
	}
	row, err := loadAuthority(ctx, ie.db, "dept-sub")
	if err != nil || row.status != statusRevoked {
		t.Fatalf("dept-sub after the root's CRL: %+v %v", row, err)
	}
	var events int
	if err := ie.db.ReadRow(ctx, "SELECT COUNT(*) FROM ca_outbox WHERE event = 'crl_published' AND issuer_id = 'offline-root'").Scan(&events); err != nil || events != 2 {
		t.Fatalf("%d crl_published events (%v)", events, err)
	}
	if res, err := ImportOfflineCRL(ctx, ie.db, ie.log, second, "", now); err != nil || !res.Already {
		t.Fatalf("the same CRL again: %+v %v", res, err)
	}

	tampered := bytes.Clone(second)
	tampered[len(tampered)-2] ^= 1
	stranger := newImportEnv(t, nil)
	for _, c := range []struct {
		name string
		der  []byte
		id   string
		want error
		msg  string
	}{
		{"older", offlineCRL(t, ie, 150, nil), "", ErrConflict, "not above"},
		{"same number", offlineCRL(t, ie, 200, nil), "", ErrConflict, "not above"},
		{"tampered", tampered, "", ErrPolicy, "does not verify"},
		{"unknown root", offlineCRL(t, stranger, 300, nil), "", ErrPolicy, "any offline CA this node knows"},
		{"not a CRL", []byte("not a CRL"), "", ErrRequest, "not a CRL"},
		{"delta", offlineCRL(t, ie, 300, func(tp *crl.Template) { tp.DeltaBase = big.NewInt(200) }), "", ErrRequest, "delta"},
		{"expired", offlineCRL(t, ie, 300, func(tp *crl.Template) {
			tp.ThisUpdate, tp.NextUpdate = now.Add(-48*time.Hour), now.Add(-time.Hour)
		}), "", ErrPolicy, "expired"},
		{"not yet valid", offlineCRL(t, ie, 300, func(tp *crl.Template) {
			tp.ThisUpdate, tp.NextUpdate = now.Add(time.Hour), now.Add(48*time.Hour)
		}), "", ErrPolicy, "not yet valid"},
		{"another id", offlineCRL(t, ie, 300, nil), "gov-root", ErrRequest, "names offline-root"},
		{"no id", offlineCRL(t, ie, 300, func(tp *crl.Template) { tp.IDP = nil }), "", ErrRequest, "give the CA id"},
		{"a CA of the node", offlineCRL(t, ie, 300, func(tp *crl.Template) { tp.IDP = nil }), "dept-sub", ErrConflict, "makes its own CRLs"},
		{"user certificates only", offlineCRL(t, ie, 300, func(tp *crl.Template) { tp.IDP.OnlyUser = true }), "", ErrRequest, "onlyContainsUserCerts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ImportOfflineCRL(ctx, ie.db, ie.log, c.der, c.id, now)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v with %q", err, c.want, c.msg)
			}
		})
	}
	var n int
	if err := ie.db.ReadRow(ctx, "SELECT COUNT(*) FROM ca_offline_crls").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d CRLs stored after the refusals (%v), want 2", n, err)
	}
}

// TestServeOfflineCRL: a node serves the imported CRL of an offline root at
// /pki/{root}.crl, with the validators and caching of its own CRLs, and the
// root's certificate at /pki/{root}.crt; an unknown name stays 404.
func TestServeOfflineCRL(t *testing.T) {
	tn := startNode(t, t.TempDir())
	ie := &importEnv{db: tn.db(), log: tn.n.Env().Audit, keys: tn.n.Env().Keys}
	ie.root, ie.key = ceremonytest.ExternalRoot(t, "Offline Root")
	pub := ie.newKey(t, "soft:ca/dept-sub")
	if err := ie.importCA("dept-sub", "soft:ca/dept-sub", ie.subCA(t, "Dept Sub", pub)); err != nil {
		t.Fatal(err)
	}
	if code, _ := tn.getPublic("/pki/offline-root.crl", nil); code != 404 {
		t.Fatalf("before the import: %d", code)
	}
	der := offlineCRL(t, ie, 100, nil)
	if _, err := ImportOfflineCRL(audit.WithActor(context.Background(), "test"), ie.db, ie.log, der, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	code, h, body := tn.getPublicFull("/pki/offline-root.crl", nil)
	if code != 200 || !bytes.Equal(body, der) || h.Get("Content-Type") != "application/pkix-crl" || h.Get("ETag") == "" || !strings.Contains(h.Get("Cache-Control"), "max-age=") {
		t.Fatalf("GET /pki/offline-root.crl: %d %v", code, h)
	}
	if code, _, _ := tn.getPublicFull("/pki/offline-root.crl", map[string]string{"If-None-Match": h.Get("ETag")}); code != 304 {
		t.Fatalf("revalidation: %d", code)
	}
	newer := offlineCRL(t, ie, 101, nil)
	if _, err := ImportOfflineCRL(audit.WithActor(context.Background(), "test"), ie.db, ie.log, newer, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, _, body := tn.getPublicFull("/pki/offline-root.crl", map[string]string{"If-None-Match": h.Get("ETag")}); code != 200 || !bytes.Equal(body, newer) {
		t.Fatalf("after a newer import: %d", code)
	}
	if code, body := tn.getPublic("/pki/offline-root.crt", nil); code != 200 || !bytes.Equal(body, ie.root.Raw) {
		t.Fatalf("GET /pki/offline-root.crt: %d", code)
	}
	for _, p := range []string{"/pki/nobody.crl", "/pki/nobody.crt", "/pki/offline-root-delta.crl"} {
		if code, _ := tn.getPublic(p, nil); code != 404 {
			t.Errorf("GET %s: %d", p, code)
		}
	}
	// The node's own CRLs are served as before.
	if code, _ := tn.getPublic("/pki/ecdsa-root.crl", nil); code != 200 {
		t.Errorf("GET /pki/ecdsa-root.crl: %d", code)
	}
}

// getPublic GETs path from the plain HTTP listener.
func (tn *testNode) getPublic(path string, hdr map[string]string) (int, []byte) {
	code, _, body := tn.getPublicFull(path, hdr)
	return code, body
}

func (tn *testNode) getPublicFull(path string, hdr map[string]string) (int, http.Header, []byte) {
	tn.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+tn.n.Addresses().HTTP+path, nil)
	if err != nil {
		tn.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, body := tn.send(req)
	return resp.StatusCode, resp.Header, body
}

// TestOfflineIDDeltaTwin: a CA of the node named X serves /pki/X-delta.crl,
// so it may not be made while the node serves an offline CA's CRL there.
func TestOfflineIDDeltaTwin(t *testing.T) {
	ie := importEnvOn(t, storetest.SQLite(t, offlineMigrations()...))
	ctx := context.Background()
	if _, err := ie.db.Exec(ctx, `INSERT INTO ca_offline_crls (ca_id, number, issuer, this_update, next_update, der, created_at)
		VALUES ('corp-delta', 1, ?, '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', ?, '2026-01-01T00:00:00Z')`, ie.root.Raw, []byte{0x30, 0}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"corp", "corp-delta"} {
		if err := CheckCAID(ctx, ie.db, id); !errors.Is(err, ErrConflict) {
			t.Errorf("CheckCAID(%s) beside offline CA corp-delta: %v, want a conflict", id, err)
		}
	}
	if err := CheckCAID(ctx, ie.db, "corp-2"); err != nil {
		t.Errorf("CheckCAID(corp-2): %v", err)
	}
}
