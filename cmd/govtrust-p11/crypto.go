package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"hash"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// mechInfo is CK_MECHANISM_INFO (Base §3.5).
type mechInfo struct {
	typ, min, max, flags uint
}

// mechanisms this token implements, in the order C_GetMechanismList lists
// them. No CKF_HW: everything runs in software.
var mechanisms = []mechInfo{
	{ckmSM2KeyPairGen, 256, 256, ckfGenerateKeyPair},
	{ckmSM2Sign, 256, 256, ckfSign},
	{ckmSM3SM2, 256, 256, ckfSign},
	{ckmSM2Encrypt, 256, 256, ckfDecrypt},
	{ckmSM3, 0, 0, ckfDigest},
	{ckmECKeyPairGen, 256, 256, ckfGenerateKeyPair | ckfECFP | ckfECNamedCurve | ckfECUncompress},
	{ckmECDSA, 256, 256, ckfSign | ckfECFP | ckfECNamedCurve | ckfECUncompress},
	{ckmECDSASHA256, 256, 256, ckfSign | ckfECFP | ckfECNamedCurve | ckfECUncompress},
	{ckmSHA256, 0, 0, ckfDigest},
}

func mechanismInfo(t uint) (mechInfo, bool) {
	for _, mi := range mechanisms {
		if mi.typ == t {
			return mi, true
		}
	}
	return mechInfo{}, false
}

// mechanism is a CK_MECHANISM copied out of C memory.
type mechanism struct {
	typ   uint
	param []byte
}

// Curve OIDs and their DER encodings as CKA_EC_PARAMS (Mechanisms §2.3.3:
// the namedCurve choice of ECParameters).
var (
	oidSM2  = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301} // GM-STANDARDS.md §1.2
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}

	paramsSM2  = mustDER(oidSM2)
	paramsP256 = mustDER(oidP256)
)

func mustDER(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// keySpec describes what a key-pair mechanism makes.
type keySpec struct {
	mech    uint
	keyType uint
	params  []byte
	// usage defaults for attributes the templates leave out
	encryptDecrypt bool
}

func (m *module) generateKeyPair(sh uint, mech mechanism, pubTmpl, privTmpl []attribute) (uint, uint, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return 0, 0, r
	}
	var spec keySpec
	switch mech.typ {
	case ckmSM2KeyPairGen:
		spec = keySpec{mech: mech.typ, keyType: ckkSM2, params: paramsSM2, encryptDecrypt: true}
	case ckmECKeyPairGen:
		spec = keySpec{mech: mech.typ, keyType: ckkEC, params: paramsP256}
	default:
		return 0, 0, ckrMechanismInvalid
	}
	if len(mech.param) != 0 {
		return 0, 0, ckrMechanismParamInvalid
	}
	pa, r := parseTemplate(pubTmpl)
	if r != ckrOK {
		return 0, 0, r
	}
	ka, r := parseTemplate(privTmpl)
	if r != ckrOK {
		return 0, 0, r
	}
	if r := checkKeyTemplates(spec, pa, ka); r != ckrOK {
		return 0, 0, r
	}
	pub := withDefaults(pa, publicKeyDefaults(spec))
	priv := withDefaults(ka, privateKeyDefaults(spec))
	if r := m.canWrite(s, pub.token(), pub.private()); r != ckrOK {
		return 0, 0, r
	}
	if r := m.canWrite(s, priv.token(), true); r != ckrOK {
		return 0, 0, r
	}

	d, point, err := generate(spec.keyType)
	if err != nil {
		warnf("generate key: %v", err)
		return 0, 0, ckrFunctionFailed
	}
	defer clear(d)
	spki, err := publicKeyInfo(spec.keyType, point)
	if err != nil {
		warnf("encode public key: %v", err)
		return 0, 0, ckrGeneralError
	}
	ecPoint := mustDER(point) // DER OCTET STRING (Mechanisms §2.3.3)
	for _, o := range []*object{pub, priv} {
		o.attrs[ckaECPoint] = ecPoint
		o.attrs[ckaPublicKeyInfo] = spki
	}
	// A label or ID given for one half only names both halves, and the
	// default ID is SHA-1 of the public point: the RFC 5280 §4.2.1.2 method
	// (1) key identifier, so a certificate's SKI finds its key.
	defaultID := sha1.Sum(point)
	for _, t := range []uint{ckaLabel, ckaID} {
		pv, pok := pa[t]
		kv, kok := ka[t]
		switch {
		case pok && !kok:
			priv.attrs[t] = pv
		case kok && !pok:
			pub.attrs[t] = kv
		case !pok && !kok && t == ckaID:
			pub.attrs[t], priv.attrs[t] = defaultID[:], defaultID[:]
		}
	}
	priv.attrs[ckaValue] = append([]byte(nil), d...)
	if r := m.addObject(s, priv); r != ckrOK {
		return 0, 0, r
	}
	if r := m.addObject(s, pub); r != ckrOK {
		m.dropObject(priv)
		return 0, 0, r
	}
	return pub.handle, priv.handle, ckrOK
}

