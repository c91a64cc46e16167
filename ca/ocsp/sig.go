package ocsp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// keyKind is the family of a public key, as far as OCSP signatures go.
type keyKind int

const (
	kindUnsupported keyKind = iota
	kindSM2
	kindECDSA
	kindRSA
)

func keyKindOf(pub crypto.PublicKey) keyKind {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			return kindSM2
		}
		return kindECDSA
	case *rsa.PublicKey:
		return kindRSA
	}
	return kindUnsupported
}

// sigAlg is one signature algorithm this package writes or verifies. SHA-1
// based ones are absent on purpose (CA/B Forum SC-053 ended SHA-1 OCSP
// signing).
type sigAlg struct {
	algo      smx509.SignatureAlgorithm
	oid       asn1.ObjectIdentifier
	hash      crypto.Hash // 0 for SM2, which hashes Z||M with SM3 itself
	kind      keyKind
	nullParam bool // RSA PKCS #1 v1.5 writes NULL parameters (RFC 4055 §5)
	parseOnly bool
}

var sigAlgs = []sigAlg{
	{algo: smx509.SM2WithSM3, oid: OIDSM2WithSM3, kind: kindSM2},
	{algo: smx509.SM2WithSM3, oid: OIDSM2Sign, kind: kindSM2, parseOnly: true},
	{algo: smx509.ECDSAWithSHA256, oid: oidECDSAWithSHA256, hash: crypto.SHA256, kind: kindECDSA},
	{algo: smx509.ECDSAWithSHA384, oid: oidECDSAWithSHA384, hash: crypto.SHA384, kind: kindECDSA},
	{algo: smx509.ECDSAWithSHA512, oid: oidECDSAWithSHA512, hash: crypto.SHA512, kind: kindECDSA},
	{algo: smx509.SHA256WithRSA, oid: oidSHA256WithRSA, hash: crypto.SHA256, kind: kindRSA, nullParam: true},
	{algo: smx509.SHA384WithRSA, oid: oidSHA384WithRSA, hash: crypto.SHA384, kind: kindRSA, nullParam: true},
	{algo: smx509.SHA512WithRSA, oid: oidSHA512WithRSA, hash: crypto.SHA512, kind: kindRSA, nullParam: true},
}

// sigAlgForOID finds the algorithm of a signatureAlgorithm; parameters must
// be absent or NULL (GM-STANDARDS.md §1.2: accept NULL for SM2 too).
func sigAlgForOID(oid asn1.ObjectIdentifier, params []byte) (sigAlg, error) {
	if !nullOrAbsent(params) {
		return sigAlg{}, fmt.Errorf("signature algorithm %v: unexpected parameters", oid)
	}
	for _, a := range sigAlgs {
		if a.oid.Equal(oid) {
			return a, nil
		}
	}
	return sigAlg{}, fmt.Errorf("unsupported signature algorithm %v", oid)
}

// chooseSigAlg picks the algorithm CreateResponse signs with: the requested
// one if it fits the key, else by key: SM2 with SM3, ECDSA with the hash
// matching the curve size, RSA with SHA-256.
func chooseSigAlg(pub crypto.PublicKey, requested smx509.SignatureAlgorithm) (sigAlg, error) {
	kind := keyKindOf(pub)
	if kind == kindUnsupported {
		return sigAlg{}, fmt.Errorf("unsupported responder key type %T", pub)
	}
	want := requested
	if want == smx509.UnknownSignatureAlgorithm {
		switch kind {
		case kindSM2:
			want = smx509.SM2WithSM3
		case kindRSA:
			want = smx509.SHA256WithRSA
		case kindECDSA:
			switch pub.(*ecdsa.PublicKey).Curve {
			case elliptic.P384():
				want = smx509.ECDSAWithSHA384
			case elliptic.P521():
				want = smx509.ECDSAWithSHA512
			default:
				want = smx509.ECDSAWithSHA256
			}
		}
	}
	for _, a := range sigAlgs {
		if a.algo == want && !a.parseOnly {
			if a.kind != kind {
				return sigAlg{}, fmt.Errorf("signature algorithm %v does not fit a %T key", want, pub)
			}
			return a, nil
		}
	}
	return sigAlg{}, fmt.Errorf("unsupported signature algorithm %v", want)
}

// signTBS signs the DER tbsResponseData. SM2 signs the message with the
// GM/T 0009 default user ID (the signer computes Z and e, as hsm signers do
// with sm2.DefaultSM2SignerOpts); the others sign a digest.
func signTBS(signer crypto.Signer, a sigAlg, tbs []byte) ([]byte, error) {
	if a.kind == kindSM2 {
		return signer.Sign(rand.Reader, tbs, sm2.DefaultSM2SignerOpts)
	}
	h := a.hash.New()
	h.Write(tbs)
	return signer.Sign(rand.Reader, h.Sum(nil), a.hash)
}

// verifySig checks sig over signed with pub under a.
func verifySig(a sigAlg, pub crypto.PublicKey, signed, sig []byte) error {
	if keyKindOf(pub) != a.kind {
		return fmt.Errorf("signature algorithm %v does not fit a %T key", a.oid, pub)
	}
	switch a.kind {
	case kindSM2:
		if !sm2.VerifyASN1WithSM2(pub.(*ecdsa.PublicKey), nil, signed, sig) {
			return errors.New("SM2 verification failure")
		}
	case kindECDSA:
		h := a.hash.New()
		h.Write(signed)
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), h.Sum(nil), sig) {
			return errors.New("ECDSA verification failure")
		}
	case kindRSA:
		h := a.hash.New()
		h.Write(signed)
		if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), a.hash, h.Sum(nil), sig); err != nil {
			return err
		}
	}
	return nil
}
