package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // KDF hashes of agreeKDF
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// EnvelopeOptions configure Encrypt.
type EnvelopeOptions struct {
	Family Family
	// Cipher encrypts the content. Default: SM4-CBC when every recipient
	// has an SM2 key or the family is GM/T 0010, AES-256-CBC otherwise
	// (what OpenSSL and foreign relying parties read).
	Cipher pkcs.Cipher
}

// Encrypt returns the DER ContentInfo of an EnvelopedData of content for
// recipients: SM2 keys by key transport (SM2-3, encryptedKey an ASN.1
// SM2Cipher, GM/T 0010 §7), RSA keys by key transport (rsaEncryption,
// PKCS#1 v1.5, RFC 3370 §4.2.1), ECDSA keys (P-256, P-384) by ephemeral-
// static ECDH key agreement with the X9.63 KDF and AES key wrap (RFC 5753
// §3.1).
func Encrypt(content []byte, recipients []*smx509.Certificate, opts *EnvelopeOptions) ([]byte, error) {
	o := EnvelopeOptions{}
	if opts != nil {
		o = *opts
	}
	if len(recipients) == 0 {
		return nil, errors.New("cms: no recipient")
	}
	cipher := o.Cipher
	if cipher == nil {
		cipher = pkcs.SM4CBC
		for _, r := range recipients {
			if k, ok := r.PublicKey.(*ecdsa.PublicKey); (!ok || !sm2.IsSM2PublicKey(k)) && o.Family == RFC5652 {
				cipher = pkcs.AES256CBC
			}
		}
	}
	cek := make([]byte, cipher.KeySize())
	if _, err := rand.Read(cek); err != nil {
		return nil, err
	}
	defer clear(cek)
	alg, ciphertext, err := cipher.Encrypt(rand.Reader, cek, content)
	if err != nil {
		return nil, fmt.Errorf("cms: encrypt content: %w", err)
	}
	version := int64(0)
	if o.Family == GMT0010 {
		version = 1
	}
	var infos [][]byte
	for _, r := range recipients {
		ri, agree, err := recipientInfo(r, cek, o.Family)
		if err != nil {
			return nil, err
		}
		if agree {
			version = 2 // RFC 5652 §6.1: a kari makes the version 2
		}
		infos = append(infos, ri)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(o.Family.oid(OIDEnvelopedData))
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(version)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for _, ri := range infos {
						b.AddBytes(ri)
					}
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(o.Family.oid(OIDData))
					b.AddBytes(mustMarshal(*alg))
					b.AddASN1(tagP0, func(b *cryptobyte.Builder) { b.AddBytes(ciphertext) })
				})
			})
		})
	})
	return b.Bytes()
}

func issuerAndSerial(b *cryptobyte.Builder, c *smx509.Certificate) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(c.RawIssuer)
		b.AddASN1BigInt(c.SerialNumber)
	})
}

func recipientInfo(r *smx509.Certificate, cek []byte, fam Family) ([]byte, bool, error) {
	var b cryptobyte.Builder
	switch pub := r.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(pub) {
			ek, err := sm2.EncryptASN1(rand.Reader, pub, cek)
			if err != nil {
				return nil, false, fmt.Errorf("cms: SM2 key transport: %w", err)
			}
			v := int64(0)
			if fam == GMT0010 {
				v = 1 // GM/T 0010 RecipientInfo version 1
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(v)
				issuerAndSerial(b, r)
				addAlgorithm(b, OIDSM2Encrypt, derNull)
				b.AddASN1OctetString(ek)
			})
			return b.BytesOrPanic(), false, nil
		}
		if fam == GMT0010 {
			return nil, false, errors.New("cms: GM/T 0010 envelopes carry SM2 and RSA recipients only")
		}
		ri, err := agreeRecipient(r, pub, cek)
		return ri, true, err
	case *rsa.PublicKey:
		// RSAES-OAEP with SHA-256 (RFC 3560): PKCS#1 v1.5 encryption is
		// not written any more (Bleichenbacher); opening still reads it.
		ek, err := rsa.EncryptOAEP(crypto.SHA256.New(), rand.Reader, pub, cek, nil)
		if err != nil {
			return nil, false, fmt.Errorf("cms: RSA key transport: %w", err)
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(map[bool]int64{true: 1, false: 0}[fam == GMT0010])
			issuerAndSerial(b, r)
			addAlgorithm(b, oidRSAOAEP, oaepSHA256Params())
			b.AddASN1OctetString(ek)
		})
		return b.BytesOrPanic(), false, nil
	}
	return nil, false, fmt.Errorf("cms: unsupported recipient key %T", r.PublicKey)
}

