package ofd

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
)

const ofdXML = `<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"><ofd:DocBody><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>`

// bomb is an OFD package whose files are n runs of mib MiB of zeros each,
// deflated at the best compression (about 1000 to 1).
func bomb(t testing.TB, n, mib int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestCompression) })
	w, _ := zw.Create("OFD.xml")
	w.Write([]byte(ofdXML))
	zeros := make([]byte, 1<<20)
	for i := range n {
		w, err := zw.Create(fmt.Sprintf("Doc_0/Res/r%d.bin", i))
		if err != nil {
			t.Fatal(err)
		}
		for range mib {
			w.Write(zeros)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// opened opens data and returns the bytes allocated meanwhile and the error.
func opened(data []byte) (uint64, error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Open(data)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// TestZipBomb: a package of well under the API's 1 MiB request limit (as
// base64 in JSON) that inflates to hundreds of MiB is refused with
// ErrTooLarge (an ErrMalformed) without inflating it: per file by its
// compression ratio, over all by the total a package may hold, and by the
// bytes actually inflated when the sizes the zip declares are lies.
func TestZipBomb(t *testing.T) {
	t.Run("ratio", func(t *testing.T) {
		data := bomb(t, 3, 250) // 750 MiB of zeros, as the audit sent
		if len(data) > 3<<20/4 {
			t.Fatalf("the bomb is %d bytes", len(data))
		}
		start := time.Now()
		alloc, err := opened(data)
		t.Logf("%d-byte package: %v; %d KiB allocated in %s", len(data), err, alloc>>10, time.Since(start))
		if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrMalformed) {
			t.Fatalf("Open: %v, want ErrTooLarge", err)
		}
		if alloc > 8<<20 {
			t.Fatalf("Open allocated %d MiB for a %d-byte package", alloc>>20, len(data))
		}
	})
	t.Run("total", func(t *testing.T) {
		// Files within the ratio's grace, too many of them.
		data := bomb(t, MaxTotalBytes/RatioGrace+2, 1)
		alloc, err := opened(data)
		t.Logf("%d-byte package: %v; %d MiB allocated", len(data), err, alloc>>20)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Open: %v, want ErrTooLarge", err)
		}
		if alloc > MaxTotalBytes+16<<20 {
			t.Fatalf("Open allocated %d MiB, limit %d MiB", alloc>>20, MaxTotalBytes>>20)
		}
	})
	t.Run("declared size a lie", func(t *testing.T) {
		// A file that declares 1 KiB and inflates to 64 MiB: the bytes
		// read are counted.
		var raw bytes.Buffer
		fw, _ := flate.NewWriter(&raw, flate.BestCompression)
		zeros := make([]byte, 64<<20)
		fw.Write(zeros)
		fw.Close()
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, _ := zw.Create("OFD.xml")
		w.Write([]byte(ofdXML))
		w, err := zw.CreateRaw(&zip.FileHeader{Name: "Doc_0/Res/lie.bin", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(zeros),
			CompressedSize64: uint64(raw.Len()), UncompressedSize64: 1 << 10})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw.Bytes())
		zw.Close()
		alloc, err := opened(buf.Bytes())
		t.Logf("%v; %d KiB allocated", err, alloc>>10)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Open: %v, want ErrMalformed", err)
		}
		if alloc > 8<<20 {
			t.Fatalf("Open allocated %d MiB", alloc>>20)
		}
	})
	t.Run("real packages open", func(t *testing.T) {
		if _, err := Open(ofdtest.Document("通知正文", 3)); err != nil {
			t.Fatal(err)
		}
		// 3 MiB of incompressible resources (a scanned page) and 2 MiB of
		// text that deflates well past the ratio's grace.
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, _ := zw.Create("OFD.xml")
		w.Write([]byte(ofdXML))
		img := make([]byte, 3<<20)
		rand.Read(img)
		w, _ = zw.Create("Doc_0/Res/scan.png")
		w.Write(img)
		w, _ = zw.Create("Doc_0/Pages/Page_0/Content.xml")
		for i := range 2 << 20 / 64 {
			fmt.Fprintf(w, "<ofd:TextCode X=\"%d\" Y=\"10\">通知正文 %08d</ofd:TextCode>\n", i%200, i)
		}
		zw.Close()
		p, err := Open(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := p.File("Doc_0/Res/scan.png"); !bytes.Equal(b, img) {
			t.Fatal("the image changed")
		}
	})
}

