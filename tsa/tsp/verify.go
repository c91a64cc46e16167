package tsp

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrVerify is wrapped by every verification failure of Token.Verify.
var ErrVerify = errors.New("tsp: token does not verify")

// Token is a parsed time-stamp token: a CMS SignedData over a TSTInfo
// with exactly one signer (RFC 3161 §2.4.2).
type Token struct {
	Raw  []byte
	Info *TSTInfo
	// Certificates are those the token carries (none unless certReq).
	Certificates []*smx509.Certificate

	contentType asn1.ObjectIdentifier
	eContent    []byte
	// signer identifier: issuer and serial, or subjectKeyIdentifier.
	sidIssuer []byte
	sidSerial *big.Int
	sidSKI    []byte
	digest    *HashAlg
	// signedAttrs is the [0] IMPLICIT element as received; the signature
	// is over it with the SET tag (RFC 5652 §5.4).
	signedAttrs []byte
	sigAlg      asn1.ObjectIdentifier
	signature   []byte
	attrs       map[string][]byte // attribute OID -> DER of its single value
}

var tagCtx0 = cbasn1.Tag(0).Constructed().ContextSpecific()

// ParseToken parses the DER ContentInfo of a token strictly. It accepts the
// RFC 5652 and the GM/T 0010 signedData OIDs.
func ParseToken(der []byte) (*Token, error) {
	t := &Token{Raw: der}
	in := cryptobyte.String(der)
	var ci, content, sd cryptobyte.String
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("tsp: token is not one DER SEQUENCE")
	}
	if !ci.ReadASN1ObjectIdentifier(&t.contentType) || !ci.ReadASN1(&content, tagCtx0) || !ci.Empty() {
		return nil, errors.New("tsp: malformed ContentInfo")
	}
	if !t.contentType.Equal(OIDSignedData) && !t.contentType.Equal(OIDSignedDataGM) {
		return nil, fmt.Errorf("tsp: content type %s is not signedData", t.contentType)
	}
	if !content.ReadASN1(&sd, cbasn1.SEQUENCE) || !content.Empty() {
		return nil, errors.New("tsp: malformed SignedData")
	}
	var version int64
	var digestAlgs, eci, signerInfos cryptobyte.String
	if !sd.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version != 1 && version != 3 {
		return nil, errors.New("tsp: SignedData version is not 3 (RFC 5652 §5.1) or 1 (seen from older signers)")
	}
	if !sd.ReadASN1(&digestAlgs, cbasn1.SET) || !sd.ReadASN1(&eci, cbasn1.SEQUENCE) {
		return nil, errors.New("tsp: malformed SignedData")
	}
	var ect asn1.ObjectIdentifier
	var ec, octets cryptobyte.String
	if !eci.ReadASN1ObjectIdentifier(&ect) || !ect.Equal(OIDTSTInfo) {
		return nil, errors.New("tsp: eContentType is not id-ct-TSTInfo")
	}
	if !eci.ReadASN1(&ec, tagCtx0) || !eci.Empty() || !ec.ReadASN1(&octets, cbasn1.OCTET_STRING) || !ec.Empty() {
		return nil, errors.New("tsp: malformed eContent")
	}
	t.eContent = []byte(octets)
	if sd.PeekASN1Tag(tagCtx0) {
		var certs cryptobyte.String
		sd.ReadASN1(&certs, tagCtx0)
		for !certs.Empty() {
			var c cryptobyte.String
			if !certs.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, errors.New("tsp: malformed certificates")
			}
			cert, err := smx509.ParseCertificate(c)
			if err != nil {
				return nil, fmt.Errorf("tsp: token certificate: %w", err)
			}
			t.Certificates = append(t.Certificates, cert)
		}
	}
	if sd.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var crls cryptobyte.String
		sd.ReadASN1(&crls, cbasn1.Tag(1).Constructed().ContextSpecific())
	}
	if !sd.ReadASN1(&signerInfos, cbasn1.SET) || !sd.Empty() {
		return nil, errors.New("tsp: malformed signerInfos")
	}
	var si cryptobyte.String
	if !signerInfos.ReadASN1(&si, cbasn1.SEQUENCE) || !signerInfos.Empty() {
		return nil, errors.New("tsp: a token has exactly one SignerInfo (RFC 3161 §2.4.2)")
	}
	if err := t.parseSignerInfo(si); err != nil {
		return nil, err
	}
	// The SignerInfo's digest algorithm must be among digestAlgorithms.
	found := false
	for !digestAlgs.Empty() {
		oid, err := parseAlgorithm(&digestAlgs)
		if err != nil {
			return nil, errors.New("tsp: malformed digestAlgorithms")
		}
		found = found || oid.Equal(t.digest.OID)
	}
	if !found {
		return nil, errors.New("tsp: signer digest algorithm not listed in digestAlgorithms")
	}
	info, err := ParseTSTInfo(t.eContent)
	if err != nil {
		return nil, err
	}
	t.Info = info
	return t, nil
}

