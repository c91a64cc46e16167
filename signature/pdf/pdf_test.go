package pdf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"image"
	"image/color"
	"image/png"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

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
