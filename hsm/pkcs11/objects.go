//go:build cgo

package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/govtrust/govtrust/hsm"
	p11 "github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// appMeta is the CKA_APPLICATION of metadata data objects.
const appMeta = "govtrust"

// metaVersion is the version of the metadata JSON document.
const metaVersion = 1

// metadata is the JSON value of a key's CKO_DATA metadata object. It is what
// survives restarts besides the key objects themselves: owning service and
// usage (key separation), algorithm, location, and for wrapped SM2 keys the
// wrapped private scalar.
type metadata struct {
	V         int           `json:"v"`
	ID        string        `json:"id"` // hex of CKA_ID shared by the key's objects
	Algorithm hsm.Algorithm `json:"alg"`
	Usage     hsm.Usage     `json:"usage"`
	Service   string        `json:"service"`
	Location  hsm.Location  `json:"location"`
	Vendor    string        `json:"vendor,omitempty"` // SM2 vendor table of hardware SM2 keys
	Created   time.Time     `json:"created"`
	// Wrapped is the SM2 private scalar d wrapped with CKM_AES_KEY_WRAP_PAD
	// (RFC 5649) under the AES key labelled WrapKey. Wrapped SM2 keys only.
	Wrapped []byte `json:"wrapped,omitempty"`
	WrapKey string `json:"wrapKey,omitempty"`
}

// record is a key as found on the token.
type record struct {
	label string
	id    []byte
	meta  metadata
	obj   p11.ObjectHandle // the metadata object, valid in the session's generation
}

// OIDs of the named curves this backend uses (RFC 5480 §2.1.1.1, GM/T 0006).
var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidSM2  = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}
)

func ecParams(alg hsm.Algorithm) []byte {
	var oid asn1.ObjectIdentifier
	switch alg {
	case hsm.ECDSAP256:
		oid = oidP256
	case hsm.ECDSAP384:
		oid = oidP384
	case hsm.SM2:
		oid = oidSM2
	default:
		panic("pkcs11: no EC parameters for " + string(alg))
	}
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b
}

// findObjects returns the handles of the objects matching tmpl.
func findObjects(ctx *p11.Ctx, h p11.SessionHandle, tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(h, tmpl); err != nil {
		return nil, err
	}
	var out []p11.ObjectHandle
	for {
		objs, _, err := ctx.FindObjects(h, 64)
		if err != nil {
			_ = ctx.FindObjectsFinal(h)
			return nil, err
		}
		out = append(out, objs...)
		if len(objs) < 64 {
			break
		}
	}
	return out, ctx.FindObjectsFinal(h)
}

// findKeyObject returns the one object of class cls with CKA_ID id.
func findKeyObject(ctx *p11.Ctx, h p11.SessionHandle, cls uint, id []byte) (p11.ObjectHandle, error) {
	objs, err := findObjects(ctx, h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, cls),
		p11.NewAttribute(p11.CKA_ID, id),
	})
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("%w: no %s object with id %x", hsm.ErrNotFound, className(cls), id)
	case 1:
		return objs[0], nil
	}
	return 0, fmt.Errorf("pkcs11: %d %s objects share id %x", len(objs), className(cls), id)
}

func className(cls uint) string {
	switch cls {
	case p11.CKO_PRIVATE_KEY:
		return "private key"
	case p11.CKO_PUBLIC_KEY:
		return "public key"
	case p11.CKO_SECRET_KEY:
		return "secret key"
	}
	return fmt.Sprintf("class %#x", cls)
}

// metaTemplate selects metadata objects, optionally by label.
func metaTemplate(label string) []*p11.Attribute {
	t := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_APPLICATION, appMeta),
	}
	if label != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, label))
	}
	return t
}

// readRecord reads a metadata object.
func readRecord(ctx *p11.Ctx, h p11.SessionHandle, obj p11.ObjectHandle) (*record, error) {
	attrs, err := ctx.GetAttributeValue(h, obj, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_LABEL, nil),
		p11.NewAttribute(p11.CKA_VALUE, nil),
	})
	if err != nil {
		return nil, err
	}
	r := &record{obj: obj}
	var value []byte
	for _, a := range attrs {
		switch a.Type {
		case p11.CKA_LABEL:
			r.label = string(a.Value)
		case p11.CKA_VALUE:
			value = a.Value
		}
	}
	if err := json.Unmarshal(value, &r.meta); err != nil {
		return nil, fmt.Errorf("pkcs11: metadata of key %q: %w", r.label, err)
	}
	if r.meta.V != metaVersion {
		return nil, fmt.Errorf("pkcs11: metadata of key %q has unknown version %d", r.label, r.meta.V)
	}
	if r.id, err = hex.DecodeString(r.meta.ID); err != nil || len(r.id) == 0 {
		return nil, fmt.Errorf("pkcs11: metadata of key %q has a bad id", r.label)
	}
	return r, nil
}

