package soft

import (
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
)

// Config configures Open.
type Config struct {
	// Passphrase or Shares unlock the keystore at Open. With neither, a
	// passphrase or shamir keystore opens locked (see Unlock). Open does not
	// keep them; the caller clears them.
	Passphrase []byte
	Shares     []string
	// AllowDev lets Open use a dev master key, and create one when the
	// keystore is empty. Every such Open logs a warning.
	AllowDev bool
	// Production refuses dev master keys and weak passphrase KDF parameters.
	Production bool
	Audit      AuditFunc
	Logger     *slog.Logger // slog.Default() when nil
	Now        func() time.Time
}

// KeyManager is the software keystore. It implements hsm.KeyManager,
// hsm.Decrypter, hsm.KeyWrapper and hsm.Checker, and is safe for concurrent
// use.
type KeyManager struct {
	st         Store
	audit      AuditFunc
	log        *slog.Logger
	now        func() time.Time
	allowDev   bool
	production bool

	mu     sync.RWMutex
	closed bool
	check  []byte // key check value seen at unlock
	kek    []byte // key-encryption subkey; nil while locked
	cache  map[string]*loaded
}

var (
	_ hsm.KeyManager = (*KeyManager)(nil)
	_ hsm.Decrypter  = (*KeyManager)(nil)
	_ hsm.KeyWrapper = (*KeyManager)(nil)
	_ hsm.Checker    = (*KeyManager)(nil)
)