// kdfParams returns the RFC 5753 scheme for a curve: the key-agreement
// OID, its KDF hash and the wrap algorithm with its key size.
func kdfParams(c elliptic.Curve) (asn1.ObjectIdentifier, crypto.Hash, asn1.ObjectIdentifier, int, error) {
	switch c {
	case elliptic.P256():
		return oidDHSinglePassSHA256, crypto.SHA256, oidAES128Wrap, 16, nil
	case elliptic.P384():
		return oidDHSinglePassSHA384, crypto.SHA384, oidAES256Wrap, 32, nil
	}
	return nil, 0, nil, 0, errors.New("cms: ECDH recipients use P-256 or P-384")
}

func agreeRecipient(r *smx509.Certificate, pub *ecdsa.PublicKey, cek []byte) ([]byte, error) {
	scheme, kdfHash, wrapOID, kekLen, err := kdfParams(pub.Curve)
	if err != nil {
		return nil, err
	}
	rpub, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("cms: recipient key: %w", err)
	}
	eph, err := rpub.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	z, err := eph.ECDH(rpub)
	if err != nil {
		return nil, err
	}
	kek := x963KDF(kdfHash, z, sharedInfo(wrapOID, kekLen), kekLen)
	wrapped, err := aesWrap(kek, cek)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(tagC1, func(b *cryptobyte.Builder) { // [1] KeyAgreeRecipientInfo
		b.AddASN1Int64(3)
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) { // originator [0] EXPLICIT
			b.AddASN1(tagC1, func(b *cryptobyte.Builder) { // originatorKey [1] OriginatorPublicKey
				addAlgorithm(b, oidECPublicKey, nil)
				b.AddASN1BitString(eph.PublicKey().Bytes())
			})
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(scheme)
			addAlgorithm(b, wrapOID, nil)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // recipientEncryptedKeys
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				issuerAndSerial(b, r)
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	return b.Bytes()
}

// agreeKDF maps the standard ECDH schemes (RFC 5753 §7.1.4; sha1kdf is
// what OpenSSL 3.0 writes by default) to their KDF hash. Opening accepts
// them all; Encrypt writes the SHA-256/384 ones.
var agreeKDF = map[string]crypto.Hash{
	"1.3.133.16.840.63.0.2": crypto.SHA1,
	"1.3.132.1.11.0":        crypto.SHA224,
	"1.3.132.1.11.1":        crypto.SHA256,
	"1.3.132.1.11.2":        crypto.SHA384,
	"1.3.132.1.11.3":        crypto.SHA512,
}

// wrapKeySize maps the AES key-wrap algorithms (RFC 3394 §3) to their KEK size.
var wrapKeySize = map[string]int{
	"2.16.840.1.101.3.4.1.5":  16,
	"2.16.840.1.101.3.4.1.25": 24,
	"2.16.840.1.101.3.4.1.45": 32,
}

// sharedInfo is ECC-CMS-SharedInfo (RFC 5753 §7.2) without ukm.
func sharedInfo(wrapOID asn1.ObjectIdentifier, kekLen int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addAlgorithm(b, wrapOID, nil)
		b.AddASN1(tagC2, func(b *cryptobyte.Builder) {
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(kekLen*8))
			b.AddASN1OctetString(n[:])
		})
	})
	return b.BytesOrPanic()
}

// x963KDF is the ANSI X9.63 KDF (SEC 1 §3.6.1) RFC 5753 uses.
func x963KDF(h crypto.Hash, z, info []byte, n int) []byte {
	var out []byte
	for counter := uint32(1); len(out) < n; counter++ {
		d := h.New()
		d.Write(z)
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], counter)
		d.Write(c[:])
		d.Write(info)
		out = d.Sum(out)
	}
	return out[:n]
}

var wrapIV = []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// aesWrap is the AES key wrap of RFC 3394 §2.2.1.
func aesWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, errors.New("cms: key wrap input must be a multiple of 8 bytes, at least 16")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(key) / 8
	a := append([]byte(nil), wrapIV...)
	r := append([]byte(nil), key...)
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i*8:i*8+8])
			block.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a, r...), nil
}

// aesUnwrap is the AES key unwrap of RFC 3394 §2.2.2.
func aesUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, errors.New("cms: wrapped key has a bad length")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	a := append([]byte(nil), wrapped[:8]...)
	r := append([]byte(nil), wrapped[8:]...)
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(buf, binary.BigEndian.Uint64(a)^t)
			copy(buf[8:], r[i*8:i*8+8])
			block.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[i*8:], buf[8:])
		}
	}
	if subtle.ConstantTimeCompare(a, wrapIV) != 1 {
		return nil, errors.New("cms: key unwrap integrity check failed")
	}
	return r, nil
}

