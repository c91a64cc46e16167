package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjx509 "github.com/tjfoc/gmsm/x509"
)

// TestOpenSSLVerifiesOurs: ECDSA and RSA SignedData made here verify with
// `openssl cms -verify` against the root, attached and detached, and
// altered content does not (issue 9 acceptance).
func TestOpenSSLVerifiesOurs(t *testing.T) {
	ossl := openssl(t)
	ps := pki(t)
	content := []byte("openssl verifies this\n")
	for _, alg := range []string{"p256", "p384", "rsa"} {
		for _, detached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/detached=%v", alg, detached), func(t *testing.T) {
				p := ps[alg]
				der, err := Sign(content, []*Signer{{Certificate: p.cert, Key: p.key, SigningTime: time.Now(), SigningCertificateV2: true}}, &Options{Detached: detached})
				if err != nil {
					t.Fatal(err)
				}
				in := writeFile(t, "sig.der", der)
				args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", p.rootPEM, "-purpose", "any", "-out", os.DevNull}
				if detached {
					args = append(args, "-content", writeFile(t, "m.txt", content))
				}
				out, err := run(t, ossl, args...)
				if err != nil || !strings.Contains(string(out), "Verification successful") {
					t.Fatalf("openssl cms -verify: %v\n%s", err, out)
				}
				if detached {
					args[len(args)-1] = writeFile(t, "alt.txt", append(content, '!'))
					if out, err := run(t, ossl, args...); err == nil {
						t.Fatalf("openssl accepts altered content:\n%s", out)
					}
				}
			})
		}
	}
}

// TestSM2DetachedCheck: SM2 SignedData made here verify with the
// OpenSSL-only detached check of INTEROP.md §2 (helper 2), in both OID
// families, attached and detached; altered content is refused.
func TestSM2DetachedCheck(t *testing.T) {
	openssl(t)
	p := pki(t)["sm2"]
	content := []byte("SM2 CMS checked by OpenSSL pieces\n")
	script, _ := filepath.Abs("testdata/cms-sm2-verify.sh")
	for _, fam := range []Family{RFC5652, GMT0010} {
		for _, detached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/detached=%v", fam, detached), func(t *testing.T) {
				der, err := Sign(content, []*Signer{{Certificate: p.cert, Key: p.key, SigningTime: time.Now()}}, &Options{Family: fam, Detached: detached})
				if err != nil {
					t.Fatal(err)
				}
				in := writeFile(t, "sig.der", der)
				out, err := run(t, "sh", script, in, p.certPEM, writeFile(t, "m.txt", content))
				if err != nil || !strings.Contains(string(out), "Signature Verified Successfully") || !strings.Contains(string(out), "messageDigest matches") {
					t.Fatalf("detached check: %v\n%s", err, out)
				}
				if out, err := run(t, "sh", script, in, p.certPEM, writeFile(t, "alt.txt", append(content, '!'))); err == nil {
					t.Fatalf("detached check accepts altered content:\n%s", out)
				}
			})
		}
	}
}

// TestOpenSSLMadeVerifyHere: CMS made by `openssl cms -sign` (ECDSA, RSA;
// attached and detached) verify here.
func TestOpenSSLMadeVerifyHere(t *testing.T) {
	ossl := openssl(t)
	ps := pki(t)
	content := []byte("made by openssl\n")
	msg := writeFile(t, "m.txt", content)
	for _, alg := range []string{"p256", "p384", "rsa"} {
		for _, detached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/detached=%v", alg, detached), func(t *testing.T) {
				p := ps[alg]
				outf := filepath.Join(t.TempDir(), "o.der")
				args := []string{"cms", "-sign", "-binary", "-in", msg, "-signer", p.certPEM, "-inkey", p.keyPEM, "-outform", "DER", "-out", outf, "-certfile", p.rootPEM}
				if !detached {
					args = append(args, "-nodetach")
				}
				if out, err := run(t, ossl, args...); err != nil {
					t.Fatalf("openssl cms -sign: %v\n%s", err, out)
				}
				der, err := os.ReadFile(outf)
				if err != nil {
					t.Fatal(err)
				}
				sd, err := Parse(der, nil)
				if err != nil {
					t.Fatal(err)
				}
				if sd.Detached != detached {
					t.Fatalf("detached = %v", sd.Detached)
				}
				vo := VerifyOptions{}
				if detached {
					vo.Content = content
				}
				c, err := sd.Verify(0, vo)
				if err != nil || !c.Equal(p.cert) {
					t.Fatalf("verify: %v", err)
				}
				if re, err := sd.Marshal(); err != nil || !bytes.Equal(re, der) {
					t.Errorf("OpenSSL's message does not re-encode byte-identically (err %v)", err)
				}
				want := ReasonContentAltered
				if !detached {
					want = ReasonContentAttached // its own content is what it signs
				}
				if _, err := sd.Verify(0, VerifyOptions{Content: append(content, '!')}); ReasonOf(err) != want {
					t.Fatalf("other content: %v, want %s", err, want)
				}
			})
		}
	}
}

