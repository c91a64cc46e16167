package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	p11 "github.com/miekg/pkcs11"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/pkcs11"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/ofd/ofdtest"
	"github.com/govtrust/govtrust/signature/pdf/pdftest"
	"github.com/govtrust/govtrust/signature/ses"
)

// TestSealCommands runs issue 10's CLI end to end with the real binary: a
// seal applied by one seal administrator, approved by a second and made;
// `govtrust agent` as a process holding the official's key on the SM2
// software token (PIN from a file, never sent to the server); `govtrust seal
// sign` of a detached .ses (whole file and hash-only), an OFD and a PDF;
// `seal verify` VALID, and one changed byte of the document fails with
// document-digest-mismatch and a non-zero exit; status, list and usage.
func TestSealCommands(t *testing.T) {
	module := testenv.Env(t, "GTTEST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so (make p11)")
	font := testenv.File(t, "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "CJK font (Debian fonts-wqy-microhei)")
	t.Setenv("GOVTRUST_SEAL_FONT", font)
	t.Setenv("GOVTRUST_P11_CONF", "")
	os.Unsetenv("GOVTRUST_P11_CONF")
	t.Setenv("GOVTRUST_P11_DIR", t.TempDir())

	dir := filepath.Join(t.TempDir(), "data")
	httpAddr := testenv.FreeAddr(t) // certificates name it in their OCSP and CRL URLs
	up(t, dir, "--http", httpAddr).stop(t)
	tokenOf := func(name, role string) string {
		t.Helper()
		if out, code := govtrust(t, "account", "create", "--data", dir, "--name", name, "--org", "demo", "--clearance", "public", "--role", role); code != 0 {
			t.Fatalf("account create %s = %d\n%s", name, code, out)
		}
		tok := strings.TrimSpace(stdoutOf(t, "token", "create", "--data", dir, "--account", name, "--name", "test"))
		path := filepath.Join(t.TempDir(), name+".token")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	admin1, admin2, zhang := tokenOf("seal-admin-1", "seal-admin"), tokenOf("seal-admin-2", "seal-admin"), tokenOf("zhang", "official")

	// The official's USB key: the key is made inside the token and only its
	// CSR leaves it.
	work := t.TempDir()
	csrPEM := officialKey(t, module)
	csrFile := filepath.Join(work, "zhang.csr")
	os.WriteFile(csrFile, csrPEM, 0o644)

	p := up(t, dir, "--http", httpAddr)
	defer p.stop(t)
	cacert := filepath.Join(dir, "bootstrap", "tls-chain.pem")
	api := []string{"--url", "https://" + p.addrs["https"], "--cacert", cacert}
	as := func(tok string, args ...string) []string { return append(append(args, api...), "--token-file", tok) }

	zhangPEM := filepath.Join(work, "zhang.pem")
	if out, code := govtrust(t, as(filepath.Join(dir, "bootstrap", "ra.token"), "ca", "issue", "sm2-issuing", "--csr", csrFile, "--profile", "person-sign",
		"--record", "CN=张三", "--record", "O=demo", "--record", "id-card=11010519491231002X", "--out", zhangPEM)...); code != 0 {
		t.Fatalf("ca issue = %d\n%s", code, out)
	}

	var sealID string
	t.Run("apply approve make", func(t *testing.T) {
		appID := strings.TrimSpace(stdoutOf(t, as(admin1, "seal", "apply", "--name", "福州市数据管理局", "--kind", "contract", "--generate",
			"--valid-to", time.Now().AddDate(1, 0, 0).Format(time.DateOnly), "--holder", "zhang="+zhangPEM)...))
		if len(appID) == 0 || strings.ContainsAny(appID, " \n") {
			t.Fatalf("apply printed %q", appID)
		}
		if out, code := govtrust(t, as(admin1, "seal", "approve", appID)...); code == 0 || !strings.Contains(out, "403") {
			t.Fatalf("self-approval = %d, want refused with 403\n%s", code, out)
		}
		if out, code := govtrust(t, as(admin1, "seal", "make", appID)...); code == 0 || !strings.Contains(out, "403") {
			t.Fatalf("make before approval = %d, want refused with 403\n%s", code, out)
		}
		if out, code := govtrust(t, as(admin2, "seal", "approve", appID, "--comment", "checked")...); code != 0 || !strings.Contains(out, "approved") {
			t.Fatalf("approve = %d\n%s", code, out)
		}
		der := filepath.Join(work, "seal.der")
		sealID = strings.TrimSpace(stdoutOf(t, as(admin1, "seal", "make", appID, "--out", der)...))
		b, err := os.ReadFile(der)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ses.ParseSeal(b)
		if err != nil || s.Info.ESID != sealID || s.Info.Property.Name != "福州市数据管理局" {
			t.Fatalf("made seal %q: %v %+v", sealID, err, s)
		}
		if _, err := s.VerifyMaker(); err != nil {
			t.Fatalf("maker signature: %v", err)
		}
	})
	if sealID == "" {
		t.FailNow()
	}

	pinFile := filepath.Join(work, "pin")
	os.WriteFile(pinFile, []byte("123456\n"), 0o600)
	agentArgs := []string{"agent", "--module", module, "--token-label", "official", "--key-label", "zhang", "--cert", zhangPEM, "--pin-file", pinFile}
	t.Run("agent refuses a non-loopback address", func(t *testing.T) {
		out, code := govtrust(t, append(agentArgs, "--listen", "0.0.0.0:0", "--confirm", "auto")...)
		if code == 0 || !strings.Contains(out, "loopback") {
			t.Fatalf("agent --listen 0.0.0.0:0 = %d\n%s", code, out)
		}
	})
	ag, agentURL, agentOut := startAgentProc(t, append(agentArgs, "--listen", "127.0.0.1:0", "--confirm", "auto"))

	doc := filepath.Join(work, "contract.txt")
	content := []byte(strings.Repeat("合同正文 contract text\n", 200))
	os.WriteFile(doc, content, 0o644)
	sealArgs := func(args ...string) []string {
		return as(zhang, append([]string{"seal", "sign", sealID, "--agent", agentURL}, args...)...)
	}

	t.Run("sign and verify a detached .ses", func(t *testing.T) {
		out, code := govtrust(t, sealArgs("--in", doc)...)
		if code != 0 || !strings.Contains(out, "time-stamped") {
			t.Fatalf("seal sign = %d\n%s", code, out)
		}
		sig := doc + ".ses"
		out, code = govtrust(t, as(zhang, "seal", "verify", "--in", doc, "--sig", sig)...)
		if code != 0 || !strings.HasPrefix(out, "VALID") {
			t.Fatalf("verify = %d\n%s", code, out)
		}
		bad := filepath.Join(work, "contract-changed.txt")
		changed := []byte(string(content))
		changed[100] ^= 1
		os.WriteFile(bad, changed, 0o644)
		out, code = govtrust(t, as(zhang, "seal", "verify", "--in", bad, "--sig", sig)...)
		if code == 0 || !strings.Contains(out, "INVALID") || !strings.Contains(out, "document-digest-mismatch") {
			t.Fatalf("verify of a changed byte = %d, want non-zero with document-digest-mismatch\n%s", code, out)
		}
		// Hash-only: only the SM3 leaves this computer; the .ses verifies
		// against the document as well as against its digest.
		hsig := filepath.Join(work, "contract-hash-only.ses")
		if out, code := govtrust(t, sealArgs("--in", doc, "--hash-only", "--out", hsig)...); code != 0 {
			t.Fatalf("seal sign --hash-only = %d\n%s", code, out)
		}
		if out, code := govtrust(t, as(zhang, "seal", "verify", "--in", doc, "--sig", hsig)...); code != 0 || !strings.HasPrefix(out, "VALID") {
			t.Fatalf("verify hash-only seal = %d\n%s", code, out)
		}
		if out, code := govtrust(t, as(zhang, "seal", "verify", "--digest", hex.EncodeToString(ses.SM3(content)), "--sig", hsig)...); code != 0 || !strings.HasPrefix(out, "VALID") {
			t.Fatalf("verify --digest = %d\n%s", code, out)
		}
	})

	t.Run("sign and verify an OFD", func(t *testing.T) {
		in := filepath.Join(work, "notice.ofd")
		os.WriteFile(in, ofdtest.Document("通知正文", 2), 0o644)
		sealed := filepath.Join(work, "notice-sealed.ofd")
		if out, code := govtrust(t, sealArgs("--in", in, "--out", sealed, "--page", "2", "--x", "120", "--y", "200")...); code != 0 {
			t.Fatalf("seal sign OFD = %d\n%s", code, out)
		}
		out, code := govtrust(t, as(zhang, "seal", "verify", "--in", sealed)...)
		if code != 0 || !strings.HasPrefix(out, "VALID: ofd, 1 seal signature") {
			t.Fatalf("verify OFD = %d\n%s", code, out)
		}
		if out, code := govtrust(t, as(zhang, "seal", "verify", "--in", in)...); code == 0 {
			t.Fatalf("verify of the unsealed OFD = 0\n%s", out)
		}

		// By keyword, and a riding seal over both pages.
		for name, args := range map[string][]string{"keyword": {"--keyword", "正文"}, "riding": {"--riding"}} {
			sealed := filepath.Join(work, "notice-"+name+".ofd")
			if out, code := govtrust(t, sealArgs(append([]string{"--in", in, "--out", sealed}, args...)...)...); code != 0 {
				t.Fatalf("seal sign OFD %s = %d\n%s", args, code, out)
			}
			if out, code := govtrust(t, as(zhang, "seal", "verify", "--in", sealed)...); code != 0 {
				t.Fatalf("verify OFD %s = %d\n%s", name, code, out)
			}
			b, _ := os.ReadFile(sealed)
			found, err := ofd.Signatures(b)
			if want := map[string]int{"keyword": 1, "riding": 2}[name]; err != nil || len(found) != 1 || len(found[0].Stamps) != want {
				t.Fatalf("%s: %v %+v, want %d StampAnnots", name, err, found, want)
			}
		}
		if out, code := govtrust(t, sealArgs("--in", in, "--out", filepath.Join(work, "x.ofd"), "--keyword", "（盖章）")...); code == 0 || !strings.Contains(out, "keyword not found") {
			t.Fatalf("an absent keyword = %d\n%s", code, out)
		}
	})

	t.Run("sign and verify a PDF", func(t *testing.T) {
		in := filepath.Join(work, "contract.pdf")
		os.WriteFile(in, pdftest.OnePage("contract text to be sealed"), 0o644)
		sealed := filepath.Join(work, "contract-sealed.pdf")
		if out, code := govtrust(t, sealArgs("--in", in, "--out", sealed, "--page", "1", "--x", "120", "--y", "40")...); code != 0 {
			t.Fatalf("seal sign PDF = %d\n%s", code, out)
		}
		out, code := govtrust(t, as(zhang, "seal", "verify", "--in", sealed)...)
		if code != 0 || !strings.HasPrefix(out, "VALID: pdf, 1 seal signature") {
			t.Fatalf("verify PDF = %d\n%s", code, out)
		}
		b, _ := os.ReadFile(sealed)
		b[bytes.Index(b, []byte("contract text"))] ^= 0x20
		bad := filepath.Join(work, "contract-changed.pdf")
		os.WriteFile(bad, b, 0o644)
		out, code = govtrust(t, as(zhang, "seal", "verify", "--in", bad)...)
		if code == 0 || !strings.Contains(out, "document-digest-mismatch") {
			t.Fatalf("verify of a changed byte = %d, want non-zero with document-digest-mismatch\n%s", code, out)
		}
	})

	t.Run("the agent showed what it signed", func(t *testing.T) {
		got := agentOut.String()
		if strings.Count(got, "signing document") != 6 || !strings.Contains(got, hex.EncodeToString(ses.SM3(content))) ||
			!strings.Contains(got, `"notice.ofd"`) || !strings.Contains(got, "福州市数据管理局") {
			t.Fatalf("agent output:\n%s", got)
		}
		// For an OFD, the files the signed Signature.xml protects.
		if !strings.Contains(got, "Signature.xml /Doc_0/Signs/Sign_0/Signature.xml") || !strings.Contains(got, "/Doc_0/Pages/Page_1/Content.xml SM3 ") {
			t.Fatalf("agent output without the OFD's references:\n%s", got)
		}
		if strings.Contains(got, "123456") {
			t.Fatal("the agent printed the PIN")
		}
	})

	t.Run("list status usage", func(t *testing.T) {
		out, code := govtrust(t, as(admin1, "seal", "list")...)
		if code != 0 || !strings.Contains(out, sealID) || !strings.Contains(out, "active") {
			t.Fatalf("list = %d\n%s", code, out)
		}
		pub := []string{"seal", "status", sealID, "--public-url", "http://" + httpAddr}
		if out, code := govtrust(t, pub...); code != 0 || !strings.Contains(out, sealID) || !strings.Contains(out, ": active since") {
			t.Fatalf("status = %d\n%s", code, out)
		}
		out, code = govtrust(t, as(admin1, "seal", "usage", sealID)...)
		if code != 0 || strings.Count(out, "account/zhang") != 6 || !strings.Contains(out, "notice.ofd") {
			t.Fatalf("usage = %d\n%s", code, out)
		}
		if out, code := govtrust(t, as(zhang, "seal", "status", sealID, "--set", "suspended", "--reason", "test")...); code == 0 {
			t.Fatalf("an official suspended the seal\n%s", out)
		}
		if out, code := govtrust(t, as(admin1, "seal", "status", sealID, "--set", "suspended", "--reason", "key lost")...); code != 0 || !strings.Contains(out, "suspended") {
			t.Fatalf("suspend = %d\n%s", code, out)
		}
		if out, code := govtrust(t, pub...); code != 0 || !strings.Contains(out, ": suspended since") {
			t.Fatalf("status after suspension = %d\n%s", code, out)
		}
		if out, code := govtrust(t, sealArgs("--in", doc, "--out", filepath.Join(work, "refused.ses"))...); code == 0 {
			t.Fatalf("sealing with a suspended seal succeeded\n%s", out)
		}
	})

	if err := ag.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ag.Wait(); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, agentOut)
	}
}

