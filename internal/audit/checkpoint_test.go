package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// The checkpoint code sees only a crypto.Signer, so keys generated here stand
// in for hsm signers (which follow the same gmsm signer contract).
func sm2Key(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func p256Key(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testTime = time.Date(2026, 11, 21, 8, 0, 0, 123456789, time.UTC)

func newCheckpointer(t testing.TB, db *store.DB, l *Log, key crypto.Signer) *Checkpointer {
	t.Helper()
	c, err := NewCheckpointer(db, l, key, "soft:audit/checkpoint-2026", clock.NewFake(testTime))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkpoint(t testing.TB, ctx context.Context, c *Checkpointer) *Checkpoint {
	t.Helper()
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	return cp
}

func cpKinds(rep *CheckpointReport) string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, fmt.Sprintf("%d:%s", p.Seq, p.Kind))
	}
	return strings.Join(out, " ")
}

func verifyCheckpoints(t testing.TB, ctx context.Context, db *store.DB, keys ...crypto.PublicKey) *CheckpointReport {
	t.Helper()
	rep, err := VerifyCheckpoints(ctx, db, keys...)
	if err != nil {
		t.Fatalf("verify checkpoints: %v", err)
	}
	return rep
}

// rewriteChain does what a forger with write access to the database does:
// it changes the actor of record seq and recomputes every hash after it, and
// the head, with the package's own canonical encoding, so the hash chain is
// consistent again.
func rewriteChain(t testing.TB, ctx context.Context, db *store.DB, seq int64, actor string) {
	t.Helper()
	err := db.Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, selectRows, 0)
		if err != nil {
			return err
		}
		var all []*row
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				rows.Close()
				return err
			}
			all = append(all, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		prev := make([]byte, 32)
		for _, r := range all {
			if r.rec.Seq == seq {
				r.rec.Actor = actor
			}
			h := chainHash(prev, canonical(r.rec, []byte(r.details)))
			if _, err := tx.Exec(ctx, "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", r.rec.Actor, prev, h, r.rec.Seq); err != nil {
				return err
			}
			prev = h
		}
		_, err = tx.Exec(ctx, "UPDATE audit_head SET hash = ? WHERE id = 1", prev)
		return err
	})
	if err != nil {
		t.Fatalf("rewrite chain: %v", err)
	}
}

// TestCheckpointCatchesRewrite is the acceptance case: a chain rewritten
// wholesale passes the hash-chain walk and is named by the checkpoints.
func TestCheckpointCatchesRewrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(testing.TB) crypto.Signer
		alg  hsm.Algorithm
	}{
		{"sm2", sm2Key, hsm.SM2},
		{"ecdsa-p256", p256Key, hsm.ECDSAP256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, db *store.DB) {
				ctx := context.Background()
				key := tc.key(t)
				l := New("node-1", clock.NewFake(testTime))
				c := newCheckpointer(t, db, l, key)
				appendN(t, ctx, l, db, 5)
				first := checkpoint(t, ctx, c)
				if first.Seq != 5 || first.Algorithm != tc.alg || first.Node != "node-1" || first.ID == 0 {
					t.Fatalf("first checkpoint: %+v", first)
				}
				appendN(t, ctx, l, db, 3) // seq 6 is the checkpoint record, 7..9 these
				second := checkpoint(t, ctx, c)
				if second.Seq != 9 || second.ID <= first.ID {
					t.Fatalf("second checkpoint: seq %d id %d after id %d", second.Seq, second.ID, first.ID)
				}

				rep := verifyCheckpoints(t, ctx, db, key.Public())
				if !rep.OK() || rep.Checkpoints != 2 || rep.Valid != 2 || rep.NewestSeq != 9 ||
					!rep.NewestTime.Equal(testTime) || rep.LastSeq != 10 || rep.Unprotected != 1 {
					t.Fatalf("clean checkpoints: %+v", rep)
				}
				chain, err := Verify(ctx, db)
				if err != nil || !chain.OK() {
					t.Fatalf("clean chain: %+v %v", chain, err)
				}

				// The checkpoint record carries what it covers.
				var details string
				if err := db.QueryRow(ctx, "SELECT details FROM audit_log WHERE seq = 6 AND action = ?", ActionCheckpoint).Scan(&details); err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf(`{"head_hash":"%x","seq":5}`, first.HeadHash); details != want {
					t.Fatalf("checkpoint record details %s, want %s", details, want)
				}

				rewriteChain(t, ctx, db, 3, "mallory")
				chain, err = Verify(ctx, db)
				if err != nil || !chain.OK() {
					t.Fatalf("the forged chain should pass the hash walk: %+v %v", chain, err)
				}
				rep = verifyCheckpoints(t, ctx, db, key.Public())
				if got := cpKinds(rep); got != "5:rewritten 9:rewritten" {
					t.Fatalf("after the rewrite: problems %q", got)
				}
				if s := rep.Problems[0].String(); s != "checkpoint at seq 5: chain hash differs (the chain was rewritten)" {
					t.Fatalf("problem text %q", s)
				}
				if rep.Valid != 0 || rep.NewestSeq != 0 || rep.Unprotected != 10 {
					t.Fatalf("after the rewrite: %+v", rep)
				}
			}, Migrations)
		})
	}
}

