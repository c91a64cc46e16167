//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
)

// Signer returns a crypto.Signer for a signing key, only to the service that
// owns it (ACCEPTANCE.md E-04). The value has no Decrypt method, so it
// cannot be asserted to crypto.Decrypter.
func (km *KeyManager) Signer(ctx context.Context, req *hsm.SignerRequest) (crypto.Signer, error) {
	rec, pub, err := km.usable(ctx, req.URI, req.Service, hsm.UsageSign)
	if err != nil {
		return nil, err
	}
	switch {
	case rec.meta.Location == hsm.LocationWrapped:
		return &wrappedSM2Signer{wrappedSM2{km: km, rec: rec, pub: pub.(*ecdsa.PublicKey)}}, nil
	case rec.meta.Algorithm == hsm.SM2:
		if err := km.vendorFor(rec); err != nil {
			return nil, err
		}
	}
	return &tokenSigner{tokenKey{km: km, rec: rec, pub: pub}}, nil
}

// Decrypter returns a crypto.Decrypter for a decryption key (RSA-OAEP on the
// token, SM2 on the token or unwrapped in memory), only to the owning service.
// The value has no Sign method, so it cannot be asserted to crypto.Signer.
func (km *KeyManager) Decrypter(ctx context.Context, req *hsm.DecrypterRequest) (crypto.Decrypter, error) {
	rec, pub, err := km.usable(ctx, req.URI, req.Service, hsm.UsageDecrypt)
	if err != nil {
		return nil, err
	}
	switch {
	case rec.meta.Location == hsm.LocationWrapped:
		return &wrappedSM2Decrypter{wrappedSM2{km: km, rec: rec, pub: pub.(*ecdsa.PublicKey)}}, nil
	case rec.meta.Algorithm == hsm.SM2:
		if err := km.vendorFor(rec); err != nil {
			return nil, err
		}
	}
	return &tokenDecrypter{tokenKey{km: km, rec: rec, pub: pub}}, nil
}

// checkStoredUsage refuses an operation for usage with a key whose stored
// metadata says otherwise (ACCEPTANCE.md E-04). Signer and Decrypter check
// the usage already; this check stands in every operation as well, so that
// key separation does not rest on which constructor made the value.
func checkStoredUsage(rec *record, usage hsm.Usage) error {
	if rec.meta.Usage != usage {
		return fmt.Errorf("pkcs11: %s with %q, a %s key: %w", usage, rec.label, rec.meta.Usage, hsm.ErrKeySeparation)
	}
	return nil
}

