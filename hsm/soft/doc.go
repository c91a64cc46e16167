// Package soft is the software keystore of govtrust: an hsm.KeyManager whose
// private keys live in the SQL store, each one sealed with SM4-GCM under a
// master key. It serves development set-ups and small sites without an HSM;
// key-location reports show its keys as hsm.LocationSoftware.
//
// # Master key
//
// The master key is 32 random bytes. It is never used directly: HKDF-SM3
// (RFC 5869 with SM3 as the hash, x/crypto/hkdf + gmsm/sm3) derives one subkey
// per purpose, with info strings "govtrust/hsm/soft/v1/<purpose>":
//
//	key-encryption  16 bytes, the SM4-GCM key that seals every private key
//	check           32 bytes, the HMAC-SM3 key of the key check value
//
// The master-key record (one per keystore) holds the kind of protection, a key
// check value HMAC-SM3(check, "govtrust/hsm/soft/v1 master-key check") that
// tells a wrong passphrase or wrong shares apart from a damaged key row
// without decrypting any key, and what the kind needs:
//
//   - "passphrase": the master key sealed with SM4-GCM under a key derived from
//     the passphrase with argon2id (RFC 9106), salt and parameters recorded
//     with it. The default parameters are the second recommendation of
//     RFC 9106 §4 (t=3, m=64 MiB, p=4): the unlock happens once per start, so
//     a quarter of a second is cheap for the operator and costly for a guesser.
//     Production mode refuses records weaker than t=3, m=64 MiB.
//   - "shamir": the master key split m-of-n with Shamir's scheme over GF(2^8)
//     (shamir.go). Only the share-set identifier, m and n are stored; the
//     shares are returned once by Init and never stored.
//   - "dev": the master key itself, in clear. Every Open of a dev keystore
//     logs a warning, and production mode refuses it.
//
// A keystore opened without a passphrase or shares is locked: Status works,
// every key operation returns hsm.ErrLocked until Unlock.
//
// # Keys
//
// Keys are generated in Go (SM2 with gmsm, ECDSA P-256/P-384, RSA-2048/3072;
// SM4 and AES-256 key-wrapping keys as 16 or 32 random bytes), encoded as
// PKCS#8 (gmsm smx509, which handles SM2) or raw bytes, and sealed with
// SM4-GCM under a fresh 12-byte random nonce. The associated data is
//
//	govtrust-soft-key|<uri>|<version>|<algorithm>|<service>|<usage>|<hex SM3 of the public key>
//
// so the ciphertext of one row cannot be moved onto another key, service,
// usage or public key: the copy fails authentication. Names and services are
// restricted to characters that cannot contain the separator.
//
// Key URIs are "soft:<name>" with name matching [a-z0-9][a-z0-9._/-]{0,127}.
//
// A key is decrypted once, when a signer, decrypter or wrapper first needs it,
// and kept parsed in memory, so signing through the keystore costs what
// signing with the gmsm or crypto key costs. Signers are thin wrappers that
// keep gmsm's SM2 contract (sm2.DefaultSM2SignerOpts: the message goes in, Z
// is computed inside) and refuse to sign once the keystore is locked.
//
// Each Signer, Decrypter, Wrap and Unwrap call reads the key's row (cheap),
// checks key separation against it, and reuses the decrypted key only if the
// row is byte-for-byte the one it was decrypted from. A key deleted through
// another process therefore stops being handed out here at once, but signers
// this process handed out before keep working until Lock, Close, or a local
// DeleteKey of that key.
//
// # Zeroisation
//
// Lock and Close clear the master key, its subkeys and every cached key:
// byte slices are overwritten and the words of every big.Int private value
// (D, RSA primes and CRT values) are set to zero. What Go does not let us
// reach is not cleared: copies held inside crypto/ecdsa's and crypto/rsa's
// FIPS caches, gmsm's precomputed (1+d)^-1, and memory the garbage collector
// already moved.
//
// # Storage
//
// The package works against the small Store interface; NewSQLStore
// implements it on internal/store (SQLite and PostgreSQL) with the migrations
// in Migrations.
package soft
