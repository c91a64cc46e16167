//go:build cgo

package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// KeyWrapper with AES-256 keys on the token uses CKM_AES_GCM (NIST SP
// 800-38D): unlike AES key wrap (RFC 3394/5649) it authenticates the caller's
// AAD, which binds a wrapped data key to its context. The output is
//
//	0x01 || IV (12 bytes, random, drawn in Go) || ciphertext || tag (16 bytes)
//
// A random 96-bit IV per wrap keeps the IV-collision probability negligible
// for the 2^32 wraps SP 800-38D §8.3 allows under one key.

const (
	gcmVersion = 0x01
	gcmIVLen   = 12
	gcmTagLen  = 16
)

// Wrap encrypts req.Data under the AES key req.URI names, bound to req.AAD.
func (km *KeyManager) Wrap(ctx context.Context, req *hsm.WrapRequest) ([]byte, error) {
	rec, err := km.wrapping(ctx, req)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, gcmIVLen)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	var ct []byte
	err = km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		obj, err := km.object(h, gen, p11.CKO_SECRET_KEY, rec.id)
		if err != nil {
			return err
		}
		params := p11.NewGCMParams(iv, req.AAD, gcmTagLen*8)
		defer params.Free()
		if err := km.mod.ctx.EncryptInit(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, obj); err != nil {
			return err
		}
		ct, err = km.mod.ctx.Encrypt(h, req.Data)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: wrap with %q: %w", rec.label, mapErr("encrypt", err))
	}
	out := make([]byte, 0, 1+gcmIVLen+len(ct))
	out = append(out, gcmVersion)
	out = append(out, iv...)
	return append(out, ct...), nil
}

// Unwrap reverses Wrap; it fails unless req.AAD is the AAD given to Wrap.
func (km *KeyManager) Unwrap(ctx context.Context, req *hsm.WrapRequest) ([]byte, error) {
	rec, err := km.wrapping(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(req.Data) < 1+gcmIVLen+gcmTagLen || req.Data[0] != gcmVersion {
		return nil, errors.New("pkcs11: unwrap: malformed wrapped data")
	}
	iv, ct := req.Data[1:1+gcmIVLen], req.Data[1+gcmIVLen:]
	var pt []byte
	err = km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		obj, err := km.object(h, gen, p11.CKO_SECRET_KEY, rec.id)
		if err != nil {
			return err
		}
		params := p11.NewGCMParams(iv, req.AAD, gcmTagLen*8)
		defer params.Free()
		if err := km.mod.ctx.DecryptInit(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, obj); err != nil {
			return err
		}
		pt, err = km.mod.ctx.Decrypt(h, ct)
		return err
	})
	if err != nil {
		var pe p11.Error
		if errors.As(err, &pe) && (pe == p11.CKR_ENCRYPTED_DATA_INVALID || pe == p11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
			return nil, errors.New("pkcs11: unwrap: authentication failed (wrong key, data or AAD)")
		}
		return nil, fmt.Errorf("pkcs11: unwrap with %q: %w", rec.label, mapErr("decrypt", err))
	}
	return pt, nil
}

// wrapping finds a key-wrapping key and checks the caller may use it.
func (km *KeyManager) wrapping(ctx context.Context, req *hsm.WrapRequest) (*record, error) {
	rec, err := km.lookup(ctx, req.URI)
	if err != nil {
		return nil, err
	}
	if err := hsm.CheckAccess(&hsm.KeyInfo{Service: rec.meta.Service, Usage: rec.meta.Usage}, req.Service, hsm.UsageWrap); err != nil {
		return nil, fmt.Errorf("pkcs11: wrap with %q: %w", req.URI, err)
	}
	if rec.meta.Algorithm != hsm.AES256 {
		return nil, fmt.Errorf("pkcs11: wrap with %q: %w: %s", req.URI, hsm.ErrUnsupported, rec.meta.Algorithm)
	}
	return rec, nil
}
