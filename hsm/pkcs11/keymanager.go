//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// KeyManager is the PKCS#11 key manager of one token. It is safe for
// concurrent use.
type KeyManager struct {
	cfg    Config
	vendor *Vendor // nil: the token has no SM2
	mod    *module
	pool   *pool
	token  string // token label, for URIs and reports

	// life is held for reading by every token operation and for writing by
	// Close, so that the module is never finalised under a running call.
	life   sync.RWMutex
	closed bool
	// released: Close has closed the pool and released the module (or
	// set a goroutine to); a Close that found the module hung has not, and
	// a later Close does.
	released bool
	// closing is set by Close before it waits for life, so that no
	// operation starts meanwhile.
	closing atomic.Bool

	// mu serialises key creation and deletion on this token, so that label
	// uniqueness holds for one process. Concurrent creation of one label by
	// two processes is not prevented.
	mu sync.Mutex

	handles handleCache
	sm2keys *sm2Cache

	// testHook, when set by a test, is called at named points of CreateKey
	// and DeleteKey, so that a test can make the token lose the session
	// half-way through. Always nil outside tests.
	testHook func(point string)
}

// hook calls the test hook, if any.
func (km *KeyManager) hook(point string) {
	if km.testHook != nil {
		km.testHook(point)
	}
}

var (
	_ hsm.KeyManager = (*KeyManager)(nil)
	_ hsm.Decrypter  = (*KeyManager)(nil)
	_ hsm.KeyWrapper = (*KeyManager)(nil)
	_ hsm.Checker    = (*KeyManager)(nil)
)

