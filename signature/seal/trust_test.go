package seal

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/kms/kmc"
	"github.com/govtrust/govtrust/signature"
	"github.com/govtrust/govtrust/signature/ses"
	"github.com/govtrust/govtrust/tsa"
)

// kmcClient hands the platform's key management centre to the CA, as
// cmd/govtrust wires them, so that the CA issues GM/T 0015 dual pairs.
type kmcClient struct{ k *kmc.Service }

func (c kmcClient) ApplyKey(ctx context.Context, req *ca.KMCRequest) (*ca.KMCKey, error) {
	out, err := c.k.ApplyKey(ctx, &kmc.ApplyKeyRequest{SigningPublicKey: req.SigningPublicKey, Subject: req.Subject,
		Org: req.Org, Requester: req.Requester, CA: req.CA, SKF: req.SKF})
	if err != nil {
		return nil, err
	}
	return &ca.KMCKey{EscrowID: out.EscrowID, PublicKey: out.PublicKey, EnvelopedKey: out.EnvelopedKey, SKFBlob: out.SKFBlob}, nil
}

func (c kmcClient) BindCertificate(ctx context.Context, escrowID, caID, encSerial, signSerial string, notAfter time.Time) error {
	return c.k.Bind(ctx, escrowID, caID, encSerial, signSerial, notAfter)
}

func (c kmcClient) AbandonKey(ctx context.Context, escrowID, reason string) error {
	return c.k.Abandon(ctx, escrowID, reason)
}

func (c kmcClient) RevokeKey(ctx context.Context, tx *store.Tx, rev *ca.KeyRevocation) error {
	err := c.k.RevokeKey(ctx, tx, &kmc.KeyRevocation{CA: rev.CA, EncSerial: rev.EncSerial, PublicKey: rev.PublicKey,
		RevokedAt: rev.RevokedAt, Reason: rev.Reason, Actor: rev.Actor})
	if errors.Is(err, kmc.ErrNotStarted) {
		return errors.Join(ca.ErrKMCLater, err)
	}
	return err
}

func (c kmcClient) EscrowedKey(ctx context.Context, spki []byte) (string, error) {
	return c.k.EscrowedKey(ctx, spki)
}

func (c kmcClient) EscrowBindings(ctx context.Context, q store.Querier) ([]ca.EscrowBinding, error) {
	bs, err := c.k.Bindings(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]ca.EscrowBinding, len(bs))
	for i, b := range bs {
		out[i] = ca.EscrowBinding{EscrowID: b.EscrowID, CA: b.CA, EncSerial: b.EncSerial, SignSerial: b.SignSerial}
	}
	return out, nil
}

// startNodeKMC is startNode with the KMC wired into the CA.
func startNodeKMC(t testing.TB) *testNode {
	t.Helper()
	font := testenv.File(t, fontPath, "CJK font (Debian fonts-wqy-microhei)")
	dir := t.TempDir()
	c, k := ca.New(), kmc.New()
	c.UseKMC(kmcClient{k})
	ts := tsa.New(c)
	svc := New(c, c, ts)
	opts := node.Options{DataDir: dir, HTTP: ptr(testenv.FreeAddr(t)), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{"GOVTRUST_SEAL_FONT=" + font}}
	n, err := node.Start(context.Background(), opts, c, ts, k, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, ca: c,
		c: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	t.Cleanup(tn.stop)
	return tn
}

// dualOfficial is a citizen's GM/T 0015 pair from the platform CA: the
// signing key (theirs) and certificate, and the encryption key the KMC
// generated, escrowed and delivered enveloped to the signing key, with its
// person-enc certificate.
type dualOfficial struct {
	sign, enc softOfficial
}

func (tn *testNode) dualOfficial(cn string) *dualOfficial {
	tn.t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		tn.t.Fatal(err)
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		tn.t.Fatal(err)
	}
	ra, err := node.ReadBootstrapToken(tn.dir, "ra")
	if err != nil {
		tn.t.Fatal(err)
	}
	var out ca.DualIssueResponse
	if st := tn.call("POST", "/api/v1/ca/sm2-issuing/certificates", ra, map[string]any{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), "profile": "person-sign",
		"record": map[string]string{"CN": cn, "O": "demo", "id-card": "11010519491231002X"}, "dual": true, "skf_blob": true}, &out); st != 201 && st != 200 {
		tn.t.Fatalf("dual issuance: %d", st)
	}
	encKey, err := kmc.ParseSKFEnvelopedKey(k, out.SKFBlob)
	if err != nil {
		tn.t.Fatal(err)
	}
	der := func(p string) []byte {
		b, _ := pem.Decode([]byte(p))
		if b == nil {
			tn.t.Fatalf("certificate %q is not PEM", p)
		}
		return b.Bytes
	}
	d := &dualOfficial{sign: softOfficial{key: k, cert: der(out.Certificate)}, enc: softOfficial{key: encKey, cert: der(out.Encryption.Certificate)}}
	if c, _ := smx509.ParseCertificate(d.enc.cert); c == nil || c.KeyUsage != smx509.KeyUsageKeyEncipherment|smx509.KeyUsageDataEncipherment {
		tn.t.Fatalf("the encryption certificate is not person-enc: %+v", c)
	}
	return d
}

