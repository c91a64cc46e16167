package tsa

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
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
		wg.Go(func() { errs[i] = r.record(ctx, row(fmt.Sprintf("a%d", i), byte(i)), nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	// Collisions: with a recorded serial, and between two callers.
	if err := r.record(ctx, row("a7", 0xee), nil); !errors.Is(err, errSerialTaken) {
		t.Fatalf("recorded serial again: %v, want errSerialTaken", err)
	}
	var e1, e2, e3 error
	wg.Go(func() { e1 = r.record(ctx, row("b1", 1), nil) })
	wg.Go(func() { e2 = r.record(ctx, row("b1", 2), nil) })
	wg.Go(func() { e3 = r.record(ctx, row("b2", 3), nil) })
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
	if err := r.record(ctx, row("c1", 1), nil); !errors.Is(err, errRecorderClosed) {
		t.Errorf("after close: %v", err)
	}
}

// 00002 rebuilds tsa_tokens keyed by serial alone (SQLite) and drops the
// gen_time index (both): tokens recorded before the upgrade are kept, and
// the recorder and the look-up work after it.
func TestTokensMigration(t *testing.T) {
	v1 := fstest.MapFS{}
	for _, d := range []string{"sqlite", "postgres"} {
		name := "migrations/" + d + "/00001_tsa.sql"
		b, err := fs.ReadFile(migrations, name)
		if err != nil {
			t.Fatal(err)
		}
		v1[name] = &fstest.MapFile{Data: b}
	}
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Exec(ctx, "INSERT INTO tsa_tokens (serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			"1abc", "sm2", 1, "1.2.3", "sm3", []byte{1, 2}, "2026-11-21T10:00:00Z", "ff", []byte("old token")); err != nil {
			t.Fatal(err)
		}
		db2 := storetest.Reopen(t, db, store.EmbeddedMigrations("tsa", migrations, "migrations"))
		s := &Service{env: &node.Env{DB: db2}}
		rec, err := s.Token(ctx, "1ABC")
		if err != nil {
			t.Fatalf("token recorded before the upgrade: %v", err)
		}
		if rec.Token != base64.StdEncoding.EncodeToString([]byte("old token")) || rec.Nonce != "ff" || rec.GenTime != "2026-11-21T10:00:00Z" {
			t.Errorf("token after the upgrade = %+v", rec)
		}
		r := newRecorder(db2)
		defer r.close()
		if err := r.record(ctx, tokenRow{serial: "1abd", profile: "sm2", generation: 1, policy: "1.2.3", hashAlg: "sm3",
			imprint: make([]byte, 32), genTime: "2026-11-21T10:00:01Z", token: []byte{7}}, nil); err != nil {
			t.Fatalf("record after the upgrade: %v", err)
		}
		var n int
		if err := db2.QueryRow(ctx, "SELECT COUNT(*) FROM tsa_tokens").Scan(&n); err != nil || n != 2 {
			t.Errorf("tokens = %d (%v), want 2", n, err)
		}
		if db2.Driver() == store.SQLite {
			var sql string
			if err := db2.QueryRow(ctx, "SELECT sql FROM sqlite_master WHERE name = 'tsa_tokens'").Scan(&sql); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(sql, "WITHOUT ROWID") {
				t.Errorf("tsa_tokens is not keyed by serial: %s", sql)
			}
		}
		if err := db2.QueryRow(ctx, "SELECT COUNT(*) FROM "+indexCatalog(db2)+" = 'tsa_tokens_gen_time'").Scan(&n); err != nil || n != 0 {
			t.Errorf("gen_time index still there (%d, %v)", n, err)
		}
	}, store.EmbeddedMigrations("tsa", v1, "migrations"))
}

// indexCatalog is the start of a query for an index by name.
func indexCatalog(db *store.DB) string {
	if db.Driver() == store.SQLite {
		return "sqlite_master WHERE type = 'index' AND name"
	}
	return "pg_indexes WHERE indexname"
}

// Production refuses the shipped example policy (2.999.*): a token names
// its policy for ever. The organisation's own OID starts.
func TestProductionRefusesExamplePolicy(t *testing.T) {
	t.Setenv("GT_TEST_MASTER_PASSPHRASE", "correct horse battery staple")
	start := func(config string) error {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "test.yaml")
		if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		c := ca.New()
		opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
			LogOutput: io.Discard, ConfigFile: cfg, Mode: ptr("production"),
			Environ: []string{"GOVTRUST_HSM_SOFT_UNLOCK=passphrase", "GOVTRUST_HSM_SOFT_PASSPHRASE=env:GT_TEST_MASTER_PASSPHRASE",
				"GOVTRUST_CA_PUBLIC_URL=http://pki.example.gov.cn", "GOVTRUST_CA_PUBLIC_LDAP_URL=ldap://ldap.example.gov.cn"}}
		n, err := node.Start(context.Background(), opts, c, New(c))
		if err == nil {
			n.Shutdown(context.Background())
		}
		return err
	}
	err := start("tsa:\n  ntp_servers: [127.0.0.1:1]\n")
	if err == nil || !strings.Contains(err.Error(), "example arc") {
		t.Fatalf("production with 2.999.3161.1: %v", err)
	}
	if err := start("tsa:\n  policies: [1.2.156.99999.1.1]\n  ntp_servers: [127.0.0.1:1]\n"); err != nil {
		t.Fatalf("production with an own policy OID: %v", err)
	}
}

