//go:build cgo

package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// errNoToken says that no slot holds the configured token.
var errNoToken = fmt.Errorf("%w: token not found", hsm.ErrUnavailable)

// errNotReady: the pool is being reopened, or its reopening failed.
var errNotReady = fmt.Errorf("%w: token not logged in (being opened again)", hsm.ErrUnavailable)

// errClosed is returned by operations on a closed KeyManager.
var errClosed = fmt.Errorf("%w: pkcs11 key manager closed", hsm.ErrUnavailable)

// session is a pooled session handle, the pool generation it was opened in
// and the module's epoch (module.reinit).
type session struct {
	h     p11.SessionHandle
	gen   uint64
	epoch uint64
}

// pool is a bounded pool of read-write sessions on one token. Sessions of an
// older generation (opened before a reset) are closed when returned.
type pool struct {
	mod   *module
	token string // label to find the token again after a reset
	slot0 *uint  // configured slot, if any
	pin   string

	sem  chan struct{} // one token per open session
	idle chan session

	// mu serialises start, reset and close. slot, gen and closed are atomics
	// so that getting or returning a session never waits for a reset that
	// itself waits for sessions to be returned.
	mu          sync.Mutex
	anchor      p11.SessionHandle
	anchorEpoch uint64
	hasAnchor   bool
	slot        atomic.Uint64
	gen         atomic.Uint64
	closed      atomic.Bool
	// ready is true while the token is open and logged in: from a
	// successful openLocked to the next reset or close. get hands out no
	// session meanwhile, since one opened before the login sees no private
	// object ("not found") and would fail its caller for nothing.
	ready atomic.Bool

	// failed holds the login error (wrapping hsm.ErrPIN) once the token
	// refused the configured PIN. From then on every operation and Check
	// answers it without calling C_Login again: repeating a wrong PIN on
	// every "session lost" answer or readiness probe would lock the token's
	// user PIN after a few tries (its failure counter, PKCS#11 v2.40 §3.2
	// CKF_USER_PIN_COUNT_LOW..LOCKED). Only a new key manager tries again.
	failed atomic.Pointer[error]

	// dropHandles forgets cached object handles. It is called when the
	// token says a handle is invalid while the session is still logged in,
	// so that the objects are looked up again instead of logging in again.
	dropHandles func()
}

func newPool(mod *module, cfg Config) *pool {
	return &pool{
		mod:   mod,
		token: cfg.Token,
		slot0: cfg.Slot,
		pin:   cfg.PIN,
		sem:   make(chan struct{}, cfg.MaxSessions),
		idle:  make(chan session, cfg.MaxSessions),
	}
}

// findSlot returns the slot holding the configured token.
func (p *pool) findSlot() (uint, error) {
	slots, err := p.mod.ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("%w: list slots: %w", hsm.ErrUnavailable, err)
	}
	for _, s := range slots {
		if p.slot0 != nil && s != *p.slot0 {
			continue
		}
		ti, err := p.mod.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		if p.token != "" && ti.Label != p.token {
			continue
		}
		return s, nil
	}
	switch {
	case p.slot0 != nil && p.token != "":
		return 0, fmt.Errorf("%w: no token %q in slot %d", errNoToken, p.token, *p.slot0)
	case p.slot0 != nil:
		return 0, fmt.Errorf("%w: no initialised token in slot %d", errNoToken, *p.slot0)
	default:
		return 0, fmt.Errorf("%w: no token labelled %q", errNoToken, p.token)
	}
}

// start finds the token, opens the first session and logs in.
func (p *pool) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.mod.gate.enter(); err != nil {
		return err
	}
	defer p.mod.gate.exit()
	return p.openLocked(false)
}

