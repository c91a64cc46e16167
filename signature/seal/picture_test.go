package seal

import (
	"bytes"
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/govtrust/govtrust/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden seal pictures")

// TestRoundSealGolden renders generated seals and compares them with the
// golden pictures within a tolerance: at most 0.5% of the pixels may
// differ by more than 48 in a channel (anti-aliasing of another build of
// the font rasteriser), so a misplaced glyph, star or ring fails.
func TestRoundSealGolden(t *testing.T) {
	b, err := os.ReadFile(testenv.File(t, fontPath, "CJK font (Debian fonts-wqy-microhei)"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFont(b)
	if err != nil {
		t.Fatal(err)
	}
	for name, rs := range map[string]RoundSeal{
		"contract": {Name: "福州市数据管理局", Text: "合同专用章", Size: 256},
		"long":     {Name: "中华人民共和国福建省福州市人民政府办公厅", Size: 256},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := rs.Render(f)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "seal-"+name+".png")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if frac := diff(t, got, want); frac > 0.005 {
				t.Fatalf("%.2f%% of the pixels differ from %s", frac*100, golden)
			}
		})
	}
	t.Run("differs", func(t *testing.T) {
		a, _ := RoundSeal{Name: "福州市数据管理局", Text: "合同专用章", Size: 256}.Render(f)
		c, _ := RoundSeal{Name: "福州市数据管理处", Text: "合同专用章", Size: 256}.Render(f)
		if frac := diff(t, a, c); frac <= 0.005 {
			t.Fatalf("one character changed moves only %.3f%% of the pixels: the comparison cannot fail", frac*100)
		}
	})
	t.Run("missing glyph", func(t *testing.T) {
		if _, err := (RoundSeal{Name: "\U0001F600"}).Render(f); err == nil {
			t.Fatal("rendered a character the font lacks")
		}
	})
}

func diff(t testing.TB, a, b []byte) float64 {
	t.Helper()
	ia, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if ia.Bounds() != ib.Bounds() {
		return 1
	}
	var n int
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if far(ia, ib, x, y) {
				n++
			}
		}
	}
	return float64(n) / float64(r.Dx()*r.Dy())
}

func far(a, b image.Image, x, y int) bool {
	r1, g1, b1, a1 := a.At(x, y).RGBA()
	r2, g2, b2, a2 := b.At(x, y).RGBA()
	d := func(p, q uint32) bool { return max(p, q)-min(p, q) > 48<<8 }
	return d(r1, r2) || d(g1, g2) || d(b1, b2) || d(a1, a2)
}
