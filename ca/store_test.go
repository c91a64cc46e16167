package ca

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestStore is the conformance test of the CA tables on SQLite and
// PostgreSQL: serials are unique per issuer, an Idempotency-Key is unique
// per issuer while requests without one coexist, and rows read back as
// written.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
		tx := func(fn func(tx *store.Tx) error) error { return db.Tx(ctx, fn) }
		for _, id := range []string{"a", "b"} {
			if err := tx(func(tx *store.Tx) error {
				return insertAuthority(ctx, tx, authorityRow{id: id, algorithm: "sm2", keyURI: "soft:ca/" + id, cert: []byte{0x30, 0}, created: now})
			}); err != nil {
				t.Fatal(err)
			}
		}
		row, err := loadAuthority(ctx, db, "a")
		if err != nil || row.keyURI != "soft:ca/a" || !row.created.Equal(now) {
			t.Fatalf("loadAuthority: %+v, %v", row, err)
		}
		if _, err := loadAuthority(ctx, db, "zz"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown CA: %v, want ErrNotFound", err)
		}
		cert := func(issuer, serial, key string) *certRow {
			return &certRow{issuer: issuer, serial: serial, subject: "CN=x", profile: "server-tls", status: "good", requester: "acct",
				notBefore: now, notAfter: now.Add(time.Hour), created: now, der: []byte{1, 2, 3}, idempotencyKey: key, requestHash: []byte{9}}
		}
		insert := func(c *certRow) error { return tx(func(tx *store.Tx) error { return insertCert(ctx, tx, c) }) }
		for _, c := range []*certRow{cert("a", "01aa", ""), cert("a", "01bb", ""), cert("b", "01aa", ""), cert("a", "01cc", "k1"), cert("b", "01dd", "k1")} {
			if err := insert(c); err != nil {
				t.Fatalf("insert %s/%s: %v", c.issuer, c.serial, err)
			}
		}
		for name, c := range map[string]*certRow{"same serial": cert("a", "01aa", ""), "same key": cert("a", "01ee", "k1")} {
			if err := insert(c); !store.IsUniqueViolation(err) {
				t.Errorf("%s: %v, want a unique violation", name, err)
			}
		}
		got, err := certByIdempotencyKey(ctx, db, "a", "k1")
		if err != nil || got.serial != "01cc" || string(got.requestHash) != "\x09" || !got.notAfter.Equal(now.Add(time.Hour)) {
			t.Fatalf("by key: %+v, %v", got, err)
		}
		got, err = certBySerial(ctx, db, "a", "01aa")
		if err != nil || got.idempotencyKey != "" || got.status != "good" || string(got.der) != "\x01\x02\x03" {
			t.Fatalf("by serial: %+v, %v", got, err)
		}
		if _, err := certBySerial(ctx, db, "a", "01dd"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("serial of another issuer: %v, want ErrNotFound", err)
		}
		if err := tx(func(tx *store.Tx) error { return insertOutbox(ctx, tx, "issued", "a", "01aa", now) }); err != nil {
			t.Fatal(err)
		}
	}, New().Migrations()...)
}
