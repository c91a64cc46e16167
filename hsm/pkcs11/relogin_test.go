//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
	p11 "github.com/miekg/pkcs11"
)

// pinTokens are the tokens the PIN tests run on. SoftHSM2 2.6 counts wrong
// PINs only as far as CKF_USER_PIN_COUNT_LOW and never locks; the
// govtrust-p11 token locks the user PIN after 10 wrong tries, raising
// CKF_USER_PIN_FINAL_TRY before the last (cmd/govtrust-p11/module.go), so
// only there can a test see that the PIN was not tried until it locked.
var pinTokens = []struct {
	name  string
	setup func(t *testing.T, label string) Config
}{
	{"softhsm2", func(t *testing.T, label string) Config {
		return newToken(t, label).config()
	}},
	{"govtrust-p11", func(t *testing.T, label string) Config {
		module := testenv.Env(t, "GTTEST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so (make p11)")
		t.Setenv("GOVTRUST_P11_CONF", "")
		t.Setenv("GOVTRUST_P11_DIR", t.TempDir())
		initSoftToken(t, module, label, "87654321", testPIN)
		return Config{Module: module, Token: label, PIN: testPIN, Vendor: "tass"}
	}},
}

// userPINFlags returns the user-PIN flags of the key manager's token.
func userPINFlags(t *testing.T, km *KeyManager) uint {
	t.Helper()
	ti, err := km.mod.ctx.GetTokenInfo(km.pool.currentSlot())
	if err != nil {
		t.Fatal(err)
	}
	return ti.Flags & (p11.CKF_USER_PIN_COUNT_LOW | p11.CKF_USER_PIN_FINAL_TRY | p11.CKF_USER_PIN_LOCKED)
}

// TestReloginWrongPIN changes the user PIN behind the key manager's back
// and logs its sessions out: the key manager tries its PIN once, and then
// answers ErrPIN without trying again, however often it is asked, until it
// is closed. Before, every operation and every readiness probe tried the old
// PIN again, and ten Checks locked the token.
func TestReloginWrongPIN(t *testing.T) {
	const newPIN = "5678"
	for _, tt := range pinTokens {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.setup(t, "repin")
			km := open(t, cfg)
			ctx := context.Background()
			info := create(t, km, "ca", hsm.ECDSAP256, hsm.UsageSign, "ca")
			s := signer(t, km, info.URI, "ca")
			err := km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
				return km.mod.ctx.SetPIN(h, cfg.PIN, newPIN)
			})
			if err != nil {
				t.Fatalf("C_SetPIN: %v", err)
			}
			if err := km.mod.ctx.Logout(km.pool.anchor); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				err := km.Check(ctx)
				if !errors.Is(err, hsm.ErrPIN) {
					t.Fatalf("Check %d = %v, want ErrPIN", i, err)
				}
				if strings.Contains(err.Error(), cfg.PIN) || strings.Contains(err.Error(), newPIN) {
					t.Errorf("error shows a PIN: %v", err)
				}
			}
			d := sha256.Sum256([]byte("x"))
			if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrPIN) {
				t.Errorf("Sign after the failed login: %v, want ErrPIN", err)
			}
			if _, err := km.ListKeys(ctx, nil); !errors.Is(err, hsm.ErrPIN) {
				t.Errorf("ListKeys after the failed login: %v, want ErrPIN", err)
			}
			flags := userPINFlags(t, km)
			if flags&(p11.CKF_USER_PIN_FINAL_TRY|p11.CKF_USER_PIN_LOCKED) != 0 {
				t.Errorf("user PIN flags %#x: the wrong PIN was tried again and again", flags)
			}
			if flags&p11.CKF_USER_PIN_COUNT_LOW == 0 {
				t.Errorf("user PIN flags %#x: no failed login recorded, want the one try", flags)
			}
			// The token is not locked: the new PIN opens it.
			fixed := cfg
			fixed.PIN = newPIN
			km2 := open(t, fixed)
			if err := km2.Check(ctx); err != nil {
				t.Errorf("Check with the new PIN: %v", err)
			}
			// The application is logged in again (by km2), but km keeps
			// failing until it is reopened: its PIN is still wrong.
			if err := km.Check(ctx); !errors.Is(err, hsm.ErrPIN) {
				t.Errorf("Check of the failed key manager after another logged in: %v, want ErrPIN", err)
			}
		})
	}
}

