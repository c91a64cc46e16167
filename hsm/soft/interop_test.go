package soft

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
)

func writePublicPEM(t *testing.T, dir string, pub crypto.PublicKey) string {
	t.Helper()
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenSSLVerify has OpenSSL 3 verify signatures made through the
// keystore over files: SM2 with the default ID (which OpenSSL 3.0 must be
// told with distid, GM-STANDARDS.md §1.3) and ECDSA P-256.
func TestOpenSSLVerify(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	km := newPassphraseKM(t, newMemStore(), Config{})
	dir := t.TempDir()
	run := func(args ...string) error {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("openssl %v: %w\n%s", args, err, out)
		}
		return nil
	}
	t.Run("sm2", func(t *testing.T) {
		create(t, km, "soft:ca/sm2", hsm.SM2, hsm.UsageSign, "ca")
		s := getSigner(t, km, "soft:ca/sm2", "ca")
		pubFile := writePublicPEM(t, dir, s.Public())
		for i, size := range []int{1, 1000, 65537} {
			msg := make([]byte, size)
			rand.Read(msg)
			sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
			if err != nil {
				t.Fatal(err)
			}
			msgFile, sigFile := filepath.Join(dir, fmt.Sprintf("m%d", i)), filepath.Join(dir, fmt.Sprintf("s%d", i))
			os.WriteFile(msgFile, msg, 0o600)
			os.WriteFile(sigFile, sig, 0o600)
			if err := run("pkeyutl", "-verify", "-pubin", "-inkey", pubFile, "-in", msgFile, "-sigfile", sigFile,
				"-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"); err != nil {
				t.Fatal(err)
			}
			// With another ID (OpenSSL 3.0's default is empty) it must fail:
			// the check is real.
			if err := run("pkeyutl", "-verify", "-pubin", "-inkey", pubFile, "-in", msgFile, "-sigfile", sigFile,
				"-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345679"); err == nil {
				t.Fatal("OpenSSL verified with the wrong ID")
			}
		}
	})
	t.Run("ecdsa", func(t *testing.T) {
		create(t, km, "soft:ca/p256", hsm.ECDSAP256, hsm.UsageSign, "ca")
		s := getSigner(t, km, "soft:ca/p256", "ca")
		if _, ok := s.Public().(*ecdsa.PublicKey); !ok {
			t.Fatal("not ECDSA")
		}
		pubFile := writePublicPEM(t, dir, s.Public())
		msg := []byte("govtrust ecdsa over a file\n")
		d := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		msgFile, sigFile := filepath.Join(dir, "em"), filepath.Join(dir, "es")
		os.WriteFile(msgFile, msg, 0o600)
		os.WriteFile(sigFile, sig, 0o600)
		if err := run("dgst", "-sha256", "-verify", pubFile, "-signature", sigFile, msgFile); err != nil {
			t.Fatal(err)
		}
	})
}
