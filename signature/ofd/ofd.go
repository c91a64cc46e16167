// Package ofd embeds and finds electronic seal signatures in OFD documents
// (GB/T 33190-2016 §18, GM/T 0099-2020; GM-STANDARDS.md §6), in the
// package layout ofdrw and other readers use:
//
//   - OFD.xml's DocBody/Signatures points to /Doc_0/Signs/Signatures.xml;
//   - Signatures.xml lists each signature (ID, Type "Seal", BaseLoc);
//   - /Doc_0/Signs/Sign_N/Signature.xml holds SignedInfo: Provider,
//     SignatureMethod (the algorithm OID), SignatureDateTime, References
//     (CheckMethod SM3, one Reference per protected file with the base64
//     SM3 of its bytes), a StampAnnot placing the seal picture on a page,
//     and SignedValue, the path of SignedValue.dat;
//   - SignedValue.dat is the DER SES_Signature whose dataHash is the SM3 of
//     the Signature.xml bytes and whose propertyInfo is its path.
//
// Every file of the package is referenced except Signatures.xml, so that
// later signatures can be appended ("continue-signing" mode); the new
// Signature.xml is covered by the SES_Signature itself. Signatures, which
// verification reads the signatures with, requires as much of every
// signature (Found.Unprotected) and returns their seal files
// (Found.SealFiles), which must be the seal inside SignedValue.dat.
//
// The package does no I/O beyond reading and writing the zip in memory,
// and no cryptography but SM3 (ARCHITECTURE.md §1): the caller signs.
package ofd

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// Namespace is the OFD XML namespace.
const Namespace = "http://www.ofdspec.org/2016"

// Limits against hostile packages (ACCEPTANCE.md N: bad inputs). A zip
// bomb (a package of a few hundred KiB whose files inflate to gigabytes)
// must not make the server hold more than a small multiple of what it was
// sent: the files of a package may hold MaxTotalBytes uncompressed
// together, or MaxExpansion times the package's own size when that is
// more, and each file at most MaxRatio times its compressed size once it
// is past RatioGrace bytes (XML and text deflate 5 to 20 times, images and
// fonts hardly; a bomb over 1000 times). The bytes actually inflated are
// counted, not the sizes the zip declares.
const (
	MaxFiles      = 10000
	MaxTotalBytes = 64 << 20
	MaxExpansion  = 4
	MaxRatio      = 100
	RatioGrace    = 1 << 20
)

// ErrMalformed wraps every error about a package that is not a usable OFD.
var ErrMalformed = errors.New("ofd: malformed package")

// ErrTooLarge wraps the errors of a package that inflates past the limits
// above (a zip bomb); it is an ErrMalformed.
var ErrTooLarge = fmt.Errorf("%w: too large uncompressed", ErrMalformed)

// Package is an OFD package read into memory.
type Package struct {
	names []string          // in zip order
	files map[string][]byte // by name without leading slash
}

// totalLimit is how many bytes the files of a package of n bytes may hold
// uncompressed.
func totalLimit(n int) uint64 {
	return max(MaxTotalBytes, MaxExpansion*uint64(n))
}

// Open reads an OFD package.
func Open(data []byte) (*Package, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(zr.File) > MaxFiles {
		return nil, fmt.Errorf("%w: %d files", ErrMalformed, len(zr.File))
	}
	p := &Package{files: map[string][]byte{}}
	limit := totalLimit(len(data))
	var total uint64
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+f.Name), "/")
		if _, dup := p.files[name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrMalformed, name)
		}
		// What this file may inflate to: the rest of the package's
		// allowance, and MaxRatio times its compressed bytes (at most the
		// package's) past RatioGrace.
		left := limit - total
		ratioCap := max(RatioGrace, MaxRatio*min(f.CompressedSize64, uint64(len(data))))
		allowed := min(left, ratioCap)
		if f.UncompressedSize64 > allowed {
			return nil, tooLarge(name, f.UncompressedSize64, left, ratioCap, limit, "declares")
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
		}
		b, err := readAtMost(rc, f.UncompressedSize64, allowed)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
		}
		if uint64(len(b)) > allowed {
			return nil, tooLarge(name, uint64(len(b)), left, ratioCap, limit, "inflates to more than")
		}
		total += uint64(len(b))
		p.names = append(p.names, name)
		p.files[name] = b
	}
	if _, ok := p.files["OFD.xml"]; !ok {
		return nil, fmt.Errorf("%w: no OFD.xml", ErrMalformed)
	}
	return p, nil
}

