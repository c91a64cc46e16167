package lint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Linted is a to-be-signed certificate after linting: the DER signed with a
// throw-away key, its TBSCertificate, and the findings.
type Linted struct {
	DER      []byte
	TBS      []byte
	Findings []Finding
}

// Precheck is the Boulder pre-issuance lint (RELIABILITY.md §1.1, BR
// §4.3.1.2): it signs template for pub with a throw-away key of the same
// type as issuer's key, under a stand-in issuer that has the real issuer's
// subject and subjectKeyIdentifier, and lints the result. The TBS is what the
// real signature will cover if the CA signs the same template with the same
// issuer; check that with SameTBS afterwards. template.SerialNumber must be
// set, or the two signings would draw different random serials.
func Precheck(template, issuer *smx509.Certificate, pub crypto.PublicKey, exp Expect) (*Linted, error) {
	if template.SerialNumber == nil {
		return nil, errors.New("precheck: template has no serial number")
	}
	key, err := throwawayKey(issuer.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("precheck: %w", err)
	}
	standIn := *issuer
	standIn.PublicKey = key.Public()
	der, err := smx509.CreateCertificate(rand.Reader, template, &standIn, pub, key)
	if err != nil {
		return nil, fmt.Errorf("precheck: sign with throw-away key: %w", err)
	}
	raw, err := parseRaw(der)
	if err != nil {
		return nil, fmt.Errorf("precheck: %w", err)
	}
	return &Linted{DER: der, TBS: raw.tbs, Findings: Check(der, issuer, exp)}, nil
}

// SameTBS checks that the really signed certificate covers the linted
// TBSCertificate octet for octet; a difference is mis-issuance
// (Boulder's tbsCertIsDeterministic).
func (l *Linted) SameTBS(final []byte) error {
	raw, err := parseRaw(final)
	if err != nil {
		return fmt.Errorf("signed certificate: %w", err)
	}
	if !bytes.Equal(raw.tbs, l.TBS) {
		return errors.New("signed TBSCertificate differs from the linted one")
	}
	return nil
}

var (
	throwawayMu   sync.Mutex
	throwawayKeys = map[string]crypto.Signer{}
)

// throwawayKey returns a process-wide key of the same type and size as pub.
// It signs only lint certificates, which are never published, so reusing it
// costs nothing and spares an RSA key generation per issuance.
func throwawayKey(pub crypto.PublicKey) (crypto.Signer, error) {
	var name string
	var gen func() (crypto.Signer, error)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case sm2.P256():
			name, gen = "sm2", func() (crypto.Signer, error) { return sm2.GenerateKey(rand.Reader) }
		case elliptic.P256(), elliptic.P384():
			c := k.Curve
			name, gen = c.Params().Name, func() (crypto.Signer, error) { return ecdsa.GenerateKey(c, rand.Reader) }
		default:
			return nil, fmt.Errorf("issuer key on curve %s is not supported", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		name, gen = fmt.Sprintf("rsa%d", bits), func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, bits) }
	default:
		return nil, fmt.Errorf("issuer key type %T is not supported", pub)
	}
	throwawayMu.Lock()
	defer throwawayMu.Unlock()
	if s, ok := throwawayKeys[name]; ok {
		return s, nil
	}
	s, err := gen()
	if err != nil {
		return nil, fmt.Errorf("generate throw-away %s key: %w", name, err)
	}
	throwawayKeys[name] = s
	return s, nil
}
