//go:build cgo

package pkcs11

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
)

// remoteToken is a SoftHSM2 token served by `p11-kit server` in a process
// group of its own (the server forks a process per client connection), used
// through p11-kit's client module: a network HSM in miniature, which a test
// can take away and bring back.
type remoteToken struct {
	*token
	p11kit, sock, client string
	srv                  *exec.Cmd
}

func newRemoteToken(t *testing.T, label string) *remoteToken {
	t.Helper()
	p11kit := testenv.LookPath(t, "p11-kit")
	clients, _ := filepath.Glob("/usr/lib/*/pkcs11/p11-kit-client.so")
	if len(clients) == 0 {
		testenv.Missing(t, "p11-kit-client.so (Debian package p11-kit-modules)")
	}
	rt := &remoteToken{token: newToken(t, label), p11kit: p11kit, sock: filepath.Join(t.TempDir(), "p11.sock"), client: clients[0]}
	t.Setenv("P11_KIT_SERVER_ADDRESS", "unix:path="+rt.sock)
	rt.start(t)
	t.Cleanup(func() { rt.kill(t) })
	return rt
}

// start runs the server and waits until it listens.
func (rt *remoteToken) start(t *testing.T) {
	t.Helper()
	srv := exec.Command(rt.p11kit, "server", "-f", "-n", rt.sock, "--provider", rt.module, "pkcs11:token="+rt.label)
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for !strings.Contains(sc.Text(), "P11_KIT_SERVER_ADDRESS") {
		if !sc.Scan() {
			t.Fatalf("p11-kit server exited without printing its address: %v", sc.Err())
		}
	}
	rt.srv = srv
}

// kill ends the server and every process it forked, as a network HSM that
// goes away (power, network) does: connections die with no goodbye.
func (rt *remoteToken) kill(t *testing.T) {
	t.Helper()
	if rt.srv == nil {
		return
	}
	_ = syscall.Kill(-rt.srv.Process.Pid, syscall.SIGKILL)
	_ = rt.srv.Wait()
	rt.srv = nil
}

func (rt *remoteToken) config() Config {
	return Config{Module: rt.client, Token: rt.label, PIN: testPIN}
}

// verifiedSigner makes an ECDSA signing key on km and returns it with a
// function that signs once through the token and checks the signature.
func verifiedSigner(t *testing.T, km *KeyManager) (*hsm.KeyInfo, func() error) {
	t.Helper()
	info := create(t, km, "ca", hsm.ECDSAP256, hsm.UsageSign, "ca")
	s := signer(t, km, info.URI, "ca")
	d := sha256.Sum256([]byte(info.URI))
	return info, func() error {
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err == nil && !ecdsa.VerifyASN1(info.Public.(*ecdsa.PublicKey), d[:], sig) {
			return errors.New("signature does not verify")
		}
		return err
	}
}

