package lint

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func names2(fs []Finding, sev Severity) []string {
	var out []string
	for _, f := range fs {
		if f.Severity == sev {
			out = append(out, f.Lint)
		}
	}
	sort.Strings(out)
	return dedupe(out)
}

// ownNames drops the names of zlint findings.
func ownNames(s []string) []string {
	var out []string
	for _, n := range s {
		if !strings.HasPrefix(n, ZlintPrefix) {
			out = append(out, n)
		}
	}
	return out
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func TestGoodCertificatesAreClean(t *testing.T) {
	pki(t)
	for _, c := range []struct {
		name string
		der  []byte
		ca   *testCA
	}{{"sm2", sm2LeafDER, sm2CA}, {"ecdsa", ecLeafDER, ecdsaCA}} {
		t.Run(c.name, func(t *testing.T) {
			cert, err := smx509.ParseCertificate(c.der)
			if err != nil {
				t.Fatal(err)
			}
			if fs := Certificate(cert, c.ca.cert); len(fs) != 0 {
				t.Errorf("findings on a good certificate: %v", fs)
			}
			// The roots are linted as self-signed CA certificates.
			if fs := Errors(Certificate(c.ca.cert, nil)); len(fs) != 0 {
				t.Errorf("findings on the root: %v", fs)
			}
		})
	}
}

// lintCase mutates a good leaf so that exactly the listed error lints fire
// (plus, for warnings, the one named).
type lintCase struct {
	name   string
	ec     bool // start from the ECDSA hierarchy instead of SM2
	exp    Expect
	der    []byte              // when set, lint these octets instead of a mutation
	issuer *smx509.Certificate // when set, the issuer instead of the test root
	mutate func(t *testing.T, r *rawCert)
	errs   []string
	warn   string
}

func lintCases(t *testing.T) []lintCase {
	pki(t)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSPKI, _ := smx509.MarshalPKIXPublicKey(otherKey.Public())
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edSPKI, _ := smx509.MarshalPKIXPublicKey(edPub)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224SPKI, _ := smx509.MarshalPKIXPublicKey(p224.Public())
	sm2SPKI, _ := smx509.MarshalPKIXPublicKey(sm2Leaf.Public())
	sm2Info, _ := parseSPKI(sm2SPKI)

	serial := func(b ...byte) func(*testing.T, *rawCert) {
		return func(_ *testing.T, r *rawCert) { r.serial = b }
	}
	long := func(first byte, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 0x5a
		}
		b[0] = first
		return b
	}
	setTime := func(nb, na rawTime) func(*testing.T, *rawCert) {
		return func(_ *testing.T, r *rawCert) {
			if nb.tag != 0 {
				r.notBefore = nb
			}
			if na.tag != 0 {
				r.notAfter = na
			}
		}
	}
	utc := func(s string) rawTime { return rawTime{cbasn1.UTCTime, []byte(s)} }
	gen := func(s string) rawTime { return rawTime{cbasn1.GeneralizedTime, []byte(s)} }
	subj := func(as ...attr) func(*testing.T, *rawCert) {
		return func(_ *testing.T, r *rawCert) { r.subject = names(as...) }
	}
	ext := func(id asn1.ObjectIdentifier, crit bool, v []byte) func(*testing.T, *rawCert) {
		return func(_ *testing.T, r *rawCert) { r.setExt(id, crit, v) }
	}
	del := func(id asn1.ObjectIdentifier) func(*testing.T, *rawCert) {
		return func(_ *testing.T, r *rawCert) { r.delExt(id) }
	}
	all := func(ms ...func(*testing.T, *rawCert)) func(*testing.T, *rawCert) {
		return func(t *testing.T, r *rawCert) {
			for _, m := range ms {
				m(t, r)
			}
		}
	}
	spki := func(der []byte) func(*testing.T, *rawCert) {
		return func(_ *testing.T, r *rawCert) { r.spki = der }
	}
	// makeCA turns the leaf into a well-formed CA certificate.
	makeCA := all(
		ext(oidExtBasicConstraints, true, bcValue(true, 0)),
		ext(oidExtKeyUsage, true, kuValue(kuKeyCertSign|kuCRLSign|kuDigitalSignature)),
		del(oidExtExtKeyUsage),
	)
	oidCN, oidO := oidAttrCN, oidAttrO
	// tlsServer turns the leaf into a BR-shaped TLS server certificate
	// (C, ST, O, a CN among the SANs, CRLDP and AIA kept).
	tlsServer := all(
		ext(oidExtExtKeyUsage, false, oidSeq(oidEKUServerAuth)),
		ext(oidExtKeyUsage, true, kuValue(kuDigitalSignature)),
		subj(ps(oidAttrC, "CN"), u8(oidAttrST, "福建省"), u8(oidO, "某某局"), ps(oidCN, "www.example.gov.cn")),
		ext(oidExtSAN, false, sanValue(dnsName("www.example.gov.cn"))),
	)
	badPoint := append([]byte(nil), sm2Info.key...)
	badPoint[len(badPoint)-1] ^= 1
	ecInfo, _ := parseSPKI(ecSPKI)
	badECPoint := append([]byte(nil), ecInfo.key...)
	badECPoint[len(badECPoint)-1] ^= 1

	// RSA moduli crafted for each weakness (the lints look only at n and e).
	n2048 := oddModulus(t, 2048)
	p, _ := rand.Prime(rand.Reader, 1024)
	q := new(big.Int).Add(p, big.NewInt(2))
	for !q.ProbablyPrime(20) {
		q.Add(q, big.NewInt(2))
	}
	fermatN := new(big.Int).Mul(p, q)
	rocaN := rocaModulus(t)
	weakN := new(big.Int).Mul(oddModulus(t, 2040), big.NewInt(251))
	for weakN.BitLen() != 2048 {
		weakN = new(big.Int).Mul(oddModulus(t, 2040), big.NewInt(251))
	}
	rsaSigned := func(der []byte) func(*testing.T, *rawCert) { return spki(der) }

	idCard, _ := MarshalIdentity(IdentityIDCard, identityIDCard)
	badIDCard := func() []byte {
		v := append([]byte(nil), idCard.Value...)
		v[len(v)-1] = '1' // wrong GB 11643 check character
		return v
	}()
	zero := 0

	return []lintCase{
		{name: "garbage", der: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, errs: []string{"e_x509_parse"}},
		{name: "version v2", mutate: func(_ *testing.T, r *rawCert) { r.version = []byte{1} }, errs: []string{"e_version_not_v3"}},
		{name: "unique id", mutate: func(_ *testing.T, r *rawCert) { r.issuerUID = true }, errs: []string{"e_unique_id_present"}},
		{name: "serial negative", mutate: serial(long(0x80, 17)...), errs: []string{"e_serial_not_positive", "e_x509_parse"}},
		{name: "serial zero", mutate: serial(long(0x00, 10)[:1]...), errs: []string{"e_serial_not_positive", "e_serial_low_entropy"}},
		{name: "serial not minimal", mutate: serial(long(0x00, 17)...), errs: []string{"e_serial_not_minimal", "e_x509_parse"}},
		{name: "serial 21 octets", mutate: serial(long(0x01, 21)...), errs: []string{"e_serial_too_long"}},
		{name: "serial 8 octets", mutate: serial(long(0x01, 8)...), errs: []string{"e_serial_low_entropy"}},
		{name: "sigalg mismatch", mutate: func(_ *testing.T, r *rawCert) { r.outerAlg = algID(oidSigECDSAWithSHA256, nil) },
			errs: []string{"e_sigalg_mismatch", "e_x509_parse"}},
		{name: "sigalg not for issuer key", mutate: func(_ *testing.T, r *rawCert) {
			r.innerAlg, r.outerAlg, r.spki = algID(oidSigECDSAWithSHA256, nil), algID(oidSigECDSAWithSHA256, nil), ecSPKI
		}, errs: []string{"e_sigalg_issuer_key"}},
		{name: "sigalg params", mutate: func(_ *testing.T, r *rawCert) {
			r.innerAlg, r.outerAlg = algID(oidSigSM2WithSM3, []byte{5, 0}), algID(oidSigSM2WithSM3, []byte{5, 0})
		}, errs: []string{"e_sigalg_params"}},
		{name: "sm2 key under ecdsa", ec: true, mutate: spki(sm2SPKI), errs: []string{"e_sm2_cert_sigalg"}},
		{name: "issuer dn mismatch", mutate: func(_ *testing.T, r *rawCert) { r.issuer = names(ps(oidCN, "Someone Else")) },
			errs: []string{"e_issuer_dn_mismatch"}},
		{name: "issuer empty", mutate: func(_ *testing.T, r *rawCert) { r.issuer = []byte{0x30, 0} },
			errs: []string{"e_issuer_empty", "e_issuer_dn_mismatch"}},
		{name: "validity inverted", mutate: setTime(utc("270101000000Z"), utc("260101000000Z")), errs: []string{"e_validity_inverted"}},
		{name: "generalized before 2050", mutate: setTime(rawTime{}, gen("20300101000000Z")), errs: []string{"e_validity_time_type"}},
		{name: "utctime without seconds", mutate: setTime(rawTime{}, utc("2701010000Z")), errs: []string{"e_validity_time_format"}},
		{name: "utctime with offset", mutate: setTime(rawTime{}, utc("270101000000+0800")), errs: []string{"e_validity_time_format"}},
		{name: "generalized fraction", mutate: setTime(rawTime{}, gen("20600101000000.5Z")), errs: []string{"e_validity_time_format", "e_validity_beyond_issuer", "e_x509_parse"}},
		{name: "beyond issuer", mutate: setTime(rawTime{}, utc("400101000000Z")), errs: []string{"e_validity_beyond_issuer"}},
		{name: "before issuer", mutate: setTime(utc("200101000000Z"), rawTime{}), warn: "w_validity_before_issuer"},
		{name: "ca empty subject", mutate: all(makeCA, func(_ *testing.T, r *rawCert) { r.subject = []byte{0x30, 0} },
			ext(oidExtSAN, true, sanValue(dnsName("ca.example.gov.cn")))), errs: []string{"e_subject_empty_ca"}},
		{name: "bmpstring", mutate: subj(ps(oidAttrC, "CN"), attr{oidCN, cbasn1.Tag(30), "\x5f\x20\x4e\x09"}), errs: []string{"e_subject_string_type"}},
		{name: "utf8 country", mutate: subj(u8(oidAttrC, "CN"), u8(oidCN, "张三")), errs: []string{"e_subject_string_type"}},
		{name: "ampersand printable", mutate: subj(ps(oidAttrC, "CN"), ps(oidO, "A&B Ltd"), u8(oidCN, "张三")), errs: []string{"e_subject_printable_charset"}},
		{name: "rtl override", mutate: subj(ps(oidAttrC, "CN"), u8(oidCN, "moc.\u202eknab")), errs: []string{"e_subject_bad_characters"}},
		{name: "nul", mutate: subj(ps(oidAttrC, "CN"), u8(oidCN, "a\x00b")), errs: []string{"e_subject_bad_characters"}},
		{name: "cn 65", mutate: subj(ps(oidAttrC, "CN"), u8(oidCN, strings.Repeat("长", 65))), errs: []string{"e_subject_attr_too_long"}},
		{name: "empty ou", mutate: subj(ps(oidAttrC, "CN"), u8(oidAttrOU, ""), u8(oidCN, "张三")), errs: []string{"e_subject_attr_empty"}},
		{name: "country lowercase", mutate: subj(ps(oidAttrC, "cn"), u8(oidCN, "张三")), errs: []string{"e_subject_country_invalid"}},
		{name: "whitespace", mutate: subj(ps(oidAttrC, "CN"), u8(oidCN, " 张三")), warn: "w_subject_whitespace"},
		{name: "multivalued rdn", mutate: func(_ *testing.T, r *rawCert) {
			r.subject = mkName([]attr{ps(oidAttrC, "CN")}, []attr{u8(oidO, "单位"), u8(oidAttrOU, "处室")}, []attr{u8(oidCN, "张三")})
		}, warn: "w_subject_multivalued_rdn"},
		{name: "two cn", mutate: subj(ps(oidAttrC, "CN"), u8(oidCN, "张三"), u8(oidCN, "李四")), warn: "w_subject_repeated_cn"},
		{name: "duplicate extension", mutate: func(_ *testing.T, r *rawCert) { r.exts = append(r.exts, *r.getExt(oidExtCRLDP)) },
			errs: []string{"e_ext_duplicate", "e_x509_parse"}},
		{name: "unknown critical", mutate: ext(asn1.ObjectIdentifier{1, 2, 3, 4}, true, []byte{5, 0}), errs: []string{"e_ext_unknown_critical"}},
		{name: "malformed ku", mutate: ext(oidExtKeyUsage, true, []byte{4, 0}), errs: []string{"e_ext_malformed", "e_x509_parse"}},
		{name: "nocheck not null", mutate: all(ext(oidExtExtKeyUsage, false, oidSeq(oidEKUOCSPSigning)), ext(oidExtOCSPNoCheck, false, []byte{4, 0})),
			errs: []string{"e_ext_malformed"}},
		{name: "critical false encoded", mutate: func(_ *testing.T, r *rawCert) { r.getExt(oidExtSKI).criticalPresent = true },
			errs: []string{"e_ext_critical_default_encoded"}},
		{name: "aki missing", mutate: del(oidExtAKI), errs: []string{"e_aki_missing"}},
		{name: "aki critical", mutate: func(_ *testing.T, r *rawCert) { r.getExt(oidExtAKI).critical = true },
			errs: []string{"e_aki_critical", "e_x509_parse"}},
		{name: "aki without key id", mutate: ext(oidExtAKI, false, akiValue(nil)), errs: []string{"e_aki_no_key_id"}},
		{name: "aki mismatch", mutate: ext(oidExtAKI, false, akiValue([]byte{1, 2, 3, 4})), errs: []string{"e_aki_mismatch"}},
		{name: "ca without ski", mutate: all(makeCA, del(oidExtSKI)), errs: []string{"e_ski_missing_ca"}},
		{name: "leaf without ski", mutate: del(oidExtSKI), warn: "w_ski_missing_leaf"},
		{name: "ski critical", mutate: func(_ *testing.T, r *rawCert) { r.getExt(oidExtSKI).critical = true },
			errs: []string{"e_ski_critical", "e_x509_parse"}},
		{name: "ku missing", mutate: del(oidExtKeyUsage), errs: []string{"e_ku_missing"}},
		{name: "ku not critical", mutate: ext(oidExtKeyUsage, false, kuValue(kuDigitalSignature)), errs: []string{"e_ku_not_critical"}},
		{name: "ku no bits", mutate: ext(oidExtKeyUsage, true, []byte{3, 1, 0}), errs: []string{"e_ku_no_bits"}},
		{name: "keycertsign on leaf", mutate: ext(oidExtKeyUsage, true, kuValue(kuDigitalSignature|kuKeyCertSign)), errs: []string{"e_ku_cert_sign_on_leaf"}},
		{name: "crlsign on leaf", mutate: ext(oidExtKeyUsage, true, kuValue(kuDigitalSignature|kuCRLSign)), warn: "w_ku_crl_sign_on_leaf"},
		{name: "ca without keycertsign", mutate: all(makeCA, ext(oidExtBasicConstraints, true, bcValue(true, -1)), ext(oidExtKeyUsage, true, kuValue(kuDigitalSignature))), errs: []string{"e_ca_without_cert_sign"}},
		{name: "ca bc not critical", mutate: all(makeCA, ext(oidExtBasicConstraints, false, bcValue(true, 0))), errs: []string{"e_bc_not_critical_ca"}},
		{name: "pathlen on leaf", mutate: ext(oidExtBasicConstraints, true, bcValue(false, 0)), errs: []string{"e_pathlen_not_ca"}},
		{name: "nc not critical", mutate: all(makeCA, ext(oidExtNameConstraints, false, ncValue())), errs: []string{"e_nc_not_critical"}},
		{name: "nc on leaf", mutate: ext(oidExtNameConstraints, true, ncValue()), errs: []string{"e_nc_on_leaf"}},
		{name: "name constraints", issuer: constrainedCA(t, ncValue()), mutate: ext(oidExtSAN, false, sanValue(dnsName("www.evil.com"))),
			errs: []string{"e_name_constraints_violated"}},
		{name: "name constraints malformed", issuer: func() *smx509.Certificate {
			c := *sm2CA.cert
			c.Extensions = append(append([]pkix.Extension{}, c.Extensions...), pkix.Extension{Id: oidExtNameConstraints, Critical: true, Value: []byte{0x30, 0x02, 0xa0, 0x00}})
			return &c
		}(), errs: []string{"e_name_constraints_violated"}},
		{name: "any eku", mutate: ext(oidExtExtKeyUsage, false, oidSeq(oidEKUClientAuth, oidEKUAny)), warn: "w_eku_any"},
		{name: "empty subject no san", mutate: func(_ *testing.T, r *rawCert) { r.subject = []byte{0x30, 0} }, errs: []string{"e_san_missing_empty_subject"}},
		{name: "empty subject san not critical", mutate: all(func(_ *testing.T, r *rawCert) { r.subject = []byte{0x30, 0} },
			ext(oidExtSAN, false, sanValue(dnsName("a.example.gov.cn")))), errs: []string{"e_san_not_critical_empty_subject"}},
		{name: "san critical with subject", mutate: ext(oidExtSAN, true, sanValue(dnsName("a.example.gov.cn"))), warn: "w_san_critical_with_subject"},
		{name: "san empty", mutate: ext(oidExtSAN, false, []byte{0x30, 0}), errs: []string{"e_san_empty"}},
		{name: "dns underscore", mutate: ext(oidExtSAN, false, sanValue(dnsName("a_b.example.gov.cn"))), errs: []string{"e_san_dns_invalid"}},
		{name: "dns inner wildcard", mutate: ext(oidExtSAN, false, sanValue(dnsName("www.*.example.gov.cn"))), errs: []string{"e_san_dns_invalid"}},
		{name: "dns internal", mutate: ext(oidExtSAN, false, sanValue(dnsName("intranet.local"))), warn: "w_san_dns_internal"},
		{name: "ip 5 octets", mutate: ext(oidExtSAN, false, sanValue(gn{7, []byte{10, 0, 0, 1, 5}})), errs: []string{"e_san_ip_length", "e_x509_parse"}},
		{name: "email invalid", mutate: ext(oidExtSAN, false, sanValue(gn{1, []byte("not-a-mailbox")})), errs: []string{"e_san_email_invalid"}},
		{name: "email control characters", mutate: ext(oidExtSAN, false, sanValue(gn{1, []byte("a\x1bb\x7f\x01@example.gov.cn")})), errs: []string{"e_san_email_invalid"}},
		{name: "uri relative", mutate: ext(oidExtSAN, false, sanValue(gn{6, []byte("relative/path")})), errs: []string{"e_san_uri_invalid"}},
		{name: "crldp ftp", mutate: ext(oidExtCRLDP, false, crldpValue("ftp://pki.example.gov.cn/a.crl")), errs: []string{"e_url_invalid"}},
		{name: "crldp https", mutate: ext(oidExtCRLDP, false, crldpValue("https://pki.example.gov.cn/a.crl")), warn: "w_url_https"},
		{name: "crldp critical", mutate: func(_ *testing.T, r *rawCert) { r.getExt(oidExtCRLDP).critical = true }, errs: []string{"e_crldp_critical"}},
		{name: "aia critical", mutate: func(_ *testing.T, r *rawCert) { r.getExt(oidExtAIA).critical = true }, errs: []string{"e_aia_critical", "e_x509_parse"}},
		{name: "ocsp signer without nocheck", mutate: ext(oidExtExtKeyUsage, false, oidSeq(oidEKUOCSPSigning)), errs: []string{"e_ocsp_signer_nocheck_missing"}},
		{name: "nocheck without ocsp eku", mutate: ext(oidExtOCSPNoCheck, false, []byte{5, 0}), errs: []string{"e_ocsp_nocheck_without_ocsp_eku"}},
		{name: "tsa eku not sole", mutate: ext(oidExtExtKeyUsage, true, oidSeq(oidEKUTimeStamping, oidEKUClientAuth)), errs: []string{"e_tsa_eku_not_sole"}},
		{name: "tsa eku not critical", mutate: ext(oidExtExtKeyUsage, false, oidSeq(oidEKUTimeStamping)), errs: []string{"e_tsa_eku_not_critical"}},
		{name: "spki malformed", ec: true, mutate: spki(spkiDER(oidPublicKeyRSA, []byte{5, 0}, []byte{1, 2, 3})), errs: []string{"e_spki_malformed", "e_x509_parse"}},
		{name: "ed25519", ec: true, mutate: spki(edSPKI), errs: []string{"e_key_algorithm_not_allowed"}},
		{name: "rsa without null", ec: true, mutate: rsaSigned(rsaSPKI(n2048, 65537, false)), errs: []string{"e_rsa_params_not_null", "e_x509_parse"}},
		{name: "rsa 16384", ec: true, mutate: rsaSigned(rsaSPKI(hugeModulus(t, 16384), 65537, true)), errs: []string{"e_rsa_key_too_large"}},
		{name: "rsa 1024", ec: true, mutate: rsaSigned(rsaSPKI(oddModulus(t, 1024), 65537, true)), errs: []string{"e_rsa_key_too_small"}},
		{name: "rsa 2047", ec: true, mutate: rsaSigned(rsaSPKI(oddModulus(t, 2047), 65537, true)), errs: []string{"e_rsa_key_too_small", "e_rsa_modulus_not_mod8"}},
		{name: "rsa 2049", ec: true, mutate: rsaSigned(rsaSPKI(oddModulus(t, 2049), 65537, true)), errs: []string{"e_rsa_modulus_not_mod8"}},
		{name: "rsa even exponent", ec: true, mutate: rsaSigned(rsaSPKI(n2048, 65536, true)), errs: []string{"e_rsa_exponent_invalid"}},
		{name: "rsa small factor", ec: true, mutate: rsaSigned(rsaSPKI(weakN, 65537, true)), errs: []string{"e_rsa_modulus_weak"}},
		{name: "rsa fermat", ec: true, mutate: rsaSigned(rsaSPKI(fermatN, 65537, true)), errs: []string{"e_rsa_fermat_factorable"}},
		{name: "rsa roca", ec: true, mutate: rsaSigned(rsaSPKI(rocaN, 65537, true)), errs: []string{"e_rsa_roca"}},
		{name: "ec implicit curve", ec: true, mutate: spki(spkiDER(oidPublicKeyEC, []byte{5, 0}, ecInfo.key)),
			errs: []string{"e_ec_params_not_named_curve", "e_x509_parse"}},
		{name: "p224", ec: true, mutate: spki(p224SPKI), errs: []string{"e_ec_curve_not_allowed"}},
		{name: "p192", ec: true, mutate: spki(spkiDER(oidPublicKeyEC, oidParam(oidCurveP192), append([]byte{4}, make([]byte, 48)...))),
			errs: []string{"e_ec_curve_not_allowed", "e_x509_parse"}},
		{name: "secp256k1", ec: true, mutate: spki(spkiDER(oidPublicKeyEC, oidParam(oidCurveSecp256k1), append([]byte{4}, make([]byte, 64)...))),
			errs: []string{"e_ec_curve_not_allowed", "e_x509_parse"}},
		{name: "p256 off curve", ec: true, mutate: spki(spkiDER(oidPublicKeyEC, oidParam(oidCurveP256), badECPoint)),
			errs: []string{"e_ec_point_invalid", "e_x509_parse"}},
		{name: "sm2 off curve", mutate: spki(spkiDER(oidPublicKeyEC, oidParam(oidSM2), badPoint)),
			errs: []string{"e_ec_point_invalid", "e_x509_parse"}},
		{name: "sm2 oid as algorithm", mutate: spki(spkiDER(oidSM2, oidParam(oidSM2), sm2Info.key)), errs: []string{"e_sm2_spki_encoding"}},
		{name: "gm ku mixed", mutate: ext(oidExtKeyUsage, true, kuValue(kuDigitalSignature|kuKeyEncipherment)), errs: []string{"e_gmt0015_ku_mixed"}},
		{name: "gm sign ku", exp: Expect{Purpose: PurposeSign}, mutate: ext(oidExtKeyUsage, true, kuValue(kuKeyEncipherment)), errs: []string{"e_gmt0015_sign_ku"}},
		{name: "gm enc ku", exp: Expect{Purpose: PurposeEnc}, errs: []string{"e_gmt0015_enc_ku"}},
		{name: "identity critical", mutate: ext(OIDIdentityCode, true, idCard.Value), errs: []string{"e_gmt0015_identity_critical"}},
		{name: "identity bad check digit", mutate: ext(OIDIdentityCode, false, badIDCard), errs: []string{"e_gmt0015_identity_invalid"}},
		{name: "identity utf8", mutate: ext(OIDOrganizationCode, false, []byte{0x0c, 2, '1', '2'}), errs: []string{"e_gmt0015_identity_invalid"}},
		{name: "identity missing", exp: Expect{IdentityExtensions: []asn1.ObjectIdentifier{OIDIdentityCode}}, errs: []string{"e_gmt0015_identity_missing"}},
		{name: "profile ca on leaf", exp: Expect{Purpose: PurposeCA}, errs: []string{"e_profile_ca_mismatch"}},
		{name: "profile pathlen", exp: Expect{Purpose: PurposeCA, PathLen: &zero}, mutate: all(makeCA, ext(oidExtBasicConstraints, true, bcValue(true, 1))),
			errs: []string{"e_profile_pathlen_mismatch"}},
		{name: "profile ku", exp: Expect{KeyUsage: smx509.KeyUsageDigitalSignature}, errs: []string{"e_profile_ku_mismatch"}},
		{name: "profile eku", exp: Expect{ExtKeyUsage: []asn1.ObjectIdentifier{oidEKUServerAuth}}, errs: []string{"e_profile_eku_mismatch"}},
		{name: "profile policies", exp: Expect{Policies: []asn1.ObjectIdentifier{{2, 5, 29, 32, 0}}}, errs: []string{"e_profile_policies_mismatch"}},
		{name: "profile crldp", exp: Expect{CRLDistributionPoints: []string{"http://other.example.gov.cn/a.crl"}}, errs: []string{"e_profile_crldp_mismatch"}},
		{name: "profile aia", exp: Expect{OCSPServers: []string{"http://other.example.gov.cn/ocsp"}}, errs: []string{"e_profile_aia_mismatch"}},
		{name: "profile validity", exp: Expect{MaxValidity: 30 * 24 * time.Hour}, errs: []string{"e_profile_validity_too_long"}},
		{name: "notbefore far from signing", exp: Expect{Now: testNow.Add(72 * time.Hour)}, errs: []string{"e_notbefore_not_near_signing"}},
		{name: "tls client eku", exp: Expect{Purpose: PurposeTLSClient}, mutate: ext(oidExtExtKeyUsage, false, oidSeq(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4})),
			errs: []string{"e_tls_eku_missing"}},
		{name: "tls server without san", exp: Expect{Purpose: PurposeTLSServer}, ec: true,
			mutate: all(ext(oidExtExtKeyUsage, false, oidSeq(oidEKUServerAuth)), ext(oidExtKeyUsage, true, kuValue(kuDigitalSignature)), subj(ps(oidAttrC, "CN"), u8(oidAttrST, "福建省"), u8(oidO, "某某局"))),
			errs:   []string{"e_tls_server_san_missing"}},
		{name: "tls cn not in san", exp: Expect{Purpose: PurposeTLSServer}, ec: true,
			mutate: all(ext(oidExtExtKeyUsage, false, oidSeq(oidEKUServerAuth)), subj(ps(oidAttrC, "CN"), ps(oidCN, "other.example.gov.cn")),
				ext(oidExtSAN, false, sanValue(dnsName("www.example.gov.cn")))),
			errs: []string{"e_tls_cn_not_in_san"}},
		{name: "tls cn differs from san in case", exp: Expect{Purpose: PurposeTLSServer},
			mutate: all(ext(oidExtExtKeyUsage, false, oidSeq(oidEKUServerAuth)), subj(ps(oidAttrC, "CN"), ps(oidCN, "WWW.example.gov.cn")),
				ext(oidExtSAN, false, sanValue(dnsName("www.example.gov.cn")))),
			errs: []string{"e_tls_cn_not_in_san"}},
		// The BR's server certificate shape, for SM2 (which zlint cannot
		// parse) as for the other key types.
		{name: "br locality without org", exp: Expect{Purpose: PurposeTLSServer},
			mutate: all(tlsServer, subj(ps(oidAttrC, "CN"), u8(oidAttrST, "福建省"), u8(oidAttrL, "福州市"), ps(oidCN, "www.example.gov.cn"))),
			errs:   []string{"e_br_tls_locality_without_org"}},
		{name: "br org without locality", exp: Expect{Purpose: PurposeTLSServer},
			mutate: all(tlsServer, subj(ps(oidAttrC, "CN"), u8(oidO, "某某局"), ps(oidCN, "www.example.gov.cn"))),
			errs:   []string{"e_br_tls_org_without_locality"}},
		{name: "br ou", exp: Expect{Purpose: PurposeTLSServer},
			mutate: all(tlsServer, subj(ps(oidAttrC, "CN"), u8(oidAttrST, "福建省"), u8(oidO, "某某局"), u8(oidAttrOU, "信息中心"), ps(oidCN, "www.example.gov.cn"))),
			errs:   []string{"e_br_tls_ou_present"}},
		{name: "br email and uri san", exp: Expect{Purpose: PurposeTLSServer},
			mutate: all(tlsServer, ext(oidExtSAN, false, sanValue(dnsName("www.example.gov.cn"), gn{1, []byte("a@example.gov.cn")}, gn{6, []byte("https://www.example.gov.cn/")}))),
			errs:   []string{"e_br_tls_san_not_host"}},
		{name: "br crldp and aia missing", exp: Expect{Purpose: PurposeTLSServer},
			mutate: all(tlsServer, del(oidExtCRLDP), del(oidExtAIA)),
			errs:   []string{"e_br_tls_crldp_missing", "e_br_tls_aia_missing"}},
		{name: "br shape on ecdsa too", exp: Expect{Purpose: PurposeTLSServer}, ec: true,
			mutate: all(tlsServer, subj(ps(oidAttrC, "CN"), u8(oidAttrL, "福州市"), ps(oidCN, "www.example.gov.cn"))),
			errs:   []string{"e_br_tls_locality_without_org"}},
		{name: "br not for private tls", exp: Expect{Purpose: PurposeTLSPrivate},
			mutate: all(tlsServer, subj(ps(oidAttrC, "CN"), u8(oidO, "govtrust"), ps(oidCN, "www.example.gov.cn")), del(oidExtCRLDP), del(oidExtAIA))},
		{name: "br without profile by serverAuth", mutate: all(tlsServer, subj(ps(oidAttrC, "CN"), u8(oidAttrL, "福州市"), ps(oidCN, "www.example.gov.cn"))),
			errs: []string{"e_br_tls_locality_without_org"}},
		{name: "ocsp signing on client", exp: Expect{Purpose: PurposeTLSClient},
			mutate: all(ext(oidExtExtKeyUsage, false, oidSeq(oidEKUClientAuth, oidEKUOCSPSigning)), ext(oidExtOCSPNoCheck, false, []byte{5, 0})),
			errs:   []string{"e_ocsp_signing_outside_ocsp_signer"}},
		{name: "ocsp signing on ca", exp: Expect{Purpose: PurposeCA, PathLen: &zero},
			mutate: all(makeCA, ext(oidExtExtKeyUsage, false, oidSeq(oidEKUOCSPSigning)), ext(oidExtOCSPNoCheck, false, []byte{5, 0})),
			errs:   []string{"e_ocsp_signing_outside_ocsp_signer"}},
		{name: "san dns bad a-label", mutate: ext(oidExtSAN, false, sanValue(dnsName("xn--1234.example.com"))), errs: []string{"e_san_dns_invalid"}},
		{name: "ocsp signer eku", exp: Expect{Purpose: PurposeOCSPSigner}, errs: []string{"e_ocsp_signer_eku_missing"}},
		{name: "tsa eku", exp: Expect{Purpose: PurposeTSA}, errs: []string{"e_tsa_eku_missing"}},
	}
}

