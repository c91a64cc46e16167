package ses

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Versions of the structures.
const (
	V1 = 1 // GM/T 0031-2014
	V4 = 4 // GB/T 38540-2020
)

// HeaderID is SES_Header.ID, "ES" in every version.
const HeaderID = "ES"

// Certificate list kinds of a v4 SES_ESPropertyInfo (GB/T 38540 §7.1).
const (
	CertListCerts   = 1 // certList holds the signers' DER certificates
	CertListDigests = 2 // certList holds digests of the signers' certificates
)

// ErrMalformed wraps every parse error.
var ErrMalformed = errors.New("ses: malformed")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// ExtData is one extension (ExtensionDatas ::= SEQUENCE OF ExtData).
type ExtData struct {
	ID       asn1.ObjectIdentifier
	Critical bool
	Value    []byte
}

// CertDigest is a CertDigestObj of a v4 certificate digest list.
type CertDigest struct {
	Type  string // PrintableString, e.g. "SM3"
	Value []byte
}

// Property is SES_ESPropertyInfo.
type Property struct {
	// Type is the seal type. v1: 1 unit (organisation) seal, 2 personal
	// seal; v4: business-defined.
	Type int
	Name string
	// CertListType is CertListCerts or CertListDigests (v4); v1 lists
	// certificates only.
	CertListType int
	Certs        [][]byte // DER certificates of the signers allowed to use the seal
	CertDigests  []CertDigest
	CreateDate   time.Time
	ValidStart   time.Time
	ValidEnd     time.Time
}

// Picture is SES_ESPictrueInfo (the standard's spelling).
type Picture struct {
	Type   string // "PNG", "GIF", "JPG", "BMP", "SVG", "OFD"...
	Data   []byte
	Width  int // display width in millimetres
	Height int // display height in millimetres
}

// SealInfo is SES_SealInfo.
type SealInfo struct {
	Version  int    // header version (4 for v4)
	VID      string // header vendor ID
	ESID     string
	Property Property
	Picture  Picture
	ExtDatas []ExtData
}

// Seal is a SESeal (印章).
type Seal struct {
	Format int // V1 or V4, from the structure
	Info   SealInfo
	// Cert is the maker's DER certificate, SignAlg its signature algorithm
	// and SignedValue the maker's signature.
	Cert        []byte
	SignAlg     asn1.ObjectIdentifier
	SignedValue []byte
	// TimeStamp is the v5 (GM/T 0031-2025) timestamp over signedValue; it
	// is kept when read but not checked.
	TimeStamp []byte

	// RawInfo is the DER SES_SealInfo as read or made; Raw the whole SESeal.
	RawInfo []byte
	Raw     []byte
}

// TBS is TBS_Sign, what the signer signs.
type TBS struct {
	Version int
	// Seal is the DER SESeal the signature applies.
	Seal []byte
	// TimeInfo is the signing time claimed by the signer (v4
	// GeneralizedTime; for v1 the UTCTime in the BIT STRING if it is one).
	TimeInfo time.Time
	// RawTimeInfo is the v1 timeInfo BIT STRING content (a UTCTime or a
	// time-stamp token).
	RawTimeInfo []byte
	// DataHash is the hash of the protected data (SM3 for SM2 signers).
	DataHash []byte
	// PropertyInfo describes the protected data; for OFD the package path
	// of Signature.xml (GB/T 38540 §7.3).
	PropertyInfo string
	ExtDatas     []ExtData
	// Cert and SignAlg are inside TBS_Sign in v1 only.
	Cert    []byte
	SignAlg asn1.ObjectIdentifier
}

// Signature is SES_Signature (电子签章数据).
type Signature struct {
	Format int // V1 or V4, from the structure
	TBS    TBS
	// RawTBS is the DER TBS_Sign as read or made: the bytes the signature
	// covers.
	RawTBS []byte
	// Cert is the signer's DER certificate and SignAlg the algorithm
	// (v4: beside TBS_Sign; v1: copied from inside it).
	Cert    []byte
	SignAlg asn1.ObjectIdentifier
	Value   []byte
	// TimeStamp is the DER TimeStampToken over Value (v4, optional).
	TimeStamp []byte
	Raw       []byte
}

