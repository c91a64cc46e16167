package ceremony

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/testenv"
)

// TestExamplesValid: every example ceremony file of testdata decodes and
// validates.
func TestExamplesValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) < 5 {
		t.Fatalf("%d example files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			load := func(p string) error { _, err := Load(p); return err }
			if strings.HasPrefix(filepath.Base(f), "crl-") {
				load = func(p string) error { _, err := LoadCRL(p); return err }
			}
			if err := load(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestValidate: strict decoding and the messages a reviewer sees.
func TestValidate(t *testing.T) {
	base, err := os.ReadFile("testdata/sub-ecdsa.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, from, to, want string }{
		{"unknown key", "path_length: 0", "path_length: 0\npathlen: 0", "field pathlen not found"},
		{"unknown subject attribute", "  CN: ", "  E: x@example.cn\n  CN: ", "field E not found"},
		{"kind", "kind: sub", "kind: leaf", `kind "leaf"`},
		{"id", "ca: gov-ecdsa-sub", "ca: Gov_Sub", `ca "Gov_Sub"`},
		{"algorithm", "algorithm: ecdsa-p256", "algorithm: rsa-2048", "want sm2 or ecdsa-p256"},
		{"no path length", "path_length: 0", "", "path_length is required"},
		{"validity", "days: 3650", "days: 0", "validity"},
		{"policy OID", `["2.5.29.32.0"]`, `["anyPolicy"]`, "not a dotted OID"},
		{"policy twice", `["2.5.29.32.0"]`, `["2.5.29.32.0", "2.5.29.32.0"]`, "listed twice"},
		{"https CRL", "http://pki.example.gov.cn/pki/gov-ecdsa-root.crl", "https://pki.example.gov.cn/x.crl", "crl_urls"},
		{"no issuer", "issuer:", "nobody:", "field nobody not found"},
		{"key mode", "mode: create", "mode: maybe", `key.mode "maybe"`},
		{"country", "C: CN", "C: China", "subject.C"},
		{"country not letters", "C: CN", `C: "@@"`, "subject.C"},
		{"country not ASCII", "C: CN", `C: "ß"`, "subject.C"},
		{"country lower case", "C: CN", "C: cn", "subject.C"},
		{"NUL in CN", "CN: 某某市政务 ECDSA 签发 CA", `CN: "a\0b"`, "subject.CN"},
		{"bidi override in O", "O: 某某市人民政府", `O: "某某\u202E市"`, "subject.O"},
		{"ST too long", "  O: ", "  ST: " + strings.Repeat("省", 129) + "\n  O: ", "subject.ST"},
		{"issuer's key", "uri: soft:ca/gov-ecdsa-sub", "uri: soft:ca/gov-ecdsa-root", "key.uri is issuer.key_uri"},
		{"request pin", "path_length: 0", "path_length: 0\nrequest_sha256: AB:CD", "request_sha256"},
		{"issuer pin", "  key_uri: soft:ca/gov-ecdsa-root", "  key_uri: soft:ca/gov-ecdsa-root\n  certificate_sha256: sha256", "issuer.certificate_sha256"},
		{"subject pin outside cross", "path_length: 0", "path_length: 0\nsubject_certificate_sha256: " + strings.Repeat("ab", 32), "only for cross"},
		{"CN too long", "CN: 某某市政务 ECDSA 签发 CA", "CN: " + strings.Repeat("长", 65), "subject.CN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(string(base), c.from, c.to, 1)
			if src == string(base) {
				t.Fatalf("%q not in the example", c.from)
			}
			_, err := Parse([]byte(src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

// TestSubjectEncoding: C is a PrintableString, every other attribute a
// UTF8String (RFC 5280 §4.1.2.4), in the order of the file's fields.
func TestSubjectEncoding(t *testing.T) {
	der, err := Subject{C: "CN", O: "某某市人民政府", CN: "Root"}.DER()
	if err != nil {
		t.Fatal(err)
	}
	var rdns []asn1.RawValue
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		t.Fatal(err)
	}
	wantTags := []int{asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagUTF8String}
	if len(rdns) != len(wantTags) {
		t.Fatalf("%d RDNs", len(rdns))
	}
	for i, r := range rdns {
		var set []struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}
		if _, err := asn1.UnmarshalWithParams(r.FullBytes, &set, "set"); err != nil || len(set) != 1 {
			t.Fatalf("RDN %d: %v", i, err)
		}
		if set[0].Value.Tag != wantTags[i] {
			t.Errorf("RDN %d: tag %d, want %d", i, set[0].Value.Tag, wantTags[i])
		}
	}
}

// TestSignAndCheck: a root, a sub-CA from its request and a
// cross-certificate, for both algorithms, with the refusals CheckCA makes.
func TestSignAndCheck(t *testing.T) {
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			key := func() crypto.Signer {
				if alg == "sm2" {
					k, err := sm2.GenerateKey(rand.Reader)
					if err != nil {
						t.Fatal(err)
					}
					return k
				}
				k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				return k
			}
			load := func(name string) *File {
				f, err := Load("testdata/" + name + "-" + alg + ".yaml")
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
			now := time.Now()
			rootKey := key()
			rootSigner := rootKey
			rootDER, err := SelfSign(load("root"), rootSigner, now)
			if err != nil {
				t.Fatal(err)
			}
			root, _ := smx509.ParseCertificate(rootDER)
			subKey := key()
			sub := load("sub")
			csr, err := CSR(sub, subKey)
			if err != nil {
				t.Fatal(err)
			}
			sub.RequestSHA256 = Fingerprint(csr)
			subDER, err := SignCSR(sub, csr, root, rootSigner, now)
			if err != nil {
				t.Fatal(err)
			}
			subCert, _ := smx509.ParseCertificate(subDER)
			if err := CheckCA(subCert, []*smx509.Certificate{root}, subKey.Public(), now); err != nil {
				t.Fatalf("CheckCA: %v", err)
			}
			if err := CheckCA(subCert, []*smx509.Certificate{root}, rootSigner.Public(), now); err == nil {
				t.Error("CheckCA accepted a key that is not the certificate's")
			}
			if err := CheckCA(subCert, []*smx509.Certificate{subCert}, subKey.Public(), now); err == nil {
				t.Error("CheckCA accepted a chain that does not verify")
			}
			if _, err := SignCSR(sub, csr, root, key(), now); err == nil {
				t.Error("signed with a key that is not the issuer's")
			}
			other := *sub
			other.Subject.CN = "another"
			if _, err := SignCSR(&other, csr, root, rootSigner, now); err == nil || !strings.Contains(err.Error(), "subject") {
				t.Errorf("signed a request whose subject is not the ceremony's: %v", err)
			}
			// A second root, cross-certified by the first: path_length 1 is
			// refused under a root that allows only one CA level below it.
			fb := load("root")
			fb.Subject.CN += " B"
			rootB, err := SelfSign(fb, key(), now)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := smx509.ParseCertificate(rootB)
			cross := &File{Kind: Cross, CA: "b", Algorithm: sub.Algorithm, Validity: Validity{Days: 365}, PathLength: new(int),
				Issuer: &Issuer{Certificate: "x", KeyURI: "soft:x"}, SubjectCertificate: "y", SubjectCertificateSHA256: Fingerprint(b.Raw), Key: Key{Mode: CreateIfAbsent}}
			der, err := CrossSign(cross, b, root, rootSigner, now)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := smx509.ParseCertificate(der)
			if string(c.RawSubject) != string(b.RawSubject) || string(c.SubjectKeyId) != string(b.SubjectKeyId) || c.CheckSignatureFrom(root) != nil {
				t.Error("cross-certificate does not carry B's name and key under A's signature")
			}
			one := 1
			cross.PathLength = &one
			if _, err := CrossSign(cross, b, root, rootSigner, now); err == nil || !strings.Contains(err.Error(), "path_length") {
				t.Errorf("cross-certificate with path_length 1 under a pathlen-1 root: %v", err)
			}
		})
	}
}

// testKey makes a key of alg ("ecdsa" or "sm2").
func testKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	if alg == "sm2" {
		k, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// loadExample loads testdata/<name>-<alg>.yaml.
func loadExample(t *testing.T, name, alg string) *File {
	t.Helper()
	f, err := Load("testdata/" + name + "-" + alg + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// hierarchy is a root, a sub-CA and a second root cross-certified by the
// first, made by the example ceremonies of alg.
type hierarchy struct {
	rootKey, subKey, bKey crypto.Signer
	root, sub, rootB      *smx509.Certificate
	cross                 *smx509.Certificate
	subFile, crossFile    *File
}

func makeHierarchy(t *testing.T, alg string, now time.Time) *hierarchy {
	t.Helper()
	h := &hierarchy{rootKey: testKey(t, alg), subKey: testKey(t, alg), bKey: testKey(t, alg)}
	parse := func(der []byte, err error) *smx509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	h.root = parse(SelfSign(loadExample(t, "root", alg), h.rootKey, now))
	h.subFile = loadExample(t, "sub", alg)
	csr, err := CSR(h.subFile, h.subKey)
	if err != nil {
		t.Fatal(err)
	}
	h.subFile.RequestSHA256 = Fingerprint(csr)
	h.sub = parse(SignCSR(h.subFile, csr, h.root, h.rootKey, now))
	fb := loadExample(t, "root", alg)
	fb.Subject.CN += " B"
	fb.PathLength = new(int)
	h.rootB = parse(SelfSign(fb, h.bKey, now))
	h.crossFile = &File{Kind: Cross, CA: "b", Algorithm: h.subFile.Algorithm, Validity: Validity{Days: 365}, PathLength: new(int),
		Policies: []string{"2.5.29.32.0", "1.2.156.112559.1.1.6.1"}, Issuer: &Issuer{Certificate: "x", KeyURI: "soft:x"},
		SubjectCertificate: "y", SubjectCertificateSHA256: Fingerprint(h.rootB.Raw), Key: Key{Mode: Create}}
	h.cross = parse(CrossSign(h.crossFile, h.rootB, h.root, h.rootKey, now))
	return h
}

// writePEM writes a certificate as PEM under dir.
func writePEM(t *testing.T, dir, name string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPoliciesWritten: the certificate_policies of the ceremony file are
// in the root, sub-CA and cross-certificates, as Go and OpenSSL read them
// (Go ≥ 1.24 writes only Certificate.Policies, so PolicyIdentifiers in a
// template was silently dropped).
func TestPoliciesWritten(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			h := makeHierarchy(t, alg, time.Now())
			dir := t.TempDir()
			for _, c := range []struct {
				name string
				cert *smx509.Certificate
				want []string
			}{
				{"root", h.root, []string{"2.5.29.32.0"}},
				{"sub", h.sub, []string{"2.5.29.32.0"}},
				{"cross", h.cross, []string{"2.5.29.32.0", "1.2.156.112559.1.1.6.1"}},
			} {
				var got []string
				for _, p := range c.cert.Policies {
					got = append(got, p.String())
				}
				if strings.Join(got, " ") != strings.Join(c.want, " ") {
					t.Errorf("%s: policies %v, want %v", c.name, got, c.want)
				}
				out, err := exec.Command(openssl, "x509", "-in", writePEM(t, dir, c.name+".pem", c.cert.Raw), "-noout", "-text").CombinedOutput()
				if err != nil {
					t.Fatalf("openssl x509 %s: %v\n%s", c.name, err, out)
				}
				if !strings.Contains(string(out), "X509v3 Certificate Policies") || !strings.Contains(string(out), "Policy: X509v3 Any Policy") {
					t.Errorf("%s: OpenSSL finds no certificatePolicies:\n%s", c.name, out)
				}
				if len(c.want) > 1 && !strings.Contains(string(out), "Policy: "+c.want[1]) {
					t.Errorf("%s: OpenSSL does not list %s:\n%s", c.name, c.want[1], out)
				}
			}
		})
	}
}

// TestIssuerKeyRefused: no ceremony certifies its issuer's own key under
// another name (a sub-CA request made with the root's key, or a "cross"
// root that has the issuer's key), and a key.mode left out means create.
func TestIssuerKeyRefused(t *testing.T) {
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			now := time.Now()
			rootKey := testKey(t, alg)
			rootDER, err := SelfSign(loadExample(t, "root", alg), rootKey, now)
			if err != nil {
				t.Fatal(err)
			}
			root, _ := smx509.ParseCertificate(rootDER)
			sub := loadExample(t, "sub", alg)
			csr, err := CSR(sub, rootKey) // the request is signed by the root's key
			if err != nil {
				t.Fatal(err)
			}
			sub.RequestSHA256 = Fingerprint(csr)
			if _, err := SignCSR(sub, csr, root, rootKey, now); err == nil || !strings.Contains(err.Error(), "issuer's own key") {
				t.Errorf("SignCSR of a request for the issuer's key: %v", err)
			}
			// A second root with the first's key and another name.
			twin := loadExample(t, "root", alg)
			twin.Subject.CN += " twin"
			twinDER, err := SelfSign(twin, rootKey, now)
			if err != nil {
				t.Fatal(err)
			}
			twinCert, _ := smx509.ParseCertificate(twinDER)
			cross := &File{Kind: Cross, CA: "twin", Algorithm: sub.Algorithm, Validity: Validity{Days: 365}, PathLength: new(int),
				Issuer: &Issuer{Certificate: "x", KeyURI: "soft:x"}, SubjectCertificate: "y", SubjectCertificateSHA256: Fingerprint(twinDER), Key: Key{Mode: Create}}
			if _, err := CrossSign(cross, twinCert, root, rootKey, now); err == nil || !strings.Contains(err.Error(), "issuer's own key") {
				t.Errorf("CrossSign of a root with the issuer's key: %v", err)
			}
		})
	}
	b, err := os.ReadFile("testdata/sub-sm2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), "  mode: create\n", "", 1)
	if src == string(b) {
		t.Fatal("no key.mode in the example")
	}
	f, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if f.Key.Mode != Create {
		t.Errorf("default key.mode %q, want %q", f.Key.Mode, Create)
	}
}

// otherToolRoot is a root made by another tool: its subjectKeyIdentifier
// is the SHA-1 of the subjectPublicKey (RFC 5280 §4.2.1.2 method 1), not
// RFC 7093's, with a leaf it issued.
func otherToolRoot(t *testing.T, alg string, now time.Time) (root, leaf *smx509.Certificate) {
	t.Helper()
	key := testKey(t, alg)
	spki, err := smx509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		t.Fatal(err)
	}
	ski := sha1.Sum(info.Key.Bytes)
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{Country: []string{"CN"}, Organization: []string{"Other"}, CommonName: "Other Root B"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(20, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 2,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, SubjectKeyId: ski[:]}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = smx509.ParseCertificate(der)
	leafKey := testKey(t, alg)
	lt := &smx509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "leaf.example"}, DNSNames: []string{"leaf.example"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: smx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}}
	der, err = smx509.CreateCertificate(rand.Reader, lt, root, leafKey.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = smx509.ParseCertificate(der)
	return root, leaf
}

// TestCrossKeepsSubjectKeyID: the cross-certificate carries the
// subjectKeyIdentifier of the root it certifies, whatever method made it,
// so OpenSSL trusting only the issuer builds the path to a certificate
// that root issued through the cross-certificate.
func TestCrossKeepsSubjectKeyID(t *testing.T) {
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			now := time.Now()
			aKey := testKey(t, alg)
			aDER, err := SelfSign(loadExample(t, "root", alg), aKey, now)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := smx509.ParseCertificate(aDER)
			b, leaf := otherToolRoot(t, alg, now)
			f := &File{Kind: Cross, CA: "b", Algorithm: loadExample(t, "root", alg).Algorithm, Validity: Validity{Days: 1825}, PathLength: new(int),
				Issuer: &Issuer{Certificate: "a.pem", KeyURI: "soft:ca/a"}, SubjectCertificate: "b.pem", SubjectCertificateSHA256: Fingerprint(b.Raw), Key: Key{Mode: Create}}
			crossDER, err := CrossSign(f, b, a, aKey, now)
			if err != nil {
				t.Fatal(err)
			}
			cross, _ := smx509.ParseCertificate(crossDER)
			if !bytes.Equal(cross.SubjectKeyId, b.SubjectKeyId) {
				t.Errorf("cross-certificate SKI %x, the root's %x", cross.SubjectKeyId, b.SubjectKeyId)
			}
			if !bytes.Equal(cross.AuthorityKeyId, a.SubjectKeyId) {
				t.Fatalf("cross-certificate AKI %x, the issuer's SKI %x", cross.AuthorityKeyId, a.SubjectKeyId)
			}
			dir := t.TempDir()
			aPEM, crossPEM, leafPEM := writePEM(t, dir, "a.pem", a.Raw), writePEM(t, dir, "cross.pem", crossDER), writePEM(t, dir, "leaf.pem", leaf.Raw)
			runs := [][]string{{"verify", "-CAfile", aPEM, "-untrusted", crossPEM, leafPEM}}
			if alg == "sm2" {
				// OpenSSL 3.0 applies the SM2 ID to one link only: each link
				// on its own, as ca/issue_test.go does; the second finds the
				// leaf's issuer by the identifiers.
				runs = [][]string{{"verify", "-vfyopt", "distid:1234567812345678", "-CAfile", aPEM, crossPEM},
					{"verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", crossPEM, leafPEM}}
			}
			for _, args := range runs {
				out, err := exec.Command(testenv.LookPath(t, "openssl"), args...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), ": OK") {
					t.Errorf("openssl %v: %v\n%s", args, err, out)
				}
			}
		})
	}
}

