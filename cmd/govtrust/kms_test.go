package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"database/sql"
	encasn1 "encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjsm4 "github.com/tjfoc/gmsm/sm4"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/kms/kmc"
)

// kmcNode is an in-process node with every service, wired as `govtrust up`
// wires them (services()).
type kmcNode struct {
	t      testing.TB
	dir    string
	n      *node.Node
	clock  *clock.Fake
	logs   *lockedWriter
	tokens map[string]string
	c      *http.Client
	bodies [][]byte
}

func startKMCNode(t testing.TB, db *string) *kmcNode {
	t.Helper()
	return startNodeOf(t, db, services()...)
}

// startKMCNodeWith starts a node with the CA and the KMC only, wired as
// services() wires them but for the CA's view of the KMC, which wrap may
// replace (a KMC that fails or is slow); it returns the KMC too.
func startKMCNodeWith(t testing.TB, wrap func(ca.KMC) ca.KMC) (*kmcNode, *kmc.Service) {
	t.Helper()
	c, k := ca.New(), kmc.New()
	c.UseKMC(wrap(kmcClient{k}))
	k.UseCertificates(caCertificates{c})
	return startNodeOf(t, nil, c, k), k
}

func startNodeOf(t testing.TB, db *string, svcs ...node.Service) *kmcNode {
	t.Helper()
	return startNodeAt(t, t.TempDir(), db, svcs...)
}

// startNodeAt is startNodeOf on data directory dir.
func startNodeAt(t testing.TB, dir string, db *string, svcs ...node.Service) *kmcNode {
	t.Helper()
	s := func(v string) *string { return &v }
	clk := clock.NewFake(time.Now())
	logs := &lockedWriter{}
	n, err := node.Start(context.Background(), node.Options{DataDir: dir, HTTP: s("127.0.0.1:0"), HTTPS: s("127.0.0.1:0"), LDAP: s(""),
		DB: db, LogOutput: logs, Environ: []string{}, Clock: clk}, svcs...)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	kn := &kmcNode{t: t, dir: dir, n: n, clock: clk, logs: logs, tokens: map[string]string{},
		c: &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	for _, role := range []string{"ra", "secadmin"} {
		tok, err := node.ReadBootstrapToken(dir, role)
		if err != nil {
			t.Fatal(err)
		}
		kn.tokens[role] = tok
	}
	return kn
}

type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func (kn *kmcNode) account(name, org string, role policy.Role) {
	kn.t.Helper()
	az := kn.n.Env().Authz
	acc, err := az.CreateAccount(context.Background(), authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: org, Roles: []policy.Role{role}})
	if err != nil {
		kn.t.Fatal(err)
	}
	tok, _, err := az.CreateToken(context.Background(), acc.ID, "test", nil, 24*time.Hour*365)
	if err != nil {
		kn.t.Fatal(err)
	}
	kn.tokens[name] = tok
}

// bindCert binds certificate (PEM) to account name, as a security
// administrator binds a person's certificate (govtrust account bind-cert).
func (kn *kmcNode) bindCert(name, certPEM string) {
	kn.t.Helper()
	az := kn.n.Env().Authz
	acc, err := az.AccountByName(context.Background(), name)
	if err != nil {
		kn.t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(certPEM))
	if err := az.BindCertificateDER(context.Background(), acc.ID, b.Bytes); err != nil {
		kn.t.Fatal(err)
	}
}

func (kn *kmcNode) do(method, path, who string, body any) (int, []byte) {
	kn.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+kn.n.Addresses().HTTPS+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+kn.tokens[who])
	resp, err := kn.c.Do(req)
	if err != nil {
		kn.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	kn.bodies = append(kn.bodies, raw)
	return resp.StatusCode, raw
}

func (kn *kmcNode) must(method, path, who string, body, out any) {
	kn.t.Helper()
	st, raw := kn.do(method, path, who, body)
	if st/100 != 2 {
		kn.t.Fatalf("%s %s as %s: %d %s", method, path, who, st, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			kn.t.Fatalf("decode %s: %v", raw, err)
		}
	}
}

