package pdf

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/smx509"
	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/signature/cms"
)

// Verification errors (besides cms.VerifyError, whose content-altered
// reason means the covered bytes changed).
var (
	// ErrByteRange: the ByteRange does not cover the whole revision but
	// the /Contents string.
	ErrByteRange = errors.New("pdf: the ByteRange does not cover the signed revision but /Contents")
	// ErrAppended: bytes were appended after the signed revision (a
	// later incremental update, or anything else).
	ErrAppended = errors.New("pdf: the document was changed after the signed revision")
)

// detachedSubFilters are the signature types verified: a detached CMS
// SignedData over the ByteRange (ISO 32000-1 §12.8.3.3.1, ISO 32000-2
// §12.8.3.4). adbe.pkcs7.sha1 (a SHA-1 digest as eContent, deprecated by
// ISO 32000-2), adbe.x509.rsa_sha1 and document time-stamps
// (ETSI.RFC3161) are not.
var detachedSubFilters = map[string]bool{"adbe.pkcs7.detached": true, "ETSI.CAdES.detached": true}

// Signature is one signature field's value found in a document.
type Signature struct {
	Field     string
	SubFilter string
	ByteRange [4]int64
	// DER is the SignedData (the /Contents bytes without the padding).
	DER        []byte
	SignedData *cms.SignedData
	// Seal is the DER SESeal of the OIDAttrSeal signed attribute, or nil.
	Seal []byte
	// Err is why the signature could not be read, if it could not.
	Err error
}

// Bounds of the walk of the form fields: a hostile document cannot make
// it long (a field listed many times in /Kids, a cycle, a huge form).
// maxFieldNodes leaves room for real forms of some thousand fields and
// for a riding seal's one widget per page.
const (
	maxFieldDepth  = 8
	maxFieldNodes  = 10000
	maxSignatures  = 64
	ctxCheckPeriod = 256
)

// Signatures reads the signature fields of doc (AcroForm /Fields and
// their /Kids, ISO 32000-1 §12.7.4.5). It is SignaturesContext without a
// deadline.
func Signatures(doc []byte) ([]*Signature, error) {
	return SignaturesContext(context.Background(), doc)
}

