package pdf

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/signature/cms"
)

// OIDAttrSeal is the signed attribute that carries the DER SESeal
// (GB/T 38540 §7.2) being applied, so that the seal is bound to the
// document by the signer's own signature and a verifier (and the signing
// agent, before it signs) knows which seal it is. No standard attribute
// exists for this; it sits under 1.3.6.1.4.1.32473, the enterprise number
// IANA reserves for documentation (RFC 5612), and must move under
// govtrust's own enterprise number once one is registered.
var OIDAttrSeal = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 10, 1}

// pending is the signer's public key standing in for its key while the
// USB key signs elsewhere; the placeholder signature is replaced by
// Attach.
type pending struct{ pub crypto.PublicKey }

func (k pending) Public() crypto.PublicKey { return k.pub }
func (k pending) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return []byte{0}, nil
}

// NewSignedData builds the detached SignedData for p, signed by cert's
// key: the digest is SM3 for SM2 keys, SHA-256 for P-256 (cms.
// DefaultDigest). It returns the message and the DER SET OF signed
// attributes that the key must sign (RFC 5652 §5.4): SM2 with the default
// user ID, or ECDSA over its SHA-256, which is what ses.SignMessage and
// the signing agent do. seal, when not nil, is the DER SESeal applied.
func NewSignedData(p *Prepared, cert *smx509.Certificate, chain []*smx509.Certificate, seal []byte, at time.Time) (*cms.SignedData, []byte, error) {
	h := cms.DefaultDigest(cert.PublicKey)
	s := &cms.Signer{Certificate: cert, Chain: chain, Key: pending{cert.PublicKey}, SigningTime: at}
	if seal != nil {
		v, err := asn1.Marshal(asn1.RawValue{FullBytes: seal})
		if err != nil {
			return nil, nil, err
		}
		s.ExtraSigned = []cms.Attribute{{Type: OIDAttrSeal, Values: [][]byte{v}}}
	}
	sd, err := cms.NewFromDigest(h, p.Digest(h.New()), []*cms.Signer{s}, &cms.Options{Detached: true})
	if err != nil {
		return nil, nil, fmt.Errorf("pdf: signed data: %w", err)
	}
	tbs := bytes.Clone(sd.Signers[0].RawSignedAttrs)
	tbs[0] = 0x31 // [0] IMPLICIT → SET OF, what the signature covers
	return sd, tbs, nil
}

// Attach puts the signer's signature into sd and checks it against the
// prepared document.
func Attach(sd *cms.SignedData, p *Prepared, sig []byte) error {
	si := sd.Signers[0]
	si.Signature = sig
	if _, err := sd.Verify(0, cms.VerifyOptions{Digest: p.Digest(si.Digest.New())}); err != nil {
		si.Signature = nil
		return err
	}
	return nil
}

// ToBeSigned is what the signing agent reads from the signed attributes
// before it signs.
type ToBeSigned struct {
	Seal        []byte // the DER SESeal, nil when absent
	Digest      []byte // messageDigest: of the ByteRange bytes
	SigningTime time.Time
}

// ParseToBeSigned reads the DER SET OF signed attributes of a PDF
// signature.
func ParseToBeSigned(der []byte) (*ToBeSigned, error) {
	in := cryptobyte.String(der)
	var set cryptobyte.String
	if !in.ReadASN1(&set, cbasn1.SET) || !in.Empty() {
		return nil, errors.New("pdf: signed attributes: not a DER SET")
	}
	out := &ToBeSigned{}
	for n := 0; !set.Empty(); n++ {
		var attr, vals cryptobyte.String
		var oid asn1.ObjectIdentifier
		if n > 32 || !set.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&oid) ||
			!attr.ReadASN1(&vals, cbasn1.SET) || !attr.Empty() {
			return nil, errors.New("pdf: signed attributes: malformed attribute")
		}
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !vals.ReadAnyASN1Element(&v, &tag) || !vals.Empty() {
			return nil, fmt.Errorf("pdf: signed attribute %s: one value expected", oid)
		}
		switch {
		case oid.Equal(OIDAttrSeal):
			out.Seal = []byte(v)
		case oid.Equal(cms.OIDAttrMessageDigest):
			if _, err := asn1.Unmarshal(v, &out.Digest); err != nil {
				return nil, fmt.Errorf("pdf: messageDigest: %w", err)
			}
		case oid.Equal(cms.OIDAttrSigningTime):
			if _, err := asn1.Unmarshal(v, &out.SigningTime); err != nil {
				return nil, fmt.Errorf("pdf: signingTime: %w", err)
			}
		}
	}
	if out.Digest == nil {
		return nil, errors.New("pdf: signed attributes without messageDigest")
	}
	return out, nil
}
