//go:build !cgo

package pkcs11

import (
	"context"
	"crypto"
	"fmt"

	"github.com/govtrust/govtrust/hsm"
)

// errNoCgo is what every call returns in a build without cgo: PKCS#11
// modules are C libraries loaded with dlopen.
var errNoCgo = fmt.Errorf("%w: built without cgo: PKCS#11 unavailable", hsm.ErrUnavailable)

// KeyManager is unusable in builds without cgo.
type KeyManager struct{}

var (
	_ hsm.KeyManager = (*KeyManager)(nil)
	_ hsm.Decrypter  = (*KeyManager)(nil)
	_ hsm.KeyWrapper = (*KeyManager)(nil)
	_ hsm.Checker    = (*KeyManager)(nil)
)

// New fails: PKCS#11 needs cgo.
func New(_ context.Context, cfg Config) (*KeyManager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, errNoCgo
}

// CreateKey implements hsm.KeyManager.
func (*KeyManager) CreateKey(context.Context, *hsm.CreateKeyRequest) (*hsm.KeyInfo, error) {
	return nil, errNoCgo
}

// PublicKey implements hsm.KeyManager.
func (*KeyManager) PublicKey(context.Context, *hsm.PublicKeyRequest) (crypto.PublicKey, error) {
	return nil, errNoCgo
}

// Signer implements hsm.KeyManager.
func (*KeyManager) Signer(context.Context, *hsm.SignerRequest) (crypto.Signer, error) {
	return nil, errNoCgo
}

// Decrypter implements hsm.Decrypter.
func (*KeyManager) Decrypter(context.Context, *hsm.DecrypterRequest) (crypto.Decrypter, error) {
	return nil, errNoCgo
}

// Wrap implements hsm.KeyWrapper.
func (*KeyManager) Wrap(context.Context, *hsm.WrapRequest) ([]byte, error) { return nil, errNoCgo }

// Unwrap implements hsm.KeyWrapper.
func (*KeyManager) Unwrap(context.Context, *hsm.WrapRequest) ([]byte, error) { return nil, errNoCgo }

// ListKeys implements hsm.KeyManager.
func (*KeyManager) ListKeys(context.Context, *hsm.ListKeysRequest) ([]*hsm.KeyInfo, error) {
	return nil, errNoCgo
}

// DeleteKey implements hsm.KeyManager.
func (*KeyManager) DeleteKey(context.Context, *hsm.DeleteKeyRequest) error { return errNoCgo }

// Check implements hsm.Checker.
func (*KeyManager) Check(context.Context) error { return errNoCgo }

// Close implements hsm.KeyManager.
func (*KeyManager) Close() error { return nil }

// ExternalSigner needs cgo.
func (*KeyManager) ExternalSigner(context.Context, string, []byte, crypto.PublicKey) (crypto.Signer, error) {
	return nil, errNoCgo
}