// SignaturesContext reads the signature fields of doc (AcroForm /Fields
// and their /Kids, ISO 32000-1 §12.7.4.5). Each field object is visited
// once, however often it is referred to, at most maxFieldNodes entries
// of /Fields and /Kids arrays are looked at and fields are nested at most
// maxFieldDepth deep (ErrFormat beyond); ctx is checked along the walk.
func SignaturesContext(ctx context.Context, doc []byte) ([]*Signature, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pc, err := api.ReadContext(bytes.NewReader(doc), config())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	root, err := pc.Catalog()
	if err != nil {
		return nil, fmt.Errorf("%w: catalog: %v", ErrFormat, err)
	}
	form, err := pc.DereferenceDict(root["AcroForm"])
	if err != nil || form == nil {
		return nil, nil
	}
	var out []*Signature
	// seen holds the object numbers of the field dictionaries and /Kids
	// arrays walked: a field listed twice, or a cycle, is walked once.
	seen := map[int]bool{}
	first := func(o types.Object) bool {
		ref, ok := o.(types.IndirectRef)
		if !ok {
			return true // a direct object is in one place only
		}
		n := ref.ObjectNumber.Value()
		if seen[n] {
			return false
		}
		seen[n] = true
		return true
	}
	nodes := 0
	var walk func(o types.Object, depth int) error
	walk = func(o types.Object, depth int) error {
		if depth > maxFieldDepth {
			return fmt.Errorf("%w: form fields nested more than %d deep", ErrFormat, maxFieldDepth)
		}
		if !first(o) {
			return nil
		}
		a, err := pc.DereferenceArray(o)
		if err != nil {
			return fmt.Errorf("%w: form fields: %v", ErrFormat, err)
		}
		for _, f := range a {
			if nodes++; nodes > maxFieldNodes {
				return fmt.Errorf("%w: more than %d form field entries", ErrFormat, maxFieldNodes)
			}
			if nodes%ctxCheckPeriod == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if !first(f) {
				continue
			}
			d, err := pc.DereferenceDict(f)
			if err != nil || d == nil {
				continue
			}
			if ft := d.NameEntry("FT"); ft != nil && *ft == "Sig" {
				if v, err := pc.DereferenceDict(d["V"]); err == nil && v != nil {
					if len(out) == maxSignatures {
						return fmt.Errorf("%w: more than %d signatures", ErrFormat, maxSignatures)
					}
					out = append(out, readSig(pc.XRefTable, d, v))
				}
			}
			if d["Kids"] != nil {
				if err := walk(d["Kids"], depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(form["Fields"], 0); err != nil {
		return nil, err
	}
	return out, nil
}

func readSig(xt *model.XRefTable, field, v types.Dict) *Signature {
	s := &Signature{}
	if t, ok := field["T"].(types.StringLiteral); ok {
		s.Field, _ = types.StringLiteralToString(t)
	} else if t, ok := field["T"].(types.HexLiteral); ok {
		s.Field, _ = types.HexLiteralToString(t)
	}
	if sf := v.NameEntry("SubFilter"); sf != nil {
		s.SubFilter = *sf
	}
	if !detachedSubFilters[s.SubFilter] {
		s.Err = fmt.Errorf("%w: SubFilter %q: only the detached CMS types adbe.pkcs7.detached and ETSI.CAdES.detached are verified", ErrFormat, s.SubFilter)
		return s
	}
	br, err := xt.DereferenceArray(v["ByteRange"])
	if err != nil || len(br) != 4 {
		s.Err = fmt.Errorf("%w: no ByteRange of four integers", ErrByteRange)
		return s
	}
	for i, o := range br {
		n, ok := o.(types.Integer)
		if !ok || n < 0 {
			s.Err = fmt.Errorf("%w: ByteRange element %d", ErrByteRange, i)
			return s
		}
		s.ByteRange[i] = int64(n)
	}
	var contents []byte
	switch c := v["Contents"].(type) {
	case types.HexLiteral:
		contents, err = c.Bytes()
	case types.StringLiteral:
		contents, err = types.Unescape(c.Value())
	default:
		err = errors.New("no /Contents string")
	}
	if err != nil {
		s.Err = fmt.Errorf("%w: /Contents: %v", ErrFormat, err)
		return s
	}
	// The DER is followed by the placeholder's zeros: keep the outer
	// element only.
	in := cryptobyte.String(contents)
	var elem cryptobyte.String
	var tag cbasn1.Tag
	if !in.ReadAnyASN1Element(&elem, &tag) || tag != cbasn1.SEQUENCE || len(bytes.Trim(in, "\x00")) != 0 {
		s.Err = fmt.Errorf("%w: /Contents is not one DER SignedData", ErrFormat)
		return s
	}
	s.DER = []byte(elem)
	if s.SignedData, err = cms.Parse(s.DER, nil); err != nil {
		s.Err = err
		return s
	}
	// ISO 32000-1 §12.8.3.3.1 (adbe.pkcs7.detached) and ETSI EN 319
	// 142-1 (ETSI.CAdES.detached): the SignedData signs the bytes the
	// ByteRange covers and carries no content of its own. A SignedData
	// with eContent signs that content, whatever document it is put in.
	if !s.SignedData.Detached {
		s.Err = fmt.Errorf("%w: the SignedData carries its own content (eContent): a PDF signature is detached (ISO 32000-1 §12.8.3.3.1)", ErrFormat)
		return s
	}
	if !cms.IsData(s.SignedData.ContentType) {
		s.Err = fmt.Errorf("%w: eContentType %s, want id-data (ISO 32000-1 §12.8.3.3.1)", ErrFormat, s.SignedData.ContentType)
		return s
	}
	if len(s.SignedData.Signers) != 1 {
		s.Err = fmt.Errorf("%w: %d signers, want 1 (ISO 32000-1 §12.8.3.3.1)", ErrFormat, len(s.SignedData.Signers))
		return s
	}
	raw := s.SignedData.Signers[0].RawSignedAttrs
	if raw != nil {
		set := bytes.Clone(raw)
		set[0] = 0x31
		if tbs, err := ParseToBeSigned(set); err == nil {
			s.Seal = tbs.Seal
		}
	}
	return s
}

// CheckByteRange checks that the ByteRange covers the whole of doc but
// the /Contents hex string, and that the string holds the signature read
// (ISO 32000-1 §12.8.1): ErrByteRange if not, ErrAppended if doc goes on
// after the signed revision.
func (s *Signature) CheckByteRange(doc []byte) error {
	r, n := s.ByteRange, int64(len(doc))
	if !fits(r, n) {
		return fmt.Errorf("%w: %v for %d bytes", ErrByteRange, r, n)
	}
	gap := doc[r[1]:r[2]]
	if gap[0] != '<' || gap[len(gap)-1] != '>' {
		return fmt.Errorf("%w: the excluded bytes are not the /Contents hex string", ErrByteRange)
	}
	b, err := hex.DecodeString(string(gap[1 : len(gap)-1]))
	if err != nil || !bytes.HasPrefix(b, s.DER) {
		return fmt.Errorf("%w: the excluded bytes are not this signature's /Contents", ErrByteRange)
	}
	if r[3] != n-r[2] {
		return fmt.Errorf("%w: %d bytes after the signed revision", ErrAppended, n-r[2]-r[3])
	}
	return nil
}

// fits reports whether the ByteRange r is [0 a b c] with 0 < a, a+2 <= b <= n and
// b+c <= n: two ranges of a document of n bytes around a gap that can
// hold the delimiters of a hex string. Each value is compared with n
// before any arithmetic, so that no sum of the untrusted values
// overflows (ISO 32000-1 §12.8.1).
func fits(r [4]int64, n int64) bool {
	return r[0] == 0 && r[1] > 0 && r[1] < n && r[2] > r[1] && r[2] <= n && r[2]-r[1] >= 2 &&
		r[3] >= 0 && r[3] <= n-r[2]
}

// Covered returns the bytes the ByteRange covers, or nil when it does
// not fit doc (CheckByteRange says why).
func (s *Signature) Covered(doc []byte) []byte {
	r := s.ByteRange
	if !fits(r, int64(len(doc))) {
		return nil
	}
	return append(bytes.Clone(doc[r[0]:r[1]]), doc[r[2]:r[2]+r[3]]...)
}

// Verify checks the ByteRange (CheckByteRange) and the SignedData over
// the bytes it covers; it returns the signer's certificate. Chain,
// validity, revocation and the time-stamp are the caller's to check.
// A changed byte of the covered part fails with cms.ReasonContentAltered.
func (s *Signature) Verify(doc []byte, extra []*smx509.Certificate) (*smx509.Certificate, error) {
	if s.Err != nil {
		return nil, s.Err
	}
	if err := s.CheckByteRange(doc); err != nil && !errors.Is(err, ErrAppended) {
		return nil, err
	} else if err != nil {
		// Still check the signature over its revision, so that the
		// report says both what was signed and that more came after.
		cert, verr := s.SignedData.Verify(0, cms.VerifyOptions{Content: s.Covered(doc), Certificates: extra})
		if verr != nil {
			return nil, errors.Join(err, verr)
		}
		return cert, err
	}
	return s.SignedData.Verify(0, cms.VerifyOptions{Content: s.Covered(doc), Certificates: extra})
}
