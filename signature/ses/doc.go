// Package ses is govtrust's codec of electronic seals and seal signatures:
// SESeal and SES_Signature of GB/T 38540-2020 (version 4), made and
// verified, and of GM/T 0031-2014 (version 1), verified only, for seals and
// signatures made by older systems (GM-STANDARDS.md §5).
//
// Versions are told apart by structure, not by the header's version number,
// whose value in v1 seals varies between producers (GM-STANDARDS.md §5.1):
// a v1 SESeal is SEQUENCE { SES_SealInfo, SES_SignInfo } (two elements, the
// second a SEQUENCE), a v4 one SEQUENCE { SES_SealInfo, cert, signAlgID,
// signedValue } (four); a v1 SES_Signature is SEQUENCE { TBS_Sign,
// signature }, a v4 one carries the signer's certificate and algorithm
// beside the TBS_Sign.
//
// What is signed (GM-STANDARDS.md §5.2 and §10 item 2, both uncertain in the
// standards' text and settled here by what the implementations do):
//
//   - the maker's signature of a v4 seal (signedValue) covers DER(SES_SealInfo)
//     only, as ofdrw and zc310/ofd make it; SEQUENCE { SES_SealInfo, cert,
//     signAlgID } is tried as a fallback when verifying third-party seals;
//   - the maker's signature of a v1 seal (signData) covers SEQUENCE
//     { SES_SealInfo, cert, signatureAlgorithm } (GM/T 0031-2014 §6.1);
//   - the signer's signature (both versions) covers DER(TBS_Sign).
//
// SM2 signatures are SM2 with SM3 and Z from the default user ID
// 1234567812345678 (GB/T 35276, GM/T 0009 §8); the algorithm OID written is
// 1.2.156.10197.1.501 and 1.2.156.10197.1.301.1 is accepted. ECDSA P-256
// and P-384 (with SHA-256 and SHA-384) are made and verified as well.
// Signature values inside the BIT STRINGs are DER SEQUENCE { r, s }; raw
// 64-byte r‖s values, which some producers store, are accepted on verify.
//
// Optional [0] fields (v4 SES_Signature timeStamp, TBS_Sign extDatas) are
// written EXPLICIT, as ofdrw does since its commit 93a35b03; both EXPLICIT
// and IMPLICIT are read (GM-STANDARDS.md §5.2, uncertain).
//
// Strict DER: the parser, built on golang.org/x/crypto/cryptobyte, refuses
// indefinite and non-minimal lengths, non-minimal integers, non-zero BIT
// STRING padding, trailing data and unknown elements. The package does no
// I/O: callers supply the keys (any crypto.Signer), times and time-stamp
// tokens (ARCHITECTURE.md §1).
package ses
