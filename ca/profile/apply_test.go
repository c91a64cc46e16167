package profile

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// rawName encodes a Name with explicit string types, one attribute per RDN.
func rawName(attrs ...struct {
	id  asn1.ObjectIdentifier
	tag cbasn1.Tag
	v   string
}) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(a.id)
					b.AddASN1(a.tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(a.v)) })
				})
			})
		}
	})
	return b.BytesOrPanic()
}

type nameAttr = struct {
	id  asn1.ObjectIdentifier
	tag cbasn1.Tag
	v   string
}

var (
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
)

// subjectTags returns the string tag of each attribute of a DER Name.
func subjectTags(t *testing.T, der []byte) map[string]cbasn1.Tag {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		t.Fatal(err)
	}
	out := map[string]cbasn1.Tag{}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	in.ReadASN1(&seq, cbasn1.SEQUENCE)
	for !seq.Empty() {
		var set, atv cryptobyte.String
		var id asn1.ObjectIdentifier
		var v cryptobyte.String
		var tag cbasn1.Tag
		seq.ReadASN1(&set, cbasn1.SET)
		set.ReadASN1(&atv, cbasn1.SEQUENCE)
		atv.ReadASN1ObjectIdentifier(&id)
		atv.ReadAnyASN1(&v, &tag)
		out[id.String()] = tag
	}
	return out
}

