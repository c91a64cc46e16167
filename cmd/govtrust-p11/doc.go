// Command govtrust-p11 is the SM2 software token of govtrust: a PKCS #11
// v2.40 module, built with
//
//	go build -buildmode=c-shared -o libgovtrust-p11.so ./cmd/govtrust-p11
//
// that stands in for an official's USB key and for an SM2 HSM in tests and
// development.
//
// IT IS A SOFTWARE TOKEN WITH NO HARDWARE PROTECTION. Keys live in files in a
// directory; private values are encrypted under a key derived from the PINs,
// which protects only against casual reading of that directory. Anyone who
// can copy the directory can try PINs offline, and anyone who can read the
// memory of a process using the module can take the keys. Never use it for
// keys that need the assurance of a certified cryptographic module (GM/T
// 0028), and report keys in it as "software" (ACCEPTANCE.md E-05).
//
// What it implements:
//
//   - One slot (ID 0) holding one token, the directory named by
//     GOVTRUST_P11_DIR, or by the "directory" key of the file named by
//     GOVTRUST_P11_CONF. The environment is read with getenv(3) at every
//     C_Initialize.
//   - SM2 with the vendor-defined codes of the TASS table (GM-STANDARDS.md
//     §8), the same table hsm/pkcs11 uses: CKK_SM2 0x80000004, key-pair
//     generation 0x80008001, raw signature of a 32-byte e 0x80008000,
//     SM3-with-SM2 over the message with Z computed from the default ID
//     1234567812345678 0x80008100, and decryption of GM/T 0009 ASN.1
//     ciphertexts 0x80008200. Signatures are raw r||s (64 bytes). SM3 digest
//     0x80000005.
//   - ECDSA on P-256: CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256, and
//     CKM_SHA256.
//   - User and SO PINs, sessions, token and session objects, CKO_DATA and
//     X.509 certificate objects, template search, and the attributes
//     pkcs11-tool reads. Private keys are always private, sensitive, never
//     extractable and local.
//
// The functions not listed in README.md answer CKR_FUNCTION_NOT_SUPPORTED.
//
// A normal build (go run ./cmd/govtrust-p11 --init ...) is a small tool that
// initialises a token directory without a PKCS #11 client; a c-shared build
// ignores main.
//
// Layout: cryptoki.h declares the PKCS #11 types (written for this module
// from the v2.40 specification), cryptoki.c builds the function list, and
// exports.go holds the Go entry points. module.go and crypto.go implement the
// token; store.go keeps it on disk; object.go models attributes.
package main