// opensslOut runs openssl and returns its standard output (binary
// results: keys, plaintexts), failing the test on error.
func opensslOut(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.LookPath(t, "openssl"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// sm2Subscriber makes an SM2 key and a CSR with OpenSSL (the subscriber's
// signing key, as a USB-key or software client would) and returns the key
// file, the CSR PEM and the key.
func sm2Subscriber(t *testing.T, dir, name string) (string, string, *sm2.PrivateKey) {
	t.Helper()
	keyFile := filepath.Join(dir, name+".key")
	runOpenSSL(t, "genpkey", "-algorithm", "SM2", "-out", keyFile)
	csrFile := filepath.Join(dir, name+".csr")
	runOpenSSL(t, "req", "-new", "-key", keyFile, "-sm3", "-sigopt", "distid:1234567812345678", "-subj", "/CN="+name, "-out", csrFile)
	csr, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := os.ReadFile(keyFile)
	b, _ := pem.Decode(kp)
	k, err := smx509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return keyFile, string(csr), k.(*sm2.PrivateKey)
}

// openEnvelopeOpenSSL opens an SM2EnvelopedKey as ACCEPTANCE.md A-11 says:
// pkeyutl -decrypt on the SM2Cipher with the holder's key, then SM4-ECB
// over the encrypted private key; Go only cuts the DER apart.
func openEnvelopeOpenSSL(t *testing.T, dir string, env []byte, keyFile string) []byte {
	t.Helper()
	in := cryptobyte.String(env)
	var seq, alg, cipherTLV cryptobyte.String
	var pub, encPriv cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&alg, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&cipherTLV, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&pub, cbasn1.BIT_STRING) || !seq.ReadASN1(&encPriv, cbasn1.BIT_STRING) || !seq.Empty() {
		t.Fatal("SM2EnvelopedKey does not parse as SEQUENCE { AlgorithmIdentifier, SM2Cipher, BIT STRING, BIT STRING }")
	}
	var oid encasn1.ObjectIdentifier
	if !alg.ReadASN1ObjectIdentifier(&oid) || oid.String() != "1.2.156.10197.1.104.1" {
		t.Fatalf("symmetric algorithm %v, want sm4-ecb", oid)
	}
	cf, pf := filepath.Join(dir, "sm2cipher.der"), filepath.Join(dir, "encpriv.bin")
	if err := os.WriteFile(cf, cipherTLV, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf, encPriv[1:], 0o600); err != nil { // after the unused-bits octet
		t.Fatal(err)
	}
	sym := opensslOut(t, "pkeyutl", "-decrypt", "-inkey", keyFile, "-in", cf)
	if len(sym) != 16 {
		t.Fatalf("SM4 key of %d bytes", len(sym))
	}
	d := opensslOut(t, "enc", "-d", "-sm4-ecb", "-nopad", "-K", hex.EncodeToString(sym), "-in", pf)
	if len(d) != 32 {
		t.Fatalf("private key of %d bytes", len(d))
	}
	return d
}

func pemCert(t *testing.T, s string) *smx509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDualCertificate covers ACCEPTANCE.md A-11 (dual enrolment, envelope
// opened with OpenSSL, gmsm, tjfoc/gmsm and as an SKF blob), D-03 (no
// signing key escrowed or recovered), K-01 (two distinct key recovery
// officers), D-05 (the recovered key decrypts a month-old message,
// byte-exact with OpenSSL), with the enc certificate revoked before the
// recovery, and scans the database, logs and answers for the key.
func TestDualCertificate(t *testing.T) { dualCertificate(t, nil) }

// TestDualCertificatePostgres runs the same on PostgreSQL.
func TestDualCertificatePostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	dualCertificate(t, &url)
}

func dualCertificate(t *testing.T, db *string) {
	kn := startKMCNode(t, db)
	dir := t.TempDir()
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	keyFile, csr, signKey := sm2Subscriber(t, dir, "subscriber")
	record := map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}

	var out ca.DualIssueResponse
	kn.must("POST", "/api/v1/ca/sm2-issuing/certificates", "ra",
		map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true, "skf_blob": true}, &out)
	signCert, encCert := pemCert(t, out.Certificate), pemCert(t, out.Encryption.Certificate)
	encPub := encCert.PublicKey.(*ecdsa.PublicKey)

	t.Run("A-11 certificates", func(t *testing.T) {
		if signCert.KeyUsage != smx509.KeyUsageDigitalSignature|smx509.KeyUsageContentCommitment {
			t.Errorf("signing certificate key usage %b", signCert.KeyUsage)
		}
		if encCert.KeyUsage != smx509.KeyUsageKeyEncipherment|smx509.KeyUsageDataEncipherment {
			t.Errorf("encryption certificate key usage %b", encCert.KeyUsage)
		}
		if !signKey.PublicKey.Equal(signCert.PublicKey) || signKey.PublicKey.Equal(encCert.PublicKey) {
			t.Error("the signing certificate must certify the CSR key and the encryption certificate another")
		}
		if signCert.Subject.String() != encCert.Subject.String() || out.Serial == out.Encryption.Serial {
			t.Error("the pair must share the subject and have distinct serials")
		}
		issuer := pemCert(t, out.Chain[0])
		for _, c := range []*smx509.Certificate{signCert, encCert} {
			if err := c.CheckSignatureFrom(issuer); err != nil {
				t.Errorf("%s: %v", c.SerialNumber.Text(16), err)
			}
		}
	})

	var encD []byte
	t.Run("A-11 envelope with OpenSSL", func(t *testing.T) {
		encD = openEnvelopeOpenSSL(t, dir, out.EnvelopedKey, keyFile)
		k, err := sm2.NewPrivateKey(encD)
		if err != nil || !k.PublicKey.Equal(encPub) {
			t.Fatalf("the key opened by OpenSSL does not match the encryption certificate (%v)", err)
		}
	})
	if encD == nil {
		t.FailNow()
	}
	t.Run("A-11 envelope with gmsm and tjfoc/gmsm", func(t *testing.T) {
		k, err := sm2.ParseEnvelopedPrivateKey(signKey, out.EnvelopedKey)
		if err != nil || !bytes.Equal(k.D.FillBytes(make([]byte, 32)), encD) {
			t.Fatalf("gmsm: %v", err)
		}
		resp, err := smx509.ParseCSRResponse(signKey, out.CSRResponse)
		if err != nil || !resp.EncryptPrivateKey.PublicKey.Equal(encPub) || !bytes.Equal(resp.EncryptCerts[0].Raw, encCert.Raw) ||
			!bytes.Equal(resp.SignCerts[0].Raw, signCert.Raw) {
			t.Fatalf("GM/T 0092 CSRResponse: %v", err)
		}
		// tjfoc/gmsm, an independent SM2: its ASN.1 decryption of the
		// SM2Cipher, then SM4-ECB block by block.
		tk := &tjsm2.PrivateKey{PublicKey: tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: signKey.X, Y: signKey.Y}, D: signKey.D}
		in := cryptobyte.String(out.EnvelopedKey)
		var seq, c cryptobyte.String
		var pub, enc cryptobyte.String
		in.ReadASN1(&seq, cbasn1.SEQUENCE)
		seq.SkipASN1(cbasn1.SEQUENCE)
		seq.ReadASN1Element(&c, cbasn1.SEQUENCE)
		seq.ReadASN1(&pub, cbasn1.BIT_STRING)
		seq.ReadASN1(&enc, cbasn1.BIT_STRING)
		sym, err := tjsm2.DecryptAsn1(tk, c)
		if err != nil {
			t.Fatalf("tjfoc: %v", err)
		}
		b, _ := tjsm4.NewCipher(sym)
		d := make([]byte, 32)
		b.Decrypt(d[:16], enc[1:17])
		b.Decrypt(d[16:], enc[17:33])
		if !bytes.Equal(d, encD) {
			t.Fatal("tjfoc/gmsm opens a different key")
		}
	})
	t.Run("SKF ENVELOPEDKEYBLOB", func(t *testing.T) {
		k, err := kmc.ParseSKFEnvelopedKey(signKey, out.SKFBlob)
		if err != nil || !bytes.Equal(k.D.FillBytes(make([]byte, 32)), encD) {
			t.Fatalf("skf blob: %v", err)
		}
	})

	// A message encrypted to the encryption certificate now, with OpenSSL;
	// recovered a month later (D-05).
	msg := []byte("message from 2026, decrypt me after recovery")
	certFile, pubFile, msgFile, ctFile := filepath.Join(dir, "enc.pem"), filepath.Join(dir, "enc.pub"), filepath.Join(dir, "msg"), filepath.Join(dir, "msg.ct")
	os.WriteFile(certFile, []byte(out.Encryption.Certificate), 0o600)
	os.WriteFile(msgFile, msg, 0o600)
	os.WriteFile(pubFile, opensslOut(t, "x509", "-in", certFile, "-pubkey", "-noout"), 0o600)
	runOpenSSL(t, "pkeyutl", "-encrypt", "-pubin", "-inkey", pubFile, "-in", msgFile, "-out", ctFile)
	kn.clock.Add(30 * 24 * time.Hour)

	t.Run("D-03 signing keys are never escrowed", func(t *testing.T) {
		st, raw := kn.do("POST", "/api/v1/kmc/escrow/sm2-issuing/"+out.Serial+"/recoveries", "ra",
			map[string]string{"recipient_certificate": out.Certificate, "reason": "r", "case_reference": "c"})
		if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "signing keys are never escrowed") {
			t.Fatalf("recovery of a signing key: %d %s", st, raw)
		}
		st, raw = kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra",
			map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true, "enc_profile": "person-sign"})
		if st != http.StatusUnprocessableEntity {
			t.Fatalf("dual with a signing profile for the KMC key: %d %s", st, raw)
		}
	})

	// The encryption certificate is revoked; its key stays recoverable.
	kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": out.Encryption.Serial, "reason": "keyCompromise"}, nil)

	// The recipient of a judicial recovery: a key recovery officer whose
	// SM2 signing certificate, issued by the platform, is bound to the
	// officer's account.
	recipFile, recipCSR, _ := sm2Subscriber(t, dir, "recipient")
	var recip ca.IssueResponse
	kn.must("POST", "/api/v1/ca/sm2-issuing/certificates", "ra",
		map[string]any{"csr": recipCSR, "profile": "person-sign", "record": map[string]string{"CN": "李四", "id-card": "110105198001010016"}}, &recip)
	kn.account("kro3", "demo", policy.RoleKeyRecovery)
	kn.bindCert("kro3", recip.Certificate)

	var pend kmc.PendingRecovery
	kn.must("POST", "/api/v1/kmc/escrow/sm2-issuing/"+out.Encryption.Serial+"/recoveries", "ra",
		kmc.RecoveryRequest{RecipientCertificate: recip.Certificate, Reason: "court order", CaseReference: "(2026) 京01刑初42号"}, &pend)
	if pend.Required != 2 || pend.Approval == "" || pend.Mode != kmc.ModeJudicial || pend.RecipientSerial != recip.Serial ||
		pend.RecipientStatus != "good" || !strings.Contains(pend.Summary, "key recovery officer kro3") {
		t.Fatalf("pending %+v", pend)
	}
	approve := map[string]string{"payload_hash": pend.PayloadHash}
	execute := "/api/v1/kmc/recoveries/" + pend.Approval + "/execute"
	t.Run("K-01", func(t *testing.T) {
		if st, raw := kn.do("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "ra", approve); st != http.StatusForbidden {
			t.Fatalf("requester approves own recovery: %d %s", st, raw)
		}
		kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro1", approve, nil)
		if st, raw := kn.do("POST", execute, "ra", nil); st != http.StatusForbidden {
			t.Fatalf("one approver where two are required: %d %s", st, raw)
		}
		if st, raw := kn.do("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro1", approve); st != http.StatusConflict {
			t.Fatalf("the same officer twice: %d %s", st, raw)
		}
		kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro2", approve, nil)
	})
	// Carried out with the CLI: `govtrust kms recover --execute`.
	envFile := filepath.Join(dir, "recovered.der")
	mustGovtrust(t, "kms", "recover", "--execute", pend.Approval, "--out", envFile, "--url", "https://"+kn.n.Addresses().HTTPS,
		"--cacert", filepath.Join(kn.dir, "bootstrap", "tls-chain.pem"), "--token-file", filepath.Join(kn.dir, "bootstrap", "ra.token"))
	var rec kmc.RecoveryResponse
	var err error
	if rec.EnvelopedKey, err = os.ReadFile(envFile); err != nil {
		t.Fatal(err)
	}
	if st, _ := kn.do("POST", execute, "ra", nil); st != http.StatusConflict {
		t.Fatalf("a second execution: %d", st)
	}

	t.Run("D-05 recovered key decrypts the month-old message", func(t *testing.T) {
		d := openEnvelopeOpenSSL(t, dir, rec.EnvelopedKey, recipFile)
		if !bytes.Equal(d, encD) {
			t.Fatal("recovered key differs from the delivered one")
		}
		k, _ := sm2.NewPrivateKey(d)
		der, err := smx509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		kf := filepath.Join(dir, "recovered.key")
		os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		if got := opensslOut(t, "pkeyutl", "-decrypt", "-inkey", kf, "-in", ctFile); !bytes.Equal(got, msg) {
			t.Fatalf("decrypted %q", got)
		}
	})

	t.Run("audited", func(t *testing.T) {
		for _, action := range []string{"kmc.key.generate", "kmc.key.bind", "dual.create", "dual.approve", "dual.execute", "kms.key.recover"} {
			var n int
			kn.n.Env().DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM audit_log WHERE action = ?", action).Scan(&n)
			if n == 0 {
				t.Errorf("no audit record %s", action)
			}
		}
	})

	t.Run("no private key in database, logs or answers", func(t *testing.T) {
		haystacks := map[string][]byte{"logs": kn.logs.Bytes()}
		for i, b := range kn.bodies {
			haystacks["answer "+big.NewInt(int64(i)).String()] = b
		}
		if len(haystacks["logs"]) == 0 {
			t.Fatal("no logs to scan")
		}
		files, _ := filepath.Glob(filepath.Join(kn.dir, "govtrust.db*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			haystacks[f] = b
		}
		if len(files) == 0 && db == nil {
			t.Fatal("no database files")
		}
		// Every escrow row, whatever the backend.
		rows, err := kn.n.Env().DB.Query(context.Background(), "SELECT id, public_key, wrapped, sign_public_key FROM kmc_escrow")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var a, b, c []byte
			if err := rows.Scan(&id, &a, &b, &c); err != nil {
				t.Fatal(err)
			}
			haystacks["kmc_escrow "+id] = bytes.Join([][]byte{a, b, c}, nil)
		}
		rows.Close()
		for _, form := range [][]byte{encD, []byte(hex.EncodeToString(encD)), []byte(base64.StdEncoding.EncodeToString(encD))} {
			for where, h := range haystacks {
				if bytes.Contains(h, form) {
					t.Errorf("the encryption private key is in %s", where)
				}
			}
		}
	})
}