// failure returns the latched login error, or nil.
func (p *pool) failure() error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// openLocked finds the token, opens the anchor session and logs in. p.mu is
// held, and the caller is inside the module's gate. The anchor session is
// never used for operations and stays open until the next reset or close:
// the login state of a token lasts only while the application has a session
// open on it (PKCS#11 v2.40 §5.6), and working sessions are closed after
// errors.
//
// relogin is true when the key manager logged in before and lost the login.
// Then the token's PIN flags are read first, and a login that would spend
// one of the last tries of the user PIN is not attempted (see checkPINFlags).
// A login refused for the PIN latches the pool (see failed).
func (p *pool) openLocked(relogin bool) error {
	if err := p.failure(); err != nil {
		return err
	}
	slot, err := p.findSlot()
	if err != nil {
		return err
	}
	p.slot.Store(uint64(slot))
	h, err := p.mod.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return mapErr("open session", err)
	}
	// When the application is still logged in (another key manager of the
	// process kept the login), C_Login checks no PIN and spends no try.
	// At first open only a locked PIN or its final try stop the login: a
	// service restarting in a loop with a wrong PIN must not be what locks
	// the token. After a lost login any failed try stops it (see
	// checkPINFlags).
	if !loggedIn(p.mod.ctx, h) {
		if err := p.checkPINFlags(slot, relogin); err != nil {
			_ = p.mod.ctx.CloseSession(h)
			return err
		}
	}
	if err := p.mod.login(slot, h, p.pin); err != nil {
		_ = p.mod.ctx.CloseSession(h)
		if errors.Is(err, hsm.ErrPIN) {
			err = fmt.Errorf("%w (not logging in again until the key manager is reopened)", err)
			p.failed.Store(&err)
		}
		return err
	}
	p.anchor, p.anchorEpoch, p.hasAnchor = h, p.mod.epoch.Load(), true
	p.ready.Store(true)
	return nil
}

// checkPINFlags refuses an automatic login when CK_TOKEN_INFO says that the
// user PIN is locked, on its final try, or has failed before (PKCS#11 v2.40
// §3.2: CKF_USER_PIN_LOCKED, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_COUNT_LOW).
// A failed try since our last login means someone, maybe an attacker or an
// operator changing the PIN, is at work on the token; an unattended retry
// must not be the one that locks it. A person logging in with the right PIN
// clears the count, after which the key manager logs in again by itself.
func (p *pool) checkPINFlags(slot uint, anyFailure bool) error {
	ti, err := p.mod.ctx.GetTokenInfo(slot)
	if err != nil {
		return mapErr("token info", err)
	}
	var why []string
	if ti.Flags&p11.CKF_USER_PIN_LOCKED != 0 {
		why = append(why, "locked")
	}
	if ti.Flags&p11.CKF_USER_PIN_FINAL_TRY != 0 {
		why = append(why, "on its final try")
	}
	if anyFailure && ti.Flags&p11.CKF_USER_PIN_COUNT_LOW != 0 {
		why = append(why, "has had failed logins")
	}
	if len(why) > 0 {
		return fmt.Errorf("pkcs11 login: %w: the token reports the user PIN %s; not logging in again automatically",
			hsm.ErrPIN, strings.Join(why, " and "))
	}
	return nil
}

// closeAnchorLocked closes the anchor session. p.mu is held, and the
// caller is inside the module's gate.
func (p *pool) closeAnchorLocked() {
	if p.hasAnchor {
		if p.anchorEpoch == p.mod.epoch.Load() {
			_ = p.mod.ctx.CloseSession(p.anchor)
		}
		p.hasAnchor = false
	}
}

