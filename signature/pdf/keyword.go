package pdf

// Placing seals by keyword: a minimal text-position extractor.
//
// pdfcpu decodes content streams but gives no text positions, so this
// file interprets the page content stream far enough to know where each
// glyph is drawn (ISO 32000-1 §9.4, text objects; §9.2.4, glyph
// positioning; §8.4.4, the CTM).
//
// Supported: simple fonts (Type1, TrueType, MMType1) with /Widths and
// /FirstChar, the standard 14 fonts' own widths when /Widths is absent
// (pdfcpu's core font metrics), else /FontDescriptor /MissingWidth, else
// 500; text decoded through /ToUnicode (bfchar and bfrange, 1- and 2-byte
// codes) when present, else as WinAnsiEncoding (PDFDocEncoding agrees on
// the printable ASCII and Latin-1 ranges); Type0 fonts with 2-byte codes
// (Identity-H, or a UCS-2 CMap) with advances from the descendant font's
// /W and /DW; q/Q, cm, BT/ET, Tf, Tm, Td, TD, T*, TL, Tc, Tw, Tz, Ts, Tj,
// TJ, ' and "; text in Form XObjects drawn with Do (nested up to 8 deep).
//
// Not supported: Type3 fonts (their glyph space is /FontMatrix, not
// 1/1000: their text is skipped), vertical writing (Identity-V is laid
// out horizontally), Type0 fonts with mixed 1- and 2-byte CMaps (GBK-EUC-H
// and the like), /Differences encodings without /ToUnicode (the base
// encoding is used), encrypted PDFs (refused), text in annotations and
// in patterns.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"

	pdffont "github.com/pdfcpu/pdfcpu/pkg/font"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"github.com/govtrust/govtrust/signature/internal/textsearch"
)

// ErrKeywordNotFound is returned when a keyword position names text the
// document's pages do not contain (often enough).
var ErrKeywordNotFound = errors.New("pdf: keyword not found")

// MaxKeywordBytes bounds a keyword, as for OFD.
const MaxKeywordBytes = 256

// Box is a rectangle in millimetres: its top left corner from the top
// left corner of the page's media box (the Position convention), width
// and height.
type Box struct{ X, Y, W, H float64 }

// Hit is where a keyword was found: the page (from 1, as in Position)
// and the box of its glyphs.
type Hit struct {
	Page int
	Box  Box
}

// FindKeyword returns where the n-th (from 1) occurrence of keyword is
// drawn, counting over the pages in order. Matching is on the decoded
// glyph sequence of each page, white space ignored in both, so a keyword
// split over several strings, TJ elements, text objects or lines is
// found. The box spans the first glyph's origin to the last glyph's end
// (the glyph's width, without Tc), from the baseline up one font size
// (× the text and current matrices' scale). It is in the
// page's unrotated default user space: /Rotate is not applied, as it is
// not for Position.
func FindKeyword(doc []byte, keyword string, n int) (*Hit, error) {
	ctx, err := readDocument(doc)
	if err != nil {
		return nil, err
	}
	return findKeyword(ctx, keyword, n)
}