// usable finds a key and checks that service may use it for usage.
func (km *KeyManager) usable(ctx context.Context, uri, service string, usage hsm.Usage) (*record, crypto.PublicKey, error) {
	rec, err := km.lookup(ctx, uri)
	if err != nil {
		return nil, nil, err
	}
	if err := hsm.CheckAccess(&hsm.KeyInfo{Service: rec.meta.Service, Usage: rec.meta.Usage}, service, usage); err != nil {
		return nil, nil, fmt.Errorf("pkcs11: %s for %q: %w", usage, uri, err)
	}
	if rec.meta.Algorithm.Symmetric() {
		return nil, nil, fmt.Errorf("pkcs11: %q: %w", uri, hsm.ErrKeySeparation)
	}
	pub, err := km.public(ctx, rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, pub, nil
}

// vendorFor checks that a hardware SM2 key can be used with the configured
// vendor table.
func (km *KeyManager) vendorFor(rec *record) error {
	if km.vendor == nil || km.vendor.Name != rec.meta.Vendor {
		return fmt.Errorf("%w: SM2 key %q was made with vendor table %q, key manager has %q",
			hsm.ErrUnsupported, rec.label, rec.meta.Vendor, km.vendorName())
	}
	return nil
}

func (km *KeyManager) vendorName() string {
	if km.vendor == nil {
		return ""
	}
	return km.vendor.Name
}

// tokenKey is a private key object on the token. It has neither Sign nor
// Decrypt: tokenSigner and tokenDecrypter each add one, so that a value
// handed out for one usage cannot be asserted to the other interface. The
// token enforces the usage too (CKA_SIGN, CKA_DECRYPT set at generation).
type tokenKey struct {
	km  *KeyManager
	rec *record
	pub crypto.PublicKey
}

func (k *tokenKey) Public() crypto.PublicKey { return k.pub }

// tokenSigner signs on the token.
type tokenSigner struct{ tokenKey }

// tokenDecrypter decrypts on the token.
type tokenDecrypter struct{ tokenKey }

var (
	_ crypto.Signer    = (*tokenSigner)(nil)
	_ crypto.Decrypter = (*tokenDecrypter)(nil)
)

// Sign implements crypto.Signer. ECDSA and RSA sign digest (opts.HashFunc()
// names its hash); SM2 follows the gmsm contract (see hsm.SM2Digest) and sends
// only e to the vendor's raw-sign mechanism.
func (k *tokenSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkStoredUsage(k.rec, hsm.UsageSign); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = crypto.Hash(0)
	}
	var (
		mech *p11.Mechanism
		data = digest
		raw  bool // token returns r||s
	)
	switch k.rec.meta.Algorithm {
	case hsm.ECDSAP256, hsm.ECDSAP384:
		if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() {
			return nil, fmt.Errorf("pkcs11: digest of %d bytes for %v", len(digest), h)
		}
		mech, raw = p11.NewMechanism(p11.CKM_ECDSA, nil), true
	case hsm.RSA2048, hsm.RSA3072:
		var err error
		if mech, data, err = rsaSignMechanism(k.pub.(*rsa.PublicKey), digest, opts); err != nil {
			return nil, err
		}
	case hsm.SM2:
		e, err := hsm.SM2Digest(k.pub.(*ecdsa.PublicKey), digest, opts)
		if err != nil {
			return nil, err
		}
		mech, data, raw = p11.NewMechanism(k.km.vendor.SignRaw, nil), e, !k.km.vendor.DERSignature
	default:
		return nil, fmt.Errorf("%w: sign with %s", hsm.ErrUnsupported, k.rec.meta.Algorithm)
	}
	var sig []byte
	err := k.km.do(context.Background(), func(h p11.SessionHandle, gen uint64) error {
		obj, err := k.km.object(h, gen, p11.CKO_PRIVATE_KEY, k.rec.id)
		if err != nil {
			return err
		}
		if err := k.km.mod.ctx.SignInit(h, []*p11.Mechanism{mech}, obj); err != nil {
			return err
		}
		sig, err = k.km.mod.ctx.Sign(h, data)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: sign with %q: %w", k.rec.label, mapErr("sign", err))
	}
	if raw {
		return rawToDER(sig)
	}
	return sig, nil
}

// Decrypt implements crypto.Decrypter: RSA-OAEP (opts *rsa.OAEPOptions; PKCS
// #1 v1.5 decryption is refused, being open to padding-oracle attacks) or
// SM2 (GB/T 32918.4) with the vendor's mechanism.
func (k *tokenDecrypter) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if err := checkStoredUsage(k.rec, hsm.UsageDecrypt); err != nil {
		return nil, err
	}
	var mech *p11.Mechanism
	switch k.rec.meta.Algorithm {
	case hsm.RSA2048, hsm.RSA3072:
		o, ok := opts.(*rsa.OAEPOptions)
		if !ok || o == nil {
			return nil, fmt.Errorf("%w: RSA decryption needs *rsa.OAEPOptions", hsm.ErrUnsupported)
		}
		mgf := o.MGFHash
		if mgf == 0 {
			mgf = o.Hash
		}
		hm, ok1 := hashMech[o.Hash]
		mm, ok2 := mgfMech[mgf]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: OAEP with %v/%v", hsm.ErrUnsupported, o.Hash, mgf)
		}
		mech = p11.NewMechanism(p11.CKM_RSA_PKCS_OAEP, p11.NewOAEPParams(hm, mm, p11.CKZ_DATA_SPECIFIED, o.Label))
	case hsm.SM2:
		v := k.km.vendor
		ct, err := vendorCiphertext(msg, v.ASN1Ciphertext)
		if err != nil {
			return nil, err
		}
		msg, mech = ct, p11.NewMechanism(v.Encrypt, nil)
	default:
		return nil, fmt.Errorf("%w: decrypt with %s", hsm.ErrUnsupported, k.rec.meta.Algorithm)
	}
	var pt []byte
	err := k.km.do(context.Background(), func(h p11.SessionHandle, gen uint64) error {
		obj, err := k.km.object(h, gen, p11.CKO_PRIVATE_KEY, k.rec.id)
		if err != nil {
			return err
		}
		if err := k.km.mod.ctx.DecryptInit(h, []*p11.Mechanism{mech}, obj); err != nil {
			return err
		}
		pt, err = k.km.mod.ctx.Decrypt(h, msg)
		return err
	})
	if err != nil {
		// One message for every failure of the decryption itself, so that
		// callers cannot build an oracle from error texts.
		var pe p11.Error
		if errors.As(err, &pe) && (pe == p11.CKR_ENCRYPTED_DATA_INVALID || pe == p11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
			return nil, errors.New("pkcs11: decryption error")
		}
		return nil, fmt.Errorf("pkcs11: decrypt with %q: %w", k.rec.label, mapErr("decrypt", err))
	}
	return pt, nil
}

