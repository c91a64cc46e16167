package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// SealConfig configures electronic seals (signature/seal): making, the
// registry and sealing.
type SealConfig struct {
	// MakerKey is the key URI of the seal maker's key (service "seal"),
	// which signs every SESeal the platform makes; created on first use
	// when missing, with its certificate from MakerCA (profile seal-maker).
	// Its renewals are new keys named after it (signature/seal).
	MakerKey string `yaml:"maker_key"`
	// MakerCA is the CA that certifies the maker key.
	MakerCA string `yaml:"maker_ca"`
	// Approvals is the number of seal administrators, other than the
	// applicant, who approve a seal application (dual control).
	Approvals int `yaml:"approvals"`
	// ApplicationTTL is how long an application waits for approval and
	// making.
	ApplicationTTL time.Duration `yaml:"application_ttl"`
	// Font is the path of the CJK font (TrueType/OpenType, or a .ttc
	// collection) generated seal pictures are drawn with. Empty: pictures
	// must be uploaded.
	Font string `yaml:"font"`
	// RequireTimestamp refuses to complete a sealing without a time-stamp
	// from the platform TSA, and makes verification report a missing one.
	RequireTimestamp bool `yaml:"require_timestamp"`
	// MaxDocumentBytes bounds an uploaded document; larger ones are sealed
	// in hash-only mode (detached) by sending the digest.
	MaxDocumentBytes int64 `yaml:"max_document_bytes"`
	// MakerAnchors are PEM files (absolute paths) of the certificates of
	// foreign seal makers' issuers: a seal made by a maker certificate
	// that is one of them or chains to one (another platform's seal-maker
	// CA) verifies; besides those, only the platform's own maker
	// certificates make seals that verify. Empty by default.
	MakerAnchors []string `yaml:"maker_anchors"`
}

// Validate checks the seal section.
func (s *SealConfig) Validate() error {
	var errs []error
	if !validKeyURI(s.MakerKey) {
		errs = append(errs, fmt.Errorf("seal.maker_key: %q is not a soft: or pkcs11: key URI", s.MakerKey))
	}
	if s.MakerCA == "" {
		errs = append(errs, errors.New("seal.maker_ca: required"))
	}
	if s.Approvals < 1 || s.Approvals > 16 {
		errs = append(errs, fmt.Errorf("seal.approvals: %d must be between 1 and 16", s.Approvals))
	}
	if s.ApplicationTTL < time.Minute {
		errs = append(errs, errors.New("seal.application_ttl: must be at least 1m"))
	}
	if s.MaxDocumentBytes < 1024 {
		errs = append(errs, errors.New("seal.max_document_bytes: must be at least 1024"))
	}
	for i, a := range s.MakerAnchors {
		if !filepath.IsAbs(a) {
			errs = append(errs, fmt.Errorf("seal.maker_anchors[%d]: %q must be an absolute path", i, a))
		}
	}
	return errors.Join(errs...)
}
