package lint

import (
	"bytes"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxRSABits is the largest RSA modulus govtrust certifies.
const MaxRSABits = 8192

// oversized reports an RSA modulus above MaxRSABits. e_rsa_key_too_large
// refuses it, and the factoring lints skip it: on a modulus of the size a
// 64 KiB request can carry (≈ 500,000 bits) they cost seconds of CPU.
func oversized(k *spkiInfo) bool { return k.n.BitLen() > MaxRSABits }

// parseAlgID reads an AlgorithmIdentifier element.
func parseAlgID(der []byte) (id asn1.ObjectIdentifier, params []byte, ok bool) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&id) {
		return nil, nil, false
	}
	if !seq.Empty() {
		var p cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1Element(&p, &tag) || !seq.Empty() {
			return nil, nil, false
		}
		params = p
	}
	return id, params, true
}

// sigAlgsFor lists the signature algorithms govtrust accepts for an
// issuer key: SM2 with SM3 (GM/T 0015), ECDSA with the hash matching the
// curve (RFC 5758 §3.2; Mozilla Root Store Policy §5.1.2), RSA PKCS #1 v1.5
// with SHA-2 (RFC 4055 §5).
func sigAlgsFor(k keyKind) []asn1.ObjectIdentifier {
	switch k {
	case keySM2:
		return []asn1.ObjectIdentifier{oidSigSM2WithSM3}
	case keyP256:
		return []asn1.ObjectIdentifier{oidSigECDSAWithSHA256}
	case keyP384:
		return []asn1.ObjectIdentifier{oidSigECDSAWithSHA384}
	case keyRSA:
		return []asn1.ObjectIdentifier{oidSigSHA256WithRSA, oidSigSHA384WithRSA, oidSigSHA512WithRSA}
	}
	return nil
}

