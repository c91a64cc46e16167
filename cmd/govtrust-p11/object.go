package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"
)

// ulongSize is sizeof(CK_ULONG). CK_ULONG is "unsigned long", which on Linux
// (LP64 and ILP32 alike) has the size of Go's uint; cryptoki.h states the
// Linux-only assumption and exports.go checks it against C at compile time.
const ulongSize = bits.UintSize / 8

// attrKind says how an attribute value is encoded (Base §4.1, Table 7:
// CK_BBOOL is one byte, CK_ULONG is native-endian, CK_DATE is 8 characters
// or empty, everything else is a byte array).
type attrKind int

const (
	kindBool attrKind = iota + 1
	kindUlong
	kindBytes
	kindDate
)

type attrDef struct {
	name string
	kind attrKind
}

// attrDefs are the attribute types this token knows. A type not listed here
// is answered with CKR_ATTRIBUTE_TYPE_INVALID.
var attrDefs = map[uint]attrDef{
	ckaClass:               {"CKA_CLASS", kindUlong},
	ckaToken:               {"CKA_TOKEN", kindBool},
	ckaPrivate:             {"CKA_PRIVATE", kindBool},
	ckaLabel:               {"CKA_LABEL", kindBytes},
	ckaApplication:         {"CKA_APPLICATION", kindBytes},
	ckaValue:               {"CKA_VALUE", kindBytes},
	ckaObjectID:            {"CKA_OBJECT_ID", kindBytes},
	ckaCertificateType:     {"CKA_CERTIFICATE_TYPE", kindUlong},
	ckaIssuer:              {"CKA_ISSUER", kindBytes},
	ckaSerialNumber:        {"CKA_SERIAL_NUMBER", kindBytes},
	ckaTrusted:             {"CKA_TRUSTED", kindBool},
	ckaCertificateCategory: {"CKA_CERTIFICATE_CATEGORY", kindUlong},
	ckaKeyType:             {"CKA_KEY_TYPE", kindUlong},
	ckaSubject:             {"CKA_SUBJECT", kindBytes},
	ckaID:                  {"CKA_ID", kindBytes},
	ckaSensitive:           {"CKA_SENSITIVE", kindBool},
	ckaEncrypt:             {"CKA_ENCRYPT", kindBool},
	ckaDecrypt:             {"CKA_DECRYPT", kindBool},
	ckaWrap:                {"CKA_WRAP", kindBool},
	ckaUnwrap:              {"CKA_UNWRAP", kindBool},
	ckaSign:                {"CKA_SIGN", kindBool},
	ckaSignRecover:         {"CKA_SIGN_RECOVER", kindBool},
	ckaVerify:              {"CKA_VERIFY", kindBool},
	ckaVerifyRecover:       {"CKA_VERIFY_RECOVER", kindBool},
	ckaDerive:              {"CKA_DERIVE", kindBool},
	ckaStartDate:           {"CKA_START_DATE", kindDate},
	ckaEndDate:             {"CKA_END_DATE", kindDate},
	ckaPublicKeyInfo:       {"CKA_PUBLIC_KEY_INFO", kindBytes},
	ckaExtractable:         {"CKA_EXTRACTABLE", kindBool},
	ckaLocal:               {"CKA_LOCAL", kindBool},
	ckaNeverExtractable:    {"CKA_NEVER_EXTRACTABLE", kindBool},
	ckaAlwaysSensitive:     {"CKA_ALWAYS_SENSITIVE", kindBool},
	ckaKeyGenMechanism:     {"CKA_KEY_GEN_MECHANISM", kindUlong},
	ckaModifiable:          {"CKA_MODIFIABLE", kindBool},
	ckaCopyable:            {"CKA_COPYABLE", kindBool},
	ckaDestroyable:         {"CKA_DESTROYABLE", kindBool},
	ckaECParams:            {"CKA_EC_PARAMS", kindBytes},
	ckaECPoint:             {"CKA_EC_POINT", kindBytes},
	ckaAlwaysAuthenticate:  {"CKA_ALWAYS_AUTHENTICATE", kindBool},
	ckaWrapWithTrusted:     {"CKA_WRAP_WITH_TRUSTED", kindBool},
}

// attribute is one entry of a caller's template, copied out of C memory.
type attribute struct {
	typ uint
	val []byte
}

func encBool(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func encUlong(v uint) []byte {
	b := make([]byte, ulongSize)
	if ulongSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(v))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(v))
	}
	return b
}

func decUlong(b []byte) uint {
	if ulongSize == 8 {
		return uint(binary.NativeEndian.Uint64(b))
	}
	return uint(binary.NativeEndian.Uint32(b))
}

