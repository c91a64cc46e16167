package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// setup makes two applications of org1 and keys owned by app1.
func setup(t *testing.T, tn *testNode, keys map[string]Algorithm) {
	t.Helper()
	tn.account("app1", "org1", policy.RoleApplication)
	tn.account("app2", "org1", policy.RoleApplication)
	for name, alg := range keys {
		var k Key
		tn.must("POST", "/api/v1/kms/keys", "secadmin", map[string]any{"name": name, "algorithm": alg, "owner": tn.ids["app1"]}, &k)
		if k.LatestVersion != 1 || k.Algorithm != alg || k.Status != StatusEnabled {
			t.Fatalf("created %+v", k)
		}
	}
}

func (tn *testNode) encrypt(key string, plain, assoc []byte) []byte {
	tn.t.Helper()
	var out CryptResponse
	tn.must("POST", "/api/v1/kms/keys/"+key+"/encrypt", "app1", CryptRequest{Plaintext: plain, AssociatedData: assoc}, &out)
	return out.Ciphertext
}

func (tn *testNode) decrypt(key string, ct, assoc []byte) (int, []byte, []byte) {
	tn.t.Helper()
	st, raw, _ := tn.do("POST", "/api/v1/kms/keys/"+key+"/decrypt", "app1", CryptRequest{Ciphertext: ct, AssociatedData: assoc}, nil)
	var out CryptResponse
	if st == http.StatusOK {
		if err := json.Unmarshal(raw, &out); err != nil {
			tn.t.Fatal(err)
		}
	}
	return st, out.Plaintext, raw
}

