package seal

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/signature/pdf/pdftest"
	"github.com/govtrust/govtrust/signature/seal/agent"
)

// TestSealPDF: an official's SM2 key on the software token seals a PDF
// through the agent, and an ECDSA official seals one that pdfsig checks;
// both verify through the API; one changed byte fails with the
// document-digest reason.
func TestSealPDF(t *testing.T) {
	tn := startNode(t)
	tok := newToken(t)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	sm2Cert := tn.issue(tok.signer, "张三")
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "张三 (ECDSA)"}}, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecCert, _, err := tn.ca.IssueFor(context.Background(), "ecdsa-issuing", "person-sign", csr,
		map[string]string{"CN": "张三 (ECDSA)", "O": "demo", "id-card": "11010519491231002X"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "contract", Generate: true,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0),
		Holders: []Holder{{Account: "zhang", Certificate: pemOf(sm2Cert)}, {Account: "zhang", Certificate: pemOf(ecCert)}}})
	doc := pdftest.OnePage("contract text to be sealed")

	for name, c := range map[string]struct {
		ag   func() *agent.Client
		cert []byte
	}{
		"sm2 token": {func() *agent.Client { var s []agent.Shown; return startAgent(t, tok.signer, sm2Cert, &s) }, sm2Cert},
		"ecdsa":     {func() *agent.Client { var s []agent.Shown; return startAgent(t, ecKey, ecCert, &s) }, ecCert},
	} {
		t.Run(name, func(t *testing.T) {
			out, st := tn.sealVia(c.ag(), zhangTok, rec.ID, PrepareRequest{Format: FormatPDF, Document: doc, Name: "contract.pdf",
				Certificate: pemOf(c.cert), Page: 1, X: 120, Y: 40})
			if st != 200 {
				t.Fatalf("seal: %d", st)
			}
			if !out.Timestamped || !bytes.HasPrefix(out.Document, doc) {
				t.Fatalf("timestamped %v, incremental %v", out.Timestamped, bytes.HasPrefix(out.Document, doc))
			}
			rep := tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: out.Document})
			mustValid(t, rep)
			if s := rep.Seals[0]; s.SealID != rec.ID || s.SigningTimeEvidence.Source == "verification-time" {
				t.Fatalf("seal %s, signing time from %s", s.SealID, s.SigningTimeEvidence.Source)
			}
			t.Logf("%s", rep.Summary)
			bad := bytes.Clone(out.Document)
			bad[bytes.Index(bad, []byte("contract text"))] ^= 0x20
			rep = tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: bad})
			if rep.Valid || !has(rep, ReasonDigestMismatch) {
				t.Fatalf("one changed byte: valid %v, reasons %v", rep.Valid, rep.Reasons())
			}
			appended := append(bytes.Clone(out.Document), "% appended\n"...)
			rep = tn.verify(zhangTok, VerifyRequest{Format: FormatPDF, Document: appended})
			if rep.Valid || !has(rep, ReasonAppended) {
				t.Fatalf("appended bytes: valid %v, reasons %v", rep.Valid, rep.Reasons())
			}
			if name == "ecdsa" {
				bin := testenv.LookPath(t, "pdfsig")
				f := filepath.Join(t.TempDir(), "sealed.pdf")
				if err := os.WriteFile(f, out.Document, 0o644); err != nil {
					t.Fatal(err)
				}
				o, err := exec.Command(bin, "-nocert", f).CombinedOutput()
				t.Logf("pdfsig -nocert:\n%s", o)
				if err != nil || !strings.Contains(string(o), "Signature is Valid") || !strings.Contains(string(o), "Total document signed") {
					t.Fatalf("pdfsig: %v", err)
				}
			}
		})
	}
	// A detached seal by the ECDSA official: the agent checks the hash it
	// shows against the dataHash, which is SHA-256 for an ECDSA signer.
	t.Run("ecdsa detached", func(t *testing.T) {
		var shown []agent.Shown
		ag := startAgent(t, ecKey, ecCert, &shown)
		doc := []byte("detached document sealed by an ECDSA official")
		out, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatSES, Document: doc, Name: "note.txt", Certificate: pemOf(ecCert)})
		if st != 200 {
			t.Fatalf("seal: %d", st)
		}
		sum := sha256.Sum256(doc)
		if len(shown) != 1 || shown[0].DocumentHash != hex.EncodeToString(sum[:]) {
			t.Fatalf("the agent showed %+v, want the SHA-256 of the document", shown)
		}
		mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatSES, Document: doc, Signature: out.Document}))
	})
	t.Run("not a PDF", func(t *testing.T) {
		var p Prepared
		if st := tn.call("POST", "/api/v1/seals/"+rec.ID+"/prepare", zhangTok, PrepareRequest{Format: FormatPDF, Document: []byte("not a pdf"),
			Name: "x.pdf", Certificate: pemOf(sm2Cert)}, &p); st != 400 {
			t.Fatalf("prepare: %d, want 400", st)
		}
	})
}