// TestKMSCLI drives `govtrust kms` against `govtrust up`: create a key,
// encrypt and decrypt a file with associated data, rotate, list.
func TestKMSCLI(t *testing.T) {
	dir := t.TempDir()
	p := up(t, dir)
	base := "https://" + p.addrs["https"]
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	sec, err := node.ReadBootstrapToken(dir, "secadmin")
	if err != nil {
		t.Fatal(err)
	}
	post := func(path string, body, out any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+sec)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
	var acc struct{ ID string }
	post("/api/v1/accounts", map[string]any{"name": "payroll-app", "kind": "application", "org": "demo", "roles": []string{"application"}}, &acc)
	var tok struct{ Token string }
	post("/api/v1/tokens", map[string]any{"account": acc.ID, "name": "cli", "ttl": "1h"}, &tok)
	appFile := filepath.Join(dir, "app.token")
	if err := os.WriteFile(appFile, []byte(tok.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := func(tokenFile string, args ...string) []string {
		return append(args, "--url", base, "--cacert", filepath.Join(dir, "bootstrap", "tls-chain.pem"), "--token-file", tokenFile)
	}
	secFile := filepath.Join(dir, "bootstrap", "secadmin.token")
	mustGovtrust(t, conn(secFile, "kms", "keys", "--create", "payroll", "--owner", acc.ID)...)
	plain := bytes.Repeat([]byte("工资 salary 12345.67\n"), 1000)
	in, ct, back := filepath.Join(dir, "plain"), filepath.Join(dir, "ct"), filepath.Join(dir, "back")
	os.WriteFile(in, plain, 0o600)
	mustGovtrust(t, conn(appFile, "kms", "encrypt", "payroll", "--in", in, "--out", ct, "--aad", "employee 42")...)
	mustGovtrust(t, conn(secFile, "kms", "rotate", "payroll")...)
	mustGovtrust(t, conn(appFile, "kms", "decrypt", "payroll", "--in", ct, "--out", back, "--aad", "employee 42")...)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, plain) {
		t.Fatal("decrypted file differs")
	}
	if out, code := govtrust(t, conn(appFile, "kms", "decrypt", "payroll", "--in", ct, "--out", back, "--aad", "employee 43")...); code == 0 || !strings.Contains(out, "does not authenticate") {
		t.Fatalf("wrong associated data: exit %d: %s", code, out)
	}
	if out := mustGovtrust(t, conn(secFile, "kms", "keys")...); !strings.Contains(out, "payroll") || !strings.Contains(out, "sm4-gcm") {
		t.Fatalf("keys: %s", out)
	}
}

// BenchmarkDualEnrolment measures dual-certificate enrolments per second
// over HTTPS (signing and encryption certificate, KMC key generation,
// escrow and envelope), SQLite, software keystore, parallel clients.
func BenchmarkDualEnrolment(b *testing.B) {
	kn := startKMCNode(b, nil)
	key, err := sm2.GenerateKey(crand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := smx509.CreateCertificateRequest(crand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "bench"}}, key)
	if err != nil {
		b.Fatal(err)
	}
	body := map[string]any{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), "profile": "person-sign",
		"record": map[string]string{"CN": "张三", "id-card": "11010519491231002X"}, "dual": true}
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if st, raw := kn.post("/api/v1/ca/sm2-issuing/certificates", "ra", body); st != http.StatusCreated {
				b.Errorf("%d %s", st, raw)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enrolments/s")
}

// post is do without keeping the answer (safe for parallel benchmarks).
func (kn *kmcNode) post(path, who string, body any) (int, []byte) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "https://"+kn.n.Addresses().HTTPS+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+kn.tokens[who])
	resp, err := kn.c.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// dualIssue enrols a dual pair for csr and record.
func (kn *kmcNode) dualIssue(csr string, record map[string]string) *ca.DualIssueResponse {
	kn.t.Helper()
	var out ca.DualIssueResponse
	kn.must("POST", "/api/v1/ca/sm2-issuing/certificates", "ra", map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true}, &out)
	return &out
}

// signCert issues a person-sign certificate for csr and record.
func (kn *kmcNode) signCert(csr string, record map[string]string) *ca.IssueResponse {
	kn.t.Helper()
	var out ca.IssueResponse
	kn.must("POST", "/api/v1/ca/sm2-issuing/certificates", "ra", map[string]any{"csr": csr, "profile": "person-sign", "record": record}, &out)
	return &out
}

// approveAll has kro1 and kro2 approve a pending recovery.
func (kn *kmcNode) approveAll(p *kmc.PendingRecovery) {
	kn.t.Helper()
	approve := map[string]string{"payload_hash": p.PayloadHash}
	kn.must("POST", "/api/v1/approvals/"+p.Approval+"/approve", "kro1", approve, nil)
	kn.must("POST", "/api/v1/approvals/"+p.Approval+"/approve", "kro2", approve, nil)
}

func (kn *kmcNode) count(query string, args ...any) int {
	kn.t.Helper()
	var n int
	if err := kn.n.Env().DB.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		kn.t.Fatal(err)
	}
	return n
}

// TestKeyRecoveryRecipient: a subscriber's escrowed key goes only to a
// signing certificate a platform CA issued and has not revoked, of the
// same subscriber (or, judicial, of a key recovery officer: see
// TestDualCertificate), checked when asked and again when carried out.
func TestKeyRecoveryRecipient(t *testing.T) {
	kn := startKMCNode(t, nil)
	dir := t.TempDir()
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	_, csr, _ := sm2Subscriber(t, dir, "subscriber")
	record := map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}
	out := kn.dualIssue(csr, record)
	signCert, encCert := pemCert(t, out.Certificate), pemCert(t, out.Encryption.Certificate)
	path := "/api/v1/kmc/escrow/sm2-issuing/" + out.Encryption.Serial + "/recoveries"
	ask := func(recipient string) (int, []byte) {
		return kn.do("POST", path, "ra", kmc.RecoveryRequest{RecipientCertificate: recipient, Reason: "user lost token", CaseReference: "case-1"})
	}

	// The registration officer's own key in a self-signed certificate with
	// the subscriber's subject and identity extensions.
	raKey, _ := sm2.GenerateKey(crand.Reader)
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: signCert.Subject, ExtraExtensions: signCert.Extensions[:0],
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature}
	for _, e := range signCert.Extensions {
		if strings.HasPrefix(e.Id.String(), "1.2.156.10260.") {
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
		}
	}
	der, err := smx509.CreateCertificate(crand.Reader, tmpl, tmpl, &raKey.PublicKey, raKey)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	// A platform certificate of another person, and one of the same name
	// with another resident ID number.
	_, otherCSR, _ := sm2Subscriber(t, dir, "other")
	other := kn.signCert(otherCSR, map[string]string{"CN": "李四", "id-card": "110105198001010016"})
	_, namesakeCSR, _ := sm2Subscriber(t, dir, "namesake")
	namesake := kn.signCert(namesakeCSR, map[string]string{"CN": "张三", "O": "测试局", "id-card": "110105198001010016"})
	for _, c := range []struct{ name, pem, want string }{
		{"self-signed with the subscriber's names", selfSigned, "not issued by a platform CA"},
		{"another person's", other.Certificate, "neither the subscriber's"},
		{"a namesake's", namesake.Certificate, "neither the subscriber's"},
		{"the encryption certificate", out.Encryption.Certificate, "must be a signing certificate"},
	} {
		if st, raw := ask(c.pem); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), c.want) {
			t.Errorf("recipient %s: %d %s", c.name, st, raw)
		}
	}
	if n := kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'kms.key.recover' AND outcome = 'denied'"); n < 4 {
		t.Errorf("%d refusals audited, want 4", n)
	}

	// The subscriber lost the token: a new signing key and certificate, same
	// registration record. Revoked between the request and its execution.
	_, lostCSR, _ := sm2Subscriber(t, dir, "new1")
	newSign := kn.signCert(lostCSR, record)
	var pend kmc.PendingRecovery
	st, raw := ask(newSign.Certificate)
	if st != http.StatusAccepted {
		t.Fatalf("recovery to the subscriber's new signing certificate: %d %s", st, raw)
	}
	json.Unmarshal(raw, &pend)
	issuer := pemCert(t, newSign.Certificate).Issuer.String()
	if pend.Mode != kmc.ModeUser || pend.RecipientCA != "sm2-issuing" || pend.RecipientSerial != newSign.Serial || pend.RecipientStatus != "good" ||
		!strings.Contains(pend.Summary, "sm2-issuing/"+newSign.Serial) || !strings.Contains(pend.Summary, "issued by "+issuer) ||
		!strings.Contains(pend.Summary, "status good") {
		t.Fatalf("pending %+v", pend)
	}
	// The registration officer who asks had the recipient certificate
	// issued: the approvers are told first.
	if !pend.RecipientByRequester || !strings.HasPrefix(pend.Summary, "ATTENTION: the recipient certificate was issued on ") ||
		!strings.Contains(pend.Summary, "at the request of ra, who asks for this recovery") {
		t.Errorf("a recipient certificate the requester had issued is not pointed out: %+v", pend)
	}
	kn.approveAll(&pend)
	kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": newSign.Serial, "reason": "keyCompromise"}, nil)
	execute := "/api/v1/kmc/recoveries/" + pend.Approval + "/execute"
	if st, raw := kn.do("POST", execute, "ra", nil); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "revoked") {
		t.Fatalf("execution to a certificate revoked since the request: %d %s", st, raw)
	}

	// The legitimate case, asked by another registration officer than the
	// one who had the certificate issued.
	az := kn.n.Env().Authz
	ra2, err := az.CreateAccount(context.Background(), authz.NewAccount{Name: "ra2", Kind: authz.KindPerson, Org: authz.BootstrapDemoOrg,
		Clearance: policy.Internal, Roles: []policy.Role{policy.RoleRA}})
	if err != nil {
		t.Fatal(err)
	}
	if kn.tokens["ra2"], _, err = az.CreateToken(context.Background(), ra2.ID, "test", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	newFile, newCSR, newKey := sm2Subscriber(t, dir, "new2")
	_ = newFile
	newSign = kn.signCert(newCSR, record)
	st, raw = kn.do("POST", path, "ra2", kmc.RecoveryRequest{RecipientCertificate: newSign.Certificate, Reason: "user lost token", CaseReference: "case-1"})
	if st != http.StatusAccepted {
		t.Fatalf("recovery to the subscriber's new signing certificate: %d %s", st, raw)
	}
	pend = kmc.PendingRecovery{}
	json.Unmarshal(raw, &pend)
	if pend.RecipientByRequester || strings.Contains(pend.Summary, "ATTENTION") || !strings.Contains(pend.Summary, "at the request of ra ") {
		t.Errorf("a recipient certificate another officer had issued: %+v", pend)
	}
	kn.approveAll(&pend)
	var rec kmc.RecoveryResponse
	kn.must("POST", "/api/v1/kmc/recoveries/"+pend.Approval+"/execute", "ra", nil, &rec)
	k, err := sm2.ParseEnvelopedPrivateKey(newKey, rec.EnvelopedKey)
	if err != nil || !k.PublicKey.Equal(encCert.PublicKey) {
		t.Fatalf("the recovered key does not open with the new signing key or is not the encryption key (%v)", err)
	}
}