// Recipient is one RecipientInfo of a parsed envelope.
type Recipient struct {
	// Agree is true for key agreement (ECDH), false for key transport.
	Agree  bool
	Issuer []byte
	Serial *big.Int
	SKI    []byte
	// KeyAlgorithm is keyEncryptionAlgorithm.
	KeyAlgorithm asn1.ObjectIdentifier
	EncryptedKey []byte

	keyParams []byte

	wrapOID    asn1.ObjectIdentifier
	originator []byte // ephemeral public point (kari)
}

// EnvelopedData is a parsed envelope.
type EnvelopedData struct {
	Family     Family
	Version    int64
	Recipients []*Recipient
	// ContentType is the encrypted content's type.
	ContentType asn1.ObjectIdentifier
	cipherAlg   pkix.AlgorithmIdentifier
	ciphertext  []byte
}

// ParseEnvelope parses a DER ContentInfo holding an EnvelopedData of
// either family.
func ParseEnvelope(der []byte, limits *Limits) (*EnvelopedData, error) {
	l := limits.fill()
	if len(der) > l.MaxBytes {
		return nil, overLimit("message of %d bytes (limit %d)", len(der), l.MaxBytes)
	}
	ct, content, err := ParseContentInfo(der)
	if err != nil {
		return nil, err
	}
	fam, rfc, ok := familyOf(ct)
	if !ok || !rfc.Equal(OIDEnvelopedData) {
		return nil, malformed("content type %s is not envelopedData", ct)
	}
	in := cryptobyte.String(content)
	var ed, infos, eci cryptobyte.String
	out := &EnvelopedData{Family: fam}
	if !in.ReadASN1(&ed, cbasn1.SEQUENCE) || !in.Empty() || !ed.ReadASN1Int64WithTag(&out.Version, cbasn1.INTEGER) {
		return nil, malformed("EnvelopedData")
	}
	if ed.PeekASN1Tag(tagC0) {
		ed.SkipASN1(tagC0) // originatorInfo: certificates the originator offers, not needed to decrypt
	}
	if !ed.ReadASN1(&infos, cbasn1.SET) || !ed.ReadASN1(&eci, cbasn1.SEQUENCE) {
		return nil, malformed("EnvelopedData recipientInfos or encryptedContentInfo")
	}
	if ed.PeekASN1Tag(tagC1) {
		ed.SkipASN1(tagC1) // unprotectedAttrs
	}
	if !ed.Empty() {
		return nil, malformed("trailing data in EnvelopedData")
	}
	for !infos.Empty() {
		if len(out.Recipients) == l.MaxRecipients {
			return nil, overLimit("more than %d recipients", l.MaxRecipients)
		}
		var ri cryptobyte.String
		var tag cbasn1.Tag
		if !infos.ReadAnyASN1(&ri, &tag) {
			return nil, malformed("RecipientInfo")
		}
		switch tag {
		case cbasn1.SEQUENCE:
			r, err := parseKTRI(ri)
			if err != nil {
				return nil, err
			}
			out.Recipients = append(out.Recipients, r)
		case tagC1:
			rs, err := parseKARI(ri, l)
			if err != nil {
				return nil, err
			}
			out.Recipients = append(out.Recipients, rs...)
		default:
			continue // kekri, pwri, ori: not ours to open
		}
	}
	var alg cryptobyte.String
	if !eci.ReadASN1ObjectIdentifier(&out.ContentType) || !eci.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, malformed("encryptedContentInfo")
	}
	if rest, err := asn1.Unmarshal(alg, &out.cipherAlg); err != nil || len(rest) > 0 {
		return nil, malformed("contentEncryptionAlgorithm")
	}
	if !eci.ReadASN1Bytes(&out.ciphertext, tagP0) || !eci.Empty() {
		return nil, malformed("encryptedContent (absent, constructed or trailing data)")
	}
	return out, nil
}

func readRID(s *cryptobyte.String, r *Recipient) bool {
	if s.PeekASN1Tag(tagP0) {
		return s.ReadASN1((*cryptobyte.String)(&r.SKI), tagP0)
	}
	var ias, name cryptobyte.String
	r.Serial = new(big.Int)
	if !s.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&name, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(r.Serial) || !ias.Empty() {
		return false
	}
	r.Issuer = []byte(name)
	return true
}

