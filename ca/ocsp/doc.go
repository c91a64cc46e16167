// Package ocsp encodes and decodes OCSP requests and responses (RFC 6960) for
// SM2 and ECDSA (and RSA) responders. It is a pure codec: it does no I/O, keeps
// no state and reads no clock, so the responder service and every verifier in
// the platform can share it (ARCHITECTURE.md §1). golang.org/x/crypto/ocsp is
// not used because it is tied to crypto/x509 and knows neither SM2 nor SM3.
//
// # Requests
//
// [ParseRequest] reads an OCSPRequest (RFC 6960 §4.1.1) under the RFC 5019
// §2.1 profile, strictly in DER:
//   - exactly one Request in requestList (RFC 5019 §2.1.1). A list of more is
//     rejected with [ErrTooManyRequests]; the responder answers it, like every
//     error that wraps [ErrMalformedRequest], with malformedRequest (RFC 6960
//     §2.3), never with a partial answer;
//   - CertID hashed with SHA-1, SHA-256, SHA-384, SHA-512 or SM3
//     (1.2.156.10197.1.401); the hash lengths must fit the algorithm;
//   - the nonce extension (RFC 9654 §2.1, id-pkix-ocsp-nonce) must hold an
//     OCTET STRING of [MinNonceLen] to [MaxNonceLen] (1 to 32) octets.
//     RFC 9654 allows 1 to 128 octets, requires support for 16 to 32, and
//     requires rejecting 0 and more than 128 octets. govtrust echoes 1 to 32
//     octets and rejects everything else, 33 to 128 included, with
//     malformedRequest: the platform's issue fixes that range, and a nonce
//     longer than 32 octets adds no freshness, only a larger signed response
//     for an anonymous caller (ACCEPTANCE.md C-08 is read in that light);
//   - an unknown extension marked critical is an error (RFC 5280 §4.2, which
//     RFC 6960 §4.4 uses); a request signature (optionalSignature) is checked
//     for shape only and otherwise ignored, since govtrust never requires one.
//
// [CreateRequest] builds a request, and [Request.MatchesIssuer] recomputes
// the CertID hashes for a candidate issuer. issuerKeyHash, and the byKey
// ResponderID, hash the bits of the subjectPublicKey BIT STRING without its
// tag, length and unused-bits octet (RFC 6960 §4.2.1, and what OpenSSL,
// x/crypto/ocsp and Bouncy Castle compute for CertID too). [EncodeGETPath]
// and [DecodeGETPath] carry a request in an RFC 5019 §5 / RFC 6960 Appendix
// A.1 GET URL.
//
// # Responses
//
// [CreateResponse] signs a BasicOCSPResponse (RFC 6960 §4.2.1) with one
// SingleResponse, through a [crypto.Signer] so the key may live in an HSM:
// SM2 with SM3 (signature OID 1.2.156.10197.1.501, GM/T 0009 default user ID
// 1234567812345678) or ECDSA with SHA-256/384/512 by curve (or RSA PKCS #1
// v1.5 with SHA-256). The ResponderID is byKey (RFC 6960 §4.2.2.3), the
// compact form. A delegated responder certificate (RFC 6960 §4.2.2.2:
// issued by the CA, with id-kp-OCSPSigning, usually with
// id-pkix-ocsp-nocheck §4.2.2.2.1) is included in certs so clients need no
// other lookup. Times are
// GeneralizedTime in whole seconds, UTC. [CreateErrorResponse] encodes the
// unsigned error answers of RFC 6960 §4.2.1.
//
// [ParseResponse] decodes an OCSPResponse and verifies it against the issuer:
// signed by the issuer itself, or by an included certificate issued by the
// issuer with id-kp-OCSPSigning that was valid at producedAt; both SM2
// signature OIDs seen in the wild (1.2.156.10197.1.501 and
// 1.2.156.10197.1.301.1) are accepted. Responses whose status is not
// successful come back as a [*ResponseError]. ParseResponse reads no clock:
// a verifier then calls [Response.CheckTime] with the time the status must
// hold at (RFC 6960 §3.2 items 4 to 6: thisUpdate not in the future,
// nextUpdate not passed, optionally a maximum age, and the delegated
// responder's certificate valid at that time, within a clock skew that
// defaults to OpenSSL's five minutes).
//
// OpenSSL 3.0 verifies SM2 OCSP signatures with an empty user ID, so an SM2
// response made here (default ID, as GM/T 0009 requires and the platform
// promises) does not verify with `openssl ocsp`; check it with the detached
// check of ACCEPTANCE.md instead (the tests do).
package ocsp
