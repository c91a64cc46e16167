package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/emmansun/gmsm/sm4"

	"github.com/govtrust/govtrust/internal/httpx"
)

// Algorithm is the data-encryption algorithm of an application key.
type Algorithm string

// Algorithms of application keys. SM4-GCM (GB/T 32907 with the GCM mode of
// NIST SP 800-38D, as in RFC 8998) is the default; AES-256-GCM serves
// relying parties outside the GM world.
const (
	SM4GCM    Algorithm = "sm4-gcm"
	AES256GCM Algorithm = "aes-256-gcm"
)

func (a Algorithm) code() byte {
	switch a {
	case SM4GCM:
		return 1
	case AES256GCM:
		return 2
	}
	return 0
}

func (a Algorithm) keyLen() int {
	if a == AES256GCM {
		return 32
	}
	return 16
}

// Valid reports whether a is an algorithm of application keys.
func (a Algorithm) Valid() bool { return a.code() != 0 }

func algorithmOf(code byte) Algorithm {
	switch code {
	case 1:
		return SM4GCM
	case 2:
		return AES256GCM
	}
	return ""
}

func newAEAD(a Algorithm, key []byte) (cipher.AEAD, error) {
	var b cipher.Block
	var err error
	switch a {
	case SM4GCM:
		b, err = sm4.NewCipher(key)
	case AES256GCM:
		b, err = aes.NewCipher(key)
	default:
		return nil, fmt.Errorf("kms: unknown algorithm %q", a)
	}
	if err != nil {
		return nil, fmt.Errorf("kms: %s: %w", a, err)
	}
	return cipher.NewGCM(b)
}

// Ciphertext format, version 1 (all integers big-endian):
//
//	magic    "GTK"           3 bytes
//	format   0x01            1 byte
//	alg      0x01 SM4-GCM, 0x02 AES-256-GCM
//	version  key version     4 bytes
//	nameLen  n               1 byte
//	name     key name        n bytes
//	nonce                    12 bytes, random
//	sealed   GCM ciphertext || 16-byte tag
//
// The GCM additional data is the header (magic to name) followed by the
// caller's associated data, so altering the header, the key name, the
// version, the algorithm or the associated data fails authentication and
// yields no plaintext (ACCEPTANCE.md D-01). Random 96-bit nonces keep one
// key version within the 2^32 messages of SP 800-38D §8.3; rotate sooner.
const (
	formatV1  = 0x01
	nonceLen  = 12
	tagLen    = 16
	maxName   = 64
	headerMin = 3 + 1 + 1 + 4 + 1
)

var magic = []byte("GTK")

// ErrAuth is returned when a ciphertext does not authenticate: wrong key,
// altered ciphertext, tag, header or associated data.
var ErrAuth = fmt.Errorf("kms: ciphertext does not authenticate (wrong key, altered ciphertext, header or associated data): %w", httpx.ErrBadRequest)

// Header is the clear part of a ciphertext.
type Header struct {
	Name      string
	Version   int
	Algorithm Algorithm
}

func (h Header) marshal() []byte {
	b := make([]byte, 0, headerMin+len(h.Name))
	b = append(b, magic...)
	b = append(b, formatV1, h.Algorithm.code())
	b = binary.BigEndian.AppendUint32(b, uint32(h.Version))
	b = append(b, byte(len(h.Name)))
	return append(b, h.Name...)
}

// ParseHeader reads the header of a ciphertext and returns it with the
// header's length. It checks the form only; authenticity comes from Open.
func ParseHeader(ct []byte) (Header, int, error) {
	if len(ct) < headerMin || string(ct[:3]) != string(magic) {
		return Header{}, 0, fmt.Errorf("%w: not a govtrust ciphertext", ErrAuth)
	}
	if ct[3] != formatV1 {
		return Header{}, 0, fmt.Errorf("%w: unknown ciphertext format %d", ErrAuth, ct[3])
	}
	alg := algorithmOf(ct[4])
	v := binary.BigEndian.Uint32(ct[5:9])
	n := int(ct[9])
	if alg == "" || v == 0 || v > 1<<31-1 || n == 0 || n > maxName || len(ct) < headerMin+n+nonceLen+tagLen {
		return Header{}, 0, fmt.Errorf("%w: malformed header", ErrAuth)
	}
	return Header{Name: string(ct[10 : 10+n]), Version: int(v), Algorithm: alg}, headerMin + n, nil
}

func aad(header, assoc []byte) []byte {
	out := make([]byte, 0, len(header)+len(assoc))
	return append(append(out, header...), assoc...)
}

// seal encrypts plain under aead for header h.
func seal(aead cipher.AEAD, h Header, plain, assoc []byte) ([]byte, error) {
	hdr := h.marshal()
	out := make([]byte, len(hdr)+nonceLen, len(hdr)+nonceLen+len(plain)+tagLen)
	copy(out, hdr)
	if _, err := rand.Read(out[len(hdr):]); err != nil {
		return nil, fmt.Errorf("kms: nonce: %w", err)
	}
	return aead.Seal(out, out[len(hdr):], plain, aad(hdr, assoc)), nil
}

// open decrypts ct (whose header is hlen bytes) under aead.
func open(aead cipher.AEAD, ct []byte, hlen int, assoc []byte) ([]byte, error) {
	nonce := ct[hlen : hlen+nonceLen]
	plain, err := aead.Open(nil, nonce, ct[hlen+nonceLen:], aad(ct[:hlen], assoc))
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}