// get returns a session of the current generation, opening one if the pool
// is below its bound, or waiting for one to be returned. The module's gate
// has been entered.
func (p *pool) get(ctx context.Context) (session, error) {
	if err := p.failure(); err != nil {
		return session{}, err
	}
	if !p.ready.Load() && !p.closed.Load() {
		// A reset is under way or failed: do waits for it and tries
		// again, or resets itself (resetIfNotReady).
		return session{gen: p.gen.Load()}, errNotReady
	}
	for {
		var s session
		select {
		case s = <-p.idle:
		default:
			select {
			case s = <-p.idle:
			case p.sem <- struct{}{}:
				if p.closed.Load() {
					<-p.sem
					return session{}, errClosed
				}
				gen, epoch := p.gen.Load(), p.mod.epoch.Load()
				h, err := p.mod.ctx.OpenSession(uint(p.slot.Load()), p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
				if err != nil {
					<-p.sem
					return session{gen: gen, epoch: epoch}, mapErr("open session", err)
				}
				return session{h: h, gen: gen, epoch: epoch}, nil
			case <-ctx.Done():
				return session{}, ctx.Err()
			}
		}
		if p.closed.Load() {
			p.discard(s)
			return session{}, errClosed
		}
		if s.gen != p.gen.Load() {
			p.discard(s)
			continue
		}
		return s, nil
	}
}

// put returns s to the pool, or closes it when it is broken or stale.
func (p *pool) put(s session, broken bool) {
	if broken || p.closed.Load() || s.gen != p.gen.Load() {
		p.discard(s)
		return
	}
	p.idle <- s // never blocks: at most cap(sem) sessions exist
}

// discard closes s, unless the module was initialised again since it was
// opened. The caller is inside the module's gate.
func (p *pool) discard(s session) {
	if s.epoch == p.mod.epoch.Load() {
		_ = p.mod.ctx.CloseSession(s.h)
	}
	<-p.sem
}

// reset drops every idle session and the anchor session, finds the token
// again (it may have moved to another slot), opens a new anchor session and
// logs in again. When the library itself is down (moduleDown), it is
// initialised again first (module.reinit). It does nothing when another
// goroutine already reset the generation gen, and fails at once when a
// login was refused for the PIN. The caller must not be inside the module's
// gate.
func (p *pool) reset(gen uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return errClosed
	}
	if err := p.failure(); err != nil {
		return err
	}
	if gen != p.gen.Load() {
		return nil
	}
	p.ready.Store(false)
	p.gen.Add(1)
	open := func() (uint64, error) {
		epoch := p.mod.epoch.Load()
		if err := p.mod.gate.enter(); err != nil {
			return epoch, err
		}
		defer p.mod.gate.exit()
		p.drainLocked()
		p.closeAnchorLocked()
		return p.mod.epoch.Load(), p.openLocked(true)
	}
	epoch, err := open()
	if err == nil {
		p.mod.recovering.Store(false)
	}
	if !moduleDown(err) && !(p.mod.recovering.Load() && errors.Is(err, errNoToken)) {
		return err
	}
	if rerr := p.mod.reinit(epoch); rerr != nil {
		return fmt.Errorf("%w (after %w)", rerr, err)
	}
	if _, err = open(); err == nil {
		p.mod.recovering.Store(false)
	}
	return err
}

// drainLocked closes the idle sessions. p.mu is held, and the module's gate
// entered.
func (p *pool) drainLocked() {
	for {
		select {
		case s := <-p.idle:
			p.discard(s)
		default:
			return
		}
	}
}

// close closes the idle sessions and makes every later get fail. Sessions in
// use are closed when returned.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed.Store(true)
	p.ready.Store(false)
	if err := p.mod.gate.enter(); err != nil {
		// Being initialised again: every session is gone with it.
		p.hasAnchor = false
		return
	}
	defer p.mod.gate.exit()
	p.drainLocked()
	p.closeAnchorLocked()
}

// abandon makes every later get fail without calling the module, which
// hangs: the sessions stay open, since closing them would hang too.
func (p *pool) abandon() {
	p.closed.Store(true)
	p.ready.Store(false)
}

// currentSlot returns the slot of the token now.
func (p *pool) currentSlot() uint { return uint(p.slot.Load()) }

// do runs fn with a pooled session. fn gets the session's generation so that
// it can key cached object handles by it. Two failures are recovered from,
// each once:
//
//   - the token says an object handle is invalid while the session is still
//     logged in (the object was destroyed, maybe by another process, or the
//     token renumbered its objects): cached handles are dropped and fn runs
//     again, looking its objects up anew;
//   - the session, the login or the token went away: the pool is reset (new
//     sessions, login again, see openLocked for when it will not) and fn
//     runs again.
func (p *pool) do(ctx context.Context, fn func(h p11.SessionHandle, gen uint64) error) error {
	var resetDone, handlesDropped bool
	for {
		s, err := p.once(ctx, fn)
		switch {
		case err == nil:
			return nil
		case staleHandle(err) && !handlesDropped:
			handlesDropped = true
			if p.dropHandles != nil {
				p.dropHandles()
			}
		case errors.Is(err, errNotReady) && !resetDone:
			resetDone = true
			if rerr := p.resetIfNotReady(); rerr != nil {
				return fmt.Errorf("%w (after %w)", rerr, err)
			}
		case lost(err) && !resetDone:
			resetDone = true
			if rerr := p.reset(s.gen); rerr != nil {
				return fmt.Errorf("%w (after %w)", rerr, err)
			}
		default:
			return err
		}
	}
}