// TestKeyRecoveryEscrowIntegrity: the escrow row's CA and serial are not
// integrity-protected; a recovery delivers a key only if the certificate
// they name certifies it, when asked and when carried out.
func TestKeyRecoveryEscrowIntegrity(t *testing.T) {
	kn := startKMCNode(t, nil)
	dir := t.TempDir()
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	_, csrA, _ := sm2Subscriber(t, dir, "a")
	_, csrB, keyB := sm2Subscriber(t, dir, "b")
	a := kn.dualIssue(csrA, map[string]string{"CN": "张三", "id-card": "11010519491231002X"})
	b := kn.dualIssue(csrB, map[string]string{"CN": "王五", "id-card": "110105198001010016"})
	db := kn.n.Env().DB
	swap := func() {
		t.Helper()
		// Escrow A's row made to name B's encryption certificate (and B's
		// moved aside).
		for _, q := range []string{
			"UPDATE kmc_escrow SET enc_serial = 'moved' WHERE enc_serial = '" + b.Encryption.Serial + "'",
			"UPDATE kmc_escrow SET enc_serial = '" + b.Encryption.Serial + "' WHERE enc_serial = '" + a.Encryption.Serial + "'",
			"UPDATE kmc_escrow SET enc_serial = '" + a.Encryption.Serial + "' WHERE enc_serial = 'moved'",
		} {
			if _, err := db.Exec(context.Background(), q); err != nil {
				t.Fatal(err)
			}
		}
	}
	path := "/api/v1/kmc/escrow/sm2-issuing/" + b.Encryption.Serial + "/recoveries"
	body := kmc.RecoveryRequest{RecipientCertificate: b.Certificate, Reason: "lost", CaseReference: "c"}

	swap()
	if st, raw := kn.do("POST", path, "ra", body); st != http.StatusConflict || !strings.Contains(string(raw), "public keys differ") {
		t.Fatalf("recovery through an altered escrow row: %d %s", st, raw)
	}
	swap() // back

	var pend kmc.PendingRecovery
	kn.must("POST", path, "ra", body, &pend)
	kn.approveAll(&pend)
	swap()
	st, raw := kn.do("POST", "/api/v1/kmc/recoveries/"+pend.Approval+"/execute", "ra", nil)
	if st != http.StatusConflict {
		var rec kmc.RecoveryResponse
		json.Unmarshal(raw, &rec)
		if k, err := sm2.ParseEnvelopedPrivateKey(keyB, rec.EnvelopedKey); err == nil && !k.PublicKey.Equal(pemCert(t, b.Encryption.Certificate).PublicKey) {
			t.Errorf("another subscriber's key was delivered for %s", b.Encryption.Serial)
		}
		t.Fatalf("execution through an altered escrow row: %d %s", st, raw)
	}
	swap() // back
	var rec kmc.RecoveryResponse
	kn.must("POST", "/api/v1/kmc/recoveries/"+pend.Approval+"/execute", "ra", nil, &rec)
	if k, err := sm2.ParseEnvelopedPrivateKey(keyB, rec.EnvelopedKey); err != nil || !k.PublicKey.Equal(pemCert(t, b.Encryption.Certificate).PublicKey) {
		t.Fatalf("recovered key: %v", err)
	}
}

// flakyBind is the platform KMC whose BindCertificate fails the first
// failures times with err, or is slow (delay, then the real Bind with the
// caller's context).
type flakyBind struct {
	ca.KMC
	mu       sync.Mutex
	failures int
	err      error
	delay    time.Duration
	calls    int
}

func (f *flakyBind) BindCertificate(ctx context.Context, id, caID, enc, sign string, notAfter time.Time) error {
	f.mu.Lock()
	f.calls++
	fail := f.calls <= f.failures
	f.mu.Unlock()
	if fail {
		return f.err
	}
	time.Sleep(f.delay)
	return f.KMC.BindCertificate(ctx, id, caID, enc, sign, notAfter)
}

func (kn *kmcNode) escrowStatus() (status, encSerial string) {
	kn.t.Helper()
	var enc sql.NullString
	if err := kn.n.Env().DB.QueryRow(context.Background(), "SELECT status, enc_serial FROM kmc_escrow").Scan(&status, &enc); err != nil {
		kn.t.Fatal(err)
	}
	return status, enc.String
}

func (kn *kmcNode) certStatus(profile string) (serial, status string) {
	kn.t.Helper()
	if err := kn.n.Env().DB.QueryRow(context.Background(), "SELECT serial, status FROM ca_certificates WHERE profile = ?", profile).Scan(&serial, &status); err != nil {
		kn.t.Fatal(err)
	}
	return serial, status
}

// TestDualBindFailure: when the KMC cannot record the escrow of an issued
// pair, the binding is tried again while the error is transient; if it
// still fails, the encryption certificate (whose key is not delivered) is
// revoked, the answer names both certificates, and the KMC's sweep binds
// the escrow to the revoked certificate later by its public key.
func TestDualBindFailure(t *testing.T) {
	record := map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}
	t.Run("transient", func(t *testing.T) {
		f := &flakyBind{failures: 2, err: fmt.Errorf("kmc: %w", store.ErrUnavailable)}
		kn, _ := startKMCNodeWith(t, func(k ca.KMC) ca.KMC { f.KMC = k; return f })
		_, csr, _ := sm2Subscriber(t, t.TempDir(), "subscriber")
		kn.dualIssue(csr, record)
		if st, enc := kn.escrowStatus(); st != kmc.StatusActive || enc == "" || f.calls != 3 {
			t.Fatalf("escrow %s (%s) after %d binds", st, enc, f.calls)
		}
	})
	t.Run("fails", func(t *testing.T) {
		f := &flakyBind{failures: 1 << 30, err: errors.New("simulated: the KMC's database is gone")}
		kn, k := startKMCNodeWith(t, func(k ca.KMC) ca.KMC { f.KMC = k; return f })
		kn.account("kro1", "demo", policy.RoleKeyRecovery)
		kn.account("kro2", "demo", policy.RoleKeyRecovery)
		db := kn.n.Env().DB
		// failed makes a dual request whose binding fails and returns the
		// serials of its encryption and signing certificates.
		seen := map[string]bool{}
		encProf, signProf := "person-enc", "person-sign"
		failed := func(name string) (string, string) {
			t.Helper()
			_, csr, _ := sm2Subscriber(t, t.TempDir(), name)
			st, raw := kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra", map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true})
			var encSerial, encStatus, signSerial, signStatus string
			for _, c := range []struct{ profile, serial, status *string }{{&encProf, &encSerial, &encStatus}, {&signProf, &signSerial, &signStatus}} {
				rows, _ := db.Query(context.Background(), "SELECT serial, status FROM ca_certificates WHERE profile = ?", *c.profile)
				for rows.Next() {
					var serial, status string
					rows.Scan(&serial, &status)
					if !seen[serial] {
						seen[serial], *c.serial, *c.status = true, serial, status
					}
				}
				rows.Close()
			}
			if st != http.StatusServiceUnavailable || !strings.Contains(string(raw), encSerial) || !strings.Contains(string(raw), signSerial) ||
				strings.Contains(string(raw), "enveloped_key") {
				t.Fatalf("dual issuance whose escrow is not recorded: %d %s", st, raw)
			}
			if encStatus != "revoked" || signStatus != "good" {
				t.Fatalf("encryption certificate %s, signing certificate %s", encStatus, signStatus)
			}
			if n := kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE status = 'pending'"); n != 1 {
				t.Fatalf("%d pending escrows", n)
			}
			// The pair was recorded with the encryption certificate, and
			// the KMC, told of its revocation, keeps it with the escrow
			// still waiting for its binding.
			if n := kn.count("SELECT COUNT(*) FROM ca_dual_pairs WHERE sign_serial = ? AND enc_serial = ? AND kmc_pending = 0", signSerial, encSerial); n != 1 {
				t.Fatalf("pair %s/%s not recorded", signSerial, encSerial)
			}
			if n := kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE status = 'pending' AND revocation_reason = 'cessationOfOperation' AND revoked_at IS NOT NULL"); n != 1 {
				t.Fatal("the pending escrow does not record the revocation")
			}
			return encSerial, signSerial
		}
		recover := func(encSerial, signSerial string) {
			t.Helper()
			var signDER []byte
			db.QueryRow(context.Background(), "SELECT der FROM ca_certificates WHERE serial = ?", signSerial).Scan(&signDER)
			var pend kmc.PendingRecovery
			kn.must("POST", "/api/v1/kmc/escrow/sm2-issuing/"+encSerial+"/recoveries", "ra", kmc.RecoveryRequest{
				RecipientCertificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signDER})), Reason: "never delivered", CaseReference: "c"}, &pend)
			if n := kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE status = 'revoked' AND revocation_reason = 'cessationOfOperation' AND enc_serial = ? AND sign_serial = ?", encSerial, signSerial); n != 1 {
				t.Fatalf("escrow of %s not bound as revoked", encSerial)
			}
		}
		// A recovery of the revoked encryption certificate finds the escrow
		// of its key at once.
		recover(failed("subscriber1"))
		// An hour later the sweep binds an escrow nobody asked for.
		enc2, sign2 := failed("subscriber2")
		kn.clock.Add(kmc.PendingMaxAge + time.Minute)
		if bound, abandoned, err := k.Sweep(context.Background()); err != nil || bound != 1 || abandoned != 0 {
			t.Fatalf("sweep: bound %d, abandoned %d, %v", bound, abandoned, err)
		}
		recover(enc2, sign2)
	})
	t.Run("client gives up", func(t *testing.T) {
		f := &flakyBind{delay: 700 * time.Millisecond}
		kn, _ := startKMCNodeWith(t, func(k ca.KMC) ca.KMC { f.KMC = k; return f })
		kn.c.Timeout = 300 * time.Millisecond
		_, csr, _ := sm2Subscriber(t, t.TempDir(), "subscriber")
		b, _ := json.Marshal(map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true})
		req, _ := http.NewRequest("POST", "https://"+kn.n.Addresses().HTTPS+"/api/v1/ca/sm2-issuing/certificates", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+kn.tokens["ra"])
		if resp, err := kn.c.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("the client did not give up")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, enc := kn.escrowStatus()
			if st == kmc.StatusActive && enc != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("escrow %s after the client gave up", st)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, status := kn.certStatus("person-enc"); status != "good" {
			t.Fatalf("encryption certificate %s", status)
		}
	})
}