// ParseSeal parses a DER SESeal of version 1 or 4 (and keeps a v5
// timestamp).
func ParseSeal(der []byte) (*Seal, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, malformed("SESeal is not one DER SEQUENCE")
	}
	s := &Seal{Raw: der}
	var rawInfo cryptobyte.String
	if !seq.ReadASN1Element(&rawInfo, cbasn1.SEQUENCE) {
		return nil, malformed("SES_SealInfo")
	}
	s.RawInfo = rawInfo
	if seq.PeekASN1Tag(cbasn1.SEQUENCE) {
		// v1: signInfo SES_SignInfo ::= SEQUENCE { cert, signatureAlgorithm, signData }
		s.Format = V1
		var si cryptobyte.String
		if !seq.ReadASN1(&si, cbasn1.SEQUENCE) || !seq.Empty() {
			return nil, malformed("v1 SES_SignInfo")
		}
		if err := readSignInfo(&si, s); err != nil {
			return nil, err
		}
		if !si.Empty() {
			return nil, malformed("trailing data in v1 SES_SignInfo")
		}
	} else {
		s.Format = V4
		if err := readSignInfo(&seq, s); err != nil {
			return nil, err
		}
		if !seq.Empty() {
			ts, err := readOptionalBitString0(&seq)
			if err != nil {
				return nil, err
			}
			s.TimeStamp = ts
		}
		if !seq.Empty() {
			return nil, malformed("trailing data in SESeal")
		}
	}
	info, err := parseSealInfo(rawInfo, s.Format)
	if err != nil {
		return nil, err
	}
	s.Info = *info
	return s, nil
}

func readSignInfo(in *cryptobyte.String, s *Seal) error {
	var cert cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&cert, cbasn1.OCTET_STRING) || !in.ReadASN1ObjectIdentifier(&s.SignAlg) || !readBits(in, &bits) {
		return malformed("seal maker certificate, algorithm or signature")
	}
	s.Cert, s.SignedValue = cert, bits.Bytes
	return nil
}

// readBits reads a BIT STRING whose length is a whole number of bytes.
func readBits(in *cryptobyte.String, out *asn1.BitString) bool {
	return in.ReadASN1BitString(out) && out.BitLength%8 == 0
}

// readOptionalBitString0 reads [0] BIT STRING, EXPLICIT (A0 03 ...) or
// IMPLICIT (80 ...), and returns its bytes.
func readOptionalBitString0(in *cryptobyte.String) ([]byte, error) {
	explicit := cbasn1.Tag(0).Constructed().ContextSpecific()
	implicit := cbasn1.Tag(0).ContextSpecific()
	var bits asn1.BitString
	switch {
	case in.PeekASN1Tag(explicit):
		var inner cryptobyte.String
		if !in.ReadASN1(&inner, explicit) || !readBits(&inner, &bits) || !inner.Empty() {
			return nil, malformed("[0] EXPLICIT BIT STRING")
		}
	case in.PeekASN1Tag(implicit):
		var raw cryptobyte.String
		if !in.ReadASN1(&raw, implicit) {
			return nil, malformed("[0] IMPLICIT BIT STRING")
		}
		// Re-read the content as a BIT STRING body.
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) { b.AddBytes(raw) })
		re := cryptobyte.String(b.BytesOrPanic())
		if !readBits(&re, &bits) {
			return nil, malformed("[0] IMPLICIT BIT STRING")
		}
	default:
		return nil, malformed("unexpected element")
	}
	return bits.Bytes, nil
}

