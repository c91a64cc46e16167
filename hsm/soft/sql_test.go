package soft

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// storeConformance is the contract every Store meets; it runs on the SQL
// store (SQLite and PostgreSQL) and on the in-memory store of the unit tests.
func storeConformance(t *testing.T, st Store) {
	ctx := context.Background()
	if _, err := st.GetMaster(ctx); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("empty store: %v", err)
	}
	m := &MasterRecord{
		Kind: KindPassphrase, Check: []byte{1, 2, 3},
		KDF:    KDFParams{Time: 4294967295, MemoryKiB: 4194304, Threads: 255, Salt: []byte("sixteen byte slt")},
		Sealed: []byte{0, 0xff, 0}, ShareSet: []byte{9, 9, 9, 9}, Threshold: 3, Shares: 255,
		DevKey: []byte{7}, Created: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
	}
	if err := st.PutMaster(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != m.Kind || !bytes.Equal(got.Check, m.Check) || got.KDF.Time != m.KDF.Time || got.KDF.MemoryKiB != m.KDF.MemoryKiB ||
		got.KDF.Threads != m.KDF.Threads || !bytes.Equal(got.KDF.Salt, m.KDF.Salt) || !bytes.Equal(got.Sealed, m.Sealed) ||
		!bytes.Equal(got.ShareSet, m.ShareSet) || got.Threshold != 3 || got.Shares != 255 || !bytes.Equal(got.DevKey, m.DevKey) ||
		!got.Created.Equal(m.Created) {
		t.Fatalf("master round trip:\n got %+v\nwant %+v", got, m)
	}
	if err := st.PutMaster(ctx, &MasterRecord{Kind: KindDev, Check: []byte{1}, Created: time.Now()}); !errors.Is(err, ErrInitialized) {
		t.Fatalf("second master: %v", err)
	}

	key := func(uri, service string, public []byte) *KeyRecord {
		return &KeyRecord{URI: uri, Version: 1, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: service, Public: public,
			Nonce: []byte("twelve bytes"), Sealed: []byte{0, 1, 2, 0xfe}, Created: time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)}
	}
	equal := func(a, b *KeyRecord) bool {
		return a.URI == b.URI && a.Version == b.Version && a.Algorithm == b.Algorithm && a.Usage == b.Usage && a.Service == b.Service &&
			bytes.Equal(a.Public, b.Public) && bytes.Equal(a.Nonce, b.Nonce) && bytes.Equal(a.Sealed, b.Sealed) && a.Created.Equal(b.Created)
	}
	recs := []*KeyRecord{key("soft:tsa/x", "tsa", []byte{0x30, 0}), key("soft:ca/b", "ca", []byte{0x30, 1}), key("soft:ca/a", "ca", nil)}
	for _, r := range recs {
		if err := st.PutKey(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutKey(ctx, key("soft:ca/a", "other", nil)); !errors.Is(err, hsm.ErrExists) {
		t.Fatalf("duplicate key: %v", err)
	}
	for _, r := range recs {
		got, err := st.GetKey(ctx, r.URI)
		if err != nil || !equal(got, r) {
			t.Fatalf("key round trip %s: %v\n got %+v\nwant %+v", r.URI, err, got, r)
		}
	}
	if _, err := st.GetKey(ctx, "soft:none"); !errors.Is(err, hsm.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	list := func(service string) []string {
		rs, err := st.ListKeys(ctx, service)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.URI)
		}
		return out
	}
	if l := list(""); !slices.Equal(l, []string{"soft:ca/a", "soft:ca/b", "soft:tsa/x"}) {
		t.Errorf("list all: %v", l)
	}
	if l := list("ca"); !slices.Equal(l, []string{"soft:ca/a", "soft:ca/b"}) {
		t.Errorf("list ca: %v", l)
	}
	if l := list("seal"); len(l) != 0 {
		t.Errorf("list seal: %v", l)
	}
	if n, err := st.CountKeys(ctx); n != 3 || err != nil {
		t.Errorf("count %d, %v", n, err)
	}
	if err := st.DeleteKey(ctx, "soft:ca/b"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteKey(ctx, "soft:ca/b"); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	if _, err := st.GetKey(ctx, "soft:ca/b"); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("get deleted: %v", err)
	}
	// Racing inserts of one URI: exactly one wins, the others see ErrExists.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Go(func() {
			err := st.PutKey(ctx, key("soft:race", "ca", nil))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, hsm.ErrExists):
				t.Errorf("racing insert: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d racing inserts won", wins)
	}
}

func TestStoreConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) { storeConformance(t, newMemStore()) })
	storetest.Run(t, func(t *testing.T, db *store.DB) { storeConformance(t, NewSQLStore(db)) }, Migrations)
}

// dumpDatabase returns every cell of every table, as text and raw bytes.
func dumpDatabase(t *testing.T, db *store.DB) map[string]string {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if db.Driver() == store.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`
	}
	rows, err := db.Writer().QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if !slices.Contains(tables, "hsm_soft_keys") || !slices.Contains(tables, "hsm_soft_master") {
		t.Fatalf("tables %v", tables)
	}
	cells := map[string]string{}
	for _, table := range tables {
		rows, err := db.Writer().QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for r := 0; rows.Next(); r++ {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				var s string
				switch v := v.(type) {
				case []byte:
					s = string(v)
				case string:
					s = v
				default:
					s = fmt.Sprint(v)
				}
				cells[fmt.Sprintf("%s.%s row %d", table, cols[i], r)] = s
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return cells
}

// privateSecrets returns the private material of every key the manager has
// loaded: PKCS#8 encodings, private scalars and primes, symmetric keys.
func privateSecrets(t *testing.T, km *KeyManager) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	km.mu.RLock()
	defer km.mu.RUnlock()
	for uri, l := range km.cache {
		switch k := l.key.(type) {
		case []byte:
			out[uri+" key"] = bytes.Clone(k)
			continue
		case *sm2.PrivateKey:
			out[uri+" d"] = k.D.FillBytes(make([]byte, 32))
		case *ecdsa.PrivateKey:
			b, _ := k.Bytes()
			out[uri+" d"] = b
		case *rsa.PrivateKey:
			out[uri+" d"] = k.D.Bytes()
			out[uri+" p"], out[uri+" q"] = k.Primes[0].Bytes(), k.Primes[1].Bytes()
		}
		der, err := smx509.MarshalPKCS8PrivateKey(l.key)
		if err != nil {
			t.Fatal(err)
		}
		out[uri+" pkcs8"] = der
	}
	return out
}

// TestSQLPersistence creates keys of every kind on SQLite and PostgreSQL,
// uses them from a second, independent database handle (another process)
// after a restart, and scans every cell of the raw database for key bytes.
func TestSQLPersistence(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		km := newPassphraseKM(t, NewSQLStore(db), Config{})
		type keySpec struct {
			alg   hsm.Algorithm
			usage hsm.Usage
		}
		specs := []keySpec{
			{hsm.SM2, hsm.UsageSign}, {hsm.ECDSAP256, hsm.UsageSign}, {hsm.ECDSAP384, hsm.UsageSign},
			{hsm.RSA2048, hsm.UsageSign}, {hsm.SM2, hsm.UsageDecrypt}, {hsm.RSA2048, hsm.UsageDecrypt},
			{hsm.SM4, hsm.UsageWrap}, {hsm.AES256, hsm.UsageWrap},
		}
		pubs := map[string]any{}
		wrapped := map[string][]byte{}
		secretData := []byte("the data key to wrap, 32 bytes!!")
		for _, s := range specs {
			uri := fmt.Sprintf("soft:svc/%s-%s", s.alg, s.usage)
			info := create(t, km, uri, s.alg, s.usage, "svc")
			pubs[uri] = info.Public
			switch s.usage {
			case hsm.UsageSign:
				getSigner(t, km, uri, "svc")
			case hsm.UsageDecrypt:
				if _, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: uri, Service: "svc"}); err != nil {
					t.Fatal(err)
				}
			case hsm.UsageWrap:
				w, err := km.Wrap(ctx, &hsm.WrapRequest{URI: uri, Service: "svc", Data: secretData, AAD: []byte("aad")})
				if err != nil {
					t.Fatal(err)
				}
				wrapped[uri] = w
			}
		}
		secrets := privateSecrets(t, km)
		if len(secrets) < 2*len(specs) {
			t.Fatalf("only %d secrets collected", len(secrets))
		}
		mrec, _ := km.st.GetMaster(ctx)
		master, err := recoverMaster(mrec, Credentials{Passphrase: []byte(testPassphrase)}, false)
		if err != nil {
			t.Fatal(err)
		}
		secrets["master key"], secrets["kek"] = master, subkey(master, "key-encryption", kekLen)
		secrets["passphrase"], secrets["wrapped data"] = []byte(testPassphrase), secretData
		km.Close()

		// Restart: a new handle on the same database, a new key manager.
		db2 := storetest.Reopen(t, db, Migrations)
		km2, err := Open(ctx, NewSQLStore(db2), Config{Passphrase: []byte(testPassphrase)})
		if err != nil {
			t.Fatal(err)
		}
		defer km2.Close()
		st, err := km2.Status(ctx)
		if err != nil || st.Keys != len(specs) || st.Kind != KindPassphrase || !st.Unlocked {
			t.Fatalf("status after restart %+v, %v", st, err)
		}
		for uri, pub := range pubs {
			switch {
			case strings.HasSuffix(uri, "-sign"):
				s := getSigner(t, km2, uri, "svc")
				if !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Errorf("%s: public key changed across restart", uri)
				}
				if strings.Contains(uri, "sm2") {
					msg := []byte("after restart")
					sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
					if err != nil || !sm2.VerifyASN1WithSM2(pub.(*ecdsa.PublicKey), nil, msg, sig) {
						t.Errorf("%s: signature after restart: %v", uri, err)
					}
				}
			case strings.HasSuffix(uri, "-wrap"):
				got, err := km2.Unwrap(ctx, &hsm.WrapRequest{URI: uri, Service: "svc", Data: wrapped[uri], AAD: []byte("aad")})
				if err != nil || !bytes.Equal(got, secretData) {
					t.Errorf("%s: unwrap after restart: %v", uri, err)
				}
			default:
				if _, err := km2.Decrypter(ctx, &hsm.DecrypterRequest{URI: uri, Service: "svc"}); err != nil {
					t.Error(err)
				}
			}
		}
		if s2 := privateSecrets(t, km2); len(s2) != len(secrets)-4 {
			t.Errorf("after restart %d secrets, before %d", len(s2), len(secrets)-4)
		} else {
			for k, v := range s2 {
				if !bytes.Equal(v, secrets[k]) {
					t.Errorf("%s differs after restart", k)
				}
			}
		}

		// The raw scan: no private byte in any cell, in any encoding. It
		// must see the public keys, or it is not looking.
		cells := dumpDatabase(t, db2)
		var all strings.Builder
		sawPublic := 0
		for where, v := range cells {
			assertNoSecret(t, where, v, secrets)
			all.WriteString(v)
			for _, p := range pubs {
				if p == nil {
					continue
				}
				der, _ := smx509.MarshalPKIXPublicKey(p)
				if v == string(der) {
					sawPublic++
				}
			}
		}
		if sawPublic != len(specs)-2 {
			t.Errorf("scan found %d of %d public keys: it does not read the key table", sawPublic, len(specs)-2)
		}
		assertNoSecret(t, "database", all.String(), secrets)
	}, Migrations)
}

// TestSQLShamir initialises a shamir keystore in SQL and checks that no
// share and no master key byte is stored.
func TestSQLShamir(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		st := NewSQLStore(db)
		res, err := Init(ctx, st, InitRequest{Kind: KindShamir, Shares: 5, Threshold: 3})
		if err != nil {
			t.Fatal(err)
		}
		km, err := Open(ctx, st, Config{Shares: []string{res.Shares[4], res.Shares[0], res.Shares[2]}})
		if err != nil {
			t.Fatal(err)
		}
		defer km.Close()
		create(t, km, "soft:ca/root", hsm.SM2, hsm.UsageSign, "ca")
		getSigner(t, km, "soft:ca/root", "ca")
		secrets := privateSecrets(t, km)
		mrec, _ := st.GetMaster(ctx)
		master, err := recoverMaster(mrec, Credentials{Shares: res.Shares[1:4]}, false)
		if err != nil {
			t.Fatal(err)
		}
		secrets["master key"] = master
		for i, s := range res.Shares {
			dec, err := decodeShare(s)
			if err != nil {
				t.Fatal(err)
			}
			secrets[fmt.Sprintf("share %d", i+1)] = dec.y
			secrets[fmt.Sprintf("share %d text", i+1)] = []byte(strings.ReplaceAll(s, "-", "")[4:24])
		}
		for where, v := range dumpDatabase(t, db) {
			assertNoSecret(t, where, v, secrets)
		}
	}, Migrations)
}

// TestSQLScanFindsDevKey is the negative control of the raw scans: a dev
// keystore stores its master key in clear, and the scan must see it.
func TestSQLScanFindsDevKey(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		logger, _ := captureLog()
		km, err := Open(ctx, NewSQLStore(db), Config{AllowDev: true, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		km.Close()
		mrec, _ := NewSQLStore(db).GetMaster(ctx)
		found := false
		for _, v := range dumpDatabase(t, db) {
			for _, enc := range encodings(mrec.DevKey) {
				found = found || strings.Contains(v, enc)
			}
		}
		if !found {
			t.Error("the scan does not see the dev master key stored in clear")
		}
	}, Migrations)
}