// TestDualRefusedLeavesNoEscrow: a dual request refused by a profile never
// reaches the KMC; one that fails after the KMC escrowed its key abandons
// the escrow (its wrapped key wiped, audited); and the sweep abandons
// escrows left pending by requests that ended abnormally.
func TestDualRefusedLeavesNoEscrow(t *testing.T) {
	kn, k := startKMCNodeWith(t, func(k ca.KMC) ca.KMC { return k })
	dir := t.TempDir()
	_, csr, _ := sm2Subscriber(t, dir, "subscriber")
	record := map[string]string{"CN": "张三", "id-card": "11010519491231002X"}
	for range 3 {
		st, raw := kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra",
			map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true, "enc_profile": "org-enc"})
		if st != http.StatusUnprocessableEntity && st != http.StatusBadRequest {
			t.Fatalf("dual with org-enc for a person: %d %s", st, raw)
		}
	}
	if n := kn.count("SELECT COUNT(*) FROM kmc_escrow"); n != 0 {
		t.Fatalf("%d escrows for refused requests", n)
	}

	// The signing key was reported compromised: the signing certificate is
	// refused after the KMC escrowed the encryption key.
	first := kn.signCert(csr, record)
	kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": first.Serial, "reason": "keyCompromise"}, nil)
	st, raw := kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra", map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": true})
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "compromised") {
		t.Fatalf("dual with a compromised signing key: %d %s", st, raw)
	}
	if n := kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE status = 'abandoned' AND wrapped IS NULL"); n != 1 {
		t.Fatalf("escrow of the refused request not abandoned (%d)", kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE wrapped IS NOT NULL"))
	}
	if n := kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'kmc.key.abandon'"); n != 1 {
		t.Fatalf("%d kmc.key.abandon audit records", n)
	}

	// A request that died after ApplyKey; an hour later the sweep finds no
	// certificate for the key and abandons it.
	ctx := audit.WithActor(context.Background(), "test")
	key, _ := sm2.GenerateKey(crand.Reader)
	spki, _ := smx509.MarshalPKIXPublicKey(&key.PublicKey)
	if _, err := k.ApplyKey(ctx, &kmc.ApplyKeyRequest{SigningPublicKey: spki, Subject: "CN=x", Org: "demo", Requester: "ra", CA: "sm2-issuing"}); err != nil {
		t.Fatal(err)
	}
	if _, abandoned, err := k.Sweep(ctx); err != nil || abandoned != 0 {
		t.Fatalf("sweep of a fresh escrow: abandoned %d, %v", abandoned, err)
	}
	kn.clock.Add(kmc.PendingMaxAge + time.Minute)
	if bound, abandoned, err := k.Sweep(ctx); err != nil || bound != 0 || abandoned != 1 {
		t.Fatalf("sweep: bound %d, abandoned %d, %v", bound, abandoned, err)
	}
	if n := kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE wrapped IS NOT NULL"); n != 0 {
		t.Fatalf("%d escrowed keys left for no certificate", n)
	}
}

// ocspStatus asks the node's OCSP responder of caID about certificate
// certPEM issued by issuerPEM.
func (kn *kmcNode) ocspStatus(caID, certPEM, issuerPEM string) *ocsp.Response {
	kn.t.Helper()
	cert, issuer := pemCert(kn.t.(*testing.T), certPEM), pemCert(kn.t.(*testing.T), issuerPEM)
	der, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		kn.t.Fatal(err)
	}
	resp, err := http.Post("http://"+kn.n.Addresses().HTTP+"/ocsp/"+caID, "application/ocsp-request", bytes.NewReader(der))
	if err != nil {
		kn.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r, err := ocsp.ParseResponseForCert(raw, cert, issuer)
	if err != nil {
		kn.t.Fatalf("OCSP for %s: %v", cert.SerialNumber, err)
	}
	return r
}

// certRevocation returns the status and the CRLReason code of a
// certificate as the CA recorded it.
func (kn *kmcNode) certRevocation(serial string) (string, int) {
	kn.t.Helper()
	var status string
	var reason sql.NullInt64
	if err := kn.n.Env().DB.QueryRow(context.Background(), "SELECT status, revocation_reason FROM ca_certificates WHERE serial = ?", serial).
		Scan(&status, &reason); err != nil {
		kn.t.Fatal(err)
	}
	return status, int(reason.Int64)
}

// escrowOf returns the status, revocation date and reason of the escrow of
// encryption certificate encSerial.
func (kn *kmcNode) escrowOf(encSerial string) (status, revokedAt, reason string) {
	kn.t.Helper()
	var at, why sql.NullString
	if err := kn.n.Env().DB.QueryRow(context.Background(), "SELECT status, revoked_at, revocation_reason FROM kmc_escrow WHERE enc_serial = ?", encSerial).
		Scan(&status, &at, &why); err != nil {
		kn.t.Fatal(err)
	}
	return status, at.String, why.String
}

// TestDualPairRevocation: revoking the signing certificate of a dual pair
// revokes its encryption certificate with it (same transaction, same
// reason, its own audit record naming the signing certificate, its outbox
// event, OCSP at once), and the KMC records the revocation with the escrow
// (GM/T 0014 RevokeKeyReq); revoking only the encryption certificate
// leaves the signing certificate good, and the KMC records it too. The
// revoked key stays recoverable, and the approval summary says it is
// revoked.
func TestDualPairRevocation(t *testing.T) { dualPairRevocation(t, nil) }

// TestDualPairRevocationPostgres runs the same on PostgreSQL.
func TestDualPairRevocationPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	dualPairRevocation(t, &url)
}