// TestCheckCAPath: ca import refuses a CA its chain does not allow
// (pathLenConstraint, RFC 5280 §6.1.4 (l)) and a link whose identifiers do
// not match, and accepts the same CA under a chain that allows it.
func TestCheckCAPath(t *testing.T) {
	for _, alg := range []string{"ecdsa", "sm2"} {
		t.Run(alg, func(t *testing.T) {
			now := time.Now()
			// ca makes a CA certificate for key under parent (self-signed
			// when parent is nil) with path length pathLen.
			ca := func(cn string, key crypto.Signer, parent *smx509.Certificate, parentKey crypto.Signer, pathLen int) *smx509.Certificate {
				t.Helper()
				tmpl := &smx509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
					NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0,
					KeyUsage: caKeyUsage}
				if parent == nil {
					parent, parentKey = tmpl, key
				}
				der, err := smx509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
				if err != nil {
					t.Fatal(err)
				}
				c, _ := smx509.ParseCertificate(der)
				return c
			}
			rootKey, interKey, subKey := testKey(t, alg), testKey(t, alg), testKey(t, alg)
			chain := func(certs ...*smx509.Certificate) []*smx509.Certificate { return certs }

			// A root that allows no CA below it.
			root0 := ca("Root pathlen 0", rootKey, nil, nil, 0)
			sub := ca("Sub", subKey, root0, rootKey, 0)
			if err := CheckCA(sub, chain(root0), subKey.Public(), now); err == nil || !strings.Contains(err.Error(), "pathLenConstraint") {
				t.Errorf("sub-CA under a pathlen-0 root: %v", err)
			}
			// Three levels: the intermediate's path length 0 leaves no room
			// for the imported CA; the root's 1 would not either.
			root2 := ca("Root pathlen 2", rootKey, nil, nil, 2)
			inter0 := ca("Inter pathlen 0", interKey, root2, rootKey, 0)
			sub = ca("Sub", subKey, inter0, interKey, 0)
			if err := CheckCA(sub, chain(inter0, root2), subKey.Public(), now); err == nil || !strings.Contains(err.Error(), "Inter pathlen 0") {
				t.Errorf("sub-CA under a pathlen-0 intermediate: %v", err)
			}
			root1 := ca("Root pathlen 1", rootKey, nil, nil, 1)
			inter1 := ca("Inter pathlen 1", interKey, root1, rootKey, 1)
			sub = ca("Sub", subKey, inter1, interKey, 0)
			if err := CheckCA(sub, chain(inter1, root1), subKey.Public(), now); err == nil || !strings.Contains(err.Error(), "Root pathlen 1") {
				t.Errorf("sub-CA two levels under a pathlen-1 root: %v", err)
			}
			inter1 = ca("Inter pathlen 1", interKey, root2, rootKey, 1)
			sub = ca("Sub", subKey, inter1, interKey, 0)
			if err := CheckCA(sub, chain(inter1, root2), subKey.Public(), now); err != nil {
				t.Errorf("sub-CA under a chain that allows it: %v", err)
			}

			// The right signature, but an authorityKeyIdentifier that is not
			// the root's subjectKeyIdentifier.
			fake := *root2
			fake.SubjectKeyId = bytes.Repeat([]byte{9}, 20)
			sub = ca("Sub", subKey, &fake, rootKey, 0)
			if err := CheckCA(sub, chain(root2), subKey.Public(), now); err == nil || !strings.Contains(err.Error(), "authorityKeyIdentifier") {
				t.Errorf("sub-CA with another AKI: %v", err)
			}
		})
	}
}