// TestCSRAbuse covers ACCEPTANCE A-06: each abusive request is refused, or
// issued with only profile-controlled fields.
func TestCSRAbuse(t *testing.T) {
	sm2ca, _ := cas(t)
	client := builtinProfile(t, "client-tls")
	server := builtinProfile(t, "server-tls")
	person := builtinProfile(t, "person-sign")
	key := newSM2(t)
	bc, _ := asn1.Marshal(struct{ CA bool }{true})
	ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign | cRLSign

	refused := []struct {
		name string
		p    *Profile
		tmpl *smx509.CertificateRequest
		want error
		msg  string
	}{
		{"CN of 65 characters", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: strings.Repeat("长", 65)}}, ErrPolicy, "more than 64"},
		{"OU of 65 characters", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app", OrganizationalUnit: []string{strings.Repeat("x", 65)}}}, ErrPolicy, "more than 64"},
		{"NUL in CN", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app\x00.example.gov.cn"}}, ErrPolicy, "control character"},
		{"control in CN", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app\x1b[31m"}}, ErrPolicy, "control character"},
		{"RTL override in CN", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "moc.\u202eknab"}}, ErrPolicy, "bidirectional"},
		{"leading space", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: " app"}}, ErrPolicy, "white space"},
		{"two CNs", client, &smx509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "a"}, {Type: oidCN, Value: "b"}}}}, ErrPolicy, "2 times"},
		{"forbidden SERIALNUMBER", person, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "x", SerialNumber: "123"}}, ErrPolicy, "forbidden"},
		{"missing required CN", client, &smx509.CertificateRequest{Subject: pkix.Name{OrganizationalUnit: []string{"x"}}}, ErrPolicy, "CN is required"},
		{"wildcard", server, &smx509.CertificateRequest{DNSNames: []string{"*.example.gov.cn"}}, ErrPolicy, "wildcard"},
		{"underscore", server, &smx509.CertificateRequest{DNSNames: []string{"a_b.example.gov.cn"}}, ErrPolicy, "underscore"},
		{"internal name", server, &smx509.CertificateRequest{DNSNames: []string{"intranet.local"}}, ErrPolicy, "internal name"},
		{"loopback IP", server, &smx509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, ErrPolicy, "loopback"},
		{"private IP", server, &smx509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}}, ErrPolicy, "reserved"},
		{"documentation IP", server, &smx509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("192.0.2.10")}}, ErrPolicy, "reserved"},
		{"TLD not in the root zone", server, &smx509.CertificateRequest{DNSNames: []string{"portal.gov.zz"}}, ErrPolicy, "internal name"},
		{"SAN type not allowed", server, &smx509.CertificateRequest{DNSNames: []string{"a.example.gov.cn"}, EmailAddresses: []string{"a@example.gov.cn"}}, ErrPolicy, "rfc822Name"},
		{"control characters in rfc822Name", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}, EmailAddresses: []string{"a\x1bb\x7f\x01@example.gov.cn"}}, ErrPolicy, "not a mailbox"},
		{"quoted rfc822Name", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}, EmailAddresses: []string{`"a b"@example.gov.cn`}}, ErrPolicy, "atext"},
		{"rfc822Name double dot", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}, EmailAddresses: []string{"a..b@example.gov.cn"}}, ErrPolicy, "empty atom"},
		{"rfc822Name address literal", client, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}, EmailAddresses: []string{"a@[218.85.152.99]"}}, ErrPolicy, "domain"},
		{"URI not allowed", server, &smx509.CertificateRequest{DNSNames: []string{"a.example.gov.cn"}, URIs: []*url.URL{{Scheme: "https", Host: "a"}}}, ErrPolicy, "URI"},
		{"CN not a host", server, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "张三"}, DNSNames: []string{"a.example.gov.cn"}}, ErrPolicy, "CN must be a host name"},
		{"no SAN at all", server, &smx509.CertificateRequest{}, ErrPolicy, "at least 1"},
		{"too many DNS names", server, &smx509.CertificateRequest{DNSNames: manyNames(101)}, ErrPolicy, "101 dNSName"},
		{"otherName", server, &smx509.CertificateRequest{DNSNames: []string{"a.example.gov.cn"}, ExtraExtensions: []pkix.Extension{{Id: oidExtSAN, Value: []byte{0x30, 0x07, 0xa0, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04}}}}, ErrPolicy, "[0]"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			csr := makeCSR(t, key, tc.tmpl)
			_, err := tc.p.Apply(input(sm2ca, csr))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}

	t.Run("duplicate extension", func(t *testing.T) {
		der := makeCSRDER(t, key, &smx509.CertificateRequest{
			Subject:         pkix.Name{CommonName: "app"},
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: bc}, {Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: bc}},
		})
		if _, err := ParseCSR(der); !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "duplicate") {
			t.Fatalf("err %v, want ErrBadCSR for duplicate extensions", err)
		}
	})

	t.Run("CA bit, keyCertSign and unknown critical extension ignored", func(t *testing.T) {
		csr := makeCSR(t, key, &smx509.CertificateRequest{
			Subject: pkix.Name{CommonName: "app"},
			ExtraExtensions: []pkix.Extension{
				{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
				{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: ku},
				{Id: asn1.ObjectIdentifier{1, 2, 3, 4, 5}, Critical: true, Value: []byte{5, 0}},
			},
		})
		res, err := client.Apply(input(sm2ca, csr))
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, sm2ca, res)
		if cert.IsCA || cert.BasicConstraintsValid || cert.KeyUsage != smx509.KeyUsageDigitalSignature {
			t.Fatalf("request-chosen CA bits reached the certificate: IsCA %v BC %v KU %v", cert.IsCA, cert.BasicConstraintsValid, cert.KeyUsage)
		}
		for _, e := range cert.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{1, 2, 3, 4, 5}) {
				t.Fatal("request-chosen critical extension copied")
			}
		}
		for _, want := range []string{"basicConstraints", "keyUsage", "critical extension 1.2.3.4.5"} {
			if !hasNote(res, want) {
				t.Errorf("no note about %s in %q", want, res.Notes)
			}
		}
	})

	t.Run("ampersand forced into PrintableString", func(t *testing.T) {
		csr := makeCSR(t, key, &smx509.CertificateRequest{RawSubject: rawName(
			nameAttr{oidOU, cbasn1.PrintableString, "R&D"},
			nameAttr{oidCN, cbasn1.PrintableString, "app*1"},
		)})
		res, err := client.Apply(input(sm2ca, csr))
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, sm2ca, res)
		tags := subjectTags(t, cert.RawSubject)
		if tags[oidOU.String()] != cbasn1.UTF8String || tags[oidCN.String()] != cbasn1.UTF8String || tags[oidC.String()] != cbasn1.PrintableString {
			t.Fatalf("string types %v: '&' and '*' must leave PrintableString", tags)
		}
		if cert.Subject.OrganizationalUnit[0] != "R&D" {
			t.Fatalf("OU %q", cert.Subject.OrganizationalUnit)
		}
	})

	t.Run("record replaces the request and extra attributes are dropped", func(t *testing.T) {
		csr := makeCSR(t, key, &smx509.CertificateRequest{Subject: pkix.Name{
			CommonName: "冒名顶替", Organization: []string{"Evil Corp"},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "x@example.com"}},
		}})
		res, err := builtinProfile(t, "org-sign").Apply(input(sm2ca, csr))
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, sm2ca, res)
		if cert.Subject.CommonName != "张三" || cert.Subject.Organization[0] != "某某市人民政府" {
			t.Fatalf("subject %v", cert.Subject)
		}
		if !hasNote(res, "replaced") || !hasNote(res, "emailAddress ignored") {
			t.Fatalf("notes %q", res.Notes)
		}
	})

	t.Run("CN added to SANs", func(t *testing.T) {
		csr := makeCSR(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "WWW.Example.gov.cn"}})
		res, err := server.Apply(input(sm2ca, csr))
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, sm2ca, res)
		if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "www.example.gov.cn" {
			t.Fatalf("SANs %v", cert.DNSNames)
		}
	})

	t.Run("BR organisation without locality or province", func(t *testing.T) {
		csr := makeCSR(t, key, &smx509.CertificateRequest{DNSNames: []string{"www.example.gov.cn"}})
		in := input(sm2ca, csr)
		delete(in.Record, "ST")
		delete(in.Record, "L")
		if _, err := server.Apply(in); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "BR §7.1.2.7.4") {
			t.Fatalf("err %v, want a policy refusal citing BR §7.1.2.7.4", err)
		}
		in.Record["L"] = "福州市"
		if _, err := server.Apply(in); err != nil {
			t.Fatalf("with L: %v", err)
		}
	})

	t.Run("bad proof of possession", func(t *testing.T) {
		der := makeCSRDER(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}})
		der[len(der)-3] ^= 0x55
		csr, err := ParseCSR(der)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Apply(input(sm2ca, csr)); !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "proof of possession") {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("identity numbers", func(t *testing.T) {
		csr := makeCSR(t, key, &smx509.CertificateRequest{})
		in := input(sm2ca, csr)
		delete(in.Record, "id-card")
		if _, err := person.Apply(in); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "id-card") {
			t.Fatalf("missing id-card: %v", err)
		}
		in.Record["id-card"] = "110105194912310021"
		if _, err := person.Apply(in); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "check character") {
			t.Fatalf("bad id-card: %v", err)
		}
	})
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "h" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + ".n" + string(rune('a'+i/26)) + ".example.gov.cn"
	}
	return out
}