// TestRemoteHSMLostAndBack takes a network HSM away while a signer is in
// use and brings it back. While it is away every operation fails with
// hsm.ErrUnavailable (never a panic, never another key); once it is back,
// the signer obtained before it went away signs again, without a new key
// manager: the key manager finalises and initialises the module again
// (module.reinit), which is the only way p11-kit's client module, like many
// network HSM clients, connects anew. Before, every call answered
// CKR_DEVICE_ERROR until the process restarted.
//
// One goroutine signs: with several, p11-kit's client module now and then
// leaves calls that were under way when its server died blocked for good
// (seen under -race), which the module gate survives (TestGate) but no
// re-initialisation can cure.
func TestRemoteHSMLostAndBack(t *testing.T) {
	rt := newRemoteToken(t, "remote")
	km := open(t, rt.config())
	ctx := context.Background()
	info, sign := verifiedSigner(t, km)
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	epoch := km.mod.epoch.Load()
	rt.kill(t)
	unavailable := 0
	for range 20 {
		err := sign()
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign with the HSM away: %v, want hsm.ErrUnavailable", err)
		}
		unavailable++
		time.Sleep(50 * time.Millisecond)
	}
	if err := km.Check(ctx); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Check with the HSM away: %v, want hsm.ErrUnavailable", err)
	}
	rt.start(t)
	back := time.Now()
	var recovered time.Duration
	for {
		err := sign()
		if err == nil {
			recovered = time.Since(back)
			break
		}
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign after the HSM came back: %v (neither a signature nor hsm.ErrUnavailable)", err)
		}
		if time.Since(back) > 10*time.Second {
			t.Fatalf("10 s after the HSM came back, sign still fails: %v", err)
		}
		unavailable++
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 50 {
		if err := sign(); err != nil {
			t.Fatalf("signature %d after recovery: %v", i, err)
		}
	}
	if err := km.Check(ctx); err != nil {
		t.Errorf("Check after the HSM came back: %v", err)
	}
	if km.mod.epoch.Load() == epoch {
		t.Error("the module was not initialised again")
	}
	if s2, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "ca"}); err != nil {
		t.Errorf("Signer after the HSM came back: %v", err)
	} else {
		d := sha256.Sum256([]byte("new signer"))
		if _, err := s2.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			t.Errorf("new signer: %v", err)
		}
	}
	t.Logf("HSM away: %d signatures answered hsm.ErrUnavailable; signing again %s after the server was back (module initialised %d times more)",
		unavailable, recovered.Round(time.Millisecond), km.mod.epoch.Load()-epoch)
}

// TestGate checks the module gate on its own: calls enter and exit; close
// has the module alone once the calls under way exited, refusing new ones
// meanwhile; a call that never exits makes close give up after its wait and
// let calls in again; a second closer does not wait.
func TestGate(t *testing.T) {
	var g gate
	if err := g.enter(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		g.exit()
		close(exited)
	}()
	if !g.close(5 * time.Second) {
		t.Fatal("close did not get the module after the call exited")
	}
	<-exited
	if err := g.enter(); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("enter while closed: %v, want hsm.ErrUnavailable", err)
	}
	if g.close(time.Millisecond) {
		t.Fatal("a second closer got the module too")
	}
	g.open()
	if err := g.enter(); err != nil {
		t.Fatalf("enter after open: %v", err)
	}
	// This call never exits within the wait.
	start := time.Now()
	if g.close(100 * time.Millisecond) {
		t.Fatal("close got the module with a call under way")
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("close gave up after %s, want its wait of 100ms", d)
	}
	if err := g.enter(); err != nil {
		t.Fatalf("enter after a close gave up: %v", err)
	}
	g.exit()
	g.exit()
	if !g.close(time.Millisecond) {
		t.Fatal("close with no call under way failed")
	}
	g.open()
	// Many callers and closers at once (run with -race).
	var wg sync.WaitGroup
	var held atomic.Int32
	for i := range 16 {
		wg.Go(func() {
			for range 200 {
				if i%4 == 0 {
					if g.close(time.Second) {
						if held.Add(1) != 1 {
							t.Error("two closers hold the module")
						}
						held.Add(-1)
						g.open()
					}
					continue
				}
				if g.enter() == nil {
					if held.Load() != 0 {
						t.Error("a call entered while a closer holds the module")
					}
					g.exit()
				}
			}
		})
	}
	wg.Wait()
}

// signal sends sig to the server and every process it forked.
func (rt *remoteToken) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-rt.srv.Process.Pid, sig); err != nil {
		t.Fatalf("signal %v to the p11-kit server: %v", sig, err)
	}
}