// Lints of the signature algorithm and of the subject public key.
func init() {
	register("e_sigalg_issuer_key", Error, "RFC 5280 §4.1.1.2; RFC 5758 §3.2; GM/T 0015",
		"the signature algorithm must be the one for the issuing CA's key: SM2-with-SM3, ECDSA with SHA-256 (P-256) or SHA-384 (P-384), RSA with SHA-2",
		func(c *ctx) []string {
			id, _, ok := parseAlgID(c.raw.innerAlg)
			if !ok {
				return one("signature AlgorithmIdentifier does not decode")
			}
			if c.issuerKey == nil {
				return nil
			}
			if !oidIn(id, sigAlgsFor(c.issuerKey.kind)...) {
				return one("signature algorithm %s with a %s issuer key", id, c.issuerKey.kind)
			}
			return nil
		})

	register("e_sigalg_params", Error, "RFC 5758 §3.2; RFC 4055 §5; GM-STANDARDS.md §1.2",
		"ECDSA and SM2-with-SM3 AlgorithmIdentifiers must omit parameters; RSA PKCS #1 v1.5 ones must carry NULL",
		func(c *ctx) []string {
			id, params, ok := parseAlgID(c.raw.innerAlg)
			if !ok {
				return nil
			}
			switch {
			case oidIn(id, oidSigSM2WithSM3, oidSigECDSAWithSHA256, oidSigECDSAWithSHA384):
				if params != nil {
					return one("%s with parameters % x", id, params)
				}
			case oidIn(id, oidSigSHA256WithRSA, oidSigSHA384WithRSA, oidSigSHA512WithRSA):
				if !bytes.Equal(params, []byte{5, 0}) {
					return one("%s without NULL parameters", id)
				}
			}
			return nil
		})

	register("e_sm2_cert_sigalg", Error, "GM/T 0015 (SM2 certificates are signed with SM2-with-SM3)",
		"a certificate for an SM2 key must be signed with SM2-with-SM3 (1.2.156.10197.1.501)",
		func(c *ctx) []string {
			id, _, ok := parseAlgID(c.raw.innerAlg)
			if ok && c.key != nil && c.key.kind == keySM2 && !id.Equal(oidSigSM2WithSM3) {
				return one("SM2 key certified with signature algorithm %s", id)
			}
			return nil
		})

	registerKey("e_spki_malformed", Error, "RFC 5280 §4.1.2.7",
		"the SubjectPublicKeyInfo must decode",
		func(c *ctx) []string {
			if c.keyErr != nil {
				return one("%v", c.keyErr)
			}
			return nil
		})

	registerKey("e_key_algorithm_not_allowed", Error, "BR §6.1.5; ARCHITECTURE.md §2",
		"only RSA, ECDSA (P-256, P-384) and SM2 keys are certified",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyOther {
				return one("public key algorithm %s", c.key.alg)
			}
			return nil
		})

	registerKey("e_rsa_params_not_null", Error, "RFC 3279 §2.3.1",
		"rsaEncryption parameters must be NULL",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && !bytes.Equal(c.key.params, []byte{5, 0}) {
				return one("rsaEncryption parameters % x", c.key.params)
			}
			return nil
		})

	registerKey("e_rsa_key_too_small", Error, "BR §6.1.5",
		"RSA moduli must be at least 2048 bits",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && c.key.n.BitLen() < 2048 {
				return one("RSA modulus of %d bits", c.key.n.BitLen())
			}
			return nil
		})

	registerKey("e_rsa_key_too_large", Error, "govtrust policy (BR §6.1.5 sets no maximum)",
		"RSA moduli must be at most 8192 bits: larger ones buy nothing and make every verification slow",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && c.key.n.BitLen() > MaxRSABits {
				return one("RSA modulus of %d bits exceeds %d", c.key.n.BitLen(), MaxRSABits)
			}
			return nil
		})

	registerKey("e_rsa_modulus_not_mod8", Error, "BR §6.1.5",
		"the RSA modulus size in bits must be evenly divisible by 8",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && c.key.n.BitLen()%8 != 0 {
				return one("RSA modulus of %d bits", c.key.n.BitLen())
			}
			return nil
		})

	registerKey("e_rsa_exponent_invalid", Error, "BR §6.1.6",
		"the RSA public exponent must be odd and at least 3",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && (c.key.e.Bit(0) == 0 || c.key.e.BitLen() < 2) {
				return one("RSA exponent %s", c.key.e)
			}
			return nil
		})

	registerKey("e_rsa_modulus_weak", Error, "BR §6.1.1.3 (weak keys)",
		"the RSA modulus must have no small prime factor",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && !oversized(c.key) {
				if p := rsaSmallFactor(c.key.n); p != 0 {
					return one("RSA modulus divisible by %d", p)
				}
			}
			return nil
		})

	registerKey("e_rsa_fermat_factorable", Error, "BR §6.1.1.3 (4)",
		"the RSA modulus must not be factorable by 100 rounds of Fermat's method (primes too close)",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && c.key.n.BitLen() >= 64 && !oversized(c.key) && rsaFermatFactor(c.key.n) {
				return one("RSA modulus factors by Fermat's method within %d rounds", fermatRounds)
			}
			return nil
		})

	registerKey("e_rsa_roca", Error, "BR §6.1.1.3; CVE-2017-15361",
		"the RSA modulus must not carry the ROCA (Infineon RSALib) fingerprint",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyRSA && !oversized(c.key) && rsaROCA(c.key.n) {
				return one("RSA modulus has the ROCA fingerprint")
			}
			return nil
		})

	registerKey("e_ec_params_not_named_curve", Error, "RFC 5480 §2.1.1",
		"EC keys must name their curve (implicitCurve and specifiedCurve must not be used)",
		func(c *ctx) []string {
			if c.key != nil && c.key.alg.Equal(oidPublicKeyEC) && c.key.curve == nil {
				return one("id-ecPublicKey without a namedCurve")
			}
			return nil
		})

	registerKey("e_ec_curve_not_allowed", Error, "BR §6.1.5; ARCHITECTURE.md §2",
		"EC keys must be on P-256, P-384 or the SM2 curve",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keyECOther && c.key.curve != nil {
				return one("curve %s", curveName(c.key.curve))
			}
			return nil
		})

	registerKey("e_ec_point_invalid", Error, "RFC 5480 §2.2; SEC 1 v2 §3.2.2.1; GB/T 32918.1",
		"the EC public key must be an uncompressed point on its curve, not the identity",
		func(c *ctx) []string {
			if c.key != nil {
				if err := c.key.checkPoint(); err != nil {
					return one("%v", err)
				}
			}
			return nil
		})

	registerKey("e_sm2_spki_encoding", Error, "GM/T 0015; GM/T 0006; GM-STANDARDS.md §1.2",
		"an SM2 key is id-ecPublicKey (1.2.840.10045.2.1) with namedCurve 1.2.156.10197.1.301, not the SM2 OID as the algorithm",
		func(c *ctx) []string {
			if c.key != nil && c.key.alg.Equal(oidSM2) {
				return one("SubjectPublicKeyInfo algorithm is %s", c.key.alg)
			}
			return nil
		})
}
