package ses

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/testenv"
)

// testKey is a key with a self-signed certificate.
type testKey struct {
	signer crypto.Signer
	cert   []byte
}

func newKey(t testing.TB, alg string, cn string) *testKey {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch alg {
	case "sm2":
		signer, err = sm2.GenerateKey(rand.Reader)
	case "p256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{signer: signer, cert: der}
}

var t0 = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)

func sealInfo(signers ...*testKey) SealInfo {
	info := SealInfo{VID: "govtrust", ESID: "91350100M000100Y43-0001",
		Property: Property{Type: 1, Name: "福州市数据管理局公章", CreateDate: t0, ValidStart: t0, ValidEnd: t0.AddDate(2, 0, 0)},
		Picture:  Picture{Type: "PNG", Data: []byte("\x89PNG fake picture"), Width: 40, Height: 40},
		ExtDatas: []ExtData{{ID: []int{1, 2, 3, 4}, Critical: true, Value: []byte("x")}, {ID: []int{1, 2, 3, 5}, Value: []byte("y")}}}
	for _, k := range signers {
		info.Property.Certs = append(info.Property.Certs, k.cert)
	}
	return info
}

func TestSealRoundTrip(t *testing.T) {
	for _, alg := range []string{"sm2", "p256", "p384"} {
		t.Run(alg, func(t *testing.T) {
			maker, official := newKey(t, alg, "maker"), newKey(t, "sm2", "official")
			s, err := MakeSeal(sealInfo(official), maker.cert, maker.signer)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseSeal(s.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if p.Format != V4 || p.Info.Version != 4 || p.Info.ESID != "91350100M000100Y43-0001" || p.Info.Property.Name != "福州市数据管理局公章" ||
				!p.Info.Property.ValidEnd.Equal(t0.AddDate(2, 0, 0)) || len(p.Info.ExtDatas) != 2 || !p.Info.ExtDatas[0].Critical || p.Info.ExtDatas[1].Critical {
				t.Fatalf("parsed %+v", p.Info)
			}
			if _, err := p.VerifyMaker(); err != nil {
				t.Fatalf("VerifyMaker: %v", err)
			}
			again, err := p.Marshal()
			if err != nil || !bytes.Equal(again, s.Raw) {
				t.Fatalf("re-encoding differs: %v", err)
			}
			fresh := *p
			fresh.RawInfo = nil
			if again, _ := fresh.Marshal(); !bytes.Equal(again, s.Raw) {
				t.Fatal("encoding from fields differs from the made seal")
			}
			if !p.Lists(official.cert) || p.Lists(maker.cert) {
				t.Fatal("Lists")
			}
			// Tampered picture: the maker's signature no longer verifies.
			bad := bytes.Replace(s.Raw, []byte("fake picture"), []byte("FAKE picture"), 1)
			q, err := ParseSeal(bad)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := q.VerifyMaker(); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered picture: %v", err)
			}
		})
	}
}

func TestSignatureRoundTrip(t *testing.T) {
	maker, official, other := newKey(t, "sm2", "maker"), newKey(t, "sm2", "official"), newKey(t, "sm2", "other")
	seal, err := MakeSeal(sealInfo(official), maker.cert, maker.signer)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("a document")
	tbs := NewTBS(seal.Raw, t0.Add(time.Hour), SM3(doc), "/Doc_0/Signs/Sign_0/Signature.xml")
	tbs.ExtDatas = []ExtData{{ID: []int{1, 2, 156, 1}, Value: []byte("ext")}}
	sig, err := Sign(tbs, official.cert, official.signer)
	if err != nil {
		t.Fatal(err)
	}
	sig.TimeStamp = []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	der, err := sig.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	if p.Format != V4 || p.TBS.Version != 4 || !p.TBS.TimeInfo.Equal(t0.Add(time.Hour)) || !bytes.Equal(p.TBS.DataHash, SM3(doc)) ||
		p.TBS.PropertyInfo != "/Doc_0/Signs/Sign_0/Signature.xml" || len(p.TBS.ExtDatas) != 1 || !bytes.Equal(p.TimeStamp, sig.TimeStamp) {
		t.Fatalf("parsed %+v", p.TBS)
	}
	if _, err := p.Verify(); err != nil {
		t.Fatal(err)
	}
	s2, err := p.Seal()
	if err != nil || !bytes.Equal(s2.Raw, seal.Raw) {
		t.Fatalf("seal: %v", err)
	}
	// Assemble refuses a value that does not verify, or another signer.
	if _, err := Assemble(p.RawTBS, other.cert, p.Value, nil); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Assemble with another certificate: %v", err)
	}
	// A raw r‖s value verifies as well as DER.
	var r, s big.Int
	in := cryptobyte.String(p.Value)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) {
		t.Fatal("value is not DER")
	}
	raw := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	if err := VerifyMessage(mustCert(t, official.cert).PublicKey, OIDSM2WithSM3, p.RawTBS, raw); err != nil {
		t.Fatalf("raw r||s: %v", err)
	}
	// One changed byte of the TBS fails.
	bad := bytes.Clone(der)
	i := bytes.Index(bad, []byte("/Doc_0"))
	bad[i+1] = 'd'
	q, err := ParseSignature(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered TBS: %v", err)
	}
}

