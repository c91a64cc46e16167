package seal

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	p11 "github.com/miekg/pkcs11"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/pkcs11"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/signature/seal/agent"
	"github.com/govtrust/govtrust/tsa"
)

func ptr(s string) *string { return &s }

const fontPath = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

type testNode struct {
	t   testing.TB
	dir string
	n   *node.Node
	svc *Service
	ca  *ca.Service
	c   *http.Client
}

func startNode(t testing.TB) *testNode {
	t.Helper()
	return startNodeFull(t, t.TempDir(), "", nil, func(c *ca.Service, ts *tsa.Service) *Service { return New(c, c, ts) })
}

// startNodeFull is startNode on data directory dir, listening for HTTP on
// addr (a free port when ""), with the node's clock clk (nil: the
// system's) and this service made by mk from the CA and the TSA.
func startNodeFull(t testing.TB, dir, addr string, clk clock.Clock, mk func(*ca.Service, *tsa.Service) *Service) *testNode {
	t.Helper()
	font := testenv.File(t, fontPath, "CJK font (Debian fonts-wqy-microhei)")
	if addr == "" {
		addr = testenv.FreeAddr(t)
	}
	c := ca.New()
	ts := tsa.New(c)
	svc := mk(c, ts)
	opts := node.Options{DataDir: dir, HTTP: ptr(addr), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{"GOVTRUST_SEAL_FONT=" + font}, Clock: clk}
	n, err := node.Start(context.Background(), opts, c, ts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, ca: c,
		c: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) stop() {
	if tn.n != nil {
		if err := tn.n.Shutdown(context.Background()); err != nil {
			tn.t.Errorf("shutdown: %v", err)
		}
		tn.n = nil
	}
}

// account creates an account of org demo with roles and returns its id
// and a bearer token.
func (tn *testNode) account(name string, roles ...policy.Role) (string, string) {
	tn.t.Helper()
	ctx := context.Background()
	az := tn.n.Env().Authz
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: name, Kind: "person", Org: "demo", Clearance: policy.Public, Roles: roles})
	if err != nil {
		tn.t.Fatal(err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatal(err)
	}
	return acc.ID, tok
}

// call sends JSON to the HTTPS API and decodes a 2xx answer into out.
func (tn *testNode) call(method, path, token string, body, out any) int {
	tn.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tn.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+tn.n.Addresses().HTTPS+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			tn.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		tn.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// issue has the CA certify pub for an official (person-sign).
func (tn *testNode) issue(signer crypto.Signer, cn string) []byte {
	tn.t.Helper()
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, signer)
	if err != nil {
		tn.t.Fatal(err)
	}
	der, _, err := tn.ca.IssueFor(context.Background(), "sm2-issuing", "person-sign", csr,
		map[string]string{"CN": cn, "O": "demo", "id-card": "11010519491231002X"}, "test")
	if err != nil {
		tn.t.Fatal(err)
	}
	return der
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// softOfficial is an official whose key is in memory (for the negative
// cases that need signatures the platform would refuse to make).
type softOfficial struct {
	key  *sm2.PrivateKey
	cert []byte
}

func (tn *testNode) softOfficial(cn string) *softOfficial {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		tn.t.Fatal(err)
	}
	return &softOfficial{key: k, cert: tn.issue(k, cn)}
}

// makeSeal applies (admin), approves (approver) and makes a seal.
func (tn *testNode) makeSeal(adminTok, approverTok string, req ApplyRequest) *Record {
	tn.t.Helper()
	var a Application
	if st := tn.call("POST", "/api/v1/seal-applications", adminTok, req, &a); st != 201 {
		tn.t.Fatalf("apply: %d", st)
	}
	if st := tn.call("POST", "/api/v1/seal-applications/"+a.ID+"/approve", approverTok, ApproveRequest{Comment: "ok"}, nil); st != 200 {
		tn.t.Fatalf("approve: %d", st)
	}
	var r Record
	if st := tn.call("POST", "/api/v1/seal-applications/"+a.ID+"/make", adminTok, nil, &r); st != 201 {
		tn.t.Fatalf("make: %d", st)
	}
	return &r
}

// token is the official's USB key: the govtrust-p11 SM2 software token
// with the official's key made inside it.
type token struct {
	km     *pkcs11.KeyManager
	signer crypto.Signer
}

