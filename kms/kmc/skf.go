package kmc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/cipher"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"
)

// SKF algorithm identifiers (GM/T 0006).
const (
	SGDSM4ECB = 0x00000401
)

// SKF ENVELOPEDKEYBLOB (GM/T 0016, GM-STANDARDS.md §2.4), ULONGs
// little-endian as SKF libraries on x86 and ARM lay them out:
//
//	Version            ULONG   1
//	ulSymmAlgID        ULONG   SGD_SM4_ECB
//	ulBits             ULONG   256
//	cbEncryptedPriKey  BYTE[64] SM4-ECB(private scalar), right-aligned in [32..63]
//	PubKey             ECCPUBLICKEYBLOB { BitLen ULONG 256; X[64]; Y[64] }
//	ECCCipherBlob      ECCCIPHERBLOB { X[64]; Y[64]; HASH[32]; CipherLen ULONG; Cipher[CipherLen] }
//
// 256-bit values are right-aligned in their 64-byte fields. ECCCipherBlob is
// the SM4 key SM2-encrypted to the container's signing public key (C1 =
// (X, Y), HASH = C3, Cipher = C2).
const (
	skfVersion  = 1
	skfBlobSize = 4 + 4 + 4 + 64 + (4 + 64 + 64) + (64 + 64 + 32 + 4 + 16)
)

// MarshalSKFEnvelopedKey seals key for the holder of recipient as an SKF
// ENVELOPEDKEYBLOB.
func MarshalSKFEnvelopedKey(recipient *ecdsa.PublicKey, key *sm2.PrivateKey) ([]byte, error) {
	symKey := make([]byte, 16)
	defer clear(symKey)
	if _, err := rand.Read(symKey); err != nil {
		return nil, err
	}
	block, err := sm4.NewCipher(symKey)
	if err != nil {
		return nil, err
	}
	d := key.D.FillBytes(make([]byte, 32))
	defer clear(d)
	encD := make([]byte, 32)
	cipher.NewECBEncrypter(block).CryptBlocks(encD, d)
	ct, err := sm2.Encrypt(rand.Reader, recipient, symKey, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	if err != nil {
		return nil, fmt.Errorf("kmc: skf blob: %w", err)
	}
	if len(ct) != 1+64+32+16 || ct[0] != 4 {
		return nil, errors.New("kmc: skf blob: unexpected SM2 ciphertext form")
	}
	b := make([]byte, 0, skfBlobSize)
	b = binary.LittleEndian.AppendUint32(b, skfVersion)
	b = binary.LittleEndian.AppendUint32(b, SGDSM4ECB)
	b = binary.LittleEndian.AppendUint32(b, 256)
	b = append(b, make([]byte, 32)...)
	b = append(b, encD...)
	b = binary.LittleEndian.AppendUint32(b, 256)
	b = append(b, make([]byte, 32)...)
	b = append(b, key.X.FillBytes(make([]byte, 32))...)
	b = append(b, make([]byte, 32)...)
	b = append(b, key.Y.FillBytes(make([]byte, 32))...)
	b = append(b, make([]byte, 32)...)
	b = append(b, ct[1:33]...) // C1.x
	b = append(b, make([]byte, 32)...)
	b = append(b, ct[33:65]...) // C1.y
	b = append(b, ct[65:97]...) // C3
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = append(b, ct[97:]...) // C2
	return b, nil
}

// ParseSKFEnvelopedKey opens an ENVELOPEDKEYBLOB with the holder's signing
// key, as SKF_ImportECCKeyPair does inside a token; for tests and tools.
func ParseSKFEnvelopedKey(priv *sm2.PrivateKey, blob []byte) (*sm2.PrivateKey, error) {
	if len(blob) < skfBlobSize-16 {
		return nil, errors.New("kmc: skf blob too short")
	}
	le := binary.LittleEndian
	if le.Uint32(blob[0:]) != skfVersion || le.Uint32(blob[4:]) != SGDSM4ECB || le.Uint32(blob[8:]) != 256 {
		return nil, errors.New("kmc: skf blob: unsupported version, algorithm or size")
	}
	encD := blob[12+32 : 12+64]
	pub := blob[76:]
	x, y := pub[4+32:4+64], pub[4+64+32:4+128]
	cb := blob[76+132:]
	c1x, c1y, c3 := cb[32:64], cb[96:128], cb[128:160]
	n := le.Uint32(cb[160:])
	if int(n) != len(cb)-164 {
		return nil, errors.New("kmc: skf blob: cipher length does not match")
	}
	// 256-bit values are right-aligned: the left halves must be zero.
	for _, pad := range [][]byte{blob[12:44], pub[4:36], pub[68:100], cb[0:32], cb[64:96]} {
		if !bytes.Equal(pad, make([]byte, 32)) {
			return nil, errors.New("kmc: skf blob: non-zero padding in a 64-byte field")
		}
	}
	ct := append(append(append(append([]byte{4}, c1x...), c1y...), c3...), cb[164:]...)
	symKey, err := sm2.Decrypt(priv, ct)
	if err != nil {
		return nil, fmt.Errorf("kmc: skf blob: %w", err)
	}
	block, err := sm4.NewCipher(symKey)
	if err != nil {
		return nil, err
	}
	d := make([]byte, 32)
	cipher.NewECBDecrypter(block).CryptBlocks(d, encD)
	k, err := sm2.NewPrivateKey(d)
	clear(d)
	if err != nil {
		return nil, fmt.Errorf("kmc: skf blob: %w", err)
	}
	if k.X.Cmp(new(big.Int).SetBytes(x)) != 0 || k.Y.Cmp(new(big.Int).SetBytes(y)) != 0 {
		return nil, errors.New("kmc: skf blob: private key does not match the public key")
	}
	return k, nil
}
