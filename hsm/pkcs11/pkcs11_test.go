//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
	p11 "github.com/miekg/pkcs11"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The tests run against SoftHSM2 (Debian softhsm2). Each test makes its own
// token directory and softhsm2.conf and points SOFTHSM2_CONF at it with
// t.Setenv, so no test in this package runs in parallel; SoftHSM2 reads the
// file at C_Initialize, which the module registry calls again once every key
// manager of the previous test is closed.

const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	testPIN       = "1234"
	testSOPIN     = "12345678"
)

// token is a SoftHSM2 token made for one test.
type token struct {
	module string
	label  string
}

// newToken initialises a fresh SoftHSM2 token labelled label.
func newToken(t testing.TB, label string) *token {
	t.Helper()
	util := testenv.LookPath(t, "softhsm2-util")
	module := testenv.File(t, softhsmModule, "SoftHSM2 PKCS#11 module")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\nslots.mechanisms = ALL\n",
		filepath.Join(dir, "tokens"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", label,
		"--so-pin", testSOPIN, "--pin", testPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return &token{module: module, label: label}
}

func (tk *token) config() Config {
	return Config{Module: tk.module, Token: tk.label, PIN: testPIN}
}

// open opens a key manager closed at the end of the test.
func open(t testing.TB, cfg Config) *KeyManager {
	t.Helper()
	km, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := km.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return km
}

func create(t testing.TB, km *KeyManager, object string, alg hsm.Algorithm, usage hsm.Usage, service string) *hsm.KeyInfo {
	t.Helper()
	info, err := km.CreateKey(context.Background(), &hsm.CreateKeyRequest{
		URI: "pkcs11:token=" + km.token + ";object=" + object, Algorithm: alg, Usage: usage, Service: service,
	})
	if err != nil {
		t.Fatalf("CreateKey %s %s: %v", object, alg, err)
	}
	return info
}

func signer(t testing.TB, km *KeyManager, uri, service string) crypto.Signer {
	t.Helper()
	s, err := km.Signer(context.Background(), &hsm.SignerRequest{URI: uri, Service: service})
	if err != nil {
		t.Fatalf("Signer %s: %v", uri, err)
	}
	return s
}

// sm2Sig splits a DER SM2 signature for tjfoc/gmsm.
func sm2Sig(t testing.TB, sig []byte) (r, s *big.Int) {
	t.Helper()
	r, s = new(big.Int), new(big.Int)
	in := cryptobyte.String(sig)
	var inner cryptobyte.String
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() || !inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		t.Fatalf("malformed signature %x", sig)
	}
	return r, s
}

// tjfocPub converts an SM2 public key for tjfoc/gmsm.
func tjfocPub(t testing.TB, pub *ecdsa.PublicKey) *tjsm2.PublicKey {
	t.Helper()
	point, err := sm2Point(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(point[1:33]), Y: new(big.Int).SetBytes(point[33:])}
}

// verifySM2 checks an SM2 signature over msg with uid with gmsm and, as an
// independent implementation, tjfoc/gmsm.
func verifySM2(t testing.TB, pub *ecdsa.PublicKey, uid, msg, sig []byte) {
	t.Helper()
	if !sm2.VerifyASN1WithSM2(pub, uid, msg, sig) {
		t.Errorf("gmsm: SM2 signature does not verify (uid %q)", uid)
	}
	r, s := sm2Sig(t, sig)
	if !tjsm2.Sm2Verify(tjfocPub(t, pub), msg, uid, r, s) {
		t.Errorf("tjfoc/gmsm: SM2 signature does not verify (uid %q)", uid)
	}
}

