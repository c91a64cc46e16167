package seal

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
	"github.com/govtrust/govtrust/signature/seal/agent"
)

// TestSealPositions seals OFD documents by keyword and as a riding seal
// through the API and the agent; the results verify, and one changed
// byte of any page fails with the document-digest reason.
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
			"riding a PDF":             {Format: FormatPDF, Position: &Position{Riding: true}},
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
