package soft

import (
	"context"
	"errors"
	"time"

	"github.com/govtrust/govtrust/hsm"
)

// Store keeps the master-key record and the sealed key records. It never sees
// a private key or the master key in clear (except the master key of a dev
// keystore, which is the point of dev mode). Implementations are safe for
// concurrent use.
type Store interface {
	// GetMaster returns the master-key record, or ErrNotInitialized.
	GetMaster(ctx context.Context) (*MasterRecord, error)
	// PutMaster stores the master-key record; ErrInitialized if one exists.
	PutMaster(ctx context.Context, rec *MasterRecord) error
	// PutKey stores a new key record; hsm.ErrExists if the URI is taken.
	PutKey(ctx context.Context, rec *KeyRecord) error
	// GetKey returns the record of uri, or hsm.ErrNotFound.
	GetKey(ctx context.Context, uri string) (*KeyRecord, error)
	// ListKeys returns the records of service (all services when empty),
	// ordered by URI.
	ListKeys(ctx context.Context, service string) ([]*KeyRecord, error)
	// DeleteKey removes the record of uri, or returns hsm.ErrNotFound.
	DeleteKey(ctx context.Context, uri string) error
	// CountKeys returns the number of key records.
	CountKeys(ctx context.Context) (int, error)
}

// Errors about the master key. Callers use errors.Is.
var (
	ErrNotInitialized = errors.New("hsm/soft: keystore not initialised (run govtrust hsm init)")
	ErrInitialized    = errors.New("hsm/soft: keystore already initialised")
	ErrDevMasterKey   = errors.New("hsm/soft: master key is a dev key kept in clear in the database")
	ErrBadShare       = errors.New("hsm/soft: bad master-key share")
	ErrWeakKDF        = errors.New("hsm/soft: passphrase KDF parameters below the production minimum")
)

// Kind says how the master key is protected.
type Kind string

// Master-key kinds.
const (
	KindPassphrase Kind = "passphrase"
	KindShamir     Kind = "shamir"
	KindDev        Kind = "dev"
)

// KDFParams are argon2id parameters (RFC 9106 §3.1).
type KDFParams struct {
	Time      uint32 // passes t
	MemoryKiB uint32 // memory m in KiB
	Threads   uint8  // lanes p
	Salt      []byte // 16 random bytes, set by Init
}

// DefaultKDF is RFC 9106 §4's second recommended option (t=3, m=64 MiB, p=4),
// meant for machines where 2 GiB per unlock is too much.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// MinKDF is the weakest passphrase KDF production mode accepts. Tests use
// smaller parameters through InitRequest.KDF outside production.
var MinKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 1}

// MasterRecord is the stored description of the master key.
type MasterRecord struct {
	Kind Kind
	// Check is HMAC-SM3 under the check subkey of a fixed string.
	Check []byte
	// KDF and Sealed: passphrase kind. Sealed is nonce || SM4-GCM(master).
	KDF    KDFParams
	Sealed []byte
	// ShareSet, Threshold, Shares: shamir kind. ShareSet identifies the shares
	// of this keystore so shares of another one are refused by name.
	ShareSet  []byte
	Threshold int
	Shares    int
	// DevKey: dev kind only, the master key in clear.
	DevKey  []byte
	Created time.Time
}

// KeyRecord is a stored key: metadata in clear, private part sealed.
type KeyRecord struct {
	URI       string
	Version   int64 // sealing version; part of the AAD, 1 for keys sealed by this code
	Algorithm hsm.Algorithm
	Usage     hsm.Usage
	Service   string
	Public    []byte // PKIX DER; nil for symmetric keys
	Nonce     []byte // 12 bytes
	Sealed    []byte // SM4-GCM ciphertext and tag of PKCS#8 or raw key bytes
	Created   time.Time
}
