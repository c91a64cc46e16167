package signature

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestKeyStore records and reads back key rows on SQLite and PostgreSQL
// (the same migration in both dialects): certificates and chains intact,
// the key URI unique, an unknown key ErrNotFound.
func TestKeyStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now()
		rk := sm2Key(t)
		root := mkCert(t, "root", rk, nil, nil, true, now.Add(-time.Hour), now.Add(time.Hour))
		lk := sm2Key(t)
		leaf := mkCert(t, "leaf", lk, root, rk, false, now.Add(-time.Hour), now.Add(time.Hour))
		s := &Service{env: &node.Env{DB: db}, signers: map[string]*heldKey{}}
		k := &Key{ID: "k1", Name: "n", Owner: "acc", Org: "demo", Algorithm: "sm2", Created: now, keyURI: "soft:signature/k1"}
		if err := db.Tx(ctx, func(tx *store.Tx) error { return insertKey(ctx, tx, k, leaf.Raw, [][]byte{root.Raw}, "test") }); err != nil {
			t.Fatal(err)
		}
		got, err := s.key(ctx, "k1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.cert.Equal(leaf) || len(got.chain) != 1 || !got.chain[0].Equal(root) || got.Owner != "acc" || got.keyURI != k.keyURI || got.Disabled {
			t.Fatalf("read back %+v", got)
		}
		k2 := *k
		k2.ID = "k2"
		if err := db.Tx(ctx, func(tx *store.Tx) error { return insertKey(ctx, tx, &k2, leaf.Raw, nil, "test") }); !store.IsUniqueViolation(err) {
			t.Fatalf("a second row with the same key URI: %v", err)
		}
		if _, err := s.key(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
	}, (&Service{}).Migrations()...)
}
