package lint

import (
	"crypto/ecdh"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// keyKind is the key type as the policy sees it.
type keyKind int

const (
	keyOther keyKind = iota
	keyRSA
	keyP256
	keyP384
	keySM2
	keyECOther // an EC key on a curve the policy refuses
)

func (k keyKind) String() string {
	switch k {
	case keyRSA:
		return "RSA"
	case keyP256:
		return "ECDSA P-256"
	case keyP384:
		return "ECDSA P-384"
	case keySM2:
		return "SM2"
	case keyECOther:
		return "EC (refused curve)"
	}
	return "unsupported"
}

// spkiInfo is a SubjectPublicKeyInfo read structurally (RFC 5280 §4.1.2.7).
type spkiInfo struct {
	alg       asn1.ObjectIdentifier
	hasParams bool
	params    []byte // full parameters element
	curve     asn1.ObjectIdentifier
	key       []byte // subjectPublicKey BIT STRING content
	kind      keyKind
	n, e      *big.Int
}

func parseSPKI(der []byte) (*spkiInfo, error) {
	in := cryptobyte.String(der)
	var seq, ai cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() || !seq.ReadASN1(&ai, cbasn1.SEQUENCE) {
		return nil, errors.New("SubjectPublicKeyInfo is not a SEQUENCE of AlgorithmIdentifier and BIT STRING")
	}
	s := &spkiInfo{}
	if !ai.ReadASN1ObjectIdentifier(&s.alg) {
		return nil, errors.New("public key algorithm is not an OBJECT IDENTIFIER")
	}
	if !ai.Empty() {
		var p cryptobyte.String
		var tag cbasn1.Tag
		if !ai.ReadAnyASN1Element(&p, &tag) || !ai.Empty() {
			return nil, errors.New("public key algorithm parameters are malformed")
		}
		s.hasParams = true
		s.params = p
		if tag == cbasn1.OBJECT_IDENTIFIER {
			pp := cryptobyte.String(p)
			if !pp.ReadASN1ObjectIdentifier(&s.curve) {
				return nil, errors.New("curve OBJECT IDENTIFIER is malformed")
			}
		}
	}
	var bs asn1.BitString
	if !seq.ReadASN1BitString(&bs) || !seq.Empty() || bs.BitLength%8 != 0 {
		return nil, errors.New("subjectPublicKey is not a whole-octet BIT STRING")
	}
	s.key = bs.Bytes
	switch {
	case s.alg.Equal(oidPublicKeyRSA):
		s.kind = keyRSA
		k := cryptobyte.String(s.key)
		var rs cryptobyte.String
		s.n, s.e = new(big.Int), new(big.Int)
		if !k.ReadASN1(&rs, cbasn1.SEQUENCE) || !k.Empty() || !rs.ReadASN1Integer(s.n) || !rs.ReadASN1Integer(s.e) || !rs.Empty() {
			return nil, errors.New("RSAPublicKey is malformed (RFC 8017 §A.1.1)")
		}
		if s.n.Sign() <= 0 || s.e.Sign() <= 0 {
			return nil, errors.New("RSA modulus or exponent is not positive")
		}
	case s.alg.Equal(oidPublicKeyEC):
		switch {
		case s.curve.Equal(oidCurveP256):
			s.kind = keyP256
		case s.curve.Equal(oidCurveP384):
			s.kind = keyP384
		case s.curve.Equal(oidSM2):
			s.kind = keySM2
		default:
			s.kind = keyECOther
		}
	case s.alg.Equal(oidSM2):
		s.kind = keySM2 // wrongly encoded; e_sm2_spki_encoding says so
	}
	return s, nil
}

// curveName names the curves that turn up in refused requests.
func curveName(id asn1.ObjectIdentifier) string {
	switch {
	case id == nil:
		return "no named curve"
	case id.Equal(oidCurveP192):
		return "P-192 (prime192v1)"
	case id.Equal(oidCurveP224):
		return "P-224"
	case id.Equal(oidCurveP521):
		return "P-521"
	case id.Equal(oidCurveSecp256k1):
		return "secp256k1"
	}
	return id.String()
}

// checkPoint validates an EC public key point: uncompressed form, on the
// curve, not the identity (SEC 1 v2 §3.2.2.1 partial validation, which
// crypto/ecdh and gmsm sm2.NewPublicKey perform).
func (s *spkiInfo) checkPoint() error {
	var err error
	switch s.kind {
	case keyP256:
		_, err = ecdh.P256().NewPublicKey(s.key)
	case keyP384:
		_, err = ecdh.P384().NewPublicKey(s.key)
	case keySM2:
		_, err = sm2.NewPublicKey(s.key)
	default:
		return nil
	}
	if err != nil {
		form := "uncompressed"
		if len(s.key) > 0 && s.key[0] != 4 {
			form = fmt.Sprintf("form %#x (only uncompressed 0x04 is accepted)", s.key[0])
		}
		return fmt.Errorf("%s point (%s) is not a valid point on the curve: %w", s.kind, form, err)
	}
	return nil
}

// smallPrimes are the odd primes below 1000, for the small-factor check of
// BR §6.1.1.3 ("weak" moduli).
var smallPrimes = func() []int64 {
	var ps []int64
	for n := int64(3); n < 1000; n += 2 {
		prime := true
		for _, p := range ps {
			if p*p > n {
				break
			}
			if n%p == 0 {
				prime = false
				break
			}
		}
		if prime {
			ps = append(ps, n)
		}
	}
	return ps
}()

// rsaSmallFactor returns a prime < 1000 dividing n, or 0.
func rsaSmallFactor(n *big.Int) int64 {
	if n.Bit(0) == 0 {
		return 2
	}
	m := new(big.Int)
	for _, p := range smallPrimes {
		if m.Mod(n, big.NewInt(p)).Sign() == 0 && n.Cmp(big.NewInt(p)) != 0 {
			return p
		}
	}
	return 0
}

// fermatRounds is the BR §6.1.1.3 (4) minimum: "Fermat factorization
// method ... with at least 100 rounds".
const fermatRounds = 100

// rsaFermatFactor reports whether n = p·q with p and q so close that
// Fermat's method finds them within fermatRounds steps from ⌈√n⌉.
func rsaFermatFactor(n *big.Int) bool {
	a := new(big.Int).Sqrt(n)
	a2 := new(big.Int).Mul(a, a)
	if a2.Cmp(n) < 0 {
		a.Add(a, big.NewInt(1))
	}
	b2, b := new(big.Int), new(big.Int)
	for i := 0; i < fermatRounds; i++ {
		b2.Mul(a, a)
		b2.Sub(b2, n)
		b.Sqrt(b2)
		if new(big.Int).Mul(b, b).Cmp(b2) == 0 {
			p := new(big.Int).Sub(a, b)
			if p.Cmp(big.NewInt(1)) > 0 {
				return true
			}
		}
		a.Add(a, big.NewInt(1))
	}
	return false
}

// rocaPrimes are the primes of the ROCA fingerprint (Nemec et al., "The
// Return of Coppersmith's Attack", CCS 2017, CVE-2017-15361): Infineon's
// RSALib primes are 65537^a mod M plus a multiple of M, so every modulus is
// a power of 65537 modulo each of these primes.
var rocaPrimes = []int64{3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73,
	79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167}

// rocaResidues[i] holds the powers of 65537 modulo rocaPrimes[i].
var rocaResidues = func() []map[int64]bool {
	out := make([]map[int64]bool, len(rocaPrimes))
	for i, p := range rocaPrimes {
		set := map[int64]bool{}
		g := 65537 % p
		for x := int64(1); !set[x]; x = x * g % p {
			set[x] = true
		}
		out[i] = set
	}
	return out
}()

// rsaROCA reports whether n carries the ROCA fingerprint.
func rsaROCA(n *big.Int) bool {
	m := new(big.Int)
	for i, p := range rocaPrimes {
		if !rocaResidues[i][m.Mod(n, big.NewInt(p)).Int64()] {
			return false
		}
	}
	return true
}