func TestSignVerify(t *testing.T) {
	tk := newToken(t, "sign")
	km := open(t, tk.config())
	msg := []byte("govtrust test message")
	d256 := sha256.Sum256(msg)
	d384 := sha512.Sum384(msg)

	tests := []struct {
		alg    hsm.Algorithm
		verify func(t *testing.T, s crypto.Signer)
	}{
		{hsm.ECDSAP256, func(t *testing.T, s crypto.Signer) {
			sig, err := s.Sign(rand.Reader, d256[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d256[:], sig) {
				t.Error("ECDSA P-256 signature does not verify")
			}
		}},
		{hsm.ECDSAP384, func(t *testing.T, s crypto.Signer) {
			sig, err := s.Sign(rand.Reader, d384[:], crypto.SHA384)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d384[:], sig) {
				t.Error("ECDSA P-384 signature does not verify")
			}
		}},
		{hsm.RSA2048, func(t *testing.T, s crypto.Signer) {
			pub := s.Public().(*rsa.PublicKey)
			if pub.N.BitLen() != 2048 {
				t.Errorf("modulus has %d bits", pub.N.BitLen())
			}
			sig, err := s.Sign(rand.Reader, d256[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d256[:], sig); err != nil {
				t.Errorf("PKCS#1 v1.5: %v", err)
			}
			for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 20} {
				opts := &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA256}
				sig, err := s.Sign(rand.Reader, d256[:], opts)
				if err != nil {
					t.Fatalf("PSS salt %d: %v", salt, err)
				}
				if err := rsa.VerifyPSS(pub, crypto.SHA256, d256[:], sig, opts); err != nil {
					t.Errorf("PSS salt %d: %v", salt, err)
				}
			}
		}},
		{hsm.SM2, func(t *testing.T, s crypto.Signer) {
			pub := s.Public().(*ecdsa.PublicKey)
			if !sm2.IsSM2PublicKey(pub) {
				t.Fatal("public key is not on the SM2 curve")
			}
			// gmsm's contract: the message with the default or a given
			// user ID, or a precomputed e.
			sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
			if err != nil {
				t.Fatal(err)
			}
			verifySM2(t, pub, hsm.DefaultSM2UID, msg, sig)
			uid := []byte("ALICE123@YAHOO.COM")
			sig, err = s.Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, uid))
			if err != nil {
				t.Fatal(err)
			}
			verifySM2(t, pub, uid, msg, sig)
			if sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
				t.Error("custom-UID signature verifies under the default UID")
			}
			e, err := sm2.CalculateSM2Hash(pub, msg, hsm.DefaultSM2UID)
			if err != nil {
				t.Fatal(err)
			}
			sig, err = s.Sign(rand.Reader, e, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			verifySM2(t, pub, hsm.DefaultSM2UID, msg, sig)
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			info := create(t, km, "key-"+string(tt.alg), tt.alg, hsm.UsageSign, "ca")
			if info.Public == nil || info.Algorithm != tt.alg || info.Backend != "pkcs11" || info.Token != "sign" {
				t.Errorf("KeyInfo = %+v", info)
			}
			s := signer(t, km, info.URI, "ca")
			if !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(info.Public) {
				t.Error("signer public key differs from KeyInfo.Public")
			}
			tt.verify(t, s)
		})
	}
}

func TestDecrypt(t *testing.T) {
	tk := newToken(t, "dec")
	km := open(t, tk.config())
	ctx := context.Background()
	secret := []byte("a 32-byte data encryption key!!!")

	t.Run("sm2", func(t *testing.T) {
		info := create(t, km, "kmc-enc", hsm.SM2, hsm.UsageDecrypt, "kmc")
		if info.Location != hsm.LocationWrapped {
			t.Errorf("location %q", info.Location)
		}
		d, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: info.URI, Service: "kmc"})
		if err != nil {
			t.Fatal(err)
		}
		pub := d.Public().(*ecdsa.PublicKey)
		plain, err := sm2.Encrypt(rand.Reader, pub, secret, nil) // C1||C3||C2
		if err != nil {
			t.Fatal(err)
		}
		asn, err := sm2.EncryptASN1(rand.Reader, pub, secret)
		if err != nil {
			t.Fatal(err)
		}
		for name, ct := range map[string][]byte{"c1c3c2": plain, "asn1": asn} {
			got, err := d.Decrypt(rand.Reader, ct, nil)
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("%s: Decrypt = %q, %v", name, got, err)
			}
		}
		ct := bytes.Clone(plain)
		ct[len(ct)-1] ^= 1
		if _, err := d.Decrypt(rand.Reader, ct, nil); err == nil {
			t.Error("tampered ciphertext decrypted")
		}
		if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "kmc"}); !errors.Is(err, hsm.ErrKeySeparation) {
			t.Errorf("Signer on a decryption key: %v, want ErrKeySeparation", err)
		}
	})
	t.Run("rsa-oaep", func(t *testing.T) {
		info := create(t, km, "rsa-enc", hsm.RSA2048, hsm.UsageDecrypt, "kmc")
		d, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: info.URI, Service: "kmc"})
		if err != nil {
			t.Fatal(err)
		}
		// SoftHSM2 2.6 implements OAEP with SHA-1 and MGF1-SHA1 and an
		// empty label only (MechParamCheckRSAPKCSOAEP); the parameters are
		// passed to the token as given.
		ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, d.Public().(*rsa.PublicKey), secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA1})
		if err != nil || !bytes.Equal(got, secret) {
			t.Errorf("Decrypt = %q, %v", got, err)
		}
		ct[len(ct)-1] ^= 1
		if _, err := d.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA1}); err == nil {
			t.Error("tampered OAEP ciphertext decrypted")
		}
		if _, err := d.Decrypt(rand.Reader, ct, nil); !errors.Is(err, hsm.ErrUnsupported) {
			t.Errorf("PKCS#1 v1.5 decryption: %v, want ErrUnsupported", err)
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		_, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "pkcs11:object=x", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageDecrypt, Service: "kmc"})
		if !errors.Is(err, hsm.ErrUnsupported) {
			t.Errorf("ECDSA decryption key: %v, want ErrUnsupported", err)
		}
	})
}

