package ofd_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
)

const tol = 0.01 // mm

func near(a, b float64) bool { return math.Abs(a-b) <= tol }

// The fixture: a keyword in a DeltaX line on page 1, the same keyword
// drawn one glyph per TextCode on page 2, and once more on page 3.
var texts = []ofdtest.Text{
	{Page: 0, OX: 20, OY: 30, X: 2, Y: 6, Size: 5, Advance: 5.2, Text: "通知正文如下"},
	{Page: 1, OX: 100, OY: 240, X: 0, Y: 4.5, Size: 4.5, Advance: 4.6, Text: "签发机关（盖章）", PerGlyph: true},
	{Page: 2, OX: 30, OY: 200, X: 1, Y: 5, Size: 5, Advance: 5, Text: "附件：签发机关（盖章）"},
}

// want is the keyword's box computed from the fixture, independently of
// the package: glyph k starts at OX+X+k·Advance, the em box centre is
// 0.38 em above the baseline.
func want(t ofdtest.Text, from, n int) ofd.Box {
	x := t.OX + t.X + float64(from)*t.Advance
	cy := t.OY + t.Y - 0.38*t.Size
	return ofd.Box{X: x, Y: cy - t.Size/2, W: float64(n) * t.Advance, H: t.Size}
}

func TestFindKeyword(t *testing.T) {
	doc := ofdtest.DocumentText(3, texts...)
	for _, tc := range []struct {
		name, kw string
		n, page  int
		box      ofd.Box
	}{
		{"DeltaX line", "正文", 0, 0, want(texts[0], 2, 2)},
		// Without DeltaX the last glyph's advance is estimated: one em for
		// a full-width character.
		{"one glyph per TextCode", "（盖章）", 1, 1, func() ofd.Box {
			b := want(texts[1], 4, 4)
			b.W = 3*texts[1].Advance + texts[1].Size
			return b
		}()},
		{"second occurrence", "（盖章）", 2, 2, want(texts[2], 7, 4)},
		{"white space ignored", "签发 机关", 2, 2, want(texts[2], 3, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ofd.FindKeyword(doc, tc.kw, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if h.Page != tc.page || !near(h.Box.X, tc.box.X) || !near(h.Box.Y, tc.box.Y) || !near(h.Box.W, tc.box.W) || !near(h.Box.H, tc.box.H) {
				t.Fatalf("hit page %d %+v, want page %d %+v", h.Page, h.Box, tc.page, tc.box)
			}
		})
	}
	for _, tc := range []struct {
		name, kw string
		n        int
	}{{"absent", "签名", 1}, {"third occurrence of two", "（盖章）", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ofd.FindKeyword(doc, tc.kw, tc.n); !errors.Is(err, ofd.ErrKeywordNotFound) {
				t.Fatalf("err %v, want ErrKeywordNotFound", err)
			}
		})
	}
}

func TestPrepareKeyword(t *testing.T) {
	doc := ofdtest.DocumentText(3, texts...)
	pr, err := ofd.Prepare(doc, time.Now(), "1.2.156.10197.1.501", ofd.Position{Keyword: "（盖章）", Occurrence: 2, Width: 40, Height: 40}, "test")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pr.Finish([]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	found, err := ofd.Signatures(out)
	if err != nil || len(found) != 1 || len(found[0].Stamps) != 1 {
		t.Fatalf("%v %+v", err, found)
	}
	st := found[0].Stamps[0]
	kw := want(texts[2], 7, 4)
	if st.PageRef != "12" || st.Clip != nil || !near(st.Boundary.W, 40) || !near(st.Boundary.H, 40) ||
		!near(st.Boundary.X+20, kw.X+kw.W/2) || !near(st.Boundary.Y+20, kw.Y+kw.H/2) {
		t.Fatalf("stamp %+v, keyword box %+v", st, kw)
	}
	if _, err := ofd.Prepare(doc, time.Now(), "1.2.156.10197.1.501", ofd.Position{Keyword: "签名", Width: 40, Height: 40}, "test"); !errors.Is(err, ofd.ErrKeywordNotFound) {
		t.Fatalf("absent keyword: %v", err)
	}
}

func TestPrepareRiding(t *testing.T) {
	doc := ofdtest.Document("正文", 3)
	for _, tc := range []struct {
		name string
		pos  ofd.Position
		y    float64
	}{
		{"centred", ofd.Position{Riding: true, Centred: true, Width: 42, Height: 40}, (297 - 40) / 2.0},
		{"at y", ofd.Position{Riding: true, Y: 30, Width: 42, Height: 40}, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := ofd.Prepare(doc, time.Now(), "1.2.156.10197.1.501", tc.pos, "test")
			if err != nil {
				t.Fatal(err)
			}
			out, err := pr.Finish([]byte{1})
			if err != nil {
				t.Fatal(err)
			}
			found, err := ofd.Signatures(out)
			if err != nil || len(found) != 1 || len(found[0].Stamps) != 3 || len(found[0].BadReferences) != 0 {
				t.Fatalf("%v %+v", err, found)
			}
			sum, nextClip := 0.0, 0.0
			for i, st := range found[0].Stamps {
				if st.PageRef != []string{"10", "11", "12"}[i] || st.Clip == nil {
					t.Fatalf("stamp %d: %+v", i, st)
				}
				c := st.Clip
				// Slices follow each other across the picture, and each
				// ends at its page's right edge (A4: 210 mm).
				if !near(c.X, nextClip) || !near(c.Y, 0) || !near(c.H, 40) || !near(st.Boundary.X+c.X+c.W, 210) ||
					!near(st.Boundary.W, 42) || !near(st.Boundary.Y, tc.y) {
					t.Fatalf("stamp %d: boundary %+v clip %+v", i, st.Boundary, *c)
				}
				nextClip = c.X + c.W
				sum += c.W
			}
			if !near(sum, 42) {
				t.Fatalf("slices sum to %g mm, want 42", sum)
			}
		})
	}
}
