package pdf

import (
	"errors"
	"math"
	"testing"

	"github.com/govtrust/govtrust/signature/pdf/pdftest"
)

// ptBox is an expected box in default user space points (A4 page, 842 pt
// high): x0, x1 along the baseline, y0 the baseline, y1 its top.
type ptBox struct{ x0, x1, y0, y1 float64 }

func (p ptBox) mm() Box {
	return Box{X: p.x0 / mmToPt, Y: (842 - p.y1) / mmToPt, W: (p.x1 - p.x0) / mmToPt, H: (p.y1 - p.y0) / mmToPt}
}

func near(a, b Box) bool {
	const tol = 0.5 // mm
	return math.Abs(a.X-b.X) < tol && math.Abs(a.Y-b.Y) < tol && math.Abs(a.W-b.W) < tol && math.Abs(a.H-b.H) < tol
}

// helv sums Helvetica advances (glyph units) of s.
func helv(s string) float64 {
	w := 0
	for _, c := range []byte(s) {
		w += pdftest.HelveticaWidths[c-32]
	}
	return float64(w)
}

// TestFindKeyword places keywords with known operators and fonts and
// checks the boxes found, computed here by hand from ISO 32000-1 §9.4.4.
func TestFindKeyword(t *testing.T) {
	// Page 1: Helvetica /Widths under a scaling CTM, with Tm, Tc, Tz and
	// a TJ kerning gap inside the keyword. Page 2: the Type0 font with
	// Identity-H codes and ToUnicode, with Td, TL and '. Page 3: two
	// more occurrences of "Key", and a form XObject drawn scaled.
	helvPage := "q 2 0 0 2 10 20 cm BT /F1 10 Tf 1 0 0 1 30 300 Tm 2 Tc 150 Tz (ab) Tj [(c) -500 (Key)] TJ ET Q"
	cjkPage := "BT /F2 20 Tf 100 200 Td " + pdftest.CJK("正文（盖章）") + " Tj 24 TL " + pdftest.CJK("签字") + " ' ET"
	morePage := "BT /F1 12 Tf 50 500 Td (Key and ) Tj 0 -30 Td [(K) 0 (ey)] TJ ET q 2 0 0 2 0 0 cm /Fm1 Do Q"
	doc := pdftest.TextPages(helvPage, cjkPage, morePage)

	// Page 1 by hand, text space (Th 1.5, Tc 2, 10 pt): a and b advance
	// (5.56+2)×1.5 = 11.34 each, so c starts at 22.68; c advances
	// (5+2)×1.5 = 10.5 and the TJ gap 500/1000×10×1.5 = 7.5, so K starts at
	// 40.68; K and e advance 13.005 and 11.34, y starts at 65.025 and ends
	// 5×1.5 later at 72.525. Then Tm's +30 and the CTM's ×2 +10: x from
	// 2×52.68+10 to 2×102.525+10, the baseline 2×300+20 and 20 pt high.
	p1 := ptBox{115.36, 215.05, 620, 640}
	// Page 2: （ is CID 1, 500 units (/W), the others 1000 (/DW default):
	// "（盖章）" starts after 正文 at 100+40 and is 3 em = 60 pt wide.
	p2 := ptBox{140, 200, 200, 220}
	// 签字 on the next line: T* moves by TL 24.
	p2b := ptBox{100, 140, 176, 196}
	tests := map[string]struct {
		keyword string
		n       int
		page    int
		want    ptBox
	}{
		"split by TJ":         {"cKey", 1, 1, p1},
		"CJK via ToUnicode":   {"（盖章）", 1, 2, p2},
		"white space ignored": {"（盖 章）", 0, 2, p2},
		// 章） at 170-200 on the first line, 签 at 100-120 on the next.
		"across lines":          {"章）签", 1, 2, ptBox{100, 200, 176, 220}},
		"apostrophe operator":   {"签字", 1, 2, p2b},
		"second occurrence":     {"Key", 2, 3, ptBox{50, 50 + helv("Key")*12/1000, 500, 512}},
		"third, a TJ on line 2": {"Key", 3, 3, ptBox{50, 50 + helv("Key")*12/1000, 470, 482}},
		// FormContent at (5, 10) in the form, moved by its /Matrix
		// (300, 100) and the page's CTM ×2.
		"in a form XObject":  {"text", 1, 3, ptBox{2 * (305 + helv("Form ")*10/1000), 2 * (305 + helv("Form text")*10/1000), 220, 240}},
		"first, inside a TJ": {"Key", 1, 1, ptBox{2*(30+40.68) + 10, 215.05, 620, 640}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hit, err := FindKeyword(doc, tc.keyword, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if hit.Page != tc.page || !near(hit.Box, want.mm()) {
				t.Fatalf("hit page %d %+v, want page %d %+v", hit.Page, hit.Box, tc.page, want.mm())
			}
		})
	}
	for name, kw := range map[string]struct {
		s string
		n int
	}{"absent": {"Signature", 1}, "too few": {"Key", 4}, "CJK absent": {"日期", 1}} {
		t.Run(name, func(t *testing.T) {
			if _, err := FindKeyword(doc, kw.s, kw.n); !errors.Is(err, ErrKeywordNotFound) {
				t.Fatalf("err %v, want ErrKeywordNotFound", err)
			}
		})
	}
}