// TestWeakKeys covers ACCEPTANCE A-04 for the keys Go can make; the OpenSSL
// tests add P-192 and secp256k1 requests made by OpenSSL.
func TestWeakKeys(t *testing.T) {
	sm2ca, ecca := cas(t)
	for _, tc := range []struct {
		name string
		key  func(t *testing.T) crypto.Signer
		msg  string
	}{
		{"RSA-1024", func(t *testing.T) crypto.Signer { return newRSA(t, 1024) }, "e_rsa_key_too_small"},
		{"RSA-2047", func(t *testing.T) crypto.Signer { return newRSA(t, 2047) }, "e_rsa_modulus_not_mod8"},
		{"P-224", func(t *testing.T) crypto.Signer { return newEC(t, elliptic.P224()) }, "P-224"},
		{"P-521", func(t *testing.T) crypto.Signer { return newEC(t, elliptic.P521()) }, "P-521"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := makeCSRDER(t, tc.key(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"}})
			if _, err := ParseCSR(der); !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseCSR: %v, want ErrKeyPolicy mentioning %s", err, tc.msg)
			}
		})
	}
	t.Run("P-192 built by hand", func(t *testing.T) {
		// Go cannot make P-192 keys; the key check runs before any
		// signature check, so a request with a dummy signature suffices.
		der := handCSR(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 1}, append([]byte{4}, randPoint(48)...))
		if _, err := ParseCSR(der); !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), "P-192") {
			t.Fatalf("ParseCSR: %v", err)
		}
	})
	t.Run("RSA far above 8192 bits", func(t *testing.T) {
		// A 400,000-bit modulus fits a 64 KiB request. It is refused for
		// its size before the factoring lints run (which would take
		// seconds on it, and would find the factor 3 built into it).
		b := randBytes(t, 50000)
		b[0] |= 0x80
		n := new(big.Int).SetBytes(b)
		n.Sub(n, new(big.Int).Mod(n, big.NewInt(3)))
		if n.Bit(0) == 0 {
			n.Sub(n, big.NewInt(3))
		}
		spki, err := smx509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
		if err != nil {
			t.Fatal(err)
		}
		der := spkiCSR(spki)
		if len(der) > MaxCSRSize {
			t.Fatalf("request of %d octets", len(der))
		}
		_, err = ParseCSR(der)
		if !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), "e_rsa_key_too_large") || strings.Contains(err.Error(), "e_rsa_modulus_weak") {
			t.Fatalf("ParseCSR: %v, want ErrKeyPolicy for the size alone", err)
		}
	})
	t.Run("SM2 point off the curve", func(t *testing.T) {
		key := newSM2(t)
		spki, _ := smx509.MarshalPKIXPublicKey(key.Public())
		der := handCSR(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}, spki[len(spki)-65:])
		der[len(der)-handCSRTail-1] ^= 1 // last octet of the point
		if _, err := ParseCSR(der); !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), "e_ec_point_invalid") {
			t.Fatalf("ParseCSR: %v", err)
		}
	})
	t.Run("type not in profile", func(t *testing.T) {
		rsaKey := newRSA(t, 2048)
		csr := makeCSR(t, rsaKey, &smx509.CertificateRequest{})
		if _, err := builtinProfile(t, "person-sign").Apply(input(ecca, csr)); !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), "rsa-2048 key not allowed") {
			t.Fatalf("err %v", err)
		}
		csr = makeCSR(t, rsaKey, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})
		if _, err := builtinProfile(t, "code-sign").Apply(input(ecca, csr)); !errors.Is(err, ErrKeyPolicy) {
			t.Fatalf("RSA-2048 under code-sign (rsa-3072): %v", err)
		}
	})
	t.Run("algorithm not of the hierarchy", func(t *testing.T) {
		p := builtinProfile(t, "client-tls")
		sm2csr := makeCSR(t, newSM2(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})
		if _, err := p.Apply(input(ecca, sm2csr)); !errors.Is(err, ErrKeyPolicy) {
			t.Fatalf("SM2 key under ECDSA CA: %v", err)
		}
		eccsr := makeCSR(t, newEC(t, elliptic.P256()), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})
		if _, err := p.Apply(input(sm2ca, eccsr)); !errors.Is(err, ErrKeyPolicy) {
			t.Fatalf("ECDSA key under SM2 CA: %v", err)
		}
	})
	t.Run("Fermat-close primes", func(t *testing.T) {
		p, _ := rand.Prime(rand.Reader, 1024)
		q := new(big.Int).Add(p, big.NewInt(2))
		for !q.ProbablyPrime(20) {
			q.Add(q, big.NewInt(2))
		}
		err := CheckPublicKey(&rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, nil)
		if !errors.Is(err, ErrKeyPolicy) || !strings.Contains(err.Error(), "e_rsa_fermat_factorable") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("KMC key checked too", func(t *testing.T) {
		csr := makeCSR(t, newSM2(t), &smx509.CertificateRequest{})
		in := input(sm2ca, csr)
		in.PublicKey = newEC(t, elliptic.P256()).Public()
		if _, err := builtinProfile(t, "person-enc").Apply(in); !errors.Is(err, ErrKeyPolicy) {
			t.Fatalf("ECDSA KMC key under person-enc (sm2 only): %v", err)
		}
		in.PublicKey = nil
		if _, err := builtinProfile(t, "person-enc").Apply(in); !errors.Is(err, ErrPolicy) {
			t.Fatalf("no KMC key: %v", err)
		}
	})
}

// handCSRTail is the length of the signature part handCSR appends.
const handCSRTail = 2 + 12 + 11

func randPoint(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// handCSR encodes a CertificationRequest for an EC key on any curve, with
// a dummy ECDSA signature.
func handCSR(curve asn1.ObjectIdentifier, point []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddBytes(rawName(nameAttr{oidCN, cbasn1.PrintableString, "x"}))
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1})
					b.AddASN1ObjectIdentifier(curve)
				})
				b.AddASN1BitString(point)
			})
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {})
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2})
		})
		b.AddASN1BitString([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	})
	return b.BytesOrPanic()
}