// dropObject undoes addObject after a later step failed.
func (m *module) dropObject(o *object) {
	if o.fileID != "" {
		if err := m.st.removeObject(o.fileID); err != nil {
			warnf("%v", err)
		}
		delete(m.byFile, o.fileID)
	}
	delete(m.objects, o.handle)
}

// checkKeyTemplates enforces the token's key policy on the templates of
// C_GenerateKeyPair: private keys are private, sensitive, never extractable
// and need no context-specific login; attributes the token computes cannot
// be supplied (Base §4.8–§4.9; CKR_ATTRIBUTE_READ_ONLY per §5.14).
func checkKeyTemplates(spec keySpec, pa, ka attrMap) uint {
	if !pa.only(pubKeyAttrs...) || !ka.only(privKeyAttrs...) {
		return ckrAttributeTypeInvalid
	}
	for _, a := range []attrMap{pa, ka} {
		for _, t := range []uint{ckaLocal, ckaKeyGenMechanism, ckaECPoint, ckaPublicKeyInfo, ckaValue,
			ckaAlwaysSensitive, ckaNeverExtractable} {
			if _, ok := a[t]; ok {
				return ckrAttributeReadOnly
			}
		}
		if kt, ok := a.ulong(ckaKeyType); ok && kt != spec.keyType {
			return ckrTemplateInconsistent
		}
		if p, ok := a[ckaECParams]; ok && !bytes.Equal(p, spec.params) {
			if spec.keyType == ckkEC {
				return ckrCurveNotSupported
			}
			return ckrTemplateInconsistent
		}
	}
	if c, ok := pa.ulong(ckaClass); ok && c != ckoPublicKey {
		return ckrTemplateInconsistent
	}
	if c, ok := ka.ulong(ckaClass); ok && c != ckoPrivateKey {
		return ckrTemplateInconsistent
	}
	if spec.keyType == ckkEC {
		// CKM_EC_KEY_PAIR_GEN needs the curve (Mechanisms §2.3.5).
		if _, ok := pa[ckaECParams]; !ok {
			return ckrTemplateIncomplete
		}
	}
	if pa.boolean(ckaTrusted, false) {
		return ckrAttributeReadOnly
	}
	if !ka.boolean(ckaPrivate, true) || !ka.boolean(ckaSensitive, true) ||
		ka.boolean(ckaExtractable, false) || ka.boolean(ckaAlwaysAuthenticate, false) {
		return ckrAttributeValueInvalid
	}
	return ckrOK
}

func keyDefaults(class uint, private bool, spec keySpec) attrMap {
	d := storageDefaults(class, private)
	d[ckaKeyType] = encUlong(spec.keyType)
	d[ckaID] = []byte{}
	d[ckaStartDate], d[ckaEndDate] = []byte{}, []byte{}
	d[ckaDerive] = encBool(false)
	d[ckaLocal] = encBool(true)
	d[ckaKeyGenMechanism] = encUlong(spec.mech)
	d[ckaSubject] = []byte{}
	d[ckaECParams] = spec.params
	return d
}

func publicKeyDefaults(spec keySpec) attrMap {
	d := keyDefaults(ckoPublicKey, false, spec)
	d[ckaEncrypt] = encBool(spec.encryptDecrypt)
	d[ckaVerify] = encBool(true)
	d[ckaVerifyRecover] = encBool(false)
	d[ckaWrap] = encBool(false)
	d[ckaTrusted] = encBool(false)
	return d
}