// TestEnvelope is ACCEPTANCE.md D-01: 1 KB (JSON) and 1 MB (raw body)
// round trips, and every tamper is an authentication error without
// plaintext.
func TestEnvelope(t *testing.T) {
	tn := startNode(t, nil)
	setup(t, tn, map[string]Algorithm{"payroll": SM4GCM, "other": SM4GCM, "legacy-aes": AES256GCM})
	assoc := []byte("record 42")

	t.Run("round trips", func(t *testing.T) {
		for _, tc := range []struct {
			key  string
			size int
			raw  bool
		}{{"payroll", 1 << 10, false}, {"payroll", 1_000_000, true}, {"legacy-aes", 1 << 10, false}, {"legacy-aes", 1_000_000, true}} {
			t.Run(fmt.Sprintf("%s %d raw=%v", tc.key, tc.size, tc.raw), func(t *testing.T) {
				plain := random(t, tc.size)
				var ct, got []byte
				if tc.raw {
					hdr := map[string]string{"Content-Type": OctetStream, HeaderAAD: base64.StdEncoding.EncodeToString(assoc)}
					st, body, h := tn.do("POST", "/api/v1/kms/keys/"+tc.key+"/encrypt", "app1", plain, hdr)
					if st != http.StatusOK || h.Get(HeaderVersion) != "1" {
						t.Fatalf("encrypt: %d %s", st, body[:min(len(body), 300)])
					}
					ct = body
					st, got, _ = tn.do("POST", "/api/v1/kms/keys/"+tc.key+"/decrypt", "app1", ct, hdr)
					if st != http.StatusOK {
						t.Fatalf("decrypt: %d %s", st, got[:min(len(got), 300)])
					}
				} else {
					ct = tn.encrypt(tc.key, plain, assoc)
					var st int
					if st, got, _ = tn.decrypt(tc.key, ct, assoc); st != http.StatusOK {
						t.Fatalf("decrypt: %d", st)
					}
				}
				if !bytes.Equal(got, plain) {
					t.Fatal("plaintext differs after the round trip")
				}
				h, _, err := ParseHeader(ct)
				want := SM4GCM
				if tc.key == "legacy-aes" {
					want = AES256GCM
				}
				if err != nil || h.Name != tc.key || h.Version != 1 || h.Algorithm != want {
					t.Fatalf("header %+v, %v", h, err)
				}
				if len(ct) != len(plain)+headerMin+len(tc.key)+nonceLen+tagLen {
					t.Errorf("ciphertext of %d bytes for %d of plaintext", len(ct), len(plain))
				}
			})
		}
	})

	plain := []byte("salary of employee 42: 12345.67")
	ct := tn.encrypt("payroll", plain, assoc)
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	nameAt := 10
	for _, tc := range []struct {
		name  string
		key   string
		ct    []byte
		assoc []byte
	}{
		{"ciphertext byte", "payroll", flip(len(ct) - tagLen - 3), assoc},
		{"tag byte", "payroll", flip(len(ct) - 1), assoc},
		{"nonce byte", "payroll", flip(nameAt + len("payroll") + 2), assoc},
		{"header algorithm", "payroll", func() []byte { c := bytes.Clone(ct); c[4] = 2; return c }(), assoc},
		{"header version", "payroll", flip(8), assoc},
		{"header key name", "payroll", flip(nameAt), assoc},
		{"associated data", "payroll", ct, []byte("record 43")},
		{"no associated data", "payroll", ct, nil},
		{"other key", "other", ct, assoc},
		{"other key, name rewritten", "other", func() []byte {
			c := bytes.Clone(ct)
			copy(c[nameAt:], "other\x00\x00")
			c[9] = byte(len("other"))
			return append(c[:nameAt+5], ct[nameAt+len("payroll"):]...)
		}(), assoc},
		{"truncated", "payroll", ct[:len(ct)-1], assoc},
	} {
		t.Run("tamper "+tc.name, func(t *testing.T) {
			st, got, raw := tn.decrypt(tc.key, tc.ct, tc.assoc)
			if st != http.StatusBadRequest || got != nil {
				t.Fatalf("status %d, plaintext %q: %s", st, got, raw)
			}
			var p httpx.Problem
			if err := json.Unmarshal(raw, &p); err != nil || !strings.Contains(p.Detail, "does not authenticate") {
				t.Fatalf("answer %s", raw)
			}
			if bytes.Contains(raw, plain) || bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(plain)[:16])) {
				t.Fatal("the answer holds plaintext")
			}
		})
	}

	t.Run("only the owner", func(t *testing.T) {
		st, raw, _ := tn.do("POST", "/api/v1/kms/keys/payroll/encrypt", "app2", CryptRequest{Plaintext: plain}, nil)
		if st != http.StatusForbidden {
			t.Fatalf("another application encrypts: %d %s", st, raw)
		}
		st, raw, _ = tn.do("POST", "/api/v1/kms/keys/payroll/decrypt", "app2", CryptRequest{Ciphertext: ct, AssociatedData: assoc}, nil)
		if st != http.StatusForbidden || bytes.Contains(raw, plain) {
			t.Fatalf("another application decrypts: %d %s", st, raw)
		}
	})

	t.Run("data key", func(t *testing.T) {
		var dk CryptResponse
		tn.must("POST", "/api/v1/kms/keys/payroll/datakey", "app1", CryptRequest{Bits: 256, AssociatedData: assoc}, &dk)
		if len(dk.Plaintext) != 32 || dk.KeyVersion != 1 {
			t.Fatalf("data key %d bytes, version %d", len(dk.Plaintext), dk.KeyVersion)
		}
		if st, got, _ := tn.decrypt("payroll", dk.Ciphertext, assoc); st != http.StatusOK || !bytes.Equal(got, dk.Plaintext) {
			t.Fatalf("wrapped data key does not decrypt to the plaintext: %d", st)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		tn.must("PATCH", "/api/v1/kms/keys/other", "secadmin", map[string]any{"status": "disabled"}, nil)
		if st, _, _ := tn.do("POST", "/api/v1/kms/keys/other/encrypt", "app1", CryptRequest{Plaintext: plain}, nil); st != http.StatusUnprocessableEntity {
			t.Fatalf("disabled key encrypts: %d", st)
		}
	})

	tn.scanKeyMaterial()
}