func findKeyword(ctx *model.Context, keyword string, n int) (*Hit, error) {
	search, err := textsearch.New("pdf", keyword, n, MaxKeywordBytes)
	if err != nil {
		return nil, err
	}
	for nr := 1; nr <= ctx.PageCount; nr++ {
		d, _, inh, err := ctx.PageDict(nr, false)
		if err != nil || d == nil {
			return nil, fmt.Errorf("%w: page %d: %v", ErrFormat, nr, err)
		}
		content, err := ctx.PageContent(d, nr)
		if err != nil && !errors.Is(err, model.ErrNoContent) {
			return nil, fmt.Errorf("%w: page %d content: %v", ErrFormat, nr, err)
		}
		res := inh.Resources
		if r, err := ctx.DereferenceDict(d["Resources"]); err == nil && r != nil {
			res = r
		}
		in := &interp{xt: ctx.XRefTable, fonts: map[string]*pfont{}}
		in.run(content, res, identityM, 0)
		gs, text := textsearch.Visible(in.glyphs, func(g pglyph) rune { return g.r })
		if s, ok := search.Page(text); ok {
			mb := inh.MediaBox
			if mb == nil {
				mb = types.RectForFormat("A4")
			}
			// The upright box enclosing every glyph's advance and height:
			// from the first glyph's origin to the last one's end on one
			// line; both lines for a keyword broken over two; the
			// enclosing box for rotated text.
			var xs, ys []float64
			for _, g := range gs[s : s+search.Len()] {
				xs = append(xs, g.x0, g.x0+g.ux, g.x1, g.x1+g.ux)
				ys = append(ys, g.y0, g.y0+g.uy, g.y1, g.y1+g.uy)
			}
			x0, x1 := minf(xs), maxf(xs)
			y0, y1 := minf(ys), maxf(ys)
			return &Hit{Page: nr, Box: Box{
				X: (x0 - mb.LL.X) / mmToPt, Y: (mb.UR.Y - y1) / mmToPt,
				W: (x1 - x0) / mmToPt, H: (y1 - y0) / mmToPt,
			}}, nil
		}
	}
	return nil, search.NotFound(ErrKeywordNotFound)
}

func minf(a []float64) float64 {
	m := a[0]
	for _, v := range a[1:] {
		m = math.Min(m, v)
	}
	return m
}

func maxf(a []float64) float64 {
	m := a[0]
	for _, v := range a[1:] {
		m = math.Max(m, v)
	}
	return m
}

// mat is a PDF matrix [a b c d e f]: (x, y) → (a·x + c·y + e, b·x + d·y + f)
// (ISO 32000-1 §8.3.4).
type mat [6]float64

var identityM = mat{1, 0, 0, 1, 0, 0}

// mul returns m × n (m applied first).
func (m mat) mul(n mat) mat {
	return mat{
		m[0]*n[0] + m[1]*n[2], m[0]*n[1] + m[1]*n[3],
		m[2]*n[0] + m[3]*n[2], m[2]*n[1] + m[3]*n[3],
		m[4]*n[0] + m[5]*n[2] + n[4], m[4]*n[1] + m[5]*n[3] + n[5],
	}
}

func (m mat) apply(x, y float64) (float64, float64) {
	return m[0]*x + m[2]*y + m[4], m[1]*x + m[3]*y + m[5]
}

// pglyph is one glyph drawn, in default user space: its baseline from
// (x0,y0) to (x1,y1) and the "up" vector (ux,uy), one font size long.
type pglyph struct {
	r                      rune
	x0, y0, x1, y1, ux, uy float64
}

// gstate is the part of the graphics state text positions depend on
// (§8.4.1, §9.3.1).
type gstate struct {
	ctm                       mat
	tc, tw, th, tl, rise, tfs float64
	font                      *pfont
}

type interp struct {
	xt     *model.XRefTable
	fonts  map[string]*pfont // by resource dict identity + name
	glyphs []pglyph
}

// maxFormDepth bounds nested Form XObjects (and cycles).
const maxFormDepth = 8