// tooLarge is the error of file name, which declares or inflates to n
// bytes: past the left of limit the package may hold, or past ratioCap.
func tooLarge(name string, n, left, ratioCap, limit uint64, what string) error {
	if n > ratioCap && ratioCap < left {
		return fmt.Errorf("%w: %s %s %d bytes, over %d times its compressed size (a zip bomb?)", ErrTooLarge, name, what, n, MaxRatio)
	}
	return fmt.Errorf("%w: %s %s %d bytes, past the %d bytes (%d MiB) the package's files may hold uncompressed", ErrTooLarge, name, what, n, limit, limit>>20)
}

// readAtMost reads r to its end or until it has read more than limit
// bytes (then it returns limit+1 of them), into a buffer the size the zip
// declares (hint) when that is within limit.
func readAtMost(r io.Reader, hint, limit uint64) ([]byte, error) {
	b := make([]byte, 0, min(hint, limit)+1)
	lr := io.LimitReader(r, int64(limit)+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// File returns a file of the package by its absolute or relative path.
func (p *Package) File(name string) ([]byte, bool) {
	b, ok := p.files[strings.TrimPrefix(path.Clean("/"+name), "/")]
	return b, ok
}

// Bytes writes the package as a zip.
func (p *Package) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range p.names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(p.files[n]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (p *Package) put(name string, b []byte) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if _, ok := p.files[name]; !ok {
		p.names = append(p.names, name)
	}
	p.files[name] = b
}

// docRoot returns the first document's root file (Doc_0/Document.xml)
// from OFD.xml's DocBody/DocRoot.
func (p *Package) docRoot() (string, error) {
	var o struct {
		DocBody []struct {
			DocRoot    string `xml:"DocRoot"`
			Signatures string `xml:"Signatures"`
		} `xml:"DocBody"`
	}
	if err := xml.Unmarshal(p.files["OFD.xml"], &o); err != nil || len(o.DocBody) == 0 || o.DocBody[0].DocRoot == "" {
		return "", fmt.Errorf("%w: OFD.xml has no DocBody/DocRoot", ErrMalformed)
	}
	return strings.TrimPrefix(path.Clean("/"+o.DocBody[0].DocRoot), "/"), nil
}

// signaturesPath returns the Signatures.xml named in OFD.xml, or "".
func (p *Package) signaturesPath() string {
	var o struct {
		DocBody []struct {
			Signatures string `xml:"Signatures"`
		} `xml:"DocBody"`
	}
	if xml.Unmarshal(p.files["OFD.xml"], &o) != nil || len(o.DocBody) == 0 || o.DocBody[0].Signatures == "" {
		return ""
	}
	return strings.TrimPrefix(path.Clean("/"+o.DocBody[0].Signatures), "/")
}

// pageID returns the object ID of page index i of the document, which a
// StampAnnot's PageRef names.
func (p *Package) pageID(i int) (string, error) {
	root, err := p.docRoot()
	if err != nil {
		return "", err
	}
	var d struct {
		Pages struct {
			Page []struct {
				ID string `xml:"ID,attr"`
			} `xml:"Page"`
		} `xml:"Pages"`
	}
	if err := xml.Unmarshal(p.files[root], &d); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrMalformed, root, err)
	}
	if i < 0 || i >= len(d.Pages.Page) {
		return "", fmt.Errorf("%w: page %d of %d", ErrMalformed, i+1, len(d.Pages.Page))
	}
	return d.Pages.Page[i].ID, nil
}

// Signatures.xml and Signature.xml.

type signaturesXML struct {
	XMLName   xml.Name       `xml:"ofd:Signatures"`
	NS        string         `xml:"xmlns:ofd,attr"`
	MaxSignID string         `xml:"ofd:MaxSignId,omitempty"`
	Signature []signatureRef `xml:"ofd:Signature"`
}

type signatureRef struct {
	ID      string `xml:"ID,attr"`
	Type    string `xml:"Type,attr,omitempty"`
	BaseLoc string `xml:"BaseLoc,attr"`
}