// spkiCSR builds a request around a SubjectPublicKeyInfo, with a dummy
// signature (the key is checked first).
func spkiCSR(spki []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddBytes(rawName(nameAttr{oidCN, cbasn1.PrintableString, "x"}))
			b.AddBytes(spki)
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {})
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11})
			b.AddASN1NULL()
		})
		b.AddASN1BitString(make([]byte, 256))
	})
	return b.BytesOrPanic()
}

// TestValidity covers ACCEPTANCE A-09.
func TestValidity(t *testing.T) {
	sm2ca, _ := cas(t)
	p := builtinProfile(t, "person-sign")
	key := newSM2(t)
	csr := makeCSR(t, key, &smx509.CertificateRequest{})
	period := func(c *smx509.Certificate) time.Duration { return c.NotAfter.Sub(c.NotBefore) + time.Second }

	t.Run("profile maximum and backdate", func(t *testing.T) {
		in := input(sm2ca, csr)
		in.Now = testNow.Add(1500 * time.Millisecond) // fractions are dropped
		res, err := p.Apply(in)
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, sm2ca, res)
		if !cert.NotBefore.Equal(testNow.Add(-time.Hour).Add(time.Second)) {
			t.Errorf("notBefore %s, want now − 1h", cert.NotBefore)
		}
		if period(cert) != 730*24*time.Hour {
			t.Errorf("period %s", period(cert))
		}
	})
	t.Run("request beyond the profile is clamped", func(t *testing.T) {
		in := input(sm2ca, csr)
		in.RequestedValidity = 10 * 365 * 24 * time.Hour
		res, err := p.Apply(in)
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, sm2ca, res)
		if period(cert) != 730*24*time.Hour || !hasNote(res, "clamped to the profile maximum") {
			t.Errorf("period %s, notes %q", period(cert), res.Notes)
		}
	})
	t.Run("shorter request honoured", func(t *testing.T) {
		in := input(sm2ca, csr)
		in.RequestedValidity = 30 * 24 * time.Hour
		res, err := p.Apply(in)
		if err != nil {
			t.Fatal(err)
		}
		if cert := issue(t, sm2ca, res); period(cert) != 30*24*time.Hour {
			t.Errorf("period %s", period(cert))
		}
	})
	t.Run("never beyond the issuer", func(t *testing.T) {
		short := makeCA(t, "short-lived CA", newSM2(t), testNow.Add(-time.Hour*24), testNow.Add(100*24*time.Hour))
		res, err := p.Apply(input(short, csr))
		if err != nil {
			t.Fatal(err)
		}
		cert := issue(t, short, res)
		if !cert.NotAfter.Equal(short.cert.NotAfter) || !hasNote(res, "issuer's notAfter") {
			t.Errorf("notAfter %s, issuer %s, notes %q", cert.NotAfter, short.cert.NotAfter, res.Notes)
		}
		if !cert.NotBefore.Equal(testNow.Add(-time.Hour)) {
			t.Errorf("notBefore %s", cert.NotBefore)
		}
	})
	t.Run("request shorter than the backdate", func(t *testing.T) {
		in := input(sm2ca, csr)
		in.RequestedValidity = 30 * time.Minute
		if _, err := p.Apply(in); !errors.Is(err, ErrPolicy) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("issuer not valid", func(t *testing.T) {
		for _, ca := range []*testCA{
			makeCA(t, "expired CA", newSM2(t), testNow.AddDate(-2, 0, 0), testNow.Add(-time.Second)),
			makeCA(t, "future CA", newSM2(t), testNow.Add(time.Hour), testNow.AddDate(2, 0, 0)),
		} {
			if _, err := p.Apply(input(ca, csr)); !errors.Is(err, ErrPolicy) {
				t.Errorf("%s: %v", ca.name, err)
			}
		}
	})
	t.Run("UTCTime through 2049, GeneralizedTime from 2050", func(t *testing.T) {
		for _, tc := range []struct {
			caNotAfter time.Time
			wantTag    cbasn1.Tag
			wantText   string
		}{
			{time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), cbasn1.UTCTime, "491231235959Z"},
			{time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), cbasn1.GeneralizedTime, "20500101000000Z"},
		} {
			ca := makeCA(t, "long CA", newSM2(t), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), tc.caNotAfter)
			in := input(ca, csr)
			in.Now = time.Date(2049, 6, 1, 0, 0, 0, 0, time.UTC)
			res, err := p.Apply(in)
			if err != nil {
				t.Fatal(err)
			}
			cert := issue(t, ca, res)
			nbTag, nb, naTag, na := validityEncoding(t, cert.RawTBSCertificate)
			if nbTag != cbasn1.UTCTime || nb != "490531230000Z" {
				t.Errorf("notBefore %s %q", tagString(nbTag), nb)
			}
			if naTag != tc.wantTag || na != tc.wantText {
				t.Errorf("notAfter %s %q, want %s %q", tagString(naTag), na, tagString(tc.wantTag), tc.wantText)
			}
		}
	})
}