// TestReloginRefusedAfterFailedTry has someone else try a wrong PIN while
// the key manager is logged out: CK_TOKEN_INFO then shows
// CKF_USER_PIN_COUNT_LOW, and the key manager must not spend a try of its
// own; once a person logs in with the right PIN it works again.
func TestReloginRefusedAfterFailedTry(t *testing.T) {
	for _, tt := range pinTokens {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.setup(t, "countlow")
			km := open(t, cfg)
			ctx := context.Background()
			c := km.mod.ctx
			if err := c.Logout(km.pool.anchor); err != nil {
				t.Fatal(err)
			}
			h, err := c.OpenSession(km.pool.currentSlot(), p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseSession(h)
			if err := c.Login(h, p11.CKU_USER, wrongPIN); !errors.Is(err, p11.Error(p11.CKR_PIN_INCORRECT)) {
				t.Fatalf("login with a wrong PIN: %v", err)
			}
			err = km.Check(ctx)
			if !errors.Is(err, hsm.ErrPIN) || !strings.Contains(err.Error(), "failed logins") {
				t.Errorf("Check after a failed try = %v, want ErrPIN naming the failed logins", err)
			}
			// Had the key manager logged in (with the right PIN), the token
			// would have cleared the count.
			if flags := userPINFlags(t, km); flags&p11.CKF_USER_PIN_COUNT_LOW == 0 {
				t.Errorf("user PIN flags %#x: the key manager logged in despite the failed try", flags)
			}
			if err := c.Login(h, p11.CKU_USER, cfg.PIN); err != nil {
				t.Fatal(err)
			}
			if err := km.Check(ctx); err != nil {
				t.Errorf("Check after a person logged in: %v", err)
			}
		})
	}
}

// TestStaleHandle replaces a key's private key object by a copy (same
// CKA_ID, new handle) while its handle is cached: the signer must find the
// copy without resetting the pool and logging in again, which a stale
// handle gives no reason for.
func TestStaleHandle(t *testing.T) {
	tk := newToken(t, "stale")
	km := open(t, tk.config())
	ctx := context.Background()
	info := create(t, km, "ca", hsm.ECDSAP256, hsm.UsageSign, "ca")
	s := signer(t, km, info.URI, "ca")
	d := sha256.Sum256([]byte("x"))
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	err := km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		obj, err := km.object(h, gen, p11.CKO_PRIVATE_KEY, mustID(t, info.URI))
		if err != nil {
			return err
		}
		if _, err := km.mod.ctx.CopyObject(h, obj, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, "ca")}); err != nil {
			return err
		}
		return km.mod.ctx.DestroyObject(h, obj)
	})
	if err != nil {
		t.Fatal(err)
	}
	gen := km.pool.gen.Load()
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign after the object was replaced: %v", err)
	}
	if !ecdsa.VerifyASN1(info.Public.(*ecdsa.PublicKey), d[:], sig) {
		t.Error("signature does not verify")
	}
	if got := km.pool.gen.Load(); got != gen {
		t.Errorf("pool generation %d, was %d: a stale object handle reset the pool and logged in again", got, gen)
	}
}