func TestKeySeparation(t *testing.T) {
	tk := newToken(t, "sep")
	km := open(t, tk.config())
	ctx := context.Background()
	ca := create(t, km, "ca-root", hsm.ECDSAP256, hsm.UsageSign, "ca")
	tsa := create(t, km, "tsa-1", hsm.SM2, hsm.UsageSign, "tsa")
	for _, tt := range []struct {
		uri, service string
	}{
		{ca.URI, "tsa"}, {ca.URI, "seal"}, {ca.URI, ""}, {tsa.URI, "ca"},
	} {
		if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: tt.uri, Service: tt.service}); !errors.Is(err, hsm.ErrKeySeparation) {
			t.Errorf("Signer(%s, %q) = %v, want ErrKeySeparation", tt.uri, tt.service, err)
		}
	}
	if _, err := km.Decrypter(ctx, &hsm.DecrypterRequest{URI: ca.URI, Service: "ca"}); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("Decrypter on a signing key: %v", err)
	}
	if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: ca.URI, Service: "tsa"}); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("DeleteKey by another service: %v", err)
	}
	// The private key on the token can only sign: the usage is enforced by
	// the token too, not only by the metadata.
	err := km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		obj, err := km.object(h, gen, p11.CKO_PRIVATE_KEY, mustID(t, ca.URI))
		if err != nil {
			return err
		}
		attrs, err := km.mod.ctx.GetAttributeValue(h, obj, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_DECRYPT, nil), p11.NewAttribute(p11.CKA_UNWRAP, nil), p11.NewAttribute(p11.CKA_DERIVE, nil),
		})
		if err != nil {
			return err
		}
		for _, a := range attrs {
			if !bytes.Equal(a.Value, []byte{0}) {
				t.Errorf("attribute %#x = %x, want false", a.Type, a.Value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustID(t testing.TB, uri string) []byte {
	t.Helper()
	u, err := hsm.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(u.Get("id"))
}

func TestListDeletePersistence(t *testing.T) {
	tk := newToken(t, "persist")
	cfg := tk.config()
	ctx := context.Background()
	km, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = km.Close() })
	p256 := create(t, km, "ca-issuing", hsm.ECDSAP256, hsm.UsageSign, "ca")
	sm := create(t, km, "seal-1", hsm.SM2, hsm.UsageSign, "seal")
	aes := create(t, km, "kek-1", hsm.AES256, hsm.UsageWrap, "kms")
	if _, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "pkcs11:object=ca-issuing", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: "ca"}); !errors.Is(err, hsm.ErrExists) {
		t.Errorf("second key with one label: %v, want ErrExists", err)
	}
	msg := []byte("before restart")
	sig, err := signer(t, km, sm.URI, "seal").Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: p256.URI, Service: "ca"}); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Signer after Close: %v", err)
	}

	km = open(t, cfg)
	keys, err := km.ListKeys(ctx, &hsm.ListKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	byLabel := map[string]*hsm.KeyInfo{}
	for _, k := range keys {
		byLabel[k.Label] = k
	}
	if len(keys) != 3 {
		t.Fatalf("ListKeys returned %d keys, want 3: %+v", len(keys), keys)
	}
	for _, want := range []*hsm.KeyInfo{p256, sm, aes} {
		got := byLabel[want.Label]
		if got == nil {
			t.Errorf("key %q not listed", want.Label)
			continue
		}
		if got.URI != want.URI || got.Service != want.Service || got.Usage != want.Usage ||
			got.Algorithm != want.Algorithm || got.Location != want.Location || !got.Created.Equal(want.Created) {
			t.Errorf("after restart %+v, before %+v", got, want)
		}
		if want.Public != nil && !got.Public.(interface{ Equal(crypto.PublicKey) bool }).Equal(want.Public) {
			t.Errorf("%s: public key changed", want.Label)
		}
	}
	if ks, err := km.ListKeys(ctx, &hsm.ListKeysRequest{Service: "seal"}); err != nil || len(ks) != 1 || ks[0].Label != "seal-1" {
		t.Errorf("ListKeys(seal) = %v, %v", ks, err)
	}
	// The SM2 key unwraps after the restart and signs for the same public key.
	if !sm2.VerifyASN1WithSM2(sm.Public.(*ecdsa.PublicKey), nil, msg, sig) {
		t.Error("signature from before the restart does not verify")
	}
	sig, err = signer(t, km, "pkcs11:object=seal-1", "seal").Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		t.Fatal(err)
	}
	verifySM2(t, sm.Public.(*ecdsa.PublicKey), hsm.DefaultSM2UID, msg, sig)
	// Lookup by id alone works as well.
	if _, err := km.PublicKey(ctx, &hsm.PublicKeyRequest{URI: (&hsm.URI{Scheme: "pkcs11", Attrs: map[string]string{"id": string(mustID(t, p256.URI))}}).String()}); err != nil {
		t.Errorf("PublicKey by id: %v", err)
	}
	if _, err := km.PublicKey(ctx, &hsm.PublicKeyRequest{URI: "pkcs11:token=other;object=ca-issuing"}); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("PublicKey on another token: %v", err)
	}

	for _, k := range []*hsm.KeyInfo{p256, sm, aes} {
		if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: k.URI, Service: k.Service}); err != nil {
			t.Fatalf("DeleteKey %s: %v", k.Label, err)
		}
		if _, err := km.PublicKey(ctx, &hsm.PublicKeyRequest{URI: k.URI}); !errors.Is(err, hsm.ErrNotFound) {
			t.Errorf("PublicKey after delete: %v", err)
		}
		if err := km.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: k.URI, Service: k.Service}); !errors.Is(err, hsm.ErrNotFound) {
			t.Errorf("second DeleteKey: %v", err)
		}
	}
	if keys, err := km.ListKeys(ctx, nil); err != nil || len(keys) != 0 {
		t.Errorf("ListKeys after delete = %v, %v", keys, err)
	}
	// Nothing of the keys is left on the token: only the SM2 wrapping key.
	tool := testenv.LookPath(t, "pkcs11-tool")
	out := pkcs11Tool(t, tool, tk, "--login", "--pin", testPIN, "--list-objects")
	for _, l := range []string{"ca-issuing", "seal-1", "kek-1"} {
		if strings.Contains(out, l) {
			t.Errorf("object %q still on the token:\n%s", l, out)
		}
	}
}