// TestFindKeywordStandardFont finds text in a Helvetica font without
// /Widths (pdftest.Pages), measured with the standard 14 fonts' metrics.
func TestFindKeywordStandardFont(t *testing.T) {
	hit, err := FindKeyword(pdftest.Pages("first page", "Please seal here"), "seal", 1)
	if err != nil {
		t.Fatal(err)
	}
	x0 := 72 + helv("Please ")*18/1000
	want := ptBox{x0, x0 + helv("seal")*18/1000, 760, 778}.mm()
	if hit.Page != 2 || !near(hit.Box, want) {
		t.Fatalf("hit page %d %+v, want 2 %+v", hit.Page, hit.Box, want)
	}
}

// TestKeywordSeal seals at a keyword: the widget is centred on the
// keyword's box and the signature verifies.
func TestKeywordSeal(t *testing.T) {
	doc := pdftest.TextPages("BT /F1 12 Tf 72 700 Td (Page one) Tj ET",
		"BT /F2 20 Tf 100 200 Td "+pdftest.CJK("正文（盖章）")+" Tj ET")
	s := newSigner(t, true)
	out := sealAt(t, doc, s, Position{Keyword: "（盖章）", Width: 40, Height: 40})
	ws := widgets(t, out)
	if len(ws[0]) != 0 || len(ws[1]) != 1 {
		t.Fatalf("widgets per page %v", ws)
	}
	w := ws[1][0]
	cx, cy := (w.llx+w.urx)/2, (w.lly+w.ury)/2
	if math.Abs(cx-170) > 0.5*mmToPt || math.Abs(cy-210) > 0.5*mmToPt || math.Abs(w.urx-w.llx-40*mmToPt) > 0.01 {
		t.Fatalf("widget %+v, want centred on 170,210 and 40 mm wide", w)
	}
	if _, err := only(t, out).Verify(out, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(doc, Field{Name: "S", Picture: picture(t), Position: Position{Keyword: "日期", Width: 40, Height: 40}}); !errors.Is(err, ErrKeywordNotFound) {
		t.Fatalf("absent keyword: %v", err)
	}
}

// FuzzFindKeyword runs arbitrary page content through the interpreter:
// whatever the content, FindKeyword answers without panicking.
func FuzzFindKeyword(f *testing.F) {
	f.Add("BT /F1 12 Tf 50 500 Td (Key) Tj ET")
	f.Add("q 2 0 0 2 0 0 cm /Fm1 Do Q BT /F2 20 Tf <0001 00> Tj [(K) -5 <00>] TJ 1 2 ' 1 \" ET")
	f.Add("BI /W 1 /H 1 ID \x00EI EI Q Q Q [[[[[(x)]]]]] (a\\(b) <<>> /F#31 1 Tf (Key) Tj")
	f.Fuzz(func(t *testing.T, content string) {
		_, err := FindKeyword(pdftest.TextPages(content), "Key", 1)
		if err != nil && !errors.Is(err, ErrKeywordNotFound) && !errors.Is(err, ErrFormat) {
			t.Fatal(err)
		}
	})
}
