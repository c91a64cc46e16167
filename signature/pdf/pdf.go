package pdf

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// ErrFormat is returned for documents this package cannot seal or read.
var ErrFormat = errors.New("pdf: unsupported document")

// DefaultReserve is the room left for the DER SignedData, in bytes, on top
// of the seal it carries: the signer's certificate and chain and an RFC
// 3161 token with its TSA certificates fit in it.
const DefaultReserve = 24 << 10

// MaxReserve bounds the placeholder (a 1 MB hex string is 2 MB of file).
const MaxReserve = 1 << 20

var configOnce sync.Once

// config returns pdfcpu's default configuration without its config
// directory: pdfcpu would otherwise create ~/.config/pdfcpu on first use,
// which a codec must not do (ARCHITECTURE.md §1).
func config() *model.Configuration {
	configOnce.Do(api.DisableConfigDir)
	c := model.NewDefaultConfiguration()
	c.ValidationMode = model.ValidationRelaxed
	return c
}

// Position places the visible seal: Page from 1, the rectangle in
// millimetres from the top left corner of the page's media box (the same
// convention as the OFD StampAnnot Boundary, GB/T 33190 §18).
//
// With Keyword, the seal is centred on the Occurrence-th (from 1, 0 is 1)
// occurrence of Keyword in the pages' text (FindKeyword); Page, X and Y
// are ignored.
//
// With Riding, the seal is a riding seal (骑缝章): Width is cut into as
// many vertical slices as the document has pages and slice i is shown at
// the right edge of page i (of its crop box, or media box), its top at Y
// or vertically centred if Centred; Page and X are ignored.
type Position struct {
	Page                int
	X, Y, Width, Height float64

	Riding  bool
	Centred bool

	Keyword    string
	Occurrence int
}

// Field describes the signature field to add.
type Field struct {
	Name     string    // the field name (/T), unique in the document
	Signer   string    // /Name of the signature dictionary
	Reason   string    // /Reason
	Time     time.Time // /M, the signer's claimed time
	Picture  []byte    // the seal picture, PNG (transparency kept)
	Position Position
	// Reserve is the room for the DER SignedData in bytes (default
	// DefaultReserve).
	Reserve int
}

// Prepared is a document with the signature field added and /Contents
// still zeros.
type Prepared struct {
	// Document is the original followed by the increment.
	Document []byte
	// ByteRange is what the signature covers: everything but the
	// /Contents hex string, delimiters included (ISO 32000-1 §12.8.1).
	ByteRange [4]int64
}

const mmToPt = 72 / 25.4

// readDocument parses doc for sealing: an unencrypted PDF whose page tree
// reads.
func readDocument(doc []byte) (*model.Context, error) {
	if len(doc) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrFormat)
	}
	ctx, err := api.ReadContext(bytes.NewReader(doc), config())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if ctx.Encrypt != nil {
		return nil, fmt.Errorf("%w: encrypted PDF", ErrFormat)
	}
	if err := ctx.EnsurePageCount(); err != nil {
		return nil, fmt.Errorf("%w: page tree: %v", ErrFormat, err)
	}
	return ctx, nil
}