func pkcs11Tool(t testing.TB, tool string, tk *token, args ...string) string {
	t.Helper()
	args = append([]string{"--module", tk.module, "--token-label", tk.label}, args...)
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// objectBlocks splits pkcs11-tool --list-objects output into one block per
// object.
func objectBlocks(out string) []string {
	var blocks []string
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasPrefix(line, " ") {
			blocks = append(blocks, line+"\n")
			continue
		}
		if len(blocks) > 0 && strings.HasPrefix(line, " ") {
			blocks[len(blocks)-1] += line + "\n"
		}
	}
	return blocks
}

func findBlock(t testing.TB, blocks []string, kind, label string) string {
	t.Helper()
	for _, b := range blocks {
		if strings.HasPrefix(b, kind) && strings.Contains(b, "label:      "+label+"\n") {
			return b
		}
	}
	t.Fatalf("no %q object labelled %q in %q", kind, label, blocks)
	return ""
}

// TestE01NotExtractable performs ACCEPTANCE.md E-01: the issuing key made by
// the product is sensitive and never extractable, and cannot be read.
func TestE01NotExtractable(t *testing.T) {
	tool := testenv.LookPath(t, "pkcs11-tool")
	tk := newToken(t, "e01")
	km := open(t, tk.config())
	ctx := context.Background()
	info := create(t, km, "ca-issuing", hsm.ECDSAP256, hsm.UsageSign, "ca")
	create(t, km, "sm2-seal", hsm.SM2, hsm.UsageSign, "seal")

	blocks := objectBlocks(pkcs11Tool(t, tool, tk, "--login", "--pin", testPIN, "--list-objects"))
	priv := findBlock(t, blocks, "Private Key Object; EC", "ca-issuing")
	// pkcs11-tool 0.23 prints the flags in this order and wording.
	if !strings.Contains(priv, "Access:     sensitive, always sensitive, never extractable, local\n") {
		t.Errorf("private key access flags:\n%s", priv)
	}
	if !strings.Contains(priv, "Usage:      sign\n") {
		t.Errorf("private key usage:\n%s", priv)
	}
	wrap := findBlock(t, blocks, "Secret Key Object; AES", DefaultWrapKeyLabel)
	if !strings.Contains(wrap, "sensitive, always sensitive, never extractable, local") {
		t.Errorf("SM2 wrapping key access flags:\n%s", wrap)
	}
	// No private key object exists for the wrapped SM2 key.
	for _, b := range blocks {
		if strings.HasPrefix(b, "Private Key Object") && strings.Contains(b, "sm2-seal") {
			t.Errorf("wrapped SM2 key has a private key object:\n%s", b)
		}
	}

	// Reading the private object fails: pkcs11-tool refuses and writes
	// nothing...
	outFile := filepath.Join(t.TempDir(), "priv.der")
	cmd := exec.Command(tool, "--module", tk.module, "--token-label", tk.label, "--login", "--pin", testPIN,
		"--read-object", "--type", "privkey", "--label", "ca-issuing", "-o", outFile)
	out, _ := cmd.CombinedOutput()
	if b, err := os.ReadFile(outFile); err == nil && len(b) > 0 {
		t.Errorf("pkcs11-tool read %d bytes of the private key:\n%s", len(b), out)
	}
	// ...and so does the token, asked directly for the value or to wrap it
	// under a key the caller could extract.
	err := km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		c := km.mod.ctx
		obj, err := km.object(h, gen, p11.CKO_PRIVATE_KEY, mustID(t, info.URI))
		if err != nil {
			return err
		}
		_, err = c.GetAttributeValue(h, obj, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Errorf("reading CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		kek, err := c.GenerateKey(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_VALUE_LEN, 32), p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_WRAP, true), p11.NewAttribute(p11.CKA_EXTRACTABLE, true), p11.NewAttribute(p11.CKA_SENSITIVE, false),
		})
		if err != nil {
			return err
		}
		defer func() { _ = c.DestroyObject(h, kek) }()
		if _, err := c.WrapKey(h, wrapMech, kek, obj); !errors.Is(err, p11.Error(p11.CKR_KEY_UNEXTRACTABLE)) {
			t.Errorf("wrapping the private key: %v, want CKR_KEY_UNEXTRACTABLE", err)
		}
		// Neither can the SM2 wrapping key be wrapped out.
		wk, err := km.wrapKey(h, DefaultWrapKeyLabel, false)
		if err != nil {
			return err
		}
		if _, err := c.WrapKey(h, wrapMech, kek, wk); !errors.Is(err, p11.Error(p11.CKR_KEY_UNEXTRACTABLE)) {
			t.Errorf("wrapping the SM2 wrapping key: %v, want CKR_KEY_UNEXTRACTABLE", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestE05Location performs ACCEPTANCE.md E-05 for this backend: every key is
// reported with module, slot, token, label, algorithm and where it lives, and
// the SM2 key is not reported as hardware on a token whose mechanism list
// (pkcs11-tool -M) has no SM2.
func TestE05Location(t *testing.T) {
	tool := testenv.LookPath(t, "pkcs11-tool")
	tk := newToken(t, "e05")
	km := open(t, tk.config())
	create(t, km, "ca-issuing", hsm.ECDSAP256, hsm.UsageSign, "ca")
	create(t, km, "seal-sm2", hsm.SM2, hsm.UsageSign, "seal")
	create(t, km, "kek", hsm.AES256, hsm.UsageWrap, "kms")

	mechs := pkcs11Tool(t, tool, tk, "-M")
	if !strings.Contains(mechs, "ECDSA") || strings.Contains(strings.ToLower(mechs), "sm2") || strings.Contains(mechs, "mechtype-0x8") {
		t.Fatalf("unexpected SoftHSM2 mechanism list:\n%s", mechs)
	}
	keys, err := km.ListKeys(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]hsm.Location{"ca-issuing": hsm.LocationHardware, "seal-sm2": hsm.LocationWrapped, "kek": hsm.LocationHardware}
	slot := fmt.Sprint(km.pool.currentSlot())
	for _, k := range keys {
		if k.Location != want[k.Label] {
			t.Errorf("%s: location %q, want %q", k.Label, k.Location, want[k.Label])
		}
		if k.Module != softhsmModule || k.Token != "e05" || k.Slot != slot || k.Backend != "pkcs11" ||
			!strings.Contains(k.URI, "object="+k.Label) || !strings.Contains(k.URI, "token=e05") || !strings.Contains(k.URI, "id=") {
			t.Errorf("%s: %+v", k.Label, k)
		}
		delete(want, k.Label)
	}
	if len(want) != 0 {
		t.Errorf("keys not listed: %v", want)
	}
}

func TestWrongPIN(t *testing.T) {
	tk := newToken(t, "pin")
	cfg := tk.config()
	cfg.PIN = "98765"
	km, err := New(context.Background(), cfg)
	if !errors.Is(err, hsm.ErrPIN) || km != nil {
		t.Fatalf("New with wrong PIN = %v, %v; want nil, ErrPIN", km, err)
	}
	if strings.Contains(err.Error(), cfg.PIN) {
		t.Errorf("error shows the PIN: %v", err)
	}
	// The module was released: the right PIN works afterwards, and the
	// error above did not come from a half-open key manager.
	km = open(t, tk.config())
	if err := km.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestUnavailable(t *testing.T) {
	tk := newToken(t, "here")
	slot := uint(4242)
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"missing token", Config{Module: tk.module, Token: "absent", PIN: testPIN}},
		{"missing slot", Config{Module: tk.module, Slot: &slot, PIN: testPIN}},
		{"missing module", Config{Module: filepath.Join(t.TempDir(), "nope.so"), Token: "here", PIN: testPIN}},
		{"not a module", Config{Module: "/etc/hostname", Token: "here", PIN: testPIN}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			km, err := New(context.Background(), tt.cfg)
			if !errors.Is(err, hsm.ErrUnavailable) || km != nil {
				t.Errorf("New = %v, %v; want nil, ErrUnavailable", km, err)
			}
		})
	}
	// Slot alone finds the token and reports its label.
	km := open(t, Config{Module: tk.module, Token: "here", PIN: testPIN})
	s := km.pool.currentSlot()
	km2 := open(t, Config{Module: tk.module, Slot: &s, PIN: testPIN})
	if km2.token != "here" {
		t.Errorf("token label by slot = %q", km2.token)
	}
	// Neither the key manager nor its configuration prints the PIN.
	cfg := tk.config()
	cfg.PIN = "s3cret-pin"
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", km, km, km, km), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg)} {
		if strings.Contains(s, testPIN) || strings.Contains(s, cfg.PIN) {
			t.Errorf("PIN printed: %s", s)
		}
	}
	if _, err := km.CreateKey(context.Background(), &hsm.CreateKeyRequest{URI: "pkcs11:object=" + DefaultWrapKeyLabel,
		Algorithm: hsm.AES256, Usage: hsm.UsageWrap, Service: "kms"}); err == nil {
		t.Error("created a key with the label of the SM2 wrapping key")
	}
}

