// Package crl builds, signs and checks X.509 v2 certificate revocation lists
// (RFC 5280 §5) for the certificate authority: full CRLs, delta CRLs
// (deltaCRLIndicator, RFC 5280 §5.2.4), partitioned CRLs and authority
// revocation lists (issuingDistributionPoint, RFC 5280 §5.2.5), signed with
// SM2-with-SM3, ECDSA or RSA through any crypto.Signer (an hsm key).
//
// The package is pure: it reads entries from an iterator and writes DER to an
// io.Writer. It has no database, network or configuration; the CA supplies a
// cursor over its revocation table and a place to put the bytes.
//
// # Streaming design and memory bound
//
// A CRL of 1,000,000 entries is about 50 MB of DER. Build never holds the
// list: its memory is O(1) in the number of entries (a 32 KiB write buffer,
// one entry's scratch space and the previous serial), so a CRL of any size is
// built within a fixed heap bound: about 50 KB and 150 allocations per CRL
// whatever its size. The heap in use grew by under 64 KiB while a 10^5-entry
// CRL was written to a file (TestLargeCRL asserts < 16 MiB), and the load
// program bench/crl measures 10^4 to 10^6 entries, with SM2 and ECDSA
// signers, from memory and from a SQLite revocation table. The README's
// answer to "stream or partition" is: stream (the CA may still partition by
// IDP for the size of the files relying parties download, but not for
// memory).
//
// DER writes every length before the content it measures, and the outer
// CertificateList length depends on the signature, which exists only after the
// whole TBSCertList has been hashed. Build therefore ranges over the entries
// three times:
//
//  1. measure: encode each entry and add up the length of revokedCertificates;
//  2. hash: stream the TBSCertList (now with its lengths) through the signature
//     hash — SM3 over Z ‖ TBS for SM2 (GB/T 32918.2 §6.1, default user ID
//     1234567812345678), SHA-256 or SHA-384 for ECDSA, SHA-256 for RSA — and
//     sign the digest once;
//  3. write: stream CertificateList { TBS, signatureAlgorithm, signature } to
//     the writer, hashing the TBS again.
//
// The iterator must yield the same entries in the same order each time (the CA
// reads them in one repeatable-read transaction, ORDER BY serial). Build checks
// that it did: every pass must yield exactly count entries, pass 2 must
// measure what pass 1 measured, and the TBS written in pass 3 must hash to the
// digest that was signed. If the third check fails, the bytes already written
// are not a valid CRL: on any error the caller must discard the output (write
// to a temporary file and rename on success).
//
// Entries must come sorted by strictly increasing serial number. RFC 5280
// does not require an order, but sorted input lets Build refuse duplicate
// serials (the Actalis incident, RELIABILITY.md §1.2 class 3) with O(1) memory,
// and it makes the output a deterministic function of the input: apart from the
// signature value, the same input gives the same bytes.
//
// # Profile
//
// Build writes the govtrust CRL profile (RFC 5280 §5, CA/B Forum BR §7.2,
// ACCEPTANCE.md C-01 and C-03): version v2; issuer byte-identical to the
// issuing certificate's subject; thisUpdate and nextUpdate as UTCTime through
// 2049 and GeneralizedTime from 2050, whole seconds, Z; nextUpdate after
// thisUpdate and at most MaxValidity (7 days) later (MaxOfflineValidity, 365
// days, for an offline CA's CRL signed in a ceremony); authorityKeyIdentifier =
// the issuer's subjectKeyIdentifier; cRLNumber non-critical, 1 ≤ n < 2^159;
// deltaCRLIndicator critical on delta CRLs; issuingDistributionPoint critical
// when the CRL is partitioned or is an ARL (onlyContainsCACerts); optional
// freshestCRL on full CRLs. An entry's reasonCode is omitted for unspecified,
// and certificateHold and removeFromCRL are refused: govtrust never suspends.
//
// Verify parses a CRL and checks its signature, accepting both SM2 signature
// OIDs seen in the wild (1.2.156.10197.1.501 and 1.2.156.10197.1.301.1). Lint
// checks a parsed CRL against the profile above, for the CA's publish guard and
// for checkers re-reading what was published. CheckNumber is the "CRL numbers
// only go up" guard; RefreshDue and Retain encode the re-issue schedule and the
// RFC 5280 §3.3 retention rule.
package crl