// TestPins: the signing steps sign only the files the ceremony pins, in
// either notation, and CheckSM3 takes only the reviewed hash.
func TestPins(t *testing.T) {
	now := time.Now()
	h := makeHierarchy(t, "ecdsa", now)
	csr, err := CSR(h.subFile, h.subKey)
	if err != nil {
		t.Fatal(err)
	}
	sub := *h.subFile
	for pin, want := range map[string]string{
		"":                      "request_sha256 is required",
		Fingerprint(h.root.Raw): "not the reviewed",
		strings.ToLower(strings.ReplaceAll(Fingerprint(csr), ":", "")): "",
	} {
		sub.RequestSHA256 = pin
		_, err := SignCSR(&sub, csr, h.root, h.rootKey, now)
		if (want == "" && err != nil) || (want != "" && (err == nil || !strings.Contains(err.Error(), want))) {
			t.Errorf("request pin %q: %v, want %q", pin, err, want)
		}
	}
	sub.RequestSHA256 = Fingerprint(csr)
	sub.Issuer = &Issuer{Certificate: "root.pem", CertificateSHA256: Fingerprint(h.rootB.Raw), KeyURI: "soft:x"}
	if _, err := SignCSR(&sub, csr, h.root, h.rootKey, now); err == nil || !strings.Contains(err.Error(), "issuer.certificate_sha256") {
		t.Errorf("issuer pin of another certificate: %v", err)
	}
	cross := *h.crossFile
	cross.SubjectCertificateSHA256 = Fingerprint(h.root.Raw)
	if _, err := CrossSign(&cross, h.rootB, h.root, h.rootKey, now); err == nil || !strings.Contains(err.Error(), "subject_certificate_sha256") {
		t.Errorf("cross-signing a root that is not the pinned one: %v", err)
	}
	if err := h.subFile.CheckSM3(strings.ToUpper(h.subFile.SM3Hex())); err != nil {
		t.Errorf("reviewed hash in upper case: %v", err)
	}
	for _, bad := range []string{"", strings.Repeat("0", 64)} {
		if err := h.subFile.CheckSM3(bad); err == nil {
			t.Errorf("CheckSM3(%q) accepted", bad)
		}
	}
}

