package soft

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
)

// Scheme is the key-URI scheme of this backend.
const Scheme = "soft"

// sealVersion is the version of the sealing format written by this code.
const sealVersion = 1

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,127}$`)
	serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// parseKeyURI checks a soft key URI and returns it canonical.
func parseKeyURI(s string) (string, error) {
	u, err := hsm.ParseURI(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != Scheme || u.Attrs != nil {
		return "", fmt.Errorf("%w: %q is not a soft: key URI", hsm.ErrBadURI, s)
	}
	if !nameRE.MatchString(u.Opaque) {
		return "", fmt.Errorf("%w: key name %q must match %s", hsm.ErrBadURI, u.Opaque, nameRE)
	}
	return u.String(), nil
}

func checkService(s string) error {
	if !serviceRE.MatchString(s) {
		return fmt.Errorf("hsm/soft: service %q must match %s", s, serviceRE)
	}
	return nil
}

// usageAllowed says which usages each algorithm supports here.
func usageAllowed(a hsm.Algorithm, u hsm.Usage) bool {
	switch a {
	case hsm.SM2, hsm.RSA2048, hsm.RSA3072:
		return u == hsm.UsageSign || u == hsm.UsageDecrypt
	case hsm.ECDSAP256, hsm.ECDSAP384:
		return u == hsm.UsageSign
	case hsm.SM4, hsm.AES256:
		return u == hsm.UsageWrap
	}
	return false
}

// keyAAD is the associated data that binds a sealed key to its row.
func keyAAD(rec *KeyRecord) []byte {
	h := sm3.Sum(rec.Public)
	return []byte(strings.Join([]string{
		"govtrust-soft-key", rec.URI, strconv.FormatInt(rec.Version, 10),
		string(rec.Algorithm), rec.Service, string(rec.Usage), hex.EncodeToString(h[:]),
	}, "|"))
}

// generate makes a new key and returns its plaintext encoding (PKCS#8 DER or
// raw symmetric bytes) and PKIX public key. The caller clears plain.
func generate(a hsm.Algorithm) (plain, public []byte, err error) {
	var priv crypto.Signer
	switch a {
	case hsm.SM2:
		priv, err = sm2.GenerateKey(rand.Reader)
	case hsm.ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case hsm.ECDSAP384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case hsm.RSA2048:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case hsm.RSA3072:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	case hsm.SM4, hsm.AES256:
		plain = make([]byte, symKeyLen(a))
		if _, err := io.ReadFull(rand.Reader, plain); err != nil {
			return nil, nil, fmt.Errorf("hsm/soft: generate %s key: %w", a, err)
		}
		return plain, nil, nil
	default:
		return nil, nil, fmt.Errorf("%w: %s", hsm.ErrUnsupported, a)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("hsm/soft: generate %s key: %w", a, err)
	}
	defer zeroKey(priv)
	if public, err = smx509.MarshalPKIXPublicKey(priv.Public()); err != nil {
		return nil, nil, fmt.Errorf("hsm/soft: encode %s public key: %w", a, err)
	}
	if plain, err = smx509.MarshalPKCS8PrivateKey(priv); err != nil {
		return nil, nil, fmt.Errorf("hsm/soft: encode %s private key: %w", a, err)
	}
	return plain, public, nil
}

func symKeyLen(a hsm.Algorithm) int {
	if a == hsm.SM4 {
		return 16
	}
	return 32
}

// parseKey turns decrypted key bytes into a key of the record's algorithm and
// checks it against the record's public key.
func parseKey(rec *KeyRecord, plain []byte) (any, error) {
	if rec.Algorithm.Symmetric() {
		if len(plain) != symKeyLen(rec.Algorithm) {
			return nil, fmt.Errorf("hsm/soft: key %s: wrong symmetric key length", rec.URI)
		}
		return append([]byte(nil), plain...), nil
	}
	k, err := smx509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		// The error of the PKCS#8 parser describes structure, never content.
		return nil, fmt.Errorf("hsm/soft: key %s: parse private key: %w", rec.URI, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok || !algorithmMatches(rec.Algorithm, s) {
		zeroKey(k)
		return nil, fmt.Errorf("hsm/soft: key %s: private key is not %s", rec.URI, rec.Algorithm)
	}
	pub, err := smx509.MarshalPKIXPublicKey(s.Public())
	if err != nil || string(pub) != string(rec.Public) {
		zeroKey(k)
		return nil, fmt.Errorf("hsm/soft: key %s: private key does not match the stored public key", rec.URI)
	}
	return s, nil
}

func algorithmMatches(a hsm.Algorithm, s crypto.Signer) bool {
	switch k := s.(type) {
	case *sm2.PrivateKey:
		return a == hsm.SM2
	case *ecdsa.PrivateKey:
		return a == hsm.ECDSAP256 && k.Curve == elliptic.P256() || a == hsm.ECDSAP384 && k.Curve == elliptic.P384()
	case *rsa.PrivateKey:
		return a == hsm.RSA2048 && k.N.BitLen() == 2048 || a == hsm.RSA3072 && k.N.BitLen() == 3072
	}
	return false
}

// zeroInt overwrites the words of x. SetInt64(0) alone would only shorten
// the slice and leave the words in memory.
func zeroInt(x *big.Int) {
	if x == nil {
		return
	}
	clear(x.Bits())
	x.SetInt64(0)
}

// zeroKey clears what Go lets us reach of a private key.
func zeroKey(k any) {
	switch k := k.(type) {
	case *sm2.PrivateKey:
		zeroInt(k.D)
	case *ecdsa.PrivateKey:
		//lint:ignore SA1019 clearing the scalar is the point; the key is never used again
		zeroInt(k.D)
	case *rsa.PrivateKey:
		zeroInt(k.D)
		for _, p := range k.Primes {
			zeroInt(p)
		}
		zeroInt(k.Precomputed.Dp)
		zeroInt(k.Precomputed.Dq)
		zeroInt(k.Precomputed.Qinv)
		//lint:ignore SA1019 deprecated but still filled in by Precompute, so cleared too
		for _, v := range k.Precomputed.CRTValues {
			zeroInt(v.Exp)
			zeroInt(v.Coeff)
			zeroInt(v.R)
		}
	case []byte:
		clear(k)
	}
}

// loaded is a decrypted key kept in memory. mu guards its use against
// zeroisation: users hold the read lock while the key works, wipe takes the
// write lock, so a key is never used half-cleared.
type loaded struct {
	uri string
	// row identifies the row this was decrypted from: its AAD, nonce and
	// sealed bytes. Any change to the row (service, usage, public key,
	// ciphertext) makes the key be decrypted, and so authenticated, again.
	row     []byte
	alg     hsm.Algorithm
	usage   hsm.Usage
	service string

	mu    sync.RWMutex
	wiped bool
	key   any // *sm2.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey or []byte
}

// rowID is what identifies a row for the cache.
func rowID(rec *KeyRecord) []byte {
	id := keyAAD(rec)
	id = append(id, '|')
	id = append(id, rec.Nonce...)
	return append(id, rec.Sealed...)
}

// sameRow reports whether l was decrypted from rec.
func (l *loaded) sameRow(rec *KeyRecord) bool {
	return string(l.row) == string(rowID(rec))
}

func (l *loaded) wipe() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.wiped {
		zeroKey(l.key)
		l.key, l.wiped = nil, true
	}
}

func (l *loaded) public() crypto.PublicKey {
	if s, ok := l.key.(crypto.Signer); ok {
		return s.Public()
	}
	return nil
}

var errWiped = fmt.Errorf("%w: key was cleared from memory (keystore locked, closed, or key deleted)", hsm.ErrLocked)

// signer is the crypto.Signer handed out for ECDSA and RSA keys.
type signer struct {
	l   *loaded
	pub crypto.PublicKey
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

func (s *signer) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.l.mu.RLock()
	defer s.l.mu.RUnlock()
	if s.l.wiped {
		return nil, errWiped
	}
	return s.l.key.(crypto.Signer).Sign(r, digest, opts)
}

// sm2Signer follows gmsm's contract exactly by delegating to *sm2.PrivateKey:
// with sm2.DefaultSM2SignerOpts (or forceGMSign options) msg is the message
// and Z is computed inside; otherwise msg is the digest e. It also implements
// crypto.MessageSigner as *sm2.PrivateKey does.
//
// One difference: gmsm v0.44.1 refuses an empty message even when it is to
// compute e = SM3(Z || M) itself, though GB/T 32918.2 §6.1 signs any M. For
// an empty M the signer computes e (hsm.SM2Digest) and signs it.
// sm2Signer signs with an SM2 key. za is Z_A of the key with the default
// user ID (GB/T 32918.2 §5.5), computed once: a signature with the default
// options hashes SM3(Z_A ‖ M) and need not derive Z_A again from the curve
// and the public key, as gmsm does on every call.
type sm2Signer struct {
	signer
	za []byte
}

func newSM2Signer(s signer) (*sm2Signer, error) {
	pub, ok := s.pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("soft: SM2 key %s has a %T public key", s.l.uri, s.pub)
	}
	za, err := sm2.CalculateZA(pub, hsm.DefaultSM2UID)
	if err != nil {
		return nil, fmt.Errorf("soft: SM2 key %s: %w", s.l.uri, err)
	}
	return &sm2Signer{signer: s, za: za}, nil
}

func (s *sm2Signer) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.l.mu.RLock()
	defer s.l.mu.RUnlock()
	if s.l.wiped {
		return nil, errWiped
	}
	k := s.l.key.(*sm2.PrivateKey)
	if opts == sm2.DefaultSM2SignerOpts && len(msg) > 0 {
		h := sm3.New()
		h.Write(s.za)
		h.Write(msg)
		var e [sm3.Size]byte
		return k.Sign(r, h.Sum(e[:0]), nil)
	}
	if len(msg) == 0 {
		e, err := hsm.SM2Digest(&k.PublicKey, msg, opts)
		if err != nil {
			return nil, err
		}
		return k.Sign(r, e, nil)
	}
	return k.Sign(r, msg, opts)
}

// SignMessage implements crypto.MessageSigner like *sm2.PrivateKey: msg is
// always the message, signed with the user ID of opts or the default one.
func (s *sm2Signer) SignMessage(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if len(msg) == 0 {
		// gmsm refuses to sign an empty message itself; compute e with the
		// user ID of opts (whatever its forceGMSign) and sign e.
		e, err := sm2.CalculateSM2Hash(s.pub.(*ecdsa.PublicKey), msg, hsm.SM2UserID(opts))
		if err != nil {
			return nil, err
		}
		return s.Sign(r, e, nil)
	}
	if opts == nil || opts == sm2.DefaultSM2SignerOpts {
		return s.Sign(r, msg, sm2.DefaultSM2SignerOpts) // Z_A of the default user ID, computed once
	}
	s.l.mu.RLock()
	defer s.l.mu.RUnlock()
	if s.l.wiped {
		return nil, errWiped
	}
	return s.l.key.(*sm2.PrivateKey).SignMessage(r, msg, opts)
}

// decrypter is the crypto.Decrypter handed out for SM2 and RSA keys.
type decrypter struct {
	l   *loaded
	pub crypto.PublicKey
}

func (d *decrypter) Public() crypto.PublicKey { return d.pub }

// Decrypt decrypts with SM2 (GB/T 32918.4; gmsm detects ASN.1 or C1C3C2,
// sm2.DecrypterOpts selects other orders) or RSA-OAEP (RFC 8017 §7.1; nil
// options mean OAEP with SHA-256). RSA PKCS#1 v1.5 decryption is refused:
// its padding oracle (Bleichenbacher 1998) is not worth the compatibility.
func (d *decrypter) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	d.l.mu.RLock()
	defer d.l.mu.RUnlock()
	if d.l.wiped {
		return nil, errWiped
	}
	switch k := d.l.key.(type) {
	case *sm2.PrivateKey:
		return k.Decrypt(r, msg, opts)
	case *rsa.PrivateKey:
		switch o := opts.(type) {
		case nil:
			return rsa.DecryptOAEP(sha256.New(), nil, k, msg, nil)
		case *rsa.OAEPOptions:
			return k.Decrypt(r, msg, o)
		default:
			return nil, fmt.Errorf("%w: RSA decryption is OAEP only", hsm.ErrUnsupported)
		}
	}
	return nil, errors.New("hsm/soft: key cannot decrypt")
}