func mustCert(t testing.TB, der []byte) *smx509.Certificate {
	t.Helper()
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// v1Seal builds a GM/T 0031-2014 seal the way older systems do: the maker
// signs SEQUENCE { SES_SealInfo, cert, signatureAlgorithm }.
func v1Seal(t testing.TB, maker *testKey, info SealInfo) []byte {
	t.Helper()
	info.Version = 2 // what ofdrw's issues report v1 seals carry
	info.ExtDatas = nil
	rawInfo, err := info.Marshal(V1)
	if err != nil {
		t.Fatal(err)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(rawInfo)
		b.AddASN1OctetString(maker.cert)
		b.AddASN1ObjectIdentifier(OIDSM2WithSM3)
	})
	sig, _, err := SignMessage(maker.signer, b.BytesOrPanic())
	if err != nil {
		t.Fatal(err)
	}
	s := &Seal{Format: V1, RawInfo: rawInfo, Cert: maker.cert, SignAlg: OIDSM2WithSM3, SignedValue: sig}
	der, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestV1(t *testing.T) {
	maker, official := newKey(t, "sm2", "maker"), newKey(t, "sm2", "official")
	sealDER := v1Seal(t, maker, sealInfo(official))
	seal, err := ParseSeal(sealDER)
	if err != nil {
		t.Fatal(err)
	}
	if seal.Format != V1 || seal.Info.Version != 2 || seal.Info.Property.Name != "福州市数据管理局公章" || !seal.Lists(official.cert) {
		t.Fatalf("v1 seal %+v", seal.Info)
	}
	if _, err := seal.VerifyMaker(); err != nil {
		t.Fatalf("v1 maker: %v", err)
	}
	doc := []byte("old document")
	tbs := &TBS{Version: 2, Seal: sealDER, TimeInfo: t0, DataHash: SM3(doc), PropertyInfo: "doc.txt", Cert: official.cert, SignAlg: OIDSM2WithSM3}
	raw, err := tbs.Marshal(V1)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := SignMessage(official.signer, raw)
	if err != nil {
		t.Fatal(err)
	}
	der, err := (&Signature{Format: V1, RawTBS: raw, Value: v}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ParseSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	if sig.Format != V1 || !sig.TBS.TimeInfo.Equal(t0) || !bytes.Equal(sig.Cert, official.cert) {
		t.Fatalf("v1 signature %+v", sig.TBS)
	}
	if _, err := sig.Verify(); err != nil {
		t.Fatalf("v1 verify: %v", err)
	}
	if s, err := sig.Seal(); err != nil || s.Format != V1 {
		t.Fatalf("v1 inner seal: %v", err)
	}
}

// TestImplicitTags reads the optional [0] fields written IMPLICIT, as some
// producers did before ofdrw fixed its tags (GM-STANDARDS.md §5.2).
func TestImplicitTags(t *testing.T) {
	maker, official := newKey(t, "sm2", "maker"), newKey(t, "sm2", "official")
	seal, err := MakeSeal(sealInfo(official), maker.cert, maker.signer)
	if err != nil {
		t.Fatal(err)
	}
	tbs := NewTBS(seal.Raw, t0, SM3([]byte("d")), "d")
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(4)
		b.AddBytes(tbs.Seal)
		b.AddASN1GeneralizedTime(t0)
		b.AddASN1BitString(tbs.DataHash)
		addString(b, cbasn1.IA5String, "d")
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier([]int{1, 2, 9})
				b.AddASN1OctetString([]byte("v"))
			})
		})
	})
	raw := b.BytesOrPanic()
	v, alg, _ := SignMessage(official.signer, raw)
	b = cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(raw)
		b.AddASN1OctetString(official.cert)
		b.AddASN1ObjectIdentifier(alg)
		b.AddASN1BitString(v)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0); b.AddBytes([]byte("token")) })
	})
	sig, err := ParseSignature(b.BytesOrPanic())
	if err != nil {
		t.Fatal(err)
	}
	if string(sig.TimeStamp) != "token" || len(sig.TBS.ExtDatas) != 1 || string(sig.TBS.ExtDatas[0].Value) != "v" {
		t.Fatalf("implicit: %q %+v", sig.TimeStamp, sig.TBS.ExtDatas)
	}
	if _, err := sig.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestStrictDER(t *testing.T) {
	maker, official := newKey(t, "sm2", "maker"), newKey(t, "sm2", "official")
	seal, err := MakeSeal(sealInfo(official), maker.cert, maker.signer)
	if err != nil {
		t.Fatal(err)
	}
	long := func(der []byte) []byte {
		// Re-encode the outer length in the long form with one byte too
		// many (BER, not DER).
		in := cryptobyte.String(der)
		var body cryptobyte.String
		var tag cbasn1.Tag
		in.ReadAnyASN1(&body, &tag)
		n := len(body)
		return append([]byte{byte(tag), 0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	}
	hdr := bytes.Replace(seal.Raw, []byte{0x16, 0x02, 'E', 'S'}, []byte{0x16, 0x02, 'E', 'X'}, 1)
	for name, der := range map[string][]byte{
		"trailing":      append(bytes.Clone(seal.Raw), 0),
		"long length":   long(seal.Raw),
		"header id":     hdr,
		"empty":         nil,
		"truncated":     seal.Raw[:len(seal.Raw)-1],
		"indefinite":    append([]byte{0x30, 0x80}, append(bytes.Clone(seal.Raw[4:]), 0, 0)...),
		"not a seal":    official.cert,
		"wrong outer":   append([]byte{0x31}, seal.Raw[1:]...),
		"octet for int": bytes.Replace(seal.Raw, []byte{0x02, 0x01, 0x04, 0x16}, []byte{0x04, 0x01, 0x04, 0x16}, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSeal(der); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSeal = %v, want ErrMalformed", err)
			}
			if _, err := ParseSignature(der); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSignature = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestOpenSSLStructure dumps a made seal with openssl asn1parse and checks
// the SESeal structure of ACCEPTANCE.md H-01, then verifies the maker's
// SM2 signature over DER(SES_SealInfo) with openssl pkeyutl (distid).
func TestOpenSSLStructure(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	dir := t.TempDir()
	maker, official := newKey(t, "sm2", "maker"), newKey(t, "sm2", "official")
	seal, err := MakeSeal(sealInfo(official), maker.cert, maker.signer)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sealPath := write("seal.der", seal.Raw)
	out, err := exec.Command(openssl, "asn1parse", "-inform", "DER", "-in", sealPath, "-i").CombinedOutput()
	if err != nil {
		t.Fatalf("asn1parse: %v\n%s", err, out)
	}
	dump := string(out)
	for _, want := range []string{"IA5STRING         :ES", "INTEGER           :04", "IA5STRING         :govtrust",
		"IA5STRING         :91350100M000100Y43-0001", "UTF8STRING", "GENERALIZEDTIME   :20261121080000Z",
		"GENERALIZEDTIME   :20281121080000Z", "IA5STRING         :PNG", "OBJECT            :SM2-with-SM3", "BIT STRING"} {
		if !strings.Contains(dump, want) {
			t.Errorf("asn1parse output lacks %q:\n%s", want, dump)
		}
	}
	pub, err := smx509.MarshalPKIXPublicKey(mustCert(t, maker.cert).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := write("pub.der", pub)
	infoPath := write("info.der", seal.RawInfo)
	sigPath := write("sig.der", seal.SignedValue)
	out, err = exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pubPath, "-in", infoPath,
		"-sigfile", sigPath, "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Signature Verified Successfully") {
		t.Fatalf("openssl verify of the maker signature: %v\n%s", err, out)
	}
}
