package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestStore is the conformance test of the CA tables on SQLite and
// PostgreSQL: serials are unique per issuer, an Idempotency-Key is unique
// per issuer and requester while requests without one coexist, it is
// found across the generations of a lineage, and rows read back as
// written.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
		tx := func(fn func(tx *store.Tx) error) error { return db.Tx(ctx, fn) }
		for _, id := range []string{"a", "b", "a-g2"} {
			der := selfSignedCA(t, id)
			row := authorityRow{id: id, algorithm: "sm2", keyURI: "soft:ca/" + id, cert: der, created: now}
			if id == "a-g2" {
				row.lineage, row.generation, row.status, row.origin = "a", 2, "retired", "rollover"
			}
			if err := tx(func(tx *store.Tx) error { return insertAuthority(ctx, tx, row) }); err != nil {
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
			return &certRow{issuer: issuer, serial: serial, subject: "CN=x", profile: "server-tls", status: "good", requester: "acct", requesterOrg: "dept",
				notBefore: now, notAfter: now.Add(time.Hour), created: now, der: []byte{1, 2, 3}, idempotencyKey: key, requestHash: []byte{9}}
		}
		insert := func(c *certRow) error { return tx(func(tx *store.Tx) error { return insertCert(ctx, tx, c) }) }
		other := cert("a", "01ff", "k1")
		other.requester = "acct-2"
		g2 := cert("a-g2", "01ab", "k2")
		for _, c := range []*certRow{cert("a", "01aa", ""), cert("a", "01bb", ""), cert("b", "01aa", ""), cert("a", "01cc", "k1"), cert("b", "01dd", "k1"), other, g2} {
			if err := insert(c); err != nil {
				t.Fatalf("insert %s/%s: %v", c.issuer, c.serial, err)
			}
		}
		for name, c := range map[string]*certRow{"same serial": cert("a", "01aa", ""), "same key": cert("a", "01ee", "k1")} {
			if err := insert(c); !store.IsUniqueViolation(err) {
				t.Errorf("%s: %v, want a unique violation", name, err)
			}
		}
		got, err := certByIdempotencyKey(ctx, db, "a", "acct", "k1")
		if err != nil || got.issuer != "a" || got.serial != "01cc" || string(got.requestHash) != "\x09" || !got.notAfter.Equal(now.Add(time.Hour)) {
			t.Fatalf("by key: %+v, %v", got, err)
		}
		if got, err := certByIdempotencyKey(ctx, db, "a", "acct-2", "k1"); err != nil || got.serial != "01ff" {
			t.Fatalf("by key of another requester: %+v, %v", got, err)
		}
		if got, err := certByIdempotencyKey(ctx, db, "a", "acct", "k2"); err != nil || got.issuer != "a-g2" || got.serial != "01ab" {
			t.Fatalf("by key, another generation of the lineage: %+v, %v", got, err)
		}
		for _, c := range [][3]string{{"b", "acct", "k2"}, {"a", "acct-3", "k1"}} {
			if _, err := certByIdempotencyKey(ctx, db, c[0], c[1], c[2]); !errors.Is(err, ErrNotFound) {
				t.Errorf("by key %v: %v, want ErrNotFound", c, err)
			}
		}
		got, err = certBySerial(ctx, db, "a", "01aa")
		if err != nil || got.idempotencyKey != "" || got.status != "good" || string(got.der) != "\x01\x02\x03" || got.requesterOrg != "dept" || got.reason != -1 || !got.revokedAt.IsZero() {
			t.Fatalf("by serial: %+v, %v", got, err)
		}
		if _, err := certBySerial(ctx, db, "a", "01dd"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("serial of another issuer: %v, want ErrNotFound", err)
		}

		// Outbox events queued in a transaction are written at its commit,
		// in the order queued (100 rows: INSERTs of 64, 32 and 4); those of
		// a transaction that fails are not.
		if err := tx(func(tx *store.Tx) error {
			for i := range 99 {
				insertOutbox(tx, "issued", "a", fmt.Sprintf("01%04x", i), now)
			}
			insertCRLOutbox(tx, "a", "delta", 7, now)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		if err := tx(func(tx *store.Tx) error {
			insertOutbox(tx, "revoked", "a", "01aa", now)
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("failed transaction: %v", err)
		}
		rows, err := db.Query(ctx, "SELECT event, serial, COALESCE(crl_kind, 'NULL'), COALESCE(crl_number, -1), created_at FROM ca_outbox ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		var events []string
		for rows.Next() {
			var ev, serial, kind, created string
			var number int64
			if err := rows.Scan(&ev, &serial, &kind, &number, &created); err != nil {
				t.Fatal(err)
			}
			if created != now.Format(timeFormat) {
				t.Errorf("event %s %s created_at %q", ev, serial, created)
			}
			events = append(events, fmt.Sprintf("%s %s %s %d", ev, serial, kind, number))
		}
		rows.Close()
		// The three ca_added events of the authorities come first.
		if len(events) != 103 || events[3] != "issued 010000 NULL -1" || events[101] != "issued 010062 NULL -1" || events[102] != "crl_published  delta 7" {
			t.Fatalf("%d outbox events: %q ... %q", len(events), events[:min(4, len(events))], events[max(0, len(events)-2):])
		}
		for i, ev := range events[3:102] {
			if want := fmt.Sprintf("issued 01%04x NULL -1", i); ev != want {
				t.Fatalf("event %d: %q, want %q", i+3, ev, want)
			}
		}
	}, New().Migrations()...)
}

// TestCRLStore builds CRLs from the revocation table on SQLite and
// PostgreSQL: entries in numeric serial order whatever their hex length and
// the database collation, numbers 1, 2, ... from the counter row, both CRLs
// stored, the newest served.
func TestCRLStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := selfSign(spec{id: "r", cn: "test root"}, key, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		s := New()
		s.env = &node.Env{DB: db, Audit: audit.New("test", clk), Clock: clk, Logger: slog.New(slog.DiscardHandler)}
		a := &authority{id: "r", cert: cert, signer: key}
		s.cas["r"] = a
		now := clk.Now()
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			if err := insertAuthority(ctx, tx, authorityRow{id: "r", algorithm: "ecdsa-p256", keyURI: "soft:ca/r", cert: der, created: now}); err != nil {
				return err
			}
			for i, serial := range []string{"ab0000", "0a", "7f00aa", "01ff", "02"} {
				c := &certRow{issuer: "r", serial: serial, subject: "CN=x", profile: "p", status: "revoked", requester: "a",
					notBefore: now, notAfter: now.Add(time.Hour), created: now, der: []byte{1}}
				if err := insertCert(ctx, tx, c); err != nil {
					return err
				}
				if i == 4 {
					continue // stays good
				}
				if _, err := tx.Exec(ctx, "UPDATE ca_certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?",
					now.Add(-time.Minute).Format(timeFormat), i, serial); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, "UPDATE ca_certificates SET status = 'good' WHERE serial = '02'")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var want int64
		for i := range 2 {
			want = crl.NextNumber(want, clk.Now())
			c, err := s.generateCRL(ctx, a)
			if err != nil {
				t.Fatalf("CRL %d: %v", i, err)
			}
			if c.number != want {
				t.Fatalf("number %d, want %d", c.number, want)
			}
			clk.Add(time.Second)
		}
		got, err := latestCRL(ctx, db, "r")
		if err != nil || got.number != want {
			t.Fatalf("latest: %+v, %v", got, err)
		}
		rl, err := crl.Verify(got.der, cert)
		if err != nil {
			t.Fatal(err)
		}
		var serials []string
		for _, e := range rl.RevokedCertificateEntries {
			serials = append(serials, serialHex(e.SerialNumber))
		}
		if s := strings.Join(serials, " "); s != "0a 01ff 7f00aa ab0000" {
			t.Errorf("entries %s, want 0a 01ff 7f00aa ab0000", s)
		}
	}, append([]store.Migrations{audit.Migrations}, New().Migrations()...)...)
}

// selfSignedCA makes a throw-away self-signed SM2 CA certificate.
func selfSignedCA(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := selfSign(spec{id: cn, alg: hsm.SM2, cn: cn}, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return der
}
