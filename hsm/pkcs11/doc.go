// Package pkcs11 is the PKCS#11 backend of the hsm key-manager SPI: keys named
// "pkcs11:token=ca;object=root-2026;id=%A1..." live in a token reached through a
// PKCS#11 module (github.com/miekg/pkcs11), such as an HSM, a USB key or
// SoftHSM2 in tests.
//
// # Where keys live
//
// ECDSA (P-256, P-384) and RSA (2048, 3072) key pairs are generated on the token
// as sensitive, never-extractable objects and every signature or decryption is
// computed there (Location "hardware").
//
// PKCS#11 defines no SM2 mechanisms (GM-STANDARDS.md §8); vendors use
// conflicting CKM_VENDOR_DEFINED codes. When Config.Vendor names a table in
// Vendors, SM2 keys are generated and used on the token with that vendor's
// mechanisms (Location "hardware"); Z and e (GM/T 0009 §8) are computed in Go
// and only e is sent to the vendor's raw-sign mechanism. Without a vendor table
// (SoftHSM2 among such tokens) an SM2 key pair is generated in software,
// wrapped at once on the token with CKM_AES_KEY_WRAP_PAD (RFC 5649) under a
// non-extractable AES-256 key, and stored wrapped; it is unwrapped on the token
// for a bounded use period (Config.UnwrapTTL) and held only in memory. Such keys
// report Location "software, wrapped by hardware key", and are never described
// as hardware keys. Every use first checks, with one search on the token, that
// the key's metadata object still exists and gives the usage asked for, so a
// key deleted by another process stops working at once.
//
// # Key separation
//
// Signer and Decrypter hand a key out only to its owning service and for its
// stored usage (ACCEPTANCE.md E-04). The values they return are of distinct
// types, one with Sign only and one with Decrypt only, so that a decrypter
// cannot be asserted to crypto.Signer or the other way round; each operation
// checks the usage stored in the metadata again, in Go, besides the token's
// own CKA_SIGN / CKA_DECRYPT on hardware keys.
//
// # Objects on the token
//
// A key is a set of objects sharing a random 16-byte CKA_ID (put in the
// canonical URI as id=) and CKA_LABEL (the URI's object=):
//
//   - the private key (CKO_PRIVATE_KEY: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE
//     true, CKA_EXTRACTABLE false) and public key (CKO_PUBLIC_KEY) for hardware
//     key pairs; for wrapped SM2 keys only the public key, as a CKK_EC object on
//     the SM2 curve (OID 1.2.156.10197.1.301);
//   - for AES-256 key-encryption keys (KeyWrapper) one CKO_SECRET_KEY;
//   - always one metadata object: CKO_DATA, CKA_APPLICATION "govtrust",
//     CKA_PRIVATE true, CKA_MODIFIABLE false, whose CKA_VALUE is a small JSON
//     document (see metadata) holding the key's algorithm, usage, owning service,
//     creation time, location and, for wrapped SM2 keys, the wrapped private
//     scalar. The metadata object is written last and deleted first, so a key
//     is listed only when all its objects exist. Service and usage therefore
//     survive restarts, and key separation (ACCEPTANCE.md E-04) is enforced from
//     what the token stores.
//
// The SM2 wrapping key is one CKO_SECRET_KEY per token, labelled
// Config.WrapKeyLabel ("govtrust-wrap", a label CreateKey refuses), with
// CKA_WRAP and CKA_UNWRAP only, created when the first SM2 key is.
//
// KeyWrapper (hsm.AES256 keys of usage wrap) encrypts with CKM_AES_GCM on the
// token, binding the caller's AAD; the output is 0x01 || IV(12) || ciphertext
// || tag(16), the IV drawn in Go.
//
// # Sessions and failure
//
// A KeyManager holds a bounded pool of read-write sessions on one token and
// logs in once (C_Login applies to every session of the application, PKCS#11
// v2.40 §5.5). When an operation fails because the session, the login or the
// token went away (token reset or re-insertion), the pool is dropped, reopened,
// logged in again once, and the operation retried once. An invalid object
// handle is not such a failure: cached handles are dropped and the objects
// looked up again. CreateKey and DeleteKey stay correct across that retry: it
// first removes what a half-done creation left under the key's fresh CKA_ID,
// and finishes a half-done deletion by CKA_ID instead of answering "not found".
//
// A wrong PIN is reported as hsm.ErrPIN and a missing module or token as
// hsm.ErrUnavailable; there is never a fallback to software keys (ACCEPTANCE.md
// E-02). PINs never appear in errors. Automatic logins never wear the user PIN
// down to a lock: once the token refuses the configured PIN, the key manager
// answers hsm.ErrPIN to every operation and Check without calling C_Login again
// until it is closed and a new one made; and it does not log in again by itself
// when CK_TOKEN_INFO shows CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY or
// CKF_USER_PIN_LOCKED (someone else failed since), until a person has logged
// in with the right PIN.
//
// The package needs cgo; built without it, New returns an error.
package pkcs11
