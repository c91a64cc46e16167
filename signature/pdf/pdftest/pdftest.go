// Package pdftest makes small PDF documents for tests: A4 pages with a
// line of text each, or with a given content stream, written by hand with a classic cross-reference table
// (the simplest form every reader and pdfcpu accept).
package pdftest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// OnePage returns a one-page A4 PDF showing text (Latin-1, Helvetica 18 pt).
func OnePage(text string) []byte {
	return Pages(text)
}

// Pages returns an A4 PDF with one page per text, each showing its text
// (Latin-1, Helvetica 18 pt) at the top left.
func Pages(texts ...string) []byte {
	n := len(texts)
	// Objects: 1 catalog, 2 page tree, 3 font, then page and content
	// pairs: page i is object 4+2i, its content 5+2i.
	kids := ""
	for i := range n {
		kids += fmt.Sprintf("%d 0 R ", 4+2*i)
	}
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", kids, n),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	for i, text := range texts {
		content := fmt.Sprintf("BT /F1 18 Tf 72 760 Td (%s) Tj ET", text)
		objs = append(objs,
			fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", 5+2*i),
			fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	}
	return write(objs)
}

// write numbers objs from 1 (the catalog first) and writes the file.
func write(objs []string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	x := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, x)
	return b.Bytes()
}

// HelveticaWidths is the /Widths of the Helvetica font TextPages declares
// as /F1, codes 32 to 126 (Adobe's Helvetica AFM).
var HelveticaWidths = [95]int{
	278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
	556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
	1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
	667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
	333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
	556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
}

// CJKRunes are the characters of the Type0 font TextPages declares as
// /F2: rune i has CID (and 2-byte code, Identity-H) i+1. The full-width
// parentheses are 500 units wide (/W), the others 1000 (the default
// /DW). The font has no glyphs: only text extraction reads it.
var CJKRunes = []rune("（）盖章签字日期正文")

// CJK returns s, made of CJKRunes, as the hex string operand that shows
// it with /F2 (<0003 0004> for "盖章"); it panics on other characters.
func CJK(s string) string {
	var b strings.Builder
	b.WriteByte('<')
	for _, r := range s {
		i := slices.Index(CJKRunes, r)
		if i < 0 {
			panic(fmt.Sprintf("pdftest: %q is not in CJKRunes", r))
		}
		fmt.Fprintf(&b, "%04X", i+1)
	}
	b.WriteByte('>')
	return b.String()
}

// FormContent is the content of the form XObject /Fm1 of TextPages,
// whose /Matrix moves it by (300, 100).
const FormContent = "BT /F1 10 Tf 5 10 Td (Form text) Tj ET"

// TextPages returns an A4 PDF (595 x 842 pt) with one page per content
// stream, with fonts /F1 (Helvetica, /FirstChar 32 and HelveticaWidths)
// and /F2 (Type0, Identity-H, CJKRunes through a ToUnicode CMap that
// has both bfchar and bfrange entries), and the form XObject /Fm1
// (FormContent).
func TextPages(contents ...string) []byte {
	n := len(contents)
	ws := make([]string, len(HelveticaWidths))
	for i, w := range HelveticaWidths {
		ws[i] = fmt.Sprint(w)
	}
	// CIDs 1-2 as bfchar, 3-n as one bfrange per character pair where
	// the code points follow each other (here: none do, so ranges of
	// one) and one array range.
	var bfchar, bfrange strings.Builder
	for i, r := range CJKRunes {
		switch {
		case i < 2:
			fmt.Fprintf(&bfchar, "<%04X> <%04X>\n", i+1, r)
		case i < 6:
			fmt.Fprintf(&bfrange, "<%04X> <%04X> <%04X>\n", i+1, i+1, r)
		}
	}
	fmt.Fprintf(&bfrange, "<%04X> <%04X> [", 7, len(CJKRunes))
	for _, r := range CJKRunes[6:] {
		fmt.Fprintf(&bfrange, "<%04X>", r)
	}
	bfrange.WriteString("]\n")
	cmap := "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n" +
		"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n" +
		"/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n" +
		"1 begincodespacerange <0000> <FFFF> endcodespacerange\n" +
		fmt.Sprintf("2 beginbfchar\n%sendbfchar\n", bfchar.String()) +
		fmt.Sprintf("5 beginbfrange\n%sendbfrange\n", bfrange.String()) +
		"endcmap CMapName currentdict /CMap defineresource pop end end"
	// Objects: 1 catalog, 2 page tree, 3 Helvetica, 4 Type0, 5 its
	// CIDFont, 6 the ToUnicode CMap, 7 the form XObject, then page i is
	// 8+2i, its content 9+2i.
	kids := ""
	for i := range n {
		kids += fmt.Sprintf("%d 0 R ", 8+2*i)
	}
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", kids, n),
		fmt.Sprintf("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding /FirstChar 32 /LastChar 126 /Widths [%s] >>", strings.Join(ws, " ")),
		"<< /Type /Font /Subtype /Type0 /BaseFont /GTTestCJK /Encoding /Identity-H /DescendantFonts [5 0 R] /ToUnicode 6 0 R >>",
		"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /GTTestCJK /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /W [1 [500 500]] /CIDToGIDMap /Identity >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(cmap), cmap),
		fmt.Sprintf("<< /Type /XObject /Subtype /Form /BBox [0 0 200 50] /Matrix [1 0 0 1 300 100] /Resources << /Font << /F1 3 0 R >> >> /Length %d >>\nstream\n%s\nendstream", len(FormContent), FormContent),
	}
	for i, c := range contents {
		objs = append(objs,
			fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> /XObject << /Fm1 7 0 R >> >> /Contents %d 0 R >>", 9+2*i),
			fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(c), c))
	}
	return write(objs)
}