// validityEncoding returns the raw Time encodings of a TBSCertificate.
func validityEncoding(t *testing.T, tbs []byte) (cbasn1.Tag, string, cbasn1.Tag, string) {
	in := cryptobyte.String(tbs)
	var seq, validity, nb, na cryptobyte.String
	var nbTag, naTag cbasn1.Tag
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) ||
		!seq.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!seq.SkipASN1(cbasn1.INTEGER) || !seq.SkipASN1(cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!validity.ReadAnyASN1(&nb, &nbTag) || !validity.ReadAnyASN1(&na, &naTag) {
		t.Fatal("cannot read validity")
	}
	return nbTag, string(nb), naTag, string(na)
}

func tagString(t cbasn1.Tag) string {
	if t == cbasn1.UTCTime {
		return "UTCTime"
	}
	return "GeneralizedTime"
}

// TestNameConstraints issues a CA certificate under a profile with name
// constraints: they are written critical and the result lints clean.
func TestNameConstraints(t *testing.T) {
	sm2ca, _ := cas(t)
	src, _ := BuiltinYAML("sub-ca")
	y := strings.Replace(string(src), "ca:\n  path_len: 0\n", "ca:\n  path_len: 0\nname_constraints:\n  permitted_dns: [gov.cn]\n  excluded_ip: [10.0.0.0/8]\n", 1)
	p, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if p.NameConstraints == nil {
		t.Fatal("name_constraints not parsed")
	}
	csr := makeCSR(t, newSM2(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "受限 CA"}})
	res, err := p.Apply(input(sm2ca, csr))
	if err != nil {
		t.Fatal(err)
	}
	cert := issue(t, sm2ca, res)
	if !cert.PermittedDNSDomainsCritical || len(cert.PermittedDNSDomains) != 1 || len(cert.ExcludedIPRanges) != 1 {
		t.Fatalf("constraints %v %v critical %v", cert.PermittedDNSDomains, cert.ExcludedIPRanges, cert.PermittedDNSDomainsCritical)
	}
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Fatalf("path length %d", cert.MaxPathLen)
	}
}

