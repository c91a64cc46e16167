package cms

import (
	"encoding/asn1"

	"github.com/govtrust/govtrust/tsa/tsp"
)

// Family is a set of content-type OIDs.
type Family int

// The two OID families.
const (
	// RFC5652 uses id-data 1.2.840.113549.1.7.1 and its siblings.
	RFC5652 Family = iota
	// GMT0010 uses 1.2.156.10197.6.1.4.2.x (GM/T 0010 §6, GB/T 35275).
	GMT0010
)

func (f Family) String() string {
	if f == GMT0010 {
		return "gmt0010"
	}
	return "rfc5652"
}

// Content-type OIDs of both families.
var (
	OIDData                   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDSignedData             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	OIDEnvelopedData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	OIDSignedAndEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 4}

	OIDDataGM                   = asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 1}
	OIDSignedDataGM             = asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 2}
	OIDEnvelopedDataGM          = asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 3}
	OIDSignedAndEnvelopedDataGM = asn1.ObjectIdentifier{1, 2, 156, 10197, 6, 1, 4, 2, 4}
)

// Attribute OIDs.
var (
	OIDAttrContentType      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	OIDAttrMessageDigest    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	OIDAttrSigningTime      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	OIDAttrCounterSignature = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 6}
	// OIDAttrSigningCertV2 is ESS signing-certificate-v2 (RFC 5035).
	OIDAttrSigningCertV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	// OIDAttrSignatureTimeStamp is id-aa-signatureTimeStampToken (RFC 3161
	// Appendix A): a time-stamp token over the signature value (CAdES-T).
	OIDAttrSignatureTimeStamp = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
	// OIDAttrArchiveTimeStampV2 is id-aa-ets-archiveTimestampV2 (ETSI TS
	// 101 733 v1.7.4 §6.4.1, CAdES-A).
	OIDAttrArchiveTimeStampV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 48}
)

// OIDRevInfoOCSP is id-ri-ocsp-response (RFC 5940 §2.2): an OCSP response
// carried in SignedData.crls as OtherRevocationInfoFormat.
var OIDRevInfoOCSP = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}

// Signature and key algorithm OIDs.
var (
	// OIDSM2Sign is sm2sign (SM2-1), written by GM/T 0010 signers.
	OIDSM2Sign = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 1}
	// OIDSM2WithSM3 is SM2-with-SM3, written by GmSSL and in certificates.
	OIDSM2WithSM3 = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	// OIDSM2Encrypt is SM2-3, the key-transport algorithm of SM2 recipients.
	OIDSM2Encrypt = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 3}

	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}

	// RFC 5753 §7.1.4: ECDH ephemeral-static with the X9.63 KDF over SHA-256/384.
	oidDHSinglePassSHA256 = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	oidDHSinglePassSHA384 = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}
	// RFC 3394 AES key wrap.
	oidAES128Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	oidAES256Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
)

// Digest algorithms are those of the time-stamp codec: SM3 and SHA-2.
var (
	SM3    = tsp.SM3
	SHA256 = tsp.SHA256
	SHA384 = tsp.SHA384
	SHA512 = tsp.SHA512
)

// Hash is a digest algorithm (shared with tsa/tsp).
type Hash = tsp.HashAlg

// HashByOID returns the digest algorithm with oid, or nil.
func HashByOID(oid asn1.ObjectIdentifier) *Hash { return tsp.HashByOID(oid) }

// HashByName returns the digest algorithm named name ("sm3", "sha256"...), or nil.
func HashByName(name string) *Hash { return tsp.HashByName(name) }

func familyOf(ct asn1.ObjectIdentifier) (Family, asn1.ObjectIdentifier, bool) {
	pairs := [][2]asn1.ObjectIdentifier{
		{OIDData, OIDDataGM}, {OIDSignedData, OIDSignedDataGM},
		{OIDEnvelopedData, OIDEnvelopedDataGM}, {OIDSignedAndEnvelopedData, OIDSignedAndEnvelopedDataGM},
	}
	for _, p := range pairs {
		if ct.Equal(p[0]) {
			return RFC5652, p[0], true
		}
		if ct.Equal(p[1]) {
			return GMT0010, p[0], true
		}
	}
	return RFC5652, nil, false
}

func (f Family) oid(rfc asn1.ObjectIdentifier) asn1.ObjectIdentifier {
	if f != GMT0010 {
		return rfc
	}
	switch {
	case rfc.Equal(OIDData):
		return OIDDataGM
	case rfc.Equal(OIDSignedData):
		return OIDSignedDataGM
	case rfc.Equal(OIDEnvelopedData):
		return OIDEnvelopedDataGM
	case rfc.Equal(OIDSignedAndEnvelopedData):
		return OIDSignedAndEnvelopedDataGM
	}
	return rfc
}

// IsData reports whether ct is id-data of either family.
func IsData(ct asn1.ObjectIdentifier) bool { return ct.Equal(OIDData) || ct.Equal(OIDDataGM) }