func dualPairRevocation(t *testing.T, db *string) {
	kn := startKMCNode(t, db)
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	record := map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}
	dbh := kn.n.Env().DB
	ctx := context.Background()

	t.Run("signing certificate", func(t *testing.T) {
		_, csr, _ := sm2Subscriber(t, t.TempDir(), "a")
		out := kn.dualIssue(csr, record)
		sign, enc, caID := out.Serial, out.Encryption.Serial, out.CA
		if n := kn.count("SELECT COUNT(*) FROM ca_dual_pairs WHERE issuer_id = ? AND sign_serial = ? AND enc_serial = ?", caID, sign, enc); n != 1 {
			t.Fatalf("pair %s/%s not recorded", sign, enc)
		}
		// OCSP answers made before the revocation, kept in memory.
		if r := kn.ocspStatus(caID, out.Encryption.Certificate, out.Chain[0]); r.Status != ocsp.Good {
			t.Fatalf("OCSP before revocation: %v", r.Status)
		}
		var rev ca.RevokeResponse
		kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": sign, "reason": "keyCompromise"}, &rev)
		if len(rev.AlsoRevoked) != 1 || rev.AlsoRevoked[0] != caID+"/"+enc {
			t.Fatalf("also_revoked %v, want [%s/%s]", rev.AlsoRevoked, caID, enc)
		}
		if st, reason := kn.certRevocation(enc); st != "revoked" || reason != ocsp.ReasonKeyCompromise {
			t.Fatalf("encryption certificate %s (reason %d)", st, reason)
		}
		if r := kn.ocspStatus(caID, out.Encryption.Certificate, out.Chain[0]); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonKeyCompromise {
			t.Fatalf("OCSP for the encryption certificate: %v reason %d", r.Status, r.RevocationReason)
		}
		var details string
		if err := dbh.QueryRow(ctx, "SELECT details FROM audit_log WHERE action = 'ca.certificate.revoke' AND object = ?", "cert/"+caID+"/"+enc).
			Scan(&details); err != nil || !strings.Contains(details, "cert/"+caID+"/"+sign) {
			t.Fatalf("audit of the encryption certificate's revocation: %q %v", details, err)
		}
		if n := kn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'revoked' AND serial = ?", enc); n != 1 {
			t.Fatalf("%d outbox events for %s", n, enc)
		}
		if st, at, reason := kn.escrowOf(enc); st != kmc.StatusRevoked || at == "" || reason != "keyCompromise" {
			t.Fatalf("escrow %s at %q for %q", st, at, reason)
		}
		if n := kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'kmc.key.revoke' AND details LIKE ?", "%"+enc+"%"); n != 1 {
			t.Fatalf("%d kmc.key.revoke records", n)
		}
		// Asked again: nothing new.
		rev = ca.RevokeResponse{}
		kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": sign, "reason": "keyCompromise"}, &rev)
		if len(rev.AlsoRevoked) != 0 || kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'kmc.key.revoke' AND details LIKE ?", "%"+enc+"%") != 1 {
			t.Fatalf("asked again: also_revoked %v", rev.AlsoRevoked)
		}
	})

	t.Run("encryption certificate", func(t *testing.T) {
		_, csr, _ := sm2Subscriber(t, t.TempDir(), "b")
		out := kn.dualIssue(csr, record)
		sign, enc, caID := out.Serial, out.Encryption.Serial, out.CA
		var rev ca.RevokeResponse
		kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": enc, "reason": "superseded"}, &rev)
		if len(rev.AlsoRevoked) != 0 {
			t.Fatalf("also_revoked %v", rev.AlsoRevoked)
		}
		if st, _ := kn.certRevocation(sign); st != "good" {
			t.Fatalf("signing certificate %s", st)
		}
		if r := kn.ocspStatus(caID, out.Certificate, out.Chain[0]); r.Status != ocsp.Good {
			t.Fatalf("OCSP for the signing certificate: %v", r.Status)
		}
		if st, at, reason := kn.escrowOf(enc); st != kmc.StatusRevoked || at == "" || reason != "superseded" {
			t.Fatalf("escrow %s at %q for %q", st, at, reason)
		}
		// The key stays recoverable, to the subscriber's signing
		// certificate; the approvers see that its certificate is revoked.
		var pend kmc.PendingRecovery
		kn.must("POST", "/api/v1/kmc/escrow/sm2-issuing/"+enc+"/recoveries", "ra",
			kmc.RecoveryRequest{RecipientCertificate: out.Certificate, Reason: "new token", CaseReference: "c-2"}, &pend)
		if !strings.Contains(pend.Summary, "REVOKED") || !strings.Contains(pend.Summary, "superseded") {
			t.Fatalf("summary %q", pend.Summary)
		}
		kn.approveAll(&pend)
		var rec kmc.RecoveryResponse
		kn.must("POST", "/api/v1/kmc/recoveries/"+pend.Approval+"/execute", "ra", nil, &rec)
		if len(rec.EnvelopedKey) == 0 {
			t.Fatal("no key recovered")
		}
		// The signing certificate's key compromised afterwards: the
		// encryption certificate's reason becomes keyCompromise, and the
		// KMC learns it.
		kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": sign, "reason": "keyCompromise"}, &rev)
		if st, reason := kn.certRevocation(enc); st != "revoked" || reason != ocsp.ReasonKeyCompromise {
			t.Fatalf("encryption certificate %s (reason %d)", st, reason)
		}
		if st, _, reason := kn.escrowOf(enc); st != kmc.StatusRevoked || reason != "keyCompromise" {
			t.Fatalf("escrow %s for %q", st, reason)
		}
	})

	t.Run("other reason", func(t *testing.T) {
		// An encryption certificate revoked for its own reason keeps it
		// when the signing certificate goes for another.
		_, csr, _ := sm2Subscriber(t, t.TempDir(), "c")
		out := kn.dualIssue(csr, record)
		kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": out.Encryption.Serial, "reason": "superseded"}, nil)
		kn.must("POST", "/api/v1/ca/sm2-issuing/revocations", "ra", map[string]string{"serial": out.Serial, "reason": "affiliationChanged"}, nil)
		if st, reason := kn.certRevocation(out.Encryption.Serial); st != "revoked" || reason != ocsp.ReasonSuperseded {
			t.Fatalf("encryption certificate %s (reason %d)", st, reason)
		}
	})
}

// TestDualPairsBeforeMigration: pairs issued before the CA recorded them
// (migration 00012) are recorded at start from the KMC's escrows; an
// encryption certificate whose signing certificate was revoked before is
// revoked then (the KMC, which starts after the CA, is told a moment
// later), and the KMC learns of an encryption certificate revoked without
// it being told.
func TestDualPairsBeforeMigration(t *testing.T) { dualPairsBeforeMigration(t, nil) }

// TestDualPairsBeforeMigrationPostgres runs the same on PostgreSQL.
func TestDualPairsBeforeMigrationPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	dualPairsBeforeMigration(t, &url)
}

func dualPairsBeforeMigration(t *testing.T, dbURL *string) {
	dir := t.TempDir()
	kn := startNodeAt(t, dir, dbURL, services()...)
	record := map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}
	_, csrA, _ := sm2Subscriber(t, t.TempDir(), "a")
	_, csrB, _ := sm2Subscriber(t, t.TempDir(), "b")
	a, b := kn.dualIssue(csrA, record), kn.dualIssue(csrB, record)
	db := kn.n.Env().DB
	ctx := context.Background()
	// What the code before the pairs left: no pair rows, a signing
	// certificate revoked alone, an encryption certificate revoked
	// without the KMC knowing.
	for _, q := range []string{"DELETE FROM ca_dual_pairs",
		"UPDATE ca_certificates SET status = 'revoked', revoked_at = '2026-01-01T00:00:00Z', revocation_reason = 3 WHERE serial = '" + a.Serial + "'",
		"UPDATE ca_certificates SET status = 'revoked', revoked_at = '2026-01-01T00:00:00Z', revocation_reason = 4 WHERE serial = '" + b.Encryption.Serial + "'"} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := kn.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	kn = startNodeAt(t, dir, dbURL, services()...)
	if n := kn.count("SELECT COUNT(*) FROM ca_dual_pairs"); n != 2 {
		t.Fatalf("%d pairs recorded from the escrows", n)
	}
	if st, reason := kn.certRevocation(a.Encryption.Serial); st != "revoked" || reason != 3 {
		t.Fatalf("encryption certificate of the revoked signing certificate: %s (reason %d)", st, reason)
	}
	if st, _ := kn.certRevocation(b.Serial); st != "good" {
		t.Fatalf("signing certificate of the revoked encryption certificate: %s", st)
	}
	deadline := time.Now().Add(30 * time.Second)
	for kn.count("SELECT COUNT(*) FROM ca_dual_pairs WHERE kmc_pending = 1") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the KMC was never told")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, _, reason := kn.escrowOf(a.Encryption.Serial); st != kmc.StatusRevoked || reason != "affiliationChanged" {
		t.Fatalf("escrow of %s: %s %q", a.Encryption.Serial, st, reason)
	}
	if st, at, reason := kn.escrowOf(b.Encryption.Serial); st != kmc.StatusRevoked || reason != "superseded" || !strings.HasPrefix(at, "2026-01-01") {
		t.Fatalf("escrow of %s: %s %q %q", b.Encryption.Serial, st, at, reason)
	}
}