func parseKTRI(s cryptobyte.String) (*Recipient, error) {
	r := &Recipient{}
	var v int64
	if !s.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || !readRID(&s, r) {
		return nil, malformed("KeyTransRecipientInfo")
	}
	var err error
	if r.KeyAlgorithm, r.keyParams, err = readAlgorithm(&s); err != nil {
		return nil, malformed("KeyTransRecipientInfo keyEncryptionAlgorithm")
	}
	if !s.ReadASN1Bytes(&r.EncryptedKey, cbasn1.OCTET_STRING) || !s.Empty() {
		return nil, malformed("KeyTransRecipientInfo encryptedKey")
	}
	return r, nil
}

func parseKARI(s cryptobyte.String, l Limits) ([]*Recipient, error) {
	var v int64
	var orig, origKey, keys cryptobyte.String
	if !s.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || v != 3 || !s.ReadASN1(&orig, tagC0) {
		return nil, malformed("KeyAgreeRecipientInfo")
	}
	if !orig.ReadASN1(&origKey, tagC1) || !orig.Empty() {
		return nil, malformed("KeyAgreeRecipientInfo: only an ephemeral originatorKey is supported (RFC 5753 §3.1.1)")
	}
	if _, _, err := readAlgorithm(&origKey); err != nil {
		return nil, malformed("originatorKey algorithm")
	}
	var point asn1.BitString
	if !origKey.ReadASN1BitString(&point) || !origKey.Empty() || point.BitLength%8 != 0 {
		return nil, malformed("originatorKey publicKey")
	}
	if s.PeekASN1Tag(tagC1) {
		return nil, malformed("KeyAgreeRecipientInfo with ukm is not supported")
	}
	scheme, params, err := readAlgorithm(&s)
	if err != nil || params == nil {
		return nil, malformed("KeyAgreeRecipientInfo keyEncryptionAlgorithm")
	}
	ps := cryptobyte.String(params)
	wrapOID, _, err := readAlgorithm(&ps)
	if err != nil || !ps.Empty() {
		return nil, malformed("KeyWrapAlgorithm")
	}
	if !s.ReadASN1(&keys, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("recipientEncryptedKeys")
	}
	var out []*Recipient
	for !keys.Empty() {
		if len(out) == l.MaxRecipients {
			return nil, overLimit("more than %d recipients", l.MaxRecipients)
		}
		var rek cryptobyte.String
		r := &Recipient{Agree: true, KeyAlgorithm: scheme, wrapOID: wrapOID, originator: point.Bytes}
		if !keys.ReadASN1(&rek, cbasn1.SEQUENCE) {
			return nil, malformed("RecipientEncryptedKey")
		}
		if rek.PeekASN1Tag(tagC0) {
			return nil, malformed("rKeyId recipients are not supported")
		}
		if !readRID(&rek, r) || !rek.ReadASN1Bytes(&r.EncryptedKey, cbasn1.OCTET_STRING) || !rek.Empty() {
			return nil, malformed("RecipientEncryptedKey")
		}
		out = append(out, r)
	}
	return out, nil
}

// ErrNotRecipient is returned when the envelope has no recipient for the
// certificate given.
var ErrNotRecipient = errors.New("cms: not a recipient of this envelope")

// ErrDecrypt is wrapped by decryption failures (wrong key, altered data).
var ErrDecrypt = errors.New("cms: cannot decrypt")

// ECDHKey is a private key that agrees (crypto/ecdh.PrivateKey has it).
type ECDHKey interface {
	ECDH(remote *ecdh.PublicKey) ([]byte, error)
}

