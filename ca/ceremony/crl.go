package ceremony

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"

	"github.com/govtrust/govtrust/hsm"
)

// CRL is the kind of a CRL ceremony file (CRLFile): an offline CA, a root,
// signs its CRL, the ARL that lists the CA certificates it revoked.
const CRL Kind = "crl"

// MaxCRLDays bounds next_update_days: CA/B Forum BR §4.9.7 lets a CRL that
// covers CA certificates have a nextUpdate at most twelve months after its
// thisUpdate (365 days is never more; crl.MaxOfflineValidity).
const MaxCRLDays = 365

// CARevocationReasons are the RFC 5280 §5.3.1 reasons a CRL ceremony
// revokes a CA certificate for. The ARL says why (BR §7.2.2 wants a
// reasonCode on new entries, and "unspecified" is never written);
// certificateHold is refused (BR §7.2.2), privilegeWithdrawn and
// aACompromise concern subscribers and attribute authorities.
var CARevocationReasons = []string{"keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation"}

// CRLFile is a CRL ceremony file, the offline counterpart of the CRLs an
// online CA signs on its own (Boulder's ceremony tool has the same kind):
// the offline root revokes the certificates listed in Revoke, which it
// signed in earlier ceremonies, and signs its CRL on its own machine;
// the node that serves the root's CRL URL imports the CRL
// (`govtrust ca import-crl`). Run again with no revocations, it re-signs the
// CRL before the one published reaches its nextUpdate.
type CRLFile struct {
	Kind Kind `yaml:"kind"`
	// CA is the offline root's id, as its root ceremony named it.
	CA string `yaml:"ca"`
	// Issuer is the root: its certificate (optionally pinned) and key.
	Issuer *Issuer `yaml:"issuer"`
	// CRLURL is where the CRL is published: the http URL the certificates
	// the root signs carry in their CRL distribution points (the sub
	// ceremonies' crl_urls), written byte for byte into the CRL's
	// issuingDistributionPoint (BR §7.2.2.1), and ending in /<ca>.crl, the
	// name a node serves an imported CRL under.
	CRLURL string `yaml:"crl_url"`
	// NextUpdateDays is the CRL's validity: nextUpdate is the ceremony's
	// time plus this many days (1 to MaxCRLDays). The next CRL ceremony must
	// come before it ends.
	NextUpdateDays int `yaml:"next_update_days"`
	// Revoke lists the certificates revoked in this ceremony. Those revoked
	// in earlier ceremonies stay on the CRL (the root's data directory
	// records them) and need not be listed again.
	Revoke []Revocation `yaml:"revoke"`

	// SM3 is the SM3 hash of the file as read; Dir the directory relative
	// paths are resolved against.
	SM3 []byte `yaml:"-"`
	Dir string `yaml:"-"`
}

// Revocation is one certificate a CRL ceremony revokes.
type Revocation struct {
	// Certificate is the certificate (PEM or DER, relative to the file)
	// and CertificateSHA256 its fingerprint as the reviewers checked it
	// (required).
	Certificate       string `yaml:"certificate"`
	CertificateSHA256 string `yaml:"certificate_sha256"`
	// Reason is one of CARevocationReasons.
	Reason string `yaml:"reason"`
}

// LoadCRL reads, decodes and validates a CRL ceremony file.
func LoadCRL(p string) (*CRLFile, error) {
	f, err := load(p, ParseCRL)
	if err != nil {
		return nil, err
	}
	f.Dir = filepath.Dir(p)
	return f, nil
}

// ParseCRL decodes and validates a CRL ceremony file; unknown keys are
// errors.
func ParseCRL(data []byte) (*CRLFile, error) {
	var f CRLFile
	var err error
	if f.SM3, err = decode(data, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// SM3Hex is the hex SM3 hash of the file.
func (f *CRLFile) SM3Hex() string { return (&File{SM3: f.SM3}).SM3Hex() }

// CheckSM3 refuses to run a CRL ceremony file other than the reviewed one
// (see File.CheckSM3).
func (f *CRLFile) CheckSM3(reviewed string) error { return (&File{SM3: f.SM3}).CheckSM3(reviewed) }

// Path resolves a path of the file against its directory.
func (f *CRLFile) Path(p string) string { return (&File{Dir: f.Dir}).Path(p) }

// Validate checks the file and says every problem it finds.
func (f *CRLFile) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if f.Kind != CRL {
		bad("kind %q: a CRL ceremony file has kind crl", f.Kind)
	}
	if !ValidID(f.CA) {
		bad("ca %q: want a lowercase id of letters, digits and '-' (at most 63)", f.CA)
	}
	if f.Issuer == nil || f.Issuer.Certificate == "" || f.Issuer.KeyURI == "" {
		bad("issuer.certificate and issuer.key_uri are required: the root's certificate and key")
	} else {
		if _, err := hsm.ParseURI(f.Issuer.KeyURI); err != nil {
			bad("issuer.key_uri: %w", err)
		}
		if f.Issuer.CertificateSHA256 != "" && !pinRE.MatchString(f.Issuer.CertificateSHA256) {
			bad("issuer.certificate_sha256 %q: want a SHA-256 fingerprint (64 hex digits, colons allowed)", f.Issuer.CertificateSHA256)
		}
	}
	if u, err := url.Parse(f.CRLURL); f.CRLURL == "" || err != nil || u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("crl_url %q: want the http:// URL of the CRL, as the certificates of %s name it in their CRL distribution points (RFC 5280 §4.2.1.13)", f.CRLURL, f.CA)
	} else if path.Base(u.Path) != f.CA+".crl" {
		bad("crl_url %q: want a URL ending in /%s.crl, the name a node serves the CRL of %s under", f.CRLURL, f.CA, f.CA)
	}
	if f.NextUpdateDays < 1 || f.NextUpdateDays > MaxCRLDays {
		bad("next_update_days %d: want 1 to %d (BR §4.9.7: at most twelve months for a CRL of CA certificates)", f.NextUpdateDays, MaxCRLDays)
	}
	seen := map[string]bool{}
	for i, r := range f.Revoke {
		switch {
		case r.Certificate == "":
			bad("revoke[%d]: certificate is required", i)
		case seen[r.Certificate]:
			bad("revoke[%d]: %s is listed twice", i, r.Certificate)
		}
		seen[r.Certificate] = true
		if !pinRE.MatchString(r.CertificateSHA256) {
			bad("revoke[%d]: certificate_sha256 %q: want the SHA-256 fingerprint of the certificate revoked (64 hex digits, colons allowed)", i, r.CertificateSHA256)
		}
		if !slices.Contains(CARevocationReasons, r.Reason) {
			bad("revoke[%d]: reason %q: want one of %v (RFC 5280 §5.3.1)", i, r.Reason, CARevocationReasons)
		}
	}
	return errors.Join(errs...)
}
