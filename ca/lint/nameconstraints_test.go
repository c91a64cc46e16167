package lint

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// subtree is one GeneralSubtree base for ncDER: a GeneralName tag and its
// content (for [4], the Name's DER).
type subtree struct {
	tag int
	v   []byte
}

// ncDER encodes a NameConstraints extension value.
func ncDER(permitted, excluded []subtree) []byte {
	var b cryptobyte.Builder
	add := func(b *cryptobyte.Builder, n int, sts []subtree) {
		if len(sts) == 0 {
			return
		}
		b.AddASN1(cbasn1.Tag(n).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			for _, st := range sts {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					tag := cbasn1.Tag(st.tag).ContextSpecific()
					if st.tag == gnDir {
						tag = tag.Constructed()
					}
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(st.v) })
				})
			}
		})
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		add(b, 0, permitted)
		add(b, 1, excluded)
	})
	return b.BytesOrPanic()
}

// constrainedCA is the SM2 test root again (same name, key and key
// identifier) with a nameConstraints extension of the given value.
func constrainedCA(t testing.TB, value []byte) *smx509.Certificate {
	t.Helper()
	pki(t)
	tmpl := &smx509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(append([]byte{0x01}, randBytes(t, 16)...)),
		RawSubject:            sm2CA.cert.RawSubject,
		NotBefore:             sm2CA.cert.NotBefore,
		NotAfter:              sm2CA.cert.NotAfter,
		KeyUsage:              sm2CA.cert.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          sm2CA.cert.SubjectKeyId,
		ExtraExtensions:       []pkix.Extension{{Id: oidExtNameConstraints, Critical: true, Value: value}},
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, sm2CA.key.Public(), sm2CA.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func ipNet(cidr string) []byte {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	ip := n.IP
	if v4 := ip.To4(); v4 != nil && len(n.Mask) == 4 {
		ip = v4
	}
	return append(append([]byte{}, ip...), n.Mask...)
}

// TestCheckNameConstraints: the RFC 5280 §4.2.1.10 forms of each name type
// a CA issues, permitted and excluded, and the subject as a directoryName
// and through its emailAddress attributes.
func TestCheckNameConstraints(t *testing.T) {
	govDir := mkName([]attr{ps(oidAttrC, "CN")}, []attr{u8(oidAttrO, "某某市人民政府")})
	ca := constrainedCA(t, ncDER(
		[]subtree{
			{gnDNS, []byte("example.gov.cn")}, {gnDNS, []byte(".sub.example.cn")},
			{gnIP, ipNet("203.0.113.0/24")}, {gnIP, ipNet("2001:db8::/32")},
			{gnEmail, []byte("example.gov.cn")}, {gnEmail, []byte(".mail.example.cn")}, {gnEmail, []byte("Boss@other.cn")},
			{gnURI, []byte("app.example.gov.cn")}, {gnURI, []byte(".svc.example.cn")},
			{gnDir, govDir},
		},
		[]subtree{
			{gnDNS, []byte("secret.example.gov.cn")}, {gnIP, ipNet("203.0.113.128/25")},
			{gnEmail, []byte("root@example.gov.cn")},
		}))
	inGov := mkName([]attr{ps(oidAttrC, "cn")}, []attr{u8(oidAttrO, " 某某市人民政府 ")}, []attr{u8(oidAttrCN, "张三")})
	for _, tc := range []struct {
		name  string
		names Names
		want  []string // substrings, one per violation; none: clean
	}{
		{"all within", Names{Subject: inGov, DNS: []string{"example.gov.cn", "WWW.Example.gov.cn", "a.b.sub.example.cn", "*.www.example.gov.cn"},
			IP: []net.IP{net.ParseIP("203.0.113.7"), net.ParseIP("2001:db8::1")}, Email: []string{"a@example.gov.cn", "b@x.mail.example.cn", "Boss@OTHER.cn"},
			URI: []string{"https://app.example.gov.cn/x", "https://a.svc.example.cn:8443/"}}, nil},
		{"no names", Names{}, nil},
		{"dns outside", Names{DNS: []string{"www.evil.com"}}, []string{`dNSName "www.evil.com" is not within the permitted subtrees`}},
		{"dns label boundary", Names{DNS: []string{"badexample.gov.cn"}}, []string{"not within the permitted"}},
		{"dns leading dot is a proper subdomain", Names{DNS: []string{"sub.example.cn"}}, []string{"not within the permitted"}},
		{"dns excluded", Names{DNS: []string{"x.secret.example.gov.cn"}}, []string{"excluded subtree \"secret.example.gov.cn\""}},
		{"ip outside", Names{IP: []net.IP{net.ParseIP("198.51.100.1")}}, []string{"iPAddress 198.51.100.1 is not within the permitted subtrees 203.0.113.0/24, 2001:db8::/32"}},
		{"ip excluded", Names{IP: []net.IP{net.ParseIP("203.0.113.200")}}, []string{"excluded subtree 203.0.113.128/25"}},
		{"ipv6 outside", Names{IP: []net.IP{net.ParseIP("2001:db9::1")}}, []string{"not within"}},
		{"email host is exact", Names{Email: []string{"a@x.example.gov.cn"}}, []string{"rfc822Name"}},
		{"email mailbox local part exact", Names{Email: []string{"boss@other.cn"}}, []string{"not within"}},
		{"email excluded", Names{Email: []string{"root@EXAMPLE.gov.cn"}}, []string{"excluded"}},
		{"uri outside", Names{URI: []string{"https://evil.example.cn/"}}, []string{"URI"}},
		{"uri without host", Names{URI: []string{"urn:uuid:1234"}}, []string{"has no host name"}},
		{"uri with address", Names{URI: []string{"https://203.0.113.7/"}}, []string{"has no host name"}},
		{"subject outside", Names{Subject: mkName([]attr{ps(oidAttrC, "CN")}, []attr{u8(oidAttrO, "另一单位")}, []attr{u8(oidAttrCN, "张三")})},
			[]string{"directoryName (subject) is not within the permitted subtrees \"C=CN,O=某某市人民政府\""}},
		{"subject shorter than the subtree", Names{Subject: mkName([]attr{ps(oidAttrC, "CN")})}, []string{"directoryName"}},
		{"subject emailAddress", Names{Subject: mkName([]attr{ps(oidAttrC, "CN")}, []attr{u8(oidAttrO, "某某市人民政府")}, []attr{{oidAttrEmail, cbasn1.IA5String, "x@evil.com"}})},
			[]string{`rfc822Name "x@evil.com"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckNameConstraints(ca, tc.names)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("violations %q, want %d like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %q lacks %q", got[i], w)
				}
			}
		})
	}

	t.Run("wildcard over an excluded subtree", func(t *testing.T) {
		ex := constrainedCA(t, ncDER(nil, []subtree{{gnDNS, []byte("secret.example.gov.cn")}}))
		got, err := CheckNameConstraints(ex, Names{DNS: []string{"*.example.gov.cn", "*.other.gov.cn"}})
		if err != nil || len(got) != 1 || !strings.Contains(got[0], `"*.example.gov.cn" covers names of the excluded subtree`) {
			t.Fatalf("%q, %v; want the wildcard over secret.example.gov.cn refused", got, err)
		}
	})
	t.Run("excluded only", func(t *testing.T) {
		ex := constrainedCA(t, ncDER(nil, []subtree{{gnDNS, []byte("evil.com")}}))
		if got, err := CheckNameConstraints(ex, Names{DNS: []string{"www.example.gov.cn"}, Email: []string{"a@evil.com"}}); err != nil || len(got) != 0 {
			t.Fatalf("%q, %v; want no violation (other names and other types are free)", got, err)
		}
	})
	t.Run("unconstrained CA", func(t *testing.T) {
		if got, err := CheckNameConstraints(sm2CA.cert, Names{DNS: []string{"www.evil.com"}}); err != nil || got != nil {
			t.Fatalf("%q, %v", got, err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, v := range [][]byte{
			{0x30, 0x02, 0xa0, 0x00},                           // empty GeneralSubtrees
			ncDER([]subtree{{gnIP, []byte{10, 0, 0, 0}}}, nil), // address without mask
			{0x30, 0x03, 0x02, 0x01, 0x00},                     // not subtrees
		} {
			// smx509 refuses to parse such a CA; the check reads the
			// extension itself.
			ca := *sm2CA.cert
			ca.Extensions = append(append([]pkix.Extension{}, ca.Extensions...), pkix.Extension{Id: oidExtNameConstraints, Critical: true, Value: v})
			if _, err := CheckNameConstraints(&ca, Names{DNS: []string{"a.example.gov.cn"}}); !errors.Is(err, errMalformed) {
				t.Errorf("% x: %v, want errMalformed", v, err)
			}
		}
	})
}