// TestRelogin drops every session of the application on the token, which
// logs it out (PKCS#11 v2.40 §5.6 C_CloseAllSessions), as a token reset does;
// the key manager must open sessions and log in again by itself.
func TestRelogin(t *testing.T) {
	tk := newToken(t, "reset")
	km := open(t, tk.config())
	ctx := context.Background()
	info := create(t, km, "ca", hsm.ECDSAP256, hsm.UsageSign, "ca")
	s := signer(t, km, info.URI, "ca")
	d := sha256.Sum256([]byte("x"))
	for i := range 3 {
		if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			t.Fatalf("sign before reset %d: %v", i, err)
		}
		if err := km.mod.ctx.CloseAllSessions(km.pool.currentSlot()); err != nil {
			t.Fatal(err)
		}
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("sign after reset %d: %v", i, err)
		}
		if !ecdsa.VerifyASN1(info.Public.(*ecdsa.PublicKey), d[:], sig) {
			t.Error("signature after reset does not verify")
		}
	}
	if got := km.pool.gen.Load(); got != 3 {
		t.Errorf("pool generation %d after 3 resets", got)
	}
	if err := km.mod.ctx.CloseAllSessions(km.pool.currentSlot()); err != nil {
		t.Fatal(err)
	}
	if err := km.Check(ctx); err != nil {
		t.Errorf("Check after reset: %v", err)
	}
	// A logout leaves the sessions valid but hides private objects: the
	// lookup must notice and log in again rather than answer "not found".
	if err := km.mod.ctx.Logout(km.pool.anchor); err != nil {
		t.Fatal(err)
	}
	if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "ca"}); err != nil {
		t.Errorf("Signer after logout: %v", err)
	}
	if got := km.pool.gen.Load(); got != 5 {
		t.Errorf("pool generation %d after 5 resets", got)
	}
}

