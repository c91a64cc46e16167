package config

import (
	"testing"
	"time"
)

func TestValidateSeal(t *testing.T) {
	if err := func() error { c := Defaults(); return c.Seal.Validate() }(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	mut := map[string]func(c *Config){
		"seal.maker_key":          func(c *Config) { c.Seal.MakerKey = "maker" },
		"seal.maker_ca":           func(c *Config) { c.Seal.MakerCA = "" },
		"seal.approvals":          func(c *Config) { c.Seal.Approvals = 0 },
		"seal.application_ttl":    func(c *Config) { c.Seal.ApplicationTTL = time.Second },
		"seal.max_document_bytes": func(c *Config) { c.Seal.MaxDocumentBytes = 1 },
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