// TestRemoteHSMHangs stops a network HSM's server (SIGSTOP) while signers
// use it: its client module's calls then wait for answers that do not come,
// as they do when a network HSM or the network to it stalls. Every
// operation must answer hsm.ErrUnavailable within the key manager's
// CallTimeout instead of hanging its caller; while calls have not
// returned, later operations and Check fail at once; once the server
// answers again (SIGCONT) the same signer signs again; and Close, with
// the module hung, returns within the bound instead of hanging a
// shutdown. Before, a sign made while the server was stopped waited as
// long as the server did, and so did every caller after it.
func TestRemoteHSMHangs(t *testing.T) {
	const timeout = 500 * time.Millisecond
	rt := newRemoteToken(t, "hang")
	cfg := rt.config()
	cfg.CallTimeout = timeout
	km := open(t, cfg)
	ctx := context.Background()
	_, signOnce := verifiedSigner(t, km)
	sign := func() (time.Duration, error) {
		start := time.Now()
		err := signOnce()
		return time.Since(start), err
	}
	if _, err := sign(); err != nil {
		t.Fatal(err)
	}
	// SIGCONT in any case, so that the clean-up's SIGKILL and the calls
	// still waiting end.
	t.Cleanup(func() {
		if rt.srv != nil {
			_ = syscall.Kill(-rt.srv.Process.Pid, syscall.SIGCONT)
		}
	})

	rt.signal(t, syscall.SIGSTOP)
	const signers = 12 // more than the pool's 8 sessions
	took := make([]time.Duration, signers)
	errs := make([]error, signers)
	var wg sync.WaitGroup
	for i := range signers {
		wg.Go(func() { took[i], errs[i] = sign() })
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(20 * timeout):
		t.Fatalf("signers still waiting %s after the server stopped (CallTimeout %s)", 20*timeout, timeout)
	}
	for i := range signers {
		if !errors.Is(errs[i], hsm.ErrUnavailable) {
			t.Errorf("signer %d with the server stopped: %v, want hsm.ErrUnavailable", i, errs[i])
		}
		if took[i] > 4*timeout {
			t.Errorf("signer %d answered after %s (CallTimeout %s)", i, took[i], timeout)
		}
	}
	hung := km.mod.hung.Load()
	if hung == 0 {
		t.Fatal("no operation counts as hung")
	}
	d2, err := sign()
	if !errors.Is(err, hsm.ErrUnavailable) || !strings.Contains(err.Error(), "hangs") {
		t.Errorf("sign with the module hung: %v, want hsm.ErrUnavailable saying it hangs", err)
	}
	if d2 > timeout/2 {
		t.Errorf("sign with the module hung took %s; it should fail at once", d2)
	}
	if err := km.Check(ctx); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Check with the module hung: %v, want hsm.ErrUnavailable", err)
	}

	rt.signal(t, syscall.SIGCONT)
	back := time.Now()
	for km.mod.hung.Load() > 0 {
		if time.Since(back) > 10*time.Second {
			t.Fatalf("10 s after the server went on, %d operations still count as hung", km.mod.hung.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var recovered time.Duration
	for {
		_, err := sign()
		if err == nil {
			recovered = time.Since(back)
			break
		}
		if !errors.Is(err, hsm.ErrUnavailable) || time.Since(back) > 10*time.Second {
			t.Fatalf("sign after the server went on: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 20 {
		if _, err := sign(); err != nil {
			t.Fatalf("signature %d after the server went on: %v", i, err)
		}
	}
	if err := km.Check(ctx); err != nil {
		t.Errorf("Check after the server went on: %v", err)
	}

	// Close with the module hung returns within the bound, and again
	// once the module answers releases it.
	rt.signal(t, syscall.SIGSTOP)
	if _, err := sign(); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign with the server stopped again: %v", err)
	}
	start := time.Now()
	cerr := km.Close()
	if took := time.Since(start); took > 4*timeout {
		t.Errorf("Close with the module hung took %s (CallTimeout %s)", took, timeout)
	}
	if cerr == nil {
		t.Error("Close with the module hung reported nothing")
	}
	if _, err := sign(); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("sign after Close: %v, want hsm.ErrUnavailable", err)
	}
	rt.signal(t, syscall.SIGCONT)
	for km.mod.hung.Load() > 0 && time.Since(start) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if err := km.Close(); err != nil {
		t.Errorf("Close once the module answers again: %v", err)
	}
	t.Logf("server stopped: %d signers answered hsm.ErrUnavailable within %s, %d operations counted as hung; signing again %s after the server went on",
		signers, slices.Max(took).Round(time.Millisecond), hung, recovered.Round(time.Millisecond))
}
