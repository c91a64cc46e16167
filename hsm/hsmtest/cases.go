package hsmtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // registers crypto.SHA256 for Hash.New
	_ "crypto/sha512" // registers crypto.SHA384
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"

	"github.com/emmansun/gmsm/sm2"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/hsm"
)

// defaultUID is the SM2 user ID of GM/T 0009 §10, written out here rather
// than taken from hsm or gmsm so that the verifiers do not share the
// signers' idea of "default".
var defaultUID = []byte("1234567812345678")

// aliceUID is the user ID of the GM/T 0003.5 examples.
var aliceUID = []byte("ALICE123@YAHOO.COM")

// maxMessage is the largest random message.
const maxMessage = 4096

// sigCase is one message to sign and check, and how it is signed.
type sigCase struct {
	alg hsm.Algorithm
	msg []byte
	// SM2: uid is the user ID that Z is computed from (nil: signed with
	// sm2.DefaultSM2SignerOpts, verified with defaultUID); plain, when not
	// nil, makes the caller compute e = SM3(Z || M) and sign it with these
	// options, which carry no user ID.
	uid   []byte
	plain crypto.SignerOpts
	// ECDSA and RSA: the hash of the message that is signed; pss selects
	// RSASSA-PSS over PKCS#1 v1.5.
	hash crypto.Hash
	pss  bool

	sig []byte
}

func (c *sigCase) String() string {
	switch {
	case c.alg == hsm.SM2 && c.plain != nil:
		return fmt.Sprintf("%s, precomputed e (%T), %d-byte message", c.alg, c.plain, len(c.msg))
	case c.alg == hsm.SM2 && c.uid != nil:
		return fmt.Sprintf("%s, user ID %q, %d-byte message", c.alg, c.uid, len(c.msg))
	case c.alg == hsm.SM2:
		return fmt.Sprintf("%s, DefaultSM2SignerOpts, %d-byte message", c.alg, len(c.msg))
	case c.pss:
		return fmt.Sprintf("%s, PSS %v, %d-byte message", c.alg, c.hash, len(c.msg))
	}
	return fmt.Sprintf("%s, %v, %d-byte message", c.alg, c.hash, len(c.msg))
}

// newCase returns a case for msg; i chooses between PKCS#1 v1.5 (even) and
// PSS (odd) for RSA.
func newCase(alg hsm.Algorithm, msg []byte, i int) *sigCase {
	c := &sigCase{alg: alg, msg: msg}
	switch alg {
	case hsm.ECDSAP256, hsm.RSA2048, hsm.RSA3072:
		c.hash = crypto.SHA256
	case hsm.ECDSAP384:
		c.hash = crypto.SHA384
	}
	if alg == hsm.RSA2048 || alg == hsm.RSA3072 {
		c.pss = i%2 == 1
	}
	return c
}

// newCases returns n cases over random messages of 0 to maxMessage bytes,
// the first one empty, and for SM2 a few more with other user IDs and with
// precomputed digests.
func newCases(alg hsm.Algorithm, n int) []*sigCase {
	out := make([]*sigCase, 0, n+10)
	for i := range n {
		size := 0
		if i > 0 {
			size = mrand.IntN(maxMessage + 1)
		}
		out = append(out, newCase(alg, randomMessage(size), i))
	}
	if alg == hsm.SM2 {
		other := []byte("govtrust-" + hex.EncodeToString(randomMessage(6)))
		for i := range 5 {
			c := newCase(alg, randomMessage(1+mrand.IntN(maxMessage)), i)
			c.uid = aliceUID
			if i >= 3 {
				c.uid = other
			}
			out = append(out, c)
		}
		for i, opts := range []crypto.SignerOpts{crypto.Hash(0), crypto.Hash(0), crypto.Hash(0), sm2.NewSM2SignerOption(false, nil), sm2.NewSM2SignerOption(false, nil)} {
			c := newCase(alg, randomMessage(i*100), i)
			c.plain = opts
			out = append(out, c)
		}
	}
	return out
}

// sign signs the case with s.
func (c *sigCase) sign(s crypto.Signer) error {
	var (
		in   []byte
		opts crypto.SignerOpts
	)
	switch {
	case c.alg == hsm.SM2 && c.plain != nil:
		pub, ok := s.Public().(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("SM2 signer has a %T public key", s.Public())
		}
		e, err := sm2.CalculateSM2Hash(pub, c.msg, defaultUID)
		if err != nil {
			return err
		}
		in, opts = e, c.plain
	case c.alg == hsm.SM2 && c.uid != nil:
		in, opts = c.msg, sm2.NewSM2SignerOption(true, c.uid)
	case c.alg == hsm.SM2:
		in, opts = c.msg, sm2.DefaultSM2SignerOpts
	case c.pss:
		in, opts = c.digest(), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: c.hash}
	default:
		in, opts = c.digest(), c.hash
	}
	sig, err := s.Sign(rand.Reader, in, opts)
	if err != nil {
		return err
	}
	if len(sig) == 0 {
		return errors.New("empty signature")
	}
	c.sig = sig
	return nil
}

