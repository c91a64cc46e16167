package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// SignatureConfig configures the signing and verification service
// (signature/).
type SignatureConfig struct {
	// Anchors are PEM files of foreign trust anchors (root certificates of
	// other CAs whose signatures the platform verifies) besides the
	// platform's own roots. Absolute paths.
	Anchors []string `yaml:"anchors"`
	// FetchTimeout bounds each OCSP or CRL fetch of a verification.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
}

// Validate checks the signature section.
func (s *SignatureConfig) Validate() error {
	var errs []error
	for i, a := range s.Anchors {
		if !filepath.IsAbs(a) {
			errs = append(errs, fmt.Errorf("signature.anchors[%d]: %q must be an absolute path", i, a))
		}
	}
	if s.FetchTimeout < 100*time.Millisecond || s.FetchTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("signature.fetch_timeout: %s must be between 100ms and 5m", s.FetchTimeout))
	}
	return errors.Join(errs...)
}
