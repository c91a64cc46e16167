//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// SM2 on tokens without SM2 (ARCHITECTURE.md §3): the key pair is generated
// in software, the private scalar d is wrapped at once on the token with
// CKM_AES_KEY_WRAP_PAD (RFC 5649) under a non-extractable AES-256 key, and only
// the wrapped form is stored (in the key's metadata object). For use, the
// token unwraps d into a short-lived session object from which it is read;
// the key is then held in memory for Config.UnwrapTTL and dropped. Such keys
// are reported as hsm.LocationWrapped.
//
// d travels to and from the token as a CKK_GENERIC_SECRET value rather than as
// an EC private key object: tokens without SM2 cannot be trusted to encode an
// SM2-curve private key in PKCS#8 the way gmsm expects, while a generic secret
// is wrapped byte for byte.

// softSM2 is a freshly generated software key pair, before wrapping.
type softSM2 struct{ key *sm2.PrivateKey }

func newSoftSM2() (*softSM2, error) {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: generate SM2 key: %w", err)
	}
	return &softSM2{key: k}, nil
}

// public returns a copy of the public key, which outlives the zeroed pair.
func (s *softSM2) public() *ecdsa.PublicKey {
	p := s.key.PublicKey
	return &p
}

func (s *softSM2) zero() { zeroSM2(s.key) }

// zeroSM2 overwrites the private scalar. Go cannot promise that no copy of it
// remains elsewhere in memory (gmsm caches a value derived from it); this
// shortens the time the plain scalar is reachable.
func zeroSM2(k *sm2.PrivateKey) {
	if k == nil {
		return
	}
	if d := k.D; d != nil {
		clear(d.Bits())
		d.SetInt64(0)
	}
}

// wrapKey returns the handle of the token's SM2 wrapping key, creating it when
// create is true and it does not exist yet.
func (km *KeyManager) wrapKey(h p11.SessionHandle, label string, create bool) (p11.ObjectHandle, error) {
	c := km.mod.ctx
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_WRAP, true),
	}
	objs, err := findObjects(c, h, tmpl)
	if err != nil {
		return 0, err
	}
	switch {
	case len(objs) == 1:
		return objs[0], nil
	case len(objs) > 1:
		return 0, fmt.Errorf("pkcs11: %d AES keys labelled %q", len(objs), label)
	case !create:
		return 0, fmt.Errorf("%w: SM2 wrapping key %q is missing from the token", hsm.ErrNotFound, label)
	}
	return c.GenerateKey(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, append(tmpl,
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_UNWRAP, true),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
	))
}

var wrapMech = []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP_PAD, nil)}

// storeWrappedSM2 wraps sw's private scalar on the token and stores its public
// key as a CKK_EC object on the SM2 curve. It returns the created objects and
// the wrapped scalar.
func (km *KeyManager) storeWrappedSM2(h p11.SessionHandle, label string, id []byte, sw *softSM2) ([]p11.ObjectHandle, []byte, error) {
	c := km.mod.ctx
	wk, err := km.wrapKey(h, km.cfg.WrapKeyLabel, true)
	if err != nil {
		return nil, nil, fmt.Errorf("SM2 wrapping key: %w", err)
	}
	ek, err := sw.key.ECDH()
	if err != nil {
		return nil, nil, err
	}
	d := ek.Bytes()
	defer clear(d)
	tmp, err := c.CreateObject(h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		p11.NewAttribute(p11.CKA_VALUE, d),
	})
	if err != nil {
		return nil, nil, err
	}
	wrapped, err := c.WrapKey(h, wrapMech, wk, tmp)
	if derr := c.DestroyObject(h, tmp); err == nil && derr != nil {
		err = derr
	}
	if err != nil {
		return nil, nil, err
	}
	point, err := sm2Point(sw.public())
	if err != nil {
		return nil, nil, err
	}
	pub, err := c.CreateObject(h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_EC_PARAMS, ecParams(hsm.SM2)),
		p11.NewAttribute(p11.CKA_EC_POINT, ecPointAttr(point)),
		// The token cannot verify SM2 (its ECDSA is not SM2); the object
		// only carries the public key.
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	})
	if err != nil {
		return nil, nil, err
	}
	return []p11.ObjectHandle{pub}, wrapped, nil
}

