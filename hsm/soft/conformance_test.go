package soft_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/hsmtest"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestConformance runs the key-manager conformance suite on a passphrase
// keystore in SQLite and in PostgreSQL, through the exported API only.
func TestConformance(t *testing.T) {
	const passphrase = "conformance passphrase 2026"
	// Cheap argon2id: the suite opens the keystore a few times; production
	// refuses these parameters (TestProductionKDF).
	kdf := soft.KDFParams{Time: 1, MemoryKiB: 256, Threads: 1}
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		if _, err := soft.Init(context.Background(), soft.NewSQLStore(db),
			soft.InitRequest{Kind: soft.KindPassphrase, Passphrase: []byte(passphrase), KDF: &kdf}); err != nil {
			t.Fatal(err)
		}
		// The first Open uses db; later ones a second handle on the same
		// database, as a restarted process would have.
		opened := false
		open := func(t testing.TB, pass string) (*soft.KeyManager, error) {
			h := db
			if opened {
				h = storetest.Reopen(t, db, soft.Migrations)
			}
			opened = true
			return soft.Open(context.Background(), soft.NewSQLStore(h), soft.Config{
				Passphrase: []byte(pass),
				Logger:     slog.New(slog.DiscardHandler), // failed unlocks are logged
			})
		}
		// The signers do not touch the database: SQLite gets every
		// algorithm and the full message count, PostgreSQL (what the suite
		// checks there is storage: create, list, delete, restart) fewer.
		algs := []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048, hsm.RSA3072}
		messages := 0
		if db.Driver() == store.Postgres {
			algs, messages = []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256}, hsmtest.Sample
		}
		hsmtest.Run(t, hsmtest.Backend{
			Name: "passphrase",
			Open: func(t testing.TB) hsm.KeyManager {
				km, err := open(t, passphrase)
				if err != nil {
					t.Fatalf("soft.Open: %v", err)
				}
				return km
			},
			URI:               func(name string) string { return "soft:conformance/" + name },
			Algorithms:        algs,
			DecryptAlgorithms: []hsm.Algorithm{hsm.SM2, hsm.RSA2048},
			WrongPIN: func(t testing.TB) error {
				km, err := open(t, "not the passphrase")
				if err == nil {
					km.Close()
				}
				return err
			},
			Location:    hsm.LocationSoftware,
			SM2Location: hsm.LocationSoftware,
			Messages:    messages,
		})
	}, soft.Migrations)
}