func TestConcurrentSign(t *testing.T) {
	tk := newToken(t, "conc")
	cfg := tk.config()
	cfg.MaxSessions = 4
	km := open(t, cfg)
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.SM2} {
		t.Run(string(alg), func(t *testing.T) {
			info := create(t, km, "k-"+string(alg), alg, hsm.UsageSign, "ca")
			s := signer(t, km, info.URI, "ca")
			pub := info.Public.(*ecdsa.PublicKey)
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 50 {
						msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
						var ok bool
						if alg == hsm.SM2 {
							sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
							if err != nil {
								errs <- err
								return
							}
							ok = sm2.VerifyASN1WithSM2(pub, nil, msg, sig)
						} else {
							d := sha256.Sum256(msg)
							sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
							if err != nil {
								errs <- err
								return
							}
							ok = ecdsa.VerifyASN1(pub, d[:], sig)
						}
						if !ok {
							errs <- fmt.Errorf("goroutine %d signature %d does not verify", g, i)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := len(km.pool.sem); n > cfg.MaxSessions {
				t.Errorf("%d sessions open, bound %d", n, cfg.MaxSessions)
			}
		})
	}
}

func TestUnwrappedKeyLifetime(t *testing.T) {
	tk := newToken(t, "ttl")
	km, err := New(context.Background(), tk.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = km.Close() })
	info := create(t, km, "seal", hsm.SM2, hsm.UsageSign, "seal")
	s := signer(t, km, info.URI, "seal")
	if km.sm2keys.held() != 0 {
		t.Error("key unwrapped before first use")
	}
	msg := []byte("m")
	for range 2 {
		sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
		if err != nil {
			t.Fatal(err)
		}
		verifySM2(t, info.Public.(*ecdsa.PublicKey), hsm.DefaultSM2UID, msg, sig)
		if km.sm2keys.held() != 1 {
			t.Errorf("%d keys held in memory, want 1", km.sm2keys.held())
		}
		// End of the use period: the key is dropped and unwrapped again.
		km.sm2keys.purge()
		if km.sm2keys.held() != 0 {
			t.Error("key held after purge")
		}
	}
	if _, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
		t.Fatal(err)
	}
	if err := km.Close(); err != nil {
		t.Fatal(err)
	}
	if km.sm2keys.held() != 0 {
		t.Error("key held after Close")
	}
	if _, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Sign after Close: %v, want ErrUnavailable", err)
	}
}