// TestRotation is ACCEPTANCE.md D-02 on SQLite: rotate, rewrap, retire and
// destroy under dual control; after destruction only data never rewrapped
// is unrecoverable, and the API says why.
func TestRotation(t *testing.T) { rotation(t, startNode(t, nil)) }

// TestRotationPostgres runs D-02 on PostgreSQL.
func TestRotationPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	rotation(t, startNode(t, &url))
}

func rotation(t *testing.T, tn *testNode) {
	setup(t, tn, map[string]Algorithm{"records": SM4GCM, "legacy": AES256GCM})
	tn.account("sec2", "platform", policy.RoleSecAdmin)
	assoc := []byte("case 7")
	old := []byte("written before the rotation")
	ct1 := tn.encrypt("records", old, assoc)
	var k Key
	tn.must("POST", "/api/v1/kms/keys/records/rotate", "secadmin", nil, &k)
	if k.LatestVersion != 2 || len(k.Versions) != 2 {
		t.Fatalf("after rotation %+v", k)
	}
	ct2 := tn.encrypt("records", []byte("written after"), assoc)
	if h, _, _ := ParseHeader(ct2); h.Version != 2 {
		t.Fatalf("new ciphertext under version %d", h.Version)
	}
	var rw CryptResponse
	tn.must("POST", "/api/v1/kms/keys/records/rewrap", "app1", CryptRequest{Ciphertext: ct1, AssociatedData: assoc}, &rw)
	if rw.KeyVersion != 2 || rw.Plaintext != nil {
		t.Fatalf("rewrap: version %d, plaintext %q", rw.KeyVersion, rw.Plaintext)
	}
	never := tn.encrypt("records", []byte("x"), assoc) // a version-2 ciphertext to compare with later
	_ = never
	for _, c := range [][]byte{ct1, ct2, rw.Ciphertext} {
		if st, _, raw := tn.decrypt("records", c, assoc); st != http.StatusOK {
			t.Fatalf("before destruction: %d %s", st, raw)
		}
	}

	if st, raw, _ := tn.do("POST", "/api/v1/kms/keys/records/versions/2/destroy", "secadmin", nil, nil); st != http.StatusUnprocessableEntity {
		t.Fatalf("destroying the latest version: %d %s", st, raw)
	}
	var pend PendingDestroy
	tn.must("POST", "/api/v1/kms/keys/records/versions/1/destroy", "secadmin", nil, &pend)
	if pend.Approval == "" || pend.Required != 1 {
		t.Fatalf("pending %+v", pend)
	}
	approve := map[string]string{"payload_hash": pend.PayloadHash}
	if st, raw, _ := tn.do("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "secadmin", approve, nil); st != http.StatusForbidden {
		t.Fatalf("requester approves own destruction: %d %s", st, raw)
	}
	if st, raw, _ := tn.do("POST", "/api/v1/kms/keys/records/versions/1/destroy", "secadmin", DestroyRequest{Approval: pend.Approval}, nil); st != http.StatusForbidden {
		t.Fatalf("destruction without approval: %d %s", st, raw)
	}
	if st, _, _ := tn.do("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "app1", approve, nil); st != http.StatusForbidden {
		t.Fatalf("an application approves: %d", st)
	}
	tn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "sec2", approve, nil)
	tn.must("POST", "/api/v1/kms/keys/records/versions/1/destroy", "secadmin", DestroyRequest{Approval: pend.Approval}, &k)
	if k.Versions[0].Destroyed == nil || k.Versions[1].Destroyed != nil {
		t.Fatalf("after destruction %+v", k.Versions)
	}
	if st, _, _ := tn.do("POST", "/api/v1/kms/keys/records/versions/1/destroy", "secadmin", DestroyRequest{Approval: pend.Approval}, nil); st != http.StatusConflict {
		t.Fatalf("approval used twice: %d", st)
	}
	st, got, raw := tn.decrypt("records", ct1, assoc)
	if st != http.StatusUnprocessableEntity || got != nil || !strings.Contains(string(raw), "destroyed") {
		t.Fatalf("never-rewrapped data after destruction: %d %s", st, raw)
	}
	for _, c := range [][]byte{ct2, rw.Ciphertext} {
		if st, got, raw := tn.decrypt("records", c, assoc); st != http.StatusOK || got == nil {
			t.Fatalf("version-2 data after destruction: %d %s", st, raw)
		}
	}
	if st, got, _ := tn.decrypt("records", rw.Ciphertext, assoc); st != http.StatusOK || !bytes.Equal(got, old) {
		t.Fatal("rewrapped data lost")
	}
	var wrapped []byte
	if err := tn.n.Env().DB.QueryRow(context.Background(), `SELECT wrapped FROM kms_key_versions WHERE name = 'records' AND version = 1`).Scan(&wrapped); err != nil || wrapped != nil {
		t.Fatalf("destroyed version still holds %d bytes (%v)", len(wrapped), err)
	}

	t.Run("minimum decryption version", func(t *testing.T) {
		c1 := tn.encrypt("legacy", old, nil)
		tn.must("POST", "/api/v1/kms/keys/legacy/rotate", "secadmin", nil, nil)
		tn.must("PATCH", "/api/v1/kms/keys/legacy", "secadmin", map[string]any{"min_decryption_version": 2}, nil)
		if st, _, raw := tn.decrypt("legacy", c1, nil); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "minimum decryption version") {
			t.Fatalf("retired version decrypts: %d %s", st, raw)
		}
		tn.must("PATCH", "/api/v1/kms/keys/legacy", "secadmin", map[string]any{"min_decryption_version": 1}, nil)
		if st, got, _ := tn.decrypt("legacy", c1, nil); st != http.StatusOK || !bytes.Equal(got, old) {
			t.Fatalf("restored version: %d", st)
		}
	})
}