// New loads the module, finds the token and logs in. A wrong PIN yields an
// error wrapping hsm.ErrPIN, a missing module or token one wrapping
// hsm.ErrUnavailable; New never returns a key manager that cannot reach its
// token (ACCEPTANCE.md E-02).
func New(ctx context.Context, cfg Config) (*KeyManager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	vendor, err := cfg.vendor()
	if err != nil {
		return nil, err
	}
	mod, err := openModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	km := &KeyManager{
		cfg:     cfg,
		vendor:  vendor,
		mod:     mod,
		pool:    newPool(mod, cfg),
		token:   cfg.Token,
		handles: handleCache{m: map[handleKey]handleEntry{}},
	}
	km.sm2keys = newSM2Cache(cfg.UnwrapTTL)
	km.pool.dropHandles = km.handles.clear
	if err := km.hungErr(); err != nil {
		_ = mod.release()
		return nil, fmt.Errorf("pkcs11: open token %s: %w", km.describe(), err)
	}
	// The token is opened under the same bound as an operation (see
	// bounded): a module that hangs must not hang the node's start. If it
	// does, the opening goroutine closes what it opened once the module
	// answers.
	err = km.bounded(ctx, func(context.Context) error { return km.open() }, func(err error) {
		if err == nil {
			km.pool.close()
			_ = mod.release()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: open token %s: %w", km.describe(), err)
	}
	return km, nil
}

// open finds the token, logs in and learns the token's label; on failure
// it closes the pool and releases the module.
func (km *KeyManager) open() error {
	mod := km.mod
	if err := km.pool.start(); err != nil {
		km.pool.close()
		_ = mod.release()
		return err
	}
	if km.token == "" {
		var ti p11.TokenInfo
		err := mod.gate.enter()
		if err == nil {
			ti, err = mod.ctx.GetTokenInfo(km.pool.currentSlot())
			mod.gate.exit()
		}
		if err != nil {
			km.pool.close()
			_ = mod.release()
			return mapErr("token info", err)
		}
		km.token = ti.Label
	}
	return nil
}

// withDefaults returns cfg with defaults applied.
func (cfg Config) withDefaults() Config {
	if cfg.WrapKeyLabel == "" {
		cfg.WrapKeyLabel = DefaultWrapKeyLabel
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.UnwrapTTL <= 0 {
		cfg.UnwrapTTL = DefaultUnwrapTTL
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	return cfg
}

// describe names the configured token for errors.
func (km *KeyManager) describe() string {
	s := fmt.Sprintf("module %q", km.cfg.Module)
	if km.cfg.Token != "" {
		s += fmt.Sprintf(" token %q", km.cfg.Token)
	}
	if km.cfg.Slot != nil {
		s += fmt.Sprintf(" slot %d", *km.cfg.Slot)
	}
	return s
}

// String describes the key manager without its PIN.
func (km *KeyManager) String() string { return "pkcs11 key manager for " + km.describe() }

// GoString is String, for %#v.
func (km *KeyManager) GoString() string { return km.String() }

// do runs fn with a session while the key manager is open, for at most
// CallTimeout (see bounded).
func (km *KeyManager) do(ctx context.Context, fn func(h p11.SessionHandle, gen uint64) error) error {
	if km.closing.Load() {
		return errClosed
	}
	if err := km.hungErr(); err != nil {
		return err
	}
	return km.bounded(ctx, func(ctx context.Context) error {
		km.life.RLock()
		defer km.life.RUnlock()
		if km.closed {
			return errClosed
		}
		return km.pool.do(ctx, fn)
	}, nil)
}

// bounded runs op, which calls into the module, for at most CallTimeout.
//
// A PKCS#11 call cannot be interrupted. One that never returns (a network
// HSM's client waiting on a server that stopped answering: p11-kit's does)
// would hold its caller, its session and the module's gate, and every
// caller after it would queue behind it for a session, for ever. So op runs
// in a goroutine of its own with a context that ends at the bound, and its
// caller waits for it only that long:
//
//   - an op still waiting for a session then gives up (pool.get honours
//     its context);
//   - an op inside a call goes on until the call returns. Its caller has
//     had hsm.ErrUnavailable: a signature made after that is dropped; a
//     key created or destroyed after it is an outcome the caller was told
//     it does not know. abandoned, if not nil, gets op's result then.
//
// While an op has run past the bound and not returned, the module counts
// as hung (module.hung), and every operation on it, Check included (so
// readyz says so), fails at once (do checks hungErr first) instead of
// adding a goroutine that would hang too. It recovers by itself when the calls return; a call that never
// does needs the process restarted, which the readiness check asks for.
func (km *KeyManager) bounded(ctx context.Context, op func(context.Context) error, abandoned func(error)) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, km.cfg.CallTimeout)
	defer cancel()
	c := &call{mod: km.mod, done: make(chan error, 1)}
	timer := time.AfterFunc(km.cfg.CallTimeout, c.overdue)
	go func() {
		err := op(ctx)
		if c.finish() && abandoned != nil {
			abandoned(err)
		}
		c.done <- err
	}()
	timedOut := func() error {
		return fmt.Errorf("%w: PKCS#11 module %q did not answer within %s", hsm.ErrUnavailable, km.cfg.Module, km.cfg.CallTimeout)
	}
	// result is op's error, unless that is only the bound's end seen by
	// op (waiting for a session): that is the module not answering.
	result := func(err error) error {
		if err != nil && ctx.Err() != nil && parent.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return timedOut()
		}
		return err
	}
	select {
	case err := <-c.done:
		timer.Stop()
		return result(err)
	case <-ctx.Done():
	}
	if c.giveUp() {
		// op returned as the time ran out: its result stands.
		timer.Stop()
		return result(<-c.done)
	}
	if err := parent.Err(); err != nil {
		return fmt.Errorf("pkcs11: %w (the operation goes on in the module)", err)
	}
	return timedOut()
}

// hungErr is the error of every operation while the module is hung.
func (km *KeyManager) hungErr() error {
	if n := km.mod.hung.Load(); n > 0 {
		return fmt.Errorf("%w: %d operation(s) on PKCS#11 module %q have not returned for over %s: the module or its HSM hangs",
			hsm.ErrUnavailable, n, km.cfg.Module, km.cfg.CallTimeout)
	}
	return nil
}

// call is one bounded operation: whether it returned, whether its caller
// gave up on it, and whether it counts in its module's hung.
type call struct {
	mod  *module
	done chan error

	mu                     sync.Mutex
	finished, gone, marked bool
}

// overdue marks the call hung if it has not returned by its bound.
func (c *call) overdue() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.finished {
		c.marked = true
		c.mod.hung.Add(1)
	}
}