// run interprets one content stream with its resources. Malformed
// operators are skipped, as readers do: a locator must not refuse a page
// a viewer shows.
func (in *interp) run(content []byte, res types.Dict, ctm mat, depth int) {
	gs := gstate{ctm: ctm, th: 1}
	var stack []gstate
	var tm, tlm mat
	lx := lexer{b: content}
	var ops []token
	num := func(i int) float64 {
		if i < len(ops) && ops[i].kind == tNum {
			return ops[i].num
		}
		return 0
	}
	td := func(tx, ty float64) {
		tlm = mat{1, 0, 0, 1, tx, ty}.mul(tlm)
		tm = tlm
	}
	show := func(s []byte) {
		f := gs.font
		if f == nil || f.type3 {
			return
		}
		trm := mat{gs.tfs * gs.th, 0, 0, gs.tfs, 0, gs.rise}
		for _, c := range f.codes(s) {
			w := f.width(c)
			m := trm.mul(tm).mul(gs.ctm)
			x0, y0 := m.apply(0, 0)
			x1, y1 := m.apply(w, 0)
			xu, yu := m.apply(0, 1)
			for _, r := range f.text(c) {
				in.glyphs = append(in.glyphs, pglyph{r: r, x0: x0, y0: y0, x1: x1, y1: y1, ux: xu - x0, uy: yu - y0})
			}
			// §9.4.4: tx = ((w0 − Tj/1000) × Tfs + Tc + Tw) × Th; Tw
			// only for the single-byte code 32.
			tx := w*gs.tfs + gs.tc
			if !f.twoByte && c == 32 {
				tx += gs.tw
			}
			tm = mat{1, 0, 0, 1, tx * gs.th, 0}.mul(tm)
		}
	}
	for {
		t, ok := lx.next()
		if !ok {
			return
		}
		if t.kind != tOp {
			ops = append(ops, t)
			continue
		}
		switch t.op {
		case "q":
			stack = append(stack, gs)
		case "Q":
			if len(stack) > 0 {
				gs, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
		case "cm":
			if len(ops) == 6 {
				gs.ctm = mat{num(0), num(1), num(2), num(3), num(4), num(5)}.mul(gs.ctm)
			}
		case "BT":
			tm, tlm = identityM, identityM
		case "Tf":
			if len(ops) == 2 && ops[0].kind == tName {
				gs.font, gs.tfs = in.font(res, ops[0].str), num(1)
			}
		case "Tm":
			if len(ops) == 6 {
				tlm = mat{num(0), num(1), num(2), num(3), num(4), num(5)}
				tm = tlm
			}
		case "Td":
			td(num(0), num(1))
		case "TD":
			gs.tl = -num(1)
			td(num(0), num(1))
		case "T*":
			td(0, -gs.tl)
		case "TL":
			gs.tl = num(0)
		case "Tc":
			gs.tc = num(0)
		case "Tw":
			gs.tw = num(0)
		case "Tz":
			gs.th = num(0) / 100
		case "Ts":
			gs.rise = num(0)
		case "Tj":
			if len(ops) == 1 && ops[0].kind == tStr {
				show([]byte(ops[0].str))
			}
		case "'":
			td(0, -gs.tl)
			if len(ops) == 1 && ops[0].kind == tStr {
				show([]byte(ops[0].str))
			}
		case "\"":
			if len(ops) == 3 && ops[2].kind == tStr {
				gs.tw, gs.tc = num(0), num(1)
				td(0, -gs.tl)
				show([]byte(ops[2].str))
			}
		case "TJ":
			if len(ops) == 1 && ops[0].kind == tArr {
				for _, e := range ops[0].arr {
					switch e.kind {
					case tStr:
						show([]byte(e.str))
					case tNum:
						tm = mat{1, 0, 0, 1, -e.num / 1000 * gs.tfs * gs.th, 0}.mul(tm)
					}
				}
			}
		case "Do":
			if len(ops) == 1 && ops[0].kind == tName && depth < maxFormDepth {
				in.form(res, ops[0].str, gs.ctm, depth)
			}
		}
		ops = ops[:0]
	}
}

// form runs a Form XObject's content (§8.10.1): its /Matrix then the
// current CTM, its own /Resources or, for old files, the page's.
func (in *interp) form(res types.Dict, name string, ctm mat, depth int) {
	xobjs, err := in.xt.DereferenceDict(res["XObject"])
	if err != nil || xobjs == nil {
		return
	}
	sd, _, err := in.xt.DereferenceStreamDict(xobjs[name])
	if err != nil || sd == nil {
		return
	}
	if st, ok := sd.Dict["Subtype"].(types.Name); !ok || st != "Form" {
		return
	}
	if err := sd.Decode(); err != nil {
		return
	}
	m := identityM
	if a, err := in.xt.DereferenceArray(sd.Dict["Matrix"]); err == nil && len(a) == 6 {
		for i := range 6 {
			m[i], _ = in.xt.DereferenceNumber(a[i])
		}
	}
	fres := res
	if r, err := in.xt.DereferenceDict(sd.Dict["Resources"]); err == nil && r != nil {
		fres = r
	}
	in.run(sd.Content, fres, m.mul(ctm), depth+1)
}

// pfont is what the locator needs of a font: how to split a string into
// codes, each code's advance (in text space, glyph units / 1000) and its
// Unicode text.
type pfont struct {
	type3   bool
	twoByte bool
	ucs2    bool // a UCS-2 CMap: the code is the character
	first   int
	widths  []float64
	cidW    map[int]float64
	cidR    []cidRange
	dw      float64 // the default/missing width
	core    string  // a standard 14 font's name, for its metrics
	toUni   *cmap
}

func (in *interp) font(res types.Dict, name string) *pfont {
	fonts, err := in.xt.DereferenceDict(res["Font"])
	if err != nil || fonts == nil {
		return nil
	}
	// Fonts are cached by object: a form's resources may name another
	// font F1 than the page's.
	key := fmt.Sprintf("%p/%s", fonts, name)
	if ref, ok := fonts[name].(types.IndirectRef); ok {
		key = ref.String()
	}
	if f, ok := in.fonts[key]; ok {
		return f
	}
	d, err := in.xt.DereferenceDict(fonts[name])
	if err != nil || d == nil {
		in.fonts[key] = nil
		return nil
	}
	f := in.loadFont(d)
	in.fonts[key] = f
	return f
}

func (in *interp) name(o types.Object) string {
	o, _ = in.xt.Dereference(o)
	if n, ok := o.(types.Name); ok {
		return string(n)
	}
	return ""
}

func (in *interp) loadFont(d types.Dict) *pfont {
	xt := in.xt
	f := &pfont{dw: 500}
	if sd, _, err := xt.DereferenceStreamDict(d["ToUnicode"]); err == nil && sd != nil && sd.Decode() == nil {
		f.toUni = parseCMap(sd.Content)
	}
	switch in.name(d["Subtype"]) {
	case "Type3":
		f.type3 = true
		return f
	case "Type0":
		f.twoByte = true
		enc := in.name(d["Encoding"])
		f.ucs2 = strings.Contains(enc, "UCS2") || strings.Contains(enc, "UTF16")
		f.dw = 1000
		desc, err := xt.DereferenceArray(d["DescendantFonts"])
		if err != nil || len(desc) == 0 {
			return f
		}
		cid, err := xt.DereferenceDict(desc[0])
		if err != nil || cid == nil {
			return f
		}
		if v, err := xt.DereferenceNumber(cid["DW"]); err == nil {
			f.dw = v
		}
		f.cidW = map[int]float64{}
		w, _ := xt.DereferenceArray(cid["W"])
		// §9.7.4.3: c [w1 w2 ...] or c_first c_last w.
		for i := 0; i < len(w); {
			c, err := xt.DereferenceNumber(w[i])
			if err != nil || i+1 >= len(w) {
				break
			}
			if a, err := xt.DereferenceArray(w[i+1]); err == nil && a != nil {
				for k, o := range a {
					v, _ := xt.DereferenceNumber(o)
					f.cidW[int(c)+k] = v
				}
				i += 2
				continue
			}
			if i+2 >= len(w) {
				break
			}
			last, _ := xt.DereferenceNumber(w[i+1])
			v, _ := xt.DereferenceNumber(w[i+2])
			// Kept as a range: expanding c_first..c_last would let a
			// small font dictionary allocate without bound.
			f.cidR = append(f.cidR, cidRange{int(c), int(last), v})
			i += 3
		}
		return f
	}
	base := in.name(d["BaseFont"])
	if i := strings.IndexByte(base, '+'); i == 6 {
		base = base[7:] // a subset tag (§9.6.4)
	}
	if pdffont.IsCoreFont(base) {
		f.core = base
	}
	if fd, err := xt.DereferenceDict(d["FontDescriptor"]); err == nil && fd != nil {
		if v, err := xt.DereferenceNumber(fd["MissingWidth"]); err == nil && v > 0 {
			f.dw = v
		}
	}
	if fc, err := xt.DereferenceNumber(d["FirstChar"]); err == nil {
		f.first = int(fc)
	}
	if a, err := xt.DereferenceArray(d["Widths"]); err == nil {
		for _, o := range a {
			v, _ := xt.DereferenceNumber(o)
			f.widths = append(f.widths, v)
		}
	}
	return f
}

type cidRange struct {
	lo, hi int
	w      float64
}

// codes splits a shown string into character codes.
func (f *pfont) codes(s []byte) []int {
	out := make([]int, 0, len(s))
	if f.twoByte {
		for i := 0; i+1 < len(s); i += 2 {
			out = append(out, int(s[i])<<8|int(s[i+1]))
		}
		return out
	}
	for _, c := range s {
		out = append(out, int(c))
	}
	return out
}

// width is code c's advance in text space units (glyph units / 1000).
func (f *pfont) width(c int) float64 {
	switch {
	case f.twoByte:
		if w, ok := f.cidW[c]; ok {
			return w / 1000
		}
		for _, r := range f.cidR {
			if c >= r.lo && c <= r.hi {
				return r.w / 1000
			}
		}
		return f.dw / 1000
	case c >= f.first && c-f.first < len(f.widths):
		return f.widths[c-f.first] / 1000
	case f.core != "":
		if w, err := pdffont.CharWidth(f.core, rune(c)); err == nil {
			return float64(w) / 1000
		}
	}
	return f.dw / 1000
}

// text is code c's Unicode text.
func (f *pfont) text(c int) []rune {
	if f.toUni != nil {
		if r := f.toUni.lookup(c); r != nil {
			return r
		}
	}
	switch {
	case f.twoByte && f.ucs2:
		return []rune{rune(c)}
	case f.twoByte:
		return nil
	case c >= 0x80 && c < 0xa0:
		return []rune{winAnsi80[c-0x80]}
	}
	return []rune{rune(c)}
}

// winAnsi80 is WinAnsiEncoding's 0x80-0x9F (ISO 32000-1 Annex D.2);
// unused codes map to U+FFFD.
var winAnsi80 = [32]rune{
	'€', '\ufffd', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\ufffd', 'Ž', '\ufffd',
	'\ufffd', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\ufffd', 'ž', 'Ÿ',
}

// cmap is a ToUnicode CMap (§9.10.3): single codes and ranges.
type cmap struct {
	chars  map[int][]rune
	ranges []bfrange
}

type bfrange struct {
	lo, hi int
	dst    []uint16   // UTF-16BE of lo, the last unit incremented
	arr    [][]uint16 // or one destination per code
}

func (m *cmap) lookup(c int) []rune {
	if r, ok := m.chars[c]; ok {
		return r
	}
	for _, rg := range m.ranges {
		if c < rg.lo || c > rg.hi {
			continue
		}
		if rg.arr != nil {
			if c-rg.lo < len(rg.arr) {
				return utf16.Decode(rg.arr[c-rg.lo])
			}
			return nil
		}
		u := append([]uint16(nil), rg.dst...)
		if len(u) == 0 {
			return nil
		}
		u[len(u)-1] += uint16(c - rg.lo)
		return utf16.Decode(u)
	}
	return nil
}

func be16(s string) []uint16 {
	u := make([]uint16, 0, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		u = append(u, uint16(s[i])<<8|uint16(s[i+1]))
	}
	if len(s)%2 == 1 {
		u = append(u, uint16(s[len(s)-1]))
	}
	return u
}

func codeOf(s string) int {
	c := 0
	for i := 0; i < len(s) && i < 4; i++ {
		c = c<<8 | int(s[i])
	}
	return c
}

// parseCMap reads the bfchar and bfrange sections of a ToUnicode CMap
// with the content stream lexer (a CMap is PostScript, but its sections
// are operands followed by an operator, like a content stream).
func parseCMap(b []byte) *cmap {
	m := &cmap{chars: map[int][]rune{}}
	lx := lexer{b: b}
	var ops []token
	for {
		t, ok := lx.next()
		if !ok {
			return m
		}
		if t.kind != tOp {
			ops = append(ops, t)
			continue
		}
		switch t.op {
		case "endbfchar":
			for i := 0; i+1 < len(ops); i += 2 {
				if ops[i].kind == tStr && ops[i+1].kind == tStr {
					m.chars[codeOf(ops[i].str)] = utf16.Decode(be16(ops[i+1].str))
				}
			}
		case "endbfrange":
			for i := 0; i+2 < len(ops); i += 3 {
				if ops[i].kind != tStr || ops[i+1].kind != tStr {
					continue
				}
				rg := bfrange{lo: codeOf(ops[i].str), hi: codeOf(ops[i+1].str)}
				switch d := ops[i+2]; d.kind {
				case tStr:
					rg.dst = be16(d.str)
				case tArr:
					for _, e := range d.arr {
						rg.arr = append(rg.arr, be16(e.str))
					}
				default:
					continue
				}
				m.ranges = append(m.ranges, rg)
			}
		}
		ops = ops[:0]
	}
}

// A content stream lexer (§7.2, §7.3, §8.9.7 for inline images).

type tokKind int

const (
	tNum  tokKind = iota
	tStr          // literal or hex string, decoded bytes
	tName         // without the slash, #xx decoded
	tArr
	tOp
	tOther // dictionaries, booleans, null: kept as operands, unused
)

type token struct {
	kind tokKind
	num  float64
	str  string
	op   string
	arr  []token
}

type lexer struct {
	b []byte
	i int
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == 0
}

func isDelim(c byte) bool {
	return strings.IndexByte("()<>[]{}/%", c) >= 0
}

// maxArray bounds a TJ array's nesting (a malformed stream must not
// recurse without end).
const maxArray = 4

func (lx *lexer) next() (token, bool) { return lx.token(0) }

func (lx *lexer) token(depth int) (token, bool) {
	b := lx.b
	for lx.i < len(b) {
		c := b[lx.i]
		switch {
		case isSpace(c):
			lx.i++
			continue
		case c == '%':
			for lx.i < len(b) && b[lx.i] != '\n' && b[lx.i] != '\r' {
				lx.i++
			}
			continue
		}
		break
	}
	if lx.i >= len(b) {
		return token{}, false
	}
	c := b[lx.i]
	switch {
	case c == '(':
		return token{kind: tStr, str: lx.literal()}, true
	case c == '<' && lx.i+1 < len(b) && b[lx.i+1] == '<':
		lx.i += 2
		return token{kind: tOther, op: "<<"}, true
	case c == '>' && lx.i+1 < len(b) && b[lx.i+1] == '>':
		lx.i += 2
		return token{kind: tOther, op: ">>"}, true
	case c == '<':
		return token{kind: tStr, str: lx.hex()}, true
	case c == '[':
		lx.i++
		t := token{kind: tArr}
		for {
			lx.skipSpace()
			if lx.i >= len(b) {
				return t, true
			}
			if b[lx.i] == ']' {
				lx.i++
				return t, true
			}
			if depth >= maxArray {
				lx.i++
				continue
			}
			e, ok := lx.token(depth + 1)
			if !ok {
				return t, true
			}
			t.arr = append(t.arr, e)
		}
	case c == ']' || c == ')' || c == '>' || c == '{' || c == '}':
		lx.i++
		return token{kind: tOther}, true
	case c == '/':
		lx.i++
		s := lx.regular()
		return token{kind: tName, str: unescapeName(s)}, true
	}
	s := lx.regular()
	if s == "" {
		lx.i++
		return token{kind: tOther}, true
	}
	if (s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+' || s[0] == '.' {
		if v, err := strconv.ParseFloat(s, 64); err == nil {
			return token{kind: tNum, num: v}, true
		}
		return token{kind: tOther}, true
	}
	switch s {
	case "true", "false", "null":
		return token{kind: tOther}, true
	case "ID":
		lx.skipInlineImage()
		return token{kind: tOp, op: "EI"}, true
	}
	return token{kind: tOp, op: s}, true
}

func (lx *lexer) skipSpace() {
	for lx.i < len(lx.b) && isSpace(lx.b[lx.i]) {
		lx.i++
	}
}

func (lx *lexer) regular() string {
	s := lx.i
	for lx.i < len(lx.b) && !isSpace(lx.b[lx.i]) && !isDelim(lx.b[lx.i]) {
		lx.i++
	}
	return string(lx.b[s:lx.i])
}

// skipInlineImage skips an inline image's data, up to "EI" between white
// space (§8.9.7; the data's length is not given without decoding it).
func (lx *lexer) skipInlineImage() {
	b := lx.b
	lx.i++ // the single white space after ID
	for ; lx.i+2 <= len(b); lx.i++ {
		if b[lx.i] == 'E' && b[lx.i+1] == 'I' && lx.i > 0 && isSpace(b[lx.i-1]) && (lx.i+2 == len(b) || isSpace(b[lx.i+2])) {
			lx.i += 2
			return
		}
	}
	lx.i = len(b)
}

func unescapeName(s string) string {
	if !strings.Contains(s, "#") {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && i+2 < len(s) {
			if v, ok := hexVal(s[i+1]); ok {
				if w, ok := hexVal(s[i+2]); ok {
					out = append(out, v<<4|w)
					i += 2
					continue
				}
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// literal reads a (string) with its escapes and balanced parentheses
// (§7.3.4.2).
func (lx *lexer) literal() string {
	b := lx.b
	lx.i++
	var out []byte
	depth := 1
	for lx.i < len(b) {
		c := b[lx.i]
		lx.i++
		switch c {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return string(out)
			}
		case '\\':
			if lx.i >= len(b) {
				return string(out)
			}
			e := b[lx.i]
			lx.i++
			switch e {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case '\r':
				if lx.i < len(b) && b[lx.i] == '\n' {
					lx.i++
				}
				continue
			case '\n':
				continue
			default:
				if e >= '0' && e <= '7' {
					v := int(e - '0')
					for k := 0; k < 2 && lx.i < len(b) && b[lx.i] >= '0' && b[lx.i] <= '7'; k++ {
						v = v*8 + int(b[lx.i]-'0')
						lx.i++
					}
					c = byte(v)
				} else {
					c = e
				}
			}
		}
		out = append(out, c)
	}
	return string(out)
}

// hex reads a <hex string>; an odd final digit is followed by 0 (§7.3.4.3).
func (lx *lexer) hex() string {
	b := lx.b
	lx.i++
	var out []byte
	var hi byte
	half := false
	for lx.i < len(b) && b[lx.i] != '>' {
		if v, ok := hexVal(b[lx.i]); ok {
			if half {
				out = append(out, hi<<4|v)
			} else {
				hi = v
			}
			half = !half
		}
		lx.i++
	}
	lx.i++
	if half {
		out = append(out, hi<<4)
	}
	return string(out)
}