// Decrypt opens the envelope for the recipient cert with its private key:
// a crypto.Decrypter (SM2 and RSA key transport; HSM keys included), or
// for ECDH recipients an *ecdsa.PrivateKey or an ECDHKey.
func (e *EnvelopedData) Decrypt(cert *smx509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	var r *Recipient
	for _, c := range e.Recipients {
		if c.SKI != nil && bytes.Equal(c.SKI, cert.SubjectKeyId) ||
			c.Issuer != nil && bytes.Equal(c.Issuer, cert.RawIssuer) && c.Serial.Cmp(cert.SerialNumber) == 0 {
			r = c
			break
		}
	}
	if r == nil {
		return nil, ErrNotRecipient
	}
	cek, err := r.contentKey(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	defer clear(cek)
	c, err := pkcs.GetCipher(e.cipherAlg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	if len(cek) != c.KeySize() {
		return nil, fmt.Errorf("%w: content key of %d bytes for %s", ErrDecrypt, len(cek), e.cipherAlg.Algorithm)
	}
	pt, err := c.Decrypt(cek, &e.cipherAlg.Parameters, e.ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: content: %w", ErrDecrypt, err)
	}
	return pt, nil
}

func (r *Recipient) contentKey(cert *smx509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	if !r.Agree {
		d, ok := key.(crypto.Decrypter)
		if !ok {
			return nil, fmt.Errorf("key %T cannot decrypt", key)
		}
		switch {
		case r.KeyAlgorithm.Equal(OIDSM2Encrypt):
			return d.Decrypt(rand.Reader, r.EncryptedKey, nil)
		case r.KeyAlgorithm.Equal(oidRSAEncryption):
			// nil options: PKCS#1 v1.5, what older senders write.
			return d.Decrypt(rand.Reader, r.EncryptedKey, nil)
		case r.KeyAlgorithm.Equal(oidRSAOAEP):
			h, err := oaepHash(r.keyParams)
			if err != nil {
				return nil, err
			}
			return d.Decrypt(rand.Reader, r.EncryptedKey, &rsa.OAEPOptions{Hash: h, MGFHash: h})
		}
		return nil, fmt.Errorf("key transport %s not supported", r.KeyAlgorithm)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("an ECDH recipient has an EC certificate")
	}
	kdfHash, ok := agreeKDF[r.KeyAlgorithm.String()]
	if !ok {
		return nil, fmt.Errorf("key agreement %s not supported", r.KeyAlgorithm)
	}
	kekLen, ok := wrapKeySize[r.wrapOID.String()]
	if !ok {
		return nil, fmt.Errorf("key wrap %s not supported", r.wrapOID)
	}
	var agree ECDHKey
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		ek, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		agree = ek
	case ECDHKey:
		agree = k
	default:
		return nil, fmt.Errorf("key %T cannot agree", key)
	}
	rpub, err := pub.ECDH()
	if err != nil {
		return nil, err
	}
	eph, err := rpub.Curve().NewPublicKey(r.originator)
	if err != nil {
		return nil, fmt.Errorf("originator key: %w", err)
	}
	z, err := agree.ECDH(eph)
	if err != nil {
		return nil, err
	}
	return aesUnwrap(x963KDF(kdfHash, z, sharedInfo(r.wrapOID, kekLen), kekLen), r.EncryptedKey)
}

var (
	oidRSAOAEP = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
)

// oaepSHA256Params is RSAES-OAEP-params with SHA-256 and MGF1-SHA-256
// (RFC 4055 §4.1), pSourceFunc at its default.
func oaepSHA256Params() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) { addAlgorithm(b, SHA256.OID, nil) })
		b.AddASN1(tagC1, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidMGF1)
				addAlgorithm(b, SHA256.OID, nil)
			})
		})
	})
	return b.BytesOrPanic()
}

// oaepHash reads the hash of RSAES-OAEP-params: SHA-1 by default, SHA-2
// when named; the MGF1 hash must be the same one.
func oaepHash(params []byte) (crypto.Hash, error) {
	in := cryptobyte.String(params)
	var seq cryptobyte.String
	if len(params) == 0 || !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return 0, errors.New("malformed RSAES-OAEP-params")
	}
	h := crypto.SHA1
	if seq.PeekASN1Tag(tagC0) {
		var hf cryptobyte.String
		seq.ReadASN1(&hf, tagC0)
		oid, _, err := readAlgorithm(&hf)
		if err != nil {
			return 0, err
		}
		ha := HashByOID(oid)
		if ha == nil || ha.Hash == 0 {
			return 0, fmt.Errorf("OAEP hash %s not supported", oid)
		}
		h = ha.Hash
	}
	if seq.PeekASN1Tag(tagC1) {
		var mgf, m cryptobyte.String
		var oid asn1.ObjectIdentifier
		seq.ReadASN1(&mgf, tagC1)
		if !mgf.ReadASN1(&m, cbasn1.SEQUENCE) || !m.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidMGF1) {
			return 0, errors.New("OAEP mask generation is not MGF1")
		}
		mh, _, err := readAlgorithm(&m)
		if err != nil {
			return 0, err
		}
		if ha := HashByOID(mh); ha == nil || ha.Hash != h {
			return 0, errors.New("OAEP MGF1 hash differs from the OAEP hash")
		}
	}
	if seq.PeekASN1Tag(tagC2) {
		return 0, errors.New("OAEP with a label is not supported")
	}
	return h, nil
}