// resetIfNotReady waits for a reset under way (it holds p.mu) and, if the
// pool is still not logged in afterwards (that reset failed), resets it.
// Callers that found the pool being reopened thus wait for it instead of
// each reopening it once more.
func (p *pool) resetIfNotReady() error {
	p.mu.Lock()
	ready, gen := p.ready.Load(), p.gen.Load()
	p.mu.Unlock()
	if ready {
		return nil
	}
	return p.reset(gen)
}

// once gets a session, runs fn on it and returns the session, all inside
// the module's gate, so that module.reinit never runs during a call. It
// returns the session used (or, when none could be had, its generation) and
// fn's or get's error.
func (p *pool) once(ctx context.Context, fn func(h p11.SessionHandle, gen uint64) error) (session, error) {
	if err := p.mod.gate.enter(); err != nil {
		return session{gen: p.gen.Load()}, err
	}
	defer p.mod.gate.exit()
	s, err := p.get(ctx)
	if err != nil {
		return s, err
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up (KeyManager.bounded) while this waited: the
		// operation is not begun after its caller was told it failed.
		p.put(s, false)
		return s, err
	}
	err = fn(s.h, s.gen)
	if (errors.Is(err, hsm.ErrNotFound) || staleHandle(err)) && !loggedIn(p.mod.ctx, s.h) {
		// Private objects are invisible to a session that lost its
		// login, so "not found" or "handle invalid" may mean "logged
		// out" (SoftHSM2 answers so after C_Logout).
		err = fmt.Errorf("%w: session not logged in", p11.Error(p11.CKR_USER_NOT_LOGGED_IN))
	}
	var pe p11.Error
	// Any PKCS#11 error may leave an operation active on the session
	// (C_FindObjectsInit without Final, C_SignInit without C_Sign), so
	// the session is not reused after one.
	p.put(s, errors.As(err, &pe))
	return s, err
}

// loggedIn reports whether session h has the user logged in.
func loggedIn(ctx *p11.Ctx, h p11.SessionHandle) bool {
	si, err := ctx.GetSessionInfo(h)
	return err == nil && (si.State == p11.CKS_RW_USER_FUNCTIONS || si.State == p11.CKS_RO_USER_FUNCTIONS)
}

// lost reports whether err means that sessions or the login are no longer
// valid, so that reopening and logging in again may help. Invalid object
// handles are not in this list (see staleHandle): a handle goes stale when
// its object is destroyed, which another login does not cure.
func lost(err error) bool {
	var pe p11.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe {
	case p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_ERROR,
		p11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

// staleHandle reports whether err says that an object handle is not valid.
func staleHandle(err error) bool {
	var pe p11.Error
	return errors.As(err, &pe) && (pe == p11.CKR_KEY_HANDLE_INVALID || pe == p11.CKR_OBJECT_HANDLE_INVALID)
}

// mapErr wraps a PKCS#11 error with the hsm sentinel callers test for.
func mapErr(op string, err error) error {
	var pe p11.Error
	if !errors.As(err, &pe) || errors.Is(err, hsm.ErrPIN) || errors.Is(err, hsm.ErrUnavailable) {
		return fmt.Errorf("pkcs11 %s: %w", op, err)
	}
	switch pe {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE,
		p11.CKR_PIN_EXPIRED, p11.CKR_PIN_LOCKED, p11.CKR_USER_PIN_NOT_INITIALIZED:
		return fmt.Errorf("pkcs11 %s: %w: %w", op, hsm.ErrPIN, err)
	case p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_TOKEN_NOT_RECOGNIZED,
		p11.CKR_SLOT_ID_INVALID, p11.CKR_CRYPTOKI_NOT_INITIALIZED, p11.CKR_DEVICE_ERROR,
		p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_USER_NOT_LOGGED_IN:
		return fmt.Errorf("pkcs11 %s: %w: %w", op, hsm.ErrUnavailable, err)
	}
	return fmt.Errorf("pkcs11 %s: %w", op, err)
}
