package soft

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/govtrust/govtrust/hsm"
)

// Wrapped-secret format, the same for SM4 and AES-256 wrapping keys:
//
//	version(1)=0x01 | nonce(12) | GCM ciphertext | tag(16)
//
// GCM (NIST SP 800-38D) with a random 96-bit nonce; the caller's AAD is the
// GCM additional data as given, so the same blob can be unwrapped by any
// backend holding the key. Random nonces keep a key safe for 2^32 wraps
// (SP 800-38D §8.3), far above what key-wrapping keys see.
const (
	wrapVersion = 0x01
	// MaxWrapLen bounds the secrets Wrap accepts: it wraps keys, not data.
	MaxWrapLen = 64 << 10
)

// ErrUnwrap is returned when a wrapped secret does not authenticate (wrong
// key, wrong AAD, or altered bytes).
var ErrUnwrap = errors.New("hsm/soft: wrapped secret does not authenticate")

func wrapAEAD(l *loaded) (cipher.AEAD, error) {
	k := l.key.([]byte)
	if l.alg == hsm.SM4 {
		return newSM4GCM(k)
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: aes: %w", err)
	}
	return cipher.NewGCM(b)
}

// Wrap implements hsm.KeyWrapper.
func (km *KeyManager) Wrap(ctx context.Context, req *hsm.WrapRequest) ([]byte, error) {
	if len(req.Data) > MaxWrapLen {
		return nil, fmt.Errorf("hsm/soft: wrap: %d bytes is more than the %d a wrapped secret may have", len(req.Data), MaxWrapLen)
	}
	l, err := km.access(ctx, req.URI, req.Service, hsm.UsageWrap)
	if err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.wiped {
		return nil, errWiped
	}
	aead, err := wrapAEAD(l)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceLen, 1+nonceLen+len(req.Data)+aead.Overhead())
	out[0] = wrapVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("hsm/soft: nonce: %w", err)
	}
	return aead.Seal(out, out[1:], req.Data, req.AAD), nil
}

// Unwrap implements hsm.KeyWrapper.
func (km *KeyManager) Unwrap(ctx context.Context, req *hsm.WrapRequest) ([]byte, error) {
	l, err := km.access(ctx, req.URI, req.Service, hsm.UsageWrap)
	if err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.wiped {
		return nil, errWiped
	}
	aead, err := wrapAEAD(l)
	if err != nil {
		return nil, err
	}
	d := req.Data
	if len(d) < 1+nonceLen+aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrUnwrap)
	}
	if d[0] != wrapVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrUnwrap, d[0])
	}
	plain, err := aead.Open(nil, d[1:1+nonceLen], d[1+nonceLen:], req.AAD)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnwrap, err)
	}
	return plain, nil
}