func TestKeyWrapper(t *testing.T) {
	tk := newToken(t, "kw")
	km := open(t, tk.config())
	ctx := context.Background()
	info := create(t, km, "kek", hsm.AES256, hsm.UsageWrap, "kms")
	if info.Public != nil || info.Location != hsm.LocationHardware {
		t.Errorf("KeyInfo %+v", info)
	}
	dek := []byte("0123456789abcdef0123456789abcdef")
	aad := []byte("tenant=7;key=v3")
	w1, err := km.Wrap(ctx, &hsm.WrapRequest{URI: info.URI, Service: "kms", Data: dek, AAD: aad})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := km.Wrap(ctx, &hsm.WrapRequest{URI: info.URI, Service: "kms", Data: dek, AAD: aad})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(w1, w2) || bytes.Contains(w1, dek) || len(w1) != 1+12+len(dek)+16 {
		t.Errorf("wrapped %x / %x", w1, w2)
	}
	got, err := km.Unwrap(ctx, &hsm.WrapRequest{URI: info.URI, Service: "kms", Data: w1, AAD: aad})
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	tampered := bytes.Clone(w1)
	tampered[len(tampered)-1] ^= 1
	for name, req := range map[string]*hsm.WrapRequest{
		"wrong AAD": {URI: info.URI, Service: "kms", Data: w1, AAD: []byte("tenant=8;key=v3")},
		"no AAD":    {URI: info.URI, Service: "kms", Data: w1},
		"tampered":  {URI: info.URI, Service: "kms", Data: tampered, AAD: aad},
		"short":     {URI: info.URI, Service: "kms", Data: w1[:20], AAD: aad},
	} {
		if _, err := km.Unwrap(ctx, req); err == nil {
			t.Errorf("%s: unwrapped", name)
		}
	}
	if _, err := km.Wrap(ctx, &hsm.WrapRequest{URI: info.URI, Service: "ca", Data: dek}); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("Wrap by another service: %v", err)
	}
	if _, err := km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: "kms"}); !errors.Is(err, hsm.ErrKeySeparation) {
		t.Errorf("Signer on a wrapping key: %v", err)
	}
}

