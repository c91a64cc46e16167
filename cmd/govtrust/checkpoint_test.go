package main

import (
	"bytes"
	"context"
	"crypto/rand"
	bin "encoding/binary" // "binary" is the test binary's path in main_test.go
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// TestAuditVerifyCheckpoints: `audit verify` checks signed checkpoints under
// the trusted key given on the command line, and names by its checkpoint a
// chain that was rewritten wholesale (every hash recomputed, head updated),
// which the hash-chain walk alone accepts.
func TestAuditVerifyCheckpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	up(t, dir).stop(t)
	ctx := context.Background()

	// Checkpoints signed with a test key, as the node will with its audit key.
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "govtrust.db")
	db, err := store.Open(ctx, store.Config{URL: dbPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, audit.Migrations); err != nil {
		t.Fatal(err)
	}
	log := audit.New("cli-test", nil)
	c, err := audit.NewCheckpointer(db, log, key, "soft:audit/checkpoint-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := audit.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "checkpoint.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	// Once the node writes its own checkpoints, its key must be trusted too.
	args := []string{"audit", "verify", "--data", dir, "--checkpoint-key", keyFile}
	nodeKey := filepath.Join(dir, "bootstrap", "audit-checkpoint.pem")
	_, err = os.Stat(nodeKey)
	hasNodeKey := err == nil
	if hasNodeKey {
		args = append(args, "--checkpoint-key", nodeKey)
	}

	out, code := govtrust(t, append(args, "--json")...)
	var rep struct {
		OK                  bool `json:"ok"`
		CheckpointsVerified bool `json:"checkpoints_verified"`
		Checkpoints         struct {
			Valid     int64 `json:"valid"`
			NewestSeq int64 `json:"newest_seq"`
		} `json:"checkpoints"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.OK || !rep.CheckpointsVerified ||
		rep.Checkpoints.Valid < 1 || rep.Checkpoints.NewestSeq < cp.Seq {
		t.Fatalf("verify --json = %d (%v)\n%s", code, err, out)
	}
	out, code = govtrust(t, "audit", "verify", "--data", dir)
	if hasNodeKey {
		// Only the node's own key is trusted by default: the checkpoints this
		// test signed with another key must not pass as trusted.
		if code != 2 || !strings.Contains(out, "audit chain OK") || !strings.Contains(out, "signature invalid") {
			t.Fatalf("verify trusting only the node key = %d\n%s", code, out)
		}
	} else if want := "checkpoints not verified: no trusted checkpoint key"; code != 0 || !strings.Contains(out, "audit chain OK") || !strings.Contains(out, want) {
		t.Fatalf("verify without --checkpoint-key = %d, want 0 and %q\n%s", code, want, out)
	}
	out, code = govtrust(t, "audit", "export", "--data", dir, "--checkpoints", "--after", fmt.Sprint(cp.Seq-1))
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`"seq":%d,`, cp.Seq)) || !strings.Contains(out, `"key_uri":"soft:audit/checkpoint-test"`) {
		t.Fatalf("export --checkpoints = %d\n%s", code, out)
	}

	forgeChain(t, dbPath, 2, "mallory")
	out, code = govtrust(t, args...)
	if code != 2 || !strings.Contains(out, "audit chain OK") ||
		!strings.Contains(out, fmt.Sprintf("checkpoint at seq %d: chain hash differs (the chain was rewritten)", cp.Seq)) ||
		!strings.Contains(out, "audit checkpoints FAILED") {
		t.Fatalf("verify of a rewritten chain = %d, want 2 naming the checkpoint at seq %d\n%s", code, cp.Seq, out)
	}
}

// forgeChain rewrites the audit chain in the SQLite file as a forger with
// write access would: it changes the actor of record seq and recomputes every
// hash and the head with the published encoding (package audit, canonical:
// "govtrust-audit-v1" then uvarint-length-prefixed fields;
// hash[n] = SM3(hash[n-1] || canonical)).
func forgeChain(t *testing.T, dbPath string, seq int64, actor string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{URL: dbPath})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, "SELECT seq, time, node, actor, action, object, outcome, request_id, details FROM audit_log ORDER BY seq")
		if err != nil {
			return err
		}
		type rec struct {
			seq    int64
			fields [8]string
		}
		var all []rec
		for rows.Next() {
			var r rec
			f := &r.fields
			if err := rows.Scan(&r.seq, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]); err != nil {
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
			if r.seq == seq {
				r.fields[2] = actor
			}
			var canon bytes.Buffer
			canon.WriteString("govtrust-audit-v1")
			for _, f := range append([]string{fmt.Sprint(r.seq)}, r.fields[:]...) {
				canon.Write(bin.AppendUvarint(nil, uint64(len(f))))
				canon.WriteString(f)
			}
			h := sm3.New()
			h.Write(prev)
			h.Write(canon.Bytes())
			sum := h.Sum(nil)
			if _, err := tx.Exec(ctx, "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", r.fields[2], prev, sum, r.seq); err != nil {
				return err
			}
			prev = sum
		}
		_, err = tx.Exec(ctx, "UPDATE audit_head SET hash = ? WHERE id = 1", prev)
		return err
	})
	if err != nil {
		t.Fatalf("forge chain: %v", err)
	}
}