// finish records that the operation returned, unmarks it, and reports
// whether its caller had given up on it.
func (c *call) finish() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finished = true
	if c.marked {
		c.mod.hung.Add(-1)
	}
	return c.gone
}

// giveUp records that the caller stops waiting, unless the operation has
// returned already (then it reports true and the caller takes the result).
func (c *call) giveUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished {
		return true
	}
	c.gone = true
	return false
}

// Close logs out by closing this key manager's sessions, forgets unwrapped
// keys and releases the module. Signers obtained before fail afterwards.
//
// Close waits for token calls under way (they hold life for reading), but
// not beyond CallTimeout: a module that hangs must not hang the node's
// shutdown. Then, and when the module is hung already, the sessions are
// left open and the module loaded (finalising a library under a running
// call could crash the process), and Close says so; called again once the
// module answers, it releases them. It never waits for an
// SM2 key being unwrapped: such an unwrap may itself be waiting to start
// its token call, behind Close. purge marks its entry dropped and the
// unwrapping goroutine zeroes what it unwrapped (see withSM2).
func (km *KeyManager) Close() error {
	km.closing.Store(true)
	km.sm2keys.purge()
	if !km.lockLife(km.cfg.CallTimeout) {
		km.pool.abandon()
		return fmt.Errorf("pkcs11: close %s: operations have not returned within %s; the module is left loaded", km.describe(), km.cfg.CallTimeout)
	}
	defer km.life.Unlock()
	if km.released {
		return nil
	}
	km.closed = true
	if n := km.mod.hung.Load(); n > 0 {
		km.pool.abandon()
		return fmt.Errorf("pkcs11: close %s: the module hangs (%d operation(s) have not returned); its sessions are left open and it stays loaded until Close is called again after it answers",
			km.describe(), n)
	}
	// The goroutine releases the module even if Close stops waiting for it.
	km.released = true
	done := make(chan error, 1)
	go func() {
		km.pool.close()
		done <- km.mod.release()
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(km.cfg.CallTimeout):
		return fmt.Errorf("pkcs11: close %s: the module did not answer within %s; it is left loaded", km.describe(), km.cfg.CallTimeout)
	}
}

// lockLife takes life for writing, waiting at most d. Operations that
// start meanwhile see closing and do not take it for reading.
func (km *KeyManager) lockLife(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !km.life.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// isClosed reports whether Close was called.
func (km *KeyManager) isClosed() bool {
	km.life.RLock()
	defer km.life.RUnlock()
	return km.closed
}

// Check reports whether the token is present and the session logged in,
// logging in again when the token was reset (hsm.Checker, for readyz). After
// the token refused the PIN it answers hsm.ErrPIN without trying again.
func (km *KeyManager) Check(ctx context.Context) error {
	err := km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		if _, err := km.mod.ctx.GetSessionInfo(h); err != nil {
			return err
		}
		if !loggedIn(km.mod.ctx, h) {
			return p11.Error(p11.CKR_USER_NOT_LOGGED_IN)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pkcs11: check %s: %w", km.describe(), mapErr("session", err))
	}
	return nil
}

// keyRef is what a key URI names: a label, an id, or both.
type keyRef struct {
	label string
	id    []byte
}

// parseURI checks that uri names a key on this token.
func (km *KeyManager) parseURI(uri string) (keyRef, error) {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return keyRef{}, err
	}
	if u.Scheme != "pkcs11" || u.Attrs == nil {
		return keyRef{}, fmt.Errorf("%w: %q is not a pkcs11 key URI", hsm.ErrBadURI, uri)
	}
	if t := u.Get("token"); t != "" && t != km.token {
		return keyRef{}, fmt.Errorf("%w: %q is on token %q, this key manager serves %q", hsm.ErrNotFound, uri, t, km.token)
	}
	ref := keyRef{label: u.Get("object")}
	if id, ok := u.Attrs["id"]; ok {
		ref.id = []byte(id)
	}
	if ref.label == "" && len(ref.id) == 0 {
		return keyRef{}, fmt.Errorf("%w: %q names neither object nor id", hsm.ErrBadURI, uri)
	}
	return ref, nil
}