// TestCheckpointTampering: each way of attacking the checkpoints themselves
// is named by the sequence number the checkpoint covers.
func TestCheckpointTampering(t *testing.T) {
	other := sm2Key(t)
	cases := []struct {
		name   string
		tamper func(t *testing.T, ctx context.Context, db *store.DB)
		key    crypto.PublicKey // trusted key; nil: the signer's
		want   string
	}{
		{"untouched", nil, nil, ""},
		{"signature edited", func(t *testing.T, ctx context.Context, db *store.DB) {
			var sig []byte
			if err := db.QueryRow(ctx, "SELECT signature FROM audit_checkpoints WHERE seq = 4").Scan(&sig); err != nil {
				t.Fatal(err)
			}
			sig[len(sig)-1] ^= 1
			mustExec(t, ctx, db, "UPDATE audit_checkpoints SET signature = ? WHERE seq = 4", sig)
		}, nil, "4:signature"},
		{"time edited", func(t *testing.T, ctx context.Context, db *store.DB) {
			mustExec(t, ctx, db, "UPDATE audit_checkpoints SET time = ? WHERE seq = 7", testTime.Add(time.Hour).Format(time.RFC3339Nano))
		}, nil, "7:signature"},
		{"wrong trusted key", nil, other.Public(), "4:signature 7:signature"},
		{"chain rewritten and head hashes updated", func(t *testing.T, ctx context.Context, db *store.DB) {
			rewriteChain(t, ctx, db, 2, "mallory")
			mustExec(t, ctx, db, "UPDATE audit_checkpoints SET head_hash = (SELECT hash FROM audit_log WHERE audit_log.seq = audit_checkpoints.seq)")
		}, nil, "4:signature 7:signature"},
		{"checkpointed record deleted", func(t *testing.T, ctx context.Context, db *store.DB) {
			mustExec(t, ctx, db, "DELETE FROM audit_log WHERE seq = 4")
		}, nil, "4:missing"},
		{"checkpoint row deleted", func(t *testing.T, ctx context.Context, db *store.DB) {
			mustExec(t, ctx, db, "DELETE FROM audit_checkpoints WHERE seq = 7")
		}, nil, "7:deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, db *store.DB) {
				ctx := context.Background()
				key := sm2Key(t)
				l := New("node-1", nil)
				c := newCheckpointer(t, db, l, key)
				appendN(t, ctx, l, db, 4)
				checkpoint(t, ctx, c) // seq 4; its record is seq 5
				appendN(t, ctx, l, db, 2)
				checkpoint(t, ctx, c) // seq 7
				if tc.tamper != nil {
					tc.tamper(t, ctx, db)
				}
				trusted := tc.key
				if trusted == nil {
					trusted = key.Public()
				}
				rep := verifyCheckpoints(t, ctx, db, trusted)
				if got := cpKinds(rep); got != tc.want {
					t.Fatalf("problems %q, want %q", got, tc.want)
				}
			}, Migrations)
		})
	}
}