func (c *sigCase) digest() []byte {
	h := c.hash.New()
	h.Write(c.msg)
	return h.Sum(nil)
}

// verifyUID is the user ID an SM2 signature of the case must verify with.
func (c *sigCase) verifyUID() []byte {
	if c.uid != nil {
		return c.uid
	}
	return defaultUID
}

// corrupt returns a copy of c whose signature has its last bit flipped: the
// last byte of s in a DER (r, s) signature, the last byte of an RSA
// signature.
func (c *sigCase) corrupt() *sigCase {
	d := *c
	d.sig = bytes.Clone(c.sig)
	d.sig[len(d.sig)-1] ^= 1
	return &d
}

// verifier is one implementation that checks signatures.
type verifier struct {
	name   string
	verify func(pub crypto.PublicKey, c *sigCase) error
}

var errVerify = errors.New("signature does not verify")

// goVerifiers returns the Go implementations that check signatures of alg:
// gmsm and tjfoc/gmsm for SM2, the standard library for ECDSA and RSA.
func goVerifiers(alg hsm.Algorithm) []verifier {
	switch alg {
	case hsm.SM2:
		return []verifier{{"gmsm", verifyGMSM}, {"tjfoc/gmsm", verifyTjfoc}}
	case hsm.ECDSAP256, hsm.ECDSAP384:
		return []verifier{{"crypto/ecdsa", verifyECDSA}}
	}
	return []verifier{{"crypto/rsa", verifyRSA}}
}

func verifyGMSM(pub crypto.PublicKey, c *sigCase) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%T is not an SM2 public key", pub)
	}
	if !sm2.VerifyASN1WithSM2(k, c.verifyUID(), c.msg, c.sig) {
		return errVerify
	}
	return nil
}

// verifyTjfoc verifies with tjfoc/gmsm, an SM2 implementation written apart
// from gmsm (its own curve arithmetic, Z and SM3).
func verifyTjfoc(pub crypto.PublicKey, c *sigCase) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%T is not an SM2 public key", pub)
	}
	tk, err := tjfocPublic(k)
	if err != nil {
		return err
	}
	r, s, err := parseSignature(c.sig)
	if err != nil {
		return err
	}
	if !tjsm2.Sm2Verify(tk, c.msg, c.verifyUID(), r, s) {
		return errVerify
	}
	return nil
}

// tjfocPublic converts an SM2 public key for tjfoc/gmsm through its
// uncompressed encoding 04 || x || y.
func tjfocPublic(k *ecdsa.PublicKey) (*tjsm2.PublicKey, error) {
	e, err := sm2.PublicKeyToECDH(k)
	if err != nil {
		return nil, err
	}
	b := e.Bytes()
	if len(b) != 65 || b[0] != 4 {
		return nil, fmt.Errorf("SM2 point of %d bytes", len(b))
	}
	return &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(b[1:33]), Y: new(big.Int).SetBytes(b[33:])}, nil
}

// parseSignature splits a DER SEQUENCE { r INTEGER, s INTEGER }.
func parseSignature(sig []byte) (r, s *big.Int, err error) {
	r, s = new(big.Int), new(big.Int)
	in := cryptobyte.String(sig)
	var inner cryptobyte.String
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() || !inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		return nil, nil, errors.New("signature is not DER SEQUENCE { r, s }")
	}
	return r, s, nil
}

func verifyECDSA(pub crypto.PublicKey, c *sigCase) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%T is not an ECDSA public key", pub)
	}
	if !ecdsa.VerifyASN1(k, c.digest(), c.sig) {
		return errVerify
	}
	return nil
}

func verifyRSA(pub crypto.PublicKey, c *sigCase) error {
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%T is not an RSA public key", pub)
	}
	if c.pss {
		return rsa.VerifyPSS(k, c.hash, c.digest(), c.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	return rsa.VerifyPKCS1v15(k, c.hash, c.digest(), c.sig)
}

// checkPublic checks that pub is a public key of alg.
func checkPublic(alg hsm.Algorithm, pub crypto.PublicKey) error {
	bad := fmt.Errorf("public key %T is not a %s key", pub, alg)
	switch alg {
	case hsm.SM2:
		if !sm2.IsSM2PublicKey(pub) {
			return bad
		}
	case hsm.ECDSAP256, hsm.ECDSAP384:
		k, ok := pub.(*ecdsa.PublicKey)
		want := elliptic.P256()
		if alg == hsm.ECDSAP384 {
			want = elliptic.P384()
		}
		if !ok || k.Curve != want {
			return bad
		}
	case hsm.RSA2048, hsm.RSA3072:
		k, ok := pub.(*rsa.PublicKey)
		bits := 2048
		if alg == hsm.RSA3072 {
			bits = 3072
		}
		if !ok || k.N.BitLen() != bits {
			return bad
		}
	default:
		return fmt.Errorf("hsmtest does not know algorithm %q", alg)
	}
	return nil
}