// Open opens the keystore in st and unlocks it when cfg carries what its
// master key needs. An empty keystore is an error (ErrNotInitialized) unless
// cfg.AllowDev, in which case a dev master key is created.
func Open(ctx context.Context, st Store, cfg Config) (*KeyManager, error) {
	if cfg.Production && cfg.AllowDev {
		return nil, errors.New("hsm/soft: production mode does not allow a dev master key (AllowDev)")
	}
	km := &KeyManager{
		st: st, audit: cfg.Audit, log: cfg.Logger, now: cfg.Now,
		allowDev: cfg.AllowDev, production: cfg.Production,
		cache: map[string]*loaded{},
	}
	if km.log == nil {
		km.log = slog.Default()
	}
	if km.now == nil {
		km.now = time.Now
	}
	rec, err := st.GetMaster(ctx)
	if errors.Is(err, ErrNotInitialized) && cfg.AllowDev {
		_, err = Init(ctx, st, InitRequest{Kind: KindDev, Audit: cfg.Audit, Logger: km.log, Now: km.now})
		if err != nil && !errors.Is(err, ErrInitialized) { // another node may have won the race
			return nil, err
		}
		rec, err = st.GetMaster(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: open: %w", err)
	}
	switch {
	case rec.Kind == KindDev && cfg.Production:
		return nil, fmt.Errorf("%w; production mode refuses it: initialise the keystore with a passphrase or shares (govtrust hsm init)", ErrDevMasterKey)
	case rec.Kind == KindDev && !cfg.AllowDev:
		return nil, fmt.Errorf("%w; enable dev mode to use it, or initialise a new keystore", ErrDevMasterKey)
	case rec.Kind == KindDev:
		km.log.Warn("hsm/soft: DEV MASTER KEY in use: it is stored in clear in the database, so every key of this keystore is readable by whoever reads the database; never run production like this",
			"kind", string(KindDev))
	case rec.Kind == KindPassphrase && cfg.Production && weakKDF(rec.KDF):
		return nil, fmt.Errorf("%w: the keystore has argon2id t=%d m=%d KiB, production needs t>=%d m>=%d KiB; re-initialise it",
			ErrWeakKDF, rec.KDF.Time, rec.KDF.MemoryKiB, MinKDF.Time, MinKDF.MemoryKiB)
	}
	creds := Credentials{Passphrase: cfg.Passphrase, Shares: cfg.Shares}
	if rec.Kind == KindDev || !creds.empty() {
		if err := km.unlock(ctx, rec, creds); err != nil {
			return nil, err
		}
	}
	return km, nil
}

func weakKDF(p KDFParams) bool {
	return p.Time < MinKDF.Time || p.MemoryKiB < MinKDF.MemoryKiB || p.Threads < MinKDF.Threads
}

// Unlock unlocks a locked keystore with a passphrase or shares. Unlocking an
// unlocked keystore does nothing. Failures are audited and logged without
// the secret.
func (km *KeyManager) Unlock(ctx context.Context, creds Credentials) error {
	km.mu.RLock()
	closed, unlocked := km.closed, km.kek != nil
	km.mu.RUnlock()
	if closed {
		return fmt.Errorf("%w: keystore closed", hsm.ErrLocked)
	}
	if unlocked {
		return nil
	}
	rec, err := km.st.GetMaster(ctx)
	if err != nil {
		return fmt.Errorf("hsm/soft: unlock: %w", err)
	}
	if rec.Kind == KindDev && km.production {
		return fmt.Errorf("%w; production mode refuses it", ErrDevMasterKey)
	}
	return km.unlock(ctx, rec, creds)
}

func (km *KeyManager) unlock(ctx context.Context, rec *MasterRecord, creds Credentials) error {
	details := map[string]any{"kind": string(rec.Kind)}
	master, err := recoverMaster(rec, creds, km.allowDev)
	if err != nil {
		details["error"] = err.Error()
		km.log.Warn("hsm/soft: unlock failed", "kind", string(rec.Kind), "error", err.Error())
		audit(ctx, km.audit, ActionUnlock, masterObject, OutcomeFailure, details)
		return fmt.Errorf("hsm/soft: unlock: %w", err)
	}
	kek := subkey(master, "key-encryption", kekLen)
	clear(master)
	km.mu.Lock()
	if km.closed {
		km.mu.Unlock()
		clear(kek)
		return fmt.Errorf("%w: keystore closed", hsm.ErrLocked)
	}
	if km.kek != nil {
		clear(km.kek)
	}
	km.kek, km.check = kek, append([]byte(nil), rec.Check...)
	km.mu.Unlock()
	audit(ctx, km.audit, ActionUnlock, masterObject, OutcomeSuccess, details)
	return nil
}

// Lock clears the master key's subkey and every decrypted key from memory.
// Signers handed out before fail with hsm.ErrLocked from then on.
func (km *KeyManager) Lock() {
	km.mu.Lock()
	defer km.mu.Unlock()
	km.lockLocked()
}

func (km *KeyManager) lockLocked() {
	clear(km.kek)
	km.kek = nil
	for uri, l := range km.cache {
		l.wipe()
		delete(km.cache, uri)
	}
}

// Close locks the keystore for good. It does not close the Store.
func (km *KeyManager) Close() error {
	km.mu.Lock()
	defer km.mu.Unlock()
	km.lockLocked()
	km.closed = true
	return nil
}

// Status describes the keystore for `govtrust hsm status`. It works while
// locked.
type Status struct {
	Initialized bool
	Kind        Kind
	Unlocked    bool
	Keys        int
	Threshold   int // shamir
	Shares      int // shamir
	KDFTime     uint32
	KDFMemKiB   uint32
	KDFThreads  uint8
	Created     time.Time
}

// Status reports the keystore's state.
func (km *KeyManager) Status(ctx context.Context) (Status, error) {
	s, err := ReadStatus(ctx, km.st)
	km.mu.RLock()
	s.Unlocked = km.kek != nil
	km.mu.RUnlock()
	return s, err
}

// ReadStatus reports the state of the keystore in st without opening it
// (Unlocked is false), so that `govtrust hsm status` works on any keystore,
// a dev one included, without its secrets.
func ReadStatus(ctx context.Context, st Store) (Status, error) {
	var s Status
	rec, err := st.GetMaster(ctx)
	if errors.Is(err, ErrNotInitialized) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("hsm/soft: status: %w", err)
	}
	s.Initialized, s.Kind, s.Created = true, rec.Kind, rec.Created
	s.Threshold, s.Shares = rec.Threshold, rec.Shares
	s.KDFTime, s.KDFMemKiB, s.KDFThreads = rec.KDF.Time, rec.KDF.MemoryKiB, rec.KDF.Threads
	if s.Keys, err = st.CountKeys(ctx); err != nil {
		return s, fmt.Errorf("hsm/soft: status: %w", err)
	}
	return s, nil
}

// Check implements hsm.Checker: the keystore is unlocked, its store answers,
// and the master-key record is still the one it was unlocked with.
func (km *KeyManager) Check(ctx context.Context) error {
	km.mu.RLock()
	unlocked, check := km.kek != nil, km.check
	km.mu.RUnlock()
	if !unlocked {
		return hsm.ErrLocked
	}
	rec, err := km.st.GetMaster(ctx)
	if err != nil {
		return fmt.Errorf("%w: hsm/soft: master-key record: %w", hsm.ErrUnavailable, err)
	}
	if !hmac.Equal(rec.Check, check) {
		return fmt.Errorf("%w: hsm/soft: master-key record changed since unlock", hsm.ErrUnavailable)
	}
	return nil
}

// aead returns SM4-GCM under the key-encryption subkey, or hsm.ErrLocked.
func (km *KeyManager) aead() (cipher.AEAD, error) {
	km.mu.RLock()
	defer km.mu.RUnlock()
	if km.kek == nil {
		return nil, hsm.ErrLocked
	}
	return newSM4GCM(km.kek)
}

