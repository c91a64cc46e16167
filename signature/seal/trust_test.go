package seal

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
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
