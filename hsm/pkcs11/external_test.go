//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
)

// TestExternalSigner: a key pair made on SoftHSM2 by pkcs11-tool, as a
// vendor's personalisation would, without govtrust's metadata, signs
// through ExternalSigner found by label or by id, with the public key of
// its certificate; a public key that is not the pair's is refused, and an
// unknown label is not found.
func TestExternalSigner(t *testing.T) {
	tool := testenv.LookPath(t, "pkcs11-tool")
	tk := newToken(t, "official")
	pkcs11Tool(t, tool, tk, "--login", "--pin", testPIN, "--keypairgen", "--key-type", "EC:prime256v1",
		"--label", "zhang-sign", "--id", "0a0b", "--usage-sign")
	pubFile := filepath.Join(t.TempDir(), "pub.der")
	pkcs11Tool(t, tool, tk, "--read-object", "--type", "pubkey", "--id", "0a0b", "--output-file", pubFile)
	der, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("public key from pkcs11-tool: %v", err)
	}
	km := open(t, tk.config())
	ctx := context.Background()
	for name, find := range map[string]struct {
		label string
		id    []byte
	}{"by label": {label: "zhang-sign"}, "by id": {id: []byte{0x0a, 0x0b}}} {
		t.Run(name, func(t *testing.T) {
			s, err := km.ExternalSigner(ctx, find.label, find.id, pub)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte("公文"))
			sig, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig) {
				t.Error("the signature does not verify with the certificate's key")
			}
			if _, ok := s.(crypto.Decrypter); ok {
				t.Error("an external signer must not decrypt")
			}
		})
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := km.ExternalSigner(ctx, "zhang-sign", nil, other.Public()); err == nil {
		t.Error("a public key that is not the pair's was accepted")
	}
	if _, err := km.ExternalSigner(ctx, "nobody", nil, pub); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("unknown label: %v, want ErrNotFound", err)
	}
}
