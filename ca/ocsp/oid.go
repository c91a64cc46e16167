package ocsp

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"fmt"
	"hash"

	"github.com/emmansun/gmsm/sm3"
)

// Object identifiers of RFC 6960 §4.4 and Appendix B, RFC 9654, RFC 5280 and
// GM/T 0006.
var (
	// OIDOCSPBasic is id-pkix-ocsp-basic, the only response type (RFC 6960 §4.2.1).
	OIDOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	// OIDNonce is id-pkix-ocsp-nonce (RFC 6960 §4.4.1, RFC 9654 §2.1).
	OIDNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	// OIDNoCheck is id-pkix-ocsp-nocheck, the extension (value NULL) of a
	// delegated responder certificate telling clients not to check its own
	// revocation (RFC 6960 §4.2.2.2.1).
	OIDNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	// OIDExtendedRevoke is id-pkix-ocsp-extended-revoke: the responder may
	// answer "revoked" for serials it never issued (RFC 6960 §2.2, §4.4.8).
	OIDExtendedRevoke = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 9}
	// OIDOCSPSigning is id-kp-OCSPSigning, the extended key usage a delegated
	// responder certificate must carry (RFC 6960 §4.2.2.2).
	OIDOCSPSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}

	// OIDSM2WithSM3 is the SM2-with-SM3 signature algorithm (GM/T 0006), the
	// one CreateResponse writes.
	OIDSM2WithSM3 = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	// OIDSM2Sign is the bare SM2-1 signature scheme OID, which some producers
	// write as a signature algorithm; ParseResponse accepts it as SM2 with SM3.
	OIDSM2Sign = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 1}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSM3    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}

	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
)

// HashAlg is a CertID hash algorithm (RFC 6960 §4.1.1). The zero value means
// "not set"; CreateRequest and CreateResponse then use SHA1, which is what
// most clients still send.
type HashAlg int

// CertID hash algorithms. SM3 is what GM clients send.
const (
	SHA1 HashAlg = iota + 1
	SHA256
	SHA384
	SHA512
	SM3
)

var hashAlgs = []struct {
	alg  HashAlg
	name string
	oid  asn1.ObjectIdentifier
	size int
	new  func() hash.Hash
}{
	{SHA1, "SHA-1", oidSHA1, sha1.Size, sha1.New},
	{SHA256, "SHA-256", oidSHA256, sha256.Size, sha256.New},
	{SHA384, "SHA-384", oidSHA384, sha512.Size384, sha512.New384},
	{SHA512, "SHA-512", oidSHA512, sha512.Size, sha512.New},
	{SM3, "SM3", oidSM3, sm3.Size, sm3.New},
}

// OID returns the algorithm's object identifier, or nil for an unknown value.
func (h HashAlg) OID() asn1.ObjectIdentifier {
	for _, a := range hashAlgs {
		if a.alg == h {
			return append(asn1.ObjectIdentifier(nil), a.oid...)
		}
	}
	return nil
}

// Size returns the digest length in octets, or 0 for an unknown value.
func (h HashAlg) Size() int {
	for _, a := range hashAlgs {
		if a.alg == h {
			return a.size
		}
	}
	return 0
}

// Crypto returns the matching crypto.Hash; SM3 has none and returns 0.
func (h HashAlg) Crypto() crypto.Hash {
	switch h {
	case SHA1:
		return crypto.SHA1
	case SHA256:
		return crypto.SHA256
	case SHA384:
		return crypto.SHA384
	case SHA512:
		return crypto.SHA512
	}
	return 0
}

func (h HashAlg) String() string {
	for _, a := range hashAlgs {
		if a.alg == h {
			return a.name
		}
	}
	return fmt.Sprintf("HashAlg(%d)", int(h))
}

// Valid reports whether h is one of the defined algorithms.
func (h HashAlg) Valid() bool { return h.Size() != 0 }

// sum hashes b with h, which must be valid.
func (h HashAlg) sum(b []byte) []byte {
	for _, a := range hashAlgs {
		if a.alg == h {
			d := a.new()
			d.Write(b)
			return d.Sum(nil)
		}
	}
	panic("ocsp: sum with invalid HashAlg") // unreachable: callers check Valid
}

// HashAlgFromOID maps a CertID hashAlgorithm OID to a HashAlg, or returns 0.
func HashAlgFromOID(oid asn1.ObjectIdentifier) HashAlg {
	for _, a := range hashAlgs {
		if a.oid.Equal(oid) {
			return a.alg
		}
	}
	return 0
}

// orDefault returns h, or SHA1 when h is not set.
func (h HashAlg) orDefault() HashAlg {
	if h == 0 {
		return SHA1
	}
	return h
}
