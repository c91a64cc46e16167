// Package kms is govtrust's key service for applications: named encryption
// keys that applications use without ever seeing them, in the manner of
// Vault Transit or AWS KMS, with SM4 by default.
//
// A key has versions. The newest encrypts; every version from the key's
// minimum decryption version up decrypts. Each version's key material is
// 16 (SM4-GCM) or 32 (AES-256-GCM) random bytes kept only wrapped under the
// key-encryption key (KEK) of the key manager (hsm, service "kms",
// config kms.kek): the database holds the wrapped form, the clear form lives
// in this process's memory while the version is in use. Keys are rotated by
// hand or on a schedule (rotation_period), disabled and enabled, and single
// versions are destroyed under dual control (internal/dual, kind
// "kms.version.destroy"): the wrapped material is erased, so what only that
// version encrypted becomes unrecoverable (crypto-shredding, ACCEPTANCE.md
// D-02) while rewrapped data stays readable.
//
// Operations: encrypt, decrypt, generate-data-key (a fresh data key in clear
// and wrapped under the key, for envelope encryption of large data by the
// caller) and rewrap (a ciphertext re-encrypted under the newest version
// inside the service, the plaintext never leaving it). Associated data is
// bound to every ciphertext. Ciphertexts carry the key name, version and
// algorithm in a small versioned header (ciphertext.go) that is itself
// authenticated.
//
// Authorization goes through the security middleware (internal/authz): every
// route names an action (kms.encrypt, kms.decrypt, kms.rotate, ...) and the
// resource is the key, "kms-key/<name>", with the key's owner and
// organisation, so platform and site Cedar policies decide per key who may
// encrypt, decrypt or rotate. By default an application encrypts and
// decrypts with the keys it owns and security administrators manage keys.
//
// The key management centre for dual certificates is the subpackage kmc.
package kms