func (t *Token) parseSignerInfo(si cryptobyte.String) error {
	var v int64
	if !si.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || (v != 1 && v != 3) {
		return errors.New("tsp: malformed SignerInfo version")
	}
	switch {
	case v == 1 && si.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias, name cryptobyte.String
		t.sidSerial = new(big.Int)
		if !si.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Integer(t.sidSerial) || !ias.Empty() {
			return errors.New("tsp: malformed issuerAndSerialNumber")
		}
		t.sidIssuer = []byte(name)
	case v == 3 && si.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		var ski cryptobyte.String
		si.ReadASN1(&ski, cbasn1.Tag(0).ContextSpecific())
		t.sidSKI = []byte(ski)
	default:
		return errors.New("tsp: SignerInfo version and sid disagree (RFC 5652 §5.3)")
	}
	oid, err := parseAlgorithm(&si)
	if err != nil {
		return errors.New("tsp: malformed SignerInfo digestAlgorithm")
	}
	if t.digest = HashByOID(oid); t.digest == nil {
		return fmt.Errorf("tsp: signer digest algorithm %s not supported", oid)
	}
	var attrs cryptobyte.String
	if !si.ReadASN1Element(&attrs, tagCtx0) {
		return errors.New("tsp: a token's SignerInfo must have signed attributes")
	}
	t.signedAttrs = []byte(attrs)
	if err := t.parseAttrs(); err != nil {
		return err
	}
	var alg cryptobyte.String
	if !si.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&t.sigAlg) {
		return errors.New("tsp: malformed signatureAlgorithm")
	}
	if !alg.Empty() {
		var null cryptobyte.String
		if !alg.ReadASN1(&null, cbasn1.NULL) || !alg.Empty() {
			return errors.New("tsp: signatureAlgorithm with unexpected parameters")
		}
	}
	if !si.ReadASN1Bytes(&t.signature, cbasn1.OCTET_STRING) {
		return errors.New("tsp: malformed signature")
	}
	if si.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var u cryptobyte.String
		si.ReadASN1(&u, cbasn1.Tag(1).Constructed().ContextSpecific())
	}
	if !si.Empty() {
		return errors.New("tsp: unexpected fields in SignerInfo")
	}
	return nil
}

// parseAttrs reads the signed attributes: each type once, each with one
// value (RFC 5652 §5.3, §11).
func (t *Token) parseAttrs() error {
	in := cryptobyte.String(t.signedAttrs)
	var set cryptobyte.String
	in.ReadASN1(&set, tagCtx0)
	t.attrs = map[string][]byte{}
	for !set.Empty() {
		var a, vals cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !set.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&oid) || !a.ReadASN1(&vals, cbasn1.SET) || !a.Empty() {
			return errors.New("tsp: malformed signed attribute")
		}
		var val cryptobyte.String
		var tag cbasn1.Tag
		if !vals.ReadAnyASN1Element(&val, &tag) || !vals.Empty() {
			return fmt.Errorf("tsp: signed attribute %s must have exactly one value", oid)
		}
		if _, dup := t.attrs[oid.String()]; dup {
			return fmt.Errorf("tsp: signed attribute %s repeated", oid)
		}
		t.attrs[oid.String()] = []byte(val)
	}
	return nil
}

