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
	"io"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
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
//
// The TBSCertificate is smx509.CreateCertificate's own, taken from it as
// it asks the signer to sign (tbsCapture), so it is encoded exactly as a
// CA that signs the template with CreateCertificate gets it; the throw-away
// signature is then made here, without CreateCertificate's verification of
// it. That verification guards a published certificate against a faulty
// signer; the lint certificate is never published and no lint reads its
// signature, and it cost more than the signature itself (an SM2
// verification is about twice an SM2 signature).
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
	capture := &tbsCapture{Signer: key}
	if _, err := smx509.CreateCertificate(rand.Reader, template, &standIn, pub, capture); !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("the signer was not asked to sign")
		}
		return nil, fmt.Errorf("precheck: encode the certificate: %w", err)
	}
	der, err := capture.certificate()
	if err != nil {
		return nil, fmt.Errorf("precheck: sign with throw-away key: %w", err)
	}
	raw, err := parseRaw(der)
	if err != nil {
		return nil, fmt.Errorf("precheck: %w", err)
	}
	return &Linted{DER: der, TBS: raw.tbs, Findings: Check(der, issuer, exp)}, nil
}

// errTBSCaptured ends smx509.CreateCertificate once tbsCapture holds the
// TBSCertificate.
var errTBSCaptured = errors.New("lint: TBSCertificate captured")

// tbsCapture is the signer Precheck hands smx509.CreateCertificate: it
// keeps the message it is asked to sign (the DER TBSCertificate:
// crypto.SignMessage passes it whole to a crypto.MessageSigner) and the
// signer options CreateCertificate chose for the signature algorithm, and
// declines with errTBSCaptured. Public is the throw-away key's, which the
// stand-in issuer carries, so CreateCertificate's key match check passes.
type tbsCapture struct {
	crypto.Signer
	tbs  []byte
	opts crypto.SignerOpts
}

// SignMessage implements crypto.MessageSigner.
func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.tbs, c.opts = bytes.Clone(msg), opts
	return nil, errTBSCaptured
}

// Sign is what a caller that hashes first would reach; CreateCertificate
// does not (it signs through crypto.SignMessage), and a digest is not a
// TBSCertificate, so it refuses rather than capture the wrong thing.
func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("lint: the certificate encoder signed a digest, not the TBSCertificate")
}

// certificate signs the captured TBSCertificate with the throw-away key as
// CreateCertificate would have (crypto.SignMessage with its options) and
// returns Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
// signatureValue } (RFC 5280 §4.1), signatureAlgorithm being the TBS's own
// signature field (§4.1.1.2: the two must be equal).
func (c *tbsCapture) certificate() ([]byte, error) {
	if c.tbs == nil {
		return nil, errors.New("no TBSCertificate captured")
	}
	alg, err := tbsSignatureAlgorithm(c.tbs)
	if err != nil {
		return nil, err
	}
	sig, err := crypto.SignMessage(c.Signer, rand.Reader, c.tbs, c.opts)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(c.tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// tbsSignatureAlgorithm returns the signature AlgorithmIdentifier (full
// TLV) of a DER TBSCertificate: after the optional [0] version and the
// serialNumber.
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("tbsCertificate: %w", errMalformed)
	}
	var alg cryptobyte.String
	if !body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.SkipASN1(cbasn1.INTEGER) ||
		!body.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("tbsCertificate signature: %w", errMalformed)
	}
	return alg, nil
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
