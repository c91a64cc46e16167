package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
)

// SM2Digest returns e = SM3(Z ‖ data), the value an SM2 signature over data
// signs, with Z from pub and uid (GM/T 0009 §8; default ID when uid is nil).
// Hash-only raw SM2 signing takes this value, not SM3(data): Z depends on
// the key, so no plain digest of the data can stand in for it.
func SM2Digest(pub *ecdsa.PublicKey, uid, data []byte) ([]byte, error) {
	if uid == nil {
		uid = DefaultUID
	}
	return sm2.CalculateSM2Hash(pub, data, uid)
}

// SignRaw returns a raw signature (DER r,s for SM2 and ECDSA, PKCS#1 v1.5
// for RSA) over data, or over digest when data is nil. For SM2 the digest
// is e of SM2Digest; for the others it is h of the data.
func SignRaw(key crypto.Signer, h *Hash, uid, data, digest []byte) ([]byte, error) {
	pub := key.Public()
	if k, ok := pub.(*ecdsa.PublicKey); ok && sm2.IsSM2PublicKey(k) {
		if data != nil {
			return signMessage(key, SM3, uid, data)
		}
		if len(digest) != 32 {
			return nil, errors.New("cms: an SM2 digest is 32 bytes (e = SM3(Z‖M))")
		}
		return key.Sign(rand.Reader, digest, nil)
	}
	if h == nil || h == SM3 {
		return nil, fmt.Errorf("cms: %T keys sign SHA-2 digests", pub)
	}
	if data != nil {
		digest = h.Sum(data)
	}
	if len(digest) != h.Size {
		return nil, fmt.Errorf("cms: digest is not %s", h.Name)
	}
	return key.Sign(rand.Reader, digest, h.Hash)
}

// VerifyRaw checks a raw signature made by SignRaw, over data or over
// digest when data is nil.
func VerifyRaw(pub crypto.PublicKey, h *Hash, uid, data, digest, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			if data != nil {
				if uid == nil {
					uid = DefaultUID
				}
				if !sm2.VerifyASN1WithSM2(k, uid, data, sig) {
					return verr(ReasonSignatureInvalid, "SM2 signature invalid")
				}
				return nil
			}
			if !sm2.VerifyASN1(k, digest, sig) {
				return verr(ReasonSignatureInvalid, "SM2 signature invalid")
			}
			return nil
		}
		if h == nil || h == SM3 {
			return verr(ReasonAlgorithm, "ECDSA verifies SHA-2 digests")
		}
		if data != nil {
			digest = h.Sum(data)
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return verr(ReasonSignatureInvalid, "ECDSA signature invalid")
		}
		return nil
	case *rsa.PublicKey:
		if h == nil || h == SM3 {
			return verr(ReasonAlgorithm, "RSA verifies SHA-2 digests")
		}
		if data != nil {
			digest = h.Sum(data)
		}
		if rsa.VerifyPKCS1v15(k, h.Hash, digest, sig) != nil {
			return verr(ReasonSignatureInvalid, "RSA signature invalid")
		}
		return nil
	}
	return verr(ReasonAlgorithm, "unsupported key %T", pub)
}
