package pkcs11

import (
	"errors"
	"fmt"
	"time"
)

// Config says which token to use and how.
type Config struct {
	// Module is the path of the PKCS#11 module (shared library).
	Module string
	// Token is the token label; Slot the slot ID. At least one is required;
	// when both are set the token in Slot must carry the label Token. A label
	// survives re-initialisation of SoftHSM2 tokens, whose slot IDs change.
	Token string
	Slot  *uint
	// PIN is the user PIN, already resolved by the caller from a secret
	// reference. It is used for C_Login and never reported.
	PIN string
	// Vendor names an entry of Vendors whose SM2 mechanisms the token offers.
	// Empty means the token has no SM2: SM2 keys are kept wrapped (see package
	// documentation). VendorTable, when not nil, overrides the lookup.
	Vendor      string
	VendorTable *Vendor
	// WrapKeyLabel labels the AES-256 key that wraps software SM2 keys.
	// Default DefaultWrapKeyLabel.
	WrapKeyLabel string
	// MaxSessions bounds the session pool. Default DefaultMaxSessions.
	MaxSessions int
	// UnwrapTTL is how long an unwrapped SM2 private key is held in memory
	// after it was unwrapped. Default DefaultUnwrapTTL.
	UnwrapTTL time.Duration
	// CallTimeout bounds how long an operation waits for the module: for a
	// session and for the calls it makes. An operation that takes longer
	// answers hsm.ErrUnavailable, and while any of its calls has not
	// returned, every later operation and Check answer it at once (see
	// KeyManager.do). Default DefaultCallTimeout.
	CallTimeout time.Duration
}

// Defaults applied by New.
const (
	DefaultWrapKeyLabel = "govtrust-wrap"
	DefaultMaxSessions  = 8
	DefaultUnwrapTTL    = 5 * time.Minute
	// DefaultCallTimeout is far above any signature, and above the key
	// generation of the slowest HSMs; a call that takes longer is taken as
	// hung (a network HSM's client waiting on a connection whose server
	// stopped answering).
	DefaultCallTimeout = 30 * time.Second
)

// String describes cfg without its PIN, so that a Config printed by mistake
// does not reveal it.
func (cfg Config) String() string {
	slot := "any"
	if cfg.Slot != nil {
		slot = fmt.Sprint(*cfg.Slot)
	}
	pin := "unset"
	if cfg.PIN != "" {
		pin = "set"
	}
	return fmt.Sprintf("pkcs11.Config{Module: %q, Token: %q, Slot: %s, PIN: %s, Vendor: %q, WrapKeyLabel: %q, MaxSessions: %d, UnwrapTTL: %v, CallTimeout: %v}",
		cfg.Module, cfg.Token, slot, pin, cfg.Vendor, cfg.WrapKeyLabel, cfg.MaxSessions, cfg.UnwrapTTL, cfg.CallTimeout)
}

// GoString is String, for %#v.
func (cfg Config) GoString() string { return cfg.String() }

// Validate checks a Config without touching the module.
func (cfg Config) Validate() error {
	if cfg.Module == "" {
		return errors.New("pkcs11: module path is required")
	}
	if cfg.Token == "" && cfg.Slot == nil {
		return errors.New("pkcs11: token label or slot is required")
	}
	if len(cfg.Token) > 32 {
		return fmt.Errorf("pkcs11: token label %q longer than 32 bytes", cfg.Token)
	}
	if _, err := cfg.vendor(); err != nil {
		return err
	}
	return nil
}

// vendor returns the SM2 mechanism table chosen by cfg, or nil for tokens
// without SM2.
func (cfg Config) vendor() (*Vendor, error) {
	if cfg.VendorTable != nil {
		if err := cfg.VendorTable.validate(); err != nil {
			return nil, err
		}
		return cfg.VendorTable, nil
	}
	if cfg.Vendor == "" {
		return nil, nil
	}
	v, ok := Vendors[cfg.Vendor]
	if !ok {
		return nil, fmt.Errorf("pkcs11: unknown SM2 vendor table %q", cfg.Vendor)
	}
	return &v, nil
}

// Vendor is one vendor's PKCS#11 codes for SM2 (GM-STANDARDS.md §8). Every
// vendor uses CKM_VENDOR_DEFINED values of its own, and they conflict, so the
// table is chosen in configuration. A zero mechanism means "not offered".
type Vendor struct {
	Name string
	// KeyType is the CKA_KEY_TYPE of SM2 keys (CKK_SM2).
	KeyType uint
	// KeyGen is the SM2 key-pair generation mechanism.
	KeyGen uint
	// SignRaw signs a 32-byte e computed by the caller (Z and SM3 in Go). It
	// is the only signing mechanism this backend uses, so that Z and e stay in
	// code tested against gmsm.
	SignRaw uint
	// SignSM3 is the vendor's SM3-with-SM2 mechanism, recorded for reference:
	// vendors differ on whether it adds Z, so it is not used.
	SignSM3 uint
	// Encrypt is the SM2 public-key encryption mechanism, used for C_Decrypt.
	Encrypt uint
	// DERSignature is true when the token returns DER SEQUENCE{r, s}; false
	// when it returns r||s (32 bytes each).
	DERSignature bool
	// ASN1Ciphertext is true when the token takes GM/T 0009 ASN.1 SM2
	// ciphertexts; false when it takes C1||C3||C2 with C1 = 04||x||y.
	ASN1Ciphertext bool
}

func (v *Vendor) validate() error {
	if v.KeyType == 0 || v.KeyGen == 0 || v.SignRaw == 0 {
		return fmt.Errorf("pkcs11: SM2 vendor table %q needs key type, key generation and raw-sign mechanisms", v.Name)
	}
	return nil
}

// Vendors holds the known SM2 mechanism tables, by name.
var Vendors = map[string]Vendor{
	// TASS codes from xipki's vendor table (GM-STANDARDS.md §8). The
	// govtrust-p11 software token implements this table, signing with raw
	// r||s and taking GM/T 0009 ASN.1 ciphertexts (cmd/govtrust-p11/README.md).
	"tass": {
		Name:           "tass",
		KeyType:        0x80000004,
		KeyGen:         0x80008001,
		SignRaw:        0x80008000,
		SignSM3:        0x80008100,
		Encrypt:        0x80008200,
		ASN1Ciphertext: true,
	},
}