func newToken(t testing.TB) *token {
	t.Helper()
	module := testenv.Env(t, "GTTEST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so (make p11)")
	t.Setenv("GOVTRUST_P11_CONF", "")
	os.Unsetenv("GOVTRUST_P11_CONF")
	t.Setenv("GOVTRUST_P11_DIR", t.TempDir())
	initToken(t, module, "official", "87654321", "123456")
	km, err := pkcs11.New(context.Background(), pkcs11.Config{Module: module, Token: "official", PIN: "123456", Vendor: "tass"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { km.Close() })
	info, err := km.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: "pkcs11:token=official;object=zhang", Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: "official"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Location != hsm.LocationHardware {
		t.Fatalf("the official's key is %q, want inside the token", info.Location)
	}
	s, err := km.Signer(context.Background(), &hsm.SignerRequest{URI: info.URI, Service: "official"})
	if err != nil {
		t.Fatal(err)
	}
	return &token{km: km, signer: s}
}

func initToken(t testing.TB, module, label, soPIN, pin string) {
	t.Helper()
	ctx := p11.New(module)
	if ctx == nil {
		t.Fatalf("cannot load %s", module)
	}
	if err := ctx.Initialize(); err != nil {
		t.Fatalf("C_Initialize: %v", err)
	}
	defer ctx.Finalize()
	slots, err := ctx.GetSlotList(false)
	if err != nil || len(slots) == 0 {
		t.Fatalf("slots: %v %v", slots, err)
	}
	if err := ctx.InitToken(slots[0], soPIN, label); err != nil {
		t.Fatalf("C_InitToken: %v", err)
	}
	h, err := ctx.OpenSession(slots[0], p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.CloseSession(h)
	if err := ctx.Login(h, p11.CKU_SO, soPIN); err != nil {
		t.Fatalf("SO login: %v", err)
	}
	if err := ctx.InitPIN(h, pin); err != nil {
		t.Fatalf("C_InitPIN: %v", err)
	}
}

// startAgent runs the signing agent on the token; shown records what it
// showed.
func startAgent(t testing.TB, signer crypto.Signer, cert []byte, shown *[]agent.Shown) *agent.Client {
	t.Helper()
	a, err := agent.New(agent.Config{Signer: signer, Certificate: cert, Origins: []string{"https://portal.test"},
		Confirm: func(s agent.Shown) bool { *shown = append(*shown, s); return true }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := agent.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &agent.Client{URL: "http://" + ln.Addr().String()}
}

// sealVia prepares on the server, signs through the agent and completes.
func (tn *testNode) sealVia(ag *agent.Client, tok, sealID string, req PrepareRequest) (*Sealed, int) {
	tn.t.Helper()
	var p Prepared
	if st := tn.call("POST", "/api/v1/seals/"+sealID+"/prepare", tok, req, &p); st != 200 {
		return nil, st
	}
	sig, err := ag.Sign(context.Background(), agentRequest(&p))
	if err != nil {
		tn.t.Fatalf("agent: %v", err)
	}
	var out Sealed
	if st := tn.call("POST", "/api/v1/seal-sessions/"+p.Session+"/complete", tok, CompleteRequest{Signature: sig}, &out); st != 200 {
		tn.t.Fatalf("complete: %d", st)
	}
	return &out, 200
}

// agentRequest is what a caller sends the agent for p: the document hash
// for a detached seal, Signature.xml for an OFD seal.
func agentRequest(p *Prepared) agent.Request {
	r := agent.Request{Format: p.Format, Document: p.Document, SealID: p.SealID, SealName: p.SealName, ToBeSigned: p.ToBeSigned, SignatureXML: p.SignatureXML}
	if p.Format == FormatSES {
		r.DocumentHash = p.DocumentHash
	}
	return r
}

func (tn *testNode) verify(tok string, req VerifyRequest) *Report {
	tn.t.Helper()
	var rep Report
	if st := tn.call("POST", "/api/v1/seals/verify", tok, req, &rep); st != 200 {
		tn.t.Fatalf("verify: %d", st)
	}
	return &rep
}

func has(r *Report, reason string) bool {
	for _, x := range r.Reasons() {
		if x == reason {
			return true
		}
	}
	return false
}

func mustValid(t testing.TB, r *Report) {
	t.Helper()
	if !r.Valid {
		t.Fatalf("not valid: %v\n%s", r.Reasons(), r.Summary)
	}
}

func sm3hex(b []byte) string {
	h := sm3sum(b)
	return hex.EncodeToString(h)
}

// rewrite returns the zip data with file name changed by fn.
func rewrite(t testing.TB, data []byte, name string, fn func([]byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if f.Name == name {
			nb := fn(b)
			if bytes.Equal(nb, b) {
				t.Fatalf("rewrite of %s changed nothing", name)
			}
			b = nb
		}
		w, _ := zw.Create(f.Name)
		w.Write(b)
	}
	zw.Close()
	return buf.Bytes()
}
