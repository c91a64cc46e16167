package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// KMSConfig configures the key service's application keys (kms/).
type KMSConfig struct {
	// KEK is the key URI of the key-encryption key in hsm under which every
	// application key version is wrapped (an SM4 or AES-256 wrap key of
	// service "kms"; created on first start when missing).
	KEK string `yaml:"kek"`
	// RotationCheck is how often keys with a rotation period are checked
	// and rotated when due.
	RotationCheck time.Duration `yaml:"rotation_check"`
	// DestroyApprovals is the number of security administrators, other than
	// the requester, who approve destroying a key version.
	DestroyApprovals int `yaml:"destroy_approvals"`
}

// KMCConfig configures the key management centre (kms/kmc): generation,
// escrow and recovery of the encryption keys of dual certificates.
type KMCConfig struct {
	// EscrowKey is the key URI of the escrow key in hsm (an SM4 or AES-256
	// wrap key of service "kmc"); every escrowed private key is wrapped
	// under it. Created on first start when missing.
	EscrowKey string `yaml:"escrow_key"`
	// RecoveryApprovals is the number of distinct key recovery officers who
	// approve a key recovery (GM/T 0034-2014 §12.4/§12.5: dual control).
	RecoveryApprovals int `yaml:"recovery_approvals"`
	// RecoveryTTL is how long a recovery request may wait for approval and
	// execution.
	RecoveryTTL time.Duration `yaml:"recovery_ttl"`
	// Retention is how long after the encryption certificate's notAfter an
	// escrowed key stays recoverable, revoked or not.
	Retention time.Duration `yaml:"retention"`
}

func validKeyURI(s string) bool {
	return (strings.HasPrefix(s, "soft:") || strings.HasPrefix(s, "pkcs11:")) && !strings.ContainsAny(s, " \t\r\n")
}

// Validate checks the kms section.
func (k *KMSConfig) Validate() error {
	var errs []error
	if !validKeyURI(k.KEK) {
		errs = append(errs, fmt.Errorf("kms.kek: %q is not a soft: or pkcs11: key URI", k.KEK))
	}
	if k.RotationCheck < time.Second {
		errs = append(errs, errors.New("kms.rotation_check: must be at least 1s"))
	}
	if k.DestroyApprovals < 1 || k.DestroyApprovals > 16 {
		errs = append(errs, fmt.Errorf("kms.destroy_approvals: %d must be between 1 and 16", k.DestroyApprovals))
	}
	return errors.Join(errs...)
}

// Validate checks the kmc section.
func (k *KMCConfig) Validate() error {
	var errs []error
	if !validKeyURI(k.EscrowKey) {
		errs = append(errs, fmt.Errorf("kmc.escrow_key: %q is not a soft: or pkcs11: key URI", k.EscrowKey))
	}
	// Two approvers at least: recovery is a dual-control operation
	// (ISSUE: two distinct key recovery officers; ACCEPTANCE.md K-01).
	if k.RecoveryApprovals < 2 || k.RecoveryApprovals > 16 {
		errs = append(errs, fmt.Errorf("kmc.recovery_approvals: %d must be between 2 and 16", k.RecoveryApprovals))
	}
	if k.RecoveryTTL < time.Minute {
		errs = append(errs, errors.New("kmc.recovery_ttl: must be at least 1m"))
	}
	if k.Retention < 0 {
		errs = append(errs, errors.New("kmc.retention: must not be negative"))
	}
	return errors.Join(errs...)
}
