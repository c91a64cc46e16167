package tsp

import (
	"crypto"
	"encoding/asn1"
	"hash"

	"github.com/emmansun/gmsm/sm3"
)

// Object identifiers used by the protocol.
var (
	// OIDTSTInfo is id-ct-TSTInfo (RFC 3161 §2.4.2).
	OIDTSTInfo = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	// OIDSignedData is id-signedData (RFC 5652 §5.1).
	OIDSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	// OIDSignedDataGM is the GM/T 0010 signedData OID, accepted on parse
	// (GM-STANDARDS.md §4).
	OIDSignedDataGM = asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 2}

	// OIDTimeStamping is id-kp-timeStamping (RFC 3161 §2.3).
	OIDTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}

	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidAttrSigningCert   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidAttrSigningCertV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidSHA1              = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSM2Sign           = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 1}
	oidSM2WithSM3        = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	oidECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidRSAEncryption     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// HashAlg is a message-imprint and signer digest algorithm the TSA
// accepts: SM3 (GB/T 32905) and SHA-256/384/512. SHA-1 and MD5 are refused
// with badAlg.
type HashAlg struct {
	Name string
	OID  asn1.ObjectIdentifier
	Size int
	// Hash is the crypto.Hash for SHA-2; 0 for SM3, which has none.
	Hash crypto.Hash
}

// New returns a fresh hash.
func (h *HashAlg) New() hash.Hash {
	if h.Hash == 0 {
		return sm3.New()
	}
	return h.Hash.New()
}

// Sum hashes data.
func (h *HashAlg) Sum(data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

// The accepted algorithms.
var (
	SM3    = &HashAlg{Name: "sm3", OID: asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}, Size: 32}
	SHA256 = &HashAlg{Name: "sha256", OID: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, Size: 32, Hash: crypto.SHA256}
	SHA384 = &HashAlg{Name: "sha384", OID: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, Size: 48, Hash: crypto.SHA384}
	SHA512 = &HashAlg{Name: "sha512", OID: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, Size: 64, Hash: crypto.SHA512}
)

// HashAlgs lists the accepted algorithms.
var HashAlgs = []*HashAlg{SM3, SHA256, SHA384, SHA512}

// HashByOID returns the accepted algorithm with oid, or nil.
func HashByOID(oid asn1.ObjectIdentifier) *HashAlg {
	for _, h := range HashAlgs {
		if h.OID.Equal(oid) {
			return h
		}
	}
	return nil
}

// HashByName returns the accepted algorithm named name ("sm3", "sha256"...),
// or nil.
func HashByName(name string) *HashAlg {
	for _, h := range HashAlgs {
		if h.Name == name {
			return h
		}
	}
	return nil
}
