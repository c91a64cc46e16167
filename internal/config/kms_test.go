package config

import (
	"testing"
	"time"
)

func TestValidateKMS(t *testing.T) {
	mut := map[string]func(c *Config){
		"kms.kek":                func(c *Config) { c.KMS.KEK = "kek" },
		"kms.rotation_check":     func(c *Config) { c.KMS.RotationCheck = 0 },
		"kms.destroy_approvals":  func(c *Config) { c.KMS.DestroyApprovals = 0 },
		"kmc.escrow_key":         func(c *Config) { c.KMC.EscrowKey = "" },
		"kmc.recovery_approvals": func(c *Config) { c.KMC.RecoveryApprovals = 1 },
		"kmc.recovery_ttl":       func(c *Config) { c.KMC.RecoveryTTL = time.Second },
		"kmc.retention":          func(c *Config) { c.KMC.Retention = -time.Hour },
	}
	for name, m := range mut {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			m(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("Validate accepted a bad configuration")
			}
		})
	}
}
