package soft

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKDF keeps argon2id cheap in tests; production refuses it (tested).
var testKDF = KDFParams{Time: 1, MemoryKiB: 256, Threads: 1}

const testPassphrase = "correct horse battery staple 2026"

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)

func fixedNow() time.Time { return testNow }

// syncBuffer is a bytes.Buffer safe for the concurrent writes of slog.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func captureLog() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type auditRecord struct {
	action, object, outcome string
	details                 map[string]any
}

// auditLog records what the keystore audits.
type auditLog struct {
	mu   sync.Mutex
	recs []auditRecord
}

func (a *auditLog) fn(_ context.Context, action, object, outcome string, details map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, auditRecord{action, object, outcome, details})
}

func (a *auditLog) find(action, outcome string) []auditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auditRecord
	for _, r := range a.recs {
		if r.action == action && r.outcome == outcome {
			out = append(out, r)
		}
	}
	return out
}

func (a *auditLog) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	for _, r := range a.recs {
		b.WriteString(r.action + " " + r.object + " " + r.outcome)
		for k, v := range r.details {
			b.WriteString(" " + k + "=")
			b.WriteString(fmt.Sprint(v))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// encodings returns the ways a secret could leak into text.
func encodings(secret []byte) []string {
	return []string{
		string(secret),
		hex.EncodeToString(secret),
		strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
		base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret),
	}
}

// assertNoSecret fails if text contains any secret in any usual encoding.
// Secrets shorter than 8 bytes are compared only for at least 8 characters.
func assertNoSecret(t *testing.T, where, text string, secrets map[string][]byte) {
	t.Helper()
	for name, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("secret %s too short to scan for", name)
		}
		for _, enc := range encodings(s) {
			if strings.Contains(text, enc) {
				t.Errorf("%s contains %s", where, name)
			}
		}
	}
}

// newPassphraseKM initialises st with a passphrase and opens it unlocked.
func newPassphraseKM(t *testing.T, st Store, cfg Config) *KeyManager {
	t.Helper()
	ctx := context.Background()
	if _, err := Init(ctx, st, InitRequest{Kind: KindPassphrase, Passphrase: []byte(testPassphrase), KDF: &testKDF, Now: fixedNow}); err != nil {
		t.Fatal(err)
	}
	cfg.Passphrase = []byte(testPassphrase)
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	if cfg.Logger == nil {
		cfg.Logger, _ = captureLog()
	}
	km, err := Open(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { km.Close() })
	return km
}