// TestIssuerNameConstraints: a CA with nameConstraints (here one made by
// the sub-ca profile: permitted gov.cn, excluded 218.85.152.0/24) issues
// only names its relying parties accept; a name outside, from the request
// or under a CA further up the chain, is a policy refusal, not a
// certificate every verifier rejects.
func TestIssuerNameConstraints(t *testing.T) {
	sm2ca, _ := cas(t)
	src, _ := BuiltinYAML("sub-ca")
	y := strings.Replace(string(src), "ca:\n  path_len: 0\n", "ca:\n  path_len: 0\nname_constraints:\n  permitted_dns: [gov.cn]\n  excluded_ip: [218.85.152.0/24]\n", 1)
	p, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	subKey := newSM2(t)
	res, err := p.Apply(input(sm2ca, makeCSR(t, subKey, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "受限 CA"}})))
	if err != nil {
		t.Fatal(err)
	}
	sub := &testCA{name: "constrained", cert: issue(t, sm2ca, res), key: subKey}
	roots := smx509.NewCertPool()
	roots.AddCert(sm2ca.cert)
	inter := smx509.NewCertPool()
	inter.AddCert(sub.cert)

	tlsProf := builtinProfile(t, "server-tls")
	csr := func(cn string, dns []string, ips ...net.IP) *smx509.CertificateRequest {
		return makeCSR(t, newSM2(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips})
	}
	res, err = tlsProf.Apply(input(sub, csr("www.example.gov.cn", nil, net.ParseIP("218.85.153.1"))))
	if err != nil {
		t.Fatalf("names within the constraints: %v", err)
	}
	leaf := issue(t, sub, res)
	if _, err := leaf.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "www.example.gov.cn", CurrentTime: testNow}); err != nil {
		t.Fatalf("the issued certificate does not verify: %v", err)
	}

	chained := input(sm2ca, csr("www.evil.com", nil))
	chained.Chain = []*smx509.Certificate{sub.cert}
	for _, tc := range []struct {
		name string
		in   Input
		want string
	}{
		{"CN outside", input(sub, csr("www.evil.com", nil)), `dNSName "www.evil.com" is not within the permitted subtrees "gov.cn"`},
		{"SAN outside", input(sub, csr("", []string{"a.example.gov.cn", "b.example.org"})), `dNSName "b.example.org"`},
		{"excluded address", input(sub, csr("", []string{"a.example.gov.cn"}, net.ParseIP("218.85.152.99"))), "iPAddress 218.85.152.99 is within the excluded subtree 218.85.152.0/24"},
		{"constrained CA above the issuer", chained, `outside the name constraints of CA "CN=受限 CA`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsProf.Apply(tc.in)
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v; want ErrPolicy mentioning %s", err, tc.want)
			}
		})
	}
}