// Reading uses namespace-agnostic structs: producers use the ofd: prefix
// or a default namespace.
type signaturesIn struct {
	MaxSignID string `xml:"MaxSignId"`
	Signature []struct {
		ID      string `xml:"ID,attr"`
		Type    string `xml:"Type,attr"`
		BaseLoc string `xml:"BaseLoc,attr"`
	} `xml:"Signature"`
}

type signatureIn struct {
	SignedInfo struct {
		SignatureMethod   string `xml:"SignatureMethod"`
		SignatureDateTime string `xml:"SignatureDateTime"`
		References        struct {
			CheckMethod string `xml:"CheckMethod,attr"`
			Reference   []struct {
				FileRef    string `xml:"FileRef,attr"`
				CheckValue string `xml:"CheckValue"`
			} `xml:"Reference"`
		} `xml:"References"`
		StampAnnot []struct {
			ID       string `xml:"ID,attr"`
			PageRef  string `xml:"PageRef,attr"`
			Boundary string `xml:"Boundary,attr"`
			Clip     string `xml:"Clip,attr"`
		} `xml:"StampAnnot"`
		// Seal, optional, names the seal file (Seal.esl) of a seal
		// signature (GB/T 33190 §18.2.1 table 67).
		Seal *struct {
			BaseLoc string `xml:"BaseLoc"`
		} `xml:"Seal"`
	} `xml:"SignedInfo"`
	SignedValue string `xml:"SignedValue"`
}

// Position places the seal picture, Width × Height millimetres, in one of
// three ways:
//   - at page index Page (from 0), top left corner X, Y in millimetres from
//     the page's top left corner;
//   - centred on the Occurrence-th (from 1; 0 means 1) occurrence of
//     Keyword in the pages' text (FindKeyword);
//   - Riding: a riding seal (骑缝章) across the right edges of all pages,
//     its top at Y on every page, or vertically centred if Centred.
type Position struct {
	Page                int
	X, Y, Width, Height float64

	Keyword    string
	Occurrence int

	Riding  bool
	Centred bool
}

// Prepared is a signature being added: SignatureXML is final and its SM3
// is what the SES_Signature's dataHash states.
type Prepared struct {
	pkg          *Package
	SignatureXML []byte
	// Path is the package path of Signature.xml ("/Doc_0/Signs/Sign_0/
	// Signature.xml"), the SES_Signature's propertyInfo.
	Path          string
	signedValueAt string
}

