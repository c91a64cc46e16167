// Package signature is the platform's signing and verification API for
// applications, so that no application writes its own cryptography.
//
// Keys. A security administrator creates a signing key for a department
// application account (POST /api/v1/signature/keys): the key is made in
// the key manager under the key service "signature" with usage sign only
// (hsm key separation: it cannot decrypt, and no other service can use
// it), its certificate is issued by the platform CA (sm2-issuing or
// ecdsa-issuing), and the account becomes its owner. Only the owner signs
// with it: the policy platform.application.own permits signature.sign on
// resources the caller owns, and the service checks the owner again.
//
// Signing (POST /api/v1/signature/sign): raw SM2/ECDSA/RSA signatures over
// data or a digest, or CMS SignedData (package cms) attached or detached,
// in the RFC 5652 or the GM/T 0010 OID family, with an optional RFC 3161
// signature time-stamp from the platform TSA (CAdES-T: the
// signature-time-stamp unsigned attribute) and hash-only mode for large
// documents (the client sends the SM3/SHA-256 digest). With ltv the
// message also embeds the chains, OCSP responses (or CRLs) and an archive
// time-stamp, so that it verifies offline years later. Every signature is
// audited before it is returned.
//
// Verification (POST /api/v1/signature/verify, and Verifier offline):
// raw and CMS signatures (attached, detached, hash-only) and their
// time-stamps; the chain is built to the platform's trust anchors; the
// revocation status of every certificate below the anchor is taken from
// embedded evidence or asked of the OCSP responder (else the CRL) the
// certificate names; it is judged at the signing time a signature
// time-stamp proves, or at the verification time when there is none, so a
// certificate revoked after a time-stamped signature still verifies. The
// answer is a structured report (signer, chain, algorithm, signing time and
// its evidence, revocation evidence, every check with pass/fail and its
// reason) with a human-readable summary.
package signature