// TestPrivateTLSLoopback: the node-tls profile (tls-server-private, internal
// addresses allowed) certifies loopback addresses and single-label names,
// which server-tls refuses; unspecified and multicast addresses stay
// refused everywhere.
func TestPrivateTLSLoopback(t *testing.T) {
	_, ecca := cas(t)
	node := builtinProfile(t, "node-tls")
	key := newEC(t, elliptic.P256())
	ok := makeCSR(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost", "node1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}})
	res, err := node.Apply(input(ecca, ok))
	if err != nil {
		t.Fatalf("node-tls with loopback names: %v", err)
	}
	if len(res.Template.IPAddresses) != 2 || len(res.Template.DNSNames) != 2 {
		t.Errorf("template names %v %v, want both loopback addresses and both DNS names", res.Template.IPAddresses, res.Template.DNSNames)
	}
	for _, ip := range []string{"0.0.0.0", "224.0.0.1"} {
		bad := makeCSR(t, key, &smx509.CertificateRequest{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP(ip)}})
		if _, err := node.Apply(input(ecca, bad)); !errors.Is(err, ErrPolicy) {
			t.Errorf("node-tls with %s: %v, want ErrPolicy", ip, err)
		}
	}
}

// TestCNCanonical: a CN that names a host is written exactly as its
// subjectAltName entry (BR §7.1.4.3 byte-for-byte): a DNS name in lower
// case, an address in canonical form; the result lints clean, zlint
// included for ECDSA. Profiles that do not put the CN in the SAN keep it as
// requested.
func TestCNCanonical(t *testing.T) {
	sm2ca, ecca := cas(t)
	tlsProf := builtinProfile(t, "server-tls")
	for _, tc := range []struct {
		ca      *testCA
		cn      string
		wantCN  string
		wantDNS []string
		wantIP  string
	}{
		{sm2ca, "Portal.Example.gov.cn", "portal.example.gov.cn", []string{"portal.example.gov.cn"}, ""},
		{ecca, "Portal.Example.gov.cn", "portal.example.gov.cn", []string{"portal.example.gov.cn"}, ""},
		{ecca, "2400:3200:0000::0001", "2400:3200::1", nil, "2400:3200::1"},
		{ecca, "::ffff:218.85.152.99", "218.85.152.99", nil, "218.85.152.99"},
	} {
		t.Run(tc.ca.name+"/"+tc.cn, func(t *testing.T) {
			var key crypto.Signer = newEC(t, elliptic.P256())
			if tc.ca == sm2ca {
				key = newSM2(t)
			}
			res, err := tlsProf.Apply(input(tc.ca, makeCSR(t, key, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: tc.cn}})))
			if err != nil {
				t.Fatal(err)
			}
			cert := issue(t, tc.ca, res)
			if cert.Subject.CommonName != tc.wantCN || !slices.Equal(cert.DNSNames, tc.wantDNS) {
				t.Errorf("CN %q DNS %q, want %q %q", cert.Subject.CommonName, cert.DNSNames, tc.wantCN, tc.wantDNS)
			}
			if tc.wantIP != "" && (len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != tc.wantIP) {
				t.Errorf("IP %v, want %s", cert.IPAddresses, tc.wantIP)
			}
			if !hasNote(res, "byte for byte") {
				t.Errorf("no note of the rewritten CN: %q", res.Notes)
			}
		})
	}
	res, err := builtinProfile(t, "client-tls").Apply(input(sm2ca, makeCSR(t, newSM2(t), &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "App.Example"}})))
	if err != nil {
		t.Fatal(err)
	}
	if cn := res.Template.Subject.CommonName; cn != "App.Example" {
		t.Errorf("client-tls CN %q, want it as requested", cn)
	}
}