// TestTjfocMadeVerifyHere: an SM2 SignedData whose signature is made by
// tjfoc/gmsm (an independent SM2 implementation; its own pkcs7 signs only
// RSA-SHA1, so the structure is encoded here with encoding/asn1, not with
// this package's encoder) verifies here, in both OID families and with
// both SM2 signature OIDs.
func TestTjfocMadeVerifyHere(t *testing.T) {
	tk, err := tjsm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A self-signed SM2 certificate made by tjfoc, parsed by smx509.
	tmpl := &tjx509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "tjfoc signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), SignatureAlgorithm: tjx509.SM2WithSM3,
		KeyUsage: tjx509.KeyUsageDigitalSignature}
	certDER, err := tjx509.CreateCertificate(tmpl, tmpl, &tk.PublicKey, tk)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("signed by tjfoc/gmsm")
	type attribute struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"set"`
	}
	type issuerAndSerial struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}
	type algorithm struct{ Algorithm asn1.ObjectIdentifier }
	type signerInfo struct {
		Version     int
		Sid         issuerAndSerial
		DigestAlg   algorithm
		SignedAttrs []attribute `asn1:"tag:0,set"`
		SigAlg      algorithm
		Signature   []byte
	}
	type encap struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}
	type signedData struct {
		Version      int
		DigestAlgs   []algorithm `asn1:"set"`
		Encap        encap
		Certificates asn1.RawValue `asn1:"tag:0"`
		SignerInfos  []signerInfo  `asn1:"set"`
	}
	type contentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     signedData `asn1:"tag:0,explicit"`
	}
	for _, fam := range []Family{RFC5652, GMT0010} {
		for _, sigOID := range []asn1.ObjectIdentifier{OIDSM2Sign, OIDSM2WithSM3} {
			t.Run(fmt.Sprintf("%s/%s", fam, sigOID), func(t *testing.T) {
				dataOID := fam.oid(OIDData)
				md := SM3.Sum(content)
				mdDER, _ := asn1.Marshal(md)
				ctDER, _ := asn1.Marshal(dataOID)
				attrs := []attribute{
					{Type: OIDAttrContentType, Value: asn1.RawValue{FullBytes: append([]byte{0x31, byte(len(ctDER))}, ctDER...)}},
					{Type: OIDAttrMessageDigest, Value: asn1.RawValue{FullBytes: append([]byte{0x31, byte(len(mdDER))}, mdDER...)}},
				}
				// The signed bytes: the attributes as a DER SET OF (RFC 5652 §5.4).
				set, err := asn1.Marshal(struct {
					A []attribute `asn1:"set"`
				}{attrs})
				if err != nil {
					t.Fatal(err)
				}
				var raw asn1.RawValue
				asn1.Unmarshal(set, &raw)
				sig, err := tk.Sign(rand.Reader, raw.Bytes, nil) // tjfoc: SM3 with Z of the default ID
				if err != nil {
					t.Fatal(err)
				}
				octets, _ := asn1.Marshal(content)
				ci := contentInfo{ContentType: fam.oid(OIDSignedData), Content: signedData{
					Version:      1,
					DigestAlgs:   []algorithm{{SM3.OID}},
					Encap:        encap{ContentType: dataOID, Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: octets}},
					Certificates: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: certDER},
					SignerInfos: []signerInfo{{Version: 1, Sid: issuerAndSerial{asn1.RawValue{FullBytes: cert.RawIssuer}, cert.SerialNumber},
						DigestAlg: algorithm{SM3.OID}, SignedAttrs: attrs, SigAlg: algorithm{sigOID}, Signature: sig}},
				}}
				der, err := asn1.Marshal(ci)
				if err != nil {
					t.Fatal(err)
				}
				sd, err := Parse(der, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sd.Verify(0, VerifyOptions{}); err != nil {
					t.Fatalf("tjfoc-made CMS: %v", err)
				}
			})
		}
	}
	// And the other way: tjfoc verifies an SM2 signature made here over
	// the signed attributes.
	t.Run("tjfoc verifies ours", func(t *testing.T) {
		p := pki(t)["sm2"]
		der, err := Sign(content, []*Signer{{Certificate: p.cert, Key: p.key}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sd, _ := Parse(der, nil)
		pubDER, _ := smx509.MarshalPKIXPublicKey(p.cert.PublicKey)
		tpub, err := tjx509.ParseSm2PublicKey(pubDER)
		if err != nil {
			t.Fatal(err)
		}
		if !tpub.Verify(setOf(sd.Signers[0].RawSignedAttrs), sd.Signers[0].Signature) {
			t.Fatal("tjfoc rejects the SM2 signature made here")
		}
	})
}
