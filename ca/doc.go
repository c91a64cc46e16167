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
// Revocation, CRLs and OCSP build on this package in later work.
package ca
