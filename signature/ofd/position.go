package ofd

// Placing seals by keyword and as riding seals (骑缝章).
//
// Coordinates are millimetres from the page's top left corner, y down
// (GB/T 33190-2016 §7.4, the page coordinate system).

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/govtrust/govtrust/signature/internal/textsearch"
)

// ErrKeywordNotFound is returned when a keyword position names text the
// document's pages do not contain (often enough).
var ErrKeywordNotFound = errors.New("ofd: keyword not found")

// MaxKeywordBytes bounds a keyword (a few words of a form: "（盖章）").
const MaxKeywordBytes = 256

// Box is a rectangle in millimetres: x, y of the top left corner, width,
// height (ST_Box, GB/T 33190 §7.4).
type Box struct{ X, Y, W, H float64 }

func (b Box) String() string {
	return num(round(b.X)) + " " + num(round(b.Y)) + " " + num(round(b.W)) + " " + num(round(b.H))
}

// round keeps 1/1000 mm: finer than any printer, and it keeps floating
// point noise ("104.99999999") out of the XML.
func round(f float64) float64 {
	if f < 0 {
		return -round(-f)
	}
	return float64(int64(f*1000+0.5)) / 1000
}

func parseBox(s string) (Box, bool) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return Box{}, false
	}
	var v [4]float64
	for i := range f {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Box{}, false
		}
		v[i] = x
	}
	return Box{v[0], v[1], v[2], v[3]}, true
}

// Hit is where a keyword was found: the page index (from 0) and the box
// of its glyphs on that page.
type Hit struct {
	Page int
	Box  Box
}

// page is one page of the first document: its object ID, the package path
// of its Content.xml and its physical box.
type page struct {
	id      string
	content string
	box     Box
}

// pages lists the document's pages in order. A page's size is its own
// Area/PhysicalBox, else the document's CommonData/PageArea/PhysicalBox
// (GB/T 33190 §7.5, §7.7); A4 if neither says.
func (p *Package) pages() ([]page, error) {
	root, err := p.docRoot()
	if err != nil {
		return nil, err
	}
	var d struct {
		CommonData struct {
			PageArea struct {
				PhysicalBox string `xml:"PhysicalBox"`
			} `xml:"PageArea"`
		} `xml:"CommonData"`
		Pages struct {
			Page []struct {
				ID      string `xml:"ID,attr"`
				BaseLoc string `xml:"BaseLoc,attr"`
			} `xml:"Page"`
		} `xml:"Pages"`
	}
	if err := xml.Unmarshal(p.files[root], &d); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, root, err)
	}
	def, ok := parseBox(d.CommonData.PageArea.PhysicalBox)
	if !ok {
		def = Box{0, 0, 210, 297}
	}
	out := make([]page, 0, len(d.Pages.Page))
	for _, pg := range d.Pages.Page {
		c := resolve(root, pg.BaseLoc)
		box := def
		var own struct {
			Area struct {
				PhysicalBox string `xml:"PhysicalBox"`
			} `xml:"Area"`
		}
		if b, ok := p.files[c]; ok && xml.Unmarshal(b, &own) == nil {
			if pb, ok := parseBox(own.Area.PhysicalBox); ok {
				box = pb
			}
		}
		out = append(out, page{id: pg.ID, content: c, box: box})
	}
	return out, nil
}

// glyph is one character drawn on a page, in page coordinates: the
// baseline start and end of its advance, and the em height.
type glyph struct {
	r                  rune
	x0, y0, x1, y1, em float64 // baseline from (x0,y0) to (x1,y1)
	mx, my             float64 // the em box centre
}

// matrix is an OFD CTM "a b c d e f": (x, y) → (a·x + c·y + e, b·x + d·y + f).
type matrix [6]float64

var identity = matrix{1, 0, 0, 1, 0, 0}

func (m matrix) apply(x, y float64) (float64, float64) {
	return m[0]*x + m[2]*y + m[4], m[1]*x + m[3]*y + m[5]
}

func parseCTM(s string) matrix {
	f := strings.Fields(s)
	if len(f) != 6 {
		return identity
	}
	var m matrix
	for i := range f {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return identity
		}
		m[i] = v
	}
	return m
}

