package pdf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/signature/pdf/pdftest"
	"github.com/govtrust/govtrust/signature/ses"
)

var update = flag.Bool("update", false, "rewrite the golden sealed page")

// picture is a red ring with a red dot on transparency, like a seal.
func picture(t testing.TB) []byte {
	t.Helper()
	const n = 128
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	red := color.NRGBA{R: 0xe0, G: 0x10, B: 0x10, A: 0xff}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			dx, dy := float64(x)-n/2+0.5, float64(y)-n/2+0.5
			d := dx*dx + dy*dy
			if (d < 62*62 && d > 54*54) || d < 16*16 {
				img.SetNRGBA(x, y, red)
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type signer struct {
	key  crypto.Signer
	cert *smx509.Certificate
}

func newSigner(t testing.TB, sm bool) *signer {
	t.Helper()
	var key crypto.Signer
	var err error
	if sm {
		key, err = sm2.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "张三 official", Organization: []string{"govtrust test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: key, cert: cert}
}

// seal runs the two steps as the seal service and the agent do.
func seal(t testing.TB, doc []byte, s *signer) []byte {
	t.Helper()
	return sealAt(t, doc, s, Position{Page: 1, X: 120, Y: 40, Width: 42, Height: 42})
}

// sealAt seals doc with the seal at pos.
func sealAt(t testing.TB, doc []byte, s *signer, pos Position) []byte {
	t.Helper()
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	p, err := Prepare(doc, Field{Name: "Seal1", Signer: "张三", Reason: "sealed", Time: at, Picture: picture(t), Position: pos})
	if err != nil {
		t.Fatal(err)
	}
	fakeSeal := []byte{0x30, 0x03, 0x02, 0x01, 0x04}
	sd, tbs, err := NewSignedData(p, s.cert, nil, fakeSeal, at)
	if err != nil {
		t.Fatal(err)
	}
	shown, err := ParseToBeSigned(tbs)
	if err != nil || !bytes.Equal(shown.Seal, fakeSeal) || !shown.SigningTime.Equal(at) {
		t.Fatalf("to be signed: %+v %v", shown, err)
	}
	sig, _, err := ses.SignMessage(s.key, tbs)
	if err != nil {
		t.Fatal(err)
	}
	if err := Attach(sd, p, append([]byte{}, sig[:len(sig)-1]...)); err == nil {
		t.Fatal("a truncated signature was attached")
	}
	if err := Attach(sd, p, sig); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Finish(der)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func only(t testing.TB, doc []byte) *Signature {
	t.Helper()
	sigs, err := Signatures(doc)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures: %d %v", len(sigs), err)
	}
	return sigs[0]
}

func TestSealVerify(t *testing.T) {
	doc := pdftest.OnePage("govtrust sealing test page")
	for name, sm := range map[string]bool{"sm2": true, "ecdsa": false} {
		t.Run(name, func(t *testing.T) {
			s := newSigner(t, sm)
			out := seal(t, doc, s)
			if !bytes.HasPrefix(out, doc) {
				t.Fatal("the original is not kept byte for byte (not an incremental update)")
			}
			sig := only(t, out)
			if sig.Field != "Seal1" || sig.SubFilter != "adbe.pkcs7.detached" || sig.Seal == nil {
				t.Fatalf("field %q subfilter %q seal %x", sig.Field, sig.SubFilter, sig.Seal)
			}
			cert, err := sig.Verify(out, nil)
			if err != nil || !cert.Equal(s.cert) {
				t.Fatalf("verify: %v", err)
			}
			wantDigest := cms.SM3
			if !sm {
				wantDigest = cms.SHA256
			}
			if sig.SignedData.Signers[0].Digest != wantDigest {
				t.Fatalf("digest %s", sig.SignedData.Signers[0].Digest.Name)
			}

			t.Run("one changed byte", func(t *testing.T) {
				bad := bytes.Clone(out)
				i := bytes.Index(bad, []byte("sealing test page"))
				bad[i] ^= 0x20
				_, err := only(t, bad).Verify(bad, nil)
				if cms.ReasonOf(err) != cms.ReasonContentAltered {
					t.Fatalf("got %v, want %s", err, cms.ReasonContentAltered)
				}
			})
			t.Run("appended revision", func(t *testing.T) {
				bad := append(bytes.Clone(out), "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"...)
				cert, err := only(t, bad).Verify(bad, nil)
				if !errors.Is(err, ErrAppended) || cert == nil {
					t.Fatalf("got %v, want ErrAppended with the signed revision still valid", err)
				}
			})
			t.Run("byte range", func(t *testing.T) {
				sig := only(t, out)
				sig.ByteRange[3]--
				if _, err := sig.Verify(out, nil); !errors.Is(err, ErrByteRange) && !errors.Is(err, ErrAppended) {
					t.Fatalf("shortened ByteRange: %v", err)
				}
				sig = only(t, out)
				sig.ByteRange[1]++
				if _, err := sig.Verify(out, nil); !errors.Is(err, ErrByteRange) {
					t.Fatalf("shifted ByteRange: %v", err)
				}
			})
			if !sm {
				pdfsig(t, out, "sealing test page")
			}
		})
	}
}

// pdfsig has poppler (NSS) check the ECDSA signature: what common PDF
// readers do.
func pdfsig(t *testing.T, doc []byte, text string) {
	bin := testenv.LookPath(t, "pdfsig")
	f := filepath.Join(t.TempDir(), "sealed.pdf")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-nocert", f).CombinedOutput()
	t.Logf("pdfsig -nocert:\n%s", out)
	if err != nil {
		t.Fatalf("pdfsig: %v", err)
	}
	for _, want := range []string{"Signature Validation: Signature is Valid.", "Total document signed", "Signature Type: adbe.pkcs7.detached"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("pdfsig does not say %q", want)
		}
	}
	bad := bytes.Clone(doc)
	bad[bytes.Index(bad, []byte(text))] ^= 0x20
	if err := os.WriteFile(f, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command(bin, "-nocert", f).CombinedOutput()
	if strings.Contains(string(out), "Signature is Valid") {
		t.Fatalf("pdfsig accepts a changed document:\n%s", out)
	}
}

// TestSealedPageGolden renders the sealed page with pdftoppm and compares
// it with the golden image: at most 0.5% of the pixels may differ by more
// than 48 in a channel (another build of poppler's rasteriser), so a
// missing, moved or resized seal fails.
func TestSealedPageGolden(t *testing.T) {
	bin := testenv.LookPath(t, "pdftoppm")
	dir := t.TempDir()
	render := func(doc []byte) image.Image {
		f := filepath.Join(dir, "in.pdf")
		if err := os.WriteFile(f, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-png", "-r", "72", "-f", "1", "-singlefile", f, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
			t.Fatalf("pdftoppm: %v: %s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "page.png"))
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(filepath.Join("testdata", "sealed-page.png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	doc := pdftest.OnePage("govtrust sealing test page")
	unsealed := render(doc)
	got := render(seal(t, doc, newSigner(t, false)))
	b, err := os.ReadFile(filepath.Join("testdata", "sealed-page.png"))
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	want, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if frac := diff(got, want); frac > 0.005 {
		t.Fatalf("%.2f%% of the pixels differ from the golden sealed page", frac*100)
	}
	// The comparison can fail: the unsealed page is far from the golden.
	if frac := diff(unsealed, want); frac <= 0.005 {
		t.Fatalf("the unsealed page differs in only %.3f%% of the pixels: the seal is not drawn", frac*100)
	}
}

func diff(a, b image.Image) float64 {
	if a.Bounds() != b.Bounds() {
		return 1
	}
	var n int
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			d := func(p, q uint32) bool { return max(p, q)-min(p, q) > 48<<8 }
			if d(r1, r2) || d(g1, g2) || d(b1, b2) || d(a1, a2) {
				n++
			}
		}
	}
	return float64(n) / float64(r.Dx()*r.Dy())
}

// attached re-encodes the detached ContentInfo(SignedData) der as
// attached with eContent content; the SignerInfo (signed attributes,
// signature, time-stamp) is kept byte for byte, so its signature stays
// valid over content when content is what it signed.
func attached(t testing.TB, der, content []byte) []byte {
	t.Helper()
	in := cryptobyte.String(der)
	var ci, wrap, sd, version, algs, encap cryptobyte.String
	var ciType, eType asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1ObjectIdentifier(&ciType) ||
		!ci.ReadASN1(&wrap, cbasn1.Tag(0).Constructed().ContextSpecific()) || !wrap.ReadASN1(&sd, cbasn1.SEQUENCE) ||
		!sd.ReadASN1Element(&version, cbasn1.INTEGER) || !sd.ReadASN1Element(&algs, cbasn1.SET) ||
		!sd.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&eType) || !encap.Empty() {
		t.Fatal("not a detached SignedData")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(ciType)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(version)
				b.AddBytes(algs)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(eType)
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1OctetString(content) })
				})
				b.AddBytes(sd) // certificates, CRLs, signerInfos
			})
		})
	})
	return b.BytesOrPanic()
}

