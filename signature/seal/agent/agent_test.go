package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/signature/pdf"
	"github.com/govtrust/govtrust/signature/pdf/pdftest"
	"github.com/govtrust/govtrust/signature/ses"
)

// official is a USB key's SM2 key and certificate, and a seal listing it.
type official struct {
	key  *sm2.PrivateKey
	cert *smx509.Certificate
	seal *ses.Seal
}

func newOfficial(t *testing.T) *official {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "张三"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var pic bytes.Buffer
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	img.Set(4, 4, color.NRGBA{R: 255, A: 255})
	if err := png.Encode(&pic, img); err != nil {
		t.Fatal(err)
	}
	seal, err := ses.MakeSeal(ses.SealInfo{ESID: "S1", Property: ses.Property{Name: "某局", Certs: [][]byte{der}, ValidStart: now.Add(-time.Hour), ValidEnd: now.Add(time.Hour)},
		Picture: ses.Picture{Type: "PNG", Data: pic.Bytes(), Width: 40, Height: 40}}, der, key)
	if err != nil {
		t.Fatal(err)
	}
	return &official{key: key, cert: cert, seal: seal}
}

// agent starts the agent over HTTP on the loopback interface; shown
// records what it showed.
func (o *official) agent(t *testing.T, shown *[]Shown) *Client {
	t.Helper()
	a, err := New(Config{Signer: o.key, Certificate: o.cert.Raw, Confirm: func(s Shown) bool { *shown = append(*shown, s); return true }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &Client{URL: srv.URL}
}

func (o *official) tbs(t *testing.T, dataHash []byte, property string) []byte {
	t.Helper()
	b, err := ses.NewTBS(o.seal.Raw, time.Now(), dataHash, property).Marshal(ses.V4)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A TBS_Sign's dataHash is checked against the hash shown whatever the
// request calls its format: relabelling a detached seal's TBS_Sign (format
// ses, propertyInfo file:) as ofd or anything else is refused, and so is
// an OFD one (propertyInfo the path of Signature.xml) sent as ses.
func TestSignRefusesRelabelledFormat(t *testing.T) {
	o := newOfficial(t)
	var shown []Shown
	ag := o.agent(t, &shown)
	ctx := context.Background()
	signed := ses.SM3([]byte("转账 1,000,000 元"))
	harmless := hex.EncodeToString(ses.SM3([]byte("会议通知")))
	tbs := o.tbs(t, signed, "file:transfer.txt")

	for _, format := range []string{"ses", "ofd", "pdf", "", "SES", "xml", "ofd "} {
		req := Request{Format: format, Document: "会议通知.txt", DocumentHash: harmless, SealID: "S1", ToBeSigned: tbs}
		if sig, err := ag.Sign(ctx, req); err == nil {
			t.Errorf("format %q: signed (%d bytes) a TBS_Sign over %x while showing %+v", format, len(sig), signed, shown)
		}
	}
	// An OFD TBS_Sign sent as a detached seal, with its dataHash as the
	// document hash: the official would be shown a "document hash" that
	// is that of a Signature.xml they never see.
	ofdTBS := o.tbs(t, signed, "/Doc_0/Signs/Sign_0/Signature.xml")
	if _, err := ag.Sign(ctx, Request{Format: "ses", Document: "x.txt", DocumentHash: hex.EncodeToString(signed), ToBeSigned: ofdTBS}); err == nil ||
		!strings.Contains(err.Error(), "not that of a detached seal") {
		t.Errorf("an OFD TBS_Sign as ses: %v", err)
	}
	// A seal ID other than the seal's.
	if _, err := ag.Sign(ctx, Request{Format: "ses", Document: "t.txt", DocumentHash: hex.EncodeToString(signed), SealID: "S2", ToBeSigned: tbs}); err == nil {
		t.Error("signed under another seal ID than the one applied")
	}
	if len(shown) != 0 {
		t.Fatalf("the agent showed %+v for requests it must refuse", shown)
	}
	// The detached seal as it is: shown with its hash, and signed.
	sig, err := ag.Sign(ctx, Request{Format: "ses", Document: "transfer.txt", DocumentHash: hex.EncodeToString(signed), SealID: "S1", ToBeSigned: tbs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ses.Assemble(tbs, o.cert.Raw, sig, nil); err != nil {
		t.Fatal(err)
	}
	if len(shown) != 1 || shown[0].DocumentHash != hex.EncodeToString(signed) || shown[0].Property != "file:transfer.txt" || shown[0].SealID != "S1" {
		t.Fatalf("shown %+v", shown)
	}
}

// A PDF seal shows the messageDigest of the signed attributes, the hash
// of the PDF's signed byte range, not a hash the caller states.
func TestSignPDFShowsTheSignedDigest(t *testing.T) {
	o := newOfficial(t)
	var shown []Shown
	ag := o.agent(t, &shown)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Second)
	pr, err := pdf.Prepare(pdftest.OnePage("contract text to be sealed"), pdf.Field{Name: "seal-1", Signer: "张三", Reason: "某局", Time: at,
		Picture: o.seal.Info.Picture.Data, Position: pdf.Position{Page: 1, X: 20, Y: 20, Width: 40, Height: 40}, Reserve: pdf.DefaultReserve + len(o.seal.Raw)})
	if err != nil {
		t.Fatal(err)
	}
	sd, toSign, err := pdf.NewSignedData(pr, o.cert, nil, o.seal.Raw, at)
	if err != nil {
		t.Fatal(err)
	}
	h := sm3.New()
	br := pr.ByteRange
	h.Write(pr.Document[br[0] : br[0]+br[1]])
	h.Write(pr.Document[br[2] : br[2]+br[3]])
	digest := hex.EncodeToString(h.Sum(nil))

	harmless := hex.EncodeToString(ses.SM3([]byte("会议通知")))
	if _, err := ag.Sign(ctx, Request{Format: "pdf", Document: "会议通知.pdf", DocumentHash: harmless, ToBeSigned: toSign}); err == nil {
		t.Fatalf("signed a PDF while showing the caller's hash: %+v", shown)
	}
	sig, err := ag.Sign(ctx, Request{Format: "pdf", Document: "contract.pdf", SealID: "S1", ToBeSigned: toSign})
	if err != nil {
		t.Fatal(err)
	}
	if len(shown) != 1 || shown[0].DocumentHash != digest || shown[0].SealID != "S1" || shown[0].Format != "pdf" {
		t.Fatalf("shown %+v, want the byte range's SM3 %s", shown, digest)
	}
	if err := pdf.Attach(sd, pr, sig); err != nil {
		t.Fatal(err)
	}
	// Signed attributes sent as a TBS_Sign format are not one.
	for _, f := range []string{"ses", "ofd"} {
		if _, err := ag.Sign(ctx, Request{Format: f, Document: "contract.pdf", ToBeSigned: toSign}); err == nil {
			t.Errorf("PDF signed attributes signed as %s", f)
		}
	}
}