// readTime reads a GeneralizedTime or a UTCTime: v1 writes UTCTime, v4
// GeneralizedTime, and some producers mix them.
func readTime(in *cryptobyte.String, out *time.Time) bool {
	switch {
	case in.PeekASN1Tag(cbasn1.GeneralizedTime):
		return in.ReadASN1GeneralizedTime(out)
	case in.PeekASN1Tag(cbasn1.UTCTime):
		return in.ReadASN1UTCTime(out)
	}
	return false
}

func readString(in *cryptobyte.String, tag cbasn1.Tag, out *string) bool {
	var s cryptobyte.String
	if !in.ReadASN1(&s, tag) {
		return false
	}
	*out = string(s)
	return true
}

func readInt(in *cryptobyte.String, out *int) bool {
	var v int64
	if !in.ReadASN1Integer(&v) || v < -1<<31 || v > 1<<31-1 {
		return false
	}
	*out = int(v)
	return true
}

func parseSealInfo(der []byte, format int) (*SealInfo, error) {
	in := cryptobyte.String(der)
	var seq, hdr, prop, pic cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, malformed("SES_SealInfo")
	}
	info := &SealInfo{}
	var id string
	if !seq.ReadASN1(&hdr, cbasn1.SEQUENCE) || !readString(&hdr, cbasn1.IA5String, &id) ||
		!readInt(&hdr, &info.Version) || !readString(&hdr, cbasn1.IA5String, &info.VID) || !hdr.Empty() {
		return nil, malformed("SES_Header")
	}
	if id != HeaderID {
		return nil, malformed(fmt.Sprintf("SES_Header ID %q is not %q", id, HeaderID))
	}
	if !readString(&seq, cbasn1.IA5String, &info.ESID) {
		return nil, malformed("esID")
	}
	if !seq.ReadASN1(&prop, cbasn1.SEQUENCE) {
		return nil, malformed("SES_ESPropertyInfo")
	}
	if err := parseProperty(&prop, format, &info.Property); err != nil {
		return nil, err
	}
	if !seq.ReadASN1(&pic, cbasn1.SEQUENCE) || !readString(&pic, cbasn1.IA5String, &info.Picture.Type) {
		return nil, malformed("SES_ESPictrueInfo")
	}
	var data cryptobyte.String
	if !pic.ReadASN1(&data, cbasn1.OCTET_STRING) || !readInt(&pic, &info.Picture.Width) || !readInt(&pic, &info.Picture.Height) || !pic.Empty() {
		return nil, malformed("SES_ESPictrueInfo")
	}
	info.Picture.Data = data
	if !seq.Empty() {
		ext, err := readExtDatas(&seq)
		if err != nil {
			return nil, err
		}
		info.ExtDatas = ext
	}
	if !seq.Empty() {
		return nil, malformed("trailing data in SES_SealInfo")
	}
	return info, nil
}

func parseProperty(in *cryptobyte.String, format int, p *Property) error {
	if !readInt(in, &p.Type) || !readString(in, cbasn1.UTF8String, &p.Name) {
		return malformed("SES_ESPropertyInfo type or name")
	}
	p.CertListType = CertListCerts
	if format == V4 && !readInt(in, &p.CertListType) {
		return malformed("certListType")
	}
	var list cryptobyte.String
	if !in.ReadASN1(&list, cbasn1.SEQUENCE) {
		return malformed("certList")
	}
	switch p.CertListType {
	case CertListCerts:
		for !list.Empty() {
			var c cryptobyte.String
			if !list.ReadASN1(&c, cbasn1.OCTET_STRING) {
				return malformed("certList certificate")
			}
			p.Certs = append(p.Certs, c)
		}
	case CertListDigests:
		for !list.Empty() {
			var obj, v cryptobyte.String
			var d CertDigest
			if !list.ReadASN1(&obj, cbasn1.SEQUENCE) || !readString(&obj, cbasn1.PrintableString, &d.Type) ||
				!obj.ReadASN1(&v, cbasn1.OCTET_STRING) || !obj.Empty() {
				return malformed("CertDigestObj")
			}
			d.Value = v
			p.CertDigests = append(p.CertDigests, d)
		}
	default:
		return malformed(fmt.Sprintf("certListType %d", p.CertListType))
	}
	if !readTime(in, &p.CreateDate) || !readTime(in, &p.ValidStart) || !readTime(in, &p.ValidEnd) || !in.Empty() {
		return malformed("SES_ESPropertyInfo dates")
	}
	return nil
}

