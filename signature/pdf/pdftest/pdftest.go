// Package pdftest makes small PDF documents for tests: A4 pages with a
// line of text each, written by hand with a classic cross-reference table
// (the simplest form every reader and pdfcpu accept).
package pdftest

import (
	"bytes"
	"fmt"
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
