package ocsp

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Context-specific tags used by RFC 6960 (its ASN.1 module has EXPLICIT TAGS,
// so [n] wraps the tagged value, except CertStatus which is IMPLICIT).
var (
	tagCtx0c = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagCtx1c = cbasn1.Tag(1).ContextSpecific().Constructed()
	tagCtx2c = cbasn1.Tag(2).ContextSpecific().Constructed()
	tagCtx0  = cbasn1.Tag(0).ContextSpecific()
	tagCtx2  = cbasn1.Tag(2).ContextSpecific()
)

// Limits that bound what an anonymous peer can make the parser do.
const (
	maxSerialLen  = 64 // octets; RFC 5280 §4.1.2.2 says 20, but asks users to cope with longer
	maxExtensions = 32 // per Extensions list
	maxCerts      = 8  // certificates in a BasicOCSPResponse
)

// nullDER is the DER of an ASN.1 NULL (value of ocsp-nocheck and
// extended-revoke, and the parameters of hash AlgorithmIdentifiers).
var nullDER = []byte{0x05, 0x00}

var (
	errTrailing = errors.New("trailing data")
	errNotDER   = errors.New("not DER")
)

// readAlgorithmIdentifier reads an AlgorithmIdentifier (RFC 5280 §4.1.1.2)
// and returns its OID and its parameters as a full element (nil if absent).
func readAlgorithmIdentifier(s *cryptobyte.String) (asn1.ObjectIdentifier, []byte, error) {
	var ai cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&ai, cbasn1.SEQUENCE) || !ai.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, errors.New("bad AlgorithmIdentifier")
	}
	if ai.Empty() {
		return oid, nil, nil
	}
	var params cryptobyte.String
	var tag cbasn1.Tag
	if !ai.ReadAnyASN1Element(&params, &tag) || !ai.Empty() {
		return nil, nil, errors.New("bad AlgorithmIdentifier parameters")
	}
	return oid, params, nil
}

// nullOrAbsent reports whether AlgorithmIdentifier parameters are absent or
// NULL, the two encodings in use for hash and signature algorithms.
func nullOrAbsent(params []byte) bool {
	return len(params) == 0 || bytes.Equal(params, nullDER)
}

// parseExtensions reads Extensions (RFC 5280 §4.1) from the contents of an
// EXPLICIT [n] wrapper: SIZE (1..MAX), no OID twice, critical either absent
// or TRUE (DER omits a DEFAULT value, X.690 §11.5). Values alias s.
func parseExtensions(s cryptobyte.String) ([]pkix.Extension, error) {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("bad Extensions")
	}
	if seq.Empty() {
		return nil, errors.New("empty Extensions")
	}
	var exts []pkix.Extension
	for !seq.Empty() {
		if len(exts) == maxExtensions {
			return nil, fmt.Errorf("more than %d extensions", maxExtensions)
		}
		var e, v cryptobyte.String
		var ext pkix.Extension
		if !seq.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1ObjectIdentifier(&ext.Id) {
			return nil, errors.New("bad Extension")
		}
		if e.PeekASN1Tag(cbasn1.BOOLEAN) {
			if !e.ReadASN1Boolean(&ext.Critical) {
				return nil, fmt.Errorf("extension %v: bad critical flag", ext.Id)
			}
			if !ext.Critical {
				return nil, fmt.Errorf("extension %v: critical FALSE encoded: %w", ext.Id, errNotDER)
			}
		}
		if !e.ReadASN1(&v, cbasn1.OCTET_STRING) || !e.Empty() {
			return nil, fmt.Errorf("extension %v: bad extnValue", ext.Id)
		}
		for _, o := range exts {
			if o.Id.Equal(ext.Id) {
				return nil, fmt.Errorf("extension %v appears twice (RFC 5280 §4.2)", ext.Id)
			}
		}
		ext.Value = v
		exts = append(exts, ext)
	}
	return exts, nil
}

// checkCritical returns ErrUnhandledCriticalExtension for the first critical
// extension whose OID is not in known (RFC 5280 §4.2).
func checkCritical(exts []pkix.Extension, known ...asn1.ObjectIdentifier) error {
	for _, e := range exts {
		if !e.Critical {
			continue
		}
		handled := false
		for _, k := range known {
			if e.Id.Equal(k) {
				handled = true
			}
		}
		if !handled {
			return fmt.Errorf("%w: %v", ErrUnhandledCriticalExtension, e.Id)
		}
	}
	return nil
}

// addExtensions writes Extensions (the caller adds the EXPLICIT wrapper).
func addExtensions(b *cryptobyte.Builder, exts []pkix.Extension) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range exts {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(e.Id)
				if e.Critical {
					b.AddASN1Boolean(true)
				}
				b.AddASN1OctetString(e.Value)
			})
		}
	})
}

// nonceExtension returns the nonce extension: extnValue holds the DER of
// Nonce ::= OCTET STRING (RFC 9654 §2.1), never the bare octets.
func nonceExtension(nonce []byte) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1OctetString(nonce)
	return pkix.Extension{Id: OIDNonce, Value: b.BytesOrPanic()}
}

// parseNonce reads the nonce out of an extension value.
func parseNonce(v []byte) ([]byte, error) {
	s := cryptobyte.String(v)
	var n cryptobyte.String
	if !s.ReadASN1(&n, cbasn1.OCTET_STRING) || !s.Empty() {
		return nil, errors.New("nonce extnValue is not a DER OCTET STRING (RFC 9654 §2.1)")
	}
	return []byte(n), nil
}