// ncValue is a NameConstraints permitting one DNS subtree.
func ncValue() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("example.gov.cn")) })
			})
		})
	})
	return b.BytesOrPanic()
}

// rocaModulus builds a 2048-bit odd modulus congruent to 65537 modulo every
// ROCA prime: n = 65537 + k·M with M their product, the fingerprint of
// Infineon RSALib moduli.
func rocaModulus(t *testing.T) *big.Int {
	m := big.NewInt(1)
	for _, p := range rocaPrimes {
		m.Mul(m, big.NewInt(p))
	}
	for {
		k, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(2048-m.BitLen())))
		if err != nil {
			t.Fatal(err)
		}
		k.SetBit(k, 0, 0) // even k keeps n odd (M is odd)
		n := new(big.Int).Add(big.NewInt(65537), new(big.Int).Mul(k, m))
		if n.BitLen() == 2048 && rsaSmallFactor(n) == 0 {
			return n
		}
	}
}

func TestLints(t *testing.T) {
	cases := lintCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca, base := sm2CA, sm2LeafDER
			if tc.ec {
				ca, base = ecdsaCA, ecLeafDER
			}
			der := tc.der
			if der == nil {
				r, err := parseRaw(base)
				if err != nil {
					t.Fatal(err)
				}
				if tc.mutate != nil {
					tc.mutate(t, r)
				}
				der = r.encode()
			}
			// zlint's verdicts on these hand-made faults are tested in
			// TestZlint; here only govtrust's own lints are compared.
			issuer := ca.cert
			if tc.issuer != nil {
				issuer = tc.issuer
			}
			fs := Check(der, issuer, tc.exp)
			got := ownNames(names2(fs, Error))
			want := append([]string(nil), tc.errs...)
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("errors %v, want %v\nfindings: %v", got, want, fs)
			}
			if tc.warn != "" {
				found := false
				for _, f := range fs {
					found = found || (f.Lint == tc.warn && f.Severity == Warning)
				}
				if !found {
					t.Errorf("warning %s did not fire; findings: %v", tc.warn, fs)
				}
			}
		})
	}
}

// TestEveryLintCanFail: a lint that no test makes fire is a defect.
func TestEveryLintCanFail(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range lintCases(t) {
		for _, e := range tc.errs {
			covered[e] = true
		}
		covered[tc.warn] = true
	}
	for _, l := range Lints() {
		if !covered[l.Name] {
			t.Errorf("lint %s is not triggered by any test case", l.Name)
		}
		if l.Source == "" || l.Description == "" {
			t.Errorf("lint %s lacks a source or description", l.Name)
		}
		if (l.Severity == Error) != strings.HasPrefix(l.Name, "e_") || (l.Severity == Warning) != strings.HasPrefix(l.Name, "w_") {
			t.Errorf("lint %s: name prefix does not match severity %s", l.Name, l.Severity)
		}
	}
}
