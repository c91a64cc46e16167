//go:build cgo

package pkcs11

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// module is one loaded and initialised PKCS#11 library. C_Initialize may be
// called once per process and library (PKCS#11 v2.40 §5.4: a second call
// returns CKR_CRYPTOKI_ALREADY_INITIALIZED) and C_Finalize ends it for every
// user, so key managers on several tokens of one module share it, counted.
type module struct {
	path  string
	ctx   *p11.Ctx
	refs  int
	owned bool // we called C_Initialize, so we call C_Finalize

	// gate lets reinit run alone (see gate). epoch counts the
	// initialisations: a session or anchor handle of an older epoch is
	// gone with it, and its number may since name a new session, so it is
	// never closed. lastInit (held by the gate's closer) bounds how often a
	// module that stays down is initialised again.
	gate     gate
	epoch    atomic.Uint64
	lastInit time.Time
	down     bool // the last C_Initialize of reinit failed (held by the gate's closer)
	// busyUntil (UnixNano): after a close that timed out, reinit does not
	// try again before this.
	busyUntil atomic.Int64
	// recovering is set by a reinit for a library that was down and
	// cleared once a token is opened again: until then a token that cannot
	// be found is taken as the library still being down (a network HSM's
	// client initialised while its server was away lists no slots, and
	// connects only at the next C_Initialize), not as a token unplugged.
	recovering atomic.Bool
	// hung counts the operations of key managers on this module that have
	// run past their CallTimeout and not yet returned (KeyManager.do).
	// While it is above zero the module is taken as hung: operations fail
	// at once instead of piling up behind it.
	hung atomic.Int32

	// pins holds, per slot, the SHA-256 of the PIN this process logged in
	// with (see login).
	pinsMu sync.Mutex
	pins   map[uint][sha256.Size]byte
}

// login logs the user in on slot. Login state belongs to the application
// and is shared by all its sessions on a token (PKCS#11 v2.40 §5.6), so a
// second key manager on a token already logged in gets
// CKR_USER_ALREADY_LOGGED_IN without the token checking its PIN. That is
// accepted only for the PIN that did log in: a wrong PIN must not ride on
// another key manager's login (ACCEPTANCE.md E-02).
func (m *module) login(slot uint, h p11.SessionHandle, pin string) error {
	sum := sha256.Sum256([]byte(pin))
	err := m.ctx.Login(h, p11.CKU_USER, pin)
	var pe p11.Error
	m.pinsMu.Lock()
	defer m.pinsMu.Unlock()
	switch {
	case err == nil:
		if m.pins == nil {
			m.pins = map[uint][sha256.Size]byte{}
		}
		m.pins[slot] = sum
		return nil
	case errors.As(err, &pe) && pe == p11.CKR_USER_ALREADY_LOGGED_IN:
		if have, ok := m.pins[slot]; ok && subtle.ConstantTimeCompare(have[:], sum[:]) == 1 {
			return nil
		}
		return fmt.Errorf("pkcs11 login: %w: the token is already logged in with another PIN", hsm.ErrPIN)
	}
	// mapErr turns PIN errors into hsm.ErrPIN; the PIN itself is never in
	// err, which carries only the return code.
	return mapErr("login", err)
}

// gate keeps calls into a module and its re-initialisation apart without
// letting one call that never returns (a network HSM's client waiting on a
// dead connection) stop the others. Calls enter and exit; close refuses new
// entries, waits up to a time for the calls under way, and either holds the
// module alone (until open) or gives up and lets calls in again. While a
// closer waits or holds, enter fails at once: the caller answers
// hsm.ErrUnavailable, which it would have from a library that is down.
type gate struct {
	mu       sync.Mutex
	inflight int
	closing  bool
	drained  chan struct{} // closed when the last call exits during a close
}

// gateDrain is how long close waits for the calls under way, and
// gateBusyPause how long reinit then leaves the module alone: meanwhile
// calls are let in (and fail as the library answers) instead of waiting.
const (
	gateDrain     = 5 * time.Second
	gateBusyPause = 30 * time.Second
)

// errReinitBusy: the module could not be had alone.
var errReinitBusy = fmt.Errorf("%w: PKCS#11 module busy; not initialised again", hsm.ErrUnavailable)

// errReiniting answers a call made while the module is being initialised again.
var errReiniting = fmt.Errorf("%w: PKCS#11 module being initialised again", hsm.ErrUnavailable)

func (g *gate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return errReiniting
	}
	g.inflight++
	return nil
}

func (g *gate) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight--
	if g.inflight == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// close reports whether the caller now holds the module alone: no call
// under way and none let in until open. It is false when another closer
// holds or waits, or when the calls under way did not end within wait.
func (g *gate) close(wait time.Duration) bool {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return false
	}
	g.closing = true
	if g.inflight == 0 {
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	g.drained = ch
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.drained == nil { // the last call exited as the timer fired
		return true
	}
	g.closing, g.drained = false, nil
	return false
}