func mustExec(t *testing.T, ctx context.Context, db *store.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// An idle node does not checkpoint its own checkpoint records, and two
// checkpointers racing on one head with one key store one checkpoint.
func TestCheckpointIdleAndRace(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		key := sm2Key(t)
		l := New("node-1", nil)
		c := newCheckpointer(t, db, l, key)
		appendN(t, ctx, l, db, 3)
		first := checkpoint(t, ctx, c)
		for i := 0; i < 3; i++ {
			if again := checkpoint(t, ctx, c); again.ID != first.ID || again.Seq != first.Seq {
				t.Fatalf("idle checkpoint %d: id %d seq %d, want the first (id %d seq %d)", i, again.ID, again.Seq, first.ID, first.Seq)
			}
		}
		var rows, records int
		if err := db.QueryRow(ctx, "SELECT (SELECT COUNT(*) FROM audit_checkpoints), (SELECT COUNT(*) FROM audit_log)").Scan(&rows, &records); err != nil {
			t.Fatal(err)
		}
		if rows != 1 || records != 4 {
			t.Fatalf("idle: %d checkpoints and %d records, want 1 and 4", rows, records)
		}

		appendN(t, ctx, l, db, 1) // seq 5
		var wg sync.WaitGroup
		got := make([]*Checkpoint, 4)
		errs := make([]error, 4)
		for i := range got {
			// Separate checkpointers with the same key, as two nodes sharing
			// one audit key would have.
			ci := newCheckpointer(t, db, New(fmt.Sprintf("node-%d", i), nil), key)
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = ci.Checkpoint(ctx)
			}()
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil {
				t.Fatalf("checkpointer %d: %v", i, errs[i])
			}
			if got[i].Seq != 5 || got[i].ID != got[0].ID {
				t.Fatalf("checkpointer %d: seq %d id %d; checkpointer 0: seq %d id %d", i, got[i].Seq, got[i].ID, got[0].Seq, got[0].ID)
			}
		}
		rep := verifyCheckpoints(t, ctx, db, key.Public())
		if !rep.OK() || rep.Checkpoints != 2 || rep.LastSeq != 6 {
			t.Fatalf("after the race: %+v", rep)
		}
		chain, err := Verify(ctx, db)
		if err != nil || !chain.OK() {
			t.Fatalf("chain after the race: %+v %v", chain, err)
		}
	}, Migrations)
}

// Run writes a final checkpoint when its context ends.
func TestCheckpointRunFinal(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		key := p256Key(t)
		l := New("node-1", nil)
		c := newCheckpointer(t, db, l, key)
		var logs bytes.Buffer
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		appendN(t, ctx, l, db, 2)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Run(ctx, time.Hour) // no tick happens: only the final checkpoint
		}()
		if _, err := l.Write(ctx, db, Record{Actor: "system", Action: "node.stop", Outcome: Success}); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		if logs.Len() != 0 {
			t.Fatalf("Run logged: %s", logs.String())
		}
		rep := verifyCheckpoints(t, context.Background(), db, key.Public())
		if !rep.OK() || rep.Checkpoints != 1 || rep.NewestSeq != 3 || rep.Unprotected != 1 {
			t.Fatalf("after Run: %+v", rep)
		}
	}, Migrations)
}