// signed returns doc with a seal signature prepared by Prepare (as the
// platform seals) and value as its SignedValue.dat, and the signature's
// Signature.xml path.
func signed(t testing.TB, doc, value []byte) ([]byte, string) {
	t.Helper()
	pr, err := Prepare(doc, time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC), "1.2.156.10197.1.501", Position{X: 10, Y: 10, Width: 40, Height: 40}, "test")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pr.Finish(value)
	if err != nil {
		t.Fatal(err)
	}
	return out, pr.Path
}

// edited returns data with files replaced or added (nil: removed).
func edited(t testing.TB, data []byte, files map[string][]byte) []byte {
	t.Helper()
	p, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		name = strings.TrimPrefix(name, "/")
		if b == nil {
			delete(p.files, name)
			p.names = slices.DeleteFunc(p.names, func(n string) bool { return n == name })
			continue
		}
		p.put(name, b)
	}
	out, err := p.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// only1 returns the one signature of data.
func only1(t testing.TB, data []byte) *Found {
	t.Helper()
	found, err := Signatures(data)
	if err != nil || len(found) != 1 {
		t.Fatalf("signatures: %v, %d", err, len(found))
	}
	return found[0]
}

// TestSealFiles: a signature's seal files are the one SignedInfo's
// Seal/BaseLoc names (relative to Signature.xml or absolute, as ofdrw
// writes it), missing or not, and any Seal.esl beside Signature.xml, which
// readers draw the seal picture from; the platform writes none.
func TestSealFiles(t *testing.T) {
	doc, sigPath := signed(t, ofdtest.Document("通知正文", 1), []byte("value"))
	if f := only1(t, doc); len(f.SealFiles) != 0 {
		t.Fatalf("a platform signature has seal files %+v", f.SealFiles)
	}
	p, _ := Open(doc)
	sigXML, _ := p.File(sigPath)
	withSeal := func(loc string) []byte {
		return bytes.Replace(sigXML, []byte("<ofd:StampAnnot"), []byte("<ofd:Seal><ofd:BaseLoc>"+loc+"</ofd:BaseLoc></ofd:Seal><ofd:StampAnnot"), 1)
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  []SealFile
	}{
		{"conventional Seal.esl", map[string][]byte{"Doc_0/Signs/Sign_0/Seal.esl": []byte("esl")},
			[]SealFile{{"/Doc_0/Signs/Sign_0/Seal.esl", []byte("esl")}}},
		{"lower case, another signature's folder ignored", map[string][]byte{"Doc_0/Signs/Sign_0/seal.esl": []byte("esl"), "Doc_0/Signs/Sign_1/Seal.esl": []byte("x")},
			[]SealFile{{"/Doc_0/Signs/Sign_0/seal.esl", []byte("esl")}}},
		{"Seal/BaseLoc relative", map[string][]byte{sigPath: withSeal("Seal.esl"), "Doc_0/Signs/Sign_0/Seal.esl": []byte("esl")},
			[]SealFile{{"/Doc_0/Signs/Sign_0/Seal.esl", []byte("esl")}}},
		{"Seal/BaseLoc absolute, and a Seal.esl beside", map[string][]byte{sigPath: withSeal("/Doc_0/Seals/s1.esl"), "Doc_0/Seals/s1.esl": []byte("s1"), "Doc_0/Signs/Sign_0/Seal.esl": []byte("esl")},
			[]SealFile{{"/Doc_0/Seals/s1.esl", []byte("s1")}, {"/Doc_0/Signs/Sign_0/Seal.esl", []byte("esl")}}},
		{"Seal/BaseLoc missing", map[string][]byte{sigPath: withSeal("Seal.esl")},
			[]SealFile{{"/Doc_0/Signs/Sign_0/Seal.esl", nil}}},
		{"Seal without BaseLoc", map[string][]byte{sigPath: withSeal(" ")},
			[]SealFile{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := only1(t, edited(t, doc, tc.files))
			if !reflect.DeepEqual(f.SealFiles, tc.want) {
				t.Fatalf("seal files %+v, want %+v", f.SealFiles, tc.want)
			}
		})
	}
}