// TestEncryptionCertificateNotASigner: the encryption half of a citizen's
// dual pair (person-enc: keyEncipherment, dataEncipherment; the key the
// KMC escrows) is no signing certificate (RFC 5280 §4.2.1.3, GM/T 0015):
// it cannot be bound to a seal, and a seal signature made with it, under a
// seal the platform's maker made listing it, is invalid, while the same
// seal listing the pair's signing certificate verifies.
func TestEncryptionCertificateNotASigner(t *testing.T) {
	tn := startNodeKMC(t)
	ctx := context.Background()
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	tn.account("wang", policy.RoleOfficial)
	wang := tn.dualOfficial("王五")
	now := tn.n.Env().Clock.Now().UTC()

	var a Application
	if st := tn.call("POST", "/api/v1/seal-applications", adminTok, ApplyRequest{Name: "福州市人民政府", Kind: "official", Generate: true,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "wang", Certificate: pemOf(wang.enc.cert)}}}, &a); st != 400 {
		t.Errorf("an encryption certificate bound to a seal: %d, want 400", st)
	}

	m, err := tn.svc.makerFor(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("任命通知")
	sealFor := func(o softOfficial) []byte {
		t.Helper()
		info := ses.SealInfo{Version: ses.V4, VID: "govtrust", ESID: newID(8), Property: ses.Property{Type: 1, Name: "福州市人民政府",
			CertListType: ses.CertListCerts, Certs: [][]byte{o.cert}, CreateDate: now, ValidStart: now.Add(-time.Hour), ValidEnd: now.AddDate(1, 0, 0)},
			Picture: ses.Picture{Type: "PNG", Data: []byte("\x89PNG picture"), Width: 42, Height: 42}}
		made, err := ses.MakeSeal(info, m.cert, m.signer)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ses.Sign(ses.NewTBS(made.Raw, now, ses.SM3(data), "file:notice"), o.cert, o.key)
		if err != nil {
			t.Fatal(err)
		}
		return sig.Raw
	}
	verify := func(sig []byte) *Report {
		return tn.svc.Verify(ctx, VerifyRequest{Format: FormatSES, Document: data, Signature: sig})
	}
	mustValid(t, verify(sealFor(wang.sign)))
	rep := verify(sealFor(wang.enc))
	t.Logf("%s", rep.Summary)
	if rep.Valid || !has(rep, signature.ReasonKeyUsage) {
		t.Fatalf("a seal signature by an escrowed encryption key: valid=%v reasons %v", rep.Valid, rep.Reasons())
	}
}

// foreignCA is another platform's seal-maker CA: a root that certifies
// seal makers and publishes its CRL over HTTP.
type foreignCA struct {
	t    testing.TB
	key  *sm2.PrivateKey
	cert *smx509.Certificate
	crl  string
}

