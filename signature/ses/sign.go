package ses

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Signature algorithm OIDs.
var (
	// OIDSM2WithSM3 is SM3withSM2 (GM/T 0006), written by this package.
	OIDSM2WithSM3 = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	// OIDSM2Sign is sm2sign (GM/T 0010 numbering), accepted on verify.
	OIDSM2Sign         = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 1}
	OIDECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	OIDECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
)

// Errors of verification; callers tell reasons apart with errors.Is.
var (
	ErrBadSignature = errors.New("ses: signature does not verify")
	ErrAlgorithm    = errors.New("ses: unsupported or mismatched signature algorithm")
	ErrCertificate  = errors.New("ses: unparsable certificate")
)

// AlgorithmFor returns the signature algorithm OID for a public key.
func AlgorithmFor(pub crypto.PublicKey) (asn1.ObjectIdentifier, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key type %T", ErrAlgorithm, pub)
	}
	switch {
	case sm2.IsSM2PublicKey(k):
		return OIDSM2WithSM3, nil
	case k.Curve == elliptic.P256():
		return OIDECDSAWithSHA256, nil
	case k.Curve == elliptic.P384():
		return OIDECDSAWithSHA384, nil
	}
	return nil, fmt.Errorf("%w: curve %s", ErrAlgorithm, k.Curve.Params().Name)
}

// SignMessage signs msg with signer the way the seal structures are signed:
// SM2 with SM3 and the default user ID (Z computed by the signer, which
// must accept *sm2.SM2SignerOption, as gmsm keys and the hsm signers do), or
// ECDSA over SHA-256/SHA-384. It returns the DER signature and the OID.
func SignMessage(signer crypto.Signer, msg []byte) ([]byte, asn1.ObjectIdentifier, error) {
	alg, err := AlgorithmFor(signer.Public())
	if err != nil {
		return nil, nil, err
	}
	var sig []byte
	switch {
	case alg.Equal(OIDSM2WithSM3):
		sig, err = signer.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	case alg.Equal(OIDECDSAWithSHA256):
		d := sha256.Sum256(msg)
		sig, err = signer.Sign(rand.Reader, d[:], crypto.SHA256)
	default:
		d := sha512.Sum384(msg)
		sig, err = signer.Sign(rand.Reader, d[:], crypto.SHA384)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ses: sign: %w", err)
	}
	return sig, alg, nil
}

// VerifyMessage checks sig over msg by pub with algorithm alg. A raw r‖s
// value (64 bytes for SM2 and P-256, 96 for P-384) is accepted as well as
// DER (GM-STANDARDS.md §5.2).
func VerifyMessage(pub crypto.PublicKey, alg asn1.ObjectIdentifier, msg, sig []byte) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: key type %T", ErrAlgorithm, pub)
	}
	sm2Key := sm2.IsSM2PublicKey(k)
	var ok2 bool
	switch {
	case sm2Key && (alg.Equal(OIDSM2WithSM3) || alg.Equal(OIDSM2Sign)):
		ok2 = sm2.VerifyASN1WithSM2(k, nil, msg, derSig(sig, 32))
	case !sm2Key && alg.Equal(OIDECDSAWithSHA256) && k.Curve == elliptic.P256():
		d := sha256.Sum256(msg)
		ok2 = ecdsa.VerifyASN1(k, d[:], derSig(sig, 32))
	case !sm2Key && alg.Equal(OIDECDSAWithSHA384) && k.Curve == elliptic.P384():
		d := sha512.Sum384(msg)
		ok2 = ecdsa.VerifyASN1(k, d[:], derSig(sig, 48))
	default:
		return fmt.Errorf("%w: %s with a %s key", ErrAlgorithm, alg, k.Curve.Params().Name)
	}
	if !ok2 {
		return ErrBadSignature
	}
	return nil
}

