package main_test

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// The tests drive the module the way its users do: built with
// -buildmode=c-shared and loaded through github.com/miekg/pkcs11, through
// pkcs11-tool, and through a small C client that checks the calling
// conventions miekg hides. TestMain builds the shared object once.
//
// The module is a process-wide singleton (one Go runtime inside the .so, one
// C_Initialize state), so these tests do not run in parallel. Each test
// points it at its own directory with GOVTRUST_P11_DIR, which the module
// reads with getenv(3) at every C_Initialize.

var (
	soPath  string // libgovtrust-p11.so
	cliPath string // the govtrust-p11 command (normal build)
	abiPath string // testdata/abicheck.c, compiled
)

const (
	soPIN   = "87654321"
	userPIN = "123456"
	label   = "official-key"

	// TASS vendor codes, GM-STANDARDS.md §8.
	ckkSM2           = 0x80000004
	ckmSM2KeyPairGen = 0x80008001
	ckmSM2Sign       = 0x80008000
	ckmSM3SM2        = 0x80008100
	ckmSM2Encrypt    = 0x80008200
	ckmSM3           = 0x80000005
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "govtrust-p11-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	soPath = filepath.Join(dir, "libgovtrust-p11.so")
	cliPath = filepath.Join(dir, "govtrust-p11")
	abiPath = filepath.Join(dir, "abicheck")
	os.Unsetenv("GOVTRUST_P11_CONF")
	os.Unsetenv("GOVTRUST_P11_DIR")

	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go tool not found:", err)
		return 1
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	builds := [][]string{
		{goTool, "build", "-buildmode=c-shared", "-o", soPath, "."},
		{goTool, "build", "-o", cliPath, "."},
		{cc, "-std=c99", "-Wall", "-Werror", "-I.", "-o", abiPath, "testdata/abicheck.c", "-ldl"},
	}
	for _, b := range builds {
		cmd := exec.Command(b[0], b[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n%s", strings.Join(b, " "), err, out)
			return 1
		}
	}
	return m.Run()
}

// load points the module at dir and initialises it; the returned context is
// finalised when the test ends.
func load(t *testing.T, dir string) *pkcs11.Ctx {
	t.Helper()
	t.Setenv("GOVTRUST_P11_DIR", dir)
	p := pkcs11.New(soPath)
	if p == nil {
		t.Fatalf("cannot load %s", soPath)
	}
	if err := p.Initialize(); err != nil {
		t.Fatalf("C_Initialize: %v", err)
	}
	t.Cleanup(func() {
		_ = p.Finalize() // tests that finalise themselves get CKR_CRYPTOKI_NOT_INITIALIZED here
		p.Destroy()
	})
	return p
}

// newToken loads the module on a fresh directory and initialises the token
// with C_InitToken and C_InitPIN, as a token vendor's tool would.
func newToken(t *testing.T) (*pkcs11.Ctx, string) {
	t.Helper()
	dir := t.TempDir()
	p := load(t, dir)
	must(t, p.InitToken(0, soPIN, label))
	s := openSession(t, p, true)
	must(t, p.Login(s, pkcs11.CKU_SO, soPIN))
	must(t, p.InitPIN(s, userPIN))
	must(t, p.Logout(s))
	must(t, p.CloseSession(s))
	return p, dir
}

func openSession(t *testing.T, p *pkcs11.Ctx, rw bool) pkcs11.SessionHandle {
	t.Helper()
	flags := uint(pkcs11.CKF_SERIAL_SESSION)
	if rw {
		flags |= pkcs11.CKF_RW_SESSION
	}
	s, err := p.OpenSession(0, flags)
	if err != nil {
		t.Fatalf("C_OpenSession: %v", err)
	}
	return s
}

// userSession opens a R/W session and logs the user in.
func userSession(t *testing.T, p *pkcs11.Ctx) pkcs11.SessionHandle {
	t.Helper()
	s := openSession(t, p, true)
	must(t, p.Login(s, pkcs11.CKU_USER, userPIN))
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantRV checks that err is the PKCS#11 return value rv.
func wantRV(t *testing.T, what string, err error, rv uint) {
	t.Helper()
	var e pkcs11.Error
	if !errors.As(err, &e) || uint(e) != rv {
		t.Fatalf("%s: got %v, want %v", what, err, pkcs11.Error(rv))
	}
}

// keyPair generates a token key pair labelled name.
func keyPair(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, sm2Key bool, name string, extra ...*pkcs11.Attribute) (pub, priv pkcs11.ObjectHandle) {
	t.Helper()
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2KeyPairGen, nil)}
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, name),
	}
	if !sm2Key {
		mech = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}
		pubT = append(pubT, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, mustDER(t, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})))
	}
	privT := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, name),
	}, extra...)
	pub, priv, err := p.GenerateKeyPair(s, mech, pubT, privT)
	if err != nil {
		t.Fatalf("C_GenerateKeyPair(%s): %v", name, err)
	}
	return pub, priv
}

// attr reads one attribute value.
func attr(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle, typ uint) []byte {
	t.Helper()
	as, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
	if err != nil {
		t.Fatalf("C_GetAttributeValue(%#x): %v", typ, err)
	}
	return as[0].Value
}

// ecPoint returns the uncompressed point in a key's CKA_EC_POINT, which is
// a DER OCTET STRING (Mechanisms §2.3.3).
func ecPoint(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle) []byte {
	t.Helper()
	var raw []byte
	rest, err := asn1.Unmarshal(attr(t, p, s, o, pkcs11.CKA_EC_POINT), &raw)
	if err != nil || len(rest) != 0 || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("CKA_EC_POINT is not a DER OCTET STRING of an uncompressed point: %x (%v)", raw, err)
	}
	return raw
}

func find(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, tmpl ...*pkcs11.Attribute) []pkcs11.ObjectHandle {
	t.Helper()
	must(t, p.FindObjectsInit(s, tmpl))
	hs, _, err := p.FindObjects(s, 100)
	must(t, err)
	must(t, p.FindObjectsFinal(s))
	return hs
}

func mustDER(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitRS splits a raw r||s signature and returns r, s and the DER form.
func splitRS(t *testing.T, sig []byte) (r, s *big.Int, der []byte) {
	t.Helper()
	if len(sig) != 64 {
		t.Fatalf("signature is %d bytes, want 64 (r||s)", len(sig))
	}
	r, s = new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	return r, s, mustDER(t, struct{ R, S *big.Int }{r, s})
}

// filesContain reports whether any file under dir contains b.
func filesContain(t *testing.T, dir string, b []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(data, b)
		return nil
	})
	must(t, err)
	return found
}