func (km *KeyManager) unlocked() error {
	km.mu.RLock()
	defer km.mu.RUnlock()
	if km.kek == nil {
		return hsm.ErrLocked
	}
	return nil
}

// CreateKey implements hsm.KeyManager. The key is generated in memory,
// sealed, stored, and cleared.
func (km *KeyManager) CreateKey(ctx context.Context, req *hsm.CreateKeyRequest) (*hsm.KeyInfo, error) {
	info, err := km.createKey(ctx, req)
	details := map[string]any{"algorithm": string(req.Algorithm), "usage": string(req.Usage), "service": req.Service}
	if err != nil {
		details["error"] = err.Error()
		audit(ctx, km.audit, ActionKeyCreate, req.URI, OutcomeFailure, details)
		return nil, err
	}
	audit(ctx, km.audit, ActionKeyCreate, info.URI, OutcomeSuccess, details)
	return info, nil
}

func (km *KeyManager) createKey(ctx context.Context, req *hsm.CreateKeyRequest) (*hsm.KeyInfo, error) {
	uri, err := parseKeyURI(req.URI)
	if err != nil {
		return nil, err
	}
	if err := checkService(req.Service); err != nil {
		return nil, err
	}
	if !req.Algorithm.Valid() {
		return nil, fmt.Errorf("hsm/soft: create %s: unknown algorithm %q", uri, req.Algorithm)
	}
	if !usageAllowed(req.Algorithm, req.Usage) {
		return nil, fmt.Errorf("%w: create %s: %s keys with usage %q", hsm.ErrUnsupported, uri, req.Algorithm, req.Usage)
	}
	aead, err := km.aead()
	if err != nil {
		return nil, err
	}
	plain, public, err := generate(req.Algorithm)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	rec := &KeyRecord{
		URI: uri, Version: sealVersion, Algorithm: req.Algorithm, Usage: req.Usage,
		Service: req.Service, Public: public, Nonce: make([]byte, nonceLen),
		Created: km.now().UTC(),
	}
	if _, err := rand.Read(rec.Nonce); err != nil {
		return nil, fmt.Errorf("hsm/soft: nonce: %w", err)
	}
	rec.Sealed = aead.Seal(nil, rec.Nonce, plain, keyAAD(rec))
	if err := km.st.PutKey(ctx, rec); err != nil {
		return nil, fmt.Errorf("hsm/soft: create %s: %w", uri, err)
	}
	return keyInfo(rec)
}

// keyInfo describes rec. The public key comes from the row; it is
// authenticated (through the AAD) whenever the private key is loaded.
func keyInfo(rec *KeyRecord) (*hsm.KeyInfo, error) {
	info := &hsm.KeyInfo{
		URI: rec.URI, Algorithm: rec.Algorithm, Usage: rec.Usage, Service: rec.Service,
		Backend: Scheme, Label: strings.TrimPrefix(rec.URI, Scheme+":"), Location: hsm.LocationSoftware,
		Created: rec.Created,
	}
	if len(rec.Public) > 0 {
		pub, err := smx509.ParsePKIXPublicKey(rec.Public)
		if err != nil {
			return nil, fmt.Errorf("hsm/soft: key %s: public key: %w", rec.URI, err)
		}
		info.Public = pub
	}
	return info, nil
}

// record fetches the row of a key URI, requiring an unlocked keystore.
func (km *KeyManager) record(ctx context.Context, uri string) (*KeyRecord, error) {
	u, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	if err := km.unlocked(); err != nil {
		return nil, err
	}
	rec, err := km.st.GetKey(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: key %s: %w", u, err)
	}
	return rec, nil
}

// load returns the decrypted key of rec, from the cache when it was
// decrypted from the same row, else by decrypting it once.
func (km *KeyManager) load(rec *KeyRecord) (*loaded, error) {
	km.mu.RLock()
	l := km.cache[rec.URI]
	km.mu.RUnlock()
	if l != nil && l.sameRow(rec) {
		return l, nil
	}
	aead, err := km.aead()
	if err != nil {
		return nil, err
	}
	if len(rec.Nonce) != nonceLen {
		return nil, fmt.Errorf("hsm/soft: key %s: stored nonce has the wrong length", rec.URI)
	}
	plain, err := aead.Open(nil, rec.Nonce, rec.Sealed, keyAAD(rec))
	if err != nil {
		// Wrong master key, or a row altered or copied from another key.
		return nil, fmt.Errorf("hsm/soft: key %s: sealed key does not authenticate for this row: %w", rec.URI, err)
	}
	key, err := parseKey(rec, plain)
	clear(plain)
	if err != nil {
		return nil, err
	}
	nl := &loaded{
		uri: rec.URI, row: rowID(rec),
		alg: rec.Algorithm, usage: rec.Usage, service: rec.Service, key: key,
	}
	km.mu.Lock()
	defer km.mu.Unlock()
	if km.kek == nil {
		nl.wipe()
		return nil, hsm.ErrLocked
	}
	if old := km.cache[rec.URI]; old != nil {
		if old.sameRow(rec) { // another goroutine loaded it meanwhile
			nl.wipe()
			return old, nil
		}
		old.wipe() // the row was replaced: the old key must not be used any more
	}
	km.cache[rec.URI] = nl
	return nl, nil
}

