//go:build cgo

package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// errClosed is returned by operations on a closed KeyManager.
var errClosed = fmt.Errorf("%w: pkcs11 key manager closed", hsm.ErrUnavailable)

// session is a pooled session handle and the pool generation it was opened in.
type session struct {
	h   p11.SessionHandle
	gen uint64
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
	mu        sync.Mutex
	anchor    p11.SessionHandle
	hasAnchor bool
	slot      atomic.Uint64
	gen       atomic.Uint64
	closed    atomic.Bool
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
		return 0, fmt.Errorf("%w: no token %q in slot %d", hsm.ErrUnavailable, p.token, *p.slot0)
	case p.slot0 != nil:
		return 0, fmt.Errorf("%w: no initialised token in slot %d", hsm.ErrUnavailable, *p.slot0)
	default:
		return 0, fmt.Errorf("%w: no token labelled %q", hsm.ErrUnavailable, p.token)
	}
}

// start finds the token, opens the first session and logs in.
func (p *pool) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.openLocked()
}

// openLocked finds the token, opens the anchor session and logs in. p.mu is
// held. The anchor session is never used for operations and stays open until
// the next reset or close: the login state of a token lasts only while the
// application has a session open on it (PKCS#11 v2.40 §5.6), and working
// sessions are closed after errors.
func (p *pool) openLocked() error {
	slot, err := p.findSlot()
	if err != nil {
		return err
	}
	p.slot.Store(uint64(slot))
	h, err := p.mod.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return mapErr("open session", err)
	}
	if err := p.mod.login(slot, h, p.pin); err != nil {
		_ = p.mod.ctx.CloseSession(h)
		return err
	}
	p.anchor, p.hasAnchor = h, true
	return nil
}

// closeAnchorLocked closes the anchor session. p.mu is held.
func (p *pool) closeAnchorLocked() {
	if p.hasAnchor {
		_ = p.mod.ctx.CloseSession(p.anchor)
		p.hasAnchor = false
	}
}

// get returns a session of the current generation, opening one if the pool
// is below its bound, or waiting for one to be returned.
func (p *pool) get(ctx context.Context) (session, error) {
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
				gen := p.gen.Load()
				h, err := p.mod.ctx.OpenSession(uint(p.slot.Load()), p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
				if err != nil {
					<-p.sem
					return session{gen: gen}, mapErr("open session", err)
				}
				return session{h: h, gen: gen}, nil
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

func (p *pool) discard(s session) {
	_ = p.mod.ctx.CloseSession(s.h)
	<-p.sem
}

// reset drops every idle session and the anchor session, finds the token
// again (it may have moved to another slot), opens a new anchor session and
// logs in again. It does nothing when another goroutine already reset the
// generation gen.
func (p *pool) reset(gen uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return errClosed
	}
	if gen != p.gen.Load() {
		return nil
	}
	p.gen.Add(1)
	p.drainLocked()
	p.closeAnchorLocked()
	return p.openLocked()
}

// drainLocked closes the idle sessions. p.mu is held.
func (p *pool) drainLocked() {
	for {
		select {
		case s := <-p.idle:
			_ = p.mod.ctx.CloseSession(s.h)
			<-p.sem
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
	p.drainLocked()
	p.closeAnchorLocked()
}

// currentSlot returns the slot of the token now.
func (p *pool) currentSlot() uint { return uint(p.slot.Load()) }

// do runs fn with a pooled session. When fn fails because the session, the
// login or the token went away, the pool is reset (new sessions, login again)
// and fn is retried once. fn gets the session's generation so that it can key
// cached object handles by it.
func (p *pool) do(ctx context.Context, fn func(h p11.SessionHandle, gen uint64) error) error {
	for attempt := 0; ; attempt++ {
		s, err := p.get(ctx)
		if err != nil {
			if attempt == 0 && lost(err) {
				if rerr := p.reset(s.gen); rerr != nil {
					return fmt.Errorf("%w (after %w)", rerr, err)
				}
				continue
			}
			return err
		}
		err = fn(s.h, s.gen)
		if errors.Is(err, hsm.ErrNotFound) && !loggedIn(p.mod.ctx, s.h) {
			// Private objects are invisible to a session that lost its
			// login, so "not found" may mean "logged out".
			err = fmt.Errorf("%w: session not logged in", p11.Error(p11.CKR_USER_NOT_LOGGED_IN))
		}
		var pe p11.Error
		// Any PKCS#11 error may leave an operation active on the session
		// (C_FindObjectsInit without Final, C_SignInit without C_Sign), so
		// the session is not reused after one.
		p.put(s, errors.As(err, &pe))
		if err == nil {
			return nil
		}
		if attempt > 0 || !lost(err) {
			return err
		}
		if rerr := p.reset(s.gen); rerr != nil {
			return fmt.Errorf("%w (after %w)", rerr, err)
		}
	}
}

// loggedIn reports whether session h has the user logged in.
func loggedIn(ctx *p11.Ctx, h p11.SessionHandle) bool {
	si, err := ctx.GetSessionInfo(h)
	return err == nil && (si.State == p11.CKS_RW_USER_FUNCTIONS || si.State == p11.CKS_RO_USER_FUNCTIONS)
}

// lost reports whether err means that sessions, login or object handles are
// no longer valid, so that reopening and logging in again may help.
func lost(err error) bool {
	var pe p11.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe {
	case p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_ERROR,
		p11.CKR_SLOT_ID_INVALID,
		// Handles of private objects become invalid when the login state is
		// lost (SoftHSM2 answers so after C_Logout or C_CloseAllSessions).
		p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}

// mapErr wraps a PKCS#11 error with the hsm sentinel callers test for.
func mapErr(op string, err error) error {
	var pe p11.Error
	if !errors.As(err, &pe) {
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