// idObjects counts the objects on the token whose CKA_ID is id.
func idObjects(t *testing.T, km *KeyManager, id []byte) int {
	t.Helper()
	var n int
	err := km.do(context.Background(), func(h p11.SessionHandle, _ uint64) error {
		objs, err := findObjects(km.mod.ctx, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id)})
		n = len(objs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// loseSessionAt returns a test hook that closes every session of the
// application on the token, as a token reset does, the first time point is
// reached, and a function reporting whether it did.
func loseSessionAt(t *testing.T, km *KeyManager, point string) (hook func(string), fired func() bool) {
	done := false
	return func(p string) {
			if p != point || done {
				return
			}
			done = true
			if err := km.mod.ctx.CloseAllSessions(km.pool.currentSlot()); err != nil {
				t.Errorf("C_CloseAllSessions: %v", err)
			}
		}, func() bool {
			return done
		}
}

// TestSessionLostMidway loses the session in the middle of CreateKey (key
// objects made, metadata not yet) and of DeleteKey (metadata destroyed, key
// objects not yet). pool.do retries once after a reset; the retry must
// neither leave a second set of objects under the key's CKA_ID nor answer
// "not found" while the key's objects stay on the token.
func TestSessionLostMidway(t *testing.T) {
	tk := newToken(t, "midway")
	km := open(t, tk.config())
	ctx := context.Background()
	for _, tt := range []struct {
		alg     hsm.Algorithm
		objects int // objects with the key's CKA_ID
	}{
		{hsm.ECDSAP256, 2}, // public and private key
		{hsm.SM2, 1},       // wrapped: the public key only
	} {
		t.Run(string(tt.alg), func(t *testing.T) {
			label := "midway-" + string(tt.alg)
			hook, fired := loseSessionAt(t, km, "create:objects")
			km.testHook = hook
			info, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "pkcs11:object=" + label, Algorithm: tt.alg, Usage: hsm.UsageSign, Service: "ca"})
			km.testHook = nil
			if !fired() {
				t.Fatal("the session was not lost during CreateKey")
			}
			if err != nil {
				t.Fatalf("CreateKey after a lost session: %v", err)
			}
			id := mustID(t, info.URI)
			if n := idObjects(t, km, id); n != tt.objects {
				t.Errorf("%d objects with the key's id after CreateKey, want %d", n, tt.objects)
			}
			msg := []byte("after a lost session")
			if tt.alg == hsm.SM2 {
				sig, err := signer(t, km, info.URI, "ca").Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
				if err != nil {
					t.Fatal(err)
				}
				verifySM2(t, info.Public.(*ecdsa.PublicKey), hsm.DefaultSM2UID, msg, sig)
			} else {
				d := sha256.Sum256(msg)
				sig, err := signer(t, km, info.URI, "ca").Sign(rand.Reader, d[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if !ecdsa.VerifyASN1(info.Public.(*ecdsa.PublicKey), d[:], sig) {
					t.Error("signature does not verify")
				}
			}

			hook, fired = loseSessionAt(t, km, "delete:meta")
			km.testHook = hook
			err = km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: info.URI, Service: "ca"})
			km.testHook = nil
			if !fired() {
				t.Fatal("the session was not lost during DeleteKey")
			}
			if err != nil {
				t.Errorf("DeleteKey after a lost session: %v", err)
			}
			if n := idObjects(t, km, id); n != 0 {
				t.Errorf("%d objects with the key's id left after DeleteKey", n)
			}
			if _, err := km.PublicKey(ctx, &hsm.PublicKeyRequest{URI: info.URI}); !errors.Is(err, hsm.ErrNotFound) {
				t.Errorf("PublicKey after DeleteKey: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestOpenRefusedOnFinalTry: when the token says the user PIN is on its
// final try, New does not log in at all, so a service restarting in a loop
// with a wrong PIN cannot be what locks the token; a person logging in with
// the right PIN clears the count and New works again.
func TestOpenRefusedOnFinalTry(t *testing.T) {
	module := testenv.Env(t, "GTTEST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so (make p11)")
	t.Setenv("GOVTRUST_P11_CONF", "")
	t.Setenv("GOVTRUST_P11_DIR", t.TempDir())
	initSoftToken(t, module, "final", "87654321", testPIN)
	c := p11.New(module)
	if err := c.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil || len(slots) == 0 {
		t.Fatalf("slots: %v %v", slots, err)
	}
	h, err := c.OpenSession(slots[0], p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseSession(h)
	flags := func() uint {
		ti, err := c.GetTokenInfo(slots[0])
		if err != nil {
			t.Fatal(err)
		}
		return ti.Flags
	}
	for flags()&p11.CKF_USER_PIN_FINAL_TRY == 0 {
		if err := c.Login(h, p11.CKU_USER, wrongPIN); !errors.Is(err, p11.Error(p11.CKR_PIN_INCORRECT)) {
			t.Fatalf("wrong login: %v", err)
		}
	}
	cfg := Config{Module: module, Token: "final", PIN: wrongPIN, Vendor: "tass"}
	for _, pin := range []string{wrongPIN, testPIN} {
		cfg.PIN = pin
		km, err := New(context.Background(), cfg)
		if !errors.Is(err, hsm.ErrPIN) || !strings.Contains(err.Error(), "final try") {
			t.Fatalf("New on a final try (PIN %s) = %v, want ErrPIN naming the final try", map[string]string{wrongPIN: "wrong", testPIN: "right"}[pin], err)
		}
		if km != nil {
			km.Close()
		}
	}
	if f := flags(); f&p11.CKF_USER_PIN_LOCKED != 0 {
		t.Fatalf("flags %#x: New locked the PIN", f)
	}
	if err := c.Login(h, p11.CKU_USER, testPIN); err != nil {
		t.Fatalf("a person logs in with the right PIN: %v", err)
	}
	if err := c.Logout(h); err != nil {
		t.Fatal(err)
	}
	cfg.PIN = testPIN
	km := open(t, cfg)
	if err := km.Check(context.Background()); err != nil {
		t.Fatalf("after the count was cleared: %v", err)
	}
}