// lookup finds the key uri names.
func (km *KeyManager) lookup(ctx context.Context, uri string) (*record, error) {
	ref, err := km.parseURI(uri)
	if err != nil {
		return nil, err
	}
	var rec *record
	err = km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		var err error
		rec, err = findRecord(km.mod.ctx, h, ref.label, ref.id)
		return err
	})
	if err != nil {
		if errors.Is(err, hsm.ErrNotFound) {
			return nil, fmt.Errorf("pkcs11: %s: %w", uri, hsm.ErrNotFound)
		}
		return nil, fmt.Errorf("pkcs11: find %s: %w", uri, mapErr("find", err))
	}
	return rec, nil
}

// info describes a key.
func (km *KeyManager) info(rec *record, pub crypto.PublicKey) *hsm.KeyInfo {
	return &hsm.KeyInfo{
		URI:       keyURI(km.token, rec.label, rec.id),
		Algorithm: rec.meta.Algorithm,
		Usage:     rec.meta.Usage,
		Service:   rec.meta.Service,
		Backend:   "pkcs11",
		Module:    km.cfg.Module,
		Slot:      strconv.FormatUint(uint64(km.pool.currentSlot()), 10),
		Token:     km.token,
		Label:     rec.label,
		Location:  rec.meta.Location,
		Created:   rec.meta.Created,
		Public:    pub,
	}
}

// checkUsage reports whether the backend can make alg keys for usage.
func (km *KeyManager) checkUsage(alg hsm.Algorithm, usage hsm.Usage) error {
	switch {
	case usage == hsm.UsageSign && (alg == hsm.SM2 || alg == hsm.ECDSAP256 || alg == hsm.ECDSAP384 ||
		alg == hsm.RSA2048 || alg == hsm.RSA3072):
		return nil
	case usage == hsm.UsageDecrypt && (alg == hsm.RSA2048 || alg == hsm.RSA3072):
		return nil
	case usage == hsm.UsageDecrypt && alg == hsm.SM2:
		if km.vendor != nil && km.vendor.Encrypt == 0 {
			return fmt.Errorf("%w: vendor %q has no SM2 encryption mechanism", hsm.ErrUnsupported, km.vendor.Name)
		}
		return nil
	case usage == hsm.UsageWrap && alg == hsm.AES256:
		return nil
	}
	return fmt.Errorf("%w: %s keys for %q", hsm.ErrUnsupported, alg, usage)
}

