package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
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