// readExtDatas reads an untagged ExtensionDatas.
func readExtDatas(in *cryptobyte.String) ([]ExtData, error) {
	var list cryptobyte.String
	if !in.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, malformed("ExtensionDatas")
	}
	return readExtList(&list)
}

func readExtList(list *cryptobyte.String) ([]ExtData, error) {
	var out []ExtData
	for !list.Empty() {
		var e, v cryptobyte.String
		var d ExtData
		if !list.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1ObjectIdentifier(&d.ID) {
			return nil, malformed("ExtData")
		}
		if e.PeekASN1Tag(cbasn1.BOOLEAN) {
			if !e.ReadASN1Boolean(&d.Critical) || !d.Critical {
				// DER: a DEFAULT FALSE value is omitted, never written.
				return nil, malformed("ExtData critical")
			}
		}
		if !e.ReadASN1(&v, cbasn1.OCTET_STRING) || !e.Empty() {
			return nil, malformed("ExtData value")
		}
		d.Value = v
		out = append(out, d)
	}
	return out, nil
}

// readExtDatas0 reads extDatas [0] ExtensionDatas, EXPLICIT (A0 30 30 ...)
// or IMPLICIT (A0 30 06 ...).
func readExtDatas0(in *cryptobyte.String) ([]ExtData, error) {
	var inner cryptobyte.String
	if !in.ReadASN1(&inner, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, malformed("extDatas [0]")
	}
	// EXPLICIT: inner is one SEQUENCE OF ExtData; IMPLICIT: inner is the
	// ExtData elements themselves, each starting with an OID.
	probe := inner
	var first cryptobyte.String
	if !probe.ReadASN1(&first, cbasn1.SEQUENCE) {
		return nil, malformed("extDatas [0]")
	}
	if first.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		return readExtList(&inner)
	}
	ext, err := readExtDatas(&inner)
	if err != nil {
		return nil, err
	}
	if !inner.Empty() {
		return nil, malformed("trailing data in extDatas [0]")
	}
	return ext, nil
}

// ParseSignature parses a DER SES_Signature of version 1 or 4.
func ParseSignature(der []byte) (*Signature, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, malformed("SES_Signature is not one DER SEQUENCE")
	}
	sig := &Signature{Raw: der}
	var rawTBS cryptobyte.String
	if !seq.ReadASN1Element(&rawTBS, cbasn1.SEQUENCE) {
		return nil, malformed("TBS_Sign")
	}
	sig.RawTBS = rawTBS
	var bits asn1.BitString
	if seq.PeekASN1Tag(cbasn1.BIT_STRING) {
		sig.Format = V1
		if !readBits(&seq, &bits) || !seq.Empty() {
			return nil, malformed("v1 signature")
		}
	} else {
		sig.Format = V4
		var cert cryptobyte.String
		if !seq.ReadASN1(&cert, cbasn1.OCTET_STRING) || !seq.ReadASN1ObjectIdentifier(&sig.SignAlg) || !readBits(&seq, &bits) {
			return nil, malformed("v4 signer certificate, algorithm or signature")
		}
		sig.Cert = cert
		if !seq.Empty() {
			ts, err := readOptionalBitString0(&seq)
			if err != nil {
				return nil, err
			}
			sig.TimeStamp = ts
		}
		if !seq.Empty() {
			return nil, malformed("trailing data in SES_Signature")
		}
	}
	sig.Value = bits.Bytes
	tbs, err := ParseTBS(rawTBS, sig.Format)
	if err != nil {
		return nil, err
	}
	sig.TBS = *tbs
	if sig.Format == V1 {
		sig.Cert, sig.SignAlg = tbs.Cert, tbs.SignAlg
	}
	return sig, nil
}

