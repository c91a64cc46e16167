package seal

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
	"github.com/govtrust/govtrust/signature/seal/agent"
	"github.com/govtrust/govtrust/signature/ses"
	"github.com/govtrust/govtrust/tsa"
)

func sm3sum(b []byte) []byte { return ses.SM3(b) }

// TestSealLifecycle runs the issue end to end on one node: dual-controlled
// making (H-01), who may use a seal (H-04), sealing a file and an OFD with
// the official's key on the SM2 software token through the agent, and
// verification with its reasons (H-02).
func TestSealLifecycle(t *testing.T) {
	tn := startNode(t)
	tok := newToken(t)
	admin1, admin1Tok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, admin2Tok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	_, liTok := tn.account("li", policy.RoleOfficial)
	zhangCert := tn.issue(tok.signer, "张三")
	now := time.Now().UTC()
	req := ApplyRequest{Name: "福州市数据管理局", Kind: "contract", Generate: true, ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0),
		Holders: []Holder{{Account: "zhang", Certificate: pemOf(zhangCert)}}}

	var app Application
	t.Run("dual control", func(t *testing.T) {
		if st := tn.call("POST", "/api/v1/seal-applications", admin1Tok, req, &app); st != 201 {
			t.Fatalf("apply: %d", st)
		}
		if app.Applicant != admin1 || app.Status != "pending" || app.PictureType != "PNG" || len(app.Picture) < 1000 {
			t.Fatalf("application %+v", app)
		}
		if st := tn.call("POST", "/api/v1/seal-applications/"+app.ID+"/make", admin1Tok, nil, nil); st != 403 {
			t.Fatalf("make before approval: %d, want 403", st)
		}
		if st := tn.call("POST", "/api/v1/seal-applications/"+app.ID+"/approve", admin1Tok, nil, nil); st != 403 {
			t.Fatalf("self-approval: %d, want 403", st)
		}
		if st := tn.call("POST", "/api/v1/seal-applications/"+app.ID+"/approve", zhangTok, nil, nil); st != 403 {
			t.Fatalf("approval by an official: %d, want 403", st)
		}
		if st := tn.call("POST", "/api/v1/seal-applications/"+app.ID+"/approve", admin2Tok, ApproveRequest{Comment: "checked"}, nil); st != 200 {
			t.Fatalf("approve: %d", st)
		}
	})
	var rec Record
	t.Run("H-01 make", func(t *testing.T) {
		if st := tn.call("POST", "/api/v1/seal-applications/"+app.ID+"/make", admin1Tok, nil, &rec); st != 201 {
			t.Fatalf("make: %d", st)
		}
		if st := tn.call("POST", "/api/v1/seal-applications/"+app.ID+"/make", admin1Tok, nil, nil); st < 400 {
			t.Fatalf("second make: %d", st)
		}
		s, err := ses.ParseSeal(rec.DER)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.VerifyMaker(); err != nil {
			t.Fatalf("maker signature: %v", err)
		}
		p := s.Info.Property
		if s.Format != ses.V4 || s.Info.ESID != app.ESID || p.Name != "福州市数据管理局" || p.Type != 3 || len(p.Certs) != 1 ||
			!p.ValidStart.Equal(req.ValidFrom.Truncate(time.Second)) || !p.ValidEnd.Equal(req.ValidTo.Truncate(time.Second)) ||
			s.Info.Picture.Type != "PNG" || !bytes.Equal(s.Info.Picture.Data, app.Picture) || s.Info.Picture.Width != 42 {
			t.Fatalf("seal %+v", s.Info)
		}
		mk, _ := s.MakerCertificate()
		if mk.Subject.CommonName != "govtrust seal maker" {
			t.Fatalf("maker %s", mk.Subject)
		}
		var st Status
		resp, err := tn.c.Get("http://" + tn.n.Addresses().HTTP + "/seals/" + rec.ID + "/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("public status: %d", resp.StatusCode)
		}
		_ = st
	})

	var shown []agent.Shown
	ag := startAgent(t, tok.signer, zhangCert, &shown)
	doc := bytes.Repeat([]byte("合同正文 contract text\n"), 100)

	t.Run("H-04 who may use a seal", func(t *testing.T) {
		if _, st := tn.sealVia(ag, liTok, rec.ID, PrepareRequest{Format: FormatSES, Document: doc, Name: "contract.txt", Certificate: pemOf(zhangCert)}); st != 403 {
			t.Fatalf("an official not bound to the seal: %d, want 403", st)
		}
		if _, st := tn.sealVia(ag, admin1Tok, rec.ID, PrepareRequest{Format: FormatSES, Document: doc, Name: "contract.txt", Certificate: pemOf(zhangCert)}); st != 403 {
			t.Fatalf("a seal administrator: %d, want 403", st)
		}
		other := tn.softOfficial("王五")
		if _, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatSES, Document: doc, Name: "contract.txt", Certificate: pemOf(other.cert)}); st != 403 {
			t.Fatalf("a certificate the seal does not list: %d, want 403", st)
		}
		if _, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatSES, Document: []byte{}, Name: "empty", Certificate: pemOf(zhangCert)}); st != 400 {
			t.Fatalf("0-byte document: %d, want 400", st)
		}
	})

	var detached *Sealed
	t.Run("H-02 detached seal", func(t *testing.T) {
		var st int
		detached, st = tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatSES, Document: doc, Name: "contract.txt", Certificate: pemOf(zhangCert)})
		if st != 200 {
			t.Fatalf("seal: %d", st)
		}
		if !detached.Timestamped {
			t.Error("not time-stamped")
		}
		if len(shown) != 1 || shown[0].SealName != "福州市数据管理局" || shown[0].DocumentHash != sm3hex(doc) || shown[0].Document != "contract.txt" {
			t.Fatalf("the agent showed %+v", shown)
		}
		rep := tn.verify(liTok, VerifyRequest{Format: FormatSES, Document: doc, Signature: detached.Document})
		mustValid(t, rep)
		if rep.Seals[0].SigningTimeEvidence.Source != "signature-time-stamp" {
			t.Errorf("signing time from %s", rep.Seals[0].SigningTimeEvidence.Source)
		}
		// Independent check: the SES_Signature over its TBS with the
		// signer's key, and SM3 of the document = dataHash.
		sig, err := ses.ParseSignature(detached.Document)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sig.Verify(); err != nil || !bytes.Equal(sig.TBS.DataHash, ses.SM3(doc)) {
			t.Fatalf("independent check: %v", err)
		}
		bad := bytes.Clone(doc)
		bad[7] ^= 1
		rep = tn.verify(liTok, VerifyRequest{Format: FormatSES, Document: bad, Signature: detached.Document})
		if rep.Valid || !has(rep, ReasonDigestMismatch) {
			t.Fatalf("changed byte: valid=%v reasons %v", rep.Valid, rep.Reasons())
		}
		// Hash-only mode.
		p, st2 := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatSES, Digest: ses.SM3(doc), Name: "big.iso", Certificate: pemOf(zhangCert)})
		if st2 != 200 {
			t.Fatalf("hash-only: %d", st2)
		}
		mustValid(t, tn.verify(liTok, VerifyRequest{Format: FormatSES, Digest: ses.SM3(doc), Signature: p.Document}))
	})

	t.Run("OFD", func(t *testing.T) {
		in := ofdtest.Document("通知正文", 2)
		out, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatOFD, Document: in, Name: "notice.ofd", Certificate: pemOf(zhangCert), Page: 2, X: 120, Y: 200})
		if st != 200 {
			t.Fatalf("seal: %d", st)
		}
		found, err := ofd.Signatures(out.Document)
		if err != nil || len(found) != 1 || found[0].Path != "/Doc_0/Signs/Sign_0/Signature.xml" || len(found[0].BadReferences) != 0 ||
			found[0].References < 4 || len(found[0].StampPages) != 1 || found[0].StampPages[0] != "11" {
			t.Fatalf("signatures %v %+v", err, found)
		}
		// The agent showed the files the signed Signature.xml protects.
		if sh := shown[len(shown)-1]; sh.Format != FormatOFD || sh.Property != found[0].Path || len(sh.References) != found[0].References ||
			sh.DocumentHash != sm3hex(found[0].SignatureXML) {
			t.Fatalf("the agent showed %+v", sh)
		}
		mustValid(t, tn.verify(liTok, VerifyRequest{Format: FormatOFD, Document: out.Document}))
		// A second seal appended to the same document.
		out2, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatOFD, Document: out.Document, Name: "notice.ofd", Certificate: pemOf(zhangCert), Page: 1, X: 20, Y: 200})
		if st != 200 {
			t.Fatalf("second seal: %d", st)
		}
		rep := tn.verify(liTok, VerifyRequest{Format: FormatOFD, Document: out2.Document})
		mustValid(t, rep)
		if len(rep.Seals) != 2 {
			t.Fatalf("%d seals", len(rep.Seals))
		}
		// One changed byte of a page.
		bad := rewrite(t, out.Document, "Doc_0/Pages/Page_0/Content.xml", func(b []byte) []byte { return bytes.Replace(b, []byte("通知"), []byte("通告"), 1) })
		rep = tn.verify(liTok, VerifyRequest{Format: FormatOFD, Document: bad})
		if rep.Valid || !has(rep, ReasonDigestMismatch) {
			t.Fatalf("changed page: valid=%v reasons %v", rep.Valid, rep.Reasons())
		}
	})

	t.Run("usage log and audit", func(t *testing.T) {
		var u []Usage
		if st := tn.call("GET", "/api/v1/seals/"+rec.ID+"/usage", admin1Tok, nil, &u); st != 200 {
			t.Fatalf("usage: %d", st)
		}
		if len(u) != 4 || u[0].Actor != "account/zhang" || u[0].DocHash != sm3hex(doc) || u[0].Document != "contract.txt" || !u[0].Timestamped {
			t.Fatalf("usage %+v", u)
		}
		if st := tn.call("GET", "/api/v1/seals/"+rec.ID+"/usage", zhangTok, nil, nil); st != 403 {
			t.Fatalf("usage read by an official: %d, want 403", st)
		}
		var buf bytes.Buffer
		if _, err := audit.Export(context.Background(), tn.n.Env().DB, 0, &buf); err != nil {
			t.Fatal(err)
		}
		var ok, refused int
		for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
			var r struct {
				Action, Object, Outcome string
				Details                 map[string]any
			}
			if json.Unmarshal(line, &r) != nil || r.Object != "seal/"+rec.ID || r.Action != "seal.use" {
				continue
			}
			switch r.Outcome {
			case audit.Success:
				if r.Details["usage"] != nil && r.Details["sm3"] != nil && r.Details["signer"] != nil {
					ok++
				}
			case audit.Failure:
				refused++
			}
		}
		if ok != 4 || refused < 2 {
			t.Fatalf("audit: %d uses, %d refusals", ok, refused)
		}
	})

	t.Run("reasons", func(t *testing.T) {
		ctx := context.Background()
		soft := tn.softOfficial("赵六")
		// A second seal for the in-memory official, to break in each way.
		r2 := tn.makeSeal(admin1Tok, admin2Tok, ApplyRequest{Name: "福州市财政局", Kind: "finance", Generate: true,
			ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(soft.cert)}}})
		data := []byte("payment order")
		local := func(sealDER []byte, at time.Time, signer *softOfficial) []byte {
			t.Helper()
			sig, err := ses.Sign(ses.NewTBS(sealDER, at, ses.SM3(data), "file:order"), signer.cert, signer.key)
			if err != nil {
				t.Fatal(err)
			}
			return sig.Raw
		}
		verify := func(sig []byte) *Report {
			return tn.svc.Verify(ctx, VerifyRequest{Format: FormatSES, Document: data, Signature: sig})
		}
		mustValid(t, verify(local(r2.DER, now, soft)))

		t.Run("signer not listed", func(t *testing.T) {
			rep := verify(local(r2.DER, now, tn.softOfficial("钱七")))
			if rep.Valid || !has(rep, ReasonSignerNotListed) {
				t.Fatalf("reasons %v", rep.Reasons())
			}
		})
		t.Run("bad maker signature", func(t *testing.T) {
			s, _ := ses.ParseSeal(r2.DER)
			s.SignedValue = bytes.Clone(s.SignedValue)
			s.SignedValue[len(s.SignedValue)-1] ^= 1
			der, _ := s.Marshal()
			rep := verify(local(der, now, soft))
			if rep.Valid || !has(rep, ReasonBadMaker) || has(rep, ReasonPictureTampered) {
				t.Fatalf("reasons %v", rep.Reasons())
			}
		})
		t.Run("tampered picture", func(t *testing.T) {
			s, _ := ses.ParseSeal(r2.DER)
			s.Info.Picture.Data = bytes.Clone(s.Info.Picture.Data)
			s.Info.Picture.Data[100] ^= 0xff
			s.RawInfo = nil
			der, _ := s.Marshal()
			rep := verify(local(der, now, soft))
			if rep.Valid || !has(rep, ReasonPictureTampered) {
				t.Fatalf("reasons %v", rep.Reasons())
			}
		})
		t.Run("missing timestamp", func(t *testing.T) {
			tn.svc.cfg.RequireTimestamp = true
			defer func() { tn.svc.cfg.RequireTimestamp = false }()
			rep := verify(local(r2.DER, now, soft))
			if rep.Valid || !has(rep, ReasonNoTimestamp) {
				t.Fatalf("reasons %v", rep.Reasons())
			}
			mustValid(t, tn.verify(liTok, VerifyRequest{Format: FormatSES, Document: doc, Signature: detached.Document}))
		})
		t.Run("expired seal", func(t *testing.T) {
			r3 := tn.makeSeal(admin1Tok, admin2Tok, ApplyRequest{Name: "旧印章", Kind: "official", Generate: true,
				ValidFrom: now.AddDate(-2, 0, 0), ValidTo: now.AddDate(-1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(soft.cert)}}})
			if r3.Status != StatusExpired {
				t.Errorf("registry status %s", r3.Status)
			}
			if _, st := tn.sealVia(ag, zhangTok, r3.ID, PrepareRequest{Format: FormatSES, Document: data, Name: "x", Certificate: pemOf(soft.cert)}); st != 403 {
				t.Fatalf("sealing with an expired seal: %d", st)
			}
			rep := verify(local(r3.DER, now, soft))
			if rep.Valid || !has(rep, ReasonSealExpired) {
				t.Fatalf("reasons %v", rep.Reasons())
			}
		})
		t.Run("suspended then revoked", func(t *testing.T) {
			before := local(r2.DER, now, soft)
			if st := tn.call("POST", "/api/v1/seals/"+r2.ID+"/status", admin1Tok, StatusRequest{Status: StatusSuspended, Reason: "lost"}, nil); st != 200 {
				t.Fatalf("suspend: %d", st)
			}
			if _, st := tn.sealVia(ag, zhangTok, r2.ID, PrepareRequest{Format: FormatSES, Document: data, Name: "x", Certificate: pemOf(soft.cert)}); st != 403 {
				t.Fatalf("sealing with a suspended seal: %d", st)
			}
			time.Sleep(10 * time.Millisecond) // status times are ordered by the clock
			rep := verify(local(r2.DER, time.Now(), soft))
			if rep.Valid || !has(rep, ReasonSealSuspended) {
				t.Fatalf("suspended: reasons %v\n%s", rep.Reasons(), rep.Summary)
			}
			if st := tn.call("POST", "/api/v1/seals/"+r2.ID+"/status", admin1Tok, StatusRequest{Status: StatusRevoked, Reason: "department merged"}, nil); st != 200 {
				t.Fatalf("revoke: %d", st)
			}
			if st := tn.call("POST", "/api/v1/seals/"+r2.ID+"/status", admin1Tok, StatusRequest{Status: StatusActive}, nil); st != 409 {
				t.Fatalf("resume a revoked seal: %d, want 409", st)
			}
			rep = verify(local(r2.DER, time.Now(), soft))
			if rep.Valid || !has(rep, ReasonSealRevoked) {
				t.Fatalf("revoked: reasons %v", rep.Reasons())
			}
			// Without a time-stamp the signing time is the verification
			// time, after the revocation: the earlier signature fails too.
			if rep := verify(before); rep.Valid {
				t.Fatal("an untimestamped signature of a revoked seal verified")
			}
			// A time-stamped use before the suspension stays valid.
			mustValid(t, tn.verify(liTok, VerifyRequest{Format: FormatSES, Document: doc, Signature: detached.Document}))
		})
	})
}