// VerifyOptions say what a token is verified against.
type VerifyOptions struct {
	// Roots are the trust anchors. Required.
	Roots *smx509.CertPool
	// Intermediates and Certificates complete what the token carries: the
	// TSA certificate when the request had no certReq, and its issuers.
	Intermediates []*smx509.Certificate
	// Request, when set, must match: imprint, nonce and (when the request
	// named one) policy (RFC 3161 §2.4.2).
	Request *Request
	// Data, when set, is the time-stamped data: the imprint must be its
	// hash. Digest, when set, is compared with the imprint instead.
	Data   []byte
	Digest []byte
	// Policies, when not empty, are the acceptable TSA policies.
	Policies []asn1.ObjectIdentifier
	// CurrentTime is when the TSA certificate chain must be valid; zero
	// means the token's genTime (the usual check for a time-stamp).
	CurrentTime time.Time
}

// Verify checks the token: the signature over the signed attributes, the
// contentType and messageDigest attributes, the ESS signing-certificate
// attribute against the TSA certificate, the certificate's chain to
// opts.Roots at genTime (or opts.CurrentTime) with id-kp-timeStamping as
// its only, critical, extended key usage (RFC 3161 §2.3), the certificate
// an end entity for signing (checkTSACert), and the match
// with the request, data or digest. It returns the TSA certificate.
func (t *Token) Verify(opts VerifyOptions) (*smx509.Certificate, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrVerify, fmt.Sprintf(format, args...))
	}
	if opts.Roots == nil {
		return nil, fail("no trust anchors")
	}
	candidates := append(append([]*smx509.Certificate{}, t.Certificates...), opts.Intermediates...)
	var cert *smx509.Certificate
	for _, c := range candidates {
		if t.sidIssuer != nil && bytes.Equal(c.RawIssuer, t.sidIssuer) && c.SerialNumber.Cmp(t.sidSerial) == 0 ||
			t.sidSKI != nil && bytes.Equal(c.SubjectKeyId, t.sidSKI) {
			cert = c
			break
		}
	}
	if cert == nil {
		return nil, fail("the TSA certificate is neither in the token nor given")
	}
	// Signed attributes.
	if ct, ok := t.attrs[oidAttrContentType.String()]; !ok || !bytes.Equal(ct, mustOID(OIDTSTInfo)) {
		return nil, fail("contentType attribute is not id-ct-TSTInfo")
	}
	md, ok := t.attrs[oidAttrMessageDigest.String()]
	if !ok {
		return nil, fail("no messageDigest attribute")
	}
	var mdv cryptobyte.String
	if s := cryptobyte.String(md); !s.ReadASN1(&mdv, cbasn1.OCTET_STRING) || !bytes.Equal(mdv, t.digest.Sum(t.eContent)) {
		return nil, fail("messageDigest does not match the TSTInfo")
	}
	if err := t.checkESS(cert); err != nil {
		return nil, fail("%v", err)
	}
	// Signature over the DER SET OF attributes (RFC 5652 §5.4).
	msg := append([]byte{0x31}, t.signedAttrs[1:]...)
	if err := verifySignature(cert, t.sigAlg, t.digest, msg, t.signature); err != nil {
		return nil, fail("%v", err)
	}
	// The TSA certificate.
	if err := checkTSACert(cert); err != nil {
		return nil, fail("%v", err)
	}
	at := opts.CurrentTime
	if at.IsZero() {
		at = t.Info.GenTime
	}
	inter := smx509.NewCertPool()
	for _, c := range candidates {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: opts.Roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageTimeStamping}}); err != nil {
		return nil, fail("TSA certificate: %v", err)
	}
	// The match with what was time-stamped.
	mi := t.Info.MessageImprint
	if r := opts.Request; r != nil {
		if !mi.HashAlgorithm.Equal(r.MessageImprint.HashAlgorithm) || !bytes.Equal(mi.HashedMessage, r.MessageImprint.HashedMessage) {
			return nil, fail("messageImprint differs from the request's")
		}
		if (r.Nonce == nil) != (t.Info.Nonce == nil) || r.Nonce != nil && r.Nonce.Cmp(t.Info.Nonce) != 0 {
			return nil, fail("nonce differs from the request's")
		}
		if r.ReqPolicy != nil && !r.ReqPolicy.Equal(t.Info.Policy) {
			return nil, fail("policy %s is not the requested %s", t.Info.Policy, r.ReqPolicy)
		}
	}
	if opts.Data != nil && !bytes.Equal(mi.Hash.Sum(opts.Data), mi.HashedMessage) {
		return nil, fail("messageImprint is not the %s of the data", mi.Hash.Name)
	}
	if opts.Digest != nil && !bytes.Equal(opts.Digest, mi.HashedMessage) {
		return nil, fail("messageImprint differs from the digest")
	}
	if len(opts.Policies) > 0 {
		ok := false
		for _, p := range opts.Policies {
			ok = ok || p.Equal(t.Info.Policy)
		}
		if !ok {
			return nil, fail("policy %s is not acceptable", t.Info.Policy)
		}
	}
	return cert, nil
}