// vendorCiphertext converts an SM2 ciphertext (ASN.1 per GM/T 0009 §7.2, or
// C1||C3||C2 with an uncompressed C1) to the form the token takes.
func vendorCiphertext(ct []byte, asn1Form bool) ([]byte, error) {
	if len(ct) == 0 {
		return nil, errors.New("pkcs11: empty SM2 ciphertext")
	}
	isASN1 := ct[0] == 0x30
	switch {
	case asn1Form && !isASN1:
		return sm2.PlainCiphertext2ASN1(ct, sm2.C1C3C2)
	case !asn1Form && isASN1:
		return sm2.ASN1Ciphertext2Plain(ct, nil)
	}
	return ct, nil
}

// Mechanism codes of the hashes this backend signs with.
var (
	hashMech = map[crypto.Hash]uint{
		crypto.SHA1: p11.CKM_SHA_1, crypto.SHA224: p11.CKM_SHA224, crypto.SHA256: p11.CKM_SHA256,
		crypto.SHA384: p11.CKM_SHA384, crypto.SHA512: p11.CKM_SHA512,
	}
	mgfMech = map[crypto.Hash]uint{
		crypto.SHA1: p11.CKG_MGF1_SHA1, crypto.SHA224: p11.CKG_MGF1_SHA224, crypto.SHA256: p11.CKG_MGF1_SHA256,
		crypto.SHA384: p11.CKG_MGF1_SHA384, crypto.SHA512: p11.CKG_MGF1_SHA512,
	}
	// DigestInfo prefixes of RFC 8017 §9.2 note 1, as crypto/rsa has them.
	digestInfo = map[crypto.Hash][]byte{
		crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
		crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
		crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
		crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
		crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
	}
)

// rsaSignMechanism chooses CKM_RSA_PKCS_PSS for *rsa.PSSOptions and
// CKM_RSA_PKCS over DigestInfo || digest otherwise (RFC 8017 §8.2, §9.2).
func rsaSignMechanism(pub *rsa.PublicKey, digest []byte, opts crypto.SignerOpts) (*p11.Mechanism, []byte, error) {
	h := opts.HashFunc()
	if h != 0 && len(digest) != h.Size() {
		return nil, nil, fmt.Errorf("pkcs11: digest of %d bytes for %v", len(digest), h)
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		hm, ok1 := hashMech[h]
		mm, ok2 := mgfMech[h]
		if !ok1 || !ok2 {
			return nil, nil, fmt.Errorf("%w: RSA-PSS with %v", hsm.ErrUnsupported, h)
		}
		salt := pss.SaltLength
		switch salt {
		case rsa.PSSSaltLengthEqualsHash:
			salt = h.Size()
		case rsa.PSSSaltLengthAuto:
			// The largest salt that fits (RFC 8017 §9.1.1 step 3), as
			// crypto/rsa signs with Auto.
			salt = (pub.N.BitLen()-1+7)/8 - 2 - h.Size()
		}
		if salt < 0 {
			return nil, nil, fmt.Errorf("pkcs11: PSS salt length %d", pss.SaltLength)
		}
		return p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, p11.NewPSSParams(hm, mm, uint(salt))), digest, nil
	}
	if h == 0 {
		return p11.NewMechanism(p11.CKM_RSA_PKCS, nil), digest, nil
	}
	prefix, ok := digestInfo[h]
	if !ok {
		return nil, nil, fmt.Errorf("%w: RSA PKCS#1 v1.5 with %v", hsm.ErrUnsupported, h)
	}
	return p11.NewMechanism(p11.CKM_RSA_PKCS, nil), append(append([]byte(nil), prefix...), digest...), nil
}
