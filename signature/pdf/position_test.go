package pdf

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/signature/pdf/pdftest"
)

// widgetRect is a widget annotation found on a page.
type widgetRect struct {
	llx, lly, urx, ury float64
	parent             string // the field's /T through /Parent
}

// widgets returns the widget annotations of every page of doc.
func widgets(t *testing.T, doc []byte) [][]widgetRect {
	t.Helper()
	ctx, err := api.ReadContext(bytes.NewReader(doc), config())
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.EnsurePageCount(); err != nil {
		t.Fatal(err)
	}
	out := make([][]widgetRect, ctx.PageCount)
	for i := range ctx.PageCount {
		d, _, _, err := ctx.PageDict(i+1, false)
		if err != nil {
			t.Fatal(err)
		}
		annots, _ := ctx.DereferenceArray(d["Annots"])
		for _, a := range annots {
			w, err := ctx.DereferenceDict(a)
			if err != nil || w == nil || w.NameEntry("Subtype") == nil || *w.NameEntry("Subtype") != "Widget" {
				continue
			}
			r, err := ctx.DereferenceArray(w["Rect"])
			if err != nil || len(r) != 4 {
				t.Fatalf("page %d: widget rect %v %v", i+1, w["Rect"], err)
			}
			var v [4]float64
			for j, o := range r {
				n, err := ctx.DereferenceNumber(o)
				if err != nil {
					t.Fatal(err)
				}
				v[j] = n
			}
			wr := widgetRect{llx: v[0], lly: v[1], urx: v[2], ury: v[3]}
			if p, err := ctx.DereferenceDict(w["Parent"]); err == nil && p != nil {
				if h, ok := p["T"].(types.HexLiteral); ok {
					wr.parent, _ = types.HexLiteralToString(h)
				}
			}
			out[i] = append(out[i], wr)
		}
	}
	return out
}

// TestRidingSeal seals a 3-page PDF with a riding seal: one signature
// field with a widget per page, slice i at the right edge of page i, the
// slices summing to the picture's width; the result verifies here and
// with pdfsig, pdftoppm shows each slice inside the right strip and
// nothing of the seal elsewhere, and one changed byte fails.
func TestRidingSeal(t *testing.T) {
	texts := []string{"riding page one", "riding page two", "riding page three"}
	doc := pdftest.Pages(texts...)
	s := newSigner(t, false)
	const size = 42.0 // mm
	near := func(a, b float64) bool { return math.Abs(a-b) <= 0.01 }
	pt := size * mmToPt

	for name, c := range map[string]struct {
		pos Position
		top float64 // the widgets' top, points
	}{
		"centred": {Position{Riding: true, Centred: true, Width: size, Height: size}, 421 + pt/2},
		"at y":    {Position{Riding: true, Y: 30, Width: size, Height: size, Page: 2, X: 5}, 842 - 30*mmToPt},
	} {
		t.Run(name, func(t *testing.T) {
			out := sealAt(t, doc, s, c.pos)
			if !bytes.HasPrefix(out, doc) {
				t.Fatal("not an incremental update")
			}
			sum := 0.0
			for i, ws := range widgets(t, out) {
				if len(ws) != 1 {
					t.Fatalf("page %d: %d widgets", i+1, len(ws))
				}
				w := ws[0]
				if w.parent != "Seal1" || !near(w.urx, 595) || !near(w.ury, c.top) || !near(w.ury-w.lly, pt) || !near(w.urx-w.llx, pt/3) {
					t.Fatalf("page %d: widget %+v", i+1, w)
				}
				sum += w.urx - w.llx
			}
			if !near(sum, pt) {
				t.Fatalf("slices sum to %g pt, want %g", sum, pt)
			}
			sig := only(t, out)
			if _, err := sig.Verify(out, nil); err != nil {
				t.Fatalf("verify: %v", err)
			}
			for _, text := range texts {
				bad := bytes.Clone(out)
				bad[bytes.Index(bad, []byte(text))] ^= 0x20
				if _, err := only(t, bad).Verify(bad, nil); cms.ReasonOf(err) != cms.ReasonContentAltered {
					t.Fatalf("changed %q: got %v, want %s", text, err, cms.ReasonContentAltered)
				}
			}
			// A moved slice (a widget's /Rect is in the signed bytes).
			moved := bytes.Clone(out)
			i := len(doc) + bytes.Index(moved[len(doc):], []byte("/Rect["))
			if moved[i+6] != '5' {
				t.Fatalf("first widget rect: %.20s", moved[i:])
			}
			moved[i+6] = '4'
			if _, err := only(t, moved).Verify(moved, nil); cms.ReasonOf(err) != cms.ReasonContentAltered {
				t.Fatalf("moved slice: got %v", err)
			}
			pdfsig(t, out, "riding page two")
			if name == "centred" {
				renderSlices(t, out, len(texts))
			}
		})
	}

	t.Run("rotated page", func(t *testing.T) {
		rot := bytes.Replace(doc, []byte("/MediaBox [0 0 595 842]"), []byte("/MediaBox [0 0 595 842] /Rotate 90"), 1)
		_, err := Prepare(rot, Field{Name: "S", Picture: picture(t), Position: Position{Riding: true, Centred: true, Width: size, Height: size}})
		if err == nil {
			t.Fatal("a riding seal on a rotated page was accepted")
		}
	})
}

// renderSlices renders each page with pdftoppm at 72 dpi (1 px = 1 pt)
// and checks that the seal's red is in the right strip at mid-height and
// nowhere else: the slices are drawn and clipped.
func renderSlices(t *testing.T, doc []byte, n int) {
	t.Helper()
	bin := testenv.LookPath(t, "pdftoppm")
	dir := t.TempDir()
	f := filepath.Join(dir, "in.pdf")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-png", "-r", "72", f, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v: %s", err, out)
	}
	strip := 42 * mmToPt / float64(n) // slice width, points
	for p := 1; p <= n; p++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("page-%d.png", p)))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		in, out := 0, 0
		r := img.Bounds()
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				if !red(img, x, y) {
					continue
				}
				if float64(x) >= 595-strip-1 && math.Abs(float64(y)-421) <= 42*mmToPt/2+1 {
					in++
				} else {
					out++
				}
			}
		}
		if in < 100 || out != 0 {
			t.Fatalf("page %d: %d red pixels in the right strip, %d outside", p, in, out)
		}
		if p == 2 {
			// The middle slice holds the seal's centre dot.
			if !red(img, 595-int(strip/2), 421) {
				t.Fatal("page 2: the centre of the seal is not red")
			}
		}
	}
}

func red(img image.Image, x, y int) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	return r > 0xa000 && g < 0x6000 && b < 0x6000
}