// unwrapSM2 unwraps a stored SM2 scalar on the token and checks it against
// the public key. The caller has checked that the key still exists.
func (km *KeyManager) unwrapSM2(ctx context.Context, rec *record, pub *ecdsa.PublicKey) (*sm2.PrivateKey, error) {
	var key *sm2.PrivateKey
	err := km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		c := km.mod.ctx
		wk, err := km.wrapKey(h, rec.meta.WrapKey, false)
		if err != nil {
			return err
		}
		tmp, err := c.UnwrapKey(h, wrapMech, wk, rec.meta.Wrapped, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			// CKA_VALUE of a secret key is readable only when it is not
			// sensitive and is extractable (PKCS#11 v2.40 §4.10): read once,
			// by us, then destroyed.
			p11.NewAttribute(p11.CKA_SENSITIVE, false),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		})
		if err != nil {
			return err
		}
		d, err := takeSecret(c, h, tmp)
		if err != nil {
			return err
		}
		defer clear(d)
		if key, err = sm2.NewPrivateKey(d); err != nil {
			return errors.New("unwrapped SM2 scalar is invalid")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: unwrap SM2 key %q: %w", rec.label, mapErr("unwrap", err))
	}
	// The wrapped scalar is not bound to its key by AES key wrap; the public
	// key check catches a blob moved between keys or corrupted.
	if !key.PublicKey.Equal(pub) {
		zeroSM2(key)
		return nil, fmt.Errorf("pkcs11: unwrapped SM2 key %q does not match its public key", rec.label)
	}
	return key, nil
}

// takeSecret reads CKA_VALUE of the session object tmp, which holds a clear
// SM2 scalar, and destroys the object. When it cannot be destroyed the
// PKCS#11 error is returned: pool.do then closes the session instead of
// putting it back in the pool, and closing a session destroys the session
// objects it created (PKCS#11 v2.40 §5.6, C_CloseSession), so the clear
// scalar does not stay on the token for the next user of the session.
func takeSecret(c *p11.Ctx, h p11.SessionHandle, tmp p11.ObjectHandle) ([]byte, error) {
	attrs, err := c.GetAttributeValue(h, tmp, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	derr := c.DestroyObject(h, tmp)
	if err != nil {
		return nil, err
	}
	if derr != nil {
		clear(attrs[0].Value)
		return nil, fmt.Errorf("destroy the unwrapped scalar: %w", derr)
	}
	return attrs[0].Value, nil
}

// sm2Cache holds unwrapped SM2 keys for one use period each.
type sm2Cache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*sm2Entry // by metadata id
}

// sm2Entry is one unwrapped key, or one being unwrapped.
type sm2Entry struct {
	ready chan struct{} // closed when the unwrap is over

	mu      sync.RWMutex // held for reading while the key is in use
	key     *sm2.PrivateKey
	err     error
	dropped bool // set by dropEntry; the unwrapper then zeroes its result
}

func newSM2Cache(ttl time.Duration) *sm2Cache {
	return &sm2Cache{ttl: ttl, m: map[string]*sm2Entry{}}
}