// Prepare appends to doc an incremental update with a signature field
// whose widget shows the seal picture at f.Position, and a signature
// dictionary with a zeroed /Contents of f.Reserve bytes and its
// /ByteRange.
func Prepare(doc []byte, f Field) (*Prepared, error) {
	if len(doc) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrFormat)
	}
	if f.Reserve == 0 {
		f.Reserve = DefaultReserve
	}
	if f.Reserve < 1024 || f.Reserve > MaxReserve {
		return nil, fmt.Errorf("pdf: reserve %d out of [1 KiB, 1 MiB]", f.Reserve)
	}
	if f.Name == "" || len(f.Picture) == 0 {
		return nil, errors.New("pdf: a field name and a seal picture are required")
	}
	ctx, err := readDocument(doc)
	if err != nil {
		return nil, err
	}
	pos := f.Position
	if pos.Width <= 0 || pos.Height <= 0 || (pos.Keyword == "" && (pos.X < 0 || pos.Y < 0)) {
		return nil, errors.New("pdf: the seal rectangle needs a positive size and a non-negative position")
	}
	places, err := placements(ctx, pos)
	if err != nil {
		return nil, err
	}

	xt := ctx.XRefTable
	first := *xt.Size
	changed := map[int]bool{}

	// One image XObject, shared by every appearance.
	imgRef, _, _, err := model.CreateImageResource(xt, bytes.NewReader(f.Picture))
	if err != nil {
		return nil, fmt.Errorf("pdf: seal picture: %w", err)
	}

	// The signature dictionary. pdfcpu writes /ByteRange padded to the
	// worst case and records where /ByteRange and /Contents landed
	// (WriteContext.OffsetSig*), which is what the patching below needs.
	sig := types.Dict{
		"Type":      types.Name("Sig"),
		"Filter":    types.Name("Adobe.PPKLite"),
		"SubFilter": types.Name("adbe.pkcs7.detached"),
		"ByteRange": types.Array{types.Integer(0), types.Integer(0), types.Integer(0), types.Integer(0)},
		"Contents":  types.HexLiteral(strings.Repeat("0", 2*f.Reserve)),
		"M":         types.StringLiteral(types.DateString(f.Time)),
	}
	if f.Signer != "" {
		sig["Name"] = textString(f.Signer)
	}
	if f.Reason != "" {
		sig["Reason"] = textString(f.Reason)
	}
	sigRef, err := xt.IndRefForNewObject(sig)
	if err != nil {
		return nil, err
	}

	// One widget: the field merged with its widget (ISO 32000-1
	// §12.7.4.5, §12.5.6.19). Several (riding): one signature field whose
	// /Kids are the widgets, one per page (§12.7.3.1: a field may have
	// several widget annotations; each kid has /Parent and no /T), so the
	// one signature covers all the slices.
	field := types.Dict{
		"FT": types.Name("Sig"),
		"T":  textString(f.Name),
		"V":  *sigRef,
	}
	var fieldRef *types.IndirectRef
	if len(places) > 1 {
		if fieldRef, err = xt.IndRefForNewObject(field); err != nil {
			return nil, err
		}
	}
	var kids types.Array
	for _, pl := range places {
		apRef, err := appearance(xt, *imgRef, pl)
		if err != nil {
			return nil, err
		}
		// Flags Print and Locked (§12.5.3).
		widget := types.Dict{
			"Type":    types.Name("Annot"),
			"Subtype": types.Name("Widget"),
			"P":       *pl.pageRef,
			"Rect":    types.Array{types.Float(pl.llx), types.Float(pl.lly), types.Float(pl.llx + pl.w), types.Float(pl.lly + pl.h)},
			"F":       types.Integer(132),
			"AP":      types.Dict{"N": *apRef},
		}
		if fieldRef != nil {
			// /V repeated in the kid: poppler before 23.x (Debian 12's
			// pdfsig 22.12) takes a kid with /Parent for a child field
			// and does not inherit /V, so it would report the slices as
			// unsigned fields; readers that see a pure widget ignore it.
			widget["Parent"] = *fieldRef
			widget["V"] = *sigRef
		} else {
			maps.Copy(widget, field)
		}
		widgetRef, err := xt.IndRefForNewObject(widget)
		if err != nil {
			return nil, err
		}
		if fieldRef == nil {
			fieldRef = widgetRef
		} else {
			kids = append(kids, *widgetRef)
		}
		// The page's /Annots, directly in the page or as an array object.
		if err := appendTo(xt, pl.pageDict, "Annots", *widgetRef, pl.pageRef.ObjectNumber.Value(), changed); err != nil {
			return nil, fmt.Errorf("%w: page %d annotations: %v", ErrFormat, pl.page, err)
		}
	}
	if kids != nil {
		field["Kids"] = kids
	}

	// The catalog's /AcroForm: /Fields gets the field, /SigFlags 3
	// (SignaturesExist, AppendOnly, §12.7.2).
	root, err := xt.Catalog()
	if err != nil {
		return nil, fmt.Errorf("%w: catalog: %v", ErrFormat, err)
	}
	rootNr := xt.Root.ObjectNumber.Value()
	var form types.Dict
	formNr := rootNr
	switch o := root["AcroForm"].(type) {
	case nil:
		form = types.Dict{}
		root["AcroForm"] = form
	case types.Dict:
		form = o
	case types.IndirectRef:
		if form, err = xt.DereferenceDict(o); err != nil || form == nil {
			return nil, fmt.Errorf("%w: AcroForm: %v", ErrFormat, err)
		}
		formNr = o.ObjectNumber.Value()
	default:
		return nil, fmt.Errorf("%w: AcroForm is a %T", ErrFormat, o)
	}
	if err := appendTo(xt, form, "Fields", *fieldRef, formNr, changed); err != nil {
		return nil, fmt.Errorf("%w: AcroForm fields: %v", ErrFormat, err)
	}
	form["SigFlags"] = types.Integer(3)
	changed[formNr] = true

	// Write the increment: the changed objects and every new one.
	for nr := first; nr < *xt.Size; nr++ {
		changed[nr] = true
	}
	for nr := range changed {
		ctx.Write.IncrementWithObjNr(nr)
	}
	sortInts(ctx.Write.ObjNrs)
	ctx.Write.Increment = true
	var out bytes.Buffer
	out.Write(doc)
	if doc[len(doc)-1] != '\n' && doc[len(doc)-1] != '\r' {
		out.WriteByte('\n')
	}
	ctx.Write.Offset = int64(out.Len())
	if err := api.WriteIncrement(ctx, &out); err != nil {
		return nil, fmt.Errorf("pdf: write the increment: %w", err)
	}
	b := out.Bytes()
	brOff, cOff := ctx.Write.OffsetSigByteRange, ctx.Write.OffsetSigContents
	cEnd := cOff + int64(2*f.Reserve) + 2
	if brOff <= 0 || cOff <= brOff || cEnd > int64(len(b)) || b[cOff] != '<' || b[cEnd-1] != '>' || !bytes.HasPrefix(b[brOff:], []byte("[0 0 0 0]")) {
		return nil, errors.New("pdf: the signature dictionary was not written where expected")
	}
	p := &Prepared{Document: b, ByteRange: [4]int64{0, cOff, cEnd, int64(len(b)) - cEnd}}
	br := fmt.Sprintf("[%d %d %d %d]", p.ByteRange[0], p.ByteRange[1], p.ByteRange[2], p.ByteRange[3])
	// The /ByteRange slot is 36 characters wide (pdfcpu's worst case).
	if len(br) > 36 {
		return nil, errors.New("pdf: document too large for the ByteRange slot")
	}
	copy(b[brOff:], br+strings.Repeat(" ", 36-len(br)))
	return p, nil
}

