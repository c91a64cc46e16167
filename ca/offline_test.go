package ca

import (
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

func newOfflineRootEnv(t *testing.T, alg string) *offlineRootEnv {
	t.Helper()
	e := &offlineRootEnv{db: storetest.SQLite(t, append(node.BaseMigrations(), New().Migrations()...)...), clk: clock.New(), alg: alg}
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