// attrMap is a validated template or an object's attributes, values in their
// C encoding.
type attrMap map[uint][]byte

// parseTemplate checks every entry's type and encoding. A type given twice
// with different values is inconsistent (Base §5.7, C_CreateObject).
func parseTemplate(tmpl []attribute) (attrMap, uint) {
	m := attrMap{}
	for _, a := range tmpl {
		def, ok := attrDefs[a.typ]
		if !ok {
			return nil, ckrAttributeTypeInvalid
		}
		switch def.kind {
		case kindBool:
			if len(a.val) != 1 {
				return nil, ckrAttributeValueInvalid
			}
			a.val = encBool(a.val[0] != 0)
		case kindUlong:
			if len(a.val) != ulongSize {
				return nil, ckrAttributeValueInvalid
			}
		case kindDate:
			if len(a.val) != 0 && len(a.val) != 8 {
				return nil, ckrAttributeValueInvalid
			}
		}
		if prev, dup := m[a.typ]; dup && !bytes.Equal(prev, a.val) {
			return nil, ckrTemplateInconsistent
		}
		m[a.typ] = a.val
	}
	return m, ckrOK
}

// boolean reads a CK_BBOOL; missing means def.
func (m attrMap) boolean(t uint, def bool) bool {
	v, ok := m[t]
	if !ok || len(v) != 1 {
		return def
	}
	return v[0] != 0
}

// ulong reads a CK_ULONG attribute.
func (m attrMap) ulong(t uint) (uint, bool) {
	v, ok := m[t]
	if !ok || len(v) != ulongSize {
		return 0, false
	}
	return decUlong(v), true
}

