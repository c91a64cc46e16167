package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/testenv"
)

// party is a test certificate holder: a CA-issued leaf and its key.
type party struct {
	name    string
	cert    *smx509.Certificate
	key     crypto.Signer
	root    *smx509.Certificate
	rootKey crypto.Signer
	// PEM files for OpenSSL.
	certPEM, keyPEM, rootPEM string
}

var (
	pkiOnce sync.Once
	pkiDir  string
	parties map[string]*party
)

func genKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "sm2":
		k, err = sm2.GenerateKey(rand.Reader)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil || k == nil {
		t.Fatalf("generate %s key: %v", alg, err)
	}
	return k
}

func sigAlgFor(k crypto.Signer) smx509.SignatureAlgorithm {
	switch p := k.Public().(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(p) {
			return smx509.SM2WithSM3
		}
		if p.Curve == elliptic.P384() {
			return smx509.ECDSAWithSHA384
		}
		return smx509.ECDSAWithSHA256
	}
	return smx509.SHA256WithRSA
}

var serial int64 = 100

func issue(t testing.TB, cn string, key crypto.Signer, issuer *smx509.Certificate, issuerKey crypto.Signer, ca bool, notBefore, notAfter time.Time) *smx509.Certificate {
	t.Helper()
	serial++
	tmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"govtrust test"}},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:           smx509.KeyUsageDigitalSignature | smx509.KeyUsageKeyEncipherment | smx509.KeyUsageKeyAgreement,
		SignatureAlgorithm: sigAlgFor(issuerKey),
		SubjectKeyId:       big.NewInt(serial * 7919).Bytes(),
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign
	}
	parent := tmpl
	if issuer != nil {
		parent = issuer
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), issuerKey)
	if err != nil {
		t.Fatalf("issue %s: %v", cn, err)
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writePEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pki returns the test parties, made once per test binary: sm2, p256,
// p384 and rsa leaves, each under its own root of the same algorithm.
func pki(t testing.TB) map[string]*party {
	t.Helper()
	pkiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cms-pki-")
		if err != nil {
			t.Fatal(err)
		}
		pkiDir = dir
		parties = map[string]*party{}
		now := time.Now()
		for _, alg := range []string{"sm2", "p256", "p384", "rsa"} {
			rk := genKey(t, alg)
			root := issue(t, alg+" root", rk, nil, rk, true, now.Add(-time.Hour), now.Add(24*time.Hour))
			lk := genKey(t, alg)
			leaf := issue(t, alg+" signer", lk, root, rk, false, now.Add(-time.Hour), now.Add(24*time.Hour))
			p := &party{name: alg, cert: leaf, key: lk, root: root, rootKey: rk}
			p.certPEM = writePEM(t, filepath.Join(dir, alg+".pem"), "CERTIFICATE", leaf.Raw)
			p.rootPEM = writePEM(t, filepath.Join(dir, alg+"-root.pem"), "CERTIFICATE", root.Raw)
			k8, err := smx509.MarshalPKCS8PrivateKey(lk)
			if err != nil {
				t.Fatal(err)
			}
			p.keyPEM = writePEM(t, filepath.Join(dir, alg+".key"), "PRIVATE KEY", k8)
			parties[alg] = p
		}
	})
	if parties == nil {
		t.Fatal("test PKI not built")
	}
	return parties
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pkiDir != "" {
		os.RemoveAll(pkiDir)
	}
	os.Exit(code)
}

// run runs a command and returns its combined output and error.
func run(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func openssl(t testing.TB) string {
	t.Helper()
	return testenv.LookPath(t, "openssl")
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