func newForeignCA(t testing.TB, cn string) *foreignCA {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{cn}, Country: []string{"CN"}},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, SignatureAlgorithm: smx509.SM2WithSM3}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	f := &foreignCA{t: t, key: k}
	if f.cert, err = smx509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		crl, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{Number: big.NewInt(now.UnixNano()),
			ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, f.cert, f.key)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(crl)
	}))
	t.Cleanup(srv.Close)
	f.crl = srv.URL + "/ca.crl"
	return f
}

// maker certifies a new key as a seal maker with keyUsage usage.
func (f *foreignCA) maker(cn string, usage smx509.KeyUsage) *softOfficial {
	f.t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{cn}, Country: []string{"CN"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(3, 0, 0), KeyUsage: usage, CRLDistributionPoints: []string{f.crl},
		SignatureAlgorithm: smx509.SM2WithSM3}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, f.cert, k.Public(), f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return &softOfficial{key: k, cert: der}
}

func writePEM(t testing.TB, path string, certs ...*smx509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSealMakerRecognised: a seal verifies only when its maker is a seal
// maker: one of the platform's maker certificates, or one a configured
// foreign seal-maker issuer (seal.maker_anchors) certified. A citizen who
// makes an SESeal in a government's name with their own person-sign
// certificate as the maker (a certificate that chains to the platform
// root) gets an invalid seal, as does a maker certified by a foreign CA
// that is not configured, or a foreign maker certificate that is not for
// signing.
func TestSealMakerRecognised(t *testing.T) {
	foreign, other := newForeignCA(t, "外省电子印章制作中心"), newForeignCA(t, "某公司 CA")
	dir := t.TempDir()
	anchors := writePEM(t, filepath.Join(dir, "seal-makers.pem"), foreign.cert)
	if err := os.WriteFile(filepath.Join(dir, "govtrust.yaml"), []byte("seal:\n  maker_anchors: ["+anchors+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := startNodeFull(t, dir, "", nil, func(c *ca.Service, ts *tsa.Service) *Service { return New(c, c, ts) })
	ctx := context.Background()
	now := tn.n.Env().Clock.Now().UTC()
	zhang := tn.softOfficial("张三")
	data := []byte("任命通知")
	// sealed makes a seal of 福州市人民政府 listing signer with the maker's
	// key and certificate, has signer seal data with it and verifies.
	sealed := func(sealDER []byte, signer *softOfficial) *Report {
		t.Helper()
		sig, err := ses.Sign(ses.NewTBS(sealDER, now, ses.SM3(data), "file:notice"), signer.cert, signer.key)
		if err != nil {
			t.Fatal(err)
		}
		return tn.svc.Verify(ctx, VerifyRequest{Format: FormatSES, Document: data, Signature: sig.Raw})
	}
	madeBy := func(makerCert []byte, makerKey crypto.Signer, signer *softOfficial) []byte {
		t.Helper()
		info := ses.SealInfo{Version: ses.V4, VID: "forged", ESID: newID(8), Property: ses.Property{Type: 1, Name: "福州市人民政府",
			CertListType: ses.CertListCerts, Certs: [][]byte{signer.cert}, CreateDate: now, ValidStart: now.Add(-time.Hour), ValidEnd: now.AddDate(1, 0, 0)},
			Picture: ses.Picture{Type: "PNG", Data: []byte("\x89PNG any picture"), Width: 42, Height: 42}}
		s, err := ses.MakeSeal(info, makerCert, makerKey)
		if err != nil {
			t.Fatal(err)
		}
		return s.Raw
	}

	t.Run("self-made seal", func(t *testing.T) {
		forger := tn.softOfficial("王五 (citizen)")
		rep := sealed(madeBy(forger.cert, forger.key, forger), forger)
		if rep.Valid || !has(rep, ReasonMakerUnknown) {
			t.Fatalf("a seal made with a person-sign certificate: valid=%v reasons %v\n%s", rep.Valid, rep.Reasons(), rep.Summary)
		}
	})
	t.Run("platform maker", func(t *testing.T) {
		_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
		_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
		tn.account("zhang", policy.RoleOfficial)
		rec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "official", Generate: true,
			ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(zhang.cert)}}})
		mustValid(t, sealed(rec.DER, zhang))
	})
	t.Run("foreign maker", func(t *testing.T) {
		m := foreign.maker("外省电子印章制作中心 制章", smx509.KeyUsageDigitalSignature|smx509.KeyUsageContentCommitment)
		mustValid(t, sealed(madeBy(m.cert, m.key, zhang), zhang))
	})
	t.Run("maker of a CA not configured", func(t *testing.T) {
		m := other.maker("某公司 制章", smx509.KeyUsageDigitalSignature)
		rep := sealed(madeBy(m.cert, m.key, zhang), zhang)
		if rep.Valid || !has(rep, ReasonMakerUnknown) {
			t.Fatalf("valid=%v reasons %v\n%s", rep.Valid, rep.Reasons(), rep.Summary)
		}
	})
	t.Run("foreign maker certificate not for signing", func(t *testing.T) {
		m := foreign.maker("外省电子印章制作中心 加密", smx509.KeyUsageKeyEncipherment|smx509.KeyUsageDataEncipherment)
		rep := sealed(madeBy(m.cert, m.key, zhang), zhang)
		if rep.Valid || !has(rep, signature.ReasonKeyUsage) {
			t.Fatalf("valid=%v reasons %v\n%s", rep.Valid, rep.Reasons(), rep.Summary)
		}
	})
	t.Run("maker anchors", func(t *testing.T) {
		platform := tn.ca.CACertificates()
		zc, err := smx509.ParseCertificate(zhang.cert)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := loadMakerAnchors([]string{anchors}, platform); err != nil || len(got) != 1 {
			t.Fatalf("a foreign maker CA: %v", err)
		}
		for _, c := range append(platform, zc) {
			if _, err := loadMakerAnchors([]string{writePEM(t, filepath.Join(t.TempDir(), "a.pem"), c)}, platform); err == nil {
				t.Errorf("%s of the platform accepted as a seal-maker anchor", c.Subject)
			}
		}
		if _, err := loadMakerAnchors([]string{filepath.Join(dir, "missing.pem")}, platform); err == nil {
			t.Error("a missing file accepted")
		}
	})
}

