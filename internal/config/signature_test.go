package config

import (
	"testing"
	"time"
)

func TestValidateSignature(t *testing.T) {
	for name, m := range map[string]func(c *Config){
		"relative anchor":    func(c *Config) { c.Signature.Anchors = []string{"roots.pem"} },
		"fetch_timeout zero": func(c *Config) { c.Signature.FetchTimeout = 0 },
		"fetch_timeout long": func(c *Config) { c.Signature.FetchTimeout = time.Hour },
	} {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			m(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("Validate accepted a bad signature section")
			}
		})
	}
	c := Defaults()
	c.Signature.Anchors = []string{"/etc/govtrust/foreign-roots.pem"}
	if err := c.Validate(); err != nil {
		t.Errorf("an absolute anchor path: %v", err)
	}
}