// TestCrossKeepsSubjectConstraints: a cross-certificate may not widen the
// limits the root it certifies put on itself. Root B allows no CA below it
// and only example.com, and requires explicit policies with anyPolicy
// inhibited: a cross ceremony with a longer path_length is refused, and
// the cross-certificate it makes carries B's nameConstraints,
// policyConstraints and inhibitAnyPolicy, so OpenSSL trusting only A
// refuses through it a certificate B issued outside example.com and
// accepts one inside.
func TestCrossKeepsSubjectConstraints(t *testing.T) {
	openssl := testenv.LookPath(t, "openssl")
	now := time.Now()
	aKey := testKey(t, "ecdsa")
	af := loadExample(t, "root", "ecdsa")
	four := 4
	af.PathLength = &four
	aDER, err := SelfSign(af, aKey, now)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := smx509.ParseCertificate(aDER)
	bKey := testKey(t, "ecdsa")
	// policyConstraints requireExplicitPolicy 2, inhibitAnyPolicy 1.
	policyConstraints := []byte{0x30, 0x03, 0x80, 0x01, 0x02}
	inhibitAny := []byte{0x02, 0x01, 0x01}
	bt := &smx509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{Country: []string{"CN"}, CommonName: "Constrained Root B"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{"example.com"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 36}, Critical: true, Value: policyConstraints},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 54}, Critical: true, Value: inhibitAny}}}
	bDER, err := smx509.CreateCertificate(rand.Reader, bt, bt, bKey.Public(), bKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := smx509.ParseCertificate(bDER)
	f := &File{Kind: Cross, CA: "b", Algorithm: af.Algorithm, Validity: Validity{Days: 1825}, PathLength: new(int), Policies: []string{"1.2.156.112559.1.1"},
		Issuer: &Issuer{Certificate: "a.pem", KeyURI: "soft:ca/a"}, SubjectCertificate: "b.pem", SubjectCertificateSHA256: Fingerprint(b.Raw), Key: Key{Mode: Create}}
	three := 3
	wide := *f
	wide.PathLength = &three
	if _, err := CrossSign(&wide, b, a, aKey, now); err == nil || !strings.Contains(err.Error(), "path_length 3") {
		t.Errorf("path_length 3 over a root with pathLenConstraint 0: %v", err)
	}
	crossDER, err := CrossSign(f, b, a, aKey, now)
	if err != nil {
		t.Fatal(err)
	}
	cross, _ := smx509.ParseCertificate(crossDER)
	if !cross.PermittedDNSDomainsCritical || len(cross.PermittedDNSDomains) != 1 || cross.PermittedDNSDomains[0] != "example.com" {
		t.Errorf("cross-certificate name constraints: critical %v, permitted %v", cross.PermittedDNSDomainsCritical, cross.PermittedDNSDomains)
	}
	if cross.RequireExplicitPolicy != 2 || cross.InhibitAnyPolicy != 1 {
		t.Errorf("cross-certificate policy constraints: requireExplicitPolicy %d, inhibitAnyPolicy %d", cross.RequireExplicitPolicy, cross.InhibitAnyPolicy)
	}
	dir := t.TempDir()
	aPEM, crossPEM := writePEM(t, dir, "a.pem", a.Raw), writePEM(t, dir, "cross.pem", crossDER)
	policy, err := smx509.ParseOID("1.2.156.112559.1.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"www.example.com", "www.other.org"} {
		lk := testKey(t, "ecdsa")
		lt := &smx509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: smx509.KeyUsageDigitalSignature,
			ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}, Policies: []smx509.OID{policy}}
		der, err := smx509.CreateCertificate(rand.Reader, lt, b, lk.Public(), bKey)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(openssl, "verify", "-CAfile", aPEM, "-untrusted", crossPEM, writePEM(t, dir, host+".pem", der)).CombinedOutput()
		ok := err == nil && strings.Contains(string(out), ": OK")
		if want := host == "www.example.com"; ok != want {
			t.Errorf("openssl verify %s through the cross-certificate: ok %v, want %v\n%s", host, ok, want, out)
		}
	}
}

