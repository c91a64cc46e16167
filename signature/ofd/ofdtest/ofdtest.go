// Package ofdtest makes small OFD documents (GB/T 33190) for tests: an
// OFD.xml, one document with A4 pages each holding one line of text.
package ofdtest

import (
	"archive/zip"
	"bytes"
	"fmt"
)

// Document returns an OFD package with pages pages, each showing text.
func Document(text string, pages int) []byte {
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
	const ns = `xmlns:ofd="http://www.ofdspec.org/2016"`
	put("OFD.xml", `<?xml version="1.0" encoding="UTF-8"?>
<ofd:OFD `+ns+` Version="1.0" DocType="OFD"><ofd:DocBody><ofd:DocInfo><ofd:DocID>0C1D4F7159954EEEDE517F7285E84DC4</ofd:DocID><ofd:Title>test</ofd:Title></ofd:DocInfo><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>`)
	var list bytes.Buffer
	for i := 0; i < pages; i++ {
		fmt.Fprintf(&list, `<ofd:Page ID="%d" BaseLoc="Pages/Page_%d/Content.xml"/>`, 10+i, i)
		put(fmt.Sprintf("Doc_0/Pages/Page_%d/Content.xml", i), fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<ofd:Page `+ns+`><ofd:Content><ofd:Layer ID="%d"><ofd:TextObject ID="%d" Boundary="20 20 170 10" Font="3" Size="5"><ofd:TextCode X="0" Y="5">%s</ofd:TextCode></ofd:TextObject></ofd:Layer></ofd:Content></ofd:Page>`, 100+2*i, 101+2*i, text))
	}
	put("Doc_0/Document.xml", `<?xml version="1.0" encoding="UTF-8"?>
<ofd:Document `+ns+`><ofd:CommonData><ofd:MaxUnitID>200</ofd:MaxUnitID><ofd:PageArea><ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea><ofd:PublicRes>PublicRes.xml</ofd:PublicRes></ofd:CommonData><ofd:Pages>`+list.String()+`</ofd:Pages></ofd:Document>`)
	put("Doc_0/PublicRes.xml", `<?xml version="1.0" encoding="UTF-8"?>
<ofd:Res `+ns+` BaseLoc="Res"><ofd:Fonts><ofd:Font ID="3" FontName="宋体" FamilyName="宋体"/></ofd:Fonts></ofd:Res>`)
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