// CreateKey creates a key on the token. The URI must name the object (label)
// and not an id: the backend draws a random 16-byte CKA_ID and returns the
// canonical URI with it.
func (km *KeyManager) CreateKey(ctx context.Context, req *hsm.CreateKeyRequest) (*hsm.KeyInfo, error) {
	ref, err := km.parseURI(req.URI)
	if err != nil {
		return nil, err
	}
	if ref.label == "" || ref.id != nil {
		return nil, fmt.Errorf("%w: create %q: give object= and no id= (the id is assigned)", hsm.ErrBadURI, req.URI)
	}
	if req.Service == "" {
		return nil, fmt.Errorf("pkcs11: create %q: service is required", req.URI)
	}
	if ref.label == km.cfg.WrapKeyLabel {
		return nil, fmt.Errorf("%w: create %q: label %q is reserved for the SM2 wrapping key", hsm.ErrExists, req.URI, ref.label)
	}
	if err := km.checkUsage(req.Algorithm, req.Usage); err != nil {
		return nil, fmt.Errorf("pkcs11: create %q: %w", req.URI, err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	meta := metadata{
		V:         metaVersion,
		ID:        hex.EncodeToString(id),
		Algorithm: req.Algorithm,
		Usage:     req.Usage,
		Service:   req.Service,
		Location:  hsm.LocationHardware,
		Created:   time.Now().UTC().Truncate(time.Second),
	}
	if req.Algorithm == hsm.SM2 {
		if km.vendor != nil {
			meta.Vendor = km.vendor.Name
		} else {
			meta.Location = hsm.LocationWrapped
		}
	}

	// A wrapped SM2 key is generated in software, outside the session.
	var sw *softSM2
	if req.Algorithm == hsm.SM2 && km.vendor == nil {
		if sw, err = newSoftSM2(); err != nil {
			return nil, err
		}
		defer sw.zero()
	}

	km.mu.Lock()
	defer km.mu.Unlock()
	var pub crypto.PublicKey
	tried := false
	err = km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		c := km.mod.ctx
		if tried {
			// The first attempt lost its session part-way (pool.do retries
			// once): objects it made may be on the token, and destroying
			// them then failed with the session. id was drawn at random
			// for this call, so whatever carries it is ours.
			if err := km.destroyKeyObjects(h, ref.label, id); err != nil {
				return err
			}
		}
		tried = true
		if _, err := findRecord(c, h, ref.label, nil); err == nil {
			return fmt.Errorf("%w: %q", hsm.ErrExists, ref.label)
		} else if !errors.Is(err, hsm.ErrNotFound) {
			return err
		}
		var created []p11.ObjectHandle
		m := meta
		var err error
		switch {
		case req.Algorithm == hsm.AES256:
			created, err = km.generateAES(h, ref.label, id)
		case sw != nil:
			created, m.Wrapped, err = km.storeWrappedSM2(h, ref.label, id, sw)
			m.WrapKey = km.cfg.WrapKeyLabel
			pub = sw.public()
		default:
			created, err = km.generateKeyPair(h, req.Algorithm, req.Usage, ref.label, id)
			if err == nil {
				pub, err = readPublic(c, h, req.Algorithm, id)
			}
		}
		if err == nil {
			km.hook("create:objects")
			var o p11.ObjectHandle
			o, err = createMeta(c, h, ref.label, &m)
			created = append(created, o)
		}
		if err != nil {
			for _, o := range created {
				_ = c.DestroyObject(h, o)
			}
			return err
		}
		meta = m
		return nil
	})
	if err != nil {
		if errors.Is(err, hsm.ErrExists) {
			return nil, fmt.Errorf("pkcs11: create %q: %w", req.URI, err)
		}
		return nil, fmt.Errorf("pkcs11: create %q: %w", req.URI, mapErr("create", err))
	}
	return km.info(&record{label: ref.label, id: id, meta: meta}, pub), nil
}

// createMeta writes the metadata object of a key.
func createMeta(c *p11.Ctx, h p11.SessionHandle, label string, m *metadata) (p11.ObjectHandle, error) {
	value, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	return c.CreateObject(h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_APPLICATION, appMeta),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_VALUE, value),
	})
}

