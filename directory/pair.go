package directory

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CertificatePair encodes the value of a crossCertificatePair attribute
// (RFC 4523 §2.3, X.509 §11.2.3):
//
//	CertificatePair ::= SEQUENCE {
//	    forward [0] Certificate OPTIONAL, -- issued to this CA
//	    reverse [1] Certificate OPTIONAL  -- issued by this CA
//	    -- at least one of the pair shall be present -- }
//
// in the explicitly tagged module of X.509. forward and reverse are DER
// certificates, nil when absent.
func CertificatePair(forward, reverse []byte) ([]byte, error) {
	if forward == nil && reverse == nil {
		return nil, errors.New("certificate pair: neither element present")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if forward != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(forward) })
		}
		if reverse != nil {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(reverse) })
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("certificate pair: %w", err)
	}
	return der, nil
}

// ParseCertificatePair returns the DER certificates of a crossCertificatePair
// value, nil for an element that is absent.
func ParseCertificatePair(der []byte) (forward, reverse []byte, err error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, errors.New("certificate pair: not one DER SEQUENCE")
	}
	var f, r cryptobyte.String
	var hasF, hasR bool
	if !seq.ReadOptionalASN1(&f, &hasF, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!seq.ReadOptionalASN1(&r, &hasR, cbasn1.Tag(1).Constructed().ContextSpecific()) || !seq.Empty() {
		return nil, nil, errors.New("certificate pair: bad elements")
	}
	if !hasF && !hasR {
		return nil, nil, errors.New("certificate pair: neither element present")
	}
	for _, e := range []struct {
		has bool
		s   cryptobyte.String
		out *[]byte
	}{{hasF, f, &forward}, {hasR, r, &reverse}} {
		if !e.has {
			continue
		}
		var cert cryptobyte.String
		s := e.s
		if !s.ReadASN1Element(&cert, cbasn1.SEQUENCE) || !s.Empty() {
			return nil, nil, errors.New("certificate pair: an element is not one certificate")
		}
		*e.out = []byte(cert)
	}
	return forward, reverse, nil
}