func TestApplyValidation(t *testing.T) {
	ok := ApplyRequest{Name: "x", Kind: "official", Generate: true, ValidFrom: time.Now(), ValidTo: time.Now().Add(time.Hour), Holders: []Holder{{}}}
	for name, mut := range map[string]func(r *ApplyRequest){
		"no name":      func(r *ApplyRequest) { r.Name = " " },
		"bad kind":     func(r *ApplyRequest) { r.Kind = "secret" },
		"two pictures": func(r *ApplyRequest) { r.Picture = []byte("x"); r.PictureType = "PNG" },
		"no picture":   func(r *ApplyRequest) { r.Generate = false },
		"validity":     func(r *ApplyRequest) { r.ValidTo = r.ValidFrom },
		"no holders":   func(r *ApplyRequest) { r.Holders = nil },
	} {
		t.Run(name, func(t *testing.T) {
			r := ok
			mut(&r)
			if err := r.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	_ = errors.New
}

// TestCompleteRechecksSeal: a sealing prepared while the seal could be
// used does not complete once it cannot (ACCEPTANCE.md H-04): the seal
// suspended or revoked, past its validity, or the official unbound from it
// while the USB key signed, within the session's 5 minutes. The refusal is
// a 403 problem+json and nothing is logged as a use.
func TestCompleteRechecksSeal(t *testing.T) {
	clk := clock.NewFake(time.Now())
	tn := startNodeFull(t, t.TempDir(), "", clk, func(c *ca.Service, ts *tsa.Service) *Service { return New(c, c, ts) })
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	zhang := tn.softOfficial("张三")
	doc := []byte("合同正文")
	// prepared makes a seal, valid for validity from now, prepares a
	// sealing with it and has zhang's key sign it; complete completes it.
	type session struct {
		rec *Record
		id  string
		sig []byte
	}
	prepared := func(validity time.Duration) session {
		t.Helper()
		now := clk.Now()
		rec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "contract", Generate: true,
			ValidFrom: now.Add(-time.Hour), ValidTo: now.Add(validity), Holders: []Holder{{Account: "zhang", Certificate: pemOf(zhang.cert)}}})
		var p Prepared
		if st := tn.call("POST", "/api/v1/seals/"+rec.ID+"/prepare", zhangTok, PrepareRequest{Format: FormatSES, Document: doc, Name: "contract.txt",
			Certificate: pemOf(zhang.cert)}, &p); st != 200 {
			t.Fatalf("prepare: %d", st)
		}
		sig, _, err := ses.SignMessage(zhang.key, p.ToBeSigned)
		if err != nil {
			t.Fatal(err)
		}
		return session{rec: rec, id: p.Session, sig: sig}
	}
	complete := func(s session) int {
		t.Helper()
		st, raw, ct := tn.send("POST", "/api/v1/seal-sessions/"+s.id+"/complete", zhangTok, CompleteRequest{Signature: s.sig})
		if st != 200 && ct != "application/problem+json" {
			t.Errorf("complete: %d %s %s", st, ct, raw)
		}
		return st
	}
	uses := func(rec *Record) int {
		t.Helper()
		u, err := tn.svc.UsageLog(context.Background(), rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(u)
	}

	ok := prepared(365 * 24 * time.Hour)
	if st := complete(ok); st != 200 || uses(ok.rec) != 1 {
		t.Fatalf("unchanged seal: %d, %d uses", st, uses(ok.rec))
	}
	for _, c := range []struct {
		name   string
		change func(rec *Record)
	}{
		{"suspended", func(rec *Record) {
			if st := tn.call("POST", "/api/v1/seals/"+rec.ID+"/status", adminTok, StatusRequest{Status: StatusSuspended, Reason: "lost"}, nil); st != 200 {
				t.Fatalf("suspend: %d", st)
			}
		}},
		{"revoked", func(rec *Record) {
			if st := tn.call("POST", "/api/v1/seals/"+rec.ID+"/status", adminTok, StatusRequest{Status: StatusRevoked, Reason: "merged"}, nil); st != 200 {
				t.Fatalf("revoke: %d", st)
			}
		}},
		{"ended", func(rec *Record) { clk.Add(2 * time.Minute) }},
		{"holder unbound", func(rec *Record) {
			// No API unbinds a holder yet: the registry row is changed as
			// one would change it.
			if _, err := tn.n.Env().DB.Exec(context.Background(), `UPDATE seals SET holders = '[]' WHERE id = ?`, rec.ID); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := prepared(time.Minute)
			c.change(s.rec)
			if st := complete(s); st != 403 {
				t.Fatalf("complete: %d, want 403", st)
			}
			if n := uses(s.rec); n != 0 {
				t.Fatalf("%d uses logged", n)
			}
		})
	}
}

// repack returns the zip data with files replaced or added.
func repack(t testing.TB, data []byte, files map[string][]byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	put := func(name string, b []byte) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	for _, f := range zr.File {
		b, ok := files[f.Name]
		if !ok {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(rc)
			rc.Close()
		}
		delete(files, f.Name)
		put(f.Name, b)
	}
	for name, b := range files {
		put(name, b)
	}
	zw.Close()
	return buf.Bytes()
}

// ofdSealedBy seals doc with the seal sealDER as the platform lays the
// signature out (package ofd's Prepare), with edit (when not nil) changing
// Signature.xml before the signer signs it, and extra files added.
func ofdSealedBy(t testing.TB, doc, sealDER, cert []byte, signer crypto.Signer, edit func([]byte) []byte, extra map[string][]byte) []byte {
	t.Helper()
	now := time.Now().UTC()
	pr, err := ofd.Prepare(doc, now, "1.2.156.10197.1.501", ofd.Position{X: 20, Y: 20, Width: 40, Height: 40}, "govtrust")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pr.Finish([]byte("to be replaced"))
	if err != nil {
		t.Fatal(err)
	}
	sigXML := pr.SignatureXML
	if edit != nil {
		sigXML = edit(bytes.Clone(sigXML))
	}
	sig, err := ses.Sign(ses.NewTBS(sealDER, now, ses.SM3(sigXML), pr.Path), cert, signer)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{strings.TrimPrefix(pr.Path, "/"): sigXML, path.Join(path.Dir(strings.TrimPrefix(pr.Path, "/")), "SignedValue.dat"): sig.Raw}
	maps.Copy(files, extra)
	return repack(t, out, files)
}

// TestOFDSealFile: a seal file (Seal.esl) of an OFD signature, from which
// readers draw the seal picture, must be the SESeal the signature applies
// (GM-STANDARDS.md §6, verification step 2): one swapped for another
// seal's makes the seal invalid (seal-file-mismatch), whether SignedInfo's
// Seal/BaseLoc names it or it lies beside Signature.xml; a Seal/BaseLoc
// naming a missing file too. A matching one, and none (the platform
// writes none), verify.
func TestOFDSealFile(t *testing.T) {
	tn := startNode(t)
	tok := newToken(t)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	cert := tn.issue(tok.signer, "张三")
	now := time.Now().UTC()
	apply := func(name string) *Record {
		return tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: name, Kind: "contract", Generate: true,
			ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(cert)}}})
	}
	rec, other := apply("福州市数据管理局"), apply("福州市财政局")
	var shown []agent.Shown
	ag := startAgent(t, tok.signer, cert, &shown)
	sealed, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatOFD, Document: ofdtest.Document("通知正文", 1), Name: "notice.ofd",
		Certificate: pemOf(cert), Page: 1, X: 120, Y: 200})
	if st != 200 {
		t.Fatalf("seal: %d", st)
	}
	mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: sealed.Document}))
	const beside = "Doc_0/Signs/Sign_0/Seal.esl"
	invalid := func(t *testing.T, doc []byte) {
		t.Helper()
		rep := tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: doc})
		if rep.Valid || !has(rep, ReasonSealFileMismatch) {
			t.Fatalf("valid=%v reasons %v\n%s", rep.Valid, rep.Reasons(), rep.Summary)
		}
		t.Logf("%s", rep.Summary)
	}
	t.Run("platform-sealed, Seal.esl of another seal added", func(t *testing.T) {
		invalid(t, repack(t, sealed.Document, map[string][]byte{beside: other.DER}))
		mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: repack(t, sealed.Document, map[string][]byte{beside: rec.DER})}))
	})
	withSeal := func(loc string) func([]byte) []byte {
		return func(b []byte) []byte {
			return bytes.Replace(b, []byte("<ofd:StampAnnot"), []byte("<ofd:Seal><ofd:BaseLoc>"+loc+"</ofd:BaseLoc></ofd:Seal><ofd:StampAnnot"), 1)
		}
	}
	doc := ofdtest.Document("通知正文", 1)
	t.Run("Seal/BaseLoc names the seal", func(t *testing.T) {
		rep := tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: ofdSealedBy(t, doc, rec.DER, cert, tok.signer, withSeal("Seal.esl"), map[string][]byte{beside: rec.DER})})
		mustValid(t, rep)
		if !strings.Contains(rep.Summary, CheckSealFile) {
			t.Fatalf("no %s check:\n%s", CheckSealFile, rep.Summary)
		}
	})
	t.Run("Seal/BaseLoc names another seal", func(t *testing.T) {
		invalid(t, ofdSealedBy(t, doc, rec.DER, cert, tok.signer, withSeal("/Doc_0/Signs/Sign_0/Seal.esl"), map[string][]byte{beside: other.DER}))
	})
	t.Run("Seal/BaseLoc names a missing file", func(t *testing.T) {
		invalid(t, ofdSealedBy(t, doc, rec.DER, cert, tok.signer, withSeal("Seal.esl"), nil))
	})
}

