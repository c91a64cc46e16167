// Package ca is the certificate authority service: it creates the platform's
// CA hierarchies on first start (sm2-root → sm2-issuing with SM2/SM3,
// ecdsa-root → ecdsa-issuing with ECDSA P-256/SHA-256), issues end-entity
// certificates from PKCS #10 requests under the built-in profiles
// (ca/profile), and serves the CA certificates.
//
// Issuance follows the Boulder discipline (STYLE.md): the to-be-signed
// certificate is built by the profile, linted with a throw-away key
// (lint.Precheck), signed by the CA key held in the key manager (resolved
// once at Start), and the real TBSCertificate is checked equal to the linted
// one before anything is stored. The certificate, its audit record and its
// outbox event commit in one transaction before the answer is sent
// (ARCHITECTURE.md §4: nothing is acknowledged before it is durable).
//
// Serial numbers are one 0x01 prefix byte followed by 16 bytes from
// crypto/rand: always positive, 17 content octets in DER (RFC 5280 §4.1.2.2
// allows at most 20), with 128 bits of entropy (CA/B Forum BR §7.1 asks for
// at least 64). A collision with a stored serial is retried with a fresh one.
//
// Revocation (POST /api/v1/ca/{ca}/revocations) is decided in the
// organisation of the account that requested the certificate (stored with
// it), and commits the status, its audit record and an outbox event in one
// transaction before the 200. A repeated revocation with the same reason
// answers the stored one; another reason is a conflict; certificateHold and
// CA certificates are refused.
//
// The OCSP responder (/ocsp/{ca}, POST and GET) reads the status from the
// database on each request and has the CA's own key sign the answer
// (RFC 6960 §2.6), so a revocation is visible at once. Full CRLs
// (/pki/{ca}.crl) are built with ca/crl from the revoked certificates, read
// in one repeatable-read transaction, numbered from a per-CA counter row
// moved in the transaction that stores the CRL, and made at start, after
// each revocation and when due (a ten-minute tick also retries failures).
package ca