// Prepare adds a seal signature's Signature.xml (and Signatures.xml, and
// the OFD.xml entry when the document had no signature yet) to doc.
// method is the signature algorithm OID text ("1.2.156.10197.1.501").
func Prepare(doc []byte, at time.Time, method string, pos Position, provider string) (*Prepared, error) {
	p, err := Open(doc)
	if err != nil {
		return nil, err
	}
	root, err := p.docRoot()
	if err != nil {
		return nil, err
	}
	stamps, err := p.placement(pos)
	if err != nil {
		return nil, err
	}
	docDir := path.Dir(root)
	sigsPath := p.signaturesPath()
	var sigs signaturesIn
	if sigsPath == "" {
		sigsPath = path.Join(docDir, "Signs", "Signatures.xml")
		ofdXML, err := addSignaturesEntry(p.files["OFD.xml"], "/"+sigsPath)
		if err != nil {
			return nil, err
		}
		p.put("OFD.xml", ofdXML)
	} else if b, ok := p.files[sigsPath]; ok {
		if err := xml.Unmarshal(b, &sigs); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, sigsPath, err)
		}
	}
	// A signature protecting Signatures.xml forbids further signatures
	// (GM-STANDARDS.md §6, as ofdrw checks).
	for _, s := range sigs.Signature {
		var si signatureIn
		if err := xml.Unmarshal(p.files[resolve(sigsPath, s.BaseLoc)], &si); err == nil {
			for _, r := range si.SignedInfo.References.Reference {
				if resolve(sigsPath, r.FileRef) == sigsPath {
					return nil, fmt.Errorf("ofd: signature %s protects Signatures.xml: the document is closed to further signatures", s.ID)
				}
			}
		}
	}
	n := len(sigs.Signature)
	dir := path.Join(path.Dir(sigsPath), "Sign_"+strconv.Itoa(n))
	sigPath := path.Join(dir, "Signature.xml")
	valuePath := path.Join(dir, "SignedValue.dat")
	if _, exists := p.files[sigPath]; exists {
		return nil, fmt.Errorf("%w: %s exists but Signatures.xml does not list it", ErrMalformed, sigPath)
	}

	// References: every file but Signatures.xml, in a stable order.
	names := make([]string, 0, len(p.names))
	for _, nm := range p.names {
		if nm != sigsPath {
			names = append(names, nm)
		}
	}
	sort.Strings(names)
	maxID := maxObjectID(p)
	var b bytes.Buffer
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, `<ofd:Signature xmlns:ofd="%s"><ofd:SignedInfo>`, Namespace)
	fmt.Fprintf(&b, `<ofd:Provider ProviderName="%s" Version="1.0" Company="govtrust"/>`, esc(provider))
	fmt.Fprintf(&b, `<ofd:SignatureMethod>%s</ofd:SignatureMethod>`, esc(method))
	fmt.Fprintf(&b, `<ofd:SignatureDateTime>%s</ofd:SignatureDateTime>`, at.UTC().Format("20060102150405Z"))
	b.WriteString(`<ofd:References CheckMethod="1.2.156.10197.1.401">`)
	for _, nm := range names {
		h := sm3.Sum(p.files[nm])
		fmt.Fprintf(&b, `<ofd:Reference FileRef="/%s"><ofd:CheckValue>%s</ofd:CheckValue></ofd:Reference>`, esc(nm), base64.StdEncoding.EncodeToString(h[:]))
	}
	b.WriteString(`</ofd:References>`)
	// One StampAnnot per page the seal shows on, all of this one
	// signature (GB/T 33190 §18.2.2: a signature may have several).
	for i, st := range stamps {
		clip := ""
		if st.clip != nil {
			clip = ` Clip="` + st.clip.String() + `"`
		}
		fmt.Fprintf(&b, `<ofd:StampAnnot ID="%d" PageRef="%s" Boundary="%s"%s/>`, maxID+1+i, esc(st.pageID), st.box, clip)
	}
	fmt.Fprintf(&b, `</ofd:SignedInfo><ofd:SignedValue>/%s</ofd:SignedValue></ofd:Signature>`, esc(valuePath))

	out := signaturesXML{NS: Namespace, MaxSignID: strconv.Itoa(n + 1)}
	for _, s := range sigs.Signature {
		out.Signature = append(out.Signature, signatureRef{ID: s.ID, Type: s.Type, BaseLoc: s.BaseLoc})
	}
	out.Signature = append(out.Signature, signatureRef{ID: strconv.Itoa(n + 1), Type: "Seal", BaseLoc: "/" + sigPath})
	sx, err := xml.Marshal(out)
	if err != nil {
		return nil, err
	}
	p.put(sigsPath, append([]byte(xml.Header), sx...))
	p.put(sigPath, b.Bytes())
	return &Prepared{pkg: p, SignatureXML: b.Bytes(), Path: "/" + sigPath, signedValueAt: valuePath}, nil
}