// TestOnlyDetachedSignatures: a PDF signature is a detached SignedData
// over the ByteRange (ISO 32000-1 §12.8.3.3.1). One that carries its own
// content (eContent) signs that content, not the document: it must not
// verify, whatever PDF it is put in.
func TestOnlyDetachedSignatures(t *testing.T) {
	s := newSigner(t, true)
	a := seal(t, pdftest.OnePage("A: pay 100 yuan"), s)
	sa := only(t, a)
	if _, err := sa.Verify(a, nil); err != nil {
		t.Fatalf("A: %v", err)
	}
	// What A's signature signed, as eContent: the SignerInfo still
	// verifies over it.
	att := attached(t, sa.DER, sa.Covered(a))
	if sd, err := cms.Parse(att, nil); err != nil || sd.Detached {
		t.Fatalf("re-encoded: %v", err)
	} else if _, err := sd.Verify(0, cms.VerifyOptions{}); err != nil {
		t.Fatalf("the attached SignedData does not verify over its own content: %v", err)
	}

	t.Run("transplanted onto another PDF", func(t *testing.T) {
		p, err := Prepare(pdftest.OnePage("B: pay 900000 yuan to Mallory"), Field{Name: "Seal1", Signer: "x", Reason: "x", Time: time.Now(),
			Picture: picture(t), Position: Position{Page: 1, X: 120, Y: 40, Width: 42, Height: 42}, Reserve: len(att) + 64})
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Finish(att)
		if err != nil {
			t.Fatal(err)
		}
		sig := only(t, b)
		if cert, err := sig.Verify(b, nil); err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "eContent") {
			t.Fatalf("B verifies with A's signature (signer %v): %v", cert != nil, err)
		}
	})
	t.Run("attached in its own document, the document changed", func(t *testing.T) {
		r := sa.ByteRange
		bad := bytes.Clone(a)
		h := hex.EncodeToString(att)
		if room := int(r[2]-r[1]) - 2; len(h) > room {
			t.Fatalf("room %d < %d", room, len(h))
		}
		copy(bad[r[1]+1:], h)
		i := bytes.Index(bad, []byte("pay 100 yuan"))
		copy(bad[i:], "pay 900 yuan")
		if _, err := only(t, bad).Verify(bad, nil); !errors.Is(err, ErrFormat) {
			t.Fatalf("a changed PDF with an attached SignedData: %v", err)
		}
	})
	t.Run("SubFilter not a detached type", func(t *testing.T) {
		for _, sf := range []string{"/adbe.pkcs7.sha1", "/ETSI.RFC3161"} {
			bad := bytes.Replace(a, []byte("/adbe.pkcs7.detached"), []byte(sf+strings.Repeat(" ", len("/adbe.pkcs7.detached")-len(sf))), 1)
			if _, err := only(t, bad).Verify(bad, nil); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "SubFilter") {
				t.Fatalf("SubFilter %s: %v", sf, err)
			}
		}
		bad := bytes.Replace(a, []byte("/SubFilter/adbe.pkcs7.detached"), []byte(strings.Repeat(" ", len("/SubFilter/adbe.pkcs7.detached"))), 1)
		if bytes.Equal(bad, a) {
			t.Fatal("no /SubFilter/adbe.pkcs7.detached in the sealed PDF")
		}
		if _, err := only(t, bad).Verify(bad, nil); !errors.Is(err, ErrFormat) {
			t.Fatalf("no SubFilter: %v", err)
		}
		// ETSI.CAdES.detached is the same detached SignedData (the name
		// is as long as adbe.pkcs7.detached: the ByteRange holds).
		at := time.Now()
		p, err := Prepare(pdftest.OnePage("CAdES"), Field{Name: "Seal1", Signer: "x", Reason: "x", Time: at,
			Picture: picture(t), Position: Position{Page: 1, X: 120, Y: 40, Width: 42, Height: 42}})
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(p.Document, []byte("/adbe.pkcs7.detached"))
		copy(p.Document[i:], "/ETSI.CAdES.detached")
		sd, tbs, err := NewSignedData(p, s.cert, nil, []byte{0x30, 0x03, 0x02, 0x01, 0x04}, at)
		if err != nil {
			t.Fatal(err)
		}
		sig, _, err := ses.SignMessage(s.key, tbs)
		if err != nil {
			t.Fatal(err)
		}
		if err := Attach(sd, p, sig); err != nil {
			t.Fatal(err)
		}
		der, err := sd.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		cades, err := p.Finish(der)
		if err != nil {
			t.Fatal(err)
		}
		if sig := only(t, cades); sig.SubFilter != "ETSI.CAdES.detached" {
			t.Fatalf("SubFilter %q", sig.SubFilter)
		} else if _, err := sig.Verify(cades, nil); err != nil {
			t.Fatalf("ETSI.CAdES.detached: %v", err)
		}
	})
}