// findExtension returns the extension with the OID, or nil.
func findExtension(exts []pkix.Extension, oid asn1.ObjectIdentifier) *pkix.Extension {
	for i := range exts {
		if exts[i].Id.Equal(oid) {
			return &exts[i]
		}
	}
	return nil
}

// readGeneralizedTime reads a DER GeneralizedTime: YYYYMMDDHHMMSS, an
// optional fraction without trailing zeros, and Z (X.690 §11.7). cryptobyte's
// reader would take a +hhmm offset and refuse fractions; DER is the other way.
func readGeneralizedTime(s *cryptobyte.String) (time.Time, bool) {
	var v cryptobyte.String
	if !s.ReadASN1(&v, cbasn1.GeneralizedTime) {
		return time.Time{}, false
	}
	str := string(v)
	if len(str) < 15 || str[len(str)-1] != 'Z' {
		return time.Time{}, false
	}
	main, frac := str[:14], str[14:len(str)-1]
	for i := 0; i < len(main); i++ {
		if main[i] < '0' || main[i] > '9' {
			return time.Time{}, false
		}
	}
	t, err := time.Parse("20060102150405", main)
	if err != nil {
		return time.Time{}, false
	}
	if frac == "" {
		return t, true
	}
	if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' || frac[len(frac)-1] == '0' {
		return time.Time{}, false
	}
	ns := 0
	for i := 1; i < 10; i++ {
		ns *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			ns += int(c - '0')
		}
	}
	return t.Add(time.Duration(ns)), true
}

// addGeneralizedTime writes t as GeneralizedTime in whole seconds, UTC.
func addGeneralizedTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() < 0 || t.Year() > 9999 {
		b.SetError(fmt.Errorf("time %v cannot be a GeneralizedTime", t))
		return
	}
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) {
		b.AddBytes([]byte(t.Format("20060102150405Z")))
	})
}

// spkiKeyBits returns the subjectPublicKey bits of a DER
// SubjectPublicKeyInfo, without the BIT STRING's tag, length and unused-bits
// octet: the input of issuerKeyHash (RFC 6960 §4.1.1) and of the byKey
// ResponderID (§4.2.1).
func spkiKeyBits(spki []byte) ([]byte, error) {
	s := cryptobyte.String(spki)
	var seq, alg cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1(&alg, cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&bits) || !seq.Empty() {
		return nil, errors.New("bad SubjectPublicKeyInfo")
	}
	if bits.BitLength%8 != 0 {
		return nil, errors.New("subjectPublicKey is not a whole number of octets")
	}
	return bits.Bytes, nil
}

// certID is a CertID (RFC 6960 §4.1.1).
type certID struct {
	hash     HashAlg
	nameHash []byte
	keyHash  []byte
	serial   *big.Int
}

// readCertID reads a CertID. The hash parameters must be absent or NULL.
func readCertID(s *cryptobyte.String) (certID, error) {
	var c cryptobyte.String
	if !s.ReadASN1(&c, cbasn1.SEQUENCE) {
		return certID{}, errors.New("bad CertID")
	}
	oid, params, err := readAlgorithmIdentifier(&c)
	if err != nil {
		return certID{}, fmt.Errorf("CertID hashAlgorithm: %w", err)
	}
	id := certID{hash: HashAlgFromOID(oid), serial: new(big.Int)}
	if id.hash == 0 {
		return certID{}, fmt.Errorf("%w: %v", ErrUnsupportedHash, oid)
	}
	if !nullOrAbsent(params) {
		return certID{}, fmt.Errorf("CertID hashAlgorithm %v: parameters must be absent or NULL", oid)
	}
	var nh, kh, serial cryptobyte.String
	if !c.ReadASN1(&nh, cbasn1.OCTET_STRING) || !c.ReadASN1(&kh, cbasn1.OCTET_STRING) {
		return certID{}, errors.New("bad CertID hashes")
	}
	if len(nh) != id.hash.Size() || len(kh) != id.hash.Size() {
		return certID{}, fmt.Errorf("CertID hash lengths %d and %d, %v needs %d", len(nh), len(kh), id.hash, id.hash.Size())
	}
	// Read the INTEGER element first to bound its length before big.Int.
	if !c.ReadASN1Element(&serial, cbasn1.INTEGER) || !c.Empty() {
		return certID{}, errors.New("bad CertID serialNumber")
	}
	if len(serial) > maxSerialLen+2 || !serial.ReadASN1Integer(id.serial) {
		return certID{}, errors.New("bad CertID serialNumber")
	}
	id.nameHash, id.keyHash = nh, kh
	return id, nil
}

// addCertID writes a CertID with NULL hash parameters, as OpenSSL does.
func addCertID(b *cryptobyte.Builder, id certID) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(id.hash.OID())
			b.AddASN1NULL()
		})
		b.AddASN1OctetString(id.nameHash)
		b.AddASN1OctetString(id.keyHash)
		b.AddASN1BigInt(id.serial)
	})
}

// issuerHashes computes the CertID issuerNameHash and issuerKeyHash of
// issuer: the hash of the DER of its subject Name and of its public key bits
// (RFC 6960 §4.1.1).
func issuerHashes(h HashAlg, rawSubject, rawSPKI []byte) (nameHash, keyHash []byte, err error) {
	bits, err := spkiKeyBits(rawSPKI)
	if err != nil {
		return nil, nil, err
	}
	return h.sum(rawSubject), h.sum(bits), nil
}