// ParseTBS parses a DER TBS_Sign of the given format (V1 or V4); the seal
// inside is only delimited here, ParseSeal reads it.
func ParseTBS(der []byte, format int) (*TBS, error) {
	in := cryptobyte.String(der)
	var seq, seal cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, malformed("TBS_Sign")
	}
	t := &TBS{}
	if !readInt(&seq, &t.Version) || !seq.ReadASN1Element(&seal, cbasn1.SEQUENCE) {
		return nil, malformed("TBS_Sign version or eseal")
	}
	t.Seal = seal
	var bits asn1.BitString
	switch format {
	case V1:
		if !readBits(&seq, &bits) {
			return nil, malformed("v1 timeInfo")
		}
		t.RawTimeInfo = bits.Bytes
		// timeInfo is "a timestamp or a UTCTime" (GM/T 0031-2014 §6.2): a
		// bare UTCTime element, or its text.
		ti := cryptobyte.String(bits.Bytes)
		if !ti.ReadASN1UTCTime(&t.TimeInfo) || !ti.Empty() {
			if tm, err := time.Parse("060102150405Z", string(bits.Bytes)); err == nil {
				t.TimeInfo = tm
			}
		}
	case V4:
		if !seq.ReadASN1GeneralizedTime(&t.TimeInfo) {
			return nil, malformed("timeInfo")
		}
	default:
		return nil, malformed(fmt.Sprintf("format %d", format))
	}
	if !readBits(&seq, &bits) || !readString(&seq, cbasn1.IA5String, &t.PropertyInfo) {
		return nil, malformed("dataHash or propertyInfo")
	}
	t.DataHash = bits.Bytes
	if format == V1 {
		var cert cryptobyte.String
		if !seq.ReadASN1(&cert, cbasn1.OCTET_STRING) || !seq.ReadASN1ObjectIdentifier(&t.SignAlg) {
			return nil, malformed("v1 signer certificate or algorithm")
		}
		t.Cert = cert
	} else if !seq.Empty() {
		ext, err := readExtDatas0(&seq)
		if err != nil {
			return nil, err
		}
		t.ExtDatas = ext
	}
	if !seq.Empty() {
		return nil, malformed("trailing data in TBS_Sign")
	}
	return t, nil
}

// Encoding. Everything below writes DER.

func addBits(b *cryptobyte.Builder, data []byte) {
	b.AddASN1BitString(data)
}

func addString(b *cryptobyte.Builder, tag cbasn1.Tag, s string) {
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

func addTime(b *cryptobyte.Builder, format int, t time.Time) {
	if format == V1 {
		b.AddASN1UTCTime(t.UTC())
		return
	}
	b.AddASN1GeneralizedTime(t.UTC())
}

func addExtList(b *cryptobyte.Builder, ext []ExtData) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range ext {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(e.ID)
				if e.Critical {
					b.AddASN1Boolean(true)
				}
				b.AddASN1OctetString(e.Value)
			})
		}
	})
}