// derSHA256NoParams is the AlgorithmIdentifier id-sha256 without
// parameters, the DEFAULT of ESSCertIDv2's hashAlgorithm (RFC 5035 §4).
var derSHA256NoParams = func() []byte {
	var b cryptobyte.Builder
	addAlgorithm(&b, SHA256.OID, false)
	return b.BytesOrPanic()
}()

func mustOID(oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b
}

// checkESS finds signingCertificateV2 (RFC 5816) or signingCertificate
// (RFC 2634) and checks that its first ESSCertID names cert.
func (t *Token) checkESS(cert *smx509.Certificate) error {
	v2, hasV2 := t.attrs[oidAttrSigningCertV2.String()]
	v1, hasV1 := t.attrs[oidAttrSigningCert.String()]
	if !hasV2 && !hasV1 {
		return errors.New("no signingCertificate or signingCertificateV2 attribute (RFC 3161 §2.4.2, RFC 5816)")
	}
	val := v1
	if hasV2 {
		val = v2
	}
	in := cryptobyte.String(val)
	var sc, certs, id cryptobyte.String
	if !in.ReadASN1(&sc, cbasn1.SEQUENCE) || !sc.ReadASN1(&certs, cbasn1.SEQUENCE) || !certs.ReadASN1(&id, cbasn1.SEQUENCE) {
		return errors.New("malformed signing certificate attribute")
	}
	h := &HashAlg{Name: "sha1", Size: sha1.Size, Hash: crypto.SHA1}
	if hasV2 {
		h = SHA256
		if id.PeekASN1Tag(cbasn1.SEQUENCE) {
			var alg cryptobyte.String
			id.ReadASN1Element(&alg, cbasn1.SEQUENCE)
			// hashAlgorithm DEFAULT {algorithm id-sha256}: DER leaves the
			// default out (X.690 §11.5), and neither OpenSSL nor Bouncy
			// Castle writes it, so written out it is refused like any
			// other non-DER encoding. SHA-256 with NULL parameters is
			// another value than the default, valid DER, and accepted
			// (RFC 5754 §2: implementations MUST accept both forms).
			if bytes.Equal(alg, derSHA256NoParams) {
				return errors.New("ESSCertIDv2 hashAlgorithm encodes the DEFAULT sha256, which DER omits (X.690 §11.5)")
			}
			oid, err := parseAlgorithm(&alg)
			if err != nil {
				return errors.New("malformed ESSCertIDv2 hashAlgorithm")
			}
			if h = HashByOID(oid); h == nil {
				return fmt.Errorf("ESSCertIDv2 hash %s not supported", oid)
			}
		}
	}
	var sum []byte
	if !id.ReadASN1Bytes(&sum, cbasn1.OCTET_STRING) {
		return errors.New("malformed ESSCertID certHash")
	}
	if !bytes.Equal(sum, h.Sum(cert.Raw)) {
		return errors.New("the signing certificate attribute does not name the TSA certificate")
	}
	if id.PeekASN1Tag(cbasn1.SEQUENCE) {
		var is, names, name cryptobyte.String
		serial := new(big.Int)
		if !id.ReadASN1(&is, cbasn1.SEQUENCE) || !is.ReadASN1(&names, cbasn1.SEQUENCE) || !is.ReadASN1Integer(serial) {
			return errors.New("malformed ESSCertID issuerSerial")
		}
		if !names.ReadASN1(&name, cbasn1.Tag(4).Constructed().ContextSpecific()) || !bytes.Equal(name, cert.RawIssuer) || serial.Cmp(cert.SerialNumber) != 0 {
			return errors.New("ESSCertID issuerSerial does not name the TSA certificate")
		}
	}
	return nil
}