// placement is one widget of the seal: its page, its rectangle in
// default user space (points) and, for a slice of a riding seal, where
// the picture starts left of the widget and how wide the whole picture
// is.
type placement struct {
	page     int
	pageDict types.Dict
	pageRef  *types.IndirectRef
	llx, lly float64
	w, h     float64
	shift    float64 // the picture's left edge is at -shift in the widget
	pictureW float64 // the whole picture's width (= w but for slices)
}

// placements resolves pos into the widgets to add.
func placements(ctx *model.Context, pos Position) ([]placement, error) {
	page := func(nr int) (placement, *types.Rectangle, error) {
		d, ref, inh, err := ctx.PageDict(nr, false)
		if err != nil || ref == nil {
			return placement{}, nil, fmt.Errorf("%w: page %d: %v", ErrFormat, nr, err)
		}
		box := inh.MediaBox
		if pos.Riding && inh.CropBox != nil {
			// The visible edge of the page is the crop box's (ISO
			// 32000-1 §14.11.2).
			box = inh.CropBox
		}
		if box == nil {
			box = types.RectForFormat("A4")
		}
		if pos.Riding && inh.Rotate%360 != 0 {
			// The right edge of a rotated page is another side of its
			// box; not handled.
			return placement{}, nil, fmt.Errorf("%w: page %d is rotated (/Rotate %d); a riding seal needs unrotated pages", ErrFormat, nr, inh.Rotate)
		}
		return placement{page: nr, pageDict: d, pageRef: ref}, box, nil
	}
	w, h := pos.Width*mmToPt, pos.Height*mmToPt
	if pos.Keyword != "" {
		if pos.Riding {
			return nil, errors.New("pdf: a keyword position and a riding seal exclude each other")
		}
		hit, err := findKeyword(ctx, pos.Keyword, pos.Occurrence)
		if err != nil {
			return nil, err
		}
		// Centred on the hit: the seal may reach past the page's edge
		// for a keyword near it, as in OFD.
		pos.Page = hit.Page
		pos.X = hit.Box.X + hit.Box.W/2 - pos.Width/2
		pos.Y = hit.Box.Y + hit.Box.H/2 - pos.Height/2
	}
	if !pos.Riding {
		if pos.Page < 1 || pos.Page > ctx.PageCount {
			return nil, fmt.Errorf("pdf: page %d of %d", pos.Page, ctx.PageCount)
		}
		pl, mb, err := page(pos.Page)
		if err != nil {
			return nil, err
		}
		pl.llx, pl.lly, pl.w, pl.h, pl.pictureW = mb.LL.X+pos.X*mmToPt, mb.UR.Y-pos.Y*mmToPt-h, w, h, w
		return []placement{pl}, nil
	}
	n := ctx.PageCount
	if n < 1 {
		return nil, fmt.Errorf("%w: no pages", ErrFormat)
	}
	// As for OFD (signature/ofd riding): slice i of n, from the left, at
	// the right edge of page i, so that the pages fanned out, each
	// overlapping the next, show the whole seal.
	slice := w / float64(n)
	out := make([]placement, 0, n)
	for i := range n {
		pl, box, err := page(i + 1)
		if err != nil {
			return nil, err
		}
		top := box.UR.Y - pos.Y*mmToPt
		if pos.Centred {
			top = (box.LL.Y+box.UR.Y)/2 + h/2
		}
		pl.llx, pl.lly, pl.w, pl.h = box.UR.X-slice, top-h, slice, h
		pl.shift, pl.pictureW = float64(i)*slice, w
		out = append(out, pl)
	}
	return out, nil
}