// generateKeyPair generates an ECDSA, RSA or vendor SM2 key pair on the token.
// The private key is sensitive and never extractable, and may do only what
// its usage says.
func (km *KeyManager) generateKeyPair(h p11.SessionHandle, alg hsm.Algorithm, usage hsm.Usage, label string, id []byte) ([]p11.ObjectHandle, error) {
	sign, decrypt := usage == hsm.UsageSign, usage == hsm.UsageDecrypt
	pubT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_VERIFY, sign),
		p11.NewAttribute(p11.CKA_ENCRYPT, decrypt),
		p11.NewAttribute(p11.CKA_WRAP, false),
	}
	privT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_SIGN, sign),
		p11.NewAttribute(p11.CKA_DECRYPT, decrypt),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
	}
	var mech uint
	switch alg {
	case hsm.ECDSAP256, hsm.ECDSAP384:
		mech = p11.CKM_EC_KEY_PAIR_GEN
		pubT = append(pubT,
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
			p11.NewAttribute(p11.CKA_EC_PARAMS, ecParams(alg)))
		privT = append(privT,
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
			p11.NewAttribute(p11.CKA_DERIVE, false))
	case hsm.RSA2048, hsm.RSA3072:
		bits := 2048
		if alg == hsm.RSA3072 {
			bits = 3072
		}
		mech = p11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pubT = append(pubT,
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA),
			p11.NewAttribute(p11.CKA_MODULUS_BITS, bits),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		privT = append(privT, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA))
	case hsm.SM2:
		// Vendor SM2 (GM-STANDARDS.md §8): vendor CKK_SM2, curve OID
		// 1.2.156.10197.1.301 in CKA_EC_PARAMS, vendor key-generation code.
		mech = km.vendor.KeyGen
		pubT = append(pubT,
			p11.NewAttribute(p11.CKA_KEY_TYPE, km.vendor.KeyType),
			p11.NewAttribute(p11.CKA_EC_PARAMS, ecParams(hsm.SM2)))
		privT = append(privT, p11.NewAttribute(p11.CKA_KEY_TYPE, km.vendor.KeyType))
	default:
		return nil, fmt.Errorf("%w: key pair %s", hsm.ErrUnsupported, alg)
	}
	pubH, privH, err := km.mod.ctx.GenerateKeyPair(h, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, pubT, privT)
	if err != nil {
		return nil, err
	}
	return []p11.ObjectHandle{pubH, privH}, nil
}

// generateAES generates an AES-256 key-encryption key for KeyWrapper.
func (km *KeyManager) generateAES(h p11.SessionHandle, label string, id []byte) ([]p11.ObjectHandle, error) {
	o, err := km.mod.ctx.GenerateKey(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
		// AES-GCM (Wrap/Unwrap below) is C_Encrypt/C_Decrypt.
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
	})
	if err != nil {
		return nil, err
	}
	return []p11.ObjectHandle{o}, nil
}

// PublicKey returns the public key of an asymmetric key.
func (km *KeyManager) PublicKey(ctx context.Context, req *hsm.PublicKeyRequest) (crypto.PublicKey, error) {
	rec, err := km.lookup(ctx, req.URI)
	if err != nil {
		return nil, err
	}
	if rec.meta.Algorithm.Symmetric() {
		return nil, fmt.Errorf("pkcs11: %s: %w: symmetric key has no public key", req.URI, hsm.ErrUnsupported)
	}
	return km.public(ctx, rec)
}

func (km *KeyManager) public(ctx context.Context, rec *record) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	err := km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		var err error
		pub, err = readPublic(km.mod.ctx, h, rec.meta.Algorithm, rec.id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: public key of %q: %w", rec.label, mapErr("read", err))
	}
	return pub, nil
}

// ListKeys lists the keys on the token, optionally those of one service.
func (km *KeyManager) ListKeys(ctx context.Context, req *hsm.ListKeysRequest) ([]*hsm.KeyInfo, error) {
	var out []*hsm.KeyInfo
	err := km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		out = out[:0]
		c := km.mod.ctx
		objs, err := findObjects(c, h, metaTemplate(""))
		if err != nil {
			return err
		}
		for _, o := range objs {
			rec, err := readRecord(c, h, o)
			if err != nil {
				return err
			}
			if req != nil && req.Service != "" && rec.meta.Service != req.Service {
				continue
			}
			var pub crypto.PublicKey
			if !rec.meta.Algorithm.Symmetric() {
				if pub, err = readPublic(c, h, rec.meta.Algorithm, rec.id); err != nil {
					return fmt.Errorf("key %q: %w", rec.label, err)
				}
			}
			out = append(out, km.info(rec, pub))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: list keys: %w", mapErr("list", err))
	}
	return out, nil
}