// TestOFDZipBombRefused: an OFD package of well under the request limit
// that inflates to 200 MiB (a zip bomb) is answered 413 problem+json by
// verification and by sealing, and the server does not inflate it.
func TestOFDZipBombRefused(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestCompression) })
	w, _ := zw.Create("OFD.xml")
	w.Write([]byte(`<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"><ofd:DocBody><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>`))
	w, _ = zw.Create("Doc_0/Res/r0.bin")
	zeros := make([]byte, 1<<20)
	for range 200 {
		w.Write(zeros)
	}
	zw.Close()
	zeros = nil
	data := buf.Bytes()

	tn := startNode(t)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, approverTok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	zhang := tn.softOfficial("张三")
	now := tn.n.Env().Clock.Now().UTC()
	rec := tn.makeSeal(adminTok, approverTok, ApplyRequest{Name: "福州市数据管理局", Kind: "official", Generate: true,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(zhang.cert)}}})
	for _, c := range []struct {
		path string
		body any
	}{
		{"/api/v1/seals/verify", VerifyRequest{Format: FormatOFD, Document: data}},
		{"/api/v1/seals/" + rec.ID + "/prepare", PrepareRequest{Format: FormatOFD, Document: data, Name: "bomb.ofd", Certificate: pemOf(zhang.cert), Page: 1, X: 10, Y: 10}},
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, raw, ct := tn.send("POST", c.path, zhangTok, c.body)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d-byte package: %d %s; %d MiB allocated", c.path, len(data), st, raw, alloc>>20)
		var p struct{ Detail string }
		if st != http.StatusRequestEntityTooLarge || ct != "application/problem+json" || json.Unmarshal(raw, &p) != nil || !strings.Contains(p.Detail, "zip bomb") {
			t.Errorf("%s: %d %s %s, want 413 problem+json naming the zip bomb", c.path, st, ct, raw)
		}
		if alloc > 48<<20 {
			t.Errorf("%s: %d MiB allocated for a %d-byte package", c.path, alloc>>20, len(data))
		}
	}
}
