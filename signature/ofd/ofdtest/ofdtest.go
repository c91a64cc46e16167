// Package ofdtest makes small OFD documents (GB/T 33190) for tests: an
// OFD.xml, one document with A4 pages each holding one line of text, or
// (DocumentText) lines placed where a test wants them.
package ofdtest

import (
	"archive/zip"
	"bytes"
	"fmt"
)

// Document returns an OFD package with pages pages, each showing text.
func Document(text string, pages int) []byte {
	layers := make([]string, pages)
	for i := range layers {
		layers[i] = fmt.Sprintf(`<ofd:Layer ID="%d"><ofd:TextObject ID="%d" Boundary="20 20 170 10" Font="3" Size="5"><ofd:TextCode X="0" Y="5">%s</ofd:TextCode></ofd:TextObject></ofd:Layer>`, 100+2*i, 101+2*i, text)
	}
	return pack("0C1D4F7159954EEEDE517F7285E84DC4", 200, layers)
}

const ns = `xmlns:ofd="http://www.ofdspec.org/2016"`

// pack writes the OFD package of one A4 document whose page i has the
// content layer layers[i], with font 3 (宋体) as its only resource.
func pack(docID string, maxUnitID int, layers []string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	put := func(name, content string) {
		w, err := zw.Create(name)
		if err != nil {
			panic(err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			panic(err)
		}
	}
	put("OFD.xml", `<?xml version="1.0" encoding="UTF-8"?>
<ofd:OFD `+ns+` Version="1.0" DocType="OFD"><ofd:DocBody><ofd:DocInfo><ofd:DocID>`+docID+`</ofd:DocID><ofd:Title>test</ofd:Title></ofd:DocInfo><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>`)
	var list bytes.Buffer
	for i, layer := range layers {
		fmt.Fprintf(&list, `<ofd:Page ID="%d" BaseLoc="Pages/Page_%d/Content.xml"/>`, 10+i, i)
		put(fmt.Sprintf("Doc_0/Pages/Page_%d/Content.xml", i), `<?xml version="1.0" encoding="UTF-8"?>
<ofd:Page `+ns+`><ofd:Content>`+layer+`</ofd:Content></ofd:Page>`)
	}
	put("Doc_0/Document.xml", fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<ofd:Document `+ns+`><ofd:CommonData><ofd:MaxUnitID>%d</ofd:MaxUnitID><ofd:PageArea><ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea><ofd:PublicRes>PublicRes.xml</ofd:PublicRes></ofd:CommonData><ofd:Pages>`, maxUnitID)+list.String()+`</ofd:Pages></ofd:Document>`)
	put("Doc_0/PublicRes.xml", `<?xml version="1.0" encoding="UTF-8"?>
<ofd:Res `+ns+` BaseLoc="Res"><ofd:Fonts><ofd:Font ID="3" FontName="宋体" FamilyName="宋体"/></ofd:Fonts></ofd:Res>`)
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Text is a line of text drawn at a known place, for tests of keyword
// positions.
type Text struct {
	Page int // index, from 0
	// OX, OY are the TextObject's Boundary origin; X, Y the baseline start
	// of the first glyph inside it (mm).
	OX, OY, X, Y float64
	Size         float64 // em, mm
	// Advance is every glyph's advance (DeltaX "g N Advance"), or with
	// PerGlyph the step between the one-glyph TextCodes, each with its own
	// X and no DeltaX.
	Advance  float64
	PerGlyph bool
	Text     string
}

// DocumentText returns an OFD package of pages A4 pages carrying texts.
func DocumentText(pages int, texts ...Text) []byte {
	layers := make([]string, pages)
	id := 1000
	for i := range layers {
		var objs bytes.Buffer
		for _, t := range texts {
			if t.Page != i {
				continue
			}
			id++
			n := len([]rune(t.Text))
			fmt.Fprintf(&objs, `<ofd:TextObject ID="%d" Boundary="%g %g %g %g" Font="3" Size="%g">`, id, t.OX, t.OY, t.X+float64(n+1)*t.Advance, t.Y+t.Size, t.Size)
			if t.PerGlyph {
				for k, r := range []rune(t.Text) {
					fmt.Fprintf(&objs, `<ofd:TextCode X="%g" Y="%g">%s</ofd:TextCode>`, t.X+float64(k)*t.Advance, t.Y, string(r))
				}
			} else {
				fmt.Fprintf(&objs, `<ofd:TextCode X="%g" Y="%g" DeltaX="g %d %g">%s</ofd:TextCode>`, t.X, t.Y, max(n-1, 1), t.Advance, t.Text)
			}
			objs.WriteString(`</ofd:TextObject>`)
		}
		layers[i] = fmt.Sprintf(`<ofd:Layer ID="%d">%s</ofd:Layer>`, 100+i, objs.String())
	}
	return pack("5E3A1D4F7159954EEEDE517F7285E84C", 2000, layers)
}