func privateKeyDefaults(spec keySpec) attrMap {
	d := keyDefaults(ckoPrivateKey, true, spec)
	d[ckaSensitive] = encBool(true)
	d[ckaDecrypt] = encBool(spec.encryptDecrypt)
	d[ckaSign] = encBool(true)
	d[ckaSignRecover] = encBool(false)
	d[ckaUnwrap] = encBool(false)
	d[ckaExtractable] = encBool(false)
	d[ckaAlwaysSensitive] = encBool(true)
	d[ckaNeverExtractable] = encBool(true)
	d[ckaWrapWithTrusted] = encBool(false)
	d[ckaAlwaysAuthenticate] = encBool(false)
	return d
}

// generate makes a key pair and returns the private scalar (32 bytes) and the
// uncompressed public point 04||X||Y.
func generate(keyType uint) (d, point []byte, err error) {
	if keyType == ckkSM2 {
		k, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		ek, err := k.ECDH()
		if err != nil {
			return nil, nil, err
		}
		return ek.Bytes(), ek.PublicKey().Bytes(), nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	d, err = k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	point, err = k.PublicKey.Bytes()
	return d, point, err
}

func publicKey(keyType uint, point []byte) (*ecdsa.PublicKey, error) {
	if keyType == ckkSM2 {
		return sm2.NewPublicKey(point)
	}
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
}

// publicKeyInfo is the DER SubjectPublicKeyInfo (CKA_PUBLIC_KEY_INFO, Base
// §4.8); SM2 keys carry id-ecPublicKey with the SM2 curve OID.
func publicKeyInfo(keyType uint, point []byte) ([]byte, error) {
	pub, err := publicKey(keyType, point)
	if err != nil {
		return nil, err
	}
	return smx509.MarshalPKIXPublicKey(pub)
}

// certNames extracts CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER (DER
// Name, Name, INTEGER) from a certificate, or empty values if it does not
// parse: the token stores certificates, it does not judge them.
func certNames(der []byte) (subject, issuer, serial []byte) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return []byte{}, []byte{}, []byte{}
	}
	sn, err := asn1.Marshal(c.SerialNumber)
	if err != nil {
		sn = []byte{}
	}
	return c.RawSubject, c.RawIssuer, sn
}

// privateKey opens the private scalar of o and returns the signer for it.
func (m *module) privateKey(o *object) (*sm2.PrivateKey, *ecdsa.PrivateKey, error) {
	d, err := m.value(o, ckaValue)
	if err != nil {
		return nil, nil, err
	}
	defer clear(d)
	switch o.keyType() {
	case ckkSM2:
		k, err := sm2.NewPrivateKey(d)
		return k, nil, err
	case ckkEC:
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		return nil, k, err
	}
	return nil, nil, errors.New("unsupported key type")
}

// keyFor checks that handle names a private key of keyType usable for the
// attribute usage (CKA_SIGN or CKA_DECRYPT).
func (m *module) keyFor(h, keyType, usage uint) (*object, uint) {
	o, ok := m.objects[h]
	if !ok {
		return nil, ckrKeyHandleInvalid
	}
	if o.private() && m.login != ckuUser {
		return nil, ckrUserNotLoggedIn
	}
	if o.class() != ckoPrivateKey || o.keyType() != keyType {
		return nil, ckrKeyTypeInconsistent
	}
	if !o.attrs.boolean(usage, false) {
		return nil, ckrKeyFunctionNotPermitted
	}
	return o, ckrOK
}

// Signing (Base §5.11).

type signOp struct {
	mech  uint
	sm2   *sm2.PrivateKey
	ec    *ecdsa.PrivateKey
	h     hash.Hash // SM3-with-SM2 (over Z||M) and ECDSA-SHA256
	buf   []byte    // raw mechanisms: the value to sign
	multi bool      // C_SignUpdate was called
}

// maxRawInput bounds the input of the raw mechanisms, which sign a digest.
const maxRawInput = 64