// verifySignature checks sig over msg with cert's key. SM2 uses Z from the
// default user ID (GM/T 0009 §8) and accepts both SM2 signature OIDs
// (ARCHITECTURE.md §2).
func verifySignature(cert *smx509.Certificate, sigAlg asn1.ObjectIdentifier, digest *HashAlg, msg, sig []byte) error {
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(pub) {
			if !sigAlg.Equal(oidSM2Sign) && !sigAlg.Equal(oidSM2WithSM3) && !sigAlg.Equal(oidECPublicKey) {
				return fmt.Errorf("signature algorithm %s does not fit an SM2 key", sigAlg)
			}
			if digest != SM3 {
				return errors.New("an SM2 signer must digest with SM3")
			}
			if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
				return errors.New("SM2 signature invalid")
			}
			return nil
		}
		want := map[*HashAlg]asn1.ObjectIdentifier{SHA256: oidECDSAWithSHA256, SHA384: oidECDSAWithSHA384, SHA512: oidECDSAWithSHA512}[digest]
		if want == nil || !sigAlg.Equal(want) && !sigAlg.Equal(oidECPublicKey) {
			return fmt.Errorf("signature algorithm %s does not fit an ECDSA key with %s", sigAlg, digest.Name)
		}
		if !ecdsa.VerifyASN1(pub, digest.Sum(msg), sig) {
			return errors.New("ECDSA signature invalid")
		}
		return nil
	case *rsa.PublicKey:
		want := map[*HashAlg]asn1.ObjectIdentifier{SHA256: oidSHA256WithRSA, SHA384: oidSHA384WithRSA, SHA512: oidSHA512WithRSA}[digest]
		if want == nil || !sigAlg.Equal(want) && !sigAlg.Equal(oidRSAEncryption) {
			return fmt.Errorf("signature algorithm %s does not fit an RSA key with %s", sigAlg, digest.Name)
		}
		if err := rsa.VerifyPKCS1v15(pub, digest.Hash, digest.Sum(msg), sig); err != nil {
			return fmt.Errorf("RSA signature invalid: %w", err)
		}
		return nil
	}
	return fmt.Errorf("unsupported TSA key %T", cert.PublicKey)
}

// oidExtKeyUsageBits is id-ce-keyUsage (RFC 5280 §4.2.1.3).
var oidExtKeyUsageBits = asn1.ObjectIdentifier{2, 5, 29, 15}

// checkTSACert requires an end-entity certificate (RFC 5280 §4.2.1.9: a CA
// certificate signs certificates, not tokens), a key usage, when present,
// of digitalSignature and/or nonRepudiation and nothing else, and
// id-kp-timeStamping as the only extended key usage, marked critical (RFC
// 3161 §2.3): OpenSSL's X509_PURPOSE_TIMESTAMP_SIGN with cA refused.
func checkTSACert(cert *smx509.Certificate) error {
	if cert.BasicConstraintsValid && cert.IsCA {
		return errors.New("TSA certificate is a CA certificate (basicConstraints cA TRUE)")
	}
	const signing = smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidExtKeyUsageBits) && (cert.KeyUsage&signing == 0 || cert.KeyUsage&^signing != 0) {
			return fmt.Errorf("TSA certificate key usage %s is not digitalSignature and/or nonRepudiation alone", keyUsageNames(cert.KeyUsage))
		}
	}
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			if !e.Critical {
				return errors.New("TSA certificate EKU is not critical (RFC 3161 §2.3)")
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != smx509.ExtKeyUsageTimeStamping || len(cert.UnknownExtKeyUsage) != 0 {
				return errors.New("TSA certificate EKU is not id-kp-timeStamping alone (RFC 3161 §2.3)")
			}
			return nil
		}
	}
	return errors.New("TSA certificate has no extended key usage")
}

// keyUsageNames names the bits of ku (RFC 5280 §4.2.1.3).
func keyUsageNames(ku smx509.KeyUsage) string {
	names := []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "(none)"
	}
	return strings.Join(out, ", ")
}