// only reports whether every type in m is one of allowed.
func (m attrMap) only(allowed ...uint) bool {
	for t := range m {
		found := false
		for _, a := range allowed {
			if t == a {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// object is a PKCS#11 object: a token object backed by one file, or a
// session object that lives in memory until its session closes.
type object struct {
	handle  uint
	fileID  string // "" for session objects
	session uint   // owning session of a session object
	attrs   attrMap
	// sealed holds, for private token objects, values encrypted under the
	// token key (CKA_VALUE of private keys and private data objects). The
	// clear value is never kept in attrs for those objects.
	sealed map[uint][]byte
	stamp  fileStamp
}

func (o *object) class() uint {
	c, _ := o.attrs.ulong(ckaClass)
	return c
}

func (o *object) keyType() uint {
	k, _ := o.attrs.ulong(ckaKeyType)
	return k
}

func (o *object) private() bool { return o.attrs.boolean(ckaPrivate, false) }
func (o *object) token() bool   { return o.attrs.boolean(ckaToken, false) }

// has reports whether the object has attribute t at all (sealed or clear).
func (o *object) has(t uint) bool {
	if _, ok := o.attrs[t]; ok {
		return true
	}
	_, ok := o.sealed[t]
	return ok
}

// sensitive reports whether attribute t may never leave the token: the
// private value of a key whose CKA_SENSITIVE is true or CKA_EXTRACTABLE is
// false (Base §4.9 Table 33, footnote 8).
func (o *object) sensitive(t uint) bool {
	if o.class() != ckoPrivateKey || t != ckaValue {
		return false
	}
	return o.attrs.boolean(ckaSensitive, true) || !o.attrs.boolean(ckaExtractable, false)
}

// Attribute sets per object kind: an object has exactly these attributes
// (Base §4.4–§4.9, Mechanisms §2.3.3–§2.3.4), which is also what a template
// may name at creation.
var (
	storageAttrs = []uint{ckaClass, ckaToken, ckaPrivate, ckaModifiable, ckaLabel, ckaCopyable, ckaDestroyable}
	dataAttrs    = concat(storageAttrs, ckaApplication, ckaObjectID, ckaValue)
	certAttrs    = concat(storageAttrs, ckaCertificateType, ckaTrusted, ckaCertificateCategory,
		ckaStartDate, ckaEndDate, ckaSubject, ckaID, ckaIssuer, ckaSerialNumber, ckaValue)
	keyAttrs    = concat(storageAttrs, ckaKeyType, ckaID, ckaStartDate, ckaEndDate, ckaDerive, ckaLocal, ckaKeyGenMechanism)
	pubKeyAttrs = concat(keyAttrs, ckaSubject, ckaEncrypt, ckaVerify, ckaVerifyRecover, ckaWrap, ckaTrusted,
		ckaPublicKeyInfo, ckaECParams, ckaECPoint)
	// CKA_EC_POINT on the private key is not in the EC private key table
	// of the Mechanisms spec; several vendors add it (GM-STANDARDS.md §8)
	// and it lets a client find the public key from the private object.
	privKeyAttrs = concat(keyAttrs, ckaSubject, ckaSensitive, ckaDecrypt, ckaSign, ckaSignRecover, ckaUnwrap,
		ckaExtractable, ckaAlwaysSensitive, ckaNeverExtractable, ckaWrapWithTrusted, ckaAlwaysAuthenticate,
		ckaPublicKeyInfo, ckaECParams, ckaECPoint, ckaValue)
)

func concat(base []uint, more ...uint) []uint {
	return append(append([]uint(nil), base...), more...)
}

// matches reports whether the object has every attribute of tmpl with the
// same value (Base §5.7, C_FindObjectsInit). Sealed values are compared
// after opening them with open; sensitive values never match, so a search
// cannot be used to test guesses of a private key.
func (o *object) matches(tmpl attrMap, open func(*object, uint) ([]byte, error)) bool {
	for t, want := range tmpl {
		if o.sensitive(t) {
			return false
		}
		got, ok := o.attrs[t]
		if !ok {
			if _, sealed := o.sealed[t]; !sealed || open == nil {
				return false
			}
			v, err := open(o, t)
			if err != nil {
				return false
			}
			got = v
		}
		if !bytes.Equal(got, want) {
			return false
		}
	}
	return true
}

// fileAttr is one attribute in an object file. Name is informational (it
// makes the files readable); Type is authoritative.
type fileAttr struct {
	Type  uint64  `json:"type"`
	Name  string  `json:"name,omitempty"`
	Bool  *bool   `json:"bool,omitempty"`
	Ulong *uint64 `json:"ulong,omitempty"`
	Bytes []byte  `json:"bytes,omitempty"`
}

// sealedAttr is an attribute value encrypted under the token key.
type sealedAttr struct {
	Type   uint64 `json:"type"`
	Name   string `json:"name,omitempty"`
	Sealed []byte `json:"sealed"`
}

// objectFile is the on-disk form of a token object.
type objectFile struct {
	Format     string       `json:"format"`
	ID         string       `json:"id"`
	Attributes []fileAttr   `json:"attributes"`
	Sealed     []sealedAttr `json:"sealed,omitempty"`
}

const objectFormat = "govtrust-p11-object/1"

func (o *object) toFile() *objectFile {
	f := &objectFile{Format: objectFormat, ID: o.fileID}
	types := make([]uint, 0, len(o.attrs))
	for t := range o.attrs {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	for _, t := range types {
		def := attrDefs[t]
		fa := fileAttr{Type: uint64(t), Name: def.name}
		v := o.attrs[t]
		switch def.kind {
		case kindBool:
			b := v[0] != 0
			fa.Bool = &b
		case kindUlong:
			u := uint64(decUlong(v))
			fa.Ulong = &u
		default:
			fa.Bytes = v
		}
		f.Attributes = append(f.Attributes, fa)
	}
	types = types[:0]
	for t := range o.sealed {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	for _, t := range types {
		f.Sealed = append(f.Sealed, sealedAttr{Type: uint64(t), Name: attrDefs[t].name, Sealed: o.sealed[t]})
	}
	return f
}

func objectFromFile(f *objectFile) (*object, error) {
	if f.Format != objectFormat {
		return nil, fmt.Errorf("unknown object format %q", f.Format)
	}
	o := &object{fileID: f.ID, attrs: attrMap{}, sealed: map[uint][]byte{}}
	for _, fa := range f.Attributes {
		t := uint(fa.Type)
		def, ok := attrDefs[t]
		if !ok {
			return nil, fmt.Errorf("unknown attribute type %#x", fa.Type)
		}
		switch def.kind {
		case kindBool:
			if fa.Bool == nil {
				return nil, fmt.Errorf("attribute %s: missing bool", def.name)
			}
			o.attrs[t] = encBool(*fa.Bool)
		case kindUlong:
			if fa.Ulong == nil {
				return nil, fmt.Errorf("attribute %s: missing ulong", def.name)
			}
			o.attrs[t] = encUlong(uint(*fa.Ulong))
		default:
			if fa.Bytes == nil {
				fa.Bytes = []byte{}
			}
			o.attrs[t] = fa.Bytes
		}
	}
	for _, s := range f.Sealed {
		o.sealed[uint(s.Type)] = s.Sealed
	}
	if _, ok := o.attrs.ulong(ckaClass); !ok {
		return nil, fmt.Errorf("object has no CKA_CLASS")
	}
	return o, nil
}