// findRecord finds the key named by label and/or id (either may be empty,
// not both).
func findRecord(ctx *p11.Ctx, h p11.SessionHandle, label string, id []byte) (*record, error) {
	objs, err := findObjects(ctx, h, metaTemplate(label))
	if err != nil {
		return nil, err
	}
	var found *record
	for _, o := range objs {
		r, err := readRecord(ctx, h, o)
		if err != nil {
			return nil, err
		}
		if id != nil && !bytes.Equal(r.id, id) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("pkcs11: key URI matches several keys (label %q); add id=", label)
		}
		found = r
	}
	if found == nil {
		return nil, hsm.ErrNotFound
	}
	return found, nil
}

// readPublic reads the public key object with CKA_ID id.
func readPublic(ctx *p11.Ctx, h p11.SessionHandle, alg hsm.Algorithm, id []byte) (crypto.PublicKey, error) {
	obj, err := findKeyObject(ctx, h, p11.CKO_PUBLIC_KEY, id)
	if err != nil {
		return nil, err
	}
	switch alg {
	case hsm.RSA2048, hsm.RSA3072:
		attrs, err := ctx.GetAttributeValue(h, obj, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS, nil),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, err
		}
		n := new(big.Int).SetBytes(attrs[0].Value)
		e := new(big.Int).SetBytes(attrs[1].Value)
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, errors.New("pkcs11: RSA public exponent out of range")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case hsm.ECDSAP256, hsm.ECDSAP384, hsm.SM2:
		attrs, err := ctx.GetAttributeValue(h, obj, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
			p11.NewAttribute(p11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(attrs[0].Value, ecParams(alg)) {
			return nil, fmt.Errorf("pkcs11: public key %x: EC parameters do not match %s", id, alg)
		}
		return parseECPoint(alg, attrs[1].Value)
	}
	return nil, fmt.Errorf("%w: public key of %s", hsm.ErrUnsupported, alg)
}

// parseECPoint parses CKA_EC_POINT: a DER OCTET STRING holding the
// uncompressed point (PKCS#11 v2.40 §2.3.3), or, as some tokens answer, the
// bare point.
func parseECPoint(alg hsm.Algorithm, v []byte) (*ecdsa.PublicKey, error) {
	size := 32
	if alg == hsm.ECDSAP384 {
		size = 48
	}
	point := v
	if len(v) != 1+2*size {
		s := cryptobyte.String(v)
		if !s.ReadASN1Bytes(&point, cbasn1.OCTET_STRING) || !s.Empty() {
			return nil, errors.New("pkcs11: malformed CKA_EC_POINT")
		}
	}
	switch alg {
	case hsm.ECDSAP256:
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	case hsm.ECDSAP384:
		return ecdsa.ParseUncompressedPublicKey(elliptic.P384(), point)
	default:
		return sm2.NewPublicKey(point)
	}
}

// sm2Point returns the uncompressed encoding 04||X||Y of an SM2 public key.
func sm2Point(pub *ecdsa.PublicKey) ([]byte, error) {
	k, err := sm2.PublicKeyToECDH(pub)
	if err != nil {
		return nil, err
	}
	return k.Bytes(), nil
}

// ecPointAttr encodes a point as CKA_EC_POINT (a DER OCTET STRING).
func ecPointAttr(point []byte) []byte {
	b, err := asn1.Marshal(point)
	if err != nil {
		panic(err)
	}
	return b
}

// rawToDER converts an r||s signature to DER SEQUENCE{r INTEGER, s INTEGER}.
func rawToDER(sig []byte) ([]byte, error) {
	if len(sig) == 0 || len(sig)%2 != 0 {
		return nil, fmt.Errorf("pkcs11: raw signature of odd length %d", len(sig))
	}
	r, s := sig[:len(sig)/2], sig[len(sig)/2:]
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addUnsigned(b, r)
		addUnsigned(b, s)
	})
	return b.Bytes()
}

// addUnsigned adds a big-endian unsigned integer as a minimal DER INTEGER.
func addUnsigned(b *cryptobyte.Builder, v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		if len(v) > 0 && v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}

// keyURI returns the canonical URI of a key.
func keyURI(token, label string, id []byte) string {
	u := &hsm.URI{Scheme: "pkcs11", Attrs: map[string]string{"object": label, "id": string(id)}}
	if token != "" {
		u.Attrs["token"] = token
	}
	return u.String()
}