func (m *module) signInit(sh uint, mech mechanism, h uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if s.sign != nil {
		return ckrOperationActive
	}
	var keyType uint
	switch mech.typ {
	case ckmSM2Sign, ckmSM3SM2:
		keyType = ckkSM2
	case ckmECDSA, ckmECDSASHA256:
		keyType = ckkEC
	default:
		return ckrMechanismInvalid
	}
	if len(mech.param) != 0 {
		// The TASS mechanisms take no parameter here: SM3-with-SM2 always
		// uses the default ID 1234567812345678 (GM/T 0009 §10).
		return ckrMechanismParamInvalid
	}
	o, r := m.keyFor(h, keyType, ckaSign)
	if r != ckrOK {
		return r
	}
	skey, ekey, err := m.privateKey(o)
	if err != nil {
		warnf("open private key: %v", err)
		return ckrGeneralError
	}
	op := &signOp{mech: mech.typ, sm2: skey, ec: ekey}
	switch mech.typ {
	case ckmSM3SM2:
		// e = SM3(Z || M), Z from the key's own public point and the
		// default ID (GB/T 32918.2 §6.1, GM-STANDARDS.md §1.3).
		op.h, err = sm2.NewHash(&skey.PublicKey)
		if err != nil {
			warnf("compute Z: %v", err)
			return ckrGeneralError
		}
	case ckmECDSASHA256:
		op.h = sha256.New()
	}
	s.sign = op
	return ckrOK
}

// signLength is the signature length: r||s of 32 bytes each (Mechanisms
// §2.3.1 for ECDSA; the TASS SM2 mechanisms return the same layout).
func (m *module) signLength(sh uint) (int, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return 0, r
	}
	if s.sign == nil {
		return 0, ckrOperationNotInitialized
	}
	return 64, ckrOK
}

func (m *module) sign(sh uint, data []byte) ([]byte, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return nil, r
	}
	op := s.sign
	if op == nil {
		return nil, ckrOperationNotInitialized
	}
	if op.multi {
		// A multi-part operation ends with C_SignFinal only.
		return nil, ckrOperationActive
	}
	s.sign = nil
	if r := op.update(data); r != ckrOK {
		return nil, r
	}
	return op.final()
}

func (m *module) signUpdate(sh uint, part []byte) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	op := s.sign
	if op == nil {
		return ckrOperationNotInitialized
	}
	op.multi = true
	if r := op.update(part); r != ckrOK {
		s.sign = nil
		return r
	}
	return ckrOK
}

func (m *module) signFinal(sh uint) ([]byte, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return nil, r
	}
	op := s.sign
	if op == nil {
		return nil, ckrOperationNotInitialized
	}
	s.sign = nil
	return op.final()
}

func (op *signOp) update(p []byte) uint {
	if op.h != nil {
		op.h.Write(p)
		return ckrOK
	}
	if len(op.buf)+len(p) > maxRawInput {
		return ckrDataLenRange
	}
	op.buf = append(op.buf, p...)
	return ckrOK
}

func (op *signOp) final() ([]byte, uint) {
	var digest []byte
	if op.h != nil {
		digest = op.h.Sum(nil)
	} else {
		digest = op.buf
	}
	var der []byte
	var err error
	switch op.mech {
	case ckmSM2Sign, ckmSM3SM2:
		if len(digest) != sm3.Size {
			return nil, ckrDataLenRange
		}
		// nil options: digest is e itself, no Z is added (gmsm contract,
		// GM-STANDARDS.md §1.3).
		der, err = op.sm2.Sign(rand.Reader, digest, nil)
	default:
		if len(digest) == 0 {
			return nil, ckrDataLenRange
		}
		der, err = ecdsa.SignASN1(rand.Reader, op.ec, digest)
	}
	if err != nil {
		warnf("sign: %v", err)
		return nil, ckrFunctionFailed
	}
	sig, err := rawSignature(der)
	if err != nil {
		warnf("sign: %v", err)
		return nil, ckrGeneralError
	}
	return sig, ckrOK
}

