package seal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// sealRed is the red of official seals (印泥红), opaque.
var sealRed = color.NRGBA{R: 0xE6, G: 0x00, B: 0x12, A: 0xFF}

// Font is a parsed CJK font for seal pictures.
type Font struct{ f *sfnt.Font }

// ParseFont parses a TrueType/OpenType font or the first font of a
// collection (.ttc, as Debian's fonts-wqy-microhei ships).
//
// The font's tables are copied to 4-byte aligned offsets first: the
// OpenType specification requires that alignment and golang.org/x/image's
// parser enforces it, but FontForge-built fonts such as WenQuanYi's do not
// keep it.
func ParseFont(data []byte) (*Font, error) {
	single, err := realign(data)
	if err != nil {
		return nil, err
	}
	f, err := sfnt.Parse(single)
	if err != nil {
		return nil, fmt.Errorf("seal: font: %w", err)
	}
	return &Font{f: f}, nil
}

// realign returns the first font of data (a single font or a collection)
// as a single font whose tables start on 4-byte boundaries.
func realign(data []byte) ([]byte, error) {
	bad := errors.New("seal: font: truncated or not a TrueType/OpenType font")
	u32 := func(o int) (int, bool) {
		if o < 0 || o+4 > len(data) {
			return 0, false
		}
		return int(binary.BigEndian.Uint32(data[o:])), true
	}
	base := 0
	if bytes.HasPrefix(data, []byte("ttcf")) {
		var ok bool
		if base, ok = u32(12); !ok {
			return nil, bad
		}
	}
	if base+12 > len(data) {
		return nil, bad
	}
	n := int(binary.BigEndian.Uint16(data[base+4:]))
	dir := base + 12
	if n == 0 || n > 256 || dir+16*n > len(data) {
		return nil, bad
	}
	out := make([]byte, 12+16*n, len(data))
	copy(out, data[base:base+12])
	for i := 0; i < n; i++ {
		rec := data[dir+16*i : dir+16*i+16]
		off, _ := u32(dir + 16*i + 8)
		length, _ := u32(dir + 16*i + 12)
		if off+length > len(data) || off+length < off {
			return nil, bad
		}
		copy(out[12+16*i:], rec)
		binary.BigEndian.PutUint32(out[12+16*i+8:], uint32(len(out)))
		out = append(out, data[off:off+length]...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out, nil
}

// RoundSeal describes a generated round official seal: the department's
// name along the upper arc, a five-pointed star in the middle and the
// seal's text (合同专用章, 财务专用章...) below it, in red inside a red ring
// (the layout of GA 241-2000 公章 seals).
type RoundSeal struct {
	Name string // along the arc, clockwise from the lower left
	Text string // horizontal, below the star; may be empty
	Size int    // picture width and height in pixels (default 512)
}

// Render draws the seal as a PNG with a transparent background.
func (rs RoundSeal) Render(f *Font) ([]byte, error) {
	if f == nil {
		return nil, errors.New("seal: no font configured for generated pictures")
	}
	name := []rune(strings.TrimSpace(rs.Name))
	if len(name) == 0 || len(name) > 40 {
		return nil, errors.New("seal: the name on a round seal has 1 to 40 characters")
	}
	if len([]rune(rs.Text)) > 12 {
		return nil, errors.New("seal: the text below the star has at most 12 characters")
	}
	size := rs.Size
	if size == 0 {
		size = 512
	}
	if size < 64 || size > 4096 {
		return nil, errors.New("seal: picture size must be 64 to 4096 pixels")
	}
	S := float64(size)
	c := S / 2
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	z := vector.NewRasterizer(size, size)

	// The ring: outer circle one way, inner circle the other, so the
	// rasterizer's signed area leaves the middle empty.
	R := S/2 - S*0.01
	w := S * 0.04
	circle(z, c, c, R, false)
	circle(z, c, c, R-w, true)

	// The star.
	star(z, c, c, S*0.17, 0)

	// The name along the upper arc, glyphs upright towards the centre.
	rText := R - w - S*0.02
	n := float64(len(name))
	span := math.Min(n*0.42, 4.2) // radians the name covers (about 240° at most)
	per := span / n
	ppem := math.Min(S*0.15, 0.92*(rText-S*0.1)*per)
	// Compress glyphs horizontally when many characters share the arc.
	xscale := 1.0
	if ppem < S*0.11 {
		xscale = ppem / (S * 0.11)
		ppem = S * 0.11
	}
	var buf sfnt.Buffer
	for i, r := range name {
		theta := -span/2 + per*(float64(i)+0.5)
		dist := rText - ppem*0.5 // glyph centre
		px, py := c+dist*math.Sin(theta), c-dist*math.Cos(theta)
		if err := glyph(z, f.f, &buf, r, ppem, xscale, px, py, theta); err != nil {
			return nil, err
		}
	}
	// The text below the star, horizontal.
	if t := []rune(rs.Text); len(t) > 0 {
		tp := math.Min(S*0.1, S*0.62/float64(len(t)))
		y := c + S*0.27
		x0 := c - tp*float64(len(t))/2
		for i, r := range t {
			if err := glyph(z, f.f, &buf, r, tp, 1, x0+tp*(float64(i)+0.5), y, 0); err != nil {
				return nil, err
			}
		}
	}
	z.Draw(img, img.Bounds(), image.NewUniform(sealRed), image.Point{})
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// circle adds a circle path of radius r; reverse draws it the other way.
func circle(z *vector.Rasterizer, cx, cy, r float64, reverse bool) {
	const n = 256
	for i := 0; i <= n; i++ {
		a := 2 * math.Pi * float64(i) / n
		if reverse {
			a = -a
		}
		x, y := float32(cx+r*math.Cos(a)), float32(cy+r*math.Sin(a))
		if i == 0 {
			z.MoveTo(x, y)
		} else {
			z.LineTo(x, y)
		}
	}
	z.ClosePath()
}

// star adds a five-pointed star of outer radius r, one point up.
func star(z *vector.Rasterizer, cx, cy, r, rot float64) {
	inner := r * 0.381966 // (3-√5)/2: the regular pentagram
	for i := 0; i < 10; i++ {
		rr := r
		if i%2 == 1 {
			rr = inner
		}
		a := rot + float64(i)*math.Pi/5
		x, y := float32(cx+rr*math.Sin(a)), float32(cy-rr*math.Cos(a))
		if i == 0 {
			z.MoveTo(x, y)
		} else {
			z.LineTo(x, y)
		}
	}
	z.ClosePath()
}

// glyph adds rune r's outline at ppem pixels, its em box centred on (px,
// py), compressed horizontally by xscale and rotated clockwise by theta.
func glyph(z *vector.Rasterizer, f *sfnt.Font, buf *sfnt.Buffer, r rune, ppem, xscale, px, py, theta float64) error {
	idx, err := f.GlyphIndex(buf, r)
	if err != nil {
		return fmt.Errorf("seal: glyph %q: %w", r, err)
	}
	if idx == 0 {
		return fmt.Errorf("seal: the font has no glyph for %q", r)
	}
	p26 := fixed.Int26_6(ppem * 64)
	adv, err := f.GlyphAdvance(buf, idx, p26, font.HintingNone)
	if err != nil {
		return fmt.Errorf("seal: glyph %q: %w", r, err)
	}
	segs, err := f.LoadGlyph(buf, idx, p26, nil)
	if err != nil {
		return fmt.Errorf("seal: glyph %q: %w", r, err)
	}
	// CJK glyphs sit on the baseline and rise about 0.88 em: their box's
	// centre is about 0.38 em above the baseline.
	cx, cy := float64(adv)/64/2, -0.38*ppem
	sin, cos := math.Sin(theta), math.Cos(theta)
	tr := func(p fixed.Point26_6) (float32, float32) {
		x := (float64(p.X)/64 - cx) * xscale
		y := float64(p.Y)/64 - cy
		return float32(px + x*cos - y*sin), float32(py + x*sin + y*cos)
	}
	for _, s := range segs {
		switch s.Op {
		case sfnt.SegmentOpMoveTo:
			z.MoveTo(tr(s.Args[0]))
		case sfnt.SegmentOpLineTo:
			z.LineTo(tr(s.Args[0]))
		case sfnt.SegmentOpQuadTo:
			x1, y1 := tr(s.Args[0])
			x2, y2 := tr(s.Args[1])
			z.QuadTo(x1, y1, x2, y2)
		case sfnt.SegmentOpCubeTo:
			x1, y1 := tr(s.Args[0])
			x2, y2 := tr(s.Args[1])
			x3, y3 := tr(s.Args[2])
			z.CubeTo(x1, y1, x2, y2, x3, y3)
		}
	}
	z.ClosePath()
	return nil
}