// parseDeltas reads a DeltaX/DeltaY list, expanding the "g N V"
// abbreviation (N times V; GB/T 33190 §11.3, table 46).
func parseDeltas(s string) []float64 {
	f := strings.Fields(s)
	var out []float64
	for i := 0; i < len(f); i++ {
		if f[i] == "g" && i+2 < len(f) {
			n, err1 := strconv.Atoi(f[i+1])
			v, err2 := strconv.ParseFloat(f[i+2], 64)
			if err1 == nil && err2 == nil && n > 0 && n <= 1<<16 {
				for range n {
					out = append(out, v)
				}
			}
			i += 2
			continue
		}
		if v, err := strconv.ParseFloat(f[i], 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// advance estimates a glyph's advance where DeltaX does not give it: the
// font's widths are not in the package in usable form (the font file may
// be absent or embedded as a subset), so CJK and other wide characters
// take one em and the rest half an em.
func advance(r rune, size float64) float64 {
	if unicode.Is(unicode.Han, r) || unicode.In(r, unicode.Hiragana, unicode.Katakana, unicode.Hangul) ||
		(r >= 0xFF00 && r <= 0xFFEF) || (r >= 0x3000 && r <= 0x303F) {
		return size
	}
	return size / 2
}

// pageGlyphs returns the glyphs of a page's text objects in content order.
//
// Each TextCode starts at its X/Y (or where the previous one ended), and
// glyph k+1 is DeltaX[k] / DeltaY[k] after glyph k (GB/T 33190 §11.3);
// the object coordinates then go through the TextObject's CTM and are
// offset by its Boundary's origin (§8.2.1, as ofdrw and ofd.js render).
// The vertical centre of a glyph is taken 0.38 em above the baseline, the
// centre of an ideographic em box whose descent is 0.12 em.
func pageGlyphs(content []byte) ([]glyph, error) {
	dec := xml.NewDecoder(bytes.NewReader(content))
	var out []glyph
	type textObj struct {
		origin Box
		ctm    matrix
		size   float64
		x, y   float64
	}
	var obj *textObj
	var code *struct {
		x, y   float64
		dx, dy []float64
		text   strings.Builder
	}
	depth := 0
	objDepth := -1
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: page content: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			attr := func(n string) (string, bool) {
				for _, a := range t.Attr {
					if a.Name.Local == n {
						return a.Value, true
					}
				}
				return "", false
			}
			switch t.Name.Local {
			case "TextObject":
				o := &textObj{ctm: identity, size: 3.5}
				if v, ok := attr("Boundary"); ok {
					o.origin, _ = parseBox(v)
				}
				if v, ok := attr("CTM"); ok {
					o.ctm = parseCTM(v)
				}
				if v, ok := attr("Size"); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
						o.size = f
					}
				}
				obj, objDepth = o, depth
			case "TextCode":
				if obj == nil {
					continue
				}
				code = &struct {
					x, y   float64
					dx, dy []float64
					text   strings.Builder
				}{x: obj.x, y: obj.y}
				if v, ok := attr("X"); ok {
					code.x, _ = strconv.ParseFloat(v, 64)
				}
				if v, ok := attr("Y"); ok {
					code.y, _ = strconv.ParseFloat(v, 64)
				}
				if v, ok := attr("DeltaX"); ok {
					code.dx = parseDeltas(v)
				}
				if v, ok := attr("DeltaY"); ok {
					code.dy = parseDeltas(v)
				}
			}
		case xml.CharData:
			if code != nil {
				code.text.Write(t)
			}
		case xml.EndElement:
			switch {
			case t.Name.Local == "TextCode" && code != nil && obj != nil:
				x, y := code.x, code.y
				k := 0
				for _, r := range code.text.String() {
					adv := advance(r, obj.size)
					if k < len(code.dx) {
						adv = code.dx[k]
					}
					dy := 0.0
					if k < len(code.dy) {
						dy = code.dy[k]
					}
					g := glyph{r: r, em: obj.size}
					g.x0, g.y0 = obj.ctm.apply(x, y)
					g.x1, g.y1 = obj.ctm.apply(x+adv, y)
					g.mx, g.my = obj.ctm.apply(x+adv/2, y-0.38*obj.size)
					g.x0, g.x1, g.mx = g.x0+obj.origin.X, g.x1+obj.origin.X, g.mx+obj.origin.X
					g.y0, g.y1, g.my = g.y0+obj.origin.Y, g.y1+obj.origin.Y, g.my+obj.origin.Y
					out = append(out, g)
					x += adv
					y += dy
					k++
				}
				obj.x, obj.y = x, y
				code = nil
			case t.Name.Local == "TextObject" && depth == objDepth:
				obj, objDepth = nil, -1
			}
			depth--
		}
	}
}

// FindKeyword returns where the n-th (from 1) occurrence of keyword is
// drawn, counting over the pages in order. Matching is on the glyph
// sequence of each page, so a keyword split over several TextCodes or
// TextObjects (common in OFD converted from other formats) is found;
// white space in the keyword and the text is ignored. Text inside page
// templates and annotations is not searched.
func FindKeyword(doc []byte, keyword string, n int) (*Hit, error) {
	p, err := Open(doc)
	if err != nil {
		return nil, err
	}
	return p.findKeyword(keyword, n)
}

