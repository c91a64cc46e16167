package directory_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca/ceremony/ceremonytest"
	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/testenv"
)

// TestCertificatePair: both elements round-trip, an absent one stays
// absent, OpenSSL reads the encoding as SEQUENCE { [0] { Certificate } },
// and malformed pairs are refused.
func TestCertificatePair(t *testing.T) {
	a, _ := ceremonytest.ExternalRoot(t, "A")
	b, _ := ceremonytest.ExternalRoot(t, "B")
	for _, c := range []struct{ f, r []byte }{{a.Raw, nil}, {nil, b.Raw}, {a.Raw, b.Raw}} {
		der, err := directory.CertificatePair(c.f, c.r)
		if err != nil {
			t.Fatal(err)
		}
		f, r, err := directory.ParseCertificatePair(der)
		if err != nil || !bytes.Equal(f, c.f) || !bytes.Equal(r, c.r) || (c.f == nil) != (f == nil) || (c.r == nil) != (r == nil) {
			t.Errorf("round trip: %v, forward %d octets (want %d), reverse %d (want %d)", err, len(f), len(c.f), len(r), len(c.r))
		}
	}
	if _, err := directory.CertificatePair(nil, nil); err == nil {
		t.Error("an empty pair was encoded")
	}
	der, _ := directory.CertificatePair(a.Raw, nil)
	file := filepath.Join(t.TempDir(), "pair.der")
	if err := os.WriteFile(file, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testenv.LookPath(t, "openssl"), "asn1parse", "-inform", "DER", "-in", file).CombinedOutput()
	lines := strings.Split(string(out), "\n")
	if err != nil || len(lines) < 3 || !strings.Contains(lines[0], "cons: SEQUENCE") || !strings.Contains(lines[1], "cons: cont [ 0 ]") || !strings.Contains(lines[2], "cons: SEQUENCE") {
		t.Errorf("openssl asn1parse: %v\n%s", err, out)
	}
	for name, bad := range map[string][]byte{
		"empty sequence":   {0x30, 0x00},
		"not a sequence":   {0x04, 0x00},
		"trailing octets":  append(bytes.Clone(der), 0),
		"implicit element": implicitPair(t, a.Raw),
	} {
		if _, _, err := directory.ParseCertificatePair(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// implicitPair is SEQUENCE { [0] IMPLICIT Certificate }: the tagging X.509's
// module does not use.
func implicitPair(t *testing.T, cert []byte) []byte {
	in := cryptobyte.String(cert)
	var content cryptobyte.String
	if !in.ReadASN1(&content, cbasn1.SEQUENCE) {
		t.Fatal("certificate is not a SEQUENCE")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(content) })
	})
	return b.BytesOrPanic()
}
