package hsm

import (
	"context"
	"crypto"
	"errors"
	"time"
)

// Algorithm names an asymmetric or symmetric key algorithm.
type Algorithm string

// Algorithms the SPI knows. ML-DSA is reserved: backends answer ErrUnsupported
// until they implement it.
const (
	SM2       Algorithm = "sm2"
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	MLDSA65   Algorithm = "ml-dsa-65"
	SM4       Algorithm = "sm4"     // symmetric key-encryption key (KeyWrapper)
	AES256    Algorithm = "aes-256" // symmetric key-encryption key (KeyWrapper)
)

// Algorithms lists the asymmetric algorithms in a stable order.
var Algorithms = []Algorithm{SM2, ECDSAP256, ECDSAP384, RSA2048, RSA3072}

// Valid reports whether a is an algorithm this SPI names.
func (a Algorithm) Valid() bool {
	switch a {
	case SM2, ECDSAP256, ECDSAP384, RSA2048, RSA3072, MLDSA65, SM4, AES256:
		return true
	}
	return false
}

// Symmetric reports whether a is a symmetric (key-wrapping) algorithm.
func (a Algorithm) Symmetric() bool { return a == SM4 || a == AES256 }

// Usage says what a key may do. A key has exactly one usage: a signing key never
// decrypts and a decryption key never signs.
type Usage string

// Key usages.
const (
	UsageSign    Usage = "sign"
	UsageDecrypt Usage = "decrypt"
	UsageWrap    Usage = "wrap"
)

// Location says where a private key lives, for the key-location report
// (ACCEPTANCE.md E-05). The strings are shown to operators as they are.
type Location string

// Key locations.
const (
	LocationHardware Location = "hardware"
	LocationWrapped  Location = "software, wrapped by hardware key"
	LocationSoftware Location = "software"
)

// CreateKeyRequest asks a backend to create a key.
type CreateKeyRequest struct {
	// URI names the new key, for example "soft:ca/root-2026" or
	// "pkcs11:token=ca;object=root-2026". The backend may add attributes
	// (such as id) and returns the canonical URI in KeyInfo.
	URI       string
	Algorithm Algorithm
	Usage     Usage
	// Service owns the key; only that service may use it (key separation).
	Service string
}

// KeyInfo describes a key without any private material.
type KeyInfo struct {
	URI       string
	Algorithm Algorithm
	Usage     Usage
	Service   string
	Backend   string // "soft", "pkcs11"
	Module    string // PKCS#11 module path, empty for software keys
	Slot      string
	Token     string
	Label     string
	Location  Location
	Created   time.Time
	Public    crypto.PublicKey // nil for symmetric keys
}

// SignerRequest asks for a crypto.Signer for a key.
type SignerRequest struct {
	URI     string
	Service string // the calling service; must match the key's service
}

// DecrypterRequest asks for a crypto.Decrypter for a key.
type DecrypterRequest struct {
	URI     string
	Service string
}

// PublicKeyRequest asks for a key's public key.
type PublicKeyRequest struct {
	URI string
}

// ListKeysRequest filters a key listing. Empty fields match everything.
type ListKeysRequest struct {
	Service string
}

// DeleteKeyRequest asks a backend to destroy a key.
type DeleteKeyRequest struct {
	URI     string
	Service string
}

// KeyManager is the core of the SPI. Implementations are safe for concurrent use.
type KeyManager interface {
	CreateKey(ctx context.Context, req *CreateKeyRequest) (*KeyInfo, error)
	PublicKey(ctx context.Context, req *PublicKeyRequest) (crypto.PublicKey, error)
	Signer(ctx context.Context, req *SignerRequest) (crypto.Signer, error)
	ListKeys(ctx context.Context, req *ListKeysRequest) ([]*KeyInfo, error)
	DeleteKey(ctx context.Context, req *DeleteKeyRequest) error
	Close() error
}

// Decrypter is implemented by key managers that can decrypt with keys of usage
// UsageDecrypt (SM2 public-key encryption per GB/T 32918.4, RSA-OAEP).
type Decrypter interface {
	Decrypter(ctx context.Context, req *DecrypterRequest) (crypto.Decrypter, error)
}

// WrapRequest asks a key-wrapping key to encrypt (wrap) or decrypt (unwrap) a
// small secret, such as an application data key, bound to AAD.
type WrapRequest struct {
	URI     string
	Service string
	Data    []byte
	AAD     []byte
}

// KeyWrapper is implemented by key managers that hold symmetric key-encryption
// keys (SM4 or AES-256) and can wrap and unwrap secrets with them.
type KeyWrapper interface {
	Wrap(ctx context.Context, req *WrapRequest) ([]byte, error)
	Unwrap(ctx context.Context, req *WrapRequest) ([]byte, error)
}

// Checker is implemented by key managers that can tell whether they are usable
// right now (token present, logged in, master key unlocked). readyz uses it.
type Checker interface {
	Check(ctx context.Context) error
}

// Errors returned by backends; callers use errors.Is.
var (
	ErrNotFound      = errors.New("hsm: key not found")
	ErrExists        = errors.New("hsm: key already exists")
	ErrUnsupported   = errors.New("hsm: operation or algorithm not supported by this backend")
	ErrKeySeparation = errors.New("hsm: key belongs to another service or usage")
	ErrLocked        = errors.New("hsm: key store is locked")
	ErrPIN           = errors.New("hsm: PIN incorrect or login failed")
	ErrUnavailable   = errors.New("hsm: token or module unavailable")
	ErrBadURI        = errors.New("hsm: malformed key URI")
)

// CheckAccess enforces key separation for a key described by info: the calling
// service and usage must be the key's own. Backends call it before handing out
// a signer, decrypter or wrapper.
func CheckAccess(info *KeyInfo, service string, usage Usage) error {
	if info.Service != service || info.Usage != usage {
		return ErrKeySeparation
	}
	return nil
}