// Finish writes SignedValue.dat (the DER SES_Signature) and returns the
// signed package.
func (pr *Prepared) Finish(signedValue []byte) ([]byte, error) {
	pr.pkg.put(pr.signedValueAt, signedValue)
	return pr.pkg.Bytes()
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// resolve returns the package path of ref, relative to the file at base
// unless absolute.
func resolve(base, ref string) string {
	if strings.HasPrefix(ref, "/") {
		return strings.TrimPrefix(path.Clean(ref), "/")
	}
	return strings.TrimPrefix(path.Clean("/"+path.Join(path.Dir(base), ref)), "/")
}

var (
	docBodyEnd = regexp.MustCompile(`</(\w+:)?DocBody>`)
	idAttr     = regexp.MustCompile(`\bID="(\d+)"`)
	maxUnitID  = regexp.MustCompile(`<(\w+:)?MaxUnitID>(\d+)<`)
)

// addSignaturesEntry adds DocBody/Signatures to OFD.xml, keeping the rest
// of the file byte for byte.
func addSignaturesEntry(ofdXML []byte, sigsPath string) ([]byte, error) {
	loc := docBodyEnd.FindSubmatchIndex(ofdXML)
	if loc == nil {
		return nil, fmt.Errorf("%w: OFD.xml has no DocBody", ErrMalformed)
	}
	prefix := ""
	if loc[2] >= 0 {
		prefix = string(ofdXML[loc[2]:loc[3]])
	}
	entry := fmt.Sprintf("<%sSignatures>%s</%sSignatures>", prefix, esc(sigsPath), prefix)
	out := append([]byte{}, ofdXML[:loc[0]]...)
	out = append(out, entry...)
	return append(out, ofdXML[loc[0]:]...), nil
}

// maxObjectID returns the largest object ID used in the package, so that
// the StampAnnot's ID is unique (GB/T 33190 §7.5: IDs are unique in a
// document).
func maxObjectID(p *Package) int {
	maxID := 0
	for _, b := range p.files {
		for _, m := range idAttr.FindAllSubmatch(b, -1) {
			if v, err := strconv.Atoi(string(m[1])); err == nil && v > maxID {
				maxID = v
			}
		}
		if m := maxUnitID.FindSubmatch(b); m != nil {
			if v, err := strconv.Atoi(string(m[2])); err == nil && v > maxID {
				maxID = v
			}
		}
	}
	return maxID
}

// Found is a seal or signature found in a package, with its references
// checked.
type Found struct {
	ID, Type string
	// Path is the package path of Signature.xml (absolute) and
	// SignatureXML its bytes: the SES dataHash must be their SM3.
	Path         string
	SignatureXML []byte
	SignedValue  []byte
	Method       string
	DateTime     string
	// BadReferences lists the files whose SM3 differs from the
	// Reference's CheckValue, or that are missing.
	BadReferences []string
	References    int
	// Unprotected lists the files of the package the signature must
	// protect and has no Reference to (see Signatures), sorted.
	Unprotected []string
	// SealFiles are the signature's seal files: the one SignedInfo's
	// Seal/BaseLoc names, and any Seal.esl beside Signature.xml (readers
	// draw the seal picture from them). Each must be the SESeal inside
	// SignedValue byte for byte.
	SealFiles []SealFile
	// StampPages are the PageRefs of the StampAnnots.
	StampPages []string
	// Stamps are the StampAnnots (a riding seal has one per page).
	Stamps []Stamp
}

// SealFile is a seal file (Seal.esl) of a signature: its absolute package
// path and bytes, Data nil when Seal/BaseLoc names a file the package
// lacks, or names none (Path "").
type SealFile struct {
	Path string
	Data []byte
}

// sigFile is a signature listed in Signatures.xml, read.
type sigFile struct {
	id, typ string
	path    string // package path of Signature.xml
	raw     []byte
	si      signatureIn
	seals   []SealFile
}

// Signatures returns the package's signatures with their references
// checked against the files.
//
// What a signature must protect (GB/T 33190 §18 lets the signer choose
// its References; GM-STANDARDS.md §6, ofdrw and this package's Prepare
// reference every file): every file of the package but the signature list
// (Signatures.xml, which later signatures append to) and the signatures'
// own files (each listed signature's Signature.xml, SignedValue and seal
// files), and always OFD.xml and the document root (Doc_0/Document.xml).
// A file it does not reference could have been added or replaced after
// signing, a page or an image the reader shows, so it is listed in
// Unprotected, as a PDF signature must cover the whole revision.
func Signatures(doc []byte) ([]*Found, error) {
	p, err := Open(doc)
	if err != nil {
		return nil, err
	}
	sigsPath := p.signaturesPath()
	if sigsPath == "" {
		return nil, nil
	}
	root, err := p.docRoot()
	if err != nil {
		return nil, err
	}
	if _, ok := p.files[root]; !ok {
		return nil, fmt.Errorf("%w: the document root %s is missing", ErrMalformed, root)
	}
	var sigs signaturesIn
	if err := xml.Unmarshal(p.files[sigsPath], &sigs); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, sigsPath, err)
	}
	// The signatures, and the files that are theirs.
	own := map[string]bool{sigsPath: true}
	esl := p.sealESLs()
	var list []sigFile
	for _, s := range sigs.Signature {
		sp := resolve(sigsPath, s.BaseLoc)
		raw, ok := p.files[sp]
		if !ok {
			return nil, fmt.Errorf("%w: signature %s: %s missing", ErrMalformed, s.ID, sp)
		}
		sf := sigFile{id: s.ID, typ: s.Type, path: sp, raw: raw}
		if err := xml.Unmarshal(raw, &sf.si); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, sp, err)
		}
		// A signature's own files are those in its folder: Signatures.xml
		// is signed by no one, and an entry added to it could otherwise
		// name any file of the package as its seal or signed value and
		// take it out of what the other signatures must protect.
		dir := path.Dir(sp) + "/"
		mine := func(f string) {
			if strings.HasPrefix(f, dir) {
				own[f] = true
			}
		}
		own[sp] = true
		mine(resolve(sp, sf.si.SignedValue))
		sf.seals = p.sealFiles(sp, sf.si, esl)
		for _, f := range sf.seals {
			mine(strings.TrimPrefix(f.Path, "/"))
		}
		list = append(list, sf)
	}
	own["OFD.xml"], own[root] = false, false
	var out []*Found
	for _, s := range list {
		si, sp := s.si, s.path
		f := &Found{ID: s.id, Type: s.typ, Path: "/" + sp, SignatureXML: s.raw, Method: si.SignedInfo.SignatureMethod,
			DateTime: si.SignedInfo.SignatureDateTime, References: len(si.SignedInfo.References.Reference)}
		if f.Type == "" {
			f.Type = "Seal"
		}
		cm := si.SignedInfo.References.CheckMethod
		if cm != "" && !strings.EqualFold(cm, "SM3") && cm != "1.2.156.10197.1.401" {
			return nil, fmt.Errorf("ofd: signature %s: check method %q is not SM3", s.id, cm)
		}
		referenced := map[string]bool{}
		for _, r := range si.SignedInfo.References.Reference {
			fp := resolve(sp, r.FileRef)
			referenced[fp] = true
			content, ok := p.files[fp]
			want, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.CheckValue))
			h := sm3.Sum(content)
			if !ok || err != nil || !bytes.Equal(h[:], want) {
				f.BadReferences = append(f.BadReferences, "/"+fp)
			}
		}
		for _, nm := range p.names {
			if !own[nm] && !referenced[nm] {
				f.Unprotected = append(f.Unprotected, "/"+nm)
			}
		}
		sort.Strings(f.Unprotected)
		f.SealFiles = s.seals
		for _, a := range si.SignedInfo.StampAnnot {
			f.StampPages = append(f.StampPages, a.PageRef)
			st := Stamp{ID: a.ID, PageRef: a.PageRef}
			st.Boundary, _ = parseBox(a.Boundary)
			if c, ok := parseBox(a.Clip); ok {
				st.Clip = &c
			}
			f.Stamps = append(f.Stamps, st)
		}
		var ok bool
		if f.SignedValue, ok = p.files[resolve(sp, si.SignedValue)]; !ok {
			return nil, fmt.Errorf("%w: signature %s: SignedValue %s missing", ErrMalformed, s.id, si.SignedValue)
		}
		out = append(out, f)
	}
	return out, nil
}