// ExportCheckpoints writes one JSON object per checkpoint with every field.
func TestExportCheckpoints(t *testing.T) {
	db := storetest.SQLite(t, Migrations)
	ctx := context.Background()
	key := sm2Key(t)
	l := New("node-1", nil)
	c := newCheckpointer(t, db, l, key)
	appendN(t, ctx, l, db, 2)
	cp1 := checkpoint(t, ctx, c)
	appendN(t, ctx, l, db, 1)
	cp2 := checkpoint(t, ctx, c)
	fp, err := KeyFingerprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after int64
		want  []*Checkpoint
	}{{0, []*Checkpoint{cp1, cp2}}, {cp1.Seq, []*Checkpoint{cp2}}, {cp2.Seq, nil}} {
		t.Run(fmt.Sprint("after ", tc.after), func(t *testing.T) {
			var buf bytes.Buffer
			n, err := ExportCheckpoints(ctx, db, tc.after, &buf)
			if err != nil || n != int64(len(tc.want)) {
				t.Fatalf("export: %d, %v", n, err)
			}
			dec := json.NewDecoder(&buf)
			for _, want := range tc.want {
				var got map[string]any
				if err := dec.Decode(&got); err != nil {
					t.Fatal(err)
				}
				sig, _ := got["signature"].(string)
				for k, v := range map[string]any{
					"id": float64(want.ID), "seq": float64(want.Seq), "head_hash": hex.EncodeToString(want.HeadHash),
					"time": testTime.Format(time.RFC3339Nano), "node": "node-1", "key_uri": "soft:audit/checkpoint-2026",
					"algorithm": "sm2", "key_fingerprint": fp, "signature": base64.StdEncoding.EncodeToString(want.Signature),
				} {
					if got[k] != v {
						t.Errorf("%s = %v, want %v", k, got[k], v)
					}
				}
				if sig == "" {
					t.Error("empty signature")
				}
			}
			if dec.More() {
				t.Error("more lines than checkpoints")
			}
		})
	}
}

// The signed bytes are a published format (an auditor may check checkpoints
// with other tools), so they are pinned here.
func TestCheckpointMessage(t *testing.T) {
	head := bytes.Repeat([]byte{0xab}, 32)
	var want []byte
	want = append(want, "govtrust-audit-checkpoint-v1"...)
	for _, f := range []string{"42", strings.Repeat("ab", 32), "2026-11-21T08:00:00.123456789Z", "node-1", "soft:audit/k"} {
		want = binary.AppendUvarint(want, uint64(len(f)))
		want = append(want, f...)
	}
	if got := checkpointMessage(42, head, "2026-11-21T08:00:00.123456789Z", "node-1", "soft:audit/k"); !bytes.Equal(got, want) {
		t.Fatalf("message\n%q\nwant\n%q", got, want)
	}
	// Length prefixes keep shifted field boundaries apart.
	if bytes.Equal(checkpointMessage(1, head, "t", "ab", "c"), checkpointMessage(1, head, "t", "a", "bc")) {
		t.Fatal("ambiguous encoding")
	}
}

func TestCheckpointKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  hsm.Algorithm
	}{{"sm2", sm2Key(t), hsm.SM2}, {"ecdsa-p256", p256Key(t), hsm.ECDSAP256}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := MarshalPublicKeyPEM(tc.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			// Other PEM blocks before the key are skipped.
			b = append([]byte("-----BEGIN COMMENT-----\nAAAA\n-----END COMMENT-----\n"), b...)
			pub, err := ParsePublicKeyPEM(b)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(*ecdsa.PublicKey).Equal(tc.key.Public()) {
				t.Fatal("PEM round trip changed the key")
			}
			if alg, err := keyAlgorithm(pub); err != nil || alg != tc.alg {
				t.Fatalf("algorithm %q, %v; want %q", alg, err, tc.alg)
			}
		})
	}
	t.Run("unsupported", func(t *testing.T) {
		p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		db := storetest.SQLite(t, Migrations)
		for _, k := range []crypto.Signer{p384, ed} {
			if _, err := NewCheckpointer(db, New("n", nil), k, "soft:audit/k", nil); !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("%T: NewCheckpointer = %v", k, err)
			}
			if _, err := VerifyCheckpoints(context.Background(), db, k.Public()); !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("%T: VerifyCheckpoints = %v", k, err)
			}
			if _, err := MarshalPublicKeyPEM(k.Public()); !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("%T: MarshalPublicKeyPEM = %v", k, err)
			}
		}
		if _, err := VerifyCheckpoints(context.Background(), db); !errors.Is(err, ErrNoTrustedKey) {
			t.Errorf("no key: %v", err)
		}
		if _, err := ParsePublicKeyPEM([]byte("not pem")); err == nil {
			t.Error("parsed garbage")
		}
	})
}
