package soft

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"

	"github.com/govtrust/govtrust/hsm"
)

func TestPassphrase(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	var aud auditLog
	logger, logs := captureLog()
	res, err := Init(ctx, st, InitRequest{Kind: KindPassphrase, Passphrase: []byte(testPassphrase), KDF: &testKDF, Audit: aud.fn, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindPassphrase || res.Shares != nil {
		t.Fatalf("init result %+v", res)
	}
	if len(aud.find(ActionInit, OutcomeSuccess)) != 1 {
		t.Error("init not audited")
	}
	rec, _ := st.GetMaster(ctx)
	if rec.KDF.Time != 1 || rec.KDF.MemoryKiB != 256 || rec.KDF.Threads != 1 || len(rec.KDF.Salt) != saltLen || rec.DevKey != nil {
		t.Errorf("master record %+v", rec)
	}

	t.Run("right", func(t *testing.T) {
		km, err := Open(ctx, st, Config{Passphrase: []byte(testPassphrase), Audit: aud.fn, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		defer km.Close()
		if err := km.Check(ctx); err != nil {
			t.Fatal(err)
		}
		s, err := km.Status(ctx)
		if err != nil || !s.Initialized || !s.Unlocked || s.Kind != KindPassphrase || s.KDFTime != 1 || s.KDFMemKiB != 256 || !s.Created.Equal(testNow) {
			t.Fatalf("status %+v, %v", s, err)
		}
		if len(aud.find(ActionUnlock, OutcomeSuccess)) != 1 {
			t.Error("unlock not audited")
		}
	})
	t.Run("wrong", func(t *testing.T) {
		for _, p := range []string{"correct horse battery staple 2027", "x", strings.ToUpper(testPassphrase)} {
			km, err := Open(ctx, st, Config{Passphrase: []byte(p), Audit: aud.fn, Logger: logger})
			if !errors.Is(err, hsm.ErrPIN) || km != nil {
				t.Fatalf("wrong passphrase: %v", err)
			}
			assertNoSecret(t, "error", err.Error(), map[string][]byte{"tried passphrase": []byte(p + "........")[:max(8, len(p))], "passphrase": []byte(testPassphrase)})
		}
		if n := len(aud.find(ActionUnlock, OutcomeFailure)); n != 3 {
			t.Errorf("%d failed unlocks audited, want 3", n)
		}
		if !strings.Contains(logs.String(), "unlock failed") {
			t.Error("failed unlock not logged")
		}
		assertNoSecret(t, "log", logs.String(), map[string][]byte{"passphrase": []byte(testPassphrase)})
		assertNoSecret(t, "audit", aud.text(), map[string][]byte{"passphrase": []byte(testPassphrase)})
	})
	t.Run("locked then unlock", func(t *testing.T) {
		km, err := Open(ctx, st, Config{Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		defer km.Close()
		s, err := km.Status(ctx)
		if err != nil || s.Unlocked || !s.Initialized {
			t.Fatalf("status %+v, %v", s, err)
		}
		if err := km.Check(ctx); !errors.Is(err, hsm.ErrLocked) {
			t.Errorf("check locked: %v", err)
		}
		_, err = km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:x", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"})
		if !errors.Is(err, hsm.ErrLocked) {
			t.Errorf("create while locked: %v", err)
		}
		if _, err := km.ListKeys(ctx, &hsm.ListKeysRequest{}); !errors.Is(err, hsm.ErrLocked) {
			t.Errorf("list while locked: %v", err)
		}
		if err := km.Unlock(ctx, Credentials{Passphrase: []byte("nope nope nope")}); !errors.Is(err, hsm.ErrPIN) {
			t.Errorf("unlock wrong: %v", err)
		}
		if err := km.Unlock(ctx, Credentials{}); !errors.Is(err, hsm.ErrPIN) {
			t.Errorf("unlock without passphrase: %v", err)
		}
		if err := km.Unlock(ctx, Credentials{Passphrase: []byte(testPassphrase)}); err != nil {
			t.Fatal(err)
		}
		if err := km.Check(ctx); err != nil {
			t.Fatal(err)
		}
		km.Lock()
		if err := km.Check(ctx); !errors.Is(err, hsm.ErrLocked) {
			t.Errorf("check after Lock: %v", err)
		}
		km.Close()
		if err := km.Unlock(ctx, Credentials{Passphrase: []byte(testPassphrase)}); !errors.Is(err, hsm.ErrLocked) {
			t.Errorf("unlock after close: %v", err)
		}
	})
	t.Run("init twice", func(t *testing.T) {
		_, err := Init(ctx, st, InitRequest{Kind: KindDev})
		if !errors.Is(err, ErrInitialized) {
			t.Errorf("second init: %v", err)
		}
	})
}

func TestInitValidation(t *testing.T) {
	ctx := context.Background()
	for _, req := range []InitRequest{
		{Kind: KindPassphrase, Passphrase: []byte("short")},
		{Kind: KindPassphrase, Passphrase: []byte(testPassphrase), KDF: &KDFParams{Time: 0, MemoryKiB: 64, Threads: 1}},
		{Kind: KindShamir, Shares: 3, Threshold: 4},
		{Kind: KindShamir, Shares: 5, Threshold: 1},
		{Kind: KindShamir, Shares: 300, Threshold: 3},
		{Kind: "hsm"},
	} {
		st := newMemStore()
		if _, err := Init(ctx, st, req); err == nil {
			t.Errorf("Init(%+v) accepted", req)
		}
		if st.master != nil {
			t.Errorf("Init(%+v) stored a record", req)
		}
	}
}

func TestShamirUnlock(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	var aud auditLog
	res, err := Init(ctx, st, InitRequest{Kind: KindShamir, Shares: 5, Threshold: 3, Audit: aud.fn})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Shares) != 5 {
		t.Fatalf("%d shares", len(res.Shares))
	}
	rec, _ := st.GetMaster(ctx)
	if rec.Threshold != 3 || rec.Shares != 5 || rec.Sealed != nil || rec.DevKey != nil {
		t.Fatalf("record %+v", rec)
	}
	for _, s := range res.Shares {
		assertNoSecret(t, "master record", string(rec.Check)+string(rec.ShareSet), map[string][]byte{"share": []byte(s)})
	}
	logger, _ := captureLog()

	// Create a key under the first 3 shares; every other subset of 3, 4 and
	// 5 shares must unlock the same master key and sign with it.
	km, err := Open(ctx, st, Config{Shares: res.Shares[:3], Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	info, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:ca/root", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "ca"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := km.Status(ctx)
	if err != nil || s.Kind != KindShamir || s.Threshold != 3 || s.Shares != 5 || s.Keys != 1 || !s.Unlocked {
		t.Errorf("status %+v, %v", s, err)
	}
	km.Close()
	for k := 3; k <= 5; k++ {
		subsets(5, k, func(idx []int) {
			var shares []string
			for _, i := range idx {
				shares = append(shares, res.Shares[i])
			}
			km, err := Open(ctx, st, Config{Shares: shares, Logger: logger})
			if err != nil {
				t.Fatalf("shares %v: %v", idx, err)
			}
			defer km.Close()
			s, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "ca"})
			if err != nil {
				t.Fatalf("shares %v: %v", idx, err)
			}
			sig, err := s.Sign(rand.Reader, []byte("msg"), sm2.DefaultSM2SignerOpts)
			if err != nil || !sm2.VerifyASN1WithSM2(info.Public.(*ecdsa.PublicKey), nil, []byte("msg"), sig) {
				t.Fatalf("shares %v: signature does not verify (%v)", idx, err)
			}
		})
	}

	other, err := Init(ctx, newMemStore(), InitRequest{Kind: KindShamir, Shares: 5, Threshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	corrupt := []byte(res.Shares[1])
	corrupt[10] ^= 'A' ^ 'B'
	if corrupt[10] == '-' {
		t.Fatal("test corrupts a separator")
	}
	for _, tc := range []struct {
		name   string
		shares []string
		want   error
		text   string
	}{
		{"m-1", res.Shares[:2], ErrBadShare, "3 shares needed, 2 given"},
		{"duplicate", []string{res.Shares[0], res.Shares[1], res.Shares[1]}, ErrBadShare, "given twice"},
		{"mistyped", []string{res.Shares[0], string(corrupt), res.Shares[2]}, ErrBadShare, "share 2"},
		{"other keystore", []string{res.Shares[0], other.Shares[1], res.Shares[2]}, ErrBadShare, "another keystore"},
		{"not a share", []string{res.Shares[0], "hello", res.Shares[2]}, ErrBadShare, "share 2"},
		{"none", nil, nil, ""}, // opens locked
	} {
		t.Run(tc.name, func(t *testing.T) {
			km, err := Open(ctx, st, Config{Shares: tc.shares, Audit: aud.fn, Logger: logger})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if err := km.Check(ctx); !errors.Is(err, hsm.ErrLocked) {
					t.Fatalf("no shares: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.text)
			}
			secrets := map[string][]byte{}
			for i, s := range append(append([]string{}, res.Shares...), other.Shares...) {
				secrets["share "+string(rune('1'+i))] = []byte(strings.ReplaceAll(s, "-", "")[4:20])
			}
			assertNoSecret(t, "error", err.Error(), secrets)
		})
	}
	if len(aud.find(ActionUnlock, OutcomeFailure)) != 5 {
		t.Errorf("failed unlocks audited: %d, want 5", len(aud.find(ActionUnlock, OutcomeFailure)))
	}
}

func TestDevMode(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	logger, logs := captureLog()
	var aud auditLog

	if _, err := Open(ctx, st, Config{Logger: logger}); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("empty keystore without dev mode: %v", err)
	}
	for i := range 2 {
		km, err := Open(ctx, st, Config{AllowDev: true, Logger: logger, Audit: aud.fn})
		if err != nil {
			t.Fatal(err)
		}
		if err := km.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:dev", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: "soft:dev", Service: "ca"}); err != nil {
			t.Fatal(err)
		}
		km.Close()
		if n := strings.Count(logs.String(), "level=WARN msg=\"hsm/soft: DEV MASTER KEY in use"); n != i+1 {
			t.Fatalf("after %d opens, %d dev warnings logged:\n%s", i+1, n, logs.String())
		}
	}
	if len(aud.find(ActionInit, OutcomeSuccess)) != 1 {
		t.Error("dev init not audited once")
	}
	// Status works without opening (and so without dev mode).
	if s, err := ReadStatus(ctx, st); err != nil || s.Kind != KindDev || s.Keys != 1 || s.Unlocked || !s.Initialized {
		t.Errorf("ReadStatus %+v, %v", s, err)
	}
	if s, err := ReadStatus(ctx, newMemStore()); err != nil || s.Initialized {
		t.Errorf("ReadStatus of an empty store %+v, %v", s, err)
	}
	rec, _ := st.GetMaster(ctx)
	if rec.Kind != KindDev || len(rec.DevKey) != masterKeyLen {
		t.Fatalf("dev record %+v", rec.Kind)
	}

	_, err := Open(ctx, st, Config{Production: true, Logger: logger})
	if !errors.Is(err, ErrDevMasterKey) || !strings.Contains(err.Error(), "dev key") || !strings.Contains(err.Error(), "production") {
		t.Errorf("production with dev key: %v", err)
	}
	if _, err := Open(ctx, st, Config{Logger: logger}); !errors.Is(err, ErrDevMasterKey) {
		t.Errorf("dev key without dev mode: %v", err)
	}
	if _, err := Open(ctx, st, Config{Production: true, AllowDev: true, Logger: logger}); err == nil {
		t.Error("production with AllowDev accepted")
	}
	assertNoSecret(t, "log", logs.String(), map[string][]byte{"dev master key": rec.DevKey})
}

func TestProductionKDF(t *testing.T) {
	ctx := context.Background()
	logger, _ := captureLog()
	weak := newMemStore()
	if _, err := Init(ctx, weak, InitRequest{Kind: KindPassphrase, Passphrase: []byte(testPassphrase), KDF: &testKDF}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, weak, Config{Production: true, Passphrase: []byte(testPassphrase), Logger: logger}); !errors.Is(err, ErrWeakKDF) {
		t.Errorf("production with weak KDF: %v", err)
	}
	if testing.Short() {
		t.Skip("default argon2id parameters take a while; -short")
	}
	strong := newMemStore()
	if _, err := Init(ctx, strong, InitRequest{Kind: KindPassphrase, Passphrase: []byte(testPassphrase)}); err != nil {
		t.Fatal(err)
	}
	rec, _ := strong.GetMaster(ctx)
	if rec.KDF.Time != 3 || rec.KDF.MemoryKiB != 65536 || rec.KDF.Threads != 4 {
		t.Errorf("default KDF %+v", rec.KDF)
	}
	km, err := Open(ctx, strong, Config{Production: true, Passphrase: []byte(testPassphrase), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	km.Close()
}

func TestCheckDetectsReplacedMaster(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	km := newPassphraseKM(t, st, Config{})
	if err := km.Check(ctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.master.Check[0] ^= 1
	st.mu.Unlock()
	if err := km.Check(ctx); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("check with replaced master record: %v", err)
	}
}