// TestOpenSSLVerify checks signatures made on the token with OpenSSL 3.
func TestOpenSSLVerify(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	tk := newToken(t, "ossl")
	km := open(t, tk.config())
	dir := t.TempDir()
	msgFile := filepath.Join(dir, "msg")
	msg := []byte("signed on the token, verified by OpenSSL\n")
	if err := os.WriteFile(msgFile, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	writePEM := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verified OK") && !strings.Contains(string(out), "Signature Verified Successfully") {
			t.Errorf("openssl %v: %v\n%s", args, err, out)
		}
	}

	t.Run("p256", func(t *testing.T) {
		info := create(t, km, "p256", hsm.ECDSAP256, hsm.UsageSign, "ca")
		der, err := x509.MarshalPKIXPublicKey(info.Public)
		if err != nil {
			t.Fatal(err)
		}
		pub := writePEM("p256.pem", der)
		d := sha256.Sum256(msg)
		sig, err := signer(t, km, info.URI, "ca").Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		sigFile := filepath.Join(dir, "p256.sig")
		if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
			t.Fatal(err)
		}
		run("dgst", "-sha256", "-verify", pub, "-signature", sigFile, msgFile)
	})
	t.Run("sm2", func(t *testing.T) {
		info := create(t, km, "sm2", hsm.SM2, hsm.UsageSign, "seal")
		der, err := smx509.MarshalPKIXPublicKey(info.Public)
		if err != nil {
			t.Fatal(err)
		}
		pub := writePEM("sm2.pem", der)
		s := signer(t, km, info.URI, "seal")
		for _, uid := range []string{"1234567812345678", "ALICE123@YAHOO.COM"} {
			sig, err := s.Sign(rand.Reader, msg, sm2.NewSM2SignerOption(true, []byte(uid)))
			if err != nil {
				t.Fatal(err)
			}
			sigFile := filepath.Join(dir, "sm2.sig")
			if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
				t.Fatal(err)
			}
			run("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", "sm3",
				"-pkeyopt", "distid:"+uid, "-in", msgFile, "-sigfile", sigFile)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	slot := uint(1)
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"label", Config{Module: "m", Token: "t"}, true},
		{"slot", Config{Module: "m", Slot: &slot}, true},
		{"vendor", Config{Module: "m", Token: "t", Vendor: "tass"}, true},
		{"no module", Config{Token: "t"}, false},
		{"no token", Config{Module: "m"}, false},
		{"long label", Config{Module: "m", Token: strings.Repeat("x", 33)}, false},
		{"unknown vendor", Config{Module: "m", Token: "t", Vendor: "acme"}, false},
		{"incomplete table", Config{Module: "m", Token: "t", VendorTable: &Vendor{Name: "x", KeyType: 1}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestRawToDER(t *testing.T) {
	for _, tt := range []struct {
		raw, der string
	}{
		{"0102", "3006020101020102"},
		{"80ff", "300802020080020200ff"},
		{"00010002", "3006020101020102"},
		{"00000000", "3006020100020100"},
	} {
		raw, _ := hex.DecodeString(tt.raw)
		want, _ := hex.DecodeString(tt.der)
		got, err := rawToDER(raw)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("rawToDER(%s) = %x, %v; want %x", tt.raw, got, err, want)
		}
	}
	if _, err := rawToDER([]byte{1, 2, 3}); err == nil {
		t.Error("odd-length signature accepted")
	}
}

func BenchmarkSign(b *testing.B) {
	tk := newToken(b, "bench")
	km := open(b, tk.config())
	msg := []byte("benchmark message")
	d := sha256.Sum256(msg)
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048, hsm.SM2} {
		info := create(b, km, "bench-"+string(alg), alg, hsm.UsageSign, "ca")
		s := signer(b, km, info.URI, "ca")
		digest, opts := d[:], crypto.SignerOpts(crypto.SHA256)
		switch alg {
		case hsm.ECDSAP384:
			d384 := sha512.Sum384(msg)
			digest, opts = d384[:], crypto.SHA384
		case hsm.SM2:
			digest, opts = msg, sm2.DefaultSM2SignerOpts
		}
		b.Run(string(alg), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Sign(rand.Reader, digest, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sign/s")
		})
		b.Run(string(alg)+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Sign(rand.Reader, digest, opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sign/s")
		})
	}
}