// rawSignature turns a DER SEQUENCE { r INTEGER, s INTEGER } into r||s with
// each integer left-padded to 32 bytes.
func rawSignature(der []byte) ([]byte, error) {
	var inner cryptobyte.String
	r, s := new(big.Int), new(big.Int)
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		return nil, errors.New("malformed signature")
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 256 || s.BitLen() > 256 {
		return nil, errors.New("signature out of range")
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

// Decryption (Base §5.9).

type decryptOp struct {
	key *sm2.PrivateKey
}

func (m *module) decryptInit(sh uint, mech mechanism, h uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if s.decrypt != nil {
		return ckrOperationActive
	}
	if mech.typ != ckmSM2Encrypt {
		return ckrMechanismInvalid
	}
	if len(mech.param) != 0 {
		return ckrMechanismParamInvalid
	}
	o, r := m.keyFor(h, ckkSM2, ckaDecrypt)
	if r != ckrOK {
		return r
	}
	k, _, err := m.privateKey(o)
	if err != nil {
		warnf("open private key: %v", err)
		return ckrGeneralError
	}
	s.decrypt = &decryptOp{key: k}
	return ckrOK
}

// sm2PlaintextLen returns the plaintext length of a GM/T 0009 §7.2
// SM2Cipher (SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING,
// ciphertext OCTET STRING }) without decrypting it.
func sm2PlaintextLen(ct []byte) (int, bool) {
	var inner, h, c cryptobyte.String
	x, y := new(big.Int), new(big.Int)
	in := cryptobyte.String(ct)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(x) || !inner.ReadASN1Integer(y) ||
		!inner.ReadASN1(&h, cbasn1.OCTET_STRING) || !inner.ReadASN1(&c, cbasn1.OCTET_STRING) ||
		!inner.Empty() || len(h) != sm3.Size {
		return 0, false
	}
	return len(c), true
}

// decryptLength returns the plaintext length for ct; a malformed ct ends
// the operation.
func (m *module) decryptLength(sh uint, ct []byte) (int, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return 0, r
	}
	if s.decrypt == nil {
		return 0, ckrOperationNotInitialized
	}
	n, ok := sm2PlaintextLen(ct)
	if !ok {
		s.decrypt = nil
		return 0, ckrEncryptedDataInvalid
	}
	return n, ckrOK
}

func (m *module) decrypt(sh uint, ct []byte) ([]byte, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return nil, r
	}
	op := s.decrypt
	if op == nil {
		return nil, ckrOperationNotInitialized
	}
	s.decrypt = nil
	// Only the ASN.1 form is accepted: gmsm's Decrypt would also take the
	// plain C1C3C2 form, and guessing formats is how ciphertexts get
	// misread (GM-STANDARDS.md §1.4).
	if _, ok := sm2PlaintextLen(ct); !ok {
		return nil, ckrEncryptedDataInvalid
	}
	pt, err := op.key.Decrypt(nil, ct, nil)
	if err != nil {
		return nil, ckrEncryptedDataInvalid
	}
	return pt, ckrOK
}

// Digests (Base §5.10).

type digestOp struct {
	h     hash.Hash
	multi bool
}

func (m *module) digestInit(sh uint, mech mechanism) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if s.digest != nil {
		return ckrOperationActive
	}
	if len(mech.param) != 0 {
		return ckrMechanismParamInvalid
	}
	switch mech.typ {
	case ckmSHA256:
		s.digest = &digestOp{h: sha256.New()}
	case ckmSM3:
		s.digest = &digestOp{h: sm3.New()}
	default:
		return ckrMechanismInvalid
	}
	return ckrOK
}

func (m *module) digestLength(sh uint) (int, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return 0, r
	}
	if s.digest == nil {
		return 0, ckrOperationNotInitialized
	}
	return s.digest.h.Size(), ckrOK
}

func (m *module) digest(sh uint, data []byte) ([]byte, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return nil, r
	}
	op := s.digest
	if op == nil {
		return nil, ckrOperationNotInitialized
	}
	if op.multi {
		return nil, ckrOperationActive
	}
	s.digest = nil
	op.h.Write(data)
	return op.h.Sum(nil), ckrOK
}

func (m *module) digestUpdate(sh uint, part []byte) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if s.digest == nil {
		return ckrOperationNotInitialized
	}
	s.digest.multi = true
	s.digest.h.Write(part)
	return ckrOK
}

func (m *module) digestFinal(sh uint) ([]byte, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return nil, r
	}
	if s.digest == nil {
		return nil, ckrOperationNotInitialized
	}
	op := s.digest
	s.digest = nil
	return op.h.Sum(nil), ckrOK
}