// withByteRange returns doc with the text of its /ByteRange array
// replaced by br, padded with spaces to the slot's width (36, pdfcpu's
// worst case), or nil when br does not fit the slot.
func withByteRange(t testing.TB, doc []byte, br string) []byte {
	t.Helper()
	i := bytes.Index(doc, []byte("/ByteRange"))
	if i < 0 {
		t.Fatal("no /ByteRange")
	}
	j := i + bytes.IndexByte(doc[i:], '[')
	const slot = 36
	if len(br) > slot {
		return nil
	}
	out := bytes.Clone(doc)
	copy(out[j:], br+strings.Repeat(" ", slot-len(br)))
	return out
}

// TestByteRangeBounds: a ByteRange is checked against the document's
// length before any arithmetic on its values, so that none overflows: a
// hostile one is ErrByteRange, never a panic.
func TestByteRangeBounds(t *testing.T) {
	out := seal(t, pdftest.OnePage("byte range bounds"), newSigner(t, true))
	good := only(t, out).ByteRange
	n := int64(len(out))
	const maxInt = math.MaxInt64
	for _, r := range [][4]int64{
		{0, maxInt, 10, 5},                         // r[1]+1 overflows
		{0, maxInt - 1, maxInt, 0},                 // beyond the document
		{0, 10, maxInt, maxInt},                    // r[2]+r[3] overflows
		{0, 10, 20, maxInt - 19},                   // r[2]+r[3] = MaxInt64 > n
		{0, good[1], good[2], maxInt},              // r[3] too long
		{0, good[1], good[1] + 1, n - good[1] - 1}, // no room for "<>"
		{0, good[1], good[1], n - good[1]},         // empty gap
		{0, good[2], good[1], good[3]},             // ranges crossed
		{0, n, n, 0},                               // gap at the very end
		{0, n + 1, n + 3, 0},                       // past the end
		{1, good[1], good[2], good[3]},             // not from the start
		{0, 0, good[2], good[3]},                   // empty first range
		{0, good[1], good[2], -1},                  // negative
		{0, -maxInt, good[2], good[3]},             // negative
		{0, good[1], n + 1, 0},                     // gap past the end
	} {
		sig := only(t, out)
		sig.ByteRange = r
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("ByteRange %v: panic %v", r, v)
				}
			}()
			if c := sig.Covered(out); c != nil {
				t.Errorf("ByteRange %v: Covered returned %d bytes", r, len(c))
			}
			if _, err := sig.Verify(out, nil); !errors.Is(err, ErrByteRange) {
				t.Errorf("ByteRange %v: %v, want ErrByteRange", r, err)
			}
		}()
	}
	// The same, read from the document.
	bad := withByteRange(t, out, "[0 9223372036854775807 10 5]")
	sig := only(t, bad)
	if sig.ByteRange != [4]int64{0, maxInt, 10, 5} {
		t.Fatalf("read %v", sig.ByteRange)
	}
	if _, err := sig.Verify(bad, nil); !errors.Is(err, ErrByteRange) {
		t.Fatalf("%v, want ErrByteRange", err)
	}
}