// TestOFDReferencesRequired: an OFD signature must protect OFD.xml, the
// document root and every file of the package but the signature list and
// the signatures' own files: one whose Signature.xml references nothing,
// or leaves out OFD.xml, Document.xml or a page, is invalid
// (ofd-references-incomplete), as is a package with a file added after
// sealing; platform-sealed OFDs, with one seal or two, verify.
func TestOFDReferencesRequired(t *testing.T) {
	tn := startNode(t)
	tok := newToken(t)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	cert := tn.issue(tok.signer, "张三")
	now := time.Now().UTC()
	rec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "contract", Generate: true,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(cert)}}})
	var shown []agent.Shown
	ag := startAgent(t, tok.signer, cert, &shown)
	doc := ofdtest.Document("通知正文", 2)
	sealed, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatOFD, Document: doc, Name: "notice.ofd", Certificate: pemOf(cert), Page: 1, X: 120, Y: 200})
	if st != 200 {
		t.Fatalf("seal: %d", st)
	}
	mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: sealed.Document}))
	twice, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatOFD, Document: sealed.Document, Name: "notice.ofd", Certificate: pemOf(cert), Page: 2, X: 120, Y: 200})
	if st != 200 {
		t.Fatalf("second seal: %d", st)
	}
	if rep := tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: twice.Document}); !rep.Valid || len(rep.Seals) != 2 {
		t.Fatalf("two seals: valid=%v, %d seals\n%s", rep.Valid, len(rep.Seals), rep.Summary)
	}
	mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: ofdSealedBy(t, doc, rec.DER, cert, tok.signer, nil, nil)}))

	refs := regexp.MustCompile(`<ofd:Reference FileRef="([^"]+)">.*?</ofd:Reference>`)
	// without drops the References to files (all when none is named).
	without := func(files ...string) func([]byte) []byte {
		return func(b []byte) []byte {
			return refs.ReplaceAllFunc(b, func(m []byte) []byte {
				if len(files) == 0 || slices.Contains(files, string(refs.FindSubmatch(m)[1])) {
					return nil
				}
				return m
			})
		}
	}
	for _, tc := range []struct {
		name  string
		doc   []byte
		files int
	}{
		{"no references", ofdSealedBy(t, doc, rec.DER, cert, tok.signer, without(), nil), 5},
		{"without OFD.xml", ofdSealedBy(t, doc, rec.DER, cert, tok.signer, without("/OFD.xml"), nil), 1},
		{"without Document.xml", ofdSealedBy(t, doc, rec.DER, cert, tok.signer, without("/Doc_0/Document.xml"), nil), 1},
		{"without a page", ofdSealedBy(t, doc, rec.DER, cert, tok.signer, without("/Doc_0/Pages/Page_1/Content.xml"), nil), 1},
		{"a file added after sealing", repack(t, sealed.Document, map[string][]byte{"Doc_0/Res/image.png": []byte("\x89PNG")}), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := tn.verify(zhangTok, VerifyRequest{Format: FormatOFD, Document: tc.doc})
			if rep.Valid || !has(rep, ReasonReferencesIncomplete) {
				t.Fatalf("valid=%v reasons %v\n%s", rep.Valid, rep.Reasons(), rep.Summary)
			}
			if want := fmt.Sprintf("does not protect %d file(s)", tc.files); !strings.Contains(rep.Summary, want) {
				t.Fatalf("want %q in\n%s", want, rep.Summary)
			}
			t.Logf("%s", rep.Summary)
		})
	}
}