// Marshal encodes the SES_SealInfo for a seal of format V1 or V4.
func (info *SealInfo) Marshal(format int) ([]byte, error) {
	if format != V1 && format != V4 {
		return nil, fmt.Errorf("ses: format %d", format)
	}
	p := &info.Property
	if !isIA5(info.ESID) || !isIA5(info.VID) || !isIA5(info.Picture.Type) {
		return nil, errors.New("ses: esID, vid and picture type must be IA5 (ASCII) strings")
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addString(b, cbasn1.IA5String, HeaderID)
			b.AddASN1Int64(int64(info.Version))
			addString(b, cbasn1.IA5String, info.VID)
		})
		addString(b, cbasn1.IA5String, info.ESID)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(int64(p.Type))
			addString(b, cbasn1.UTF8String, p.Name)
			listType := p.CertListType
			if format == V4 {
				if listType == 0 {
					listType = CertListCerts
				}
				b.AddASN1Int64(int64(listType))
			} else {
				listType = CertListCerts
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if listType == CertListDigests {
					for _, d := range p.CertDigests {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							addString(b, cbasn1.PrintableString, d.Type)
							b.AddASN1OctetString(d.Value)
						})
					}
					return
				}
				for _, c := range p.Certs {
					b.AddASN1OctetString(c)
				}
			})
			addTime(b, format, p.CreateDate)
			addTime(b, format, p.ValidStart)
			addTime(b, format, p.ValidEnd)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addString(b, cbasn1.IA5String, info.Picture.Type)
			b.AddASN1OctetString(info.Picture.Data)
			b.AddASN1Int64(int64(info.Picture.Width))
			b.AddASN1Int64(int64(info.Picture.Height))
		})
		if len(info.ExtDatas) > 0 {
			addExtList(b, info.ExtDatas)
		}
	})
	return b.Bytes()
}

// Marshal encodes the seal from RawInfo (or Info when RawInfo is empty),
// Cert, SignAlg and SignedValue, in its Format.
func (s *Seal) Marshal() ([]byte, error) {
	info := s.RawInfo
	if info == nil {
		var err error
		if info, err = s.Info.Marshal(s.Format); err != nil {
			return nil, err
		}
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(info)
		signInfo := func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(s.Cert)
			b.AddASN1ObjectIdentifier(s.SignAlg)
			addBits(b, s.SignedValue)
		}
		if s.Format == V1 {
			b.AddASN1(cbasn1.SEQUENCE, signInfo)
			return
		}
		signInfo(b)
		if s.TimeStamp != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addBits(b, s.TimeStamp) })
		}
	})
	return b.Bytes()
}

// Marshal encodes a TBS_Sign of the given format.
func (t *TBS) Marshal(format int) ([]byte, error) {
	if !isIA5(t.PropertyInfo) {
		return nil, errors.New("ses: propertyInfo must be an IA5 (ASCII) string")
	}
	if format != V1 && format != V4 {
		return nil, fmt.Errorf("ses: format %d", format)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(int64(t.Version))
		b.AddBytes(t.Seal)
		if format == V1 {
			ti := t.RawTimeInfo
			if ti == nil {
				tb := cryptobyte.NewBuilder(nil)
				tb.AddASN1UTCTime(t.TimeInfo.UTC())
				ti = tb.BytesOrPanic()
			}
			addBits(b, ti)
		} else {
			b.AddASN1GeneralizedTime(t.TimeInfo.UTC())
		}
		addBits(b, t.DataHash)
		addString(b, cbasn1.IA5String, t.PropertyInfo)
		if format == V1 {
			b.AddASN1OctetString(t.Cert)
			b.AddASN1ObjectIdentifier(t.SignAlg)
			return
		}
		if len(t.ExtDatas) > 0 {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addExtList(b, t.ExtDatas) })
		}
	})
	return b.Bytes()
}

// Marshal encodes the signature from RawTBS, Cert, SignAlg, Value and
// TimeStamp, in its Format.
func (s *Signature) Marshal() ([]byte, error) {
	if len(s.RawTBS) == 0 {
		return nil, errors.New("ses: signature without TBS_Sign")
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(s.RawTBS)
		if s.Format == V1 {
			addBits(b, s.Value)
			return
		}
		b.AddASN1OctetString(s.Cert)
		b.AddASN1ObjectIdentifier(s.SignAlg)
		addBits(b, s.Value)
		if s.TimeStamp != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addBits(b, s.TimeStamp) })
		}
	})
	return b.Bytes()
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