// DeleteKey destroys every object of a key. Only the owning service may.
//
// It is idempotent across pool.do's retry: when the session is lost after
// the metadata object went, the retry destroys the key's other objects by
// their CKA_ID and succeeds, rather than answering "not found" and leaving
// them on the token.
func (km *KeyManager) DeleteKey(ctx context.Context, req *hsm.DeleteKeyRequest) error {
	rec, err := km.lookup(ctx, req.URI)
	if err != nil {
		return err
	}
	if rec.meta.Service != req.Service {
		return fmt.Errorf("pkcs11: delete %q: %w", req.URI, hsm.ErrKeySeparation)
	}
	km.mu.Lock()
	defer km.mu.Unlock()
	// ours is set once this call asked the token to destroy the metadata
	// object: whether or not the answer arrived, a later "not found" is then
	// our own doing.
	ours := false
	err = km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		c := km.mod.ctx
		if !loggedIn(c, h) {
			// Logged out, the private objects are invisible: the search
			// below would miss them.
			return fmt.Errorf("%w: session not logged in", p11.Error(p11.CKR_USER_NOT_LOGGED_IN))
		}
		// The metadata object goes first: without it the key is not listed
		// or found, even if destroying the rest fails half-way.
		cur, err := findRecord(c, h, rec.label, rec.id)
		switch {
		case err == nil:
			ours = true
			if err := c.DestroyObject(h, cur.obj); err != nil {
				return err
			}
			km.hook("delete:meta")
		case !errors.Is(err, hsm.ErrNotFound):
			return err
		}
		if err := destroyByID(c, h, rec.id); err != nil {
			return err
		}
		if !ours {
			// Someone else deleted the key; its leftovers are gone too.
			return hsm.ErrNotFound
		}
		return nil
	})
	km.handles.forget(rec.id)
	km.sm2keys.drop(rec.meta.ID)
	if err != nil {
		if errors.Is(err, hsm.ErrNotFound) {
			return fmt.Errorf("pkcs11: delete %q: %w", req.URI, hsm.ErrNotFound)
		}
		return fmt.Errorf("pkcs11: delete %q: %w", req.URI, mapErr("destroy", err))
	}
	return nil
}

// destroyByID destroys every object whose CKA_ID is id.
func destroyByID(c *p11.Ctx, h p11.SessionHandle, id []byte) error {
	objs, err := findObjects(c, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id)})
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := c.DestroyObject(h, o); err != nil {
			return err
		}
	}
	return nil
}

// destroyKeyObjects destroys what a failed attempt of CreateKey may have left
// of the key labelled label with CKA_ID id: its metadata object (which
// carries id in its value, not as CKA_ID) and its key objects.
func (km *KeyManager) destroyKeyObjects(h p11.SessionHandle, label string, id []byte) error {
	c := km.mod.ctx
	if !loggedIn(c, h) {
		return fmt.Errorf("%w: session not logged in", p11.Error(p11.CKR_USER_NOT_LOGGED_IN))
	}
	switch rec, err := findRecord(c, h, label, id); {
	case err == nil:
		if err := c.DestroyObject(h, rec.obj); err != nil {
			return err
		}
	case !errors.Is(err, hsm.ErrNotFound):
		return err
	}
	return destroyByID(c, h, id)
}

// handleKey names a cached object handle.
type handleKey struct {
	id  string
	cls uint
}

type handleEntry struct {
	gen uint64
	obj p11.ObjectHandle
}

// handleCache keeps object handles found by CKA_ID, valid for one pool
// generation: a reset (re-login, token re-inserted) may change them.
type handleCache struct {
	mu sync.RWMutex
	m  map[handleKey]handleEntry
}

// object returns the handle of the object of class cls with CKA_ID id.
func (km *KeyManager) object(h p11.SessionHandle, gen uint64, cls uint, id []byte) (p11.ObjectHandle, error) {
	k := handleKey{id: string(id), cls: cls}
	km.handles.mu.RLock()
	e, ok := km.handles.m[k]
	km.handles.mu.RUnlock()
	if ok && e.gen == gen {
		return e.obj, nil
	}
	obj, err := findKeyObject(km.mod.ctx, h, cls, id)
	if err != nil {
		return 0, err
	}
	km.handles.mu.Lock()
	km.handles.m[k] = handleEntry{gen: gen, obj: obj}
	km.handles.mu.Unlock()
	return obj, nil
}

// clear forgets every cached handle.
func (c *handleCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

func (c *handleCache) forget(id []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.id == string(id) {
			delete(c.m, k)
		}
	}
}
