// Package hsmtest is the conformance suite of the hsm key-manager SPI. Every
// backend's tests describe the backend in a Backend value and call Run; all
// assertions live here, so the software keystore, SoftHSM2 and a token with
// native SM2 are held to one contract (STYLE.md: one conformance suite run
// against every backend).
//
// For each signing algorithm Run creates a key and checks its KeyInfo
// (algorithm, usage, owning service, backend, key location of ACCEPTANCE.md
// E-05, public key) and then signs Messages random messages of 0 to 4 KiB,
// the empty message among them:
//
//   - SM2 with sm2.DefaultSM2SignerOpts (Z from the default user ID, GM/T 0009
//     §8), plus a few with another user ID and a few over a precomputed
//     e = SM3(Z || M); each is verified by gmsm and, as an independent
//     implementation, by tjfoc/gmsm;
//   - ECDSA over SHA-256 (P-256) or SHA-384 (P-384), verified by crypto/ecdsa;
//   - RSA PKCS#1 v1.5 and PSS over SHA-256, verified by crypto/rsa.
//
// OpenSSL verifies the same signatures (ACCEPTANCE.md O-02; INTEROP.md §2 for
// the distid every SM2 verification needs): all of them for SM2 and P-256, a
// Sample for the other algorithms, whose OpenSSL code paths are not what O-02
// is about and whose process starts cost the most test time. Under the race
// detector some pure-Go checks are sampled too (see Sample). One corrupted
// signature per algorithm must be rejected by every verifier, so that a
// verifier that accepts everything is caught.
//
// Run also decrypts (SM2 ciphertexts made by gmsm, tjfoc/gmsm and OpenSSL, in
// ASN.1 and C1C3C2 form; RSA-OAEP), enforces key separation (ACCEPTANCE.md
// E-04), lists, refuses duplicates, deletes (a signer handed out before
// DeleteKey must stop signing), signs from 8 goroutines at once, refuses a
// wrong PIN or passphrase (E-02) and, after Close and Open, finds every key
// again with the same public key.
//
// The package is a test helper: only _test.go files import it
// (internal/archtest enforces that).
package hsmtest
