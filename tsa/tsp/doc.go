// Package tsp is the RFC 3161 time-stamp protocol codec: TimeStampReq,
// TimeStampResp, TSTInfo, PKIStatusInfo and PKIFailureInfo, the making of
// time-stamp tokens (CMS SignedData over a TSTInfo, signed with SM2/SM3,
// ECDSA or RSA) and their verification.
//
// Tokens are the construction INTEROP.md tested on github.com/emmansun/gmsm's
// pkcs7, encoded directly with cryptobyte from parts precomputed per TSA
// certificate (a test checks the output octet for octet against gmsm's
// pkcs7, which cost twice the CPU): eContentType id-ct-TSTInfo, SignedData version 3 (RFC 5652 §5.1:
// an eContentType other than id-data), message imprints and signer digests
// in SM3 or SHA-2, and the ESS signingCertificateV2 attribute (RFC 5816)
// naming the TSA certificate. SM2 signatures are made with Z computed from
// the default user ID (GM/T 0009 §8), as GM/T 0033 expects; OpenSSL 3.0
// cannot verify those (INTEROP.md), the platform's own verifier here can.
//
// Parsing is strict DER (golang.org/x/crypto/cryptobyte): non-minimal
// lengths and integers, indefinite lengths, trailing data and DEFAULT values
// encoded explicitly are refused. A request that fails to parse comes back
// as a *RequestError carrying the PKIFailureInfo bit the TSA must answer
// with (RFC 3161 §2.4.2), so the service maps errors to the protocol in one
// place.
//
// The package does no I/O: the caller supplies the time, the serial number
// and the signer (ARCHITECTURE.md §1).
package tsp