// TestUnprotected: a signature must protect OFD.xml, the document root
// and every file of the package but the signature list and the
// signatures' own files; the files it leaves out are listed. Signatures
// made by Prepare, the first and one appended, leave none out.
func TestUnprotected(t *testing.T) {
	doc, sigPath := signed(t, ofdtest.Document("通知正文", 2), []byte("value 1"))
	if f := only1(t, doc); len(f.Unprotected) != 0 || len(f.BadReferences) != 0 || f.References != 5 {
		t.Fatalf("a platform signature: unprotected %v, bad %v, %d references", f.Unprotected, f.BadReferences, f.References)
	}
	two, _ := signed(t, edited(t, doc, map[string][]byte{"Doc_0/Signs/Sign_0/Seal.esl": []byte("esl")}), []byte("value 2"))
	found, err := Signatures(two)
	if err != nil || len(found) != 2 {
		t.Fatalf("two signatures: %v %d", err, len(found))
	}
	for _, f := range found {
		if len(f.Unprotected) != 0 || len(f.BadReferences) != 0 {
			t.Fatalf("signature %s of two: unprotected %v, bad %v", f.ID, f.Unprotected, f.BadReferences)
		}
	}

	p, _ := Open(doc)
	sigXML, _ := p.File(sigPath)
	refs := regexp.MustCompile(`<ofd:Reference FileRef="([^"]+)">.*?</ofd:Reference>`)
	// without returns Signature.xml without the References to files.
	without := func(files ...string) []byte {
		return refs.ReplaceAllFunc(sigXML, func(m []byte) []byte {
			if slices.Contains(files, string(refs.FindSubmatch(m)[1])) {
				return nil
			}
			return m
		})
	}
	all := []string{"/Doc_0/Document.xml", "/Doc_0/Pages/Page_0/Content.xml", "/Doc_0/Pages/Page_1/Content.xml", "/Doc_0/PublicRes.xml", "/OFD.xml"}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  []string
	}{
		{"no references", map[string][]byte{sigPath: without(all...)}, all},
		{"without OFD.xml", map[string][]byte{sigPath: without("/OFD.xml")}, []string{"/OFD.xml"}},
		{"without the document root", map[string][]byte{sigPath: without("/Doc_0/Document.xml")}, []string{"/Doc_0/Document.xml"}},
		{"without a page", map[string][]byte{sigPath: without("/Doc_0/Pages/Page_1/Content.xml")}, []string{"/Doc_0/Pages/Page_1/Content.xml"}},
		{"a file added after signing", map[string][]byte{"Doc_0/Res/image.png": []byte("png")}, []string{"/Doc_0/Res/image.png"}},
		{"another signature claiming OFD.xml as its own", map[string][]byte{
			sigPath: without("/OFD.xml"),
			"Doc_0/Signs/Signatures.xml": []byte(`<ofd:Signatures xmlns:ofd="http://www.ofdspec.org/2016"><ofd:Signature ID="1" BaseLoc="/Doc_0/Signs/Sign_0/Signature.xml"/>` +
				`<ofd:Signature ID="2" BaseLoc="/Doc_0/Signs/Sign_1/Signature.xml"/></ofd:Signatures>`),
			"Doc_0/Signs/Sign_1/Signature.xml": []byte(`<ofd:Signature xmlns:ofd="http://www.ofdspec.org/2016"><ofd:SignedInfo><ofd:Seal><ofd:BaseLoc>/Doc_0/Document.xml</ofd:BaseLoc></ofd:Seal></ofd:SignedInfo><ofd:SignedValue>/OFD.xml</ofd:SignedValue></ofd:Signature>`),
		}, []string{"/OFD.xml"}},
		{"another signature claiming files outside its folder", map[string][]byte{
			sigPath:               without("/Doc_0/Pages/Page_1/Content.xml"),
			"Doc_0/Res/image.png": []byte("png"),
			"Doc_0/Signs/Signatures.xml": []byte(`<ofd:Signatures xmlns:ofd="http://www.ofdspec.org/2016"><ofd:Signature ID="1" BaseLoc="/Doc_0/Signs/Sign_0/Signature.xml"/>` +
				`<ofd:Signature ID="2" BaseLoc="/Doc_0/Signs/Sign_1/Signature.xml"/></ofd:Signatures>`),
			"Doc_0/Signs/Sign_1/Signature.xml": []byte(`<ofd:Signature xmlns:ofd="http://www.ofdspec.org/2016"><ofd:SignedInfo><ofd:Seal><ofd:BaseLoc>/Doc_0/Pages/Page_1/Content.xml</ofd:BaseLoc></ofd:Seal></ofd:SignedInfo><ofd:SignedValue>/Doc_0/Res/image.png</ofd:SignedValue></ofd:Signature>`),
		}, []string{"/Doc_0/Pages/Page_1/Content.xml", "/Doc_0/Res/image.png"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Signatures(edited(t, doc, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f[0].Unprotected, tc.want) || len(f[0].BadReferences) != 0 {
				t.Fatalf("unprotected %v (bad %v), want %v", f[0].Unprotected, f[0].BadReferences, tc.want)
			}
		})
	}
	t.Run("document root missing", func(t *testing.T) {
		if _, err := Signatures(edited(t, doc, map[string][]byte{"Doc_0/Document.xml": nil})); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Signatures: %v, want ErrMalformed", err)
		}
	})
}