// FuzzByteRange feeds the ByteRange reader and checker hostile arrays,
// as text in a sealed document and as values: no panic, and a ByteRange
// that checks out covers the document but the /Contents string.
// Run: go test ./signature/pdf -run '^$' -fuzz FuzzByteRange -fuzztime 1m
func FuzzByteRange(f *testing.F) {
	out := seal(f, pdftest.OnePage("fuzz the byte range"), newSigner(f, false))
	good := only(f, out).ByteRange
	f.Add(fmt.Sprintf("[%d %d %d %d]", good[0], good[1], good[2], good[3]), good[0], good[1], good[2], good[3])
	f.Add("[0 9223372036854775807 10 5]", int64(0), int64(math.MaxInt64), int64(10), int64(5))
	f.Add("[0 10 9223372036854775807 9223372036854775807]", int64(0), int64(10), int64(math.MaxInt64), int64(math.MaxInt64))
	f.Add("[-1 -2 3.5 (x)]", int64(-1), int64(-2), int64(3), int64(0))
	f.Fuzz(func(t *testing.T, text string, a, b, c, d int64) {
		check := func(sig *Signature, doc []byte) {
			cov := sig.Covered(doc)
			err := sig.CheckByteRange(doc)
			if (err == nil || errors.Is(err, ErrAppended)) && cov == nil {
				t.Fatalf("ByteRange %v: CheckByteRange %v but Covered nothing", sig.ByteRange, err)
			}
			if err != nil && !errors.Is(err, ErrByteRange) && !errors.Is(err, ErrAppended) {
				t.Fatalf("ByteRange %v: %v", sig.ByteRange, err)
			}
			if err == nil && len(cov)+int(sig.ByteRange[2]-sig.ByteRange[1]) != len(doc) {
				t.Fatalf("ByteRange %v accepted but covers %d of %d bytes", sig.ByteRange, len(cov), len(doc))
			}
			_, _ = sig.Verify(doc, nil)
		}
		sig := only(t, out)
		sig.ByteRange = [4]int64{a, b, c, d}
		check(sig, out)
		doc := withByteRange(t, out, text)
		if doc == nil {
			return
		}
		sigs, err := Signatures(doc)
		if err != nil {
			return
		}
		for _, sig := range sigs {
			if sig.Err == nil {
				check(sig, doc)
			}
		}
	})
}