// open lets calls in again after a successful close.
func (g *gate) open() {
	g.mu.Lock()
	g.closing = false
	g.mu.Unlock()
}

// reinitInterval is the least time between two initialisations of a
// module by reinit.
const reinitInterval = time.Second

// errReinitSoon is reinit's answer within reinitInterval of the last one.
var errReinitSoon = fmt.Errorf("%w: PKCS#11 module initialised again less than %s ago", hsm.ErrUnavailable, reinitInterval)

// moduleDown reports whether err, from finding the token and opening its
// anchor session (pool.openLocked), says that the library itself no longer
// works (a network HSM's client that lost its
// server, a library whose state broke) rather than that a token is absent:
// such a library answers the same to every call until it is finalised and
// initialised again. p11-kit's client module answers CKR_DEVICE_ERROR to
// everything once its server went away, also after the server is back.
func moduleDown(err error) bool {
	var pe p11.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe {
	case p11.CKR_DEVICE_ERROR, p11.CKR_GENERAL_ERROR, p11.CKR_FUNCTION_FAILED,
		p11.CKR_CRYPTOKI_NOT_INITIALIZED, p11.CKR_DEVICE_REMOVED:
		return true
	}
	return false
}

// reinit finalises the library and initialises it again (C_Finalize,
// C_Initialize), which makes a network HSM's client connect anew. It waits
// for the token calls under way and runs alone. Every session, login and
// object handle of every key manager on the module ends with it; their
// pools notice (CKR_SESSION_HANDLE_INVALID, "user not logged in") and open
// and log in again as after a token reset. It does nothing when another
// caller already initialised the module since epoch seen, and refuses
// within reinitInterval of the last time, or when another user of the
// process initialised the library (owned false: finalising it is theirs).
func (m *module) reinit(seen uint64) error {
	if m.epoch.Load() != seen {
		return nil
	}
	if time.Now().UnixNano() < m.busyUntil.Load() {
		return errReinitBusy
	}
	if !m.gate.close(gateDrain) {
		// A call has not returned within gateDrain: it may never (a client
		// library waiting on a dead connection). Do not make every caller
		// wait for it again at once.
		m.busyUntil.Store(time.Now().Add(gateBusyPause).UnixNano())
		return errReinitBusy
	}
	defer m.gate.open()
	if m.epoch.Load() != seen {
		return nil
	}
	if !m.owned {
		return fmt.Errorf("%w: PKCS#11 module %q was initialised by another user of this process; not initialising it again", hsm.ErrUnavailable, m.path)
	}
	if time.Since(m.lastInit) < reinitInterval {
		return errReinitSoon
	}
	m.lastInit = time.Now()
	m.recovering.Store(true)
	m.epoch.Add(1)
	_ = m.ctx.Finalize() // a library that is down may refuse; Initialize decides
	m.pinsMu.Lock()
	clear(m.pins) // C_Finalize ended every login
	m.pinsMu.Unlock()
	if err := m.ctx.Initialize(); err != nil {
		m.down = true
		return fmt.Errorf("%w: initialise PKCS#11 module %q again: %w", hsm.ErrUnavailable, m.path, err)
	}
	m.down = false
	return nil
}

var modules = struct {
	sync.Mutex
	m map[string]*module
}{m: map[string]*module{}}

// openModule loads and initialises the library at path, or takes another
// reference to it.
func openModule(path string) (*module, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: module path %q: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("%w: PKCS#11 module %q: %w", hsm.ErrUnavailable, path, err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.m[abs]; ok {
		m.refs++
		return m, nil
	}
	ctx := p11.New(abs)
	if ctx == nil {
		return nil, fmt.Errorf("%w: cannot load PKCS#11 module %q", hsm.ErrUnavailable, path)
	}
	m := &module{path: abs, ctx: ctx, refs: 1, owned: true}
	if err := ctx.Initialize(); err != nil {
		var pe p11.Error
		if !errors.As(err, &pe) || pe != p11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			ctx.Destroy()
			return nil, fmt.Errorf("%w: initialise PKCS#11 module %q: %w", hsm.ErrUnavailable, path, err)
		}
		// Someone else in the process initialised it; leave finalisation
		// to them.
		m.owned = false
	}
	modules.m[abs] = m
	return m, nil
}

// release drops a reference; the last one finalises and unloads the library.
func (m *module) release() error {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.m, m.path)
	if !m.gate.close(gateDrain) {
		// A call into the library has not returned: finalising or
		// unloading it under that call could crash the process.
		return fmt.Errorf("pkcs11: %q left loaded: a call into it has not returned", m.path)
	}
	var err error
	if m.owned && !m.down {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("pkcs11: finalise %q: %w", m.path, err)
	}
	return nil
}