// TestSANFromRecord: person-sign and person-enc take the rfc822Name from
// the registration record's mail. A request that names another mailbox is
// refused, naming the record field, so an RA officer or applicant cannot
// put 张三's mailbox into 李四's certificate (for the encryption
// certificate, the one others encrypt to) by asking for it.
func TestSANFromRecord(t *testing.T) {
	sm2ca, _ := cas(t)
	for _, name := range []string{"person-sign", "person-enc"} {
		p := builtinProfile(t, name)
		apply := func(t *testing.T, tmpl *smx509.CertificateRequest, rec map[string]string) (*Result, error) {
			t.Helper()
			in := input(sm2ca, makeCSR(t, newSM2(t), tmpl))
			in.Record = rec
			if p.KeySource == "kmc" {
				in.PublicKey = newSM2(t).Public()
			}
			return p.Apply(in)
		}
		lisi := record()
		lisi["CN"], lisi["mail"] = "李四", "lisi@example.gov.cn"
		t.Run(name+"/another's mailbox refused", func(t *testing.T) {
			_, err := apply(t, &smx509.CertificateRequest{EmailAddresses: []string{"zhangsan@example.gov.cn"}}, lisi)
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "registration record's mail") {
				t.Fatalf("err %v, want ErrPolicy naming the record's mail", err)
			}
		})
		t.Run(name+"/mailbox without a record mail refused", func(t *testing.T) {
			rec := record()
			delete(rec, "mail")
			_, err := apply(t, &smx509.CertificateRequest{EmailAddresses: []string{"zhangsan@example.gov.cn"}}, rec)
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "record has no mail") {
				t.Fatalf("err %v, want ErrPolicy: the record has no mail", err)
			}
			res, err := apply(t, &smx509.CertificateRequest{}, rec)
			if err != nil || len(res.Template.EmailAddresses) != 0 {
				t.Fatalf("no mail anywhere: %v, %v", err, res)
			}
		})
		t.Run(name+"/record's mailbox written", func(t *testing.T) {
			for _, asked := range [][]string{nil, {"lisi@EXAMPLE.gov.cn"}} {
				res, err := apply(t, &smx509.CertificateRequest{EmailAddresses: asked}, lisi)
				if err != nil {
					t.Fatalf("request %q: %v", asked, err)
				}
				if got := res.Template.EmailAddresses; !slices.Equal(got, []string{"lisi@example.gov.cn"}) {
					t.Errorf("request %q: rfc822Name %q, want the record's", asked, got)
				}
			}
		})
		t.Run(name+"/record's mailbox checked", func(t *testing.T) {
			rec := record()
			rec["mail"] = "a..b@example.gov.cn"
			if _, err := apply(t, &smx509.CertificateRequest{}, rec); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "not a mailbox") {
				t.Fatalf("err %v", err)
			}
		})
	}
}