// withSM2 runs fn with the unwrapped key of rec, unwrapping it first when it
// is not held. The key is not dropped while fn runs.
//
// Every call first checks, with one search on the token, that the key's
// metadata object still exists and says usage: a key deleted by another
// process stops working at once rather than when its use period ends, and
// key separation rests on what the token stores (ACCEPTANCE.md E-04).
func (km *KeyManager) withSM2(ctx context.Context, rec *record, pub *ecdsa.PublicKey, usage hsm.Usage, fn func(*sm2.PrivateKey) error) error {
	if err := checkStoredUsage(rec, usage); err != nil {
		return err
	}
	c := km.sm2keys
	id := rec.meta.ID
	for {
		if km.isClosed() {
			return errClosed
		}
		if err := km.checkStored(ctx, rec, usage); err != nil {
			if errors.Is(err, hsm.ErrNotFound) {
				c.drop(id)
			}
			return err
		}
		c.mu.Lock()
		e, ok := c.m[id]
		if !ok {
			e = &sm2Entry{ready: make(chan struct{})}
			c.m[id] = e
		}
		c.mu.Unlock()
		if !ok {
			key, err := km.unwrapSM2(ctx, rec, pub)
			e.mu.Lock()
			dropped := e.dropped
			if dropped {
				// Dropped (Close, DeleteKey, end of use period) while
				// unwrapping: nobody else will zero this key.
				zeroSM2(key)
				key = nil
			}
			e.key, e.err = key, err
			e.mu.Unlock()
			close(e.ready)
			if err != nil {
				c.remove(id, e)
				return err
			}
			if !dropped {
				time.AfterFunc(c.ttl, func() { c.dropEntry(id, e) })
			}
		}
		select {
		case <-e.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.mu.RLock()
		if e.err != nil {
			err := e.err
			e.mu.RUnlock()
			return err
		}
		if e.key == nil { // dropped meanwhile: unwrap again
			e.mu.RUnlock()
			continue
		}
		err := fn(e.key)
		e.mu.RUnlock()
		return err
	}
}

// checkStored checks that the metadata object of rec is still on the token
// and gives the key usage.
func (km *KeyManager) checkStored(ctx context.Context, rec *record, usage hsm.Usage) error {
	var cur *record
	err := km.do(ctx, func(h p11.SessionHandle, _ uint64) error {
		var err error
		cur, err = findRecord(km.mod.ctx, h, rec.label, rec.id)
		return err
	})
	if err != nil {
		if errors.Is(err, hsm.ErrNotFound) {
			return fmt.Errorf("pkcs11: SM2 key %q: %w", rec.label, hsm.ErrNotFound)
		}
		return fmt.Errorf("pkcs11: find SM2 key %q: %w", rec.label, mapErr("find", err))
	}
	return checkStoredUsage(cur, usage)
}

func (c *sm2Cache) remove(id string, e *sm2Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[id] == e {
		delete(c.m, id)
	}
}

// dropEntry forgets and zeroes an unwrapped key once nobody uses it. It
// never waits for an unwrap under way: that may be waiting for Close, which
// calls dropEntry; the unwrapping goroutine zeroes its own result instead.
func (c *sm2Cache) dropEntry(id string, e *sm2Entry) {
	c.remove(id, e)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropped = true
	zeroSM2(e.key)
	e.key = nil
}

// drop forgets the key with metadata id, if held.
func (c *sm2Cache) drop(id string) {
	c.mu.Lock()
	e := c.m[id]
	c.mu.Unlock()
	if e != nil {
		c.dropEntry(id, e)
	}
}

// purge forgets every held key.
func (c *sm2Cache) purge() {
	c.mu.Lock()
	ids := make([]string, 0, len(c.m))
	for id := range c.m {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.drop(id)
	}
}

// held reports how many unwrapped keys are in memory (tests).
func (c *sm2Cache) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// wrappedSM2 is a wrapped SM2 key, unwrapped for use. It has neither Sign
// nor Decrypt: wrappedSM2Signer and wrappedSM2Decrypter each add one, so that
// a value handed out for one usage cannot be asserted to the other interface
// (unlike a hardware key, nothing on the token refuses the other use).
type wrappedSM2 struct {
	km  *KeyManager
	rec *record
	pub *ecdsa.PublicKey
}

func (k *wrappedSM2) Public() crypto.PublicKey { return k.pub }

// wrappedSM2Signer signs with a wrapped SM2 signing key.
type wrappedSM2Signer struct{ wrappedSM2 }

// wrappedSM2Decrypter decrypts with a wrapped SM2 decryption key.
type wrappedSM2Decrypter struct{ wrappedSM2 }

var (
	_ crypto.Signer    = (*wrappedSM2Signer)(nil)
	_ crypto.Decrypter = (*wrappedSM2Decrypter)(nil)
)

// Sign implements crypto.Signer with gmsm's contract (hsm.SM2Digest).
func (k *wrappedSM2Signer) Sign(rnd io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	e, err := hsm.SM2Digest(k.pub, msg, opts)
	if err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var sig []byte
	err = k.km.withSM2(context.Background(), k.rec, k.pub, hsm.UsageSign, func(key *sm2.PrivateKey) error {
		var err error
		// opts nil: e is already the value to sign.
		sig, err = sm2.SignASN1(rnd, key, e, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: sign with %q: %w", k.rec.label, err)
	}
	return sig, nil
}

// Decrypt implements crypto.Decrypter for SM2 ciphertexts (GB/T 32918.4),
// ASN.1 or C1||C3||C2 as gmsm accepts them.
func (k *wrappedSM2Decrypter) Decrypt(rnd io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	var pt []byte
	err := k.km.withSM2(context.Background(), k.rec, k.pub, hsm.UsageDecrypt, func(key *sm2.PrivateKey) error {
		var err error
		pt, err = key.Decrypt(rnd, msg, opts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: decrypt with %q: %w", k.rec.label, err)
	}
	return pt, nil
}