// appearance adds the widget's normal appearance: a form XObject of the
// widget's size drawing the picture (ISO 32000-1 §12.5.5; an image is
// painted in the unit square, §8.9.5, so it is scaled to the picture's
// size). A slice draws the whole picture shifted left by pl.shift and is
// clipped to its BBox (§8.10.1), which an explicit clipping path repeats
// for readers that do not clip form XObjects.
func appearance(xt *model.XRefTable, img types.IndirectRef, pl placement) (*types.IndirectRef, error) {
	content := fmt.Sprintf("q %.4f 0 0 %.4f 0 0 cm /Seal Do Q", pl.w, pl.h)
	if pl.shift != 0 || pl.pictureW != pl.w {
		content = fmt.Sprintf("q 0 0 %.4f %.4f re W n %.4f 0 0 %.4f %.4f 0 cm /Seal Do Q", pl.w, pl.h, pl.pictureW, pl.h, -pl.shift)
	}
	ap, err := xt.NewStreamDictForBuf([]byte(content))
	if err != nil {
		return nil, err
	}
	ap.Insert("Type", types.Name("XObject"))
	ap.Insert("Subtype", types.Name("Form"))
	ap.Insert("BBox", types.Array{types.Float(0), types.Float(0), types.Float(pl.w), types.Float(pl.h)})
	ap.Insert("Resources", types.Dict{"XObject": types.Dict{"Seal": img}})
	if err := ap.Encode(); err != nil {
		return nil, err
	}
	return xt.IndRefForNewObject(*ap)
}

// appendTo appends ref to the array d[key] (created when absent); the
// object that changed (owner, or the array's own object) is marked.
func appendTo(xt *model.XRefTable, d types.Dict, key string, ref types.IndirectRef, owner int, changed map[int]bool) error {
	switch o := d[key].(type) {
	case nil:
		d[key] = types.Array{ref}
		changed[owner] = true
	case types.Array:
		d[key] = append(o, ref)
		changed[owner] = true
	case types.IndirectRef:
		a, err := xt.DereferenceArray(o)
		if err != nil {
			return err
		}
		e, ok := xt.FindTableEntryForIndRef(&o)
		if !ok {
			return fmt.Errorf("%s: object %d not found", key, o.ObjectNumber.Value())
		}
		e.Object = append(a, ref)
		changed[o.ObjectNumber.Value()] = true
	default:
		return fmt.Errorf("%s is a %T", key, o)
	}
	return nil
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// Digest hashes the bytes the ByteRange covers with h.
func (p *Prepared) Digest(h hash.Hash) []byte {
	r := p.ByteRange
	h.Write(p.Document[r[0] : r[0]+r[1]])
	h.Write(p.Document[r[2] : r[2]+r[3]])
	return h.Sum(nil)
}

// Finish writes the DER SignedData into the /Contents placeholder and
// returns the sealed document.
func (p *Prepared) Finish(der []byte) ([]byte, error) {
	room := (p.ByteRange[2] - p.ByteRange[1] - 2) / 2
	if int64(len(der)) > room {
		return nil, fmt.Errorf("pdf: the signature (%d bytes) does not fit the %d reserved", len(der), room)
	}
	out := bytes.Clone(p.Document)
	const hexdigits = "0123456789ABCDEF"
	at := p.ByteRange[1] + 1
	for i, c := range der {
		out[at+int64(2*i)] = hexdigits[c>>4]
		out[at+int64(2*i)+1] = hexdigits[c&15]
	}
	return out, nil
}

// textString encodes s as a PDF text string: UTF-16BE with its byte order
// mark (ISO 32000-1 §7.9.2.2), written in hex so that no escaping is
// needed.
func textString(s string) types.HexLiteral {
	return types.HexLiteral(hex.EncodeToString([]byte(types.EncodeUTF16String(s))))
}