// derSig returns sig as DER: a raw r‖s of 2*n bytes is converted.
func derSig(sig []byte, n int) []byte {
	if len(sig) != 2*n {
		return sig
	}
	in := cryptobyte.String(sig)
	var seq cryptobyte.String
	if in.ReadASN1(&seq, cbasn1.SEQUENCE) && in.Empty() {
		return sig // a DER value that happens to be 2n bytes long
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(sig[:n]))
		b.AddASN1BigInt(new(big.Int).SetBytes(sig[n:]))
	})
	return b.BytesOrPanic()
}

// MakeSeal makes a v4 SESeal: it encodes info, has signer (the seal
// maker's key, whose DER certificate is makerCert) sign DER(SES_SealInfo)
// and returns the parsed seal with its DER in Raw.
func MakeSeal(info SealInfo, makerCert []byte, signer crypto.Signer) (*Seal, error) {
	if info.Version == 0 {
		info.Version = V4
	}
	switch {
	case info.ESID == "":
		return nil, errors.New("ses: seal without esID")
	case info.Property.Name == "":
		return nil, errors.New("ses: seal without name")
	case !info.Property.ValidStart.Before(info.Property.ValidEnd):
		return nil, errors.New("ses: validStart must be before validEnd")
	case len(info.Property.Certs) == 0 && len(info.Property.CertDigests) == 0:
		return nil, errors.New("ses: seal lists no signer certificate")
	case len(info.Picture.Data) == 0:
		return nil, errors.New("ses: seal without picture")
	}
	rawInfo, err := info.Marshal(V4)
	if err != nil {
		return nil, err
	}
	c, err := smx509.ParseCertificate(makerCert)
	if err != nil {
		return nil, fmt.Errorf("%w: maker: %v", ErrCertificate, err)
	}
	if !publicEqual(c.PublicKey, signer.Public()) {
		return nil, errors.New("ses: the maker certificate is not the signer's")
	}
	sig, alg, err := SignMessage(signer, rawInfo)
	if err != nil {
		return nil, err
	}
	s := &Seal{Format: V4, RawInfo: rawInfo, Cert: makerCert, SignAlg: alg, SignedValue: sig}
	der, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	return ParseSeal(der)
}

func publicEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(*ecdsa.PublicKey)
	return ok && ka.Equal(b)
}

// MakerCertificate parses the maker's certificate.
func (s *Seal) MakerCertificate() (*smx509.Certificate, error) {
	c, err := smx509.ParseCertificate(s.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w: maker: %v", ErrCertificate, err)
	}
	return c, nil
}

// VerifyMaker checks the maker's signature on the seal and returns the
// maker's certificate (whose chain and status the caller checks).
func (s *Seal) VerifyMaker() (*smx509.Certificate, error) {
	c, err := s.MakerCertificate()
	if err != nil {
		return nil, err
	}
	// SEQUENCE { SES_SealInfo, cert, signAlgID }: the v1 rule and the v4
	// fallback (GM-STANDARDS.md §5.1, §5.2).
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(s.RawInfo)
		b.AddASN1OctetString(s.Cert)
		b.AddASN1ObjectIdentifier(s.SignAlg)
	})
	withCert := b.BytesOrPanic()
	inputs := [][]byte{s.RawInfo, withCert}
	if s.Format == V1 {
		inputs = [][]byte{withCert, s.RawInfo}
	}
	err = VerifyMessage(c.PublicKey, s.SignAlg, inputs[0], s.SignedValue)
	if errors.Is(err, ErrBadSignature) {
		err = VerifyMessage(c.PublicKey, s.SignAlg, inputs[1], s.SignedValue)
	}
	if err != nil {
		return c, fmt.Errorf("maker signature: %w", err)
	}
	return c, nil
}