// TestCheckCAKeyFamily: a hierarchy has one algorithm (ARCHITECTURE.md §2,
// GM/T 0015): CheckCA refuses an SM2 CA an ECDSA root signed and an ECDSA
// CA an SM2 root signed, and accepts each under a root of its own family.
func TestCheckCAKeyFamily(t *testing.T) {
	now := time.Now()
	roots := map[string]*smx509.Certificate{}
	rootKeys := map[string]crypto.Signer{}
	for _, alg := range []string{"ecdsa", "sm2"} {
		rootKeys[alg] = testKey(t, alg)
		der, err := SelfSign(loadExample(t, "root", alg), rootKeys[alg], now)
		if err != nil {
			t.Fatal(err)
		}
		roots[alg], _ = smx509.ParseCertificate(der)
	}
	for _, c := range []struct{ sub, root, want string }{
		{"sm2", "ecdsa", "sm2 key under a ecdsa-p256 CA"},
		{"ecdsa", "sm2", "ecdsa-p256 key under a sm2 CA"},
		{"sm2", "sm2", ""},
		{"ecdsa", "ecdsa", ""},
	} {
		subKey := testKey(t, c.sub)
		serial, err := newSerial()
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &smx509.Certificate{SerialNumber: serial, Subject: pkix.Name{Country: []string{"CN"}, CommonName: "Sub " + c.sub},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(2, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: caKeyUsage}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, roots[c.root], subKey.Public(), rootKeys[c.root])
		if err != nil {
			t.Fatal(err)
		}
		sub, _ := smx509.ParseCertificate(der)
		err = CheckCA(sub, []*smx509.Certificate{roots[c.root]}, subKey.Public(), now)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s CA under a %s root: %v, want %q", c.sub, c.root, err, c.want)
		}
	}
}