// pdfOf writes objs, numbered from 1 with the catalog first, as a PDF.
func pdfOf(objs []string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n")
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

// formPDF is a one-page PDF whose AcroForm lists fields, with the field
// objects extra numbered from 4.
func formPDF(fields string, extra ...string) []byte {
	return pdfOf(append([]string{
		"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [" + fields + "] >> >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
	}, extra...))
}

// TestFormWalkBounded: the walk of the form fields visits each field
// object once and looks at a bounded number of entries, so that a small
// hostile PDF cannot keep a verifier busy (a field listing the next one n
// times, eight deep, was n^8 visits).
func TestFormWalkBounded(t *testing.T) {
	// signatures runs SignaturesContext, failing when it has not
	// returned within a minute (the walk of n^8 took hours).
	signatures := func(t *testing.T, doc []byte) ([]*Signature, error) {
		t.Helper()
		type result struct {
			sigs []*Signature
			err  error
		}
		done := make(chan result, 1)
		go func() {
			sigs, err := SignaturesContext(context.Background(), doc)
			done <- result{sigs, err}
		}()
		select {
		case r := <-done:
			return r.sigs, r.err
		case <-time.After(time.Minute):
			t.Fatalf("Signatures of a %d-byte PDF still running after a minute", len(doc))
			return nil, nil
		}
	}
	// A chain of eight fields, each listing the next n times; the last
	// is a text field or a signature field.
	fanout := func(n int, leaf string) []byte {
		var objs []string
		for i := range 8 {
			objs = append(objs, fmt.Sprintf("<< /T (f%d) /Kids [%s] >>", i, strings.Repeat(fmt.Sprintf("%d 0 R ", 5+i), n)))
		}
		objs = append(objs, leaf,
			"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /adbe.pkcs7.detached /ByteRange [0 1 2 3] /Contents <3000> >>")
		return formPDF("4 0 R", objs...)
	}
	const textLeaf, sigLeaf = "<< /T (t) /FT /Tx >>", "<< /T (s) /FT /Sig /V 13 0 R >>"
	for _, n := range []int{16, 64} {
		t.Run(fmt.Sprintf("fan-out %d", n), func(t *testing.T) {
			sigs, err := signatures(t, fanout(n, textLeaf))
			if err != nil || len(sigs) != 0 {
				t.Fatalf("%d signatures, %v", len(sigs), err)
			}
			sigs, err = signatures(t, fanout(n, sigLeaf))
			if err != nil || len(sigs) != 1 || sigs[0].Field != "s" {
				t.Fatalf("%d signatures, %v; want the one signature field once", len(sigs), err)
			}
		})
	}
	t.Run("fan-out past the bound", func(t *testing.T) {
		if _, err := signatures(t, fanout(maxFieldNodes/8+1, textLeaf)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "form field entries") {
			t.Fatalf("got %v, want ErrFormat: too many entries", err)
		}
	})
	t.Run("one field listed past the bound", func(t *testing.T) {
		doc := formPDF(strings.Repeat("4 0 R ", maxFieldNodes+1), "<< /T (f) /FT /Tx >>")
		if _, err := signatures(t, doc); !errors.Is(err, ErrFormat) {
			t.Fatalf("got %v, want ErrFormat", err)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		doc := formPDF("4 0 R", "<< /T (a) /Kids [5 0 R 4 0 R] >>", "<< /T (b) /Kids [4 0 R 5 0 R 6 0 R] >>",
			"<< /T (s) /FT /Sig /V 7 0 R /Parent 5 0 R >>",
			"<< /Type /Sig /SubFilter /adbe.pkcs7.detached /ByteRange [0 1 2 3] /Contents <3000> >>")
		sigs, err := signatures(t, doc)
		if err != nil || len(sigs) != 1 {
			t.Fatalf("%d signatures, %v", len(sigs), err)
		}
	})
	t.Run("a real form of thousands of fields", func(t *testing.T) {
		var refs strings.Builder
		var objs []string
		for i := range 3000 {
			fmt.Fprintf(&refs, "%d 0 R ", 4+i)
			objs = append(objs, fmt.Sprintf("<< /T (f%d) /FT /Tx >>", i))
		}
		sigs, err := signatures(t, formPDF(refs.String(), objs...))
		if err != nil || len(sigs) != 0 {
			t.Fatalf("%d signatures, %v", len(sigs), err)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := SignaturesContext(ctx, fanout(16, textLeaf)); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}
