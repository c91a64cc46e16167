// Package hsm is the key-manager SPI of govtrust: every private key the platform
// uses (CA, OCSP, CRL, TSA, seals, audit checkpoints, application keys) is created,
// found and used through a KeyManager, and named by a key URI.
//
// The shape follows the key-manager seam of step-ca: a small core interface
// (create a key, read its public key, get a crypto.Signer, list, delete, close),
// optional abilities discovered by type assertion (Decrypter, KeyWrapper), and
// backends chosen by URI scheme through a Router. Backends live in subpackages:
// hsm/soft (software keystore sealed under a master key) and hsm/pkcs11 (HSMs and
// USB keys through PKCS#11).
//
// Signers returned for SM2 keys follow the contract of github.com/emmansun/gmsm:
// given sm2.DefaultSM2SignerOpts, or an *sm2.SM2SignerOption made with
// forceGMSign=true, Sign takes the message and computes Z (GM/T 0009 §8) inside;
// given any other options it signs msg as the already-computed digest e.
//
// Key separation: every key belongs to one service ("ca", "tsa", "seal", ...). A
// signer is handed out only to the service the key was created for, so the CA key
// cannot be reached through the TSA or seal code paths (ACCEPTANCE.md E-04).
//
// This package imports only the standard library and gmsm: no I/O, no config, no
// database.
package hsm
