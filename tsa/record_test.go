package tsa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/govtrust/govtrust/internal/store/storetest"
)

// The recorder on both databases: batches of every size commit every row;
// a serial recorded before, or twice at once, is refused to exactly one
// caller with errSerialTaken and the stored token is the other's.
func TestRecorder(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRecorder(t, "") })
	t.Run("postgres", func(t *testing.T) { testRecorder(t, storetest.PostgresURL(t)) })
}

func testRecorder(t *testing.T, dbURL string) {
	tn := startNodeDB(t, filepath.Join(t.TempDir(), "data"), "", dbURL)
	defer tn.stop()
	db := tn.n.Env().DB
	r := newRecorder(db)
	defer r.close()
	ctx := context.Background()
	row := func(serial string, tok byte) tokenRow {
		return tokenRow{serial: serial, profile: "sm2", generation: 1, policy: "1.2.3", hashAlg: "sm3",
			imprint: make([]byte, 32), genTime: "2026-11-21T10:00:00Z", token: []byte{tok}}
	}
	// 200 concurrent rows: batches of many sizes, cut into chunks.
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Go(func() { errs[i] = r.record(ctx, row(fmt.Sprintf("a%d", i), byte(i))) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	// Collisions: with a recorded serial, and between two callers.
	if err := r.record(ctx, row("a7", 0xee)); !errors.Is(err, errSerialTaken) {
		t.Fatalf("recorded serial again: %v, want errSerialTaken", err)
	}
	var e1, e2, e3 error
	wg.Go(func() { e1 = r.record(ctx, row("b1", 1)) })
	wg.Go(func() { e2 = r.record(ctx, row("b1", 2)) })
	wg.Go(func() { e3 = r.record(ctx, row("b2", 3)) })
	wg.Wait()
	if e3 != nil || (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), errSerialTaken) {
		t.Fatalf("twin serials: %v, %v (other row %v): want exactly one errSerialTaken", e1, e2, e3)
	}
	want := []byte{1}
	if e1 != nil {
		want = []byte{2}
	}
	var n int
	var tok []byte
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM tsa_tokens WHERE serial LIKE 'a%' OR serial LIKE 'b%'").Scan(&n); err != nil || n != 202 {
		t.Fatalf("rows = %d, %v; want 202", n, err)
	}
	if err := db.QueryRow(ctx, "SELECT token FROM tsa_tokens WHERE serial = 'b1'").Scan(&tok); err != nil || !bytes.Equal(tok, want) {
		t.Fatalf("b1 holds %x (%v), want the token of the caller told nil, %x", tok, err, want)
	}
	if err := db.QueryRow(ctx, "SELECT token FROM tsa_tokens WHERE serial = 'a7'").Scan(&tok); err != nil || !bytes.Equal(tok, []byte{7}) {
		t.Fatalf("a7 holds %x (%v), want 07", tok, err)
	}
	if b, k := r.stats(); b == 0 || k != 204 {
		t.Errorf("stats = %d batches, %d tokens; want 204 tokens", b, k)
	}
	r.close()
	if err := r.record(ctx, row("c1", 1)); !errors.Is(err, errRecorderClosed) {
		t.Errorf("after close: %v", err)
	}
}
