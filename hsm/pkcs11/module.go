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
	var err error
	if m.owned {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("pkcs11: finalise %q: %w", m.path, err)
	}
	return nil
}