// access loads the key uri for service and usage after the key-separation
// check (ACCEPTANCE.md E-04), which runs before anything is decrypted.
func (km *KeyManager) access(ctx context.Context, uri, service string, usage hsm.Usage) (*loaded, error) {
	rec, err := km.record(ctx, uri)
	if err != nil {
		return nil, err
	}
	if err := hsm.CheckAccess(&hsm.KeyInfo{Service: rec.Service, Usage: rec.Usage}, service, usage); err != nil {
		return nil, fmt.Errorf("hsm/soft: key %s for service %q, usage %s: %w", rec.URI, service, usage, err)
	}
	return km.load(rec)
}

// PublicKey implements hsm.KeyManager. The public key is taken from the
// decrypted private key, so a tampered public-key column cannot be returned.
func (km *KeyManager) PublicKey(ctx context.Context, req *hsm.PublicKeyRequest) (crypto.PublicKey, error) {
	rec, err := km.record(ctx, req.URI)
	if err != nil {
		return nil, err
	}
	if rec.Algorithm.Symmetric() {
		return nil, fmt.Errorf("%w: %s is a symmetric key", hsm.ErrUnsupported, rec.URI)
	}
	l, err := km.load(rec)
	if err != nil {
		return nil, err
	}
	return l.public(), nil
}

// Signer implements hsm.KeyManager. The signer uses the key decrypted once
// and kept in memory; SM2 signers follow gmsm's contract (see package hsm).
func (km *KeyManager) Signer(ctx context.Context, req *hsm.SignerRequest) (crypto.Signer, error) {
	l, err := km.access(ctx, req.URI, req.Service, hsm.UsageSign)
	if err != nil {
		return nil, err
	}
	s := signer{l: l, pub: l.public()}
	if l.alg == hsm.SM2 {
		return newSM2Signer(s)
	}
	return &s, nil
}

// Decrypter implements hsm.Decrypter for SM2 and RSA keys of usage decrypt.
func (km *KeyManager) Decrypter(ctx context.Context, req *hsm.DecrypterRequest) (crypto.Decrypter, error) {
	l, err := km.access(ctx, req.URI, req.Service, hsm.UsageDecrypt)
	if err != nil {
		return nil, err
	}
	return &decrypter{l: l, pub: l.public()}, nil
}

// ListKeys implements hsm.KeyManager.
func (km *KeyManager) ListKeys(ctx context.Context, req *hsm.ListKeysRequest) ([]*hsm.KeyInfo, error) {
	if err := km.unlocked(); err != nil {
		return nil, err
	}
	recs, err := km.st.ListKeys(ctx, req.Service)
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: list keys: %w", err)
	}
	out := make([]*hsm.KeyInfo, 0, len(recs))
	for _, rec := range recs {
		info, err := keyInfo(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// DeleteKey implements hsm.KeyManager: only the owning service may delete a
// key. The row is removed and the key cleared from this process's memory.
func (km *KeyManager) DeleteKey(ctx context.Context, req *hsm.DeleteKeyRequest) error {
	uri, err := km.deleteKey(ctx, req)
	details := map[string]any{"service": req.Service}
	if err != nil {
		details["error"] = err.Error()
		audit(ctx, km.audit, ActionKeyDelete, uri, OutcomeFailure, details)
		return err
	}
	audit(ctx, km.audit, ActionKeyDelete, uri, OutcomeSuccess, details)
	return nil
}

func (km *KeyManager) deleteKey(ctx context.Context, req *hsm.DeleteKeyRequest) (string, error) {
	rec, err := km.record(ctx, req.URI)
	if err != nil {
		return req.URI, err
	}
	if rec.Service != req.Service {
		return rec.URI, fmt.Errorf("hsm/soft: delete %s for service %q: %w", rec.URI, req.Service, hsm.ErrKeySeparation)
	}
	if err := km.st.DeleteKey(ctx, rec.URI); err != nil {
		return rec.URI, fmt.Errorf("hsm/soft: delete %s: %w", rec.URI, err)
	}
	km.mu.Lock()
	if l := km.cache[rec.URI]; l != nil {
		l.wipe()
		delete(km.cache, rec.URI)
	}
	km.mu.Unlock()
	return rec.URI, nil
}
