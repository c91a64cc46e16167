package seal

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"

	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
	"github.com/govtrust/govtrust/signature/pdf/pdftest"
	"github.com/govtrust/govtrust/signature/seal/agent"
)

// TestSealPositions seals OFD documents by keyword and as a riding seal,
// and PDFs by keyword and as a riding seal, through the API and the agent; the results
// verify (the PDF with pdfsig too), and one changed byte of any page
// fails with the document-digest reason.
func TestSealPositions(t *testing.T) {
	tn := startNode(t)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	off := tn.softOfficial("张三")
	now := time.Now().UTC()
	rec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "official", Generate: true,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(off.cert)}}})
	var shown []agent.Shown
	ag := startAgent(t, off.key, off.cert, &shown)
	const picture = 42.0 // mm, the generated seal's width and height
	near := func(a, b float64) bool { return math.Abs(a-b) <= 0.01 }
	sealed := func(t *testing.T, doc []byte, pos Position) (*ofd.Found, []byte) {
		t.Helper()
		out, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatOFD, Document: doc, Name: "notice.ofd", Certificate: pemOf(off.cert), Position: &pos})
		if st != 200 {
			t.Fatalf("seal: %d", st)
		}
		found, err := ofd.Signatures(out.Document)
		if err != nil || len(found) != 1 || len(found[0].BadReferences) != 0 {
			t.Fatalf("signatures %v %+v", err, found)
		}
		mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: out.Document}))
		return found[0], out.Document
	}
	changed := func(t *testing.T, doc []byte, file string) {
		t.Helper()
		bad := rewrite(t, doc, file, func(b []byte) []byte { return bytes.Replace(b, []byte("正文"), []byte("正本"), 1) })
		if bytes.Equal(bad, doc) {
			t.Fatal("the rewrite changed nothing")
		}
		if rep := tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: bad}); rep.Valid || !has(rep, ReasonDigestMismatch) {
			t.Fatalf("changed %s: valid=%v reasons %v", file, rep.Valid, rep.Reasons())
		}
	}

	t.Run("keyword", func(t *testing.T) {
		line := ofdtest.Text{Page: 1, OX: 110, OY: 250, X: 0, Y: 5, Size: 5, Advance: 5, Text: "正文签发机关（盖章）"}
		doc := ofdtest.DocumentText(2, ofdtest.Text{Page: 0, OX: 20, OY: 20, Y: 5, Size: 5, Advance: 5, Text: "正文"}, line)
		f, sealedDoc := sealed(t, doc, Position{Keyword: "（盖章）"})
		// The keyword's centre: glyphs 6-9 of the line, 0.38 em above
		// the baseline.
		cx := line.OX + line.X + 6*line.Advance + 2*line.Advance
		cy := line.OY + line.Y - 0.38*line.Size
		if len(f.Stamps) != 1 {
			t.Fatalf("stamps %+v", f.Stamps)
		}
		b := f.Stamps[0].Boundary
		if f.Stamps[0].PageRef != "11" || !near(b.W, picture) || !near(b.X+b.W/2, cx) || !near(b.Y+b.H/2, cy) {
			t.Fatalf("stamp %+v, keyword centre %g,%g", f.Stamps[0], cx, cy)
		}
		changed(t, sealedDoc, "Doc_0/Pages/Page_0/Content.xml")
	})

	t.Run("riding", func(t *testing.T) {
		doc := ofdtest.Document("通知正文", 3)
		f, sealedDoc := sealed(t, doc, Position{Riding: true})
		if len(f.Stamps) != 3 {
			t.Fatalf("stamps %+v", f.Stamps)
		}
		sum := 0.0
		for i, s := range f.Stamps {
			c := s.Clip
			if c == nil || s.PageRef != []string{"10", "11", "12"}[i] || !near(s.Boundary.X+c.X+c.W, 210) ||
				!near(s.Boundary.Y, (297-picture)/2) || !near(c.X, sum) {
				t.Fatalf("stamp %d %+v clip %+v", i, s, c)
			}
			sum += c.W
		}
		if !near(sum, picture) {
			t.Fatalf("slices sum to %g mm, want %g", sum, picture)
		}
		for _, p := range []string{"Doc_0/Pages/Page_0/Content.xml", "Doc_0/Pages/Page_1/Content.xml", "Doc_0/Pages/Page_2/Content.xml"} {
			changed(t, sealedDoc, p)
		}
		// The slices themselves are signed: moving one breaks the seal.
		moved := rewrite(t, sealedDoc, "Doc_0/Signs/Sign_0/Signature.xml", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`Clip="0 `), []byte(`Clip="1 `), 1)
		})
		if rep := tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: moved}); rep.Valid {
			t.Fatal("a moved slice still verifies")
		}
	})

	t.Run("riding PDF", func(t *testing.T) {
		// An ECDSA official, so that pdfsig checks the result too.
		ecOff := tn.ecdsaOfficial("张三 (ECDSA)")
		ecRec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "contract", Generate: true,
			ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(ecOff.cert)}}})
		var s []agent.Shown
		ecAg := startAgent(t, ecOff.key, ecOff.cert, &s)
		doc := pdftest.Pages("contract page one", "contract page two", "contract page three")
		out, st := tn.sealVia(ecAg, zhangTok, ecRec.ID, PrepareRequest{Format: FormatPDF, Document: doc, Name: "contract.pdf",
			Certificate: pemOf(ecOff.cert), Position: &Position{Riding: true}})
		if st != 200 {
			t.Fatalf("seal: %d", st)
		}
		mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: out.Document}))
		// One widget per page, each at the right edge (595 pt), the
		// slices summing to the picture's width.
		sum := 0.0
		for i, r := range pdfWidgetRects(t, out.Document) {
			if len(r) != 1 || !near(r[0][2], 595) || !near(r[0][1]+r[0][3], 842) {
				t.Fatalf("page %d: widgets %v", i+1, r)
			}
			sum += r[0][2] - r[0][0]
		}
		if !near(sum, picture*72/25.4) {
			t.Fatalf("slices sum to %g pt, want %g", sum, picture*72/25.4)
		}
		pdfsigValid(t, out.Document)
		for _, text := range []string{"page one", "page two", "page three"} {
			bad := bytes.Clone(out.Document)
			bad[bytes.Index(bad, []byte(text))] ^= 0x20
			if rep := tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: bad}); rep.Valid || !has(rep, ReasonDigestMismatch) {
				t.Fatalf("changed %q: valid=%v reasons %v", text, rep.Valid, rep.Reasons())
			}
		}
	})

	t.Run("keyword PDF", func(t *testing.T) {
		// "（盖章）" on page 2 in a Type0 font (Identity-H, ToUnicode),
		// 20 pt at (100, 200) pt after 正文: its box is x 140-200 pt,
		// y 200-220 pt, so the seal is centred on (170, 210) pt.
		doc := pdftest.TextPages("BT /F1 12 Tf 72 700 Td (page one) Tj ET",
			"BT /F2 20 Tf 100 200 Td "+pdftest.CJK("正文（盖章）")+" Tj ET")
		out, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatPDF, Document: doc, Name: "notice.pdf",
			Certificate: pemOf(off.cert), Position: &Position{Keyword: "（盖章）"}})
		if st != 200 {
			t.Fatalf("seal: %d", st)
		}
		mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: out.Document}))
		rs := pdfWidgetRects(t, out.Document)
		if len(rs) != 2 || len(rs[0]) != 0 || len(rs[1]) != 1 {
			t.Fatalf("widgets %v", rs)
		}
		r := rs[1][0]
		if !near((r[0]+r[2])/2, 170) || !near((r[1]+r[3])/2, 210) || !near(r[2]-r[0], picture*72/25.4) {
			t.Fatalf("widget %v, want centred on 170,210 pt", r)
		}
		bad := bytes.Clone(out.Document)
		bad[bytes.Index(bad, []byte("page one"))] ^= 0x20
		if rep := tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: bad}); rep.Valid || !has(rep, ReasonDigestMismatch) {
			t.Fatalf("changed: valid=%v reasons %v", rep.Valid, rep.Reasons())
		}
		for name, pos := range map[string]Position{
			"absent":            {Keyword: "日期"},
			"occurrence beyond": {Keyword: "（盖章）", Occurrence: 2},
			"with riding":       {Keyword: "（盖章）", Riding: true},
		} {
			t.Run(name, func(t *testing.T) {
				req := PrepareRequest{Format: FormatPDF, Document: doc, Name: "notice.pdf", Certificate: pemOf(off.cert), Position: &pos}
				if st := tn.call("POST", "/api/v1/seals/"+rec.ID+"/prepare", zhangTok, req, nil); st != 400 {
					t.Fatalf("%d, want 400", st)
				}
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		y := 10.0
		doc := ofdtest.Document("通知正文", 2)
		for name, req := range map[string]PrepareRequest{
			"keyword absent":           {Format: FormatOFD, Position: &Position{Keyword: "（盖章）"}},
			"occurrence beyond":        {Format: FormatOFD, Position: &Position{Keyword: "正文", Occurrence: 3}},
			"keyword and riding":       {Format: FormatOFD, Position: &Position{Keyword: "正文", Riding: true}},
			"keyword with page":        {Format: FormatOFD, Position: &Position{Keyword: "正文", Page: 1}},
			"keyword with y":           {Format: FormatOFD, Position: &Position{Keyword: "正文", Y: &y}},
			"occurrence alone":         {Format: FormatOFD, Position: &Position{Occurrence: 2}},
			"keyword in a detached":    {Format: FormatSES, Position: &Position{Keyword: "正文"}},
			"riding a detached seal":   {Format: FormatSES, Position: &Position{Riding: true}},
			"position and page":        {Format: FormatOFD, Page: 1, Position: &Position{Riding: true}},
			"page beyond the document": {Format: FormatOFD, Position: &Position{Page: 3}},
		} {
			t.Run(name, func(t *testing.T) {
				req.Document, req.Name, req.Certificate = doc, "notice.ofd", pemOf(off.cert)
				if st := tn.call("POST", "/api/v1/seals/"+rec.ID+"/prepare", zhangTok, req, nil); st != 400 {
					t.Fatalf("%d, want 400", st)
				}
			})
		}
	})
}