// TestKeyRecoveryJudicialRecipientByCertificate: the recipient of a judicial
// recovery is the key recovery officer's certificate itself, as bound to
// the officer's account (govtrust account bind-cert), not any certificate
// with its issuer and subject: one a registration officer had the platform
// CA issue with the officer's record for a key of its own is refused. A
// binding made before bindings named their certificate names no recipient
// and says so, and the node names how many there are at start.
func TestKeyRecoveryJudicialRecipientByCertificate(t *testing.T) {
	kn := startKMCNode(t, nil)
	dir := t.TempDir()
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	kn.account("kro3", "demo", policy.RoleKeyRecovery)
	kn.account("kro4", "demo", policy.RoleKeyRecovery)
	_, csr, _ := sm2Subscriber(t, dir, "subscriber")
	out := kn.dualIssue(csr, map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"})
	path := "/api/v1/kmc/escrow/sm2-issuing/" + out.Encryption.Serial + "/recoveries"
	ask := func(recipient string) (int, []byte) {
		return kn.do("POST", path, "ra", kmc.RecoveryRequest{RecipientCertificate: recipient, Reason: "court order", CaseReference: "x"})
	}

	officerRecord := map[string]string{"CN": "李四", "id-card": "110105198001010016"}
	_, kroCSR, _ := sm2Subscriber(t, dir, "kro3")
	kroCert := kn.signCert(kroCSR, officerRecord)
	certFile := filepath.Join(dir, "kro3.pem")
	if err := os.WriteFile(certFile, []byte(kroCert.Certificate), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustGovtrust(t, "account", "bind-cert", "--data", kn.dir, "kro3", certFile); !strings.Contains(got, "SHA-256 "+authz.CertFingerprint(pemCert(t, kroCert.Certificate).Raw)) {
		t.Errorf("bind-cert: %s", got)
	}
	if out, code := govtrust(t, "account", "bind-cert", "--data", kn.dir, "kro4", certFile); code == 0 || !strings.Contains(out, "bound already") {
		t.Errorf("the officer's certificate bound to a second account: %d %s", code, out)
	}

	// The registration officer has a certificate issued with the officer's
	// record for its own key: same issuer, same subject.
	_, raCSR, _ := sm2Subscriber(t, dir, "ra-own")
	forged := kn.signCert(raCSR, officerRecord)
	if a, b := pemCert(t, forged.Certificate), pemCert(t, kroCert.Certificate); a.Subject.String() != b.Subject.String() || a.Issuer.String() != b.Issuer.String() {
		t.Fatalf("the certificates differ by name: %s / %s", a.Subject, b.Subject)
	}
	if st, raw := ask(forged.Certificate); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "nor bound to a key recovery officer") {
		t.Errorf("a certificate with the officer's names for the RA's own key: %d %s", st, raw)
	}
	if n := kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'kms.key.recover' AND outcome = 'denied' AND details LIKE ?", "%"+forged.Serial+"%"); n != 1 {
		t.Errorf("%d refusals naming the certificate audited", n)
	}
	var pend kmc.PendingRecovery
	st, raw := ask(kroCert.Certificate)
	if st != http.StatusAccepted || json.Unmarshal(raw, &pend) != nil || pend.Mode != kmc.ModeJudicial || pend.RecipientSerial != kroCert.Serial ||
		!strings.Contains(pend.Summary, "key recovery officer kro3") {
		t.Fatalf("the officer's own certificate: %d %s", st, raw)
	}

	// A binding of the older release, by issuer and subject only.
	_, oldCSR, _ := sm2Subscriber(t, dir, "kro4")
	oldCert := kn.signCert(oldCSR, map[string]string{"CN": "王五", "id-card": "110105198001010024"})
	oc := pemCert(t, oldCert.Certificate)
	acc, err := kn.n.Env().Authz.AccountByName(context.Background(), "kro4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kn.n.Env().DB.Exec(context.Background(), `INSERT INTO authz_cert_bindings (cert_sha256, issuer, subject, account_id, created_at, mac)
		VALUES ('', ?, ?, ?, '2026-01-01T00:00:00Z', 'mac of the older release')`, oc.Issuer.String(), oc.Subject.String(), acc.ID); err != nil {
		t.Fatal(err)
	}
	if st, raw := ask(oldCert.Certificate); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "bind the officer's certificate again") {
		t.Errorf("a certificate bound by issuer and subject only: %d %s", st, raw)
	}
	tokens := kn.tokens
	if err := kn.n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	kn = startNodeAt(t, kn.dir, nil, services()...)
	kn.tokens = tokens
	if logs := string(kn.logs.Bytes()); !strings.Contains(logs, "bind each certificate again with govtrust account bind-cert") || !strings.Contains(logs, `"count":1`) {
		t.Errorf("no warning at start about the binding of the older release:\n%s", logs)
	}
	mustGovtrust(t, "account", "bind-cert", "--data", kn.dir, "kro4", writeTestFile(t, dir, "kro4.pem", oldCert.Certificate))
	if n := kn.count("SELECT COUNT(*) FROM authz_cert_bindings WHERE cert_sha256 = ''"); n != 0 {
		t.Errorf("%d bindings of the older release left after binding again", n)
	}
	if st, raw := ask(oldCert.Certificate); st != http.StatusAccepted {
		t.Errorf("bound again: %d %s", st, raw)
	}
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKeyRecoveryRecipientDoesNotApprove: the key recovery officer whose
// certificate receives the key in a judicial recovery cannot approve it;
// two other officers must. A request that did not exclude the officer (as
// made by an earlier release) is refused at execution while the officer's
// approval is one of those it needs.
func TestKeyRecoveryRecipientDoesNotApprove(t *testing.T) {
	kn := startKMCNode(t, nil)
	dir := t.TempDir()
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	kn.account("kro3", "demo", policy.RoleKeyRecovery)
	_, csr, _ := sm2Subscriber(t, dir, "subscriber")
	out := kn.dualIssue(csr, map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"})
	encCert := pemCert(t, out.Encryption.Certificate)
	_, kroCSR, kroKey := sm2Subscriber(t, dir, "kro1")
	kroCert := kn.signCert(kroCSR, map[string]string{"CN": "李四", "id-card": "110105198001010016"})
	kn.bindCert("kro1", kroCert.Certificate)
	ask := func() *kmc.PendingRecovery {
		t.Helper()
		var pend kmc.PendingRecovery
		kn.must("POST", "/api/v1/kmc/escrow/sm2-issuing/"+out.Encryption.Serial+"/recoveries", "ra",
			kmc.RecoveryRequest{RecipientCertificate: kroCert.Certificate, Reason: "court order", CaseReference: "x"}, &pend)
		if pend.Mode != kmc.ModeJudicial || !strings.Contains(pend.Summary, "key recovery officer kro1, who may not approve it") {
			t.Fatalf("pending %+v", pend)
		}
		return &pend
	}
	approve := func(p *kmc.PendingRecovery, who string) (int, []byte) {
		return kn.do("POST", "/api/v1/approvals/"+p.Approval+"/approve", who, map[string]string{"payload_hash": p.PayloadHash})
	}
	execute := func(p *kmc.PendingRecovery) (int, []byte) {
		return kn.do("POST", "/api/v1/kmc/recoveries/"+p.Approval+"/execute", "kro1", nil)
	}
	delivered := func(raw []byte) bool {
		var rec kmc.RecoveryResponse
		if json.Unmarshal(raw, &rec) != nil {
			return false
		}
		k, err := sm2.ParseEnvelopedPrivateKey(kroKey, rec.EnvelopedKey)
		return err == nil && k.PublicKey.Equal(encCert.PublicKey)
	}
	acc, err := kn.n.Env().Authz.AccountByName(context.Background(), "kro1")
	if err != nil {
		t.Fatal(err)
	}

	pend := ask()
	if st, raw := approve(pend, "kro1"); st != http.StatusForbidden || !strings.Contains(string(raw), "excluded from approving") {
		t.Errorf("the recipient officer approves: %d %s", st, raw)
	}
	kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro2", map[string]string{"payload_hash": pend.PayloadHash}, nil)
	if st, raw := execute(pend); st != http.StatusForbidden {
		t.Errorf("executed with one other officer's approval: %d %s", st, raw)
	}
	if n := kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'dual.approve' AND outcome = 'denied' AND actor = ? AND details LIKE ?",
		acc.ID, "%excluded-approver%"); n != 1 {
		t.Errorf("%d refused approvals by the recipient audited", n)
	}
	kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro3", map[string]string{"payload_hash": pend.PayloadHash}, nil)
	if st, raw := execute(pend); st != http.StatusOK || !delivered(raw) {
		t.Fatalf("executed with two other officers' approvals: %d %s", st, raw)
	}

	// A request that does not exclude the recipient (an earlier release's).
	pend = ask()
	if _, err := kn.n.Env().DB.Exec(context.Background(), "DELETE FROM dual_excluded WHERE request_id = ?", pend.Approval); err != nil {
		t.Fatal(err)
	}
	kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro1", map[string]string{"payload_hash": pend.PayloadHash}, nil)
	kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro2", map[string]string{"payload_hash": pend.PayloadHash}, nil)
	if st, raw := execute(pend); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "kro1, to whose certificate the key would be delivered, approved") {
		t.Errorf("executed with the recipient's approval counted: %d %s", st, raw)
	}
	kn.must("POST", "/api/v1/approvals/"+pend.Approval+"/approve", "kro3", map[string]string{"payload_hash": pend.PayloadHash}, nil)
	if st, raw := execute(pend); st != http.StatusOK || !delivered(raw) {
		t.Fatalf("executed with two other officers' approvals: %d %s", st, raw)
	}
}

// TestKeyRecoveryRecipientUnderRevokedCA: a recipient certificate whose
// issuing CA's certificate is revoked is refused, when the recovery is
// asked and when it is carried out, though the certificate itself is good.
func TestKeyRecoveryRecipientUnderRevokedCA(t *testing.T) {
	kn := startKMCNode(t, nil)
	dir := t.TempDir()
	kn.account("kro1", "demo", policy.RoleKeyRecovery)
	kn.account("kro2", "demo", policy.RoleKeyRecovery)
	kn.account("kro3", "demo", policy.RoleKeyRecovery)
	az := kn.n.Env().Authz
	for _, name := range []string{"op1", "op2"} {
		acc, err := az.CreateAccount(context.Background(), authz.NewAccount{Name: name, Kind: authz.KindPerson, Org: authz.BootstrapOrg,
			Clearance: policy.Confidential, Roles: []policy.Role{policy.RoleCAOperator}})
		if err != nil {
			t.Fatal(err)
		}
		if kn.tokens[name], _, err = az.CreateToken(context.Background(), acc.ID, "test", nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_, csr, _ := sm2Subscriber(t, dir, "subscriber")
	out := kn.dualIssue(csr, map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"})
	_, kroCSR, _ := sm2Subscriber(t, dir, "kro3")
	kroCert := kn.signCert(kroCSR, map[string]string{"CN": "李四", "id-card": "110105198001010016"})
	kn.bindCert("kro3", kroCert.Certificate)
	ask := func() (int, []byte) {
		return kn.do("POST", "/api/v1/kmc/escrow/sm2-issuing/"+out.Encryption.Serial+"/recoveries", "ra",
			kmc.RecoveryRequest{RecipientCertificate: kroCert.Certificate, Reason: "court order", CaseReference: "x"})
	}
	var pend kmc.PendingRecovery
	if st, raw := ask(); st != http.StatusAccepted || json.Unmarshal(raw, &pend) != nil {
		t.Fatalf("recovery to the officer's certificate: %d %s", st, raw)
	}
	kn.approveAll(&pend)

	// The CA operators revoke the certificate of sm2-issuing, which
	// sm2-root issued.
	var caSerial string
	if err := kn.n.Env().DB.QueryRow(context.Background(), "SELECT serial FROM ca_certificates WHERE issuer_id = 'sm2-root' AND profile = 'sub-ca' AND subject = ?",
		pemCert(t, kroCert.Certificate).Issuer.String()).Scan(&caSerial); err != nil {
		t.Fatalf("sm2-issuing's certificate among sm2-root's: %v", err)
	}
	var revoking ca.PendingRevocation
	kn.must("POST", "/api/v1/ca/sm2-root/revocations", "op1", map[string]string{"serial": caSerial, "reason": "cACompromise"}, &revoking)
	kn.must("POST", "/api/v1/ca/sm2-root/revocations", "op2", map[string]string{"serial": caSerial, "reason": "cACompromise", "approval": revoking.Approval}, nil)

	want := "which was revoked (cACompromise)"
	if st, raw := kn.do("POST", "/api/v1/kmc/recoveries/"+pend.Approval+"/execute", "ra", nil); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), want) {
		t.Errorf("executed to a certificate whose CA was revoked since: %d %s", st, raw)
	}
	if st, raw := ask(); st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), want) {
		t.Errorf("asked to a certificate whose CA is revoked: %d %s", st, raw)
	}
	if n := kn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'kms.key.recover' AND outcome = 'denied' AND details LIKE ?", "%"+want+"%"); n != 2 {
		t.Errorf("%d refusals audited, want 2", n)
	}
}

// forgetfulKMC is the platform KMC that, with forget set, answers that it
// escrows no key (EscrowedKey), so that the CA's own records are tested
// alone.
type forgetfulKMC struct {
	ca.KMC
	forget atomic.Bool
}

func (f *forgetfulKMC) EscrowedKey(ctx context.Context, spki []byte) (string, error) {
	if f.forget.Load() {
		return "", nil
	}
	return f.KMC.EscrowedKey(ctx, spki)
}

// TestSigningCertForEscrowedKey: the encryption key the KMC generated for a
// dual pair, which its holder receives enveloped, is never certified as a
// signing key (GM/T 0014; ACCEPTANCE.md D-03), alone or as the signing key
// of another dual pair: 422 before the KMC makes a key. The CA's records
// (the pair's encryption certificate) refuse it without the KMC's, and the
// KMC's escrows refuse a key it generated for a request whose certificate
// was never stored.
func TestSigningCertForEscrowedKey(t *testing.T) {
	var kmcView *forgetfulKMC
	kn, k := startKMCNodeWith(t, func(x ca.KMC) ca.KMC { kmcView = &forgetfulKMC{KMC: x}; return kmcView })
	dir := t.TempDir()
	_, csr, signKey := sm2Subscriber(t, dir, "subscriber")
	record := map[string]string{"CN": "张三", "O": "测试局", "id-card": "11010519491231002X"}
	out := kn.dualIssue(csr, record)
	encKey, err := sm2.ParseEnvelopedPrivateKey(signKey, out.EnvelopedKey)
	if err != nil {
		t.Fatal(err)
	}
	csrOf := func(key *sm2.PrivateKey) string {
		der, err := smx509.CreateCertificateRequest(crand.Reader, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "subscriber"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	refused := func(what, csr string) {
		t.Helper()
		escrows := kn.count("SELECT COUNT(*) FROM kmc_escrow")
		for _, dual := range []bool{false, true} {
			st, raw := kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra",
				map[string]any{"csr": csr, "profile": "person-sign", "record": record, "dual": dual})
			if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "escrow") {
				t.Errorf("%s, dual=%v: %d %.300s; want 422 (a key the KMC escrows is never a signing key)", what, dual, st, raw)
			}
		}
		if n := kn.count("SELECT COUNT(*) FROM kmc_escrow"); n != escrows {
			t.Errorf("%s: %d escrows made for refused requests", what, n-escrows)
		}
	}
	refused("the pair's encryption key", csrOf(encKey))
	kmcView.forget.Store(true)
	refused("the pair's encryption key, the CA's records alone", csrOf(encKey))
	kmcView.forget.Store(false)

	// A key the KMC generated for a request that ended before its
	// certificate was stored: only the KMC knows it.
	holder, _ := sm2.GenerateKey(crand.Reader)
	holderSPKI, _ := smx509.MarshalPKIXPublicKey(&holder.PublicKey)
	key, err := k.ApplyKey(audit.WithActor(context.Background(), "test"),
		&kmc.ApplyKeyRequest{SigningPublicKey: holderSPKI, Subject: "CN=x", Org: "demo", Requester: "ra", CA: "sm2-issuing"})
	if err != nil {
		t.Fatal(err)
	}
	pendingKey, err := sm2.ParseEnvelopedPrivateKey(holder, key.EnvelopedKey)
	if err != nil {
		t.Fatal(err)
	}
	refused("a pending escrow's key", csrOf(pendingKey))

	// Keys of the holder's own are certified as before.
	own, _ := sm2.GenerateKey(crand.Reader)
	if st, raw := kn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra",
		map[string]any{"csr": csrOf(own), "profile": "person-sign", "record": record}); st != http.StatusCreated {
		t.Errorf("signing certificate for the holder's own key: %d %.300s", st, raw)
	}
}

// TestSweepPastUnsettledEscrows: the KMC's sweep finds the certificates of
// an escrow's key by the key's hash, so a revocation carried over from a
// CRL (a ca_certificates row without a certificate) issued within the hour
// does not keep it from settling escrows; and an escrow it cannot settle
// (here: the CA's row of its key unreadable) is left for the next round,
// counted in the error and logged, an alert once pending a day, while the
// sweep goes on with the escrows after it, however many fail.
func TestSweepPastUnsettledEscrows(t *testing.T) {
	kn, k := startKMCNodeWith(t, func(x ca.KMC) ca.KMC { return x })
	ctx := audit.WithActor(context.Background(), "test")
	db := kn.n.Env().DB
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	apply := func() *kmc.ApplyKeyResponse {
		t.Helper()
		holder, _ := sm2.GenerateKey(crand.Reader)
		spki, _ := smx509.MarshalPKIXPublicKey(&holder.PublicKey)
		out, err := k.ApplyKey(ctx, &kmc.ApplyKeyRequest{SigningPublicKey: spki, Subject: "CN=x", Org: "demo", Requester: "ra", CA: "sm2-issuing"})
		if err != nil {
			t.Fatal(err)
		}
		kn.clock.Add(time.Millisecond) // escrows in the order made
		return out
	}

	// A revocation carried over from a CRL, recorded within the hour after
	// a pending escrow was made.
	apply()
	now := kn.clock.Now().UTC()
	if _, err := db.Exec(ctx, `INSERT INTO ca_certificates
		(issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org, created_at, revoked_at, revocation_reason)
		VALUES ('sm2-issuing', '0abcdef0', '', 'carried-over-revocation', ?, ?, ?, 'revoked', 'system', '', ?, ?, 1)`,
		f(now), f(now.Add(365*24*time.Hour)), []byte{}, f(now.Add(time.Minute)), f(now)); err != nil {
		t.Fatal(err)
	}
	kn.clock.Add(kmc.PendingMaxAge + time.Minute)
	if bound, abandoned, err := k.Sweep(ctx); err != nil || bound != 0 || abandoned != 1 {
		t.Fatalf("sweep past a carried-over revocation: bound %d, abandoned %d, %v; want the escrow without a certificate abandoned", bound, abandoned, err)
	}

	// More escrows than the sweep reads at a time that it cannot settle,
	// made before one it can.
	const stuck = 101
	for i := range stuck {
		key := apply()
		sum := sha256.Sum256(key.PublicKey)
		now := kn.clock.Now().UTC()
		if _, err := db.Exec(ctx, `INSERT INTO ca_certificates
			(issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org, created_at, spki_sha256)
			VALUES ('sm2-issuing', ?, '', 'person-enc', ?, ?, ?, 'good', 'ra', 'demo', ?, ?)`,
			fmt.Sprintf("0b%06x", i), f(now), f(now.Add(365*24*time.Hour)), []byte{0x30, 0x03, 0x02, 0x01, 0x01}, f(now), sum[:]); err != nil {
			t.Fatal(err)
		}
	}
	last := apply()
	kn.clock.Add(kmc.PendingMaxAge + time.Minute)
	bound, abandoned, err := k.Sweep(ctx)
	if bound != 0 || abandoned != 1 || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d pending escrows could not be settled", stuck)) {
		t.Fatalf("sweep: bound %d, abandoned %d, %v; want the last escrow abandoned and %d failures counted", bound, abandoned, err, stuck)
	}
	var status string
	if err := db.QueryRow(ctx, "SELECT status FROM kmc_escrow WHERE id = ?", last.EscrowID).Scan(&status); err != nil || status != "abandoned" {
		t.Fatalf("escrow after the unsettled ones: %q, %v", status, err)
	}
	if n := kn.count("SELECT COUNT(*) FROM kmc_escrow WHERE status = 'pending' AND wrapped IS NOT NULL"); n != stuck {
		t.Errorf("%d escrows pending with their key, want the %d unsettled ones kept", n, stuck)
	}
	if bytes.Contains(kn.logs.Bytes(), []byte("ALERT: kmc: a pending escrow cannot be settled")) {
		t.Error("alert for escrows pending less than a day")
	}
	kn.clock.Add(24 * time.Hour)
	if _, _, err := k.Sweep(ctx); err == nil {
		t.Error("second sweep: no error for the unsettled escrows")
	}
	if n := bytes.Count(kn.logs.Bytes(), []byte("ALERT: kmc: a pending escrow cannot be settled")); n != stuck {
		t.Errorf("%d alerts for %d escrows unsettled for a day", n, stuck)
	}
}
