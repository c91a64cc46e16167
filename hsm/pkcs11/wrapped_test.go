//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// closeTimeout bounds the wait for Close in TestCloseDuringUnwrap. It is a
// hang detector, not a speed requirement: a Close that works returns in
// milliseconds.
const closeTimeout = 10 * time.Second

// TestCloseDuringUnwrap closes a key manager while many goroutines sign
// with several wrapped SM2 keys whose use period is so short that they are
// unwrapped again all the time. Close must return: it may not wait for an
// unwrap that itself waits for Close to let it reach the token.
func TestCloseDuringUnwrap(t *testing.T) {
	tk := newToken(t, "close")
	cfg := tk.config()
	cfg.UnwrapTTL = time.Millisecond
	cfg.MaxSessions = 4
	ctx := context.Background()

	setup := open(t, cfg)
	var uris []string
	for i := range 3 {
		uris = append(uris, create(t, setup, fmt.Sprintf("seal-%d", i), hsm.SM2, hsm.UsageSign, "seal").URI)
	}

	const rounds, workers, warmup = 4, 12, 60
	for round := range rounds {
		km, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var signers []crypto.Signer
		for _, u := range uris {
			signers = append(signers, signer(t, km, u, "seal"))
		}
		var (
			signed atomic.Int64
			warm   = make(chan struct{})
			once   sync.Once
			wg     sync.WaitGroup
			errs   = make(chan error, workers)
		)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := signers[w%len(signers)]
				pub := s.Public().(*ecdsa.PublicKey)
				for i := 0; ; i++ {
					msg := fmt.Appendf(nil, "round %d worker %d message %d", round, w, i)
					sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
					if err != nil {
						errs <- err
						return
					}
					if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
						errs <- errors.New("signature does not verify")
						return
					}
					if signed.Add(1) == warmup {
						once.Do(func() { close(warm) })
					}
				}
			}()
		}
		<-warm
		closed := make(chan error, 1)
		go func() { closed <- km.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-time.After(closeTimeout):
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("round %d: Close did not return within %v while keys were being unwrapped:\n%s", round, closeTimeout, b.String())
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, hsm.ErrUnavailable) {
				t.Errorf("round %d: signing ended with %v, want ErrUnavailable (closed)", round, err)
			}
		}
		if n := km.sm2keys.held(); n != 0 {
			t.Errorf("round %d: %d unwrapped keys held after Close", round, n)
		}
	}
}

// TestWrappedKeyDeletedElsewhere deletes a wrapped SM2 key through a second
// key manager, as another process would: the first one's signer, whose key
// is unwrapped in memory, must stop at once, not at the end of the use
// period.
func TestWrappedKeyDeletedElsewhere(t *testing.T) {
	tk := newToken(t, "elsewhere")
	cfg := tk.config()
	cfg.UnwrapTTL = time.Hour
	ctx := context.Background()
	km := open(t, cfg)
	other := open(t, cfg)
	info := create(t, km, "seal", hsm.SM2, hsm.UsageSign, "seal")
	s := signer(t, km, info.URI, "seal")
	msg := []byte("before the delete")
	if _, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
		t.Fatal(err)
	}
	if n := km.sm2keys.held(); n != 1 {
		t.Fatalf("%d keys held after the first signature, want 1", n)
	}
	if err := other.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: info.URI, Service: "seal"}); err != nil {
		t.Fatal(err)
	}
	if sig, err := s.Sign(rand.Reader, []byte("after the delete"), sm2.DefaultSM2SignerOpts); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("Sign with a key deleted elsewhere = %x, %v; want ErrNotFound", sig, err)
	}
	if n := km.sm2keys.held(); n != 0 {
		t.Errorf("%d keys held after the key was found deleted, want 0", n)
	}
}

// TestTakeSecretDestroyFails makes the token refuse to destroy the session
// object that holds a clear secret (CKA_DESTROYABLE false, PKCS#11 v2.40
// §4.4): takeSecret, which unwrapSM2 uses for the SM2 scalar, must report
// it, so that the session, and with it the object, is closed rather than
// returned to the pool.
func TestTakeSecretDestroyFails(t *testing.T) {
	tk := newToken(t, "destroy")
	km := open(t, tk.config())
	c := km.mod.ctx
	secret := bytes.Repeat([]byte{0x5a}, 32)
	var sh p11.SessionHandle
	err := km.do(context.Background(), func(h p11.SessionHandle, _ uint64) error {
		sh = h
		tmp, err := c.CreateObject(h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_SENSITIVE, false),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
			p11.NewAttribute(p11.CKA_DESTROYABLE, false),
			p11.NewAttribute(p11.CKA_VALUE, secret),
		})
		if err != nil {
			return fmt.Errorf("create test object: %w", err)
		}
		d, err := takeSecret(c, h, tmp)
		if err == nil {
			t.Error("takeSecret succeeded although the object holding the secret was not destroyed")
		}
		if len(d) != 0 {
			t.Errorf("takeSecret returned %d bytes of the secret with error %v", len(d), err)
		}
		return err
	})
	if !errors.Is(err, p11.Error(p11.CKR_ACTION_PROHIBITED)) {
		t.Errorf("do = %v, want the token's CKR_ACTION_PROHIBITED", err)
	}
	if _, err := c.GetSessionInfo(sh); !errors.Is(err, p11.Error(p11.CKR_SESSION_HANDLE_INVALID)) {
		t.Errorf("the session holding the undestroyed secret is still open (GetSessionInfo: %v)", err)
	}
}
