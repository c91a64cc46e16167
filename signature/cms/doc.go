// Package cms is govtrust's Cryptographic Message Syntax codec: SignedData
// (attached or detached, signed and unsigned attributes, several signers,
// counter-signatures, signature time-stamps, embedded revocation data for
// long-term validation), EnvelopedData to SM2, RSA (key transport) and
// ECDH (key agreement) recipients, and the GM/T 0010 SignedAndEnvelopedData.
//
// Two OID families. RFC 5652 names content types under 1.2.840.113549.1.7;
// GM/T 0010 (GB/T 35275) under 1.2.156.10197.6.1.4.2 and keeps the PKCS#7
// v1.5 shape (SignedData and SignerInfo version 1, issuerAndSerialNumber
// signer identifiers). Both are produced (Options.Family) and both are
// accepted on parse; so are both SM2 signature algorithm OIDs seen in the
// wild, sm2sign 1.2.156.10197.1.301.1 (GM/T 0010, gmsm, tjfoc) and
// SM2-with-SM3 1.2.156.10197.1.501 (GmSSL), GM-STANDARDS.md §3.3.
//
// Why not gmsm's pkcs7 alone. github.com/emmansun/gmsm/pkcs7 (a fork of
// mozilla's pkcs7) accepts only 301.1 for SM2, parses leniently through a
// BER-to-DER rewriter that has panicked on short inputs in its ancestors,
// has no key-agreement (ECDH) recipients, no counter-signatures and no way
// to add unsigned attributes to a parsed message. This package therefore
// parses and encodes SignedData and EnvelopedData itself, strictly, with
// golang.org/x/crypto/cryptobyte, and builds on gmsm for everything else:
// SM2, SM3 and SM4, the content ciphers of gmsm/pkcs, certificates
// (smx509), and pkcs7's GM/T 0010 SignedAndEnvelopedData (sealed.go). The
// tests cross-check every message made here with gmsm's pkcs7, OpenSSL and
// tjfoc/gmsm.
//
// Strict parsing. Input is DER: definite minimal lengths, no trailing data,
// each signed attribute type once with one value (RFC 5652 §5.3), sizes and
// counts bounded by Limits (ACCEPTANCE.md N-05: a 1,000-certificate bag is
// refused, not processed).
//
// SM2 signatures are computed and verified with Z from the signer's user ID
// (GM/T 0009 §8; default 1234567812345678). The signature covers the DER
// SET OF the signed attributes (RFC 5652 §5.4), or the content itself when
// a GM/T 0010 signer has no attributes.
//
// The package does no I/O (ARCHITECTURE.md §1): the caller supplies keys
// (any crypto.Signer or crypto.Decrypter, so HSM keys work), time and the
// time-stamp tokens.
package cms