func (p *Package) findKeyword(keyword string, n int) (*Hit, error) {
	search, err := textsearch.New("ofd", keyword, n, MaxKeywordBytes)
	if err != nil {
		return nil, err
	}
	pages, err := p.pages()
	if err != nil {
		return nil, err
	}
	for i, pg := range pages {
		content, ok := p.files[pg.content]
		if !ok {
			return nil, fmt.Errorf("%w: page %d: %s missing", ErrMalformed, i+1, pg.content)
		}
		all, err := pageGlyphs(content)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", i+1, err)
		}
		gs, text := textsearch.Visible(all, func(g glyph) rune { return g.r })
		if s, ok := search.Page(text); ok {
			first, last := gs[s], gs[s+search.Len()-1]
			// The box spans the first glyph's start to the last glyph's
			// end, one em high, centred on the glyphs' centres.
			x0, x1 := min(first.x0, last.x1), max(first.x0, last.x1)
			cy := (first.my + last.my) / 2
			em := max(first.em, last.em)
			return &Hit{Page: i, Box: Box{X: x0, Y: cy - em/2, W: x1 - x0, H: em}}, nil
		}
	}
	return nil, search.NotFound(ErrKeywordNotFound)
}

// stamp is one StampAnnot to write.
type stamp struct {
	pageID string
	box    Box
	clip   *Box
}

// placement resolves a Position into the StampAnnots of the signature.
func (p *Package) placement(pos Position) ([]stamp, error) {
	if pos.Width <= 0 || pos.Height <= 0 {
		return nil, fmt.Errorf("ofd: seal size %gx%g mm", pos.Width, pos.Height)
	}
	switch {
	case pos.Keyword != "" && pos.Riding:
		return nil, errors.New("ofd: a keyword position and a riding seal exclude each other")
	case pos.Keyword != "":
		hit, err := p.findKeyword(pos.Keyword, pos.Occurrence)
		if err != nil {
			return nil, err
		}
		id, err := p.pageID(hit.Page)
		if err != nil {
			return nil, err
		}
		cx, cy := hit.Box.X+hit.Box.W/2, hit.Box.Y+hit.Box.H/2
		return []stamp{{pageID: id, box: Box{cx - pos.Width/2, cy - pos.Height/2, pos.Width, pos.Height}}}, nil
	case pos.Riding:
		return p.riding(pos)
	}
	id, err := p.pageID(pos.Page)
	if err != nil {
		return nil, err
	}
	return []stamp{{pageID: id, box: Box{pos.X, pos.Y, pos.Width, pos.Height}}}, nil
}

// riding cuts the seal into as many vertical slices as there are pages
// and puts slice i at the right edge of page i, so that the pages laid
// side by side, each overlapping the next, show the whole seal.
//
// As ofdrw's RidingStampPos does, every StampAnnot's Boundary is the whole
// seal, shifted left so that slice i ends at the page's right edge, and
// its Clip (in the Boundary's coordinates, GB/T 33190 §18.2.2) keeps only
// slice i: the reader draws the one picture of the SESeal clipped, so no
// new image resource enters the package and the StampAnnots, in
// Signature.xml, are covered by the SES_Signature's dataHash.
func (p *Package) riding(pos Position) ([]stamp, error) {
	pages, err := p.pages()
	if err != nil {
		return nil, err
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("%w: no pages", ErrMalformed)
	}
	n := float64(len(pages))
	slice := pos.Width / n
	out := make([]stamp, 0, len(pages))
	for i, pg := range pages {
		y := pos.Y
		if pos.Centred {
			y = pg.box.Y + pg.box.H/2 - pos.Height/2
		}
		right := pg.box.X + pg.box.W
		fi := float64(i)
		clip := Box{X: fi * slice, Y: 0, W: slice, H: pos.Height}
		out = append(out, stamp{pageID: pg.id, box: Box{right - (fi+1)*slice, y, pos.Width, pos.Height}, clip: &clip})
	}
	return out, nil
}

// Stamp is a StampAnnot found in a signature.
type Stamp struct {
	ID, PageRef string
	Boundary    Box
	// Clip is the visible part, in the Boundary's coordinates; nil when
	// the whole seal shows.
	Clip *Box
}

// PageSize returns the physical box of page index i (from 0).
func PageSize(doc []byte, i int) (Box, error) {
	p, err := Open(doc)
	if err != nil {
		return Box{}, err
	}
	pages, err := p.pages()
	if err != nil {
		return Box{}, err
	}
	if i < 0 || i >= len(pages) {
		return Box{}, fmt.Errorf("%w: page %d of %d", ErrMalformed, i+1, len(pages))
	}
	return pages[i].box, nil
}