// sealESLs returns the files named Seal.esl (in any case) by folder.
func (p *Package) sealESLs() map[string][]string {
	out := map[string][]string{}
	for _, nm := range p.names {
		if strings.EqualFold(path.Base(nm), "Seal.esl") {
			out[path.Dir(nm)] = append(out[path.Dir(nm)], nm)
		}
	}
	return out
}

// sealFiles returns the seal files of the signature whose Signature.xml is
// at sp: the one Seal/BaseLoc names (resolved as ofdrw does, relative to
// Signature.xml unless absolute), and any file named Seal.esl (in any
// case; esl lists them by folder) in Signature.xml's folder, which
// readers look for by that name.
func (p *Package) sealFiles(sp string, si signatureIn, esl map[string][]string) []SealFile {
	var out []SealFile
	seen := map[string]bool{}
	if s := si.SignedInfo.Seal; s != nil {
		loc := strings.TrimSpace(s.BaseLoc)
		if loc == "" {
			out = append(out, SealFile{})
		} else {
			fp := resolve(sp, loc)
			seen[fp] = true
			out = append(out, SealFile{Path: "/" + fp, Data: p.files[fp]})
		}
	}
	for _, nm := range esl[path.Dir(sp)] {
		if !seen[nm] {
			out = append(out, SealFile{Path: "/" + nm, Data: p.files[nm]})
		}
	}
	return out
}
