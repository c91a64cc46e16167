package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strconv"
	"strings"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/ca/lint"
)

// parse splits a KeyType into its family ("sm2", "ecdsa-p256", "ecdsa-p384",
// "rsa") and, for RSA, the minimum modulus size.
func (k KeyType) parse() (family string, minBits int, err error) {
	switch k {
	case "sm2", "ecdsa-p256", "ecdsa-p384":
		return string(k), 0, nil
	}
	if s, ok := strings.CutPrefix(string(k), "rsa-"); ok {
		n, err := strconv.Atoi(s)
		if err == nil && (n == 2048 || n == 3072 || n == 4096) {
			return "rsa", n, nil
		}
	}
	return "", 0, fmt.Errorf("key type %q is not sm2, ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096", k)
}

// keyFamily names the family and size of a parsed public key.
func keyFamily(pub crypto.PublicKey) (family string, bits int) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case sm2.P256():
			return "sm2", 256
		case elliptic.P256():
			return "ecdsa-p256", 256
		case elliptic.P384():
			return "ecdsa-p384", 384
		}
		return "ecdsa-" + k.Curve.Params().Name, k.Curve.Params().BitSize
	case *rsa.PublicKey:
		return "rsa", k.N.BitLen()
	}
	return fmt.Sprintf("%T", pub), 0
}

// CheckPublicKey refuses a weak or known-bad key (the key lints of package
// lint: RSA below 2048 bits or not a multiple of 8, small or even
// exponents, small factors, Fermat-close primes, the ROCA fingerprint;
// curves other than P-256, P-384 and SM2; points off the curve), an RSA key
// above 8192 bits, and a key whose type is not in allowed (nil allows every
// type the lints accept). Errors wrap ErrKeyPolicy.
func CheckPublicKey(pub crypto.PublicKey, allowed []KeyType) error {
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyPolicy, err)
	}
	return checkSPKI(spki, pub, allowed)
}

// checkSPKI runs the key lints on a SubjectPublicKeyInfo and then the
// profile's type list on the parsed key (pub may be nil when the SPKI did
// not parse; the lints have refused it by then). The lints refuse an RSA
// modulus above lint.MaxRSABits (a cheap denial of service on relying
// parties) before any costly check of its factors.
func checkSPKI(spki []byte, pub crypto.PublicKey, allowed []KeyType) error {
	if errs := lint.Errors(lint.PublicKey(spki)); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, f := range errs {
			msgs[i] = f.Lint + ": " + f.Detail
		}
		return fmt.Errorf("%w: %s", ErrKeyPolicy, strings.Join(msgs, "; "))
	}
	family, bits := keyFamily(pub)
	if allowed == nil {
		return nil
	}
	var names []string
	for _, kt := range allowed {
		f, min, err := kt.parse()
		if err != nil {
			continue
		}
		if f == family && bits >= min {
			return nil
		}
		names = append(names, string(kt))
	}
	desc := family
	if family == "rsa" {
		desc = fmt.Sprintf("rsa-%d", bits)
	}
	return fmt.Errorf("%w: %s key not allowed by the profile (allowed: %s)", ErrKeyPolicy, desc, strings.Join(names, ", "))
}