// TestScheduledRotation rotates keys whose rotation period has passed,
// once however often the schedule runs.
func TestScheduledRotation(t *testing.T) {
	tn := startNode(t, nil)
	tn.account("app1", "org1", policy.RoleApplication)
	tn.must("POST", "/api/v1/kms/keys", "secadmin", map[string]any{"name": "daily", "owner": tn.ids["app1"], "rotation_period": "24h"}, nil)
	tn.must("POST", "/api/v1/kms/keys", "secadmin", map[string]any{"name": "manual", "owner": tn.ids["app1"]}, nil)
	ctx := context.Background()
	latest := func(name string) int {
		k, err := tn.svc.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return k.LatestVersion
	}
	steps := []struct {
		advance       time.Duration
		daily, manual int
	}{{time.Hour, 1, 1}, {24 * time.Hour, 2, 1}, {time.Minute, 2, 1}, {24 * time.Hour, 3, 1}}
	for i, s := range steps {
		tn.clock.Add(s.advance)
		for range 2 {
			if err := tn.svc.RotateDue(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if d, m := latest("daily"), latest("manual"); d != s.daily || m != s.manual {
			t.Fatalf("step %d: daily v%d manual v%d, want v%d v%d", i, d, m, s.daily, s.manual)
		}
	}
}

// scanKeyMaterial unwraps every live version and looks for its bytes in
// the database files, the logs and every API answer (issue #8: no
// plaintext key material in the database, logs or API responses).
func (tn *testNode) scanKeyMaterial() {
	t := tn.t
	ctx := context.Background()
	env := tn.n.Env()
	rows, err := env.DB.Query(ctx, `SELECT v.name, v.version, k.algorithm, v.wrapped FROM kms_key_versions v JOIN kms_keys k ON k.name = v.name WHERE v.wrapped IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for rows.Next() {
		var name string
		var v int
		var alg Algorithm
		var w []byte
		if err := rows.Scan(&name, &v, &alg, &w); err != nil {
			t.Fatal(err)
		}
		k, err := env.Keys.Unwrap(ctx, &hsm.WrapRequest{URI: tn.svc.cfg.KEK, Service: keyService, Data: w, AAD: versionAAD(name, v, alg)})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if len(keys) == 0 {
		t.Fatal("no key versions to scan for")
	}
	haystacks := map[string][]byte{"logs": tn.logs.Bytes()}
	for i, r := range tn.responses {
		haystacks["response "+strconv.Itoa(i)] = r
	}
	files, _ := filepath.Glob(filepath.Join(tn.dir, "govtrust.db*"))
	if len(files) == 0 {
		t.Fatal("no database files to scan")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		haystacks[f] = b
	}
	for _, k := range keys {
		for _, form := range [][]byte{k, []byte(base64.StdEncoding.EncodeToString(k)), fmt.Appendf(nil, "%x", k)} {
			for where, h := range haystacks {
				if bytes.Contains(h, form) {
					t.Errorf("key material found in %s", where)
				}
			}
		}
	}
}

// TestReadsDoNotWaitForWriter: encryption, decryption and key reads run on
// the reader pool, so a write transaction holding the writer (on SQLite the
// only writer connection, held through its commit and fsync) does not
// delay them. A read left on the writer waits for the transaction below,
// which ends only after the reads, and fails on the context's deadline.
func TestReadsDoNotWaitForWriter(t *testing.T) {
	tn := startNode(t, nil)
	setup(t, tn, map[string]Algorithm{"records": SM4GCM})
	svc := tn.svc
	plain, assoc := []byte("read while a batch commits"), []byte("case 9")
	err := svc.env.DB.Tx(context.Background(), func(*store.Tx) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ct, _, err := svc.Encrypt(ctx, "records", plain, assoc)
		if err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
		got, _, err := svc.Decrypt(ctx, "records", ct, assoc)
		if err != nil {
			return fmt.Errorf("decrypt: %w", err)
		}
		if !bytes.Equal(got, plain) {
			return fmt.Errorf("decrypt = %q, want %q", got, plain)
		}
		k, err := svc.Get(ctx, "records")
		if err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if len(k.Versions) != 1 || k.LatestVersion != 1 {
			return fmt.Errorf("get = %+v, want one version", k)
		}
		keys, err := svc.List(ctx)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if len(keys) != 1 || keys[0].Name != "records" {
			return fmt.Errorf("list = %d keys, want records only", len(keys))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUnknownKey: a key that does not exist is ErrNotFound from the service
// (Get, Encrypt) and 404 over HTTP for a caller allowed on every key.
func TestUnknownKey(t *testing.T) { unknownKey(t, startNode(t, nil)) }

// TestUnknownKeyPostgres runs TestUnknownKey on PostgreSQL.
func TestUnknownKeyPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	unknownKey(t, startNode(t, &url))
}

func unknownKey(t *testing.T, tn *testNode) {
	setup(t, tn, map[string]Algorithm{"records": SM4GCM})
	ctx := context.Background()
	if _, err := tn.svc.Get(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nosuch) = %v, want ErrNotFound", err)
	}
	if _, _, err := tn.svc.Encrypt(ctx, "nosuch", []byte("x"), nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Encrypt(nosuch) = %v, want ErrNotFound", err)
	}
	if k, err := tn.svc.Get(ctx, "records"); err != nil || k.Name != "records" || len(k.Versions) != 1 {
		t.Errorf("Get(records) = %+v, %v", k, err)
	}
	st, raw, hdr := tn.do("GET", "/api/v1/kms/keys/nosuch", "secadmin", nil, nil)
	if st != http.StatusNotFound || !strings.HasPrefix(hdr.Get("Content-Type"), "application/problem+json") {
		t.Errorf("GET unknown key: %d %s %s, want a 404 problem", st, hdr.Get("Content-Type"), raw)
	}
}
