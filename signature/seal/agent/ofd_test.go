package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
	"github.com/govtrust/govtrust/signature/ses"
)

// An OFD seal: the agent hashes the Signature.xml it is sent, checks it is
// the dataHash, and shows the files it protects; the sealed package
// verifies with the references the official was shown.
func TestSignOFDShowsReferencedFiles(t *testing.T) {
	o := newOfficial(t)
	var shown []Shown
	ag := o.agent(t, &shown)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Second)
	pr, err := ofd.Prepare(ofdtest.Document("通知正文", 2), at, ses.OIDSM2WithSM3.String(), ofd.Position{Page: 1, X: 120, Y: 200, Width: 40, Height: 40}, "govtrust")
	if err != nil {
		t.Fatal(err)
	}
	tbs := o.tbs(t, ses.SM3(pr.SignatureXML), pr.Path)
	req := Request{Format: "ofd", Document: "notice.ofd", SealID: "S1", SealName: "某局", ToBeSigned: tbs, SignatureXML: pr.SignatureXML}

	t.Run("refused", func(t *testing.T) {
		other := bytes.Replace(pr.SignatureXML, []byte("Page_0/Content.xml"), []byte("Page_1/Content.xml"), 1)
		for name, r := range map[string]Request{
			"another Signature.xml": {Format: "ofd", Document: "notice.ofd", ToBeSigned: tbs, SignatureXML: other},
			"no Signature.xml":      {Format: "ofd", Document: "notice.ofd", ToBeSigned: tbs},
			"a document hash":       {Format: "ofd", Document: "notice.ofd", DocumentHash: hex.EncodeToString(ses.SM3(pr.SignatureXML)), ToBeSigned: tbs, SignatureXML: pr.SignatureXML},
			"as ses":                {Format: "ses", Document: "notice.ofd", DocumentHash: hex.EncodeToString(ses.SM3(pr.SignatureXML)), ToBeSigned: tbs},
			"as ses with the xml":   {Format: "ses", Document: "notice.ofd", DocumentHash: hex.EncodeToString(ses.SM3(pr.SignatureXML)), ToBeSigned: tbs, SignatureXML: pr.SignatureXML},
			"propertyInfo file:":    {Format: "ofd", Document: "notice.ofd", ToBeSigned: o.tbs(t, ses.SM3(pr.SignatureXML), "file:notice.ofd"), SignatureXML: pr.SignatureXML},
			"propertyInfo relative": {Format: "ofd", Document: "notice.ofd", ToBeSigned: o.tbs(t, ses.SM3(pr.SignatureXML), "Doc_0/Signs/Sign_0/Signature.xml"), SignatureXML: pr.SignatureXML},
		} {
			if _, err := ag.Sign(ctx, r); err == nil {
				t.Errorf("%s: signed", name)
			}
		}
		if len(shown) != 0 {
			t.Fatalf("shown %+v", shown)
		}
	})

	sig, err := ag.Sign(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ses.Assemble(tbs, o.cert.Raw, sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := pr.Finish(s.Raw)
	if err != nil {
		t.Fatal(err)
	}
	found, err := ofd.Signatures(doc)
	if err != nil || len(found) != 1 || len(found[0].BadReferences) != 0 {
		t.Fatalf("the sealed OFD: %v %+v", err, found)
	}
	if len(shown) != 1 {
		t.Fatalf("shown %d times", len(shown))
	}
	sh := shown[0]
	if sh.Format != "ofd" || sh.Property != "/Doc_0/Signs/Sign_0/Signature.xml" || sh.DocumentHash != hex.EncodeToString(ses.SM3(pr.SignatureXML)) ||
		sh.SealID != "S1" || sh.SealName != "某局" || sh.Document != "notice.ofd" || len(sh.References) != found[0].References {
		t.Fatalf("shown %+v, want %d references", sh, found[0].References)
	}
	// The references shown are the package's files, with their SM3.
	files := map[string]string{}
	for _, r := range sh.References {
		files[r.File] = r.SM3
	}
	for _, want := range []string{"/OFD.xml", "/Doc_0/Document.xml", "/Doc_0/Pages/Page_0/Content.xml", "/Doc_0/Pages/Page_1/Content.xml"} {
		if files[want] == "" {
			t.Errorf("%s not shown among %+v", want, sh.References)
		}
	}
	pkg, err := ofd.Open(doc)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := pkg.File("Doc_0/Pages/Page_0/Content.xml")
	if files["/Doc_0/Pages/Page_0/Content.xml"] != hex.EncodeToString(ses.SM3(page)) {
		t.Errorf("page 1 shown with SM3 %s, its SM3 is %x", files["/Doc_0/Pages/Page_0/Content.xml"], ses.SM3(page))
	}
}

// A Signature.xml that a reader could understand otherwise than the agent
// shows it is refused, even when it is the one signed.
func TestSignOFDRefusesAmbiguousSignatureXML(t *testing.T) {
	o := newOfficial(t)
	var shown []Shown
	ag := o.agent(t, &shown)
	cv := base64.StdEncoding.EncodeToString(ses.SM3([]byte("page")))
	ref := func(file, value string) string {
		return fmt.Sprintf(`<ofd:Reference FileRef="%s"><ofd:CheckValue>%s</ofd:CheckValue></ofd:Reference>`, file, value)
	}
	sig := func(inner string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><ofd:Signature xmlns:ofd="http://www.ofdspec.org/2016">` + inner + `<ofd:SignedValue>/Doc_0/Signs/Sign_0/SignedValue.dat</ofd:SignedValue></ofd:Signature>`
	}
	refs := func(method string, rs ...string) string {
		return `<ofd:References CheckMethod="` + method + `">` + strings.Join(rs, "") + `</ofd:References>`
	}
	info := func(inner string) string { return `<ofd:SignedInfo>` + inner + `</ofd:SignedInfo>` }
	good := sig(info(refs("1.2.156.10197.1.401", ref("/Doc_0/Document.xml", cv))))
	for name, x := range map[string]string{
		"two References":        sig(info(refs("SM3", ref("/Doc_0/Document.xml", cv)) + refs("SM3", ref("/Doc_0/Pages/Page_0/Content.xml", cv)))),
		"two SignedInfo":        sig(info(refs("SM3", ref("/Doc_0/Document.xml", cv))) + info(refs("SM3", ref("/OFD.xml", cv)))),
		"not SM3":               sig(info(refs("SHA-256", ref("/Doc_0/Document.xml", cv)))),
		"no Reference":          sig(info(refs("SM3"))),
		"a short CheckValue":    sig(info(refs("SM3", ref("/Doc_0/Document.xml", "AAAA")))),
		"two CheckValues":       sig(info(refs("SM3", `<ofd:Reference FileRef="/OFD.xml"><ofd:CheckValue>`+cv+`</ofd:CheckValue><ofd:CheckValue>`+cv+`</ofd:CheckValue></ofd:Reference>`))),
		"a file twice":          sig(info(refs("SM3", ref("/Doc_0/Document.xml", cv), ref("../../Document.xml", cv)))),
		"no FileRef":            sig(info(refs("SM3", ref("", cv)))),
		"another root":          strings.ReplaceAll(strings.ReplaceAll(good, "<ofd:Signature ", "<ofd:Seal "), "</ofd:Signature>", "</ofd:Seal>"),
		"not XML":               "%PDF-1.7",
		"an undefined entity":   sig(info(refs("SM3", ref("/Doc_0/Document.xml&x;", cv)))),
		"unclosed":              strings.TrimSuffix(good, "</ofd:Signature>"),
		"the good one, relabel": good,
	} {
		t.Run(name, func(t *testing.T) {
			req := Request{Format: "ofd", Document: "notice.ofd", ToBeSigned: o.tbs(t, ses.SM3([]byte(x)), "/Doc_0/Signs/Sign_0/Signature.xml"), SignatureXML: []byte(x)}
			if name == "the good one, relabel" {
				req.Format = "ses"
				req.DocumentHash = hex.EncodeToString(ses.SM3([]byte(x)))
				req.SignatureXML = nil
			}
			if _, err := ag.Sign(context.Background(), req); err == nil {
				t.Fatal("signed")
			} else {
				t.Log(err)
			}
		})
	}
	if len(shown) != 0 {
		t.Fatalf("shown %+v", shown)
	}
	// The good one as ofd, a relative FileRef resolved against the
	// Signature.xml's folder.
	x := sig(info(refs("SM3", ref("/Doc_0/Document.xml", cv), ref("../../Pages/Page_0/Content.xml", cv))))
	if _, err := ag.Sign(context.Background(), Request{Format: "ofd", Document: "notice.ofd", ToBeSigned: o.tbs(t, ses.SM3([]byte(x)), "/Doc_0/Signs/Sign_0/Signature.xml"), SignatureXML: []byte(x)}); err != nil {
		t.Fatal(err)
	}
	if len(shown) != 1 || len(shown[0].References) != 2 || shown[0].References[1].File != "/Doc_0/Pages/Page_0/Content.xml" ||
		shown[0].References[0].SM3 != hex.EncodeToString(ses.SM3([]byte("page"))) {
		t.Fatalf("shown %+v", shown)
	}
}