// Lists reports whether the seal lists cert (DER) among the certificates
// allowed to use it: by equality, or by digest for a digest list (SM3,
// SHA-256 or SHA-1 named in the digest object's type).
func (s *Seal) Lists(cert []byte) bool {
	p := &s.Info.Property
	for _, c := range p.Certs {
		if bytes.Equal(c, cert) {
			return true
		}
	}
	for _, d := range p.CertDigests {
		var sum []byte
		switch d.Type {
		case "SM3", "sm3", "1.2.156.10197.1.401":
			h := sm3.Sum(cert)
			sum = h[:]
		case "SHA256", "SHA-256", "sha256", "2.16.840.1.101.3.4.2.1":
			h := sha256.Sum256(cert)
			sum = h[:]
		}
		if sum != nil && bytes.Equal(sum, d.Value) {
			return true
		}
	}
	return false
}

// ValidAt reports whether t is within the seal's validity.
func (s *Seal) ValidAt(t time.Time) bool {
	p := &s.Info.Property
	return !t.Before(p.ValidStart) && !t.After(p.ValidEnd)
}

// NewTBS returns a v4 TBS_Sign applying seal to data hashed as dataHash.
func NewTBS(seal []byte, at time.Time, dataHash []byte, propertyInfo string) *TBS {
	return &TBS{Version: V4, Seal: seal, TimeInfo: at.UTC().Truncate(time.Second), DataHash: dataHash, PropertyInfo: propertyInfo}
}

// Assemble builds a v4 SES_Signature from the DER TBS_Sign, the signer's
// DER certificate, the signature value over tbs and an optional DER
// time-stamp token over value. It checks the signature before returning.
func Assemble(tbs, cert, value, timeStamp []byte) (*Signature, error) {
	c, err := smx509.ParseCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("%w: signer: %v", ErrCertificate, err)
	}
	alg, err := AlgorithmFor(c.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := VerifyMessage(c.PublicKey, alg, tbs, value); err != nil {
		return nil, fmt.Errorf("signer signature: %w", err)
	}
	s := &Signature{Format: V4, RawTBS: tbs, Cert: cert, SignAlg: alg, Value: value, TimeStamp: timeStamp}
	der, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	return ParseSignature(der)
}

// Sign makes a v4 SES_Signature with a local signer (tests, tools; the
// platform's officials sign through the agent with Assemble).
func Sign(tbs *TBS, cert []byte, signer crypto.Signer) (*Signature, error) {
	raw, err := tbs.Marshal(V4)
	if err != nil {
		return nil, err
	}
	v, _, err := SignMessage(signer, raw)
	if err != nil {
		return nil, err
	}
	return Assemble(raw, cert, v, nil)
}

// SignerCertificate parses the signer's certificate.
func (s *Signature) SignerCertificate() (*smx509.Certificate, error) {
	c, err := smx509.ParseCertificate(s.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w: signer: %v", ErrCertificate, err)
	}
	return c, nil
}

// Verify checks the signer's signature over TBS_Sign and returns the
// signer's certificate. It checks nothing else: the seal, the data hash,
// the chain and the time are the caller's (package signature/seal).
func (s *Signature) Verify() (*smx509.Certificate, error) {
	c, err := s.SignerCertificate()
	if err != nil {
		return nil, err
	}
	if err := VerifyMessage(c.PublicKey, s.SignAlg, s.RawTBS, s.Value); err != nil {
		return c, fmt.Errorf("signer signature: %w", err)
	}
	return c, nil
}

// Seal parses the seal the signature applies.
func (s *Signature) Seal() (*Seal, error) { return ParseSeal(s.TBS.Seal) }

// SM3 returns the SM3 digest of data (the dataHash of SM2 signers).
func SM3(data []byte) []byte {
	h := sm3.Sum(data)
	return h[:]
}

// DataHash hashes data the way a signer with algorithm alg states it in
// dataHash: SM3 for SM2 (GB/T 38540 §7.3), SHA-256 or SHA-384 for ECDSA.
func DataHash(alg asn1.ObjectIdentifier, data []byte) []byte {
	switch {
	case alg.Equal(OIDECDSAWithSHA256):
		h := sha256.Sum256(data)
		return h[:]
	case alg.Equal(OIDECDSAWithSHA384):
		h := sha512.Sum384(data)
		return h[:]
	}
	return SM3(data)
}