// A policy OID DER cannot encode (config.Validate refuses it; a TSA given
// one all the same) stops the start with an error naming it, instead of a
// node that says it is ready and fails every request.
func TestUnencodablePolicyRefused(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	for _, p := range []string{"1.45.7", "0.40.1", "3.1"} {
		env := *tn.n.Env()
		cfg := *env.Config
		cfg.TSA.Policies = []string{"1.2.156.99999.1.1", p}
		env.Config = &cfg
		s := New(tn.ca)
		err := s.Start(context.Background(), &env)
		if err == nil {
			s.Stop(context.Background())
			t.Errorf("tsa.policies %s: the TSA started", p)
			continue
		}
		if !strings.Contains(err.Error(), "tsa.policies") || !strings.Contains(err.Error(), p) {
			t.Errorf("tsa.policies %s: %v, want an error naming the setting and the OID", p, err)
		}
	}
}

// A row queued as the recorder closes, after the loop's last look at the
// queue, is never taken: its caller gets errRecorderClosed once the
// recorder is done, instead of waiting for ever; a row taken and answered
// gets its answer.
func TestRecorderQueuedAfterStop(t *testing.T) {
	row := tokenRow{serial: "q1", profile: "sm2", generation: 1, policy: "1.2.3", hashAlg: "sm3",
		imprint: make([]byte, 32), genTime: "2026-11-21T10:00:00Z", token: []byte{1}}
	// stopped is a recorder whose loop and answerer are the test's.
	stopped := func() *recorder {
		return &recorder{reqs: make(chan *recordReq, recordMaxBatch), closed: make(chan struct{}), done: make(chan struct{})}
	}
	r := stopped()
	res := make(chan error, 1)
	go func() { res <- r.record(context.Background(), row, nil) }()
	for len(r.reqs) == 0 {
		time.Sleep(time.Millisecond)
	}
	// The loop drained the queue before this row came, and returned; the
	// answerer answered its last batch.
	close(r.closed)
	close(r.done)
	select {
	case err := <-res:
		if !errors.Is(err, errRecorderClosed) {
			t.Fatalf("a row queued after the loop stopped: %v, want errRecorderClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a row queued after the loop stopped: record waits for ever")
	}

	// Taken and answered, then done: the answer.
	r = stopped()
	go func() { res <- r.record(context.Background(), row, nil) }()
	q := <-r.reqs
	q.err <- nil
	close(r.closed)
	close(r.done)
	if err := <-res; err != nil {
		t.Fatalf("a recorded row reported as %v", err)
	}
}

// Closing the recorder while callers record: each returns, nil for a row
// that is recorded and errRecorderClosed for one that is not.
func TestRecorderCloseAnswersEveryCaller(t *testing.T) {
	db := storetest.SQLite(t, store.EmbeddedMigrations("tsa", migrations, "migrations"))
	r := newRecorder(db)
	ctx := context.Background()
	const n = 400
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = r.record(ctx, tokenRow{serial: fmt.Sprintf("c%d", i), profile: "sm2", generation: 1, policy: "1.2.3",
				hashAlg: "sm3", imprint: make([]byte, 32), genTime: "2026-11-21T10:00:00Z", token: []byte{1}}, nil)
		})
		if i == n/2 {
			go r.close()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("record calls still waiting 20 s after the recorder closed")
	}
	r.close()
	var recorded, closed int
	for i, err := range errs {
		var k int
		if qerr := db.QueryRow(ctx, "SELECT COUNT(*) FROM tsa_tokens WHERE serial = ?", fmt.Sprintf("c%d", i)).Scan(&k); qerr != nil {
			t.Fatal(qerr)
		}
		switch {
		case err == nil && k == 1:
			recorded++
		case errors.Is(err, errRecorderClosed) && k == 0:
			closed++
		default:
			t.Errorf("row %d: %v, %d rows", i, err, k)
		}
	}
	t.Logf("%d recorded, %d refused as closed", recorded, closed)
}