// officialKey initialises the SM2 software token "official" (user PIN
// 123456), makes the official's signing key "zhang" inside it and returns
// a CSR it signed.
func officialKey(t *testing.T, module string) []byte {
	t.Helper()
	ctx := p11.New(module)
	if ctx == nil {
		t.Fatalf("cannot load %s", module)
	}
	if err := ctx.Initialize(); err != nil {
		t.Fatalf("C_Initialize: %v", err)
	}
	slots, err := ctx.GetSlotList(false)
	if err != nil || len(slots) == 0 {
		t.Fatalf("slots: %v %v", slots, err)
	}
	if err := ctx.InitToken(slots[0], "87654321", "official"); err != nil {
		t.Fatalf("C_InitToken: %v", err)
	}
	h, err := ctx.OpenSession(slots[0], p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.Login(h, p11.CKU_SO, "87654321"); err != nil {
		t.Fatalf("SO login: %v", err)
	}
	if err := ctx.InitPIN(h, "123456"); err != nil {
		t.Fatalf("C_InitPIN: %v", err)
	}
	ctx.CloseSession(h)
	ctx.Finalize()
	ctx.Destroy()

	km, err := pkcs11.New(context.Background(), pkcs11.Config{Module: module, Token: "official", PIN: "123456", Vendor: "tass"})
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
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
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "张三"}}, s)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// syncBuilder is a strings.Builder written by a child's output copier
// and read by the test.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write makes a syncBuilder an exec.Cmd's Stdout and Stderr.
func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) add(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(line + "\n")
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgentProc starts `govtrust agent` and waits for its listening line.
func startAgentProc(t *testing.T, args []string) (*exec.Cmd, string, *syncBuilder) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	out := &syncBuilder{}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.add(line)
			if rest, ok := strings.CutPrefix(line, "agent listening on "); ok {
				ready <- strings.Fields(rest)[0]
			}
		}
		close(ready)
	}()
	select {
	case u, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("agent exited:\n%s", out)
		}
		return cmd, u, out
	case <-time.After(30 * time.Second):
		t.Fatalf("agent not listening within 30 s:\n%s", out)
	}
	return nil, "", nil
}
