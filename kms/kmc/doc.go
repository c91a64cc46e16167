// Package kmc is govtrust's key management centre (KMC, 密钥管理中心) for the
// encryption half of dual certificates (GM/T 0014, GM/T 0034; GM-STANDARDS.md
// §2.2): on a dual-certificate request the CA asks it for an encryption key
// pair (ApplyKey, the ApplyKeyReq of GM/T 0014); the KMC generates the SM2
// pair, escrows the private key wrapped under the KMC escrow key in hsm
// (service "kmc", config kmc.escrow_key), and returns the public key for the
// CA to certify together with the private key sealed for the holder:
//
//   - an SM2EnvelopedKey (GM/T 0009 §7.4 / GB/T 35276, GM-STANDARDS.md §2.4)
//     to the holder's signing public key: SM4-ECB over the 32-byte private
//     scalar without padding, the SM4 key SM2-encrypted (ASN.1 SM2Cipher);
//   - on request, the same as an SKF ENVELOPEDKEYBLOB (GM/T 0016) for USB keys
//     that import with SKF_ImportECCKeyPair (skf.go; its private-key placement
//     is common practice, not the standard's text: GM-STANDARDS.md §10.5).
//
// The private key is generated in this process with crypto/rand (gmsm), not
// inside the HSM: it must leave the KMC enveloped to the holder, which the
// key-manager SPI does not do for keys it holds; it is in the clear here only
// between generation and wrapping, and between unwrapping and enveloping on a
// recovery. Signing keys are never generated, escrowed or recovered by the
// KMC: the holder makes them, and the CA passes only the signing public key.
//
// Recovery (GM/T 0034-2014 §12.4/§12.5 user and judicial recovery) is a
// dual-control operation (internal/dual, kind "kms.key.recover"): a
// registration officer asks for it naming whose key (CA and encryption
// certificate serial), why, the case reference and the recipient's
// certificate; kmc.recovery_approvals distinct key recovery officers approve
// exactly that request; then the key is delivered only as an SM2EnvelopedKey
// to the recipient certificate's public key. The recipient must be a signing
// certificate a platform CA issued and has not revoked, of the subscriber
// (user recovery, as GM/T 0014 RestoreKeyReq.userPubKey is the subscriber's
// signing key) or bound to a key recovery officer's account (judicial
// recovery); the KMC asks the CA through its Certificates interface, when
// the recovery is asked for and again when it is carried out, and checks
// that the encryption certificate the escrow names certifies the escrowed
// key. Every step is audited. An escrowed key stays recoverable until
// kmc.retention after its certificate's notAfter, whether the certificate
// was revoked or not.
//
// The CA tells the KMC of every revocation of an encryption certificate
// (RevokeKey, GM/T 0014 RevokeKeyReq), in its revoking transaction: the
// escrow becomes revoked, with the date and the reason, audited; the key
// stays recoverable, and the approvers' summary says it is revoked.
//
// An escrow no certificate was issued for is abandoned: its wrapped key is
// wiped (Abandon, by the CA when its request fails after ApplyKey, or by the
// sweep, sweep.go). One whose binding to its certificates was lost (the
// CA's request ended abnormally) is bound later to the certificate of its
// public key, by a recovery request naming that certificate or by the sweep.
package kmc