// ecOfficial is an official with an ECDSA P-256 key in memory and a
// certificate from the node's ECDSA CA, so that pdfsig can check PDFs.
type ecOfficial struct {
	key  *ecdsa.PrivateKey
	cert []byte
}

func (tn *testNode) ecdsaOfficial(cn string) *ecOfficial {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tn.t.Fatal(err)
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		tn.t.Fatal(err)
	}
	cert, _, err := tn.ca.IssueFor(context.Background(), "ecdsa-issuing", "person-sign", csr,
		map[string]string{"CN": cn, "O": "demo", "id-card": "11010519491231002X"}, "test")
	if err != nil {
		tn.t.Fatal(err)
	}
	return &ecOfficial{key: k, cert: cert}
}

// pdfWidgetRects returns, page by page, the /Rect of each widget
// annotation of doc.
func pdfWidgetRects(t *testing.T, doc []byte) [][][4]float64 {
	t.Helper()
	api.DisableConfigDir() // pdfcpu would create ~/.config/pdfcpu
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	ctx, err := api.ReadContext(bytes.NewReader(doc), conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.EnsurePageCount(); err != nil {
		t.Fatal(err)
	}
	out := make([][][4]float64, ctx.PageCount)
	for i := range ctx.PageCount {
		d, _, _, err := ctx.PageDict(i+1, false)
		if err != nil {
			t.Fatal(err)
		}
		annots, _ := ctx.DereferenceArray(d["Annots"])
		for _, a := range annots {
			w, err := ctx.DereferenceDict(a)
			if err != nil || w == nil {
				continue
			}
			if st := w.NameEntry("Subtype"); st == nil || *st != "Widget" {
				continue
			}
			r, err := ctx.DereferenceArray(w["Rect"])
			if err != nil || len(r) != 4 {
				t.Fatalf("page %d: rect %v %v", i+1, w["Rect"], err)
			}
			var v [4]float64
			for j, o := range r {
				if v[j], err = ctx.DereferenceNumber(o); err != nil {
					t.Fatal(err)
				}
			}
			out[i] = append(out[i], v)
		}
	}
	return out
}

// pdfsigValid has poppler check doc's signatures.
func pdfsigValid(t *testing.T, doc []byte) {
	t.Helper()
	bin := testenv.LookPath(t, "pdfsig")
	f := filepath.Join(t.TempDir(), "sealed.pdf")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := exec.Command(bin, "-nocert", f).CombinedOutput()
	t.Logf("pdfsig -nocert:\n%s", o)
	if err != nil || !strings.Contains(string(o), "Signature is Valid") || !strings.Contains(string(o), "Total document signed") ||
		strings.Contains(string(o), "not signed") {
		t.Fatalf("pdfsig: %v", err)
	}
}
